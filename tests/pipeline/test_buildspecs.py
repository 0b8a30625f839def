"""The buildspecs, run for real: their phases executed as CodeBuild would (tests/pipeline/codebuild.py)
with the variables the template and the pipeline set, Docker, a local registry standing in for ECR and
moto standing in for S3 and SSM. A build, a validation that passes and promotes the exact digest, and
validations that fail and promote nothing."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import boto3
import nbformat
import pytest
from cfn import BUILDSPECS, load
from codebuild import Build, run
from support import REPO, SAMPLE_LAKE, copy_repository, local_registry

pytestmark = pytest.mark.docker

RESOURCES = load()["Resources"]
REPOSITORY = "notebook-runner-ci"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1, standing in for ECR (Docker treats loopback as insecure-OK)."""
    with local_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def tag_digest(registry: str, tag: str) -> str | None:
    request = urllib.request.Request(
        f"http://{registry}/v2/{REPOSITORY}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- our own registry
            return response.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError:
        return None


@dataclass
class Aws:
    endpoint: str
    lake: str
    output: str
    parameter: str
    topic: str = ""
    queue: str = ""  # subscribed to the topic: what the engineers' mailbox would get
    task_definition: str = ""  # the stack's revision of the run task definition

    def run_revisions(self) -> list[dict]:
        """The run family's revisions, oldest first."""
        ecs = self.client("ecs")
        family = ecs.describe_task_definition(taskDefinition=self.task_definition)["taskDefinition"]["family"]
        arns = ecs.list_task_definitions(familyPrefix=family, sort="ASC")["taskDefinitionArns"]
        return [ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"] for arn in arns]

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self, service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint, **_CREDENTIALS)

    def keys(self, bucket: str) -> list[str]:
        listed = self.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(o["Key"] for o in listed if not o["Key"].endswith("/"))

    def announcements(self) -> list[dict]:
        sqs, found = self.client("sqs"), []
        for _ in range(5):
            reply = sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            found += [json.loads(m["Body"]) for m in reply.get("Messages", [])]
            for message in reply.get("Messages", []):
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            if found:
                break
        return found

    def validated_image(self) -> str:
        return self.client("ssm").get_parameter(Name=self.parameter)["Parameter"]["Value"]


_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def aws(moto_endpoint: str) -> Aws:
    """The data lake and output buckets and the SSM parameter, as the stack and the team would have them."""
    suffix = uuid4().hex[:8]
    stack = Aws(moto_endpoint, f"lake-{suffix}", f"output-{suffix}", f"/pipeline-{suffix}/validated-image")
    s3 = stack.client("s3")
    for bucket in (stack.lake, stack.output):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for path in SAMPLE_LAKE.rglob("*.json"):
        s3.upload_file(str(path), stack.lake, f"snapshots/{path.relative_to(SAMPLE_LAKE)}")
    stack.client("ssm").put_parameter(Name=stack.parameter, Value="none", Type="String")
    stack.topic = stack.client("sns").create_topic(Name=f"alerts-{suffix}")["TopicArn"]
    stack.queue = stack.client("sqs").create_queue(QueueName=f"mailbox-{suffix}")["QueueUrl"]
    queue_arn = stack.client("sqs").get_queue_attributes(QueueUrl=stack.queue, AttributeNames=["QueueArn"])
    stack.client("sns").subscribe(
        TopicArn=stack.topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"]
    )
    stack.task_definition = register_stack_task_definition(stack, f"pipeline-{suffix}-run")
    return stack


def register_stack_task_definition(stack: Aws, family: str) -> str:
    """What CloudFormation registers from the template's TaskDefinition (its references filled in)."""
    template = RESOURCES["TaskDefinition"]["Properties"]
    (container,) = template["ContainerDefinitions"]
    environment = [{"name": e["Name"], "value": f"value-of-{e['Name']}"} for e in container["Environment"]]
    registered = stack.client("ecs").register_task_definition(
        family=family, requiresCompatibilities=template["RequiresCompatibilities"],
        networkMode=template["NetworkMode"], cpu="1024", memory="2048",
        taskRoleArn="arn:aws:iam::123456789012:role/run",
        executionRoleArn="arn:aws:iam::123456789012:role/pull",
        volumes=[{"name": v["Name"]} for v in template["Volumes"]],
        containerDefinitions=[{
            "name": container["Name"], "image": f"{REPOSITORY}:validated", "essential": True,
            "readonlyRootFilesystem": container["ReadonlyRootFilesystem"], "environment": environment,
            "mountPoints": [{"sourceVolume": m["SourceVolume"], "containerPath": m["ContainerPath"]}
                            for m in container["MountPoints"]],
        }],
    )  # fmt: skip
    return registered["taskDefinition"]["taskDefinitionArn"]


def project_env(project: str, values: dict[str, str]) -> dict[str, str]:
    """The variables the template gives the project, with this test's values for each (all of them)."""
    names = [v["Name"] for v in RESOURCES[project]["Properties"]["Environment"]["EnvironmentVariables"]]
    assert sorted(names) == sorted(values), f"the template's variables for {project} changed: {names}"
    return values


def build(source: Path, registry: str, base_image: str, commit: str, **overrides: str) -> Build:
    env = project_env(
        "BuildProject",
        {"IMAGE_REPO_URI": f"{registry}/{REPOSITORY}", "NOTEBOOK": "usp.ipynb", "BASE_IMAGE": base_image},
    )
    return run(BUILDSPECS["BuildProject"], source, {**env, "COMMIT_ID": commit, **overrides})


def validate(source: Path, registry: str, aws: Aws, commit: str, digest: str) -> Build:
    env = project_env(
        "ValidateProject",
        {
            "IMAGE_REPO_URI": f"{registry}/{REPOSITORY}",
            "DATA_URI": f"s3://{aws.lake}/snapshots",
            "VALIDATION_URI": f"s3://{aws.output}/validation",
            "VALIDATION_DATE": "2019-08-01",
            "IMAGE_PARAMETER": aws.parameter,
            "SNS_TOPIC_ARN": aws.topic,
            "TASK_DEFINITION": aws.task_definition,
        },
    )
    extra = {"COMMIT_ID": commit, "IMAGE_DIGEST": digest, "HARNESS_REGISTRY": registry, **aws.env()}
    return run(BUILDSPECS["ValidateProject"], source, {**env, **extra})


def commit_id() -> str:
    return uuid4().hex + uuid4().hex[:8]  # 40 hex digits, like a Git commit id


@dataclass
class Promoted:
    commit: str
    digest: str
    build: Build
    validation: Build


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory, registry: str, aws: Aws, base_image: str) -> Promoted:
    """The repository as it is: built, pushed, validated and promoted."""
    source = copy_repository(tmp_path_factory.mktemp("good") / "src")
    commit = commit_id()
    built = build(source, registry, base_image, commit)
    assert built.succeeded, built.log[-4000:]
    validation = validate(source, registry, aws, commit, built.exported["IMAGE_DIGEST"])
    return Promoted(commit, built.exported["IMAGE_DIGEST"], built, validation)


def test_build_pushes_the_commit_tagged_image_and_exports_its_digest(
    promoted: Promoted, registry: str
) -> None:
    repository, digest = promoted.digest.split("@")

    assert repository == f"{registry}/{REPOSITORY}"
    assert tag_digest(registry, promoted.commit) == digest
    assert "no validated image yet, this build starts from the local layer cache only" in promoted.build.log


def test_validation_runs_the_digest_and_promotes_exactly_it(
    promoted: Promoted, registry: str, aws: Aws
) -> None:
    digest = promoted.digest.split("@")[1]

    assert promoted.validation.succeeded, promoted.validation.log[-4000:]
    assert tag_digest(registry, "validated") == digest
    assert tag_digest(registry, "latest") == digest
    assert aws.validated_image() == promoted.digest
    keys = aws.keys(aws.output)
    assert f"validation/{promoted.commit}/date=2019-08-01/part-0.parquet" in keys
    assert all(k.startswith(f"validation/{promoted.commit}/") for k in keys)  # never the consumers' prefix
    assert "succeeded: published 3000 rows" in promoted.validation.log
    assert aws.announcements() == []  # successes are quiet


def test_validation_pins_the_daily_runs_to_the_validated_digest(promoted: Promoted, aws: Aws) -> None:
    """The stack's task definition, copied with the digest, is now the family's latest revision."""
    stack, *_, latest = aws.run_revisions()

    assert promoted.validation.succeeded, promoted.validation.log[-4000:]
    assert latest["containerDefinitions"][0]["image"] == promoted.digest
    assert (
        f"the daily runs now start {latest['taskDefinitionArn']} ({promoted.digest})"
        in promoted.validation.log
    )
    for field in ("family", "cpu", "memory", "taskRoleArn", "executionRoleArn", "networkMode", "volumes"):
        assert latest[field] == stack[field], field
    unchanged = {k: v for k, v in stack["containerDefinitions"][0].items() if k != "image"}
    assert {k: latest["containerDefinitions"][0][k] for k in unchanged} == unchanged


def broken_source(root: Path, how: str) -> Path:
    source = copy_repository(root / "src")
    notebook = source / "usp.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    if how == "notebook raises":
        nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')"))
    else:  # the output fails its check: every row twice
        nb.cells.insert(
            -1, nbformat.v4.new_code_cell("usp_destinations = pa.concat_tables([usp_destinations] * 2)")
        )
    nbformat.write(nb, notebook)
    return source


@pytest.mark.parametrize("how, exit_code", [("notebook raises", 10), ("check fails", 20)])
def test_failed_validation_promotes_nothing(
    promoted: Promoted, tmp_path: Path, registry: str, aws: Aws, base_image: str, how: str, exit_code: int
) -> None:
    source = broken_source(tmp_path, how)
    commit = commit_id()
    built = build(source, registry, base_image, commit)
    assert built.succeeded, built.log[-4000:]

    validation = validate(source, registry, aws, commit, built.exported["IMAGE_DIGEST"])

    assert not validation.succeeded
    assert validation.failed_phase == "build"
    assert f"[harness] phase build FAILED (exit {exit_code})" in validation.log
    assert "nothing was published" in validation.log
    good = promoted.digest.split("@")[1]
    assert (tag_digest(registry, "validated"), tag_digest(registry, "latest")) == (good, good)
    assert aws.validated_image() == promoted.digest
    assert aws.run_revisions()[-1]["containerDefinitions"][0]["image"] == promoted.digest  # runs keep it
    assert not [k for k in aws.keys(aws.output) if k.startswith(f"validation/{commit}/date=")]
    (announcement,) = aws.announcements()
    assert announcement["Subject"] == f"[notebook-runner] FAILED: usp for 2019-08-01 (exit {exit_code})"
    assert f"validate-7-{commit[:12]}" in announcement["Message"]


def test_rebuild_reuses_the_validated_image_layers(
    promoted: Promoted, tmp_path: Path, registry: str, base_image: str
) -> None:
    source = copy_repository(tmp_path / "src")
    notebook = source / "usp.ipynb"
    nb = json.loads(notebook.read_text())
    nb["metadata"]["edited"] = True  # a notebook-only change
    notebook.write_text(json.dumps(nb))

    built = build(source, registry, base_image, commit_id())

    assert built.succeeded, built.log[-4000:]
    assert f"--cache-from {registry}/{REPOSITORY}:latest" not in built.log  # (commands are not echoed)
    assert "no validated image yet" not in built.log  # the promoted image was pulled as the cache
    assert built.log.count("Using cache") >= 6  # the dependency layers came from it


@pytest.mark.parametrize("project", ["BuildProject", "ValidateProject"])
def test_a_missing_variable_fails_the_first_phase_by_name(project: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()

    result = run(BUILDSPECS[project], source, {"IMAGE_REPO_URI": "127.0.0.1:1/x"})

    assert result.failed_phase == "pre_build"
    assert "is not set: deploy the pipeline with 'make deploy'" in result.log


def test_the_harness_knows_only_the_calls_the_buildspecs_make() -> None:
    aws = REPO / "tests" / "pipeline" / "harness" / "aws"
    done = subprocess.run([str(aws), "s3", "cp", "x", "s3://y"], capture_output=True, text=True, check=False)

    assert done.returncode != 0
    assert "is not something the buildspecs call" in done.stderr
