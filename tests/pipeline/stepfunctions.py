"""Runs the template's Step Functions workflows on moto's ASL interpreter (moto executes state machines
when asked to), with the one thing it leaves out of AWS SDK integrations put back: Step Functions speaks
PascalCase to every service ("Parameters in Step Functions are expressed in PascalCase, even if the native
service API is in camelCase", AWS's SDK-integration guide), so its parameters are matched to the API's own
member names and its results come back capitalised, e.g. $.PipelineExecution.ArtifactRevisions."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk,
)

REGION = "us-east-1"


def _pascal(value: Any) -> Any:
    if isinstance(value, dict):
        return {key[:1].upper() + key[1:]: _pascal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_pascal(item) for item in value]
    return value


def _api_names(value: Any, shape: Any) -> Any:
    """Step Functions' PascalCase parameters as the API's member names, at every depth of the input."""
    if isinstance(value, dict) and shape is not None and shape.type_name == "structure":
        by_lower = {name.lower(): name for name in shape.members}
        named = {by_lower.get(key.lower(), key): item for key, item in value.items()}
        return {key: _api_names(item, shape.members.get(key)) for key, item in named.items()}
    if isinstance(value, list) and shape is not None and shape.type_name == "list":
        return [_api_names(item, shape.member) for item in value]
    return value


class _PascalCaseClient:
    """A boto3 client as a Step Functions SDK integration sees it."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, action: str) -> Any:
        call = getattr(self._client, action)
        operation = self._client.meta.method_to_api_mapping[action]

        def invoke(**parameters: Any) -> Any:
            shape = self._client.meta.service_model.operation_model(operation).input_shape
            named = _api_names(parameters, shape)
            response = call(**named)
            response.pop("ResponseMetadata", None)
            return _pascal(response)

        return invoke


_original_client_for = aws_sdk.boto_client_for


def _client_for(*args: Any, **kwargs: Any) -> _PascalCaseClient:
    return _PascalCaseClient(_original_client_for(*args, **kwargs))


@contextmanager
def executing_aws() -> Iterator[None]:
    """moto, in process, with state machines executed, in REGION."""
    aws_sdk.boto_client_for = _client_for
    environment = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": REGION}
    try:
        with (
            mock.patch.dict(os.environ, environment),
            mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        ):
            yield
    finally:
        aws_sdk.boto_client_for = _original_client_for


def create_pipeline(name: str) -> None:
    """A two-stage pipeline called `name` in moto (with the role CodePipeline needs), for the workflows
    that look one up or start it."""
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "codepipeline.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}  # fmt: skip
    role = boto3.client("iam").create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust)
    )
    action = {"name": "GitHub", "actionTypeId": {"category": "Source", "owner": "AWS", "version": "1",
                                                  "provider": "CodeStarSourceConnection"}}  # fmt: skip
    boto3.client("codepipeline").create_pipeline(pipeline={
        "name": name, "roleArn": role["Role"]["Arn"],
        "artifactStore": {"type": "S3", "location": "artifacts"},
        "stages": [{"name": "Source", "actions": [action]}, {"name": "Build", "actions": [action]}],
    })  # fmt: skip


@dataclass
class Inbox:
    """An alert topic with a queue subscribed to it: what the engineers' mailbox would get."""

    topic: str
    queue: str

    @classmethod
    def create(cls) -> Inbox:
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        return cls(topic, queue)

    def mails(self) -> list[tuple[str, str]]:
        """(subject, message) of each mail delivered so far."""
        reply = boto3.client("sqs").receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        bodies = [json.loads(m["Body"]) for m in reply.get("Messages", [])]
        return [(body["Subject"], body["Message"]) for body in bodies]


def run(definition: dict[str, Any], substitutions: dict[str, str], payload: dict[str, Any]) -> dict[str, Any]:
    """Creates the state machine (its DefinitionSubstitutions applied), runs it on payload: the execution."""
    text = json.dumps(definition)
    for name, value in substitutions.items():
        text = text.replace("${%s}" % name, value)  # noqa: UP031 -- ${Name} is CloudFormation's syntax
    assert "${" not in text, "every DefinitionSubstitution has a value"
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name=f"machine-{time.monotonic_ns()}", definition=text, type="EXPRESS",
        roleArn="arn:aws:iam::123456789012:role/mailer",
    )["stateMachineArn"]  # fmt: skip
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the state machine did not finish within 60 s"
        time.sleep(0.05)
    return described
