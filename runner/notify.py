"""Tell people and CloudWatch how the run went: the SNS mail (failures, and successes when asked) and the
metrics the missed-run alarm watches. Neither ever changes the run's exit code."""

from __future__ import annotations

import logging
from typing import Any

from runner.locations import Location, aws_client, aws_problem, default_region
from runner.report import console_link

log = logging.getLogger("runner")

SUBJECT_LIMIT = 100  # SNS refuses longer subjects


def region() -> str:
    return default_region() or "us-east-1"


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
        f"Output:   {manifest['output_uri'] if status == 'succeeded' else 'nothing published'}",
        f"Report:   {manifest['report']}",
        f"Browse:   {browse}",
    ]
    if manifest.get("not_published"):
        lines.insert(
            -2, f"Left out: {len(manifest['not_published'])} hidden file(s) in staging, not published"
        )
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


def put_success_metrics(namespace: str, job: str, manifest: dict[str, Any]) -> None:
    """Only successful runs put SuccessfulRuns: a day without one is what the missed-run alarm sees."""
    dimensions = [{"Name": "Job", "Value": job}]
    data = [
        {"MetricName": "SuccessfulRuns", "Dimensions": dimensions, "Value": 1, "Unit": "Count"},
        {"MetricName": "RunSeconds", "Dimensions": dimensions, "Value": manifest["duration_seconds"],
         "Unit": "Seconds"},
    ]  # fmt: skip
    if manifest["rows"] is not None:
        data.append({"MetricName": "RowsPublished", "Dimensions": dimensions, "Value": manifest["rows"],
                     "Unit": "Count"})  # fmt: skip
    try:
        aws_client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data)
        log.info("put SuccessfulRuns for job %s in %s", job, namespace)
    except Exception as exc:  # noqa: BLE001 -- the output is published: the run succeeded
        log.warning(
            "could not put the success metric in %s (%s): the missed-run alarm may fire; check the task "
            "role's cloudwatch:PutMetricData", namespace, aws_problem(exc),
        )  # fmt: skip
