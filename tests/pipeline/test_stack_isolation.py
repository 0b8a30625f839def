"""What one stack's or one run's untrusted code could reach past its own, refused by IAM: requests signed by
a role's key go through the IAM proxy (iam.py) to moto over HTTP, and are authorized from the template's own
statements, resolved for the stack whose role signed them. In process, with boto3 and pyarrow clients: no
image runs (test_run_identity.py and test_buildspecs.py run the image through the same proxy).

- One stack cannot speak for another: a stack's TaskRole puts metrics in its own namespace (the one its
  missed-run alarm watches) and events with its own source, and neither another stack's nor the namespace
  and source every stack once shared.
- A notebook's folder markers (the empty key/ pyarrow puts above what it writes) stay above its own run's
  staging folder: none inside another run's folder or another day's, for the daily run and the validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import iam
import pytest
from botocore.exceptions import ClientError
from cfn import defaults, resolve, statements
from test_runs import RESOURCES, VALUES

REGION = "us-east-1"
STACKS = ("notebook-pipeline-usp", "notebook-pipeline-adr")  # two models' stacks in one account
RUN_DATE = "2019-08-01"
RUN_ID = "20261122T053401Z-b805a3"
STAGING = f"{STACKS[0]}-staging"  # the first stack's staging bucket


def stack_values(stack: str) -> dict[str, Any]:
    """What CloudFormation resolves a stack's references to (every parameter not set here at its default)."""
    roles = ("TaskRole", "NotebookRole", "ValidationTaskRole", "ValidationNotebookRole", "TaskExecutionRole")
    arns = {f"{role}.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/{stack}-{role}" for role in roles}
    model = stack.rsplit("-", 1)[1]  # two models, one account: one output bucket, each its own prefix
    return {
        **defaults(), **VALUES, **arns, "AWS::StackName": stack, "AWS::Region": REGION,
        "AlertKey.Arn": f"arn:aws:kms:{REGION}:{iam.ACCOUNT}:key/{stack}",
        "OutputPrefix": f"{model}/daily", "OutputTable": model, "TableDatabase": stack.replace("-", "_"),
        "AlertTopic": f"arn:aws:sns:{REGION}:{iam.ACCOUNT}:{stack}-alerts",
        "StagingBucket": f"{stack}-staging", "StagingBucket.Arn": f"arn:aws:s3:::{stack}-staging",
        "ImageDigestParameter": f"/{stack}/validated-image",
    }  # fmt: skip


def run_environment(stack: str) -> dict[str, str]:
    """The daily run's container environment in this stack: what its runner puts metrics and events with."""
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {e["Name"]: str(resolve(e["Value"], stack_values(stack))) for e in container["Environment"]}


def role_of(stack: str, role: str) -> str:
    return f"{role} of {stack}"


@dataclass
class Account:
    """moto behind the IAM proxy, with each stack's roles; keys handed to the roles that run code."""

    iam: iam.Iam
    endpoint: str
    moto: str

    def client(self, service: str, key: str, secret: str | None = None, token: str | None = None) -> Any:
        return boto3.client(
            service, region_name=REGION, endpoint_url=self.endpoint, aws_access_key_id=key,
            aws_secret_access_key=secret or "task-secret", aws_session_token=token,
        )  # fmt: skip

    def task_key(self, stack: str, role: str = "TaskRole") -> str:
        return f"AKIA{role.upper()}{STACKS.index(stack)}"

    def notebook_credentials(self, stack: str, notebook_role: str, task_role: str) -> dict[str, str]:
        """What the runner serves the notebook: the notebook role, assumed by the task role with the run's
        session tags (the runner's AssumeRole, through the proxy, which learns the key's role and tags)."""
        sts = self.client("sts", self.task_key(stack, task_role))
        found = sts.assume_role(
            RoleArn=stack_values(stack)[f"{notebook_role}.Arn"], RoleSessionName=f"notebook-{RUN_ID}",
            Tags=[{"Key": "run-id", "Value": RUN_ID}, {"Key": "run-date", "Value": RUN_DATE}],
        )["Credentials"]  # fmt: skip
        return {
            "key": found["AccessKeyId"], "secret": found["SecretAccessKey"], "token": found["SessionToken"]
        }  # fmt: skip


@pytest.fixture(scope="module")
def account(moto_endpoint: str) -> Iterator[Account]:
    roles, arns = {}, {}
    for stack in STACKS:
        values = stack_values(stack)
        for role in ("TaskRole", "NotebookRole", "ValidationTaskRole", "ValidationNotebookRole"):
            found = statements(RESOURCES, role, values).values()
            roles[role_of(stack, role)] = [resolve(s, values) for s in found]
            arns[values[f"{role}.Arn"]] = role_of(stack, role)
    enforcer = iam.Iam(roles, arns)
    with iam.enforcing(enforcer, moto_endpoint) as endpoint:
        created = Account(enforcer, endpoint, moto_endpoint)
        for stack in STACKS:
            for role in ("TaskRole", "ValidationTaskRole"):
                enforcer.give(created.task_key(stack, role), role_of(stack, role))
        setup = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint,
                             aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
        for bucket in [f"{stack}-staging" for stack in STACKS] + [VALUES["OutputBucket"]]:
            if bucket not in [b["Name"] for b in setup.list_buckets()["Buckets"]]:
                setup.create_bucket(Bucket=bucket)
        yield created


def refused(call: Any) -> bool:
    """Whether IAM (the proxy) refused the call; anything else that fails is the test's own error."""
    try:
        call()
    except ClientError as error:
        assert error.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException"), error.response
        return True
    return False


# --- one stack cannot speak for another --------------------------------------------------------------


def put_metric(account: Account, stack: str, namespace: str) -> bool:
    """Whether the stack's TaskRole was refused putting the runner's SuccessfulRuns in `namespace`."""
    cloudwatch = account.client("cloudwatch", account.task_key(stack))
    other = next(s for s in STACKS if s != stack)
    datum = {"MetricName": "SuccessfulRuns", "Value": 1, "Dimensions": [{"Name": "Job", "Value": other}]}
    return refused(lambda: cloudwatch.put_metric_data(Namespace=namespace, MetricData=[datum]))


def put_event(account: Account, stack: str, source: str) -> bool:
    """Whether the stack's TaskRole was refused putting the consumers' event with `source`."""
    events = account.client("events", account.task_key(stack))
    entry = {"Source": source, "DetailType": "Iceberg table partition published", "Detail": "{}",
             "EventBusName": "default"}  # fmt: skip
    return refused(lambda: events.put_events(Entries=[entry]))


@pytest.mark.parametrize("stack", STACKS)
def test_a_stacks_run_puts_metrics_in_its_own_namespace_only(account: Account, stack: str) -> None:
    """Another stack's namespace would let it put SuccessfulRuns for that stack and silence its missed-run
    alarm; the namespace every stack once shared, the same."""
    other = next(s for s in STACKS if s != stack)
    own, theirs = run_environment(stack)["METRICS_NAMESPACE"], run_environment(other)["METRICS_NAMESPACE"]

    assert put_metric(account, stack, "NotebookPipeline") is True
    assert put_metric(account, stack, "NotebookPipeline/other-stack") is True
    assert own != theirs and put_metric(account, stack, theirs) is True
    assert put_metric(account, stack, own) is False


@pytest.mark.parametrize("stack", STACKS)
def test_a_stacks_run_announces_its_own_table_only(account: Account, stack: str) -> None:
    """Another stack's event source would let it announce that stack's table to its consumers."""
    other = next(s for s in STACKS if s != stack)
    own, theirs = run_environment(stack)["EVENT_SOURCE"], run_environment(other)["EVENT_SOURCE"]

    assert put_event(account, stack, "notebook-pipeline") is True
    assert put_event(account, stack, "notebook-pipeline.other-stack") is True
    assert own != theirs and put_event(account, stack, theirs) is True
    assert put_event(account, stack, own) is False


def test_the_refusals_are_the_proxys_for_the_stacks_task_roles(account: Account) -> None:
    """Each put in the shared namespace or with the shared source reached the proxy signed by a stack's
    TaskRole, and the proxy refused it (IAM's answer, not moto's)."""
    seen = len(account.iam.decisions)
    for stack in STACKS:
        put_metric(account, stack, "NotebookPipeline")
        put_event(account, stack, "notebook-pipeline")
    decided = [(d.role, d.actions, d.allowed) for d in account.iam.decisions[seen:]]

    assert decided == [
        (role_of(stack, "TaskRole"), [action], False)
        for stack in STACKS for action in ("cloudwatch:PutMetricData", "events:PutEvents")
    ]  # fmt: skip


# --- a notebook's folder markers stay above its own run's folder -----------------------------------------

OTHER_RUN = "20261122T060000Z-c0ffee"
# (the notebook role, the task role that assumes it, its staging prefix)
NOTEBOOKS = {
    "daily run": ("NotebookRole", "TaskRole", "daily"),
    "validation": ("ValidationNotebookRole", "ValidationTaskRole", "validation"),
}


def markers(prefix: str) -> tuple[list[str], list[str]]:
    """Folder markers a notebook of the run may put, and those it may not, under its staging prefix."""
    own = f"{prefix}/date={RUN_DATE}/{RUN_ID}"
    other_prefix = "validation" if prefix == "daily" else "daily"
    allowed = [f"{prefix}/", f"{prefix}/date={RUN_DATE}/", f"{own}/", f"{own}/date={RUN_DATE}/"]
    refused = [
        f"{prefix}/date={RUN_DATE}/{OTHER_RUN}/",  # another run's folder
        f"{prefix}/date={RUN_DATE}/{OTHER_RUN}/date={RUN_DATE}/",
        f"{prefix}/date={RUN_DATE}/{OTHER_RUN}/date={RUN_DATE}/part-0.parquet/",  # beside its data file
        f"{prefix}/date=2019-08-02/",  # another day's
        f"{prefix}/date=2019-08-02/{RUN_ID}/",
        f"{other_prefix}/",  # the other side's staging
        f"{other_prefix}/date={RUN_DATE}/",
        "anywhere/",
    ]
    return allowed, refused


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_a_notebook_puts_folder_markers_above_its_own_runs_folder_only(
    account: Account, notebook: str
) -> None:
    notebook_role, task_role, prefix = NOTEBOOKS[notebook]
    creds = account.notebook_credentials(STACKS[0], notebook_role, task_role)
    s3 = account.client("s3", creds["key"], creds["secret"], creds["token"])
    allowed, forbidden = markers(prefix)

    def put(key: str) -> bool:
        return not refused(lambda: s3.put_object(Bucket=STAGING, Key=key, Body=b""))

    assert {key: put(key) for key in allowed} == dict.fromkeys(allowed, True)
    assert {key: put(key) for key in forbidden} == dict.fromkeys(forbidden, False)
    assert account.iam.principal(creds["key"]).role == role_of(STACKS[0], notebook_role)


def test_pyarrow_writes_a_day_into_its_own_staging_folder_with_its_markers(account: Account) -> None:
    """What a notebook's pyarrow does (usp.ipynb's write_dataset, a rerun's delete_matching), every request
    signed by NotebookRole and allowed: its markers are all above or inside its run's folder."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyarrow import fs as pafs

    creds = account.notebook_credentials(STACKS[0], "NotebookRole", "TaskRole")
    s3 = pafs.S3FileSystem(
        access_key=creds["key"], secret_key=creds["secret"], session_token=creds["token"], region=REGION,
        endpoint_override=account.endpoint, scheme="http", allow_bucket_creation=False,
    )  # fmt: skip
    root = f"{STAGING}/daily/date={RUN_DATE}/{RUN_ID}"
    rows = pa.table({"accommodation_id": [1, 2], "usp": ["spa", "pool"], "date": [RUN_DATE, RUN_DATE]})
    seen = len(account.iam.decisions)

    for _ in range(2):  # the first write, then a rerun's replace
        ds.write_dataset(
            rows, root, filesystem=s3, format="parquet", basename_template="part-{i}.parquet",
            partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
            existing_data_behavior="delete_matching",
        )  # fmt: skip

    decisions = account.iam.decisions[seen:]
    puts = [c.resource for d in decisions for c in d.checks if c.action == "s3:PutObject"]
    assert decisions and [(d.method, d.path) for d in decisions if not d.allowed] == []
    assert {d.role for d in decisions} == {role_of(STACKS[0], "NotebookRole")}
    assert f"arn:aws:s3:::{root}/date={RUN_DATE}/part-0.parquet" in puts
    assert {r for r in puts if r.endswith("/")} == {  # pyarrow's markers: every parent folder of its file
        f"arn:aws:s3:::{STAGING}/daily/", f"arn:aws:s3:::{STAGING}/daily/date={RUN_DATE}/",
        f"arn:aws:s3:::{root}/", f"arn:aws:s3:::{root}/date={RUN_DATE}/",
    }  # fmt: skip
    assert s3.get_file_info(f"{root}/date={RUN_DATE}/part-0.parquet").size > 0


# --- model A's run and validation refused every write to model B's ---------------------------------------

ROLES = {  # a role of A's that runs code, and the task role that serves a notebook role its credentials
    "TaskRole": None, "NotebookRole": "TaskRole",
    "ValidationTaskRole": None, "ValidationNotebookRole": "ValidationTaskRole",
}  # fmt: skip


def writes(b: dict[str, Any]) -> dict[str, Any]:
    """Every write to model B's stack a role could try: name -> call(clients)."""
    bucket, prefix, database, table = (
        b["OutputBucket"],
        b["OutputPrefix"],
        b["TableDatabase"],
        b["OutputTable"],
    )
    body = b"PAR1 forged"
    return {
        "B's table data": lambda c: c["s3"].put_object(Bucket=bucket, Key=f"{prefix}/data/x", Body=body),
        "B's metadata, deleted": lambda c: c["s3"].delete_object(Bucket=bucket, Key=f"{prefix}/metadata/1"),
        "B's run report": lambda c: c["s3"].put_object(
            Bucket=bucket, Key=f"{prefix}/_runs/date={RUN_DATE}/{RUN_ID}/manifest.json", Body=b"{}"),
        "B's staging": lambda c: c["s3"].put_object(
            Bucket=b["StagingBucket"], Key=f"daily/date={RUN_DATE}/x/", Body=b""),
        "B's table in the catalog": lambda c: c["glue"].update_table(
            DatabaseName=database, TableInput={"Name": table}),
        "a table in B's database": lambda c: c["glue"].create_table(
            DatabaseName=database, TableInput={"Name": "forged"}),
        "B's alert mail": lambda c: c["sns"].publish(TopicArn=b["AlertTopic"], Message="all good"),
        "B's promoted image": lambda c: c["ssm"].put_parameter(
            Name=b["ImageDigestParameter"], Value="evil", Type="String", Overwrite=True),
    }  # fmt: skip


def clients(account: Account, stack: str, role: str) -> dict[str, Any]:
    server = ROLES[role]
    if server is None:
        key, secret, token = account.task_key(stack, role), None, None
    else:
        creds = account.notebook_credentials(stack, role, server)
        key, secret, token = creds["key"], creds["secret"], creds["token"]
    return {service: account.client(service, key, secret, token) for service in ("s3", "glue", "sns", "ssm")}


@pytest.mark.parametrize("role", ROLES)
def test_model_a_is_refused_every_write_to_model_b(account: Account, role: str) -> None:
    a, b = STACKS
    own = clients(account, a, role)
    seen = len(account.iam.decisions)

    outcome = {name: refused(lambda call=call: call(own)) for name, call in writes(stack_values(b)).items()}

    assert outcome == dict.fromkeys(outcome, True)
    assert {d.role for d in account.iam.decisions[seen:]} == {role_of(a, role)}  # the proxy's refusals
    if role == "TaskRole":  # the control: the same write to its own table's prefix is allowed
        mine = stack_values(a)
        assert not refused(lambda: own["s3"].put_object(
            Bucket=mine["OutputBucket"], Key=f"{mine['OutputPrefix']}/data/x", Body=b"PAR1"))  # fmt: skip


def test_model_a_writes_its_own_table_where_model_b_may_not() -> None:
    """The control: the same write to A's own prefix is one A's run may make (and B's run may not)."""
    a, b = (stack_values(s) for s in STACKS)
    key = f"arn:aws:s3:::{a['OutputBucket']}/{a['OutputPrefix']}/data/x.parquet"

    def grants(values: dict[str, Any]) -> bool:
        found = [resolve(s, values) for s in statements(RESOURCES, "TaskRole", values).values()]
        return any(
            "s3:PutObject" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
            and any(key.startswith(r.rstrip("*")) for r in (s["Resource"] if isinstance(s["Resource"], list)
                                                             else [s["Resource"]]))
            for s in found if s["Effect"] == "Allow"
        )  # fmt: skip

    assert grants(a) and not grants(b)
