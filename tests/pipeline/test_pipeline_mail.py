"""The one mail of each pipeline execution (issue 20): PipelineEndedRule's pattern, loaded from the template,
run through moto's EventBridge matcher against AWS's documented sample event; its input transformer
rendered; PipelineMailer run on moto's Step Functions interpreter (tests/pipeline/stepfunctions.py), with
the execution's commit (GetPipelineExecution) and its actions (ListActionExecutions, which moto lacks: a
stand-in answers in the API's documented shape). A FAILED execution's mail names the action that failed,
links its run and logs and, for the Validate stage, the candidate's run reports; a look-up that fails or
finds nothing never costs the mail."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import cfn
import pytest
import stepfunctions
from cfn import load, resolve
from moto.codepipeline.models import PipelineExecution
from moto.codepipeline.responses import CodePipelineResponse
from moto.core.exceptions import JsonRESTError
from moto.events.models import EventPattern
from moto.stepfunctions.parser.asl.utils import json_path
from support import REPO

from runner.locations import Location
from runner.report import console_link

RESOURCES = load()["Resources"]
EVENTS = REPO / "tests" / "fixtures" / "events"
PIPELINE = "notebook-pipeline-usp"
# What CloudFormation resolves the mailer's substitutions and ValidateProject's environment to, for this
# stack (AlertTopic: the inbox's).
VALUES = {"Pipeline": PIPELINE, "GitHubRepository": "acme/usp-model", "OutputBucket": "hotel-out",
          "ValidationPrefix": "validation"}  # fmt: skip
COMMIT = "4c0ffee0d15ea5e0000000000000000000000b0b"
TIME, REGION = "2017-04-22T03:31:47Z", "us-east-1"  # the documented event's
BUILD_PAGE = "https://console.aws.amazon.com/codesuite/codebuild/projects/notebook-pipeline-usp-validate/build/notebook-pipeline-usp-validate%3A1b2c/?region=us-east-1"
FAILED_BUILD = (
    "Build terminated with state: FAILED. Phase: BUILD, Code: COMMAND_EXECUTION_ERROR, "
    "Message: Error while executing command: ... Reason: exit status 20"
)


def pipeline_event(state: str, pipeline: str = PIPELINE) -> dict[str, Any]:
    event = copy.deepcopy(
        json.loads((EVENTS / "codepipeline-pipeline-execution-state-change.json").read_text())
    )
    event["detail"].update(state=state, pipeline=pipeline)
    return event


def pattern() -> EventPattern:
    document = resolve(RESOURCES["PipelineEndedRule"]["Properties"]["EventPattern"], VALUES)
    return EventPattern.load(json.dumps(document))


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "STOPPED", "SUPERSEDED"])
def test_every_ended_execution_of_this_pipeline_mails(state: str) -> None:
    assert pattern().matches_event(pipeline_event(state))


@pytest.mark.parametrize(
    "event",
    [
        pipeline_event("STARTED"),
        pipeline_event("RESUMED"),
        pipeline_event("FAILED", pipeline="someone-elses-pipeline"),
        json.loads((EVENTS / "codebuild-build-state-change.json").read_text()),
    ],
    ids=["started", "resumed", "other pipeline", "a build event"],
)
def test_started_executions_and_other_pipelines_do_not_mail(event: dict[str, Any]) -> None:
    assert not pattern().matches_event(event)


def mailer_input(state: str) -> dict[str, Any]:
    """What PipelineEndedRule hands the mailer for the sample event: its input transformer, rendered."""
    (target,) = RESOURCES["PipelineEndedRule"]["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    event = pipeline_event(state)

    def value(path: str) -> Any:
        found: Any = event
        for key in path.removeprefix("$.").split("."):
            found = found[key]
        return found

    values = {name: value(path) for name, path in transformer["InputPathsMap"].items()}
    assert set(re.findall(r"<([A-Za-z0-9_-]+)>", transformer["InputTemplate"])) == set(values)
    return json.loads(
        re.sub(r"<([A-Za-z0-9_-]+)>", lambda m: str(values[m.group(1)]), transformer["InputTemplate"])
    )


def test_pipeline_rule_hands_the_mailer_the_pipeline_state_execution_time_and_region() -> None:
    assert mailer_input("FAILED") == {
        "pipeline": PIPELINE, "state": "FAILED", "execution": "01234567-0123-0123-0123-012345678901",
        "time": TIME, "region": REGION,
    }  # fmt: skip


# --- PipelineMailer, run -----------------------------------------------------------------------------------

ACTIONS: dict[str, list[dict[str, Any]]] = {}  # ListActionExecutions' answer, by pipeline execution id


def list_action_executions(self: CodePipelineResponse) -> str:
    """ListActionExecutions filtered by a pipeline execution, as the API documents its request and answer
    (an execution it does not know: PipelineExecutionNotFoundException)."""
    request = json.loads(self.body)
    assert request["pipelineName"] == PIPELINE
    execution = request["filter"]["pipelineExecutionId"]
    if execution not in ACTIONS:
        raise JsonRESTError("PipelineExecutionNotFoundException", f"no execution {execution} in {PIPELINE}")
    return json.dumps({"actionExecutionDetails": ACTIONS[execution]})


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[stepfunctions.Inbox]:
    """moto executing state machines, with this stack's pipeline and its alert topic read through a queue;
    its executions have COMMIT as their source revision (the shape GetPipelineExecution documents), but
    for one started with the variable no-source."""
    original = PipelineExecution.to_dict

    def with_revision(execution: PipelineExecution) -> dict[str, Any]:
        answer = original(execution)
        if execution.variables != [{"name": "no-source", "value": "yes"}]:
            answer["artifactRevisions"] = [{"name": "Source", "revisionId": COMMIT}]
        return answer

    monkeypatch.setattr(PipelineExecution, "to_dict", with_revision)
    monkeypatch.setattr(CodePipelineResponse, "list_action_executions", list_action_executions, raising=False)
    # A filter is an indefinite path: Step Functions (Jayway JsonPath) gives [] when nothing matches, where
    # moto's interpreter raises (and the state's Catch then mails, without the Choice AWS would take).
    indefinite = json_path._contains_slice_or_wildcard_array
    monkeypatch.setattr(json_path, "_contains_slice_or_wildcard_array", lambda p: "[?(" in p or indefinite(p))
    ACTIONS.clear()
    with stepfunctions.executing_aws():
        stepfunctions.create_pipeline(PIPELINE)
        yield stepfunctions.Inbox.create()


def start_execution(actions: list[dict[str, Any]] | None = None, source: bool = True) -> str:
    """A pipeline execution in moto; `actions` (None: none known) what ListActionExecutions says of it."""
    extra = {} if source else {"variables": [{"name": "no-source", "value": "yes"}]}
    execution = boto3.client("codepipeline").start_pipeline_execution(name=PIPELINE, **extra)[
        "pipelineExecutionId"
    ]
    if actions is not None:
        ACTIONS[execution] = [{"pipelineExecutionId": execution, **a} for a in actions]
    return execution


def action(stage: str, name: str, status: str, **result: Any) -> dict[str, Any]:
    """One action execution as ListActionExecutions lists it (result: its output.executionResult)."""
    answer: dict[str, Any] = {"stageName": stage, "actionName": name, "status": status}
    if result:
        answer["output"] = {"executionResult": result}
    return answer


def mail(inbox: stepfunctions.Inbox, state: str, execution: str) -> tuple[str, str]:
    """The mails PipelineMailer sends for an execution that ended in `state`: exactly one, always."""
    mailer = RESOURCES["PipelineMailer"]["Properties"]
    values = {**VALUES, "AlertTopic": inbox.topic}
    substitutions = {name: str(resolve(v, values)) for name, v in mailer["DefinitionSubstitutions"].items()}
    payload = mailer_input(state) | {"execution": execution, "pipeline": PIPELINE}

    assert stepfunctions.run(mailer["Definition"], substitutions, payload)["status"] == "SUCCEEDED"
    (sent,) = inbox.mails()
    return sent


def timeline(execution: str) -> str:
    return (
        f"https://{REGION}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{PIPELINE}/executions/"
        f"{execution}/timeline?region={REGION}"
    )


def on_commit() -> str:
    return f", on commit {COMMIT} (https://github.com/acme/usp-model/commit/{COMMIT})"


@pytest.mark.parametrize("state", ["SUCCEEDED", "STOPPED", "SUPERSEDED"])
def test_an_execution_that_did_not_fail_is_mailed_with_its_commit_and_link(
    inbox: stepfunctions.Inbox, state: str
) -> None:
    execution = start_execution([action("Build", "BuildImage", "Succeeded")])

    assert mail(inbox, state, execution) == (
        f"Pipeline {PIPELINE} {state}",
        (
            f"Pipeline {PIPELINE} ended {state} at {TIME} (UTC){on_commit()}. Execution {execution}, its "
            f"stages and logs: {timeline(execution)}"
        ),
    )


def reports_link(commit: str) -> str:
    """Where the candidate's runner stored its reports: ValidateProject's VALIDATION_URI/<commit>/_runs/,
    in the S3 console as the runner links a report folder (runner/report.py)."""
    environment = RESOURCES["ValidateProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    (uri,) = [resolve(v["Value"], VALUES) for v in environment if v["Name"] == "VALIDATION_URI"]
    folder = Location(f"{uri}/{commit}/_runs")
    return f"under {folder.uri}/: {console_link(folder, REGION)}"


def test_a_failed_validation_names_the_action_its_error_its_logs_and_the_candidates_reports(
    inbox: stepfunctions.Inbox,
) -> None:
    execution = start_execution([
        action("Source", "GitHub", "Succeeded"), action("Build", "BuildImage", "Succeeded"),
        action("Validate", "ValidateImage", "Failed", externalExecutionUrl=BUILD_PAGE,
               externalExecutionSummary="Build terminated with state: FAILED",
               errorDetails={"code": "JobFailed", "message": FAILED_BUILD}),
    ])  # fmt: skip

    assert mail(inbox, "FAILED", execution) == (
        f"Pipeline {PIPELINE} FAILED",
        (
            f"Pipeline {PIPELINE} ended FAILED at {TIME} (UTC){on_commit()}. It failed in stage Validate, "
            f"action ValidateImage ({FAILED_BUILD}). The run of that action, with its logs: {BUILD_PAGE}. "
            f"The candidate run reports are {reports_link(COMMIT)} Execution {execution}, its stages and "
            f"logs: {timeline(execution)}"
        ),
    )


def test_a_failed_build_names_the_action_and_links_its_logs_and_no_reports(
    inbox: stepfunctions.Inbox,
) -> None:
    """No error details: the action's summary says what happened."""
    page = BUILD_PAGE.replace("-validate", "-build")
    execution = start_execution([
        action("Build", "BuildImage", "Failed", externalExecutionUrl=page,
               externalExecutionSummary="Build terminated with state: FAILED"),
    ])  # fmt: skip

    _, message = mail(inbox, "FAILED", execution)

    assert message == (
        f"Pipeline {PIPELINE} ended FAILED at {TIME} (UTC){on_commit()}. It failed in stage Build, action "
        f"BuildImage (Build terminated with state: FAILED). The run of that action, with its logs: {page}. "
        f"Execution {execution}, its stages and logs: {timeline(execution)}"
    )


def test_a_failed_action_without_a_run_is_named_alone(inbox: stepfunctions.Inbox) -> None:
    """An action that failed before it started anything (e.g. CodeBuild refused to start): no link, no
    summary; the validation's reports are linked still, since they are where a run would have left them."""
    execution = start_execution([action("Validate", "ValidateImage", "Failed")])

    _, message = mail(inbox, "FAILED", execution)

    assert (
        f"(UTC){on_commit()}. It failed in stage Validate, action ValidateImage. The candidate run" in message
    )
    assert "The run of that action" not in message


@pytest.mark.parametrize(
    "actions, source",
    [(None, True), ([action("Build", "BuildImage", "Succeeded")], True), (None, False)],
    ids=["action look-up refused", "no action listed as failed", "neither commit nor actions"],
)
def test_a_failed_execution_whose_look_ups_fail_is_mailed_still(
    inbox: stepfunctions.Inbox, actions: list[dict[str, Any]] | None, source: bool
) -> None:
    """A look-up denied or finding nothing (retried first) never costs the mail: it says less."""
    execution = start_execution(actions, source)

    assert mail(inbox, "FAILED", execution) == (
        f"Pipeline {PIPELINE} FAILED",
        (
            f"Pipeline {PIPELINE} ended FAILED at {TIME} (UTC){on_commit() if source else ''}. "
            f"Execution {execution}, its stages and logs: {timeline(execution)}"
        ),
    )


def test_an_execution_the_api_does_not_know_is_mailed_with_its_link(inbox: stepfunctions.Inbox) -> None:
    unknown = "99999999-0000-0000-0000-000000000000"

    assert mail(inbox, "FAILED", unknown)[1] == (
        f"Pipeline {PIPELINE} ended FAILED at {TIME} (UTC). Execution {unknown}, its stages and logs: "
        f"{timeline(unknown)}"
    )


def test_the_validation_the_mailer_names_is_the_pipelines_stage_that_runs_validate_project() -> None:
    stages = RESOURCES["Pipeline"]["Properties"]["Stages"]
    (validate,) = [
        s["Name"] for s in stages
        if isinstance(s, dict) and any(a["Configuration"].get("ProjectName") == {"Ref": "ValidateProject"}
                                       for a in s.get("Actions", []))
    ]  # fmt: skip
    choice = RESOURCES["PipelineMailer"]["Properties"]["Definition"]["States"]["IsValidation"]
    (rule,) = choice["Choices"]

    assert {"Variable": "$.failed.action.StageName", "StringEquals": validate} in rule["And"]


def test_the_mailer_may_look_up_this_pipeline_and_publish_to_the_encrypted_topic_only() -> None:
    granted = cfn.mailer_role(RESOURCES, "PipelineMailer", "PipelineEndedRule")
    definition = json.dumps(RESOURCES["PipelineMailer"]["Properties"]["Definition"])
    (target,) = RESOURCES["PipelineEndedRule"]["Properties"]["Targets"]
    pipeline_arn = {
        "Fn::Sub": "arn:${AWS::Partition}:codepipeline:${AWS::Region}:${AWS::AccountId}:${Pipeline}"
    }

    assert (granted["FindCommit"]["Action"], granted["FindCommit"]["Resource"]) == (
        "codepipeline:GetPipelineExecution", pipeline_arn,
    )  # fmt: skip
    assert (granted["FindFailedAction"]["Action"], granted["FindFailedAction"]["Resource"]) == (
        "codepipeline:ListActionExecutions", pipeline_arn,
    )  # fmt: skip
    assert "aws-sdk:codepipeline:getPipelineExecution" in definition
    assert "aws-sdk:codepipeline:listActionExecutions" in definition
    assert target["RoleArn"] == {"Fn::GetAtt": ["MailerInvokeRole", "Arn"]}
    assert RESOURCES["PipelineMailer"]["Properties"]["RoleArn"] == {"Fn::GetAtt": ["MailerRole", "Arn"]}


def test_every_mail_links_a_pipeline_execution_in_one_shape() -> None:
    """PipelineMailer's mail, the approval's answer (ReleaseApprovedRule, ReleaseNotApprovedRule) and the
    validation's approval request link an execution alike, whatever each writes its values with ({}, <name>,
    {name})."""
    text = cfn.TEMPLATE.read_text()
    links = re.findall(
        r"https://\S+?\.console\.aws\.amazon\.com/codesuite/codepipeline/pipelines/\S+/executions/\S+", text
    )
    shapes = {re.sub(r"\{\w*\}|<\w+>", "V", link.rstrip("'\",.")) for link in links}

    assert len(links) == 4, links
    assert shapes == {
        "https://V.console.aws.amazon.com/codesuite/codepipeline/pipelines/V/executions/V/timeline?region=V"
    }
