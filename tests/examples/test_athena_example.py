"""The Athena example (examples/athena-usp): a second model in the team's original style (query.sql,
awswrangler, ctas_approach=False), built with the same Dockerfile and runner, run as a daily run against moto
over HTTP behind the IAM proxy. The roles are the template's, with the grants its settings.yml asks for: the
run publishes what Athena returned, and every request it made is held to the role that signed it. The same
run without the Athena grants is refused.

moto's Athena executes no SQL: each query takes the next result queued through its
/moto-api/static/athena/query-results API (the header row first, as Athena returns it), which moto also
writes to the workgroup's result location, where awswrangler reads it. Athena's own server-side reads (the
Glue catalog, the tables' data) and its result write are not requests the client makes: the template takes
those grants from AWS's Athena documentation (its comment on NotebookDataSourcesPolicy).
"""

from __future__ import annotations

import functools
import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support import (
    REPO,
    SAMPLE_DATE,
    SAMPLE_LAKE,
    Run,
    docker_run,
    model_repository,
    moto_server,
    settings_script,
)  # fmt: skip

sys.path.insert(0, str(REPO / "tests" / "pipeline"))  # the template's reader and the IAM proxy
import cfn
import iam
import test_run_identity as run_identity

EXAMPLE = REPO / "examples" / "athena-usp"
IMAGE = "notebook-runner-athena:test"
REGION = run_identity.REGION
ROLES = ("TaskRole", "NotebookRole")
ARNS = {
    "TaskRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/run",
    "NotebookRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/notebook",
    "TaskExecutionRole.Arn": f"arn:aws:iam::{iam.ACCOUNT}:role/pull",
    "AlertKey.Arn": f"arn:aws:kms:{REGION}:{iam.ACCOUNT}:key/alerts",
}
USP_COLUMNS = [("accommodation_id", "bigint"), ("usp", "varchar"), ("accommodation_ns", "bigint")]
DESTINATION_COLUMNS = [("accommodation_id", "bigint"), ("destination_id", "bigint")]


# The template and the example's settings are read when a test first needs them, not when the module is
# collected (the fast lane collects it and runs none of its tests).
@functools.cache
def parameters() -> dict[str, str]:
    """The template parameters `make deploy GITHUB_REPO=... MODEL_DIR=examples/athena-usp` passes: the
    example's settings.yml merged and checked by scripts/settings.py."""
    deploy = settings_script().merged({"GITHUB_REPO": "hotel/usp-athena", "MODEL_DIR": str(EXAMPLE)}, REPO)
    return deploy.parameters


@functools.cache
def values() -> dict[str, Any]:
    """What the stack's references resolve to: the parameters, the roles' ARNs, the stack's own names."""
    return {
        **cfn.defaults(), **parameters(), **ARNS,
        "AWS::StackName": "usp-athena", "AWS::Region": REGION, "AWS::AccountId": iam.ACCOUNT,
        "AWS::Partition": "aws",
        "StagingBucket": "usp-athena-staging", "StagingBucket.Arn": "arn:aws:s3:::usp-athena-staging",
        "AlertTopic": f"arn:aws:sns:{REGION}:{iam.ACCOUNT}:alerts", "TableDatabase": "usp_athena",
    }  # fmt: skip


@functools.cache
def resources() -> dict[str, Any]:
    return cfn.load()["Resources"]


def lake_rows(table: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((SAMPLE_LAKE / table / f"date={SAMPLE_DATE}").glob("*.json")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def athena_result(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One query's result as Athena returns it: the header row first, then every value as text."""

    def cell(value: Any) -> dict[str, str]:
        return {} if value is None else {"VarCharValue": str(value)}

    header = {"Data": [{"VarCharValue": name} for name, _ in columns]}
    return {
        "rows": [header, *({"Data": [cell(row.get(name)) for name, _ in columns]} for row in rows)],
        "column_info": [
            {"CatalogName": "hive", "SchemaName": "trivago", "TableName": "", "Name": name, "Label": name,
             "Type": kind, "Precision": 19 if kind == "bigint" else 0, "Scale": 0, "Nullable": "UNKNOWN",
             "CaseSensitive": kind == "varchar"}
            for name, kind in columns
        ],
    }  # fmt: skip


# What the two queries return on the sample lake: the day's USPs, and the accommodations that have USPs.
USPS = lake_rows("unique_selling_points")
WITH_USPS = {row["accommodation_id"] for row in USPS}
DESTINATIONS = [
    {"accommodation_id": row["accommodation_id"], "destination_id": row.get("locality_id")}
    for row in lake_rows("accommodation")
    if row["accommodation_id"] in WITH_USPS
]


def expected_output() -> list[dict[str, Any]]:
    """The left join the notebook makes, as its rows sorted by accommodation and USP."""
    destination = {row["accommodation_id"]: row["destination_id"] for row in DESTINATIONS}
    rows = [
        {"accommodation_id": r["accommodation_id"], "accommodation_ns": r["accommodation_ns"],
         "usp": r["usp"], "destination_id": destination.get(r["accommodation_id"])}
        for r in USPS
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (r["accommodation_id"], r["usp"]))


class Stack(run_identity.Stack):
    """The daily run's stack of test_run_identity.py, with Athena's result queue."""

    def queue_results(self, *results: dict[str, Any]) -> None:
        body = json.dumps({"account_id": iam.ACCOUNT, "region": REGION, "results": list(results)}).encode()
        request = urllib.request.Request(  # noqa: S310 -- the test's own moto server
            f"{self.moto}/moto-api/static/athena/query-results", data=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request) as reply:  # noqa: S310 -- the test's own moto server
            assert reply.status == 201

    def run(self, image: str) -> Run:
        return docker_run(image, run_identity.task_environment(self, values()), network_host=True)


def glue_table(name: str, columns: list[tuple[str, str]]) -> dict[str, Any]:
    """A lake table as the team registers it: JSON Lines under DataLakePrefix/TABLE/, partitioned by date."""
    location = f"s3://{parameters()['DataLakeBucket']}/{parameters()['DataLakePrefix']}/{name}/"
    return {
        "Name": name, "TableType": "EXTERNAL_TABLE", "PartitionKeys": [{"Name": "date", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": [{"Name": c, "Type": t} for c, t in columns], "Location": location,
            "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
        },
    }  # fmt: skip


@contextmanager
def deployed(values: dict[str, Any]) -> Iterator[Stack]:
    """moto with the example's buckets, lake, Glue tables and workgroup, behind the IAM proxy enforcing the
    template's TaskRole and NotebookRole resolved for values; the task's credential endpoint."""
    roles = {
        r: [cfn.resolve(s, values) for s in cfn.statements(resources(), r, values).values()] for r in ROLES
    }
    enforcer = iam.Iam(roles, {ARNS[f"{r}.Arn"]: r for r in ROLES})
    task_key = enforcer.give("AKIATASKROLE0000000", "TaskRole")
    with (
        moto_server() as moto,
        iam.enforcing(enforcer, moto) as endpoint,
        iam.container_credentials(task_key) as creds,
    ):
        stack = Stack(enforcer, endpoint, moto, *creds)
        s3 = stack.client("s3")
        # The lake's catalog, the workgroup and its result bucket exist whether the stack grants them or not.
        for bucket in (values["DataLakeBucket"], values["OutputBucket"], values["StagingBucket"]):
            s3.create_bucket(Bucket=bucket)
        s3.create_bucket(Bucket=parameters()["AthenaResultsBucket"])
        s3.put_bucket_versioning(
            Bucket=values["StagingBucket"], VersioningConfiguration={"Status": "Enabled"}
        )
        for path in SAMPLE_LAKE.rglob("*.json"):
            key = f"{values['DataLakePrefix']}/{path.relative_to(SAMPLE_LAKE)}"
            s3.upload_file(str(path), values["DataLakeBucket"], key)
        stack.client("sns").create_topic(Name="alerts")
        glue = stack.client("glue")
        glue.create_database(DatabaseInput={"Name": values["TableDatabase"]})  # the stack's, for the output
        (database,) = parameters()["GlueDatabases"].split(",")
        glue.create_database(DatabaseInput={"Name": database})
        accommodation = [
            ("accommodation_id", "bigint"),
            ("accommodation_ns", "bigint"),
            ("locality_id", "bigint"),
        ]
        for name, columns in (("unique_selling_points", USP_COLUMNS), ("accommodation", accommodation)):
            glue.create_table(DatabaseName=database, TableInput=glue_table(name, columns))
        results = f"s3://{parameters()['AthenaResultsBucket']}/{parameters()['AthenaResultsPrefix']}/"
        stack.client("athena").create_work_group(
            Name=parameters()["AthenaWorkGroup"],
            Configuration={"ResultConfiguration": {"OutputLocation": results}},
        )
        yield stack


@pytest.fixture(scope="module")
def athena_image(build, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example's repository: its notebook, query, check, requirements, settings, and the platform's."""
    context = model_repository(EXAMPLE, tmp_path_factory.mktemp("athena-repo"))
    return build(context, IMAGE, f"NOTEBOOK={parameters()['NotebookPath']}")


@pytest.fixture(scope="module")
def granted(athena_image: str) -> Iterator[tuple[Stack, Run]]:
    """The daily run with the grants the example's settings ask for."""
    with deployed(values()) as stack:
        stack.queue_results(
            athena_result(USP_COLUMNS, USPS), athena_result(DESTINATION_COLUMNS, DESTINATIONS)
        )
        yield stack, stack.run(athena_image)


def test_the_athena_example_publishes_what_its_queries_returned(granted: tuple[Stack, Run]) -> None:
    stack, run = granted

    assert run.code == 0, run.stderr[-3000:]
    assert "ATHENA USP CHECK PASSED" in run.stderr
    day = stack.table_day(f"{values()['TableDatabase']}.{values()['OutputTable']}", SAMPLE_DATE)
    assert day.drop_columns(["date"]).to_pylist() == expected_output()


def test_every_request_of_the_athena_run_is_signed_by_its_roles_and_allowed(
    granted: tuple[Stack, Run],
) -> None:
    stack, run = granted
    decisions = stack.iam.decisions
    refused = [(d.role, d.method, d.path, d.actions) for d in decisions if not d.allowed]

    assert run.code == 0, run.stderr[-3000:]
    assert [d for d in decisions if d.key is None] == []  # nothing unsigned
    assert {d.role for d in decisions} == set(ROLES)
    assert refused == []


def test_the_notebook_queries_its_workgroup_and_reads_only_its_result_location(
    granted: tuple[Stack, Run],
) -> None:
    stack, run = granted
    given = parameters()
    workgroup = f"arn:aws:athena:{REGION}:{iam.ACCOUNT}:workgroup/{given['AthenaWorkGroup']}"
    location = f"arn:aws:s3:::{given['AthenaResultsBucket']}/{given['AthenaResultsPrefix']}/"
    notebook = stack.iam.by_role("NotebookRole")
    athena = {(c.action, c.resource) for d in notebook for c in d.checks if c.action.startswith("athena:")}
    results = [
        c
        for d in notebook
        for c in d.checks
        if c.resource.startswith(f"arn:aws:s3:::{given['AthenaResultsBucket']}")
    ]
    runner = {(c.action, c.resource) for d in stack.iam.by_role("TaskRole") for c in d.checks}
    database = values()["TableDatabase"]
    own = rf":(catalog|database/{database}|table/{database}/{values()['OutputTable']})$"

    assert run.code == 0, run.stderr[-3000:]
    # The client's side of read_sql_query(ctas_approach=False); StopQueryExecution is granted for a
    # cancelled query, which this run has none of.
    assert athena == {
        (action, workgroup)
        for action in ("athena:GetWorkGroup", "athena:StartQueryExecution", "athena:GetQueryExecution",
                       "athena:GetQueryResults")
    }  # fmt: skip
    assert results and all(c.action == "s3:GetObject" and c.resource.startswith(location) for c in results)
    # the runner never queries; in Glue it reads and commits its own output table only
    assert not {
        a for a, r in runner if a.startswith("athena:") or (a.startswith("glue:") and not re.search(own, r))
    }
    granted_actions = cfn.granted(resources(), "NotebookRole", values())
    assert {a for a, _ in athena} | {"athena:StopQueryExecution"} == {
        a for a in granted_actions if a.startswith("athena:")
    }


def test_the_same_run_without_the_athena_grants_is_refused_and_publishes_nothing(athena_image: str) -> None:
    off = {
        **values(),
        "AthenaWorkGroup": "",
        "AthenaResultsBucket": "",
        "AthenaResultsPrefix": "",
        "GlueDatabases": "",
    }
    with deployed(off) as stack:
        run = stack.run(athena_image)
        refused = {a for d in stack.iam.by_role("NotebookRole") if not d.allowed for a in d.actions}
        published = stack.client("s3").list_objects_v2(Bucket=off["OutputBucket"], Prefix=off["OutputPrefix"])

    assert run.code == 10, run.stderr[-3000:]
    assert "AccessDenied" in run.last_line
    assert refused & {"athena:GetWorkGroup", "athena:StartQueryExecution"}
    assert [
        o["Key"] for o in published.get("Contents", []) if "/date=" in o["Key"] and "_runs" not in o["Key"]
    ] == []
