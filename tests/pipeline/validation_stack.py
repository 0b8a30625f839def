"""The pipeline's build and validation stages as the tests (test_buildspecs.py) and `make bench` run them.

`deployed(moto_endpoint, registry)` creates in moto what the template's stack holds for the validation:
the buckets (the lake holding the bundled sample), the alert topic (with an SQS mailbox subscribed), the
image parameter, the validation cluster and subnets, the run and validation task definitions, and in front
of moto the IAM proxy (iam.py) that holds every request to the template's role of the key that signed it
(a key STS hands out for an allowed AssumeRole, such as promotion's of PromoteRole, is that role's), with
ECS's task-credential endpoint serving the validation task role's key. A registry on `registry`
(host:port) stands in for ECR.

The platform's runner (a local image) is published to the registry's RUNNER_REPOSITORY, its digest recorded
in the SSM parameter of its major version, as `make publish-runner` does. `build()` runs the template's
inline build (the runner's recipe, FROM that digest) and `validate()` its inline validation, in the CodeBuild
stand-in (codebuild.py) with the variables the template and the pipeline set; the validation's
candidate runs in the harness's Fargate stand-in (`aws ecs run-task`: the image run by Docker with the task
definition's settings and its role's credentials as ECS serves them).

The stack also holds what its daily runs need: the run cluster, the Glue database of the published table, the
schedule's dead-letter queue, and the roles SchedulerRole, TaskRole and NotebookRole in the proxy (a second
task-credential endpoint serving TaskRole's key). `daily_run()` starts the next run as EventBridge Scheduler
does (the DailyRunSchedule target's Input as RunTask, with SchedulerRole's key) and reports what it ran and
published.

A plain module (no pytest): it needs tests/ and tests/pipeline on sys.path, as pytest and bench.py put them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import boto3
import cfn
import iam
from codebuild import AWS_SOCKET, HARNESS_BIN, Build, run
from support import SAMPLE_LAKE

RESOURCES = cfn.load()["Resources"]
REPOSITORY = "notebook-runner-ci"
RUNNER_REPOSITORY = "platform-runner"  # the platform stack's runner repository
PLATFORM = "notebook-platform"  # the platform stack (PlatformStackName's default)
REGION = "eu-west-1"
# The validate project's role, the candidate's task role and its notebook's, and the role promotion assumes.
VALIDATION_ROLES = ("ValidateRole", "ValidationTaskRole", "ValidationNotebookRole", "PromoteRole")
ROLES = ("BuildRole", *VALIDATION_ROLES)
# The daily run's: the role EventBridge Scheduler starts it with, its trusted steps' and its notebook's.
RUN_ROLES = ("SchedulerRole", "TaskRole", "NotebookRole")


@dataclass
class Stack:
    """The stack as the validation sees it: moto behind the IAM proxy, its names and the roles' keys."""

    moto: str
    proxy: str
    iam: iam.Iam
    values: dict[str, Any]
    validate_key: str
    build_key: str
    task_credentials: dict[str, list[str]]
    registry: str = ""
    runner: str = ""  # the runner's digest reference, once published
    queue: str = ""
    subnets: list[str] = field(default_factory=list)
    security_group: str = ""
    promote_key: str = ""
    engineer_key: str = ""
    scheduler_key: str = ""  # SchedulerRole's: what EventBridge Scheduler signs the daily RunTask with
    execution_key: str = ""  # TaskExecutionRole's: what ECS pulls a run's image with
    account: str = iam.ACCOUNT  # moto's backends the stack lives in (its proxy forwards there)
    run_task_credentials: dict[str, list[str]] = field(default_factory=dict)  # TaskRole's, as ECS serves them

    def versions(self) -> list[dict]:
        """The version records the validation wrote, oldest first."""
        return [self.record(k) for k in self.keys(self.values["VersionsBucket"], "versions/")]

    def promotions(self) -> list[dict]:
        """The promotion records, oldest first."""
        return [self.record(k) for k in self.keys(self.values["VersionsBucket"], "promotions/")]

    def record(self, key: str) -> dict:
        body = self.client("s3").get_object(Bucket=self.values["VersionsBucket"], Key=key)["Body"].read()
        return json.loads(body)

    @property
    def name(self) -> str:
        return self.values["AWS::StackName"]

    def client(self, service: str) -> Any:
        """A client of moto itself (not through the proxy), in the stack's account, for the set-up and the
        tests' own look."""
        client = boto3.client(service, region_name=REGION, endpoint_url=self.moto,
                              aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
        client.meta.events.register("before-send", functools.partial(_in_account, self.account))
        return client

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return sorted(o["Key"] for o in listed if not o["Key"].endswith("/"))

    def run_revisions(self) -> list[dict]:
        """The run family's revisions, oldest first."""
        ecs = self.client("ecs")
        arns = ecs.list_task_definitions(familyPrefix=f"{self.name}-run", sort="ASC")["taskDefinitionArns"]
        return [ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"] for arn in arns]

    def parameter(self, name: str) -> str:
        """The stack's SSM parameter /<stack>/<name>, as promotion left it."""
        return self.client("ssm").get_parameter(Name=f"/{self.name}/{name}")["Parameter"]["Value"]

    def validated_image(self) -> str:
        return self.parameter("validated-image")

    def promoted_commit(self) -> str:
        return self.parameter("promoted-commit")

    def promoted_runner(self) -> str:
        return self.parameter("promoted-runner")

    def publish_runner(self, image: str, version: str) -> str:
        """Publish the local runner `image` as `version`, as make publish-runner does: pushed to the runner
        repository and named by the SSM parameter of its major version; returns its digest reference."""
        return publish_runner(self, image, version)

    def announcements(self) -> list[dict]:
        """The messages the alert topic delivered to the mailbox since the last look (taken off it)."""
        sqs, found = self.client("sqs"), []
        for _ in range(5):
            reply = sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            found += [json.loads(m["Body"]) for m in reply.get("Messages", [])]
            for message in reply.get("Messages", []):
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            if found:
                break
        return found


def _in_account(account: str, request: Any, **_: Any) -> None:
    request.headers[iam.MOTO_ACCOUNT] = account


@dataclass
class Promoted:
    """A commit built, validated and (if it passed) promoted."""

    commit: str
    digest: str
    build: Build
    validation: Build


def stack_values(suffix: str, registry: str = "127.0.0.1:1", account: str = iam.ACCOUNT) -> dict[str, Any]:
    """What CloudFormation would resolve this stack's references to (the platform's exports among them)."""
    name = f"pipeline-{suffix}"
    roles = {r: f"arn:aws:iam::{account}:role/{name}-{r}" for r in (*ROLES, *RUN_ROLES, "TaskExecutionRole")}
    return {
        **cfn.defaults(),
        "AWS::StackName": name, "AWS::Region": REGION, "AWS::AccountId": account, "AWS::Partition": "aws",
        "DataLakeBucket": f"lake-{suffix}", "DataLakePrefix": "snapshots", "OutputBucket": f"output-{suffix}",
        "StagingBucket": f"staging-{suffix}", "StagingBucket.Arn": f"arn:aws:s3:::staging-{suffix}",
        "ValidationPrefix": "validation", "ValidationDate": "2019-08-01",
        "AlertTopic": f"arn:aws:sns:{REGION}:{account}:alerts-{suffix}", "AlertKey.Arn": "arn:aws:kms:k",
        "ValidationCluster": f"{name}-validation",
        "ValidationCluster.Arn": f"arn:aws:ecs:{REGION}:{account}:cluster/{name}-validation",
        "ImageRepository.Arn": f"arn:aws:ecr:{REGION}:{account}:repository/{REPOSITORY}",
        "AWS::URLSuffix": "amazonaws.com",
        "ImageDigestParameter": f"/{name}/validated-image",
        "PromotedCommitParameter": f"/{name}/promoted-commit",
        "PromotedRunnerParameter": f"/{name}/promoted-runner",
        "ValidateLogGroup.Arn": "arn:aws:logs:l", "BuildLogGroup.Arn": "arn:aws:logs:b",
        "ArtifactBucket.Arn": "arn:aws:s3:::artifacts",
        "VersionsBucket": f"versions-{suffix}", "VersionsBucket.Arn": f"arn:aws:s3:::versions-{suffix}",
        "PromoteLogGroup.Arn": "arn:aws:logs:p", "TableDatabase": f"db_{suffix}",
        "ImageRepository.RepositoryUri": f"{registry}/{REPOSITORY}",
        f"Export:{PLATFORM}-RunnerRepositoryUri": f"{registry}/{RUNNER_REPOSITORY}",
        f"Export:{PLATFORM}-RunnerRepositoryArn":
            f"arn:aws:ecr:{REGION}:{account}:repository/{RUNNER_REPOSITORY}",
        **{f"{r}.Arn": arn for r, arn in roles.items()},
        "RunCluster": f"{name}-runs", "RunCluster.Arn": f"arn:aws:ecs:{REGION}:{account}:cluster/{name}-runs",
        "ScheduleDeadLetterQueue.Arn": f"arn:aws:sqs:{REGION}:{account}:schedule-dead-letters-{suffix}",
    }  # fmt: skip


def register(stack: Stack, resource: str, family: str, image: str) -> str:
    """What CloudFormation registers from one of the template's task definitions."""
    properties = RESOURCES[resource]["Properties"]
    (container,) = properties["ContainerDefinitions"]
    environment = [{"name": e["Name"], "value": str(cfn.resolve(e["Value"], stack.values))}
                   for e in container["Environment"]]  # fmt: skip
    registered = stack.client("ecs").register_task_definition(
        family=family, requiresCompatibilities=properties["RequiresCompatibilities"],
        networkMode=properties["NetworkMode"], cpu="1024", memory="2048",
        taskRoleArn=str(cfn.resolve(properties["TaskRoleArn"], stack.values)),
        executionRoleArn=stack.values["TaskExecutionRole.Arn"],
        volumes=[{"name": v["Name"]} for v in properties["Volumes"]],
        containerDefinitions=[{
            # moto's RunTask sums container memory and fails without it; the task's memory as its one
            # container's limit is what Fargate applies anyway
            "name": container["Name"], "image": image, "essential": True, "memory": 2048,
            "readonlyRootFilesystem": container["ReadonlyRootFilesystem"], "environment": environment,
            "mountPoints": [{"sourceVolume": m["SourceVolume"], "containerPath": m["ContainerPath"]}
                            for m in container["MountPoints"]],
            "linuxParameters": {"capabilities": {
                key.lower(): names for key, names in cfn.capabilities(resource).items()
            }},  # what the harness's Fargate stand-in applies
        }],
    )  # fmt: skip
    return registered["taskDefinition"]["taskDefinitionArn"]


def image_repository_arn(values: dict[str, Any]) -> str:
    """The stack's output ImageRepositoryArn: its own repository, or in production the one it releases."""
    return str(cfn.resolve(cfn.load()["Outputs"]["ImageRepositoryArn"]["Value"], values))


@contextmanager
def deployed(
    moto_endpoint: str,
    registry: str,
    parameters: dict[str, Any] | None = None,
    account: str = iam.ACCOUNT,
    accounts: iam.Accounts | None = None,
) -> Iterator[Stack]:
    """A new stack (its own names) in the moto at moto_endpoint: buckets, topic, parameter, cluster and task
    definitions (their image a digest of `registry` that holds nothing yet), behind the IAM proxy and with
    the task-credential endpoint; both stop when the block ends (moto keeps what was created).

    `parameters` set the template's (a production stack's ReleasesFrom*, say: then it has no build or
    validation, and none of their roles). The stack is `account`'s: its proxy authorizes its roles as that
    account's, and a request for another account's resource also by that resource's policy, as `accounts`
    records them (the stack's buckets, and the policies of its versions bucket and image repository, are
    recorded there: one Accounts shared by the stacks of two accounts is what lets them meet)."""
    suffix = uuid4().hex[:8]
    values = stack_values(suffix, registry, account) | (parameters or {})
    present = [r for r in (*ROLES, *RUN_ROLES, "TaskExecutionRole") if cfn.exists(RESOURCES[r], values)]
    roles = {
        r: [cfn.resolve(s, values) for s in cfn.statements(RESOURCES, r, values).values()] for r in present
    }
    # The engineer who deploys is trusted: make versions, rollback and promote run with a key of theirs.
    roles["Engineer"] = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    accounts = accounts if accounts is not None else iam.Accounts()
    for bucket in ("DataLakeBucket", "OutputBucket", "StagingBucket", "VersionsBucket"):
        accounts.buckets[values[bucket]] = account
    accounts.policies[values["VersionsBucket"]] = [
        cfn.resolve(s, values) for s in cfn.choose(policy_statements("VersionsBucketPolicy"), values)
    ]
    if cfn.exists(RESOURCES["ImageRepository"], values):
        repository = RESOURCES["ImageRepository"]["Properties"].get("RepositoryPolicyText", cfn.NO_VALUE)
        policy = cfn.resolve(cfn.choose({"p": repository}, values), values).get("p", {})
        accounts.policies[values["ImageRepository.Arn"]] = policy.get("Statement", [])
    enforcer = iam.Iam(roles, {values[f"{r}.Arn"]: r for r in present}, account, accounts)
    validate_key = enforcer.give(f"AKIAVALIDATE{suffix}", "ValidateRole")
    build_key = enforcer.give(f"AKIABUILD{suffix}", "BuildRole")
    promote_key = enforcer.give(f"AKIAPROMOTE{suffix}", "PromoteRole")
    engineer_key = enforcer.give(f"AKIAENGINEER{suffix}", "Engineer")
    task_key = enforcer.give(f"AKIAVALIDATIONTASK{suffix}", "ValidationTaskRole")
    scheduler_key = enforcer.give(f"AKIASCHEDULER{suffix}", "SchedulerRole")
    execution_key = enforcer.give(f"AKIAEXECUTION{suffix}", "TaskExecutionRole")
    run_task_key = enforcer.give(f"AKIARUNTASK{suffix}", "TaskRole")
    with ExitStack() as stack_of:
        proxy = stack_of.enter_context(iam.enforcing(enforcer, moto_endpoint))
        uri, token = stack_of.enter_context(iam.container_credentials(task_key))
        run_uri, run_token = stack_of.enter_context(iam.container_credentials(run_task_key))
        stack = Stack(moto_endpoint, proxy, enforcer, values, validate_key, build_key,
                      {values["ValidationTaskRole.Arn"]: [uri, token]}, registry=registry,
                      promote_key=promote_key, engineer_key=engineer_key, scheduler_key=scheduler_key,
                      execution_key=execution_key, account=account,
                      run_task_credentials={values["TaskRole.Arn"]: [run_uri, run_token]})  # fmt: skip
        s3 = stack.client("s3")
        buckets = ("DataLakeBucket", "OutputBucket", "StagingBucket", "VersionsBucket")
        for bucket in buckets:
            s3.create_bucket(Bucket=values[bucket], CreateBucketConfiguration={"LocationConstraint": REGION})
        for bucket in ("StagingBucket", "VersionsBucket"):  # versioned, as the template's
            s3.put_bucket_versioning(Bucket=values[bucket], VersioningConfiguration={"Status": "Enabled"})
        for path in SAMPLE_LAKE.rglob("*.json"):
            s3.upload_file(str(path), values["DataLakeBucket"], f"snapshots/{path.relative_to(SAMPLE_LAKE)}")
        for parameter in ("ImageDigestParameter", "PromotedCommitParameter", "PromotedRunnerParameter"):
            stack.client("ssm").put_parameter(Name=values[parameter], Value="none", Type="String")
        assert stack.client("sns").create_topic(Name=f"alerts-{suffix}")["TopicArn"] == values["AlertTopic"]
        sqs = stack.client("sqs")
        stack.queue = sqs.create_queue(QueueName=f"mailbox-{suffix}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=stack.queue, AttributeNames=["QueueArn"])
        stack.client("sns").subscribe(
            TopicArn=values["AlertTopic"], Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"]
        )
        builds = cfn.exists(RESOURCES["ValidationCluster"], values)  # not in production: it never builds
        if builds:
            stack.client("ecs").create_cluster(clusterName=values["ValidationCluster"])
        stack.client("ecs").create_cluster(clusterName=values["RunCluster"])  # the daily runs'
        stack.client("glue").create_database(DatabaseInput={"Name": values["TableDatabase"]})  # their table's
        sqs.create_queue(QueueName=values["ScheduleDeadLetterQueue.Arn"].rsplit(":", 1)[1])
        ec2 = stack.client("ec2")
        default = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        stack.subnets = [s["SubnetId"] for s in default[:2]]
        groups = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
        stack.security_group = groups[0]["GroupId"]
        values |= {"Subnets": stack.subnets, "SecurityGroups": [stack.security_group]}  # its parameters
        nothing = f"{registry}/{REPOSITORY}@sha256:{'0' * 64}"
        register(stack, "TaskDefinition", f"{stack.name}-run", nothing)
        if builds:
            register(stack, "ValidationTaskDefinition", f"{stack.name}-validate", nothing)
        yield stack


def policy_statements(resource: str) -> list[Any]:
    """The statements of a bucket policy of the template's (unresolved)."""
    return RESOURCES[resource]["Properties"]["PolicyDocument"]["Statement"]


def tag_digest(registry: str, tag: str, repository: str = REPOSITORY) -> str | None:
    """The digest `tag` names in the registry's repository, or None where it names nothing."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- our own registry
            return response.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError:
        return None


def publish_runner(stack: Stack, image: str, version: str) -> str:
    """The runner `image` pushed as RUNNER_REPOSITORY:version and named by /PLATFORM/runner/v<major>."""
    uri = f"{stack.registry}/{RUNNER_REPOSITORY}"
    tagged = f"{uri}:{version}"
    for command in (["docker", "tag", image, tagged], ["docker", "push", "-q", tagged]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    digest = tag_digest(stack.registry, version, RUNNER_REPOSITORY)
    reference = f"{uri}@{digest}"
    major = version.split(".")[0]
    stack.client("ssm").put_parameter(
        Name=f"/{PLATFORM}/runner/v{major}", Value=reference, Type="String", Overwrite=True
    )
    return reference


def commit_id() -> str:
    return uuid4().hex + uuid4().hex[:8]  # 40 hex digits, like a Git commit id


def project_env(project: str, values: dict[str, str]) -> dict[str, str]:
    """The variables the template gives the project, with this test's values for each (all of them)."""
    names = [v["Name"] for v in RESOURCES[project]["Properties"]["Environment"]["EnvironmentVariables"]]
    assert sorted(names) == sorted(values), f"the template's variables for {project} changed: {names}"
    return values


def build(source: Path, stack: Stack, commit: str, pin: str = "") -> Build:
    """The template's inline build in `source` (the model's repository), with the build role's key: the
    runner's recipe FROM the runner the platform published for the major version (or `pin`), the image
    pushed to the registry (its :latest as the cache, where there is one), its digest and the runner's
    exported as IMAGE_DIGEST and RUNNER_IMAGE."""
    values = stack.values
    env = project_env(
        "BuildProject",
        {
            "IMAGE_REPO_URI": values["ImageRepository.RepositoryUri"], "NOTEBOOK": "usp.ipynb",
            "RUNNER_REPO_URI": values[f"Export:{PLATFORM}-RunnerRepositoryUri"],
            "RUNNER_PARAMETER": f"/{PLATFORM}/runner/v1", "RUNNER_PIN": pin,
        },
    )  # fmt: skip
    extra = {
        "COMMIT_ID": commit, "HARNESS_REGISTRY": stack.registry,
        "AWS_ACCESS_KEY_ID": stack.build_key, "AWS_SECRET_ACCESS_KEY": "build-secret",
        "AWS_ENDPOINT_URL": stack.proxy,
    }  # fmt: skip
    return run(cfn.buildspec_text("BuildProject"), source, {**env, **extra})


def validate(
    source: Path, registry: str, stack: Stack, commit: str, digest: str, runner: str, promote: bool = True
) -> Build:
    """The pipeline's Validate stage, then (if it passed, and `promote`) its Promote stage: the template's
    inline buildspecs, with the validate role's key, then the promote role's, against moto behind the IAM
    proxy. The candidate `digest` runs on the Fargate stand-in and is recorded as a version if it exits 0,
    then promoted. The task's status is polled every second (the buildspec's default, in AWS, is every 15 s).
    The Build returned is the two stages': both logs, the Validate stage's exports."""
    values = stack.values
    env = project_env(
        "ValidateProject",
        {
            "IMAGE_REPO_URI": f"{registry}/{REPOSITORY}",
            "RUNNER_REPO_URI": values[f"Export:{PLATFORM}-RunnerRepositoryUri"],
            "VALIDATION_CLUSTER": values["ValidationCluster"],
            "VALIDATION_TASK_DEFINITION": f"{stack.name}-validate",
            "VALIDATION_URI": f"s3://{values['OutputBucket']}/validation",
            "VALIDATION_DATE": values["ValidationDate"],
            "VERSIONS_BUCKET": values["VersionsBucket"],
            "COMMIT_PARAMETER": values["PromotedCommitParameter"],
            "PROMOTED_RUNNER_PARAMETER": values["PromotedRunnerParameter"],
            "RELEASE_APPROVAL": str(values["ReleaseApproval"]),
            "ENVIRONMENT": str(values["EnvironmentName"]),
            "ALERT_TOPIC": values["AlertTopic"],
            "GITHUB_REPOSITORY": "hotel-profiling/usp-model",
            "SUBNETS": ",".join(stack.subnets),
            "SECURITY_GROUPS": stack.security_group,
            "ASSIGN_PUBLIC_IP": "DISABLED",
        },
    )
    extra = {
        "COMMIT_ID": commit, "IMAGE_DIGEST": digest, "RUNNER_IMAGE": runner, "HARNESS_REGISTRY": registry,
        "POLL_SECONDS": "1", "CODEBUILD_INITIATOR": f"codepipeline/{stack.name}",
        "PIPELINE_EXECUTION_ID": execution_id(commit),  # #{codepipeline.PipelineExecutionId}
        "AWS_ACCESS_KEY_ID": stack.validate_key, "AWS_SECRET_ACCESS_KEY": "validate-secret",
        "AWS_ENDPOINT_URL": stack.proxy, "HARNESS_TASK_CREDENTIALS": json.dumps(stack.task_credentials),
    }  # fmt: skip
    validated = run(cfn.buildspec_text("ValidateProject"), source, {**env, **extra})
    if not (validated.succeeded and promote):
        return validated
    promoted = promote_version(stack, digest, validated.exported["PROMOTED_BY"], source=source)
    return Build(promoted.succeeded, promoted.failed_phase, validated.log + promoted.log, validated.exported)


def execution_id(commit: str) -> str:
    """The pipeline execution the harness's Validate stage of `commit` stands for (in CodePipeline's form)."""
    return f"{commit[:8]}-0000-4000-8000-000000000000"


def push_commit(source: Path, stack: Stack, promote: bool = True) -> Promoted:
    """A new commit of `source` through the pipeline's stages: built (which must succeed), validated and, if
    it passed and `promote`, promoted; `validation` is the Validate (and Promote) stages' Build."""
    commit = commit_id()
    built = build(source, stack, commit)
    assert built.succeeded, built.log[-4000:]
    digest = built.exported["IMAGE_DIGEST"]
    validation = validate(source, stack.registry, stack, commit, digest, stack.runner, promote=promote)
    return Promoted(commit, digest, built, validation)


def env_value(project: str, name: str) -> Any:
    """The template's value of the project's variable `name` (unresolved)."""
    variables = RESOURCES[project]["Properties"]["Environment"]["EnvironmentVariables"]
    return next(v["Value"] for v in variables if v["Name"] == name)


def promote_env(stack: Stack) -> dict[str, str]:
    """The promote project's own variables (TO, BY and ACCEPT empty: whoever starts it sets them)."""
    values = stack.values
    records_bucket = env_value("PromoteProject", "VERSION_RECORDS_BUCKET")
    records_account = env_value("PromoteProject", "VERSION_RECORDS_ACCOUNT")
    return project_env(
        "PromoteProject",
        {
            "TO": "", "BY": "", "ACCEPT": "", "VERSIONS_BUCKET": values["VersionsBucket"],
            "VERSION_RECORDS_BUCKET": str(cfn.resolve(records_bucket, values)),
            "VERSION_RECORDS_ACCOUNT": str(cfn.resolve(records_account, values)),
            "IMAGE_REPO_URI": f"{stack.registry}/{REPOSITORY}",  # the registry stands in for ECR
            "ENVIRONMENT": str(values["EnvironmentName"]), "RUN_TASK_DEFINITION": f"{stack.name}-run",
            "RUNNER_MAJOR": str(values["RunnerMajorVersion"]),
            "MAX_CHANGED_SHARE": str(values["MaxChangedShare"]),
            "IMAGE_PARAMETER": values["ImageDigestParameter"],
            "COMMIT_PARAMETER": values["PromotedCommitParameter"],
            "PROMOTED_RUNNER_PARAMETER": values["PromotedRunnerParameter"],
            "ALERT_TOPIC": values["AlertTopic"],
            "GITHUB_REPOSITORY": "hotel-profiling/usp-model",
        },
    )  # fmt: skip


def promote_version(
    stack: Stack, to: str, by: str, accept: str = "", who: str = "", source: Path | None = None
) -> Build:
    """The template's promote project, with the promote role's key, as the pipeline's Promote stage (BY push
    or runner-upgrade) or make rollback / make promote (an engineer's StartBuild) starts it."""
    env = {
        **promote_env(stack), "TO": to, "BY": by, "ACCEPT": accept,
        "CODEBUILD_INITIATOR": who or f"codepipeline/{stack.name}",
        "AWS_ACCESS_KEY_ID": stack.promote_key, "AWS_SECRET_ACCESS_KEY": "promote-secret",
        "AWS_ENDPOINT_URL": stack.proxy,
    }  # fmt: skip
    folder = source or Path(tempfile.mkdtemp(prefix="promote-"))
    return run(cfn.buildspec_text("PromoteProject"), folder, env)


# --- the daily run, as EventBridge Scheduler starts it ----------------------------------------------------

SCHEDULE_TARGET = RESOURCES["DailyRunSchedule"]["Properties"]["Target"]
# DescribeTasks' query, as the validation polls it
STATUS_QUERY = "tasks[0].[lastStatus, containers[0].exitCode, stopCode, stoppedReason]"
# a name nothing resolved (cfn.resolve leaves <Name> or ${Name}); Scheduler's own context attributes aside
UNRESOLVED = re.compile(r"<(?!aws\.scheduler\.)[A-Za-z0-9:.]+>|\$\{[A-Za-z0-9:.!]+\}")


@dataclass
class DailyRun:
    """A daily run that the schedule started: what its task ran, its log, and what it published."""

    code: int | None  # the container's exit code; None where RunTask started no task
    image: str  # the image of the run family's revision RunTask resolved
    log: str  # the container's log (the run's CloudWatch Logs stream, in AWS), or why no task started
    rows: int | None  # the rows the run published for its date, as its manifest records them
    date: str  # the run's RUN_DATE, as the runner derived it from the scheduled time
    run_id: str  # schedule-<execution id>, as the schedule's Input sets it
    task_arn: str = ""
    task_definition: str = ""  # the revision's ARN
    manifest: dict[str, Any] = field(default_factory=dict)  # the run's manifest.json ({} where none)


def schedule_request(stack: Stack, scheduled_time: str, execution_id: str) -> dict[str, Any]:
    """The RunTask request EventBridge Scheduler sends for the template's DailyRunSchedule: the target's Input
    (the universal aws-sdk target's PascalCase JSON) resolved with the stack's values, Scheduler's context
    attributes substituted, and its members named as ECS's API names them."""
    assert cfn.resolve(SCHEDULE_TARGET["Arn"], stack.values) == "arn:aws:scheduler:::aws-sdk:ecs:runTask"
    text = str(cfn.resolve(SCHEDULE_TARGET["Input"], stack.values))
    left = UNRESOLVED.findall(text)
    assert not left, f"the schedule's Input names what this stack does not resolve: {left}"
    text = text.replace("<aws.scheduler.scheduled-time>", scheduled_time)
    text = text.replace("<aws.scheduler.execution-id>", execution_id)
    operation = boto3.session.Session().client("ecs", region_name=REGION).meta.service_model
    return _api_names(operation.operation_model("RunTask").input_shape, json.loads(text))


def _api_names(shape: Any, value: Any) -> Any:
    """A universal target's PascalCase request as the API's member names (Scheduler does this); a member the
    API does not have fails, as Scheduler's call would."""
    if shape.type_name == "structure":
        members = {name.lower(): name for name in shape.members}
        unknown = [k for k in value if k.lower() not in members]
        assert not unknown, f"not members of {shape.name}: {unknown}"
        named = {members[k.lower()]: v for k, v in value.items()}
        return {name: _api_names(shape.members[name], v) for name, v in named.items()}
    if shape.type_name == "list":
        return [_api_names(shape.member, item) for item in value]
    return value


def scheduler_key(stack: Stack) -> str:
    """The key of the role the schedule's target names (SchedulerRole): what Scheduler signs RunTask with."""
    role = stack.iam.role_arns[str(cfn.resolve(SCHEDULE_TARGET["RoleArn"], stack.values))]
    assert stack.iam.principal(stack.scheduler_key).role == role, "the scheduler's key is not its role's"
    return stack.scheduler_key


def _harness(stack: Stack, args: list[str], key: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    """The harness's aws (harness/aws: ECS through `endpoint`, its tasks run by Docker as Fargate would)."""
    env = {
        "PATH": f"{HARNESS_BIN}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"), "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": f"{key}-secret", "AWS_ENDPOINT_URL": endpoint,
        "HARNESS_REGISTRY": stack.registry, "HARNESS_ECS_ENDPOINT": stack.moto,
        "HARNESS_ACCOUNT": stack.account,  # moto's backends of the stack's account, where its tasks are
        # ECS serves a task its definition's role, whoever started it
        "HARNESS_TASK_CREDENTIALS": json.dumps({**stack.task_credentials, **stack.run_task_credentials}),
        # ECS pulls the run's image with the execution role, from the repository the registry stands in for
        "HARNESS_EXECUTION_KEY": stack.execution_key,
        "HARNESS_IMAGE_REPOSITORIES": json.dumps(
            {f"{stack.registry}/{REPOSITORY}": image_repository_arn(stack.values)}
        ),
        **{k: v for k, v in os.environ.items() if k in ("DOCKER_HOST", "DOCKER_CONFIG", AWS_SOCKET)},
    }  # fmt: skip
    return subprocess.run(
        [str(HARNESS_BIN / "aws"), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def run_task_as_scheduler(stack: Stack, request: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """RunTask of `request` signed with the schedule role's key, through the IAM proxy (`aws ecs run-task
    --cli-input-json`); a task it starts runs on the Fargate stand-in with its definition's role. Its stdout
    is RunTask's reply ({"tasks": [{"taskArn"}], "failures"}); a refused call exits non-zero, AccessDenied."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="scheduled-run-task-") as file:
        json.dump(request, file)
        file.flush()
        return _harness(stack, ["ecs", "run-task", "--cli-input-json", f"file://{file.name}"],
                        scheduler_key(stack), stack.proxy)  # fmt: skip


def wait_for_task(stack: Stack, cluster: str, task_arn: str, timeout: float = 900) -> tuple[int, str]:
    """The task's exit code and its container's log once it stops (DescribeTasks polled every second, as the
    test's own look: moto, not through the proxy)."""
    deadline = time.monotonic() + timeout
    while True:
        args = ["ecs", "describe-tasks", "--cluster", cluster, "--tasks", task_arn, "--query", STATUS_QUERY]
        done = _harness(stack, [*args, "--output", "text"], "setup", stack.moto)
        assert done.returncode == 0, done.stderr[-3000:]
        status, code, *_ = done.stdout.strip().split("\t")
        if status == "STOPPED":
            return int(code), done.stderr
        if time.monotonic() > deadline:
            container = f"fargate-{task_arn.rsplit('/', 1)[1]}"  # the harness's name for it
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
            raise TimeoutError(f"the daily run's task {task_arn} did not stop within {timeout} s")
        time.sleep(1)


def unresolved_environment(definition: dict[str, Any]) -> dict[str, str]:
    """The revision's environment variables whose value names something the stack did not resolve."""
    (container,) = definition["containerDefinitions"]
    return {e["name"]: e["value"] for e in container.get("environment", []) if UNRESOLVED.search(e["value"])}


def daily_run(stack: Stack, scheduled_time: str = "2019-08-02T06:00:00Z") -> DailyRun:
    """The next daily run, as EventBridge Scheduler starts it at `scheduled_time`: the DailyRunSchedule
    target's Input made the RunTask request (schedule_request), sent with SchedulerRole's key through the IAM
    proxy (it may run only the run family on the run cluster), the task's container run on the Fargate
    stand-in with TaskRole's credentials (its notebook's, NotebookRole's, from STS through the proxy); then,
    once it stops, its exit code, the image of the revision RunTask resolved, its log, and the rows its
    manifest records for the run's date (the day before the scheduled one, in SCHEDULE_TIMEZONE)."""
    ecs = stack.client("ecs")
    latest = ecs.describe_task_definition(taskDefinition=f"{stack.name}-run")["taskDefinition"]
    unresolved = unresolved_environment(latest)
    assert not unresolved, f"the run's environment names what this stack does not resolve: {unresolved}"
    request = schedule_request(stack, scheduled_time, str(uuid4()))
    (override,) = request["overrides"]["containerOverrides"]
    run_id = next(e["value"] for e in override["environment"] if e["name"] == "RUN_ID")
    started = run_task_as_scheduler(stack, request)
    if started.returncode != 0:
        return DailyRun(None, "", started.stderr, None, "", run_id)
    reply = json.loads(started.stdout)
    if not reply["tasks"]:
        return DailyRun(None, "", json.dumps(reply["failures"]), None, "", run_id)
    task_arn = reply["tasks"][0]["taskArn"]
    code, log = wait_for_task(stack, request["cluster"], task_arn)
    (task,) = ecs.describe_tasks(cluster=request["cluster"], tasks=[task_arn])["tasks"]
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    manifest = run_manifest(stack, definition, run_id)
    return DailyRun(
        code, container["image"], log, manifest.get("rows"), manifest.get("date", ""), run_id, task_arn,
        task["taskDefinitionArn"], manifest,
    )  # fmt: skip


def run_manifest(stack: Stack, definition: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The manifest.json the run `run_id` stored under its OUTPUT_URI's _runs/date=D/RUN_ID/ ({} if none)."""
    (container,) = definition["containerDefinitions"]
    output = next(e["value"] for e in container["environment"] if e["name"] == "OUTPUT_URI")
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    found = [k for k in stack.keys(bucket, f"{prefix}/_runs/") if k.endswith(f"/{run_id}/manifest.json")]
    if not found:
        return {}
    (key,) = found
    return json.loads(stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def table_day(stack: Stack, date: str) -> Any:
    """The rows of `date` in the stack's published table (the run's OUTPUT_TABLE), as a consumer reads them
    from the Glue catalog (moto's) with PyIceberg: a pyarrow Table."""
    from pyiceberg.catalog.glue import GlueCatalog
    from pyiceberg.expressions import EqualTo

    name = str(cfn.resolve({"Fn::Sub": "${TableDatabase}.${OutputTable}"}, stack.values))
    keys = {"access-key-id": "setup", "secret-access-key": "setup", "region": REGION}
    props = {f"{service}.{k}": v for service in ("glue", "s3") for k, v in keys.items()}
    catalog = GlueCatalog("glue", **props, **{"glue.endpoint": stack.moto, "s3.endpoint": stack.moto})
    return catalog.load_table(name).scan(row_filter=EqualTo("date", date)).to_arrow()
