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

A plain module (no pytest): it needs tests/ and tests/pipeline on sys.path, as pytest and bench.py put them.
"""

from __future__ import annotations

import json
import subprocess
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
from codebuild import Build, run
from support import SAMPLE_LAKE

RESOURCES = cfn.load()["Resources"]
REPOSITORY = "notebook-runner-ci"
RUNNER_REPOSITORY = "platform-runner"  # the platform stack's runner repository
PLATFORM = "notebook-platform"  # the platform stack (PlatformStackName's default)
REGION = "eu-west-1"
# The validate project's role, the candidate's task role and its notebook's, and the role promotion assumes.
VALIDATION_ROLES = ("ValidateRole", "ValidationTaskRole", "ValidationNotebookRole", "PromoteRole")
ROLES = ("BuildRole", *VALIDATION_ROLES)


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

    @property
    def name(self) -> str:
        return self.values["AWS::StackName"]

    def client(self, service: str) -> Any:
        """A client of moto itself (not through the proxy), for the set-up and the tests' own look."""
        return boto3.client(service, region_name=REGION, endpoint_url=self.moto,
                            aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip

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


@dataclass
class Promoted:
    """A commit built, validated and (if it passed) promoted."""

    commit: str
    digest: str
    build: Build
    validation: Build


def stack_values(suffix: str, registry: str = "127.0.0.1:1") -> dict[str, Any]:
    """What CloudFormation would resolve this stack's references to (the platform's exports among them)."""
    name, account = f"pipeline-{suffix}", iam.ACCOUNT
    roles = {r: f"arn:aws:iam::{account}:role/{name}-{r}" for r in (*ROLES, "TaskRole", "TaskExecutionRole")}
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
        "ImageDigestParameter": f"/{name}/validated-image",
        "PromotedCommitParameter": f"/{name}/promoted-commit",
        "PromotedRunnerParameter": f"/{name}/promoted-runner",
        "ValidateLogGroup.Arn": "arn:aws:logs:l", "BuildLogGroup.Arn": "arn:aws:logs:b",
        "ArtifactBucket.Arn": "arn:aws:s3:::artifacts",
        "ImageRepository.RepositoryUri": f"{registry}/{REPOSITORY}",
        f"Export:{PLATFORM}-RunnerRepositoryUri": f"{registry}/{RUNNER_REPOSITORY}",
        f"Export:{PLATFORM}-RunnerRepositoryArn":
            f"arn:aws:ecr:{REGION}:{account}:repository/{RUNNER_REPOSITORY}",
        **{f"{r}.Arn": arn for r, arn in roles.items()},
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


@contextmanager
def deployed(moto_endpoint: str, registry: str) -> Iterator[Stack]:
    """A new stack (its own names) in the moto at moto_endpoint: buckets, topic, parameter, cluster and task
    definitions (their image a digest of `registry` that holds nothing yet), behind the IAM proxy and with
    the task-credential endpoint; both stop when the block ends (moto keeps what was created)."""
    suffix = uuid4().hex[:8]
    values = stack_values(suffix, registry)
    roles = {
        r: [cfn.resolve(s, values) for s in cfn.statements(RESOURCES, r, values).values()] for r in ROLES
    }
    enforcer = iam.Iam(roles, {values[f"{r}.Arn"]: r for r in ROLES})
    validate_key = enforcer.give(f"AKIAVALIDATE{suffix}", "ValidateRole")
    build_key = enforcer.give(f"AKIABUILD{suffix}", "BuildRole")
    task_key = enforcer.give(f"AKIAVALIDATIONTASK{suffix}", "ValidationTaskRole")
    with ExitStack() as stack_of:
        proxy = stack_of.enter_context(iam.enforcing(enforcer, moto_endpoint))
        uri, token = stack_of.enter_context(iam.container_credentials(task_key))
        stack = Stack(moto_endpoint, proxy, enforcer, values, validate_key, build_key,
                      {values["ValidationTaskRole.Arn"]: [uri, token]}, registry=registry)  # fmt: skip
        s3 = stack.client("s3")
        for bucket in (values["DataLakeBucket"], values["OutputBucket"], values["StagingBucket"]):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(  # as the template's StagingBucket
            Bucket=values["StagingBucket"], VersioningConfiguration={"Status": "Enabled"}
        )
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
        stack.client("ecs").create_cluster(clusterName=values["ValidationCluster"])
        ec2 = stack.client("ec2")
        default = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        stack.subnets = [s["SubnetId"] for s in default[:2]]
        groups = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
        stack.security_group = groups[0]["GroupId"]
        nothing = f"{registry}/{REPOSITORY}@sha256:{'0' * 64}"
        register(stack, "TaskDefinition", f"{stack.name}-run", nothing)
        register(stack, "ValidationTaskDefinition", f"{stack.name}-validate", nothing)
        yield stack


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


def validate(source: Path, registry: str, stack: Stack, commit: str, digest: str, runner: str) -> Build:
    """The template's inline buildspec, with the validate role's key, against moto behind the IAM proxy:
    the candidate `digest` run on the Fargate stand-in, and promoted only if it exits 0. The task's status
    is polled every second (the buildspec's default, in AWS, is every 15 s)."""
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
            "RUN_TASK_DEFINITION": f"{stack.name}-run",
            "PROMOTE_ROLE": values["PromoteRole.Arn"],
            "IMAGE_PARAMETER": values["ImageDigestParameter"],
            "COMMIT_PARAMETER": values["PromotedCommitParameter"],
            "PROMOTED_RUNNER_PARAMETER": values["PromotedRunnerParameter"],
            "SUBNETS": ",".join(stack.subnets),
            "SECURITY_GROUPS": stack.security_group,
            "ASSIGN_PUBLIC_IP": "DISABLED",
        },
    )
    extra = {
        "COMMIT_ID": commit, "IMAGE_DIGEST": digest, "RUNNER_IMAGE": runner, "HARNESS_REGISTRY": registry,
        "POLL_SECONDS": "1",
        "AWS_ACCESS_KEY_ID": stack.validate_key, "AWS_SECRET_ACCESS_KEY": "validate-secret",
        "AWS_ENDPOINT_URL": stack.proxy, "HARNESS_TASK_CREDENTIALS": json.dumps(stack.task_credentials),
    }  # fmt: skip
    return run(cfn.buildspec_text("ValidateProject"), source, {**env, **extra})
