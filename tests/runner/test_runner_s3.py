"""The runner against S3, Glue, EventBridge and SNS, through moto server over HTTP: read the lake from S3,
publish to the Iceberg table in the Glue catalog (files on S3), tell consumers on the event bus, keep
reports in S3, announce failures (and successes when asked) on the topic."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import boto3
import pytest
from support import SAMPLE_DATE, SAMPLE_LAKE, Run, docker_run, make_notebook, write_rows_cell

from runner import notify

REGION = "eu-west-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


class Aws:
    """boto3 clients on the moto server, and the buckets, topic and queue of one test."""

    def __init__(self, endpoint: str) -> None:
        session = boto3.Session(
            region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        self.endpoint = endpoint
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.sns = session.client("sns", endpoint_url=endpoint)
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.cloudwatch = session.client("cloudwatch", endpoint_url=endpoint)
        self.glue = session.client("glue", endpoint_url=endpoint)
        self.events = session.client("events", endpoint_url=endpoint)
        suffix = uuid4().hex[:8]
        self.database = f"lake_{suffix}"  # the stack's Glue database
        self.glue.create_database(DatabaseInput={"Name": self.database})
        self.job = f"notebook-pipeline-{suffix}"
        self.lake, self.output = f"lake-{suffix}", f"output-{suffix}"
        for bucket in (self.lake, self.output):
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        for path in SAMPLE_LAKE.rglob("*.json"):
            self.s3.upload_file(str(path), self.lake, f"snapshots/{path.relative_to(SAMPLE_LAKE)}")
        self.topic = self.sns.create_topic(Name=f"runs-{suffix}")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName=f"mail-{suffix}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        # Keys ending in / are the empty "folder" markers pyarrow creates as it writes: not data.
        return sorted(
            o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")
        )

    def notifications(self, wait: float = 10) -> list[dict]:
        deadline, found = time.monotonic() + wait, []
        while time.monotonic() < deadline and not found:
            reply = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            found = [json.loads(m["Body"]) for m in reply.get("Messages", [])]
        return found

    def metric(self, name: str, **dimensions: str) -> float | None:
        """The Sum of this test's job's metric (with these other dimensions) over the last hour, as the
        missed-run alarm and the dashboard read it."""
        now = time.time()
        named = [
            {"Name": "Job", "Value": self.job},
            *({"Name": k, "Value": v} for k, v in dimensions.items()),
        ]
        points = self.cloudwatch.get_metric_statistics(
            Namespace="NotebookPipeline", MetricName=name, Dimensions=named,
            StartTime=now - 3600, EndTime=now + 60, Period=3600, Statistics=["Sum"],
        )["Datapoints"]  # fmt: skip
        return sum(p["Sum"] for p in points) if points else None

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "DATA_URI": f"s3://{self.lake}/snapshots",
            "OUTPUT_URI": f"s3://{self.output}/usp/output",
            "OUTPUT_TABLE": f"{self.database}.usp",
            "RUN_DATE": SAMPLE_DATE,
            **extra,
        }

    def table(self) -> Any:
        """The published table, loaded from the Glue catalog as a consumer would."""
        from pyiceberg.catalog.glue import GlueCatalog

        keys = {"access-key-id": "testing", "secret-access-key": "testing", "region": REGION}
        props = {f"{service}.{k}": v for service in ("glue", "s3") for k, v in keys.items()}
        catalog = GlueCatalog(
            "glue", **props, **{"glue.endpoint": self.endpoint, "s3.endpoint": self.endpoint}
        )
        return catalog.load_table(f"{self.database}.usp")

    def day(self, date: str = SAMPLE_DATE) -> Any:
        from pyiceberg.expressions import EqualTo

        return self.table().scan(row_filter=EqualTo("date", date)).to_arrow()


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[Aws]:
    yield Aws(moto_endpoint)


@dataclass
class Daily:
    aws: Aws
    run: Run
    source: str  # its EVENT_SOURCE
    events: str  # the queue the consumers' rule sends the events of its bus to


@pytest.fixture(scope="module")
def daily(runner_image: str, moto_endpoint: str) -> Daily:
    """One successful run on S3 with every channel a run tells: the consumers' event bus, the metrics and the
    topic (NOTIFY_ON_SUCCESS); each test below reads what one of them was told."""
    aws = Aws(moto_endpoint)
    source, bus = f"notebook-pipeline.{aws.database}", f"consumers-{aws.database}"  # a stack's own source
    aws.events.create_event_bus(Name=bus)
    queue = aws.sqs.create_queue(QueueName=f"events-{aws.database}")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": [source], "detail-type": [notify.EVENT_DETAIL_TYPE]}
    aws.events.put_rule(Name="published", EventBusName=bus, EventPattern=json.dumps(pattern))
    aws.events.put_targets(Rule="published", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    env = aws.env(
        EVENT_BUS=bus, EVENT_SOURCE=source, RUN_ID="told", METRICS_NAMESPACE="NotebookPipeline",
        METRICS_JOB=aws.job, SNS_TOPIC_ARN=aws.topic, NOTIFY_ON_SUCCESS="true",
    )  # fmt: skip

    run = docker_run(runner_image, env, network_host=True)

    assert run.code == 0, run.stderr
    return Daily(aws, run, source, queue)


def test_reads_the_lake_from_s3_and_publishes_to_s3(daily: Daily) -> None:
    aws, run = daily.aws, daily.run

    assert aws.day().num_rows == 3000
    (key,) = aws.keys(aws.output, f"usp/output/data/date={SAMPLE_DATE}/")
    assert key.endswith(".parquet")
    assert (
        aws.glue.get_table(DatabaseName=aws.database, Name="usp")["Table"]["Parameters"]["table_type"]
        == "ICEBERG"
    )
    reports = aws.keys(aws.output, f"usp/output/_runs/date={SAMPLE_DATE}/")
    names = sorted(k.rsplit("/", 1)[1] for k in reports)
    assert names == ["check.txt", "manifest.json", "usp.html", "usp.ipynb"]  # and no staging copy left
    manifest_key = next(k for k in reports if k.endswith("manifest.json"))
    facts = json.loads(aws.s3.get_object(Bucket=aws.output, Key=manifest_key)["Body"].read())
    assert facts["status"] == "succeeded"
    assert facts["rows"] == 3000
    assert facts["output_uri"] == f"s3://{aws.output}/usp/output"
    assert facts["table"] == f"{aws.database}.usp"
    assert facts["snapshot_id"] == aws.table().current_snapshot().snapshot_id
    assert run.last_line.endswith(f"s3://{aws.output}/{manifest_key.rsplit('/', 1)[0]}/usp.html")


def test_a_rerun_on_s3_replaces_the_days_rows_in_one_commit(runner_image: str, aws: Aws) -> None:
    first = docker_run(runner_image, aws.env(RUN_ID="first"), network_host=True)
    second = docker_run(runner_image, aws.env(RUN_ID="second"), network_host=True)

    assert (first.code, second.code) == (0, 0), second.stderr
    assert aws.day().num_rows == 3000
    table = aws.table()
    runs = [s.summary.additional_properties.get("notebook-pipeline.run-id") for s in table.snapshots()]
    assert runs == ["first", "second", "second"]  # the first run's append; the second's delete and append
    # The AWS table's history and a restore, as the README has an engineer run them with their credentials
    listed = docker_run(runner_image, aws.env(), network_host=True, args=("history", "--date", SAMPLE_DATE))
    assert listed.code == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if "snapshot" in line]
    assert [line.split("  run ")[1].split()[0] for line in lines] == ["first", "second"]
    assert lines[-1].startswith("* ")
    first = lines[0].split("snapshot ")[1].split()[0]
    back = docker_run(
        runner_image,
        aws.env(),
        network_host=True,
        args=("restore", "--date", SAMPLE_DATE, "--snapshot", first),
    )
    assert back.code == 0 and f"as it was at snapshot {first}: 3000 rows" in back.stdout, back.stderr


def test_a_published_day_is_announced_on_the_event_bus(daily: Daily) -> None:
    aws = daily.aws

    reply = aws.sqs.receive_message(QueueUrl=daily.events, MaxNumberOfMessages=10, WaitTimeSeconds=5)

    (event,) = [json.loads(m["Body"]) for m in reply.get("Messages", [])]
    assert (event["source"], event["detail-type"]) == (daily.source, notify.EVENT_DETAIL_TYPE)
    snapshot = aws.table().current_snapshot().snapshot_id
    assert event["detail"] == {
        "table": f"{aws.database}.usp", "location": f"s3://{aws.output}/usp/output", "date": SAMPLE_DATE,
        "snapshot_id": snapshot, "rows": 3000, "run_id": "told", "commit": "test",
        "image": "notebook-runner:test",
    }  # fmt: skip


def test_a_successful_run_puts_the_metric_the_missed_run_alarm_watches(daily: Daily) -> None:
    aws = daily.aws

    assert (
        "put Runs, SuccessfulRuns, RunSeconds, RowsPublished (exit code 0) "
        f"for job {aws.job} in NotebookPipeline"
    ) in daily.run.stderr
    assert aws.metric("SuccessfulRuns") == 1
    assert aws.metric("Runs", ExitCode="0") == 1
    assert aws.metric("RowsPublished") == 3000
    assert aws.metric("RunSeconds") is not None


def test_success_is_announced_when_asked(daily: Daily) -> None:
    (note,) = daily.aws.notifications()

    assert note["Subject"] == f"[notebook-runner] SUCCEEDED: usp for {SAMPLE_DATE} (exit 0)"
    assert "Rows:     3000" in note["Message"]


def test_a_bus_that_refuses_the_event_is_on_the_last_line_and_the_day_is_published(
    runner_image: str, aws: Aws
) -> None:
    run = docker_run(
        runner_image, aws.env(EVENT_BUS="no-such-bus", SNS_TOPIC_ARN=aws.topic), network_host=True
    )

    assert run.code == 0, run.stderr
    assert "consumers were NOT told (" in run.last_line
    assert aws.day().num_rows == 3000
    assert aws.notifications(wait=2) == []  # a success is not mailed unless asked (NOTIFY_ON_SUCCESS)


def test_failure_is_announced_on_the_topic_and_nothing_is_published(
    runner_image: str, aws: Aws, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "nb" / "dupes.ipynb", write_rows_cell("[(1, 100, 'spa', 7)] * 2"))
    env = aws.env(SNS_TOPIC_ARN=aws.topic, NOTEBOOK="/nb/dupes.ipynb")

    run = docker_run(runner_image, env, {tmp_path / "nb": "/nb:ro"}, network_host=True)

    assert run.code == 20, run.stderr
    assert aws.keys(aws.output, "usp/output/data/") == []
    assert aws.glue.get_tables(DatabaseName=aws.database)["TableList"] == []
    staged = aws.keys(aws.output, "usp/output/_runs/")
    assert any("/staging/date=2019-08-01/part-0.parquet" in k for k in staged)  # kept for the post-mortem
    (note,) = aws.notifications()
    assert note["Subject"] == f"[notebook-runner] FAILED: dupes for {SAMPLE_DATE} (exit 20)"
    assert "with exit code 20 (the check failed)" in note["Message"]
    assert "duplicated pairs" in note["Message"]
    report = f"usp/output/_runs/date={SAMPLE_DATE}/"
    assert (
        f"Report:   https://s3.console.aws.amazon.com/s3/object/{aws.output}?region={REGION}&prefix={report}"
    ) in note["Message"]  # the report's page in the console, then how to copy it
    assert f"Copy:     aws s3 cp s3://{aws.output}/{report}" in note["Message"]
    assert (
        f"Browse:   https://s3.console.aws.amazon.com/s3/buckets/{aws.output}?region={REGION}&prefix={report}"
    ) in note["Message"]
    # what became of the output: the mail says the last line's sentence (nothing published: asserted above)
    (output,) = [line for line in note["Message"].splitlines() if line.startswith("Output:")]
    assert output.removeprefix("Output:").strip() in run.last_line


def test_a_failed_run_is_counted_by_its_exit_code_and_a_notification_that_fails_never_hides_it(
    runner_image: str, aws: Aws
) -> None:
    missing_topic = aws.topic + "-deleted"
    env = aws.env(
        METRICS_NAMESPACE="NotebookPipeline", METRICS_JOB=aws.job, SNS_TOPIC_ARN=missing_topic,
        RUN_DATE="2019-08-02",  # no such partition: the notebook fails
    )  # fmt: skip

    run = docker_run(runner_image, env, network_host=True)

    assert run.code == 10, run.stderr
    assert "FAILED (exit 10, notebook)" in run.last_line
    assert f"could not notify {missing_topic}" in run.stderr
    assert_counted_as_failed(aws, 10)


def test_a_configuration_refused_before_it_is_read_is_counted_too(runner_image: str, aws: Aws) -> None:
    env = aws.env(METRICS_NAMESPACE="NotebookPipeline", METRICS_JOB=aws.job, RUN_DATE="2019-02-30")

    run = docker_run(runner_image, env, network_host=True)

    assert run.code == 2, run.stderr
    assert_counted_as_failed(aws, 2)


def assert_counted_as_failed(aws: Aws, code: int) -> None:
    assert aws.metric("Runs", ExitCode=str(code)) == 1
    assert aws.metric("SuccessfulRuns") is None
    assert aws.metric("RunSeconds") is None


def test_a_report_that_cannot_be_stored_is_said_so_on_the_last_line(runner_image: str, aws: Aws) -> None:
    missing = f"s3://{aws.output}-gone/reports"
    run = docker_run(
        runner_image, aws.env(REPORT_URI=missing, SNS_TOPIC_ARN=aws.topic), network_host=True
    )  # the notebook cannot write its staging copy there either: it fails, and so does storing its report

    assert run.code == 10, run.stderr
    assert f"report: not stored: writing {missing}/date={SAMPLE_DATE}/" in run.last_line
    assert "NoSuchBucket" in run.last_line
    (note,) = aws.notifications()
    assert "Report:   not stored: writing" in note["Message"]


def test_a_table_whose_glue_database_is_missing_says_so(runner_image: str, aws: Aws) -> None:
    run = docker_run(runner_image, aws.env(OUTPUT_TABLE="no_such_db.usp"), network_host=True)

    assert run.code == 30, run.stderr
    assert "the glue catalog has no database no_such_db for the table no_such_db.usp: deploy the stack" in (
        run.last_line
    )
    assert "nothing was published" in run.last_line
