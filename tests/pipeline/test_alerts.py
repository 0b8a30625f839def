"""The alerts in template/pipeline.yaml: each EventBridge rule's pattern, loaded from the template, run
through a real EventBridge pattern matcher (moto's) against AWS's documented sample events; each input
transformer rendered from those events; RunMailer run on moto's Step Functions interpreter; and the wiring
of key, topic, subscriptions and alarms. Each failure is mailed once: a daily run's by its runner (its own
exit codes, runner/exits.py) or RunMailer (what no runner lived to say); the pipeline's by PipelineMailer
(tests/pipeline/test_pipeline_mail.py); a build the pipeline did not start by BuildFailedRule; the alarms on
failed builds and validations mail nobody (tests/pipeline/test_failure_mails.py counts the mails)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import cfn
import eventbridge
import pytest
import stepfunctions
from cfn import load, resolve
from moto.events.models import EventPattern
from support import REPO

from runner.exits import EXITS, KILLED

TEMPLATE = load()
RESOURCES = TEMPLATE["Resources"]
EVENTS = REPO / "tests" / "fixtures" / "events"
# What CloudFormation resolves the rules' references to, for a stack named notebook-pipeline-usp.
REFS = {"Pipeline": "notebook-pipeline-usp", "BuildProject": "notebook-pipeline-usp-build",
        "ValidateProject": "notebook-pipeline-usp-validate",
        "PromoteProject": "notebook-pipeline-usp-promote"}  # fmt: skip


def pattern(rule: str) -> EventPattern:
    return EventPattern.load(json.dumps(resolve(RESOURCES[rule]["Properties"]["EventPattern"], REFS)))


def sample(name: str, **detail: Any) -> dict[str, Any]:
    """An AWS documented sample event, with some of its detail fields changed."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event = copy.deepcopy(event)
    event["detail"].update(detail)
    return event


def phase_event(project: str, phase: str, status: str, initiator: str = "") -> dict[str, Any]:
    """The documented phase event, of `project`; started by `initiator` (the sample's person otherwise)."""
    event = sample("codebuild-build-phase-change", **{
        "project-name": project, "completed-phase": phase, "completed-phase-status": status,
    })  # fmt: skip
    if initiator:
        event["detail"]["additional-information"]["initiator"] = initiator
    return event


def path_value(event: dict[str, Any], path: str) -> Any:
    assert path.startswith("$."), path
    value: Any = event
    for key in path[2:].split("."):
        assert isinstance(value, dict) and key in value, f"{path} is not in the sample event"
        value = value[key]
    return value


def render(rule: str, event: dict[str, Any]) -> str:
    """What EventBridge sends the topic: the template with each <name> replaced by its path's value."""
    (target,) = RESOURCES[rule]["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    values = {name: path_value(event, path) for name, path in transformer["InputPathsMap"].items()}
    used = set(re.findall(r"<([A-Za-z0-9_-]+)>", transformer["InputTemplate"]))
    assert used == set(values), "every path is used, and every placeholder has a path"
    return re.sub(r"<([A-Za-z0-9_-]+)>", lambda m: str(values[m.group(1)]), transformer["InputTemplate"])


# --- a build the pipeline did not start: BuildFailedRule ---------------------------------------------------
# The pipeline's own builds are its executions' to mail (PipelineMailer: test_pipeline_mail.py).

PIPELINES_INITIATOR = f"codepipeline/{REFS['Pipeline']}"  # CodeBuild's initiator of the builds it starts


@pytest.mark.parametrize("project", ["BuildProject", "ValidateProject", "PromoteProject"])
@pytest.mark.parametrize("status", ["FAILED", "FAULT", "TIMED_OUT", "STOPPED", "CLIENT_ERROR"])
def test_a_failed_or_stopped_phase_of_a_build_someone_started_mails(project: str, status: str) -> None:
    """make promote, make rollback (PromoteProject), or a build started by hand: the documented sample's
    initiator is a person (MyCodeBuildDemoUser)."""
    event = phase_event(REFS[project], "BUILD", status)

    assert event["detail"]["additional-information"]["initiator"] == "MyCodeBuildDemoUser"
    assert pattern("BuildFailedRule").matches_event(event)


@pytest.mark.parametrize("project", ["BuildProject", "ValidateProject", "PromoteProject"])
def test_a_failed_phase_of_a_build_this_pipeline_started_is_left_to_its_execution(project: str) -> None:
    event = phase_event(REFS[project], "BUILD", "FAILED", initiator=PIPELINES_INITIATOR)
    elsewhere = phase_event(REFS[project], "BUILD", "FAILED", initiator="codepipeline/someone-elses-pipeline")

    assert not pattern("BuildFailedRule").matches_event(event)
    assert pattern("BuildFailedRule").matches_event(elsewhere)  # not this pipeline's: mailed


def test_the_pipelines_initiator_is_the_one_the_validation_reads_its_pipeline_from() -> None:
    """CodeBuild gives a build the pipeline started the initiator codepipeline/<pipeline name>: the
    validation's approval mail reads the pipeline's name from it (CODEBUILD_INITIATOR); the rule leaves it
    out."""
    (initiator,) = RESOURCES["BuildFailedRule"]["Properties"]["EventPattern"]["detail"][
        "additional-information"
    ]["initiator"]

    assert resolve(initiator, REFS) == {"anything-but": [PIPELINES_INITIATOR]}
    assert 'initiator.removeprefix("codepipeline/")' in cfn.buildspec_text("ValidateProject")


@pytest.mark.parametrize(
    "event",
    [
        sample(
            "codebuild-build-phase-change"
        ),  # the documented sample: another project, a phase that succeeded
        phase_event(REFS["BuildProject"], "BUILD", "SUCCEEDED"),
        phase_event("someone-elses-project", "BUILD", "FAILED"),
        sample(
            "codebuild-build-state-change",
            **{"project-name": REFS["BuildProject"], "build-status": "IN_PROGRESS"},
        ),
        sample(
            "codebuild-build-state-change", **{"project-name": REFS["BuildProject"], "build-status": "FAILED"}
        ),
    ],
    ids=["documented sample", "succeeded phase", "other project", "in-progress build", "build state event"],
)
def test_succeeding_phases_in_progress_builds_and_other_projects_do_not_mail(event: dict[str, Any]) -> None:
    assert not pattern("BuildFailedRule").matches_event(event)


def test_build_mail_names_the_project_the_phase_and_links_the_logs() -> None:
    message = render("BuildFailedRule", phase_event(REFS["PromoteProject"], "PRE_BUILD", "FAILED"))

    assert message == (
        "CodeBuild project notebook-pipeline-usp-promote: its PRE_BUILD phase ended FAILED "
        "at 2017-09-01T16:14:21Z (UTC). Logs: https://console.aws.amazon.com/cloudwatch/home?region=us-west-2#logEvent:"
        "group=/aws/codebuild/my-sample-project;stream=8745a7a9-c340-456a-9166-edf953571bEX "
        "(build arn:aws:codebuild:us-west-2:"
        "123456789012:build/my-sample-project:8745a7a9-c340-456a-9166-edf953571bEX)"
    )


def test_build_rule_targets_the_alert_topic_which_eventbridge_may_publish_to() -> None:
    topic_policy = RESOURCES["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]

    (target,) = RESOURCES["BuildFailedRule"]["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": "AlertTopic"}
    assert "events.amazonaws.com" in topic_policy["Principal"]["Service"]


# --- a daily run that failed without its runner saying so: RunStoppedRule, then RunMailer ------------------

STACK = REFS["Pipeline"]
CLUSTER_ARN = f"arn:aws:ecs:us-east-1:123456789012:cluster/{STACK}-runs"
# What CloudFormation resolves RunMailer's substitutions to, for this stack (AlertTopic: the inbox's).
RUN_VALUES = {"RunCluster.Arn": CLUSTER_ARN, "RunLogGroup": f"/ecs/{STACK}-run", "OutputBucket": "hotel-out",
              "OutputPrefix": "daily", "AWS::Region": "us-east-1"}  # fmt: skip
# The documented event's task
TASK = "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad"
PULL_DENIED = "CannotPullContainerError: pull access denied"
NO_SECRETS = "ResourceInitializationError: unable to pull secrets or registry auth"


def stopped(exit_code: int | None, reason: str = PULL_DENIED, **detail: Any) -> dict[str, Any]:
    """AWS's documented Fargate task event as ECS sends it when a run's task stops: its container exited
    with exit_code, or (None) the task failed to start it, for `reason`."""
    event = sample("ecs-task-state-change", clusterArn=CLUSTER_ARN, lastStatus="STOPPED",
                   desiredStatus="STOPPED", group=f"family:{STACK}-run")  # fmt: skip
    event["detail"]["containers"][0].update(name="runner", lastStatus="STOPPED")
    if exit_code is None:
        event["detail"].update(stopCode="TaskFailedToStart", stoppedReason=reason)
        del event["detail"]["containers"][0]["runtimeId"]
    else:
        event["detail"]["containers"][0]["exitCode"] = exit_code
        event["detail"].update(
            stopCode="EssentialContainerExited", stoppedReason="Essential container in task exited"
        )
    event["detail"].update(detail)
    return event


@pytest.fixture
def inbox() -> Iterator[stepfunctions.Inbox]:
    """moto executing state machines, with an alert topic read through a queue."""
    with stepfunctions.executing_aws():
        yield stepfunctions.Inbox.create()


def run_mails(inbox: stepfunctions.Inbox, event: dict[str, Any]) -> list[tuple[str, str]]:
    """What the engineers get from RunStoppedRule and RunMailer for one ECS event: the rule's pattern
    (resolved for this stack) decides whether RunMailer runs; RunMailer, its substitutions resolved, mails."""
    document = resolve(RESOURCES["RunStoppedRule"]["Properties"]["EventPattern"], RUN_VALUES)
    if not eventbridge.pattern(document).matches_event(event):
        return inbox.mails()
    mailer = RESOURCES["RunMailer"]["Properties"]
    values = {**RUN_VALUES, "AlertTopic": inbox.topic}
    substitutions = {name: str(resolve(v, values)) for name, v in mailer["DefinitionSubstitutions"].items()}
    execution = stepfunctions.run(mailer["Definition"], substitutions, event)
    assert execution["status"] == "SUCCEEDED", execution
    return inbox.mails()


def test_the_exit_codes_the_rule_leaves_to_the_runner_are_the_runners_own() -> None:
    """The one list in the template of what the runner mails itself, held to runner/exits.py."""
    detail = RESOURCES["RunStoppedRule"]["Properties"]["EventPattern"]["detail"]
    exited, never_started = detail["$or"]
    ((kind, codes),) = exited["containers"]["exitCode"][0].items()

    assert (kind, sorted(codes)) == ("anything-but", sorted(EXITS))
    assert never_started == {"stopCode": ["TaskFailedToStart"]}
    assert KILLED.code not in EXITS


@pytest.mark.parametrize("exit_code", sorted(EXITS))
def test_a_runner_exit_code_is_the_runners_to_mail_and_never_run_mailers(
    inbox: stepfunctions.Inbox, exit_code: int
) -> None:
    assert run_mails(inbox, stopped(exit_code)) == []


def test_a_killed_container_is_mailed_once_in_the_words_of_runner_exits(inbox: stepfunctions.Inbox) -> None:
    ((subject, message),) = run_mails(inbox, stopped(KILLED.code))

    assert subject == f"Run FAILED: family:{STACK}-run (exit 137)"
    assert message.startswith(
        f"Run {TASK} of family:{STACK}-run stopped at 2020-01-23T17:57:58Z (UTC) with exit code 137: "
        f"{KILLED.mail}. ECS says: Essential container in task exited. Its logs, the stream "
        f"run/runner/{TASK.rsplit('/', 1)[1]} of the log group /ecs/{STACK}-run: https://us-west-2.console."
    )


@pytest.mark.parametrize("containers", ["listed without an exit code", "none listed"])
@pytest.mark.parametrize("reason", [PULL_DENIED, NO_SECRETS])
def test_a_task_that_never_started_is_mailed_once_with_ecss_reason(
    inbox: stepfunctions.Inbox, containers: str, reason: str
) -> None:
    event = stopped(None, reason)
    if containers == "none listed":
        event["detail"]["containers"] = []

    ((subject, message),) = run_mails(inbox, event)

    assert subject == f"Run FAILED: family:{STACK}-run (exit none)"
    assert "with exit code none: the container never ran (image pull, network, role or capacity" in message
    assert f"ECS says: {reason}." in message


@pytest.mark.parametrize("exit_code", [3, 99, 139, 255])
def test_an_exit_code_the_runner_does_not_use_is_mailed_once(
    inbox: stepfunctions.Inbox, exit_code: int
) -> None:
    """The runner died without a word (a crash below Python, a signal it could not handle)."""
    ((subject, message),) = run_mails(inbox, stopped(exit_code))

    assert subject == f"Run FAILED: family:{STACK}-run (exit {exit_code})"
    assert f"with exit code {exit_code}: an exit code the runner does not use: see the logs." in message


@pytest.mark.parametrize(
    "event",
    [
        stopped(KILLED.code, lastStatus="RUNNING"),
        stopped(KILLED.code, clusterArn="arn:aws:ecs:us-east-1:123456789012:cluster/someone-elses"),
        stopped(None, clusterArn="arn:aws:ecs:us-east-1:123456789012:cluster/someone-elses"),
        stopped(None, stopCode="UserInitiated"),
    ],
    ids=["still running", "another cluster's kill", "another cluster's task", "stopped before it started"],
)
def test_running_tasks_other_clusters_and_a_stop_before_the_start_are_not_mailed(
    inbox: stepfunctions.Inbox, event: dict[str, Any]
) -> None:
    assert run_mails(inbox, event) == []


def test_run_mailer_restates_none_of_the_runners_exit_meanings() -> None:
    """RunMailer tells 137 apart, and nothing else: what each runner exit code means is the runner's mail."""
    definition = RESOURCES["RunMailer"]["Properties"]["Definition"]
    compared = {
        choice["NumericEquals"]
        for state in definition["States"].values()
        for choice in state.get("Choices", [])
        if "NumericEquals" in choice
    }
    text = json.dumps(definition)

    assert compared == {KILLED.code}
    assert [e.meaning for e in EXITS.values() if e.meaning in text] == []


# Alarms on a failure that is mailed already (by PipelineMailer): on the dashboard, mailing nobody.
QUIET_ALARMS = {
    "BuildFailuresAlarm": ("AWS/CodeBuild", "FailedBuilds", "ProjectName", {"Ref": "BuildProject"}),
    "ValidateFailuresAlarm": ("AWS/CodeBuild", "FailedBuilds", "ProjectName", {"Ref": "ValidateProject"}),
}
ALARMS = {
    "PipelineRuleFailuresAlarm": (
        "AWS/Events", "FailedInvocations", "RuleName", {"Ref": "PipelineEndedRule"},
    ),
    "MailerFailuresAlarm": ("AWS/States", "ExecutionsFailed", "StateMachineArn", {"Ref": "PipelineMailer"}),
    "BuildRuleFailuresAlarm": ("AWS/Events", "FailedInvocations", "RuleName", {"Ref": "BuildFailedRule"}),
    "RunMailerFailuresAlarm": ("AWS/States", "ExecutionsFailed", "StateMachineArn", {"Ref": "RunMailer"}),
    "RunRuleFailuresAlarm": ("AWS/Events", "FailedInvocations", "RuleName", {"Ref": "RunStoppedRule"}),
    "ScheduleDeadLettersAlarm": (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
        {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]},
    ),
    "AlertDeliveryFailuresAlarm": (
        "AWS/SNS", "NumberOfNotificationsFailed", "TopicName", {"Fn::GetAtt": ["AlertTopic", "TopicName"]},
    ),
}  # fmt: skip


@pytest.mark.parametrize("alarm", sorted(ALARMS | QUIET_ALARMS))
def test_each_alarm_watches_this_stacks_resource_and_notifies_the_topic_unless_mailed_already(
    alarm: str,
) -> None:
    properties = RESOURCES[alarm]["Properties"]
    namespace, metric, dimension, value = (ALARMS | QUIET_ALARMS)[alarm]
    actions = ("AlarmActions", "OKActions", "InsufficientDataActions")

    assert (properties["Namespace"], properties["MetricName"]) == (namespace, metric)
    assert properties["Dimensions"] == [{"Name": dimension, "Value": value}]
    if alarm in QUIET_ALARMS:
        assert [a for a in actions if a in properties] == []
    else:
        assert properties["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert properties["TreatMissingData"] == "notBreaching"  # quiet weeks are not alarms


def test_every_alarm_in_the_template_is_one_of_those_and_the_quiet_ones_are_on_the_dashboard() -> None:
    alarms = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    assert alarms == set(ALARMS) | set(QUIET_ALARMS) | {"MissedRunAlarm"}  # test_runs.py checks that one
    assert set(QUIET_ALARMS) <= cfn.references(RESOURCES["Dashboard"])


@pytest.mark.parametrize(
    "emails, subscribed",
    [
        ("", []),
        ("a@example.com", ["a@example.com"]),
        ("a@x.io,b@y.io,c@z.io", ["a@x.io", "b@y.io", "c@z.io"]),
    ],
)
def test_each_address_of_the_list_gets_its_own_subscription(emails: str, subscribed: list[str]) -> None:
    """The HasEmailN conditions, evaluated as CloudFormation would for a given NotificationEmails."""
    padded = (emails + ",,").split(",")
    created = [
        padded[n]
        for n in range(3)
        if RESOURCES[f"AlertEmail{n + 1}"]["Condition"] == f"HasEmail{n + 1}" and padded[n]
    ]

    assert created == subscribed
    assert TEMPLATE["Conditions"]["HasEmail2"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Select": [1, {"Fn::Split": [",", {"Fn::Join": ["", [
            {"Ref": "NotificationEmails"}, ",,"]]}]}]}, ""]}]
    }  # fmt: skip
