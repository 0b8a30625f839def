"""Each failure is mailed once (issue 20), counted from the template itself: for a failure, the events AWS
puts on the default bus (AWS's documented samples, changed to this stack's), the CloudWatch metrics it
raises, and the task whose runner failed; then every rule of the template whose pattern matches one of those
events (moto's EventBridge matcher) and that targets the alert topic or a mailer, every alarm on one of those
metrics that notifies the topic, and the runner if its task gives it a topic to mail. What each mailer
sends for what it is handed is tested where it is run: tests/pipeline/test_pipeline_mail.py (PipelineMailer,
one mail always) and tests/pipeline/test_alerts.py (RunMailer)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import cfn
import eventbridge
import pytest
from cfn import load, resolve
from support import REPO

RESOURCES = load()["Resources"]
EVENTS = REPO / "tests" / "fixtures" / "events"
STACK = "notebook-pipeline-usp"
CLUSTERS = "arn:aws:ecs:us-east-1:123456789012:cluster"
# What CloudFormation resolves the rules' and alarms' references to, for this stack.
VALUES = {
    "AWS::StackName": STACK, "Pipeline": STACK, "BuildProject": f"{STACK}-build",
    "ValidateProject": f"{STACK}-validate", "PromoteProject": f"{STACK}-promote",
    "RunCluster.Arn": f"{CLUSTERS}/{STACK}-runs", "ValidationCluster.Arn": f"{CLUSTERS}/{STACK}-validation",
}  # fmt: skip
MAILERS = {"AlertTopic", "PipelineMailer", "RunMailer"}  # what a target mails through
PERSON = "alice"  # who ran make promote (CodeBuild's initiator: the caller's IAM name)


@dataclass
class Failure:
    events: list[dict[str, Any]]
    metrics: list[tuple[str, str, dict[str, str]]] = field(
        default_factory=list
    )  # namespace, name, dimensions
    task: str | None = None  # the task definition whose runner failed


def event(name: str, **detail: Any) -> dict[str, Any]:
    found = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    found["detail"].update(detail)
    return found


def failed_build(project: str, initiator: str) -> list[dict[str, Any]]:
    """What CodeBuild says of a build of `project` whose BUILD phase failed: the phase, then the build."""
    phase = event("codebuild-build-phase-change", **{
        "project-name": VALUES[project], "completed-phase": "BUILD", "completed-phase-status": "FAILED",
    })  # fmt: skip
    build = event(
        "codebuild-build-state-change", **{"project-name": VALUES[project], "build-status": "FAILED"}
    )
    for each in (phase, build):
        each["detail"]["additional-information"]["initiator"] = initiator
    return [phase, build]


def failed_in_the_pipeline(project: str, stage: str, action: str) -> list[dict[str, Any]]:
    """A build the pipeline started that failed: CodeBuild's events, then CodePipeline's for the action and
    the execution."""
    return [
        *failed_build(project, f"codepipeline/{STACK}"),
        event("codepipeline-action-execution-state-change", pipeline=STACK, stage=stage, action=action,
              state="FAILED"),
        event("codepipeline-pipeline-execution-state-change", pipeline=STACK, state="FAILED"),
    ]  # fmt: skip


def failed_builds(project: str) -> tuple[str, str, dict[str, str]]:
    return ("AWS/CodeBuild", "FailedBuilds", {"ProjectName": VALUES[project]})


def candidate_stopped(exit_code: int) -> dict[str, Any]:
    """ECS's event for the candidate's validation task, its runner exited with exit_code."""
    found = event("ecs-task-state-change", clusterArn=VALUES["ValidationCluster.Arn"], lastStatus="STOPPED",
                  group=f"family:{STACK}-validate", stopCode="EssentialContainerExited")  # fmt: skip
    found["detail"]["containers"][0].update(name="runner", lastStatus="STOPPED", exitCode=exit_code)
    return found


FAILURES = {
    "a build that failed in the pipeline": Failure(
        failed_in_the_pipeline("BuildProject", "Build", "BuildImage"), [failed_builds("BuildProject")]
    ),
    "a validation that failed (its check: exit 20)": Failure(
        [*failed_in_the_pipeline("ValidateProject", "Validate", "ValidateImage"), candidate_stopped(20)],
        [failed_builds("ValidateProject")],
        task="ValidationTaskDefinition",
    ),
    "a promotion the pipeline started that failed (other than a refusal)": Failure(
        failed_in_the_pipeline("PromoteProject", "Promote", "PromoteVersion"),
        [failed_builds("PromoteProject")],
    ),
    "make promote (or make rollback) that failed": Failure(
        failed_build("PromoteProject", PERSON), [failed_builds("PromoteProject")]
    ),
    "a build started by hand that failed": Failure(
        failed_build("BuildProject", PERSON), [failed_builds("BuildProject")]
    ),
}


def rule_mails(failure: Failure) -> list[str]:
    """Each mail a rule of the template starts: one per matching event and target that mails."""
    mails = []
    for name, resource in RESOURCES.items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        matcher = eventbridge.pattern(resolve(resource["Properties"]["EventPattern"], VALUES))
        mailing = [t for t in resource["Properties"]["Targets"] if cfn.references(t["Arn"]) & MAILERS]
        mails += [name for e in failure.events if matcher.matches_event(e) for _ in mailing]
    return mails


def alarm_mails(failure: Failure) -> list[str]:
    """Each alarm that goes into ALARM on one of the failure's metrics and notifies the topic."""
    mails = []
    for name, resource in RESOURCES.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        watched = (alarm["Namespace"], alarm["MetricName"],
                   {d["Name"]: resolve(d["Value"], VALUES) for d in alarm["Dimensions"]})  # fmt: skip
        if watched in failure.metrics and "AlertTopic" in cfn.references(alarm.get("AlarmActions", [])):
            mails.append(name)
    return mails


def runner_mails(failure: Failure) -> list[str]:
    """The runner mails each failure it exits with when its task gives it SNS_TOPIC_ARN (runner/config.py)."""
    if failure.task is None:
        return []
    (container,) = RESOURCES[failure.task]["Properties"]["ContainerDefinitions"]
    return [f"{failure.task}'s runner" for e in container["Environment"] if e["Name"] == "SNS_TOPIC_ARN"]


def mails(failure: Failure) -> list[str]:
    return rule_mails(failure) + alarm_mails(failure) + runner_mails(failure)


@pytest.mark.parametrize("failure", FAILURES)
def test_each_failure_is_mailed_exactly_once(failure: str) -> None:
    assert len(mails(FAILURES[failure])) == 1, mails(FAILURES[failure])


@pytest.mark.parametrize(
    "failure, mailer",
    [
        ("a build that failed in the pipeline", "PipelineEndedRule"),
        ("a validation that failed (its check: exit 20)", "PipelineEndedRule"),
        ("a promotion the pipeline started that failed (other than a refusal)", "PipelineEndedRule"),
        ("make promote (or make rollback) that failed", "BuildFailedRule"),
        ("a build started by hand that failed", "BuildFailedRule"),
    ],
)
def test_the_one_mail_is_the_one_that_says_most(failure: str, mailer: str) -> None:
    """In the pipeline: PipelineMailer's, which names the failed action and links its logs (and the
    candidate's reports); outside it, the failed phase with its logs."""
    assert mails(FAILURES[failure]) == [mailer]


def test_a_pipeline_execution_that_succeeded_is_mailed_once() -> None:
    succeeded = Failure(
        [event("codepipeline-pipeline-execution-state-change", pipeline=STACK, state="SUCCEEDED")]
    )

    assert mails(succeeded) == ["PipelineEndedRule"]


def test_the_candidates_runner_is_given_no_topic_and_may_not_mail() -> None:
    """The candidate is untrusted code: no topic in its environment, no sns:Publish nor the alert key for
    any role of its task; the daily run's runner keeps both (it mails its own failures)."""

    def environment(definition: str) -> set[str]:
        (container,) = RESOURCES[definition]["Properties"]["ContainerDefinitions"]
        return {e["Name"] for e in container["Environment"]}

    roles = ("ValidationTaskRole", "ValidationNotebookRole")
    policies = [
        r["Properties"]["PolicyDocument"] for r in RESOURCES.values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": "ValidationTaskRole"} in r["Properties"]["Roles"]
    ]  # fmt: skip
    granted = set().union(*(cfn.granted(RESOURCES, role) for role in roles))
    granted |= {a for p in policies for s in p["Statement"] for a in cfn.actions(s)}
    reaches = set().union(*(cfn.references(RESOURCES[role]) for role in roles), cfn.references(policies))

    assert "SNS_TOPIC_ARN" not in environment("ValidationTaskDefinition")
    assert not [a for a in granted if a.startswith(("sns:", "kms:"))]
    assert not reaches & {"AlertTopic", "AlertKey"}
    assert "SNS_TOPIC_ARN" in environment("TaskDefinition")
    assert "sns:Publish" in cfn.granted(RESOURCES, "TaskRole")


def test_the_approval_request_is_still_the_validations_to_mail() -> None:
    """The validate project (trusted: the template's buildspec) mails the approval request; the candidate
    mails nothing."""
    publish = [
        s for s in cfn.statements(RESOURCES, "ValidateRole").values() if "sns:Publish" in cfn.actions(s)
    ]

    assert [s["Resource"] for s in publish] == [{"Ref": "AlertTopic"}]
    assert 'aws sns publish --topic-arn "$ALERT_TOPIC"' in cfn.buildspec_text("ValidateProject")
