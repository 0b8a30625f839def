"""The alerts in template/pipeline.yaml: each EventBridge rule's pattern, loaded from the template, run
through a real EventBridge pattern matcher (moto's) against AWS's documented sample events; each input
transformer rendered from those events; the mailers run on moto's Step Functions interpreter; and the wiring
of key, topic, subscriptions and alarms. A daily run's failure is mailed once: the runner mails its own exit
codes (runner/exits.py), RunMailer only what no runner lived to say."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import cfn
import eventbridge
import pytest
import stepfunctions
from cfn import load, resolve, statements
from moto.codepipeline.models import PipelineExecution
from moto.events.models import EventPattern
from support import REPO

from runner.exits import EXITS, KILLED

TEMPLATE = load()
RESOURCES = TEMPLATE["Resources"]
EVENTS = REPO / "tests" / "fixtures" / "events"
# What CloudFormation resolves the rules' references to, for a stack named notebook-pipeline-usp.
REFS = {"Pipeline": "notebook-pipeline-usp", "BuildProject": "notebook-pipeline-usp-build",
        "ValidateProject": "notebook-pipeline-usp-validate"}  # fmt: skip


def pattern(rule: str) -> EventPattern:
    return EventPattern.load(json.dumps(resolve(RESOURCES[rule]["Properties"]["EventPattern"], REFS)))


def sample(name: str, **detail: Any) -> dict[str, Any]:
    """An AWS documented sample event, with some of its detail fields changed."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event = copy.deepcopy(event)
    event["detail"].update(detail)
    return event


def pipeline_event(state: str, pipeline: str = REFS["Pipeline"]) -> dict[str, Any]:
    return sample("codepipeline-pipeline-execution-state-change", state=state, pipeline=pipeline)


def phase_event(project: str, phase: str, status: str) -> dict[str, Any]:
    return sample("codebuild-build-phase-change", **{
        "project-name": project, "completed-phase": phase, "completed-phase-status": status,
    })  # fmt: skip


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


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "STOPPED", "SUPERSEDED"])
def test_every_ended_execution_of_this_pipeline_mails(state: str) -> None:
    assert pattern("PipelineEndedRule").matches_event(pipeline_event(state))


@pytest.mark.parametrize(
    "event",
    [
        pipeline_event("STARTED"),  # the documented sample as it is
        pipeline_event("RESUMED"),
        pipeline_event("FAILED", pipeline="someone-elses-pipeline"),
        sample("codebuild-build-state-change"),
    ],
    ids=["started", "resumed", "other pipeline", "a build event"],
)
def test_started_executions_and_other_pipelines_do_not_mail(event: dict[str, Any]) -> None:
    assert not pattern("PipelineEndedRule").matches_event(event)


def mailer_input(state: str) -> dict[str, Any]:
    """What PipelineEndedRule hands the mailer for a sample event: its input transformer, rendered."""
    return json.loads(render("PipelineEndedRule", pipeline_event(state)))


def test_pipeline_rule_hands_the_mailer_the_pipeline_state_execution_time_and_region() -> None:
    assert mailer_input("FAILED") == {
        "pipeline": "notebook-pipeline-usp", "state": "FAILED",
        "execution": "01234567-0123-0123-0123-012345678901",
        "time": "2017-04-22T03:31:47Z", "region": "us-east-1",
    }  # fmt: skip


COMMIT = "4c0ffee0d15ea5e0000000000000000000000b0b"


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[stepfunctions.Inbox]:
    """moto executing state machines, with this stack's pipeline and its alert topic read through a queue;
    its executions have COMMIT as their source revision (the shape GetPipelineExecution documents)."""
    original = PipelineExecution.to_dict

    def with_revision(execution: PipelineExecution) -> dict[str, Any]:
        answer = original(execution)
        if execution.variables != [{"name": "no-source", "value": "yes"}]:
            answer["artifactRevisions"] = [{
                "name": "SourceArtifact", "revisionId": COMMIT,
                "revisionSummary": '{"ProviderType":"GitHub","CommitMessage":"Rename the USP column"}',
            }]  # fmt: skip
        return answer

    monkeypatch.setattr(PipelineExecution, "to_dict", with_revision)
    with stepfunctions.executing_aws():
        stepfunctions.create_pipeline(REFS["Pipeline"])
        yield stepfunctions.Inbox.create()


def mail_pipeline_outcome(inbox: stepfunctions.Inbox, state: str, execution: str) -> dict[str, Any]:
    mailer = RESOURCES["PipelineMailer"]["Properties"]
    assert set(mailer["DefinitionSubstitutions"]) == {"TopicArn", "Repository"}
    payload = mailer_input(state) | {"execution": execution}
    return stepfunctions.run(
        mailer["Definition"], {"TopicArn": inbox.topic, "Repository": "acme/usp-model"}, payload
    )


def start_execution(variables: list[dict[str, str]] | None = None) -> str:
    codepipeline = boto3.client("codepipeline")
    extra = {"variables": variables} if variables else {}
    return codepipeline.start_pipeline_execution(name=REFS["Pipeline"], **extra)["pipelineExecutionId"]


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED"])
def test_pipeline_mail_names_the_pipeline_result_commit_and_execution_with_links(
    inbox: stepfunctions.Inbox, state: str
) -> None:
    execution = start_execution()

    assert mail_pipeline_outcome(inbox, state, execution)["status"] == "SUCCEEDED"

    assert inbox.mails() == [(
        f"Pipeline notebook-pipeline-usp {state}",
        (f"Pipeline notebook-pipeline-usp ended {state} at 2017-04-22T03:31:47Z (UTC), on commit {COMMIT} "
         f"(https://github.com/acme/usp-model/commit/{COMMIT}). Execution {execution}, its stages and logs: "
         "https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/notebook-pipeline-usp/"
         f"executions/{execution}/timeline?region=us-east-1"),
    )]  # fmt: skip


def test_an_execution_without_a_source_revision_still_mails_with_its_link(
    inbox: stepfunctions.Inbox,
) -> None:
    execution = start_execution([{"name": "no-source", "value": "yes"}])

    assert mail_pipeline_outcome(inbox, "STOPPED", execution)["status"] == "SUCCEEDED"

    assert inbox.mails() == [(
        "Pipeline notebook-pipeline-usp STOPPED",
        (f"Pipeline notebook-pipeline-usp ended STOPPED at 2017-04-22T03:31:47Z (UTC). "
         f"Execution {execution}; its commit, stages and logs: https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/"
         f"notebook-pipeline-usp/executions/{execution}/timeline?region=us-east-1"),
    )]  # fmt: skip


def test_every_mail_links_a_pipeline_execution_in_one_shape() -> None:
    """PipelineMailer's two mails, the approval's answer (ReleaseApprovedRule, ReleaseNotApprovedRule) and the
    validation's approval request link an execution alike, whatever each writes its values with ({}, <name>,
    {name})."""
    text = cfn.TEMPLATE.read_text()
    links = re.findall(
        r"https://\S+?\.console\.aws\.amazon\.com/codesuite/codepipeline/pipelines/\S+/executions/\S+", text
    )
    shapes = {re.sub(r"\{\w*\}|<\w+>", "V", link.rstrip("'\",.")) for link in links}

    assert len(links) == 5, links
    assert shapes == {
        "https://V.console.aws.amazon.com/codesuite/codepipeline/pipelines/V/executions/V/timeline?region=V"
    }


def test_a_failed_commit_lookup_never_costs_the_mail(inbox: stepfunctions.Inbox) -> None:
    """An execution the API does not know (or a lookup denied): retried, then mailed without the commit."""
    unknown = "99999999-0000-0000-0000-000000000000"

    assert mail_pipeline_outcome(inbox, "SUPERSEDED", unknown)["status"] == "SUCCEEDED"

    ((subject, message),) = inbox.mails()
    assert subject == "Pipeline notebook-pipeline-usp SUPERSEDED"
    assert message.startswith(
        f"Pipeline notebook-pipeline-usp ended SUPERSEDED at 2017-04-22T03:31:47Z (UTC). "
        f"Execution {unknown}; its commit, stages and logs: https://"
    )


def test_the_mailer_may_look_up_this_pipeline_and_publish_to_the_encrypted_topic_only() -> None:
    granted = statements(RESOURCES, "MailerRole")
    definition = json.dumps(RESOURCES["PipelineMailer"]["Properties"]["Definition"])
    (invoke,) = statements(RESOURCES, "MailerInvokeRole").values()
    (target,) = RESOURCES["PipelineEndedRule"]["Properties"]["Targets"]

    assert granted["FindCommit"]["Action"] == "codepipeline:GetPipelineExecution"
    assert "${Pipeline}" in granted["FindCommit"]["Resource"]["Fn::Sub"]
    assert "aws-sdk:codepipeline:getPipelineExecution" in definition
    assert (granted["Mail"]["Action"], granted["Mail"]["Resource"]) == (
        "sns:Publish",
        {"Ref": "AlertTopic"},
    )
    assert granted["EncryptMail"]["Resource"] == {"Fn::GetAtt": ["AlertKey", "Arn"]}
    assert (target["Arn"], target["RoleArn"]) == (
        {"Ref": "PipelineMailer"},
        {"Fn::GetAtt": ["MailerInvokeRole", "Arn"]},
    )
    assert (invoke["Action"], invoke["Resource"]) == ("states:StartExecution", {"Ref": "PipelineMailer"})


@pytest.mark.parametrize("project", ["BuildProject", "ValidateProject"])
@pytest.mark.parametrize("status", ["FAILED", "FAULT", "TIMED_OUT", "STOPPED", "CLIENT_ERROR"])
def test_a_failed_or_stopped_phase_of_either_project_mails(project: str, status: str) -> None:
    assert pattern("BuildFailedRule").matches_event(phase_event(REFS[project], "BUILD", status))


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
    message = render("BuildFailedRule", phase_event(REFS["ValidateProject"], "BUILD", "FAILED"))

    assert message == (
        "CodeBuild project notebook-pipeline-usp-validate: its BUILD phase ended FAILED "
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


ALARMS = {
    "BuildFailuresAlarm": ("AWS/CodeBuild", "FailedBuilds", "ProjectName", {"Ref": "BuildProject"}),
    "ValidateFailuresAlarm": ("AWS/CodeBuild", "FailedBuilds", "ProjectName", {"Ref": "ValidateProject"}),
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


@pytest.mark.parametrize("alarm", sorted(ALARMS))
def test_each_alarm_watches_this_stacks_resource_and_notifies_the_topic(alarm: str) -> None:
    properties = RESOURCES[alarm]["Properties"]
    namespace, metric, dimension, value = ALARMS[alarm]

    assert (properties["Namespace"], properties["MetricName"]) == (namespace, metric)
    assert properties["Dimensions"] == [{"Name": dimension, "Value": value}]
    assert properties["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert properties["TreatMissingData"] == "notBreaching"  # quiet weeks are not alarms


def test_every_alarm_in_the_template_is_one_of_those() -> None:
    alarms = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    assert alarms == set(ALARMS) | {"MissedRunAlarm"}  # tests/pipeline/test_runs.py checks that one


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
