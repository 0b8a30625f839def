"""Tell people, CloudWatch and the table's consumers how the run went: the SNS mail (failures, and successes
when asked), the run's metrics (every run counted by its exit code; a success's duration and rows, and the
SuccessfulRuns the missed-run alarm watches) and the consumers' EventBridge event after a commit. None of them
ever changes the run's exit code."""

from __future__ import annotations

import json
import logging
from typing import Any

from runner import exits, outcome
from runner.catalog import Committed, Lineage, TableConfig
from runner.locations import Location, aws_client, aws_problem, default_region
from runner.report import console_link, console_object_link

log = logging.getLogger("runner")

SUBJECT_LIMIT = 100  # SNS refuses longer subjects

# --- the run's metrics ---------------------------------------------------------------------------------
# What a run puts in its METRICS_NAMESPACE (the template's NotebookPipeline/<stack>, which TaskRole alone may
# put in; a validation sets none and puts nothing). The one place their names are written: the template's
# MissedRunAlarm and Dashboard name them too, and tests/pipeline/test_dashboard.py holds them to these.
JOB = "Job"  # dimension: the stack (METRICS_JOB)
EXIT_CODE = "ExitCode"  # dimension: the run's exit code ("0" a success; runner/exits.py: what each means)
RUNS = "Runs"  # 1 for every run that finishes, whatever its outcome: runs and failures by exit code
SUCCESSFUL_RUNS = "SuccessfulRuns"  # 1 for a success only: an hour without one is what MissedRunAlarm counts
RUN_SECONDS = "RunSeconds"  # a successful run's duration
ROWS_PUBLISHED = "RowsPublished"  # the rows a successful run published
# Each metric's dimensions: CloudWatch tells metrics apart by name and every dimension, so a graph or an
# alarm must name exactly these.
METRICS: dict[str, tuple[str, ...]] = {
    RUNS: (JOB, EXIT_CODE),
    SUCCESSFUL_RUNS: (JOB,),
    RUN_SECONDS: (JOB,),
    ROWS_PUBLISHED: (JOB,),
}
UNITS = {RUNS: "Count", SUCCESSFUL_RUNS: "Count", RUN_SECONDS: "Seconds", ROWS_PUBLISHED: "Count"}


def region() -> str:
    return default_region() or "us-east-1"


def report_lines(manifest: dict[str, Any]) -> list[str]:
    """Where the report is: its page in the S3 console (report.py's console_object_link) and the command
    that copies it; or why there is none."""
    report = str(manifest["report"])
    if not report.startswith("s3://"):  # not stored (and why), none, or a local path
        return [f"Report:   {report}"]
    return [f"Report:   {console_object_link(Location(report), region())}", f"Copy:     aws s3 cp {report} ."]


def mail(manifest: dict[str, Any]) -> tuple[str, str]:
    """The subject and body of the run's mail."""
    status = manifest["status"]
    subject = (
        f"[notebook-runner] {status.upper()}: {manifest['notebook']} for {manifest['date']} "
        f"(exit {manifest['exit_code']})"
    )
    browse = console_link(Location(manifest["report_uri"]), region()) if manifest["report_uri"] else "-"
    lines = [
        (
            f"Run {manifest['run_id']} of {manifest['notebook']} for {manifest['date']} {status}"
            f" with exit code {manifest['exit_code']} ({manifest['meaning']})."
        ),
        "",
        manifest["message"],
        "",
        f"Image:    {manifest['image']}",
        f"Step:     {manifest['failed_step'] or '-'}",
        f"Rows:     {manifest['rows'] if manifest['rows'] is not None else '-'}",
        f"Duration: {manifest['duration_seconds']} s",
        f"Output:   {outcome.said(manifest)}",
        f"Table:    {manifest.get('table') or '-'} at {manifest['output_uri'] or '-'}",
    ]
    if manifest.get("not_published"):
        lines.append(f"Left out: {len(manifest['not_published'])} hidden file(s) in staging, not published")
    lines += [*report_lines(manifest), f"Browse:   {browse}"]
    return subject[:SUBJECT_LIMIT], "\n".join(lines)


def notify(topic_arn: str, manifest: dict[str, Any]) -> None:
    subject, body = mail(manifest)
    try:
        aws_client("sns", region=topic_arn.split(":")[3]).publish(
            TopicArn=topic_arn, Subject=subject, Message=body
        )
        log.info("notified %s", topic_arn)
    except Exception as exc:  # noqa: BLE001 -- a failed notification must not hide the run's exit code
        log.warning("could not notify %s (%s): check the role's sns:Publish", topic_arn, aws_problem(exc))


def run_metrics(job: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The metric data of a finished run: Runs by its exit code, always; SuccessfulRuns, RunSeconds and
    RowsPublished (when it published rows) for a success only."""
    dimensions = {JOB: job, EXIT_CODE: str(manifest["exit_code"])}
    values: dict[str, float] = {RUNS: 1}
    if manifest["exit_code"] == exits.OK.code:
        values |= {SUCCESSFUL_RUNS: 1, RUN_SECONDS: manifest["duration_seconds"]}
        if manifest["rows"] is not None:
            values[ROWS_PUBLISHED] = manifest["rows"]
    return [
        {"MetricName": name, "Dimensions": [{"Name": d, "Value": dimensions[d]} for d in METRICS[name]],
         "Value": value, "Unit": UNITS[name]}
        for name, value in values.items()
    ]  # fmt: skip


def put_run_metrics(namespace: str, job: str, manifest: dict[str, Any]) -> None:
    """Every finished run is counted (Runs, by exit code); only a success puts SuccessfulRuns: a day without
    one is what the missed-run alarm sees."""
    data = run_metrics(job, manifest)
    names = ", ".join(d["MetricName"] for d in data)
    try:
        aws_client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data)
        log.info("put %s (exit code %s) for job %s in %s", names, manifest["exit_code"], job, namespace)
    except Exception as exc:  # noqa: BLE001 -- the run's outcome stands whatever its metrics
        success = manifest["exit_code"] == exits.OK.code
        missed = "the missed-run alarm may fire" if success else "the dashboard does not count it"
        log.warning(
            "could not put the run's metrics in %s (%s): %s; check the task role's cloudwatch:PutMetricData",
            namespace, aws_problem(exc), missed,
        )  # fmt: skip


# --- the consumers' event -------------------------------------------------------------

# What a consumer's EventBridge rule matches on, with the source (EVENT_SOURCE, per stack in AWS):
# template/pipeline.yaml grants exactly these; a test holds the two equal.
EVENT_DETAIL_TYPE = "Iceberg table partition published"


def announce(config: TableConfig, committed: Committed, lineage: Lineage) -> str:
    """One EventBridge event for the commit; returns '' or what went wrong (the data is published either
    way: the caller says consumers were not told)."""
    if not config.event_bus:
        return ""
    detail = {
        "table": committed.table, "location": config.location.uri, "date": lineage.date,
        "snapshot_id": committed.snapshot_id, "rows": committed.rows, "run_id": lineage.run_id,
        "commit": lineage.commit, "image": lineage.image,
    }  # fmt: skip
    entry = {
        "Source": config.event_source, "DetailType": EVENT_DETAIL_TYPE, "Detail": json.dumps(detail),
        "EventBusName": config.event_bus,
    }  # fmt: skip
    try:
        reply = aws_client("events").put_events(Entries=[entry])
    except Exception as exc:  # noqa: BLE001 -- reported by the caller
        return aws_problem(exc)
    if reply.get("FailedEntryCount"):
        first = (reply.get("Entries") or [{}])[0]
        return f"{first.get('ErrorCode', '?')}: {first.get('ErrorMessage', '')}"
    return ""
