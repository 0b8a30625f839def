"""The published table in template/pipeline.yaml: the stack's Glue database, the trusted step's grants on
exactly that table and exactly the consumers' event (never the notebook's roles, nor the validation's), the
consumers' Athena workgroup, the task definitions' table settings, and the outputs naming them. Every
request a run makes with these grants is held to them in test_run_identity.py (moto behind the IAM proxy)."""

from __future__ import annotations

from typing import Any

from cfn import defaults, granted, resolve, statements
from test_runs import RESOURCES, VALUES

from runner.config import SETTINGS
from runner.notify import EVENT_DETAIL_TYPE

STACK_VALUES = {**defaults(), **VALUES}
GLUE = "arn:aws:glue:us-east-1:123456789012"
TABLE_WRITES = {"glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable", "glue:*", "events:PutEvents"}


def environment(definition: str, values: dict[str, Any] = STACK_VALUES) -> dict[str, str]:
    (container,) = RESOURCES[definition]["Properties"]["ContainerDefinitions"]
    return {e["Name"]: str(resolve(e["Value"], values)) for e in container["Environment"]}


def statement(role: str, sid: str) -> dict[str, Any]:
    return resolve(statements(RESOURCES, role, STACK_VALUES)[sid], STACK_VALUES)


def test_the_run_commits_to_exactly_its_table_in_the_stacks_database() -> None:
    commits = statement("TaskRole", "ReadAndCommitTheTable")
    assert sorted(commits["Action"]) == ["glue:CreateTable", "glue:GetTable", "glue:UpdateTable"]
    assert commits["Resource"] == [
        f"{GLUE}:catalog",
        f"{GLUE}:database/notebook_pipeline_usp",
        f"{GLUE}:table/notebook_pipeline_usp/usp",
    ]
    reads = statement("TaskRole", "ReadTheTablesDatabase")
    assert (reads["Action"], reads["Resource"]) == (
        "glue:GetDatabase",
        [f"{GLUE}:catalog", f"{GLUE}:database/notebook_pipeline_usp"],
    )
    database = RESOURCES["TableDatabase"]
    assert database["Type"] == "AWS::Glue::Database"
    derived = resolve(database["Properties"]["DatabaseInput"]["Name"], {**STACK_VALUES, "OutputDatabase": ""})
    assert derived == "notebook_pipeline_usp"  # the stack's name, '-' as '_'


def test_the_run_tells_consumers_with_exactly_the_runners_event_from_its_own_stacks_source() -> None:
    """One stack's run cannot announce another's table: the run's EVENT_SOURCE (the event's source, which the
    runner puts) and TaskRole's events:source condition are one, the stack's own; the detail type is the
    runner's."""
    for stack in ("notebook-pipeline-usp", "other-model"):
        values = {**STACK_VALUES, "AWS::StackName": stack}
        tell = resolve(statements(RESOURCES, "TaskRole", values)["TellConsumersOfEachPublishedDay"], values)
        source = environment("TaskDefinition", values)["EVENT_SOURCE"]

        assert source == f"notebook-pipeline.{stack}"
        assert tell["Action"] == "events:PutEvents"
        assert tell["Resource"] == "arn:aws:events:us-east-1:123456789012:event-bus/default"
        assert tell["Condition"] == {
            "StringEquals": {"events:source": source, "events:detail-type": EVENT_DETAIL_TYPE}
        }
    # the runner's own default (a laptop's run) is no stack's
    assert {s.name: s.default for s in SETTINGS}["EVENT_SOURCE"] == "notebook-pipeline"


def test_no_role_but_the_runs_trusted_step_may_change_the_table_or_tell_consumers() -> None:
    for role in ("NotebookRole", "ValidationNotebookRole", "ValidationTaskRole", "TaskExecutionRole"):
        assert not granted(RESOURCES, role, STACK_VALUES) & TABLE_WRITES, role
    for role in ("NotebookRole", "ValidationNotebookRole"):  # the data sources on: still none of it
        on = {**STACK_VALUES, "GlueDatabases": "hotel_lake", "AthenaWorkGroup": "wg",
              "AthenaResultsBucket": "r", "AthenaResultsPrefix": "p"}  # fmt: skip
        assert not granted(RESOURCES, role, on) & TABLE_WRITES, role


def test_the_daily_run_publishes_to_the_glue_table_and_the_validation_to_no_catalog() -> None:
    run = environment("TaskDefinition")
    names = ("TABLE_CATALOG", "OUTPUT_TABLE", "KEEP_SNAPSHOT_DAYS", "EVENT_BUS", "EVENT_SOURCE")
    assert {k: run[k] for k in names} == {
        "TABLE_CATALOG": "glue", "OUTPUT_TABLE": "notebook_pipeline_usp.usp", "KEEP_SNAPSHOT_DAYS": "30",
        "EVENT_BUS": "default", "EVENT_SOURCE": "notebook-pipeline.notebook-pipeline-usp",
    }  # fmt: skip
    validation = environment("ValidationTaskDefinition")
    assert validation["TABLE_CATALOG"] == "none"
    assert not {"EVENT_BUS", "EVENT_SOURCE", "OUTPUT_TABLE"} & set(validation)


def test_consumers_query_in_a_workgroup_of_their_own_with_a_scan_limit() -> None:
    config = RESOURCES["ConsumerWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
    assert resolve(config["BytesScannedCutoffPerQuery"], STACK_VALUES) == 10737418240
    results = config["ResultConfiguration"]
    assert results["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    assert (
        resolve(results["OutputLocation"], {**STACK_VALUES, "ConsumerResultsBucket": "r"})
        == "s3://r/results/"
    )
    bucket = RESOURCES["ConsumerResultsBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True


def test_the_outputs_name_the_table_and_the_workgroup() -> None:
    outputs = load_outputs()
    assert resolve(outputs["OutputTable"]["Value"], STACK_VALUES) == "notebook_pipeline_usp.usp"
    assert outputs["ConsumerWorkGroup"]["Value"] == {"Ref": "ConsumerWorkGroup"}


def load_outputs() -> dict[str, Any]:
    from cfn import load

    return load()["Outputs"]
