"""A person may hold a release (issue 18): with ReleaseApproval required, the pipeline waits in its Approve
stage between Validate and Promote; `make approve` and `make reject` answer it, and its end is mailed as an
engineer reads it: approved (the Promote stage then promotes, and mails which version), rejected or expired
(nothing promoted, and how to release it later). The request's own mail (the report and the comparison) is
the validation's: tests/pipeline/test_versions.py."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import fake_aws
import pytest
from cfn import load, resolve
from moto.events.models import EventPattern
from support import REPO

RESOURCES = load()["Resources"]
EVENTS = REPO / "tests" / "fixtures" / "events"
REFS = {"Pipeline": "notebook-pipeline-usp", "GitHubRepository": "hotel-profiling/usp-model",
        "AWS::StackName": "notebook-pipeline-usp"}  # fmt: skip
RULES = ("ReleaseApprovedRule", "ReleaseNotApprovedRule")
# The documented event's execution in the console, as PipelineMailer links an execution (test_alerts.py)
EXECUTION_LINK = (
    "https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/notebook-pipeline-usp/executions/"
    "01234567-0123-0123-0123-012345678901/timeline?region=us-east-1"
)


def approval_event(state: str, pipeline: str = REFS["Pipeline"], stage: str = "Approve") -> dict[str, Any]:
    """The documented action execution event, as the Approve stage's manual approval ends."""
    event = copy.deepcopy(
        json.loads((EVENTS / "codepipeline-action-execution-state-change.json").read_text())
    )
    event["detail"].update({
        "pipeline": pipeline, "stage": stage, "action": "Release", "state": state,
        "type": {"owner": "AWS", "category": "Approval", "provider": "Manual", "version": "1"},
    })  # fmt: skip
    return event


def pattern(rule: str) -> EventPattern:
    return EventPattern.load(json.dumps(resolve(RESOURCES[rule]["Properties"]["EventPattern"], REFS)))


def mail(rule: str, event: dict[str, Any]) -> str:
    """What EventBridge sends the topic: the template, each <name> replaced by its path's value."""
    (target,) = RESOURCES[rule]["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": "AlertTopic"}
    transformer = target["InputTransformer"]
    template = resolve(transformer["InputTemplate"], REFS)
    values = {}
    for name, path in transformer["InputPathsMap"].items():
        value: Any = event
        for key in path.removeprefix("$.").split("."):
            value = value[key]
        values[name] = value
    assert set(re.findall(r"<([A-Za-z0-9_-]+)>", template)) == set(values)
    return re.sub(r"<([A-Za-z0-9_-]+)>", lambda m: str(values[m.group(1)]), template)


def test_the_rules_exist_only_where_a_person_holds_releases() -> None:
    for rule in RULES:
        assert RESOURCES[rule]["Condition"] == "RequiresApproval"


@pytest.mark.parametrize(
    ("state", "rule"), [("SUCCEEDED", RULES[0]), ("FAILED", RULES[1]), ("ABANDONED", RULES[1])]
)
def test_each_end_of_an_approval_is_mailed_by_one_rule(state: str, rule: str) -> None:
    event = approval_event(state)
    assert [r for r in RULES if pattern(r).matches_event(event)] == [rule]


@pytest.mark.parametrize(
    "event",
    [approval_event("STARTED"), approval_event("SUCCEEDED", pipeline="another"),
     approval_event("FAILED", stage="Validate")],
    ids=["waiting", "another pipeline", "another stage"],
)  # fmt: skip
def test_a_waiting_approval_other_pipelines_and_other_stages_do_not_mail(event: dict[str, Any]) -> None:
    assert not any(pattern(rule).matches_event(event) for rule in RULES)


def test_the_approved_mail_says_it_is_being_promoted_and_where_to_read_who_approved() -> None:
    said = mail("ReleaseApprovedRule", approval_event("SUCCEEDED"))

    assert said.startswith("The release of hotel-profiling/usp-model held for approval in pipeline "
                           "notebook-pipeline-usp was APPROVED at 2017-04-22T03:31:47Z (UTC)")  # fmt: skip
    assert "its Promote stage promotes it now" in said
    assert "Execution 01234567-0123-0123-0123-012345678901" in said
    assert said.endswith(f"the approver and comment are on its Approve stage: {EXECUTION_LINK}")


@pytest.mark.parametrize("state", ["FAILED", "ABANDONED"])
def test_the_not_approved_mail_says_nothing_was_promoted_and_how_to_release_it_later(state: str) -> None:
    said = mail("ReleaseNotApprovedRule", approval_event(state))

    assert (
        f"was NOT approved ({state} at 2017-04-22T03:31:47Z UTC: rejected, or unanswered for 7 days)" in said
    )
    assert "nothing was promoted, and the daily runs keep their version" in said
    assert "make promote GITHUB_REPO=hotel-profiling/usp-model TO=" in said
    assert said.endswith(f"who rejected it and why is on its Approve stage: {EXECUTION_LINK}")


def make(tmp_path: Path, target: str, approval: str | None, waiting: str = "5", **variables: str):
    env = {
        "FAKE_OUTPUTS": json.dumps({"PipelineName": "notebook-pipeline-usp-model"}),
        "FAKE_WAITING_VERSION": waiting,
    }
    if approval is not None:
        env["FAKE_APPROVAL"] = approval
    return fake_aws.make(tmp_path, target, env, GITHUB_REPO="hotel-profiling/usp-model", **variables)


WAITING = "InProgress\ttoken-0123\texecution-0123"


@pytest.mark.parametrize(("target", "status"), [("approve", "Approved"), ("reject", "Rejected")])
def test_make_approve_and_reject_answer_the_waiting_release_with_its_token(
    tmp_path: Path, target: str, status: str
) -> None:
    done, calls = make(tmp_path, target, WAITING, RELEASE="5", COMMENT="checked, the removed rows")

    assert done.returncode == 0, done.stderr
    (lookup,) = [c for c in calls if c[:2] == ["codepipeline", "list-action-executions"]]
    assert lookup[lookup.index("--filter") + 1] == "pipelineExecutionId=execution-0123"
    (answer,) = [c for c in calls if c[:2] == ["codepipeline", "put-approval-result"]]
    assert answer[2:8] == ["--pipeline-name", "notebook-pipeline-usp-model", "--stage-name", "Approve",
                           "--action-name", "Release"]  # fmt: skip
    assert answer[8:11] == ["--token", "token-0123", "--result"]
    assert json.loads(answer[11]) == {"summary": "checked, the removed rows", "status": status}
    assert f"{status.lower()} version 5 of notebook-pipeline-usp-model" in done.stderr


@pytest.mark.parametrize(
    ("approval", "variables", "said"),
    [
        (None, {"RELEASE": "5"}, "no release of notebook-pipeline-usp-model waits for approval"),
        (
            "Succeeded\ttoken-0123\texecution-0123",
            {"RELEASE": "5"},
            "waits for approval (its Approve stage: Succeeded",
        ),
        (WAITING, {"RELEASE": "6"}, "the release waiting for approval is version 5, not 6"),
        (WAITING, {}, "RELEASE is not set: make approve GITHUB_REPO=... RELEASE="),
        (WAITING, {"RELEASE": "v5"}, "RELEASE=v5 is not valid"),
    ],
    ids=["never held", "already answered", "another version waits", "no version named", "not a number"],
)
def test_make_approve_answers_nothing_but_the_version_it_names(
    tmp_path: Path, approval: str | None, variables: dict[str, str], said: str
) -> None:
    """With a queue of pushes, version 6's mail may come while version 5 waits: an approval names its
    version."""
    done, calls = make(tmp_path, "approve", approval, **variables)

    assert done.returncode == 2
    assert said in done.stderr, done.stderr
    assert not [c for c in calls if c[:2] == ["codepipeline", "put-approval-result"]]


def test_the_approval_action_names_the_stage_and_action_make_answers() -> None:
    (stage,) = [s["Fn::If"][1] for s in RESOURCES["Pipeline"]["Properties"]["Stages"] if "Fn::If" in s]
    script = (REPO / "scripts" / "releases.sh").read_text()

    (action,) = stage["Actions"]
    assert f"--stage-name {stage['Name']} --action-name {action['Name']}" in script
    assert f"stageName=='{stage['Name']}'" in script
    for rule in RULES:  # and the rules watch that stage
        assert RESOURCES[rule]["Properties"]["EventPattern"]["detail"]["stage"] == [stage["Name"]]
