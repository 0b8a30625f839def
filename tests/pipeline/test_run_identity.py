"""A daily run's every request, held to the role that signed it. The runner image runs as the task
definition configures it (its environment resolved from the template), with the task's credentials served
as ECS serves them, against moto behind an IAM-enforcing proxy (iam.py) that authorizes each request for
the template's role of the key that signed it: TaskRole for the runner, NotebookRole for the notebook's
code, whose keys the runner got from STS for it. A notebook that reaches for the powers of the trusted
steps is refused, and so is any request nobody signed."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import iam
import pytest
from cfn import defaults, resolve, statements
from support import (
    SAMPLE_DATE,
    SAMPLE_LAKE,
    SEARCH,
    Run,
    docker_run,
    make_notebook,
    moto_server,
    searched,
    write_rows_cell,
)
from test_runs import RESOURCES, VALUES

pytestmark = pytest.mark.docker

REGION = "us-east-1"
ARNS = {
    "TaskRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/run",
    "NotebookRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/notebook",
    "ValidationTaskRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/validate-run",
    "ValidationNotebookRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/validate-notebook",
    "TaskExecutionRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/pull",
    "AlertKey.Arn": f"arn:aws:kms:{REGION}:{iam.ACCOUNT}:key/alerts",
}
STACK_VALUES = {**defaults(), **VALUES, **ARNS}  # every parameter not set here at its default
ROLE_NAMES = {arn: name.split(".")[0] for name, arn in ARNS.items()}


def role_statements(*roles: str) -> dict[str, list[dict[str, Any]]]:
    """The template's statements of these roles, resolved for this stack."""
    return {role: [cfn_resolve(s) for s in statements(RESOURCES, role).values()] for role in roles}


def cfn_resolve(value: Any) -> Any:
    return resolve(value, STACK_VALUES)


# Tries, with whatever credentials it finds, what only the trusted steps or promotion may do; then writes
# good rows. Prints what each attempt got.
ADVERSARY = """
import json
import boto3
identity = boto3.client("sts").get_caller_identity()["Arn"]
attempts = {}
def attempt(name, call):
    try:
        call()
        attempts[name] = "ALLOWED"
    except Exception as exc:
        attempts[name] = f"{type(exc).__name__}: {exc}"[:300]
s3 = boto3.client("s3")
containers = [{"name": "runner", "image": "evil"}]
definition = {"family": family, "taskRoleArn": task_role, "containerDefinitions": containers}
attempt("register_task_definition", lambda: boto3.client("ecs").register_task_definition(**definition))
attempt("put_image", lambda: boto3.client("ecr").put_image(
    repositoryName="usp", imageManifest="{}", imageTag="validated"))
attempt("put_parameter", lambda: boto3.client("ssm").put_parameter(
    Name=parameter, Value="evil", Type="String", Overwrite=True))
attempt("put_metric_data", lambda: boto3.client("cloudwatch").put_metric_data(
    Namespace=namespace, MetricData=[{"MetricName": "SuccessfulRuns", "Value": 1}]))
attempt("sns_publish", lambda: boto3.client("sns").publish(TopicArn=topic, Message="all is well"))
published = f"{prefix}/metadata/00000-published.metadata.json"  # IAM refuses before S3 looks for it
evil = f"{prefix}/data/date={date}/evil.parquet"
attempt("write_published", lambda: s3.put_object(Bucket=bucket, Key=evil, Body=b"x"))
attempt("delete_published", lambda: s3.delete_object(Bucket=bucket, Key=published))
report = f"{prefix}/_runs/date={date}/other/manifest.json"
attempt("write_a_report", lambda: s3.put_object(Bucket=bucket, Key=report, Body=b"{}"))
attempt("read_published", lambda: s3.get_object(Bucket=bucket, Key=published))
attempt("write_another_runs_staging", lambda: s3.put_object(
    Bucket=staging, Key=f"daily/date={date}/other-run/date={date}/part-0.parquet", Body=b"x"))
glue = boto3.client("glue")
table = {"Name": "usp", "TableType": "EXTERNAL_TABLE", "Parameters": {"metadata_location": "s3://evil/x.json"}}
attempt("glue_update_table", lambda: glue.update_table(DatabaseName=database, TableInput=table))
other = {**table, "Name": "x"}
attempt("glue_create_table", lambda: glue.create_table(DatabaseName=database, TableInput=other))
attempt("put_events", lambda: boto3.client("events").put_events(Entries=[{
    "Source": source, "DetailType": "Iceberg table partition published", "Detail": "{}"}]))
print("ATTEMPTS " + json.dumps({"identity": identity, "attempts": attempts}))
"""
FORBIDDEN = {
    "register_task_definition", "put_image", "put_parameter", "put_metric_data", "sns_publish",
    "write_published", "delete_published", "write_a_report", "read_published", "write_another_runs_staging",
    "glue_update_table", "glue_create_table", "put_events",
}  # fmt: skip


@dataclass
class Stack:
    """moto with the stack's buckets and topic, behind the IAM proxy; the task's credential endpoint."""

    iam: iam.Iam
    endpoint: str
    moto: str
    credentials_uri: str
    credentials_token: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.moto,
                            aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip

    def table_day(self, name: str, date: str) -> Any:
        """The rows of date in the published table, read from moto's Glue catalog as a consumer would."""
        from pyiceberg.catalog.glue import GlueCatalog
        from pyiceberg.expressions import EqualTo

        keys = {"access-key-id": "setup", "secret-access-key": "setup", "region": REGION}
        props = {f"{service}.{k}": v for service in ("glue", "s3") for k, v in keys.items()}
        catalog = GlueCatalog("glue", **props, **{"glue.endpoint": self.moto, "s3.endpoint": self.moto})
        return catalog.load_table(name).scan(row_filter=EqualTo("date", date)).to_arrow()

    def keys(self, bucket: str, prefix: str) -> list[str]:
        listed = self.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return sorted(o["Key"] for o in listed if not o["Key"].endswith("/"))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    roles = role_statements("TaskRole", "NotebookRole")
    enforcer = iam.Iam(roles, ROLE_NAMES)
    task_key = enforcer.give("AKIATASKROLE0000000", "TaskRole")
    with (
        moto_server() as moto,
        iam.enforcing(enforcer, moto) as endpoint,
        iam.container_credentials(task_key) as creds,
    ):
        s3 = boto3.client(
            "s3", region_name=REGION, endpoint_url=moto, aws_access_key_id="s", aws_secret_access_key="s"
        )
        for bucket in (VALUES["DataLakeBucket"], VALUES["OutputBucket"], VALUES["StagingBucket"]):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(  # as the template's StagingBucket
            Bucket=VALUES["StagingBucket"], VersioningConfiguration={"Status": "Enabled"}
        )
        for path in SAMPLE_LAKE.rglob("*.json"):
            s3.upload_file(
                str(path),
                VALUES["DataLakeBucket"],
                f"{VALUES['DataLakePrefix']}/{path.relative_to(SAMPLE_LAKE)}",
            )
        sns = boto3.client(
            "sns", region_name=REGION, endpoint_url=moto, aws_access_key_id="s", aws_secret_access_key="s"
        )
        assert sns.create_topic(Name="alerts")["TopicArn"] == VALUES["AlertTopic"]
        glue = boto3.client(
            "glue", region_name=REGION, endpoint_url=moto, aws_access_key_id="s", aws_secret_access_key="s"
        )
        glue.create_database(DatabaseInput={"Name": VALUES["TableDatabase"]})  # the stack's TableDatabase
        yield Stack(enforcer, endpoint, moto, *creds)


def task_environment(stack: Stack, values: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the task definition sets it for these stack values, with the task's
    credentials as ECS serves them, for a run of SAMPLE_DATE."""
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: str(resolve(e["Value"], values)) for e in container["Environment"]}
    return env | {
        "AWS_ENDPOINT_URL": stack.endpoint,
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,  # Fargate sets both
        "RUN_DATE": SAMPLE_DATE,
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": stack.credentials_uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": stack.credentials_token,
    }  # fmt: skip


def daily_run(stack: Stack, image: str, nb_dir: Path, **extra: str) -> Run:
    """The image run as the task definition configures it, with the task's credentials as ECS serves them."""
    return docker_run(
        image, task_environment(stack, STACK_VALUES) | extra, {nb_dir: "/nb:ro"}, network_host=True
    )


@pytest.fixture(scope="module")
def runs(stack: Stack, runner_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """A run that publishes, a rerun of the day, a run whose output fails its check, and an adversary."""
    nb_dir = tmp_path_factory.mktemp("notebooks")
    nb_dir.chmod(0o755)
    run_env = task_environment(stack, STACK_VALUES)  # the stack's own metrics namespace and event source
    make_notebook(nb_dir / "dupes.ipynb", write_rows_cell("[(1, 100, 'spa', 7)] * 2"))
    make_notebook(nb_dir / "adversary.ipynb", ADVERSARY, write_rows_cell())
    params = json.dumps({
        "family": f"{VALUES['AWS::StackName']}-run", "task_role": ARNS["TaskRole.Arn"],
        "parameter": f"/{VALUES['AWS::StackName']}/validated-image", "topic": VALUES["AlertTopic"],
        "bucket": VALUES["OutputBucket"], "prefix": VALUES["OutputPrefix"],
        "staging": VALUES["StagingBucket"], "database": VALUES["TableDatabase"],
        "namespace": run_env["METRICS_NAMESPACE"], "source": run_env["EVENT_SOURCE"],
    })  # fmt: skip
    markers = [stack.credentials_token, "AKIATASKROLE", urllib.parse.urlsplit(stack.credentials_uri).path]
    make_notebook(nb_dir / "search.ipynb", SEARCH.format(markers=markers), write_rows_cell())
    return {
        "search": daily_run(stack, runner_image, nb_dir, NOTEBOOK="/nb/search.ipynb"),
        "first": daily_run(stack, runner_image, nb_dir),
        "rerun": daily_run(stack, runner_image, nb_dir),
        "bad": daily_run(stack, runner_image, nb_dir, NOTEBOOK="/nb/dupes.ipynb"),
        "adversary": daily_run(
            stack, runner_image, nb_dir, NOTEBOOK="/nb/adversary.ipynb", NOTEBOOK_PARAMS=params
        ),
    }


def test_each_run_ends_as_its_notebook_deserves(runs: dict[str, Run]) -> None:
    codes = {name: run.code for name, run in runs.items()}

    assert codes == {"search": 0, "first": 0, "rerun": 0, "bad": 20, "adversary": 0}, runs[
        "adversary"
    ].stderr[-3000:]


def test_the_kernel_finds_neither_the_tasks_credentials_nor_their_uri_with_a_notebook_role(
    runs: dict[str, Run],
) -> None:
    found = searched(runs["search"])

    assert found["found"] == []
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in found["names"]  # the runner's endpoint for NotebookRole
    assert not {"AWS_ACCESS_KEY_ID", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "OUTPUT_URI"} & set(
        found["names"]
    )


def test_every_request_is_signed_by_a_key_of_the_runs_two_roles(stack: Stack, runs: dict[str, Run]) -> None:
    unsigned = [d for d in stack.iam.decisions if d.key is None]
    strangers = sorted({d.key for d in stack.iam.decisions if d.key and d.role is None})

    assert runs and unsigned == [], f"requests nobody signed (pyarrow without credentials?): {unsigned[:5]}"
    assert strangers == []
    assert {d.role for d in stack.iam.decisions} == {"TaskRole", "NotebookRole"}


def test_the_notebook_reads_the_lake_and_writes_its_staging_as_notebook_role(
    stack: Stack, runs: dict[str, Run]
) -> None:
    notebook = stack.iam.by_role("NotebookRole")
    lake = f"arn:aws:s3:::{VALUES['DataLakeBucket']}/"
    staging = f"arn:aws:s3:::{VALUES['StagingBucket']}/daily/date={SAMPLE_DATE}/"

    assert runs
    assert any(c.action == "s3:GetObject" and c.resource.startswith(lake) for d in notebook for c in d.checks)
    puts = [c.resource for d in notebook if d.allowed for c in d.checks if c.action == "s3:PutObject"]
    data = [r for r in puts if not r.endswith("/")]  # and the folder markers pyarrow puts above them
    assert data and all(r.startswith(staging) for r in data)
    assert all(r.startswith(f"arn:aws:s3:::{VALUES['StagingBucket']}/") for r in puts)
    task = stack.iam.by_role("TaskRole")
    assert not [
        c for d in task for c in d.checks if c.resource.startswith(lake)
    ]  # the runner never reads the lake


def test_the_trusted_steps_are_allowed_everything_they_ask(stack: Stack, runs: dict[str, Run]) -> None:
    denied = [(d.method, d.path, d.actions) for d in stack.iam.by_role("TaskRole") if not d.allowed]
    actions = {c.action for d in stack.iam.by_role("TaskRole") for c in d.checks}

    assert runs and denied == []
    assert {
        "s3:PutObject",
        "s3:GetObject",
        "sts:AssumeRole",
        "sns:Publish",
        "cloudwatch:PutMetricData",
        "glue:GetTable",
        "glue:GetDatabase",
        "glue:CreateTable",
        "glue:UpdateTable",
        "events:PutEvents",
    } <= actions


def test_a_notebook_reaching_for_the_trusted_powers_is_refused_each_time(
    stack: Stack, runs: dict[str, Run]
) -> None:
    (line,) = [line for line in runs["adversary"].stderr.splitlines() if "ATTEMPTS {" in line]
    seen = json.loads(line.split("ATTEMPTS ", 1)[1])
    denied = {a for d in stack.iam.by_role("NotebookRole") if not d.allowed for a in d.actions}

    assert seen["identity"].startswith(f"arn:aws:sts::{iam.ACCOUNT}:assumed-role/notebook/notebook-")
    assert set(seen["attempts"]) == FORBIDDEN
    assert {k: v for k, v in seen["attempts"].items() if "AccessDenied" not in v} == {}
    detail = [(d.method, d.path) for d in stack.iam.by_role("NotebookRole") if not d.allowed]
    assert denied == {
        "ecs:RegisterTaskDefinition", "iam:PassRole", "ecr:PutImage", "ssm:PutParameter",
        "cloudwatch:PutMetricData", "sns:Publish", "s3:PutObject", "s3:DeleteObject", "s3:GetObject",
        "glue:UpdateTable", "glue:CreateTable", "events:PutEvents",
    }, detail  # fmt: skip
    data = stack.keys(VALUES["OutputBucket"], f"{VALUES['OutputPrefix']}/data/")
    assert data and not [k for k in data if k.endswith("evil.parquet")]


def test_the_runs_notebook_role_is_the_one_only_the_task_role_may_assume(runs: dict[str, Run]) -> None:
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    (trust,) = RESOURCES["NotebookRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]

    assert environment["NOTEBOOK_ROLE_ARN"] == {"Fn::GetAtt": ["NotebookRole", "Arn"]}
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": ["TaskRole", "Arn"]}}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert all(f"assumed {ARNS['NotebookRole.Arn']} for the notebook" in run.stderr for run in runs.values())
