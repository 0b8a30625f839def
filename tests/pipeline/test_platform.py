"""The platform (template/platform.yaml, scripts/platform.sh): the runner's repository, the publish role's
grants and the exports model stacks import, read from the template; `make models` and
`scripts/platform.sh publish` run with the real AWS CLI against moto (a stand-in `docker` records what
publish builds, runs and pushes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import fake_aws
import pytest
import yaml
from cfn import load, resolve
from support import AWS_CLI, REPO

PLATFORM = load(REPO / "template" / "platform.yaml")
RESOURCES = PLATFORM["Resources"]
STACK = "notebook-platform"
NAMES = {"AWS::StackName": STACK, "AWS::Partition": "aws", "AWS::Region": "eu-west-1",
         "AWS::AccountId": "123456789012"}  # fmt: skip
PARAMETER_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/notebook-platform/runner/*"
# make test installs it (.venv-awscli): a missing CLI fails these tests, never skips them


def allowed(role: str) -> list[dict[str, Any]]:
    policies = RESOURCES[role]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the template ----------------------------------------------------------------------------------------


def test_runner_versions_are_immutable_scanned_encrypted_and_outlive_the_stack() -> None:
    repository = RESOURCES["RunnerRepository"]
    properties = repository["Properties"]

    assert properties["ImageTagMutability"] == "IMMUTABLE"
    assert "ImageTagMutabilityExclusionFilters" not in properties  # no tag moves, not even one
    assert properties["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert properties["EncryptionConfiguration"]["EncryptionType"] in ("KMS", "KMS_DSSE")
    assert repository["DeletionPolicy"] == repository["UpdateReplacePolicy"] == "Retain"


def test_the_lifecycle_expires_untagged_images_only_never_a_version() -> None:
    policy = RESOURCES["RunnerRepository"]["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"]
    rules = json.loads(resolve(policy, {"UntaggedImageDays": 7}))["rules"]

    assert rules, "a lifecycle policy with no rule keeps every failed push's leftovers"
    for rule in rules:  # a rule that selects tagged (or any) images could expire a version models run
        assert rule["selection"]["tagStatus"] == "untagged", rule
    expiry = {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7}
    assert expiry in [r["selection"] for r in rules]


def test_the_publish_role_reaches_its_repository_and_parameter_path_only() -> None:
    statements = {s["Sid"]: s for s in allowed("PublishRole")}
    push, parameters = statements["PushRunnerVersions"], statements["NameRunnerVersions"]

    assert push["Resource"] == {"Fn::GetAtt": ["RunnerRepository", "Arn"]}
    assert set(push["Action"]) == {
        "ecr:DescribeImages", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
    }  # fmt: skip
    assert set(parameters["Action"]) == {"ssm:GetParameter", "ssm:PutParameter"}
    assert resolve(parameters["Resource"], NAMES) == PARAMETER_ARN
    services = {sid: {a.split(":")[0] for a in as_list(s["Action"])} for sid, s in statements.items()}
    reaching = [sid for sid, names in services.items() if names & {"ecr", "ssm"}]
    assert reaching == ["EcrLogin", "PushRunnerVersions", "NameRunnerVersions"]
    # Its trust: CodeBuild, for this account only.
    (trust,) = RESOURCES["PublishRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "codebuild.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_no_role_allows_every_resource_but_for_the_ecr_login_which_has_no_resource() -> None:
    roles = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::IAM::Role"]
    assert {"PublishRole", "PipelineRole"} <= set(roles)
    for role in roles:
        for statement in allowed(role):
            actions = set(as_list(statement["Action"]))
            assert not any(a.endswith("*") for a in actions), (role, statement)
            if "*" in as_list(statement["Resource"]):
                assert actions == {"ecr:GetAuthorizationToken"}, (role, statement)


def test_the_outputs_export_what_model_stacks_import() -> None:
    outputs = PLATFORM["Outputs"]
    exports = {name: resolve(o["Export"]["Name"], NAMES) for name, o in outputs.items() if "Export" in o}
    for name in ("RunnerRepositoryArn", "RunnerRepositoryUri", "RunnerRepositoryName",
                 "RunnerParameterPrefix"):  # fmt: skip
        assert exports[name] == f"{STACK}-{name}"
    prefix = resolve(outputs["RunnerParameterPrefix"]["Value"], NAMES)
    assert prefix == "/notebook-platform/runner/"
    assert PARAMETER_ARN.endswith(f":parameter{prefix}*")  # the role writes what the prefix names
    # Every export a model stack imports exists here, under the platform stack name it defaults to.
    model_template = (REPO / "template" / "pipeline.yaml").read_text()
    imported = set(re.findall(r"ImportValue'?: !Sub '\$\{PlatformStackName\}-(\w+)'", model_template))
    assert load(REPO / "template" / "pipeline.yaml")["Parameters"]["PlatformStackName"]["Default"] == STACK
    assert imported and imported <= {e.removeprefix(f"{STACK}-") for e in exports.values()}


def test_the_pipeline_publishes_on_a_version_change_with_the_repository_buildspec() -> None:
    pipeline = RESOURCES["Pipeline"]["Properties"]
    project = RESOURCES["PublishProject"]["Properties"]
    buildspec = yaml.safe_load((REPO / project["Source"]["BuildSpec"]).read_text())
    commands = "\n".join(buildspec["phases"]["build"]["commands"])
    variables = {v["Name"] for v in project["Environment"]["EnvironmentVariables"]}

    assert pipeline["PipelineType"] == "V2"
    assert pipeline["Triggers"][0]["GitConfiguration"]["Push"][0]["FilePaths"] == {"Includes": ["VERSION"]}
    assert project["Environment"]["PrivilegedMode"] is True  # docker build and docker run
    assert "scripts/platform.sh publish" in commands  # one place for the steps: the script make runs too
    for name in re.findall(r"for name in ([A-Z_ ]+); do", commands)[0].split():
        assert name in variables, f"buildspec.yml needs {name}, which the project does not set"


def test_every_publish_that_ends_is_mailed_through_an_encrypted_topic() -> None:
    rule = RESOURCES["PublishEndedRule"]["Properties"]
    (target,) = rule["Targets"]
    transformer = target["InputTransformer"]
    message = resolve(transformer["InputTemplate"], NAMES)
    (policy,) = RESOURCES["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    key_statements = RESOURCES["NotificationKey"]["Properties"]["KeyPolicy"]["Statement"]

    assert rule["EventPattern"]["detail"]["state"] == ["SUCCEEDED", "FAILED"]
    assert rule["EventPattern"]["detail"]["pipeline"] == [{"Ref": "Pipeline"}]
    assert target["Arn"] == {"Ref": "NotificationTopic"}
    # EventBridge refuses a placeholder its InputPathsMap does not define; the message is one JSON string.
    assert set(re.findall(r"<([A-Za-z-]+)>", message)) <= set(transformer["InputPathsMap"])
    assert isinstance(json.loads(message), str)
    assert RESOURCES["NotificationTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    rule_arn = {"Fn::GetAtt": ["PublishEndedRule", "Arn"]}
    assert policy["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}
    assert any(s["Principal"] == {"Service": "events.amazonaws.com"} for s in key_statements)
    emails = [r for r in RESOURCES.values() if r["Type"] == "AWS::SNS::Subscription"]
    assert len(emails) == 3 and all("Condition" in r for r in emails)


# --- make models: the AWS CLI against moto ---------------------------------------------------------------

MODEL_TEMPLATE = json.dumps({
    "Parameters": {"GitHubRepository": {"Type": "String"},
                   "RunnerMajorVersion": {"Type": "String", "Default": "1"},
                   "RunnerImage": {"Type": "String", "Default": ""},
                   "RunOutputUri": {"Type": "String", "Default": "-"}},
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {"RunOutputUri": {"Value": {"Ref": "RunOutputUri"}}},  # as template/pipeline.yaml's
})  # fmt: skip
PINNED = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/notebook-runner@sha256:" + "0123456789abcdef" * 4
PLATFORM_TAG, MODEL_TAG = "notebook-pipeline:platform", "notebook-pipeline:model"


def aws_env(moto: str, region: str, **extra: str) -> dict[str, str]:
    """The environment less the caller's AWS, platform and make settings; the AWS CLI pointed at moto."""
    left_out = ("AWS_", "PLATFORM_", "GITHUB_", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    base = {k: v for k, v in os.environ.items() if not k.startswith(left_out)}
    return base | {
        "AWS_CLI": str(AWS_CLI), "AWS_ENDPOINT_URL": moto, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", **extra,
    }  # fmt: skip


def client(service: str, moto: str, region: str) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=moto, aws_access_key_id="testing",
                        aws_secret_access_key="testing")  # fmt: skip


def model_stack(cfn: Any, name: str, tags: dict[str, str], **parameters: str) -> None:
    cfn.create_stack(
        StackName=name, TemplateBody=MODEL_TEMPLATE,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )  # fmt: skip


def published_runner(ecr: Any, version: str) -> str:
    """A runner version in the platform's repository (moto's ECR): its digest reference."""
    repository = ecr.create_repository(repositoryName=f"runner-{uuid.uuid4().hex[:8]}")["repository"]
    layer = "sha256:" + "c" * 64
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                           "digest": layer},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
                            "digest": layer}]}  # fmt: skip
    image = ecr.put_image(repositoryName=repository["repositoryName"], imageManifest=json.dumps(manifest),
                          imageTag=version)["image"]  # fmt: skip
    return f"{repository['repositoryUri']}@{image['imageId']['imageDigest']}"


def models(moto: str, region: str, platform: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "models", f"PLATFORM_STACK={platform}"], cwd=REPO,
                          env=aws_env(moto, region), capture_output=True, text=True, check=False)  # fmt: skip


def test_models_lists_the_platforms_model_stacks_one_row_each(moto_endpoint: str) -> None:
    region, platform = "eu-south-1", f"platform-{uuid.uuid4().hex[:8]}"
    cfn, ssm = client("cloudformation", moto_endpoint, region), client("ssm", moto_endpoint, region)
    mine = {PLATFORM_TAG: platform}
    model_stack(cfn, "usp-stack", mine | {MODEL_TAG: "usp"}, GitHubRepository="hotel/usp-model",
                RunOutputUri="s3://hotel-output/usp/daily")  # fmt: skip
    s3 = client("s3", moto_endpoint, region)
    s3.create_bucket(Bucket="hotel-output", CreateBucketConfiguration={"LocationConstraint": region})
    runs = [("2019-08-02", "r1", "succeeded", 3000), ("2019-08-01", "r2", "failed", None)]  # a backfill, last
    for day, run, status, rows in runs:
        manifest = {"run_id": run, "date": day, "status": status, "rows": rows}
        key = f"usp/daily/_runs/date={day}/{run}"
        s3.put_object(Bucket="hotel-output", Key=f"{key}/usp.html", Body=b"<html>")
        s3.put_object(Bucket="hotel-output", Key=f"{key}/manifest.json", Body=json.dumps(manifest).encode())
        time.sleep(1.1)  # S3 times are to the second
    model_stack(cfn, "athena-stack", mine | {MODEL_TAG: "athena"}, GitHubRepository="hotel/athena-model",
                RunnerImage=PINNED, RunnerMajorVersion="2")  # fmt: skip
    model_stack(cfn, "fresh-stack", mine | {MODEL_TAG: "fresh"}, GitHubRepository="hotel/fresh")
    model_stack(cfn, "elsewhere", {PLATFORM_TAG: "another-platform"}, GitHubRepository="a/b")
    model_stack(cfn, "untagged", {}, GitHubRepository="a/c")
    ssm.put_parameter(Name="/usp-stack/promoted-commit", Value="4f1c2e9a7b3d" + "0" * 28, Type="String")
    runner = published_runner(client("ecr", moto_endpoint, region), "1.0.3")
    ssm.put_parameter(Name="/usp-stack/promoted-runner", Value=runner, Type="String")  # built on 1.0.3
    ssm.put_parameter(Name="/fresh-stack/promoted-commit", Value="none", Type="String")  # none promoted yet
    when = ssm.get_parameter(Name="/usp-stack/promoted-commit")["Parameter"]["LastModifiedDate"]
    when = when.astimezone(UTC)

    done = models(moto_endpoint, region, platform)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header, *rows = [re.split(r"\s{2,}", line) for line in lines]
    assert header == ["MODEL", "STACK", "GITHUB REPOSITORY", "RUNNER", "PROMOTED COMMIT", "PROMOTED AT",
                      "LAST RUN", "STATUS", "ROWS"]  # fmt: skip
    no_run = ["-", "-", "-"]  # no run's manifest under its output (none, or no output at all)
    last = ["2019-08-01", "failed", "-"]  # the run written last (a backfilled day): its day, status and rows
    assert rows == [
        ["athena", "athena-stack", "hotel/athena-model", "pinned sha256:0123456789ab", "-", "-", *no_run],
        ["fresh", "fresh-stack", "hotel/fresh", "v1", "-", "-", *no_run],
        [
            "usp",
            "usp-stack",
            "hotel/usp-model",
            "1.0.3 (v1)",
            "4f1c2e9a7b3d",
            f"{when:%Y-%m-%dT%H:%MZ}",
            *last,
        ],
    ]
    # One aligned table: each column starts where its header does.
    for column, cell in (("STACK", "usp-stack"), ("RUNNER", "1.0.3 "), ("PROMOTED AT", f"{when:%Y-%m-%dT}")):
        assert lines[0].index(column) == lines[3].index(cell), (column, lines)


def test_models_pages_through_every_stack(moto_endpoint: str) -> None:
    region, platform = "ap-southeast-3", f"platform-{uuid.uuid4().hex[:8]}"
    cfn = client("cloudformation", moto_endpoint, region)
    for n in range(51):  # moto answers 50 stacks a page: the model is on the second
        model_stack(cfn, f"filler-{n}", {}, GitHubRepository="a/b")
    model_stack(cfn, "late-stack", {PLATFORM_TAG: platform, MODEL_TAG: "late"}, GitHubRepository="hotel/late")

    done = models(moto_endpoint, region, platform)

    assert done.returncode == 0, done.stderr
    assert [line.split()[:2] for line in done.stdout.splitlines()[1:]] == [["late", "late-stack"]]


def test_models_says_so_when_the_platform_has_none(moto_endpoint: str) -> None:
    done = models(moto_endpoint, "eu-north-1", "lonely-platform")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "no model stacks of the platform lonely-platform in eu-north-1: a model stack is tagged "
        "notebook-pipeline:platform=lonely-platform (make deploy)"
    )


# --- publish: the real AWS CLI on moto's ECR and SSM, a stand-in docker ---------------------------------

DOCKER = r"""
import hashlib, json, os, sys
import boto3
args = sys.argv[1:]
with open(os.environ["DOCKER_CALLS"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:2] == ["image", "inspect"] and "--format" in args:  # RepoDigests: none for a local stand-in
    print("" if os.environ.get("FAKE_STANDIN") else args[-1].split(":")[0] + "@sha256:" + "b" * 64)
elif args[0] in ("login", "build"):
    sys.stdin.read()  # the password; the runner's files or the model's recipe
elif args[0] == "run" and "--entrypoint" in args:
    print("FROM ${RUNNER}")  # the recipe inside the runner
elif args[0] == "run":
    out = next(a for a in args if a.startswith("OUTPUT_URI=")).split("=", 1)[1]
    if os.stat(out).st_mode & 0o005 != 0o005:  # the notebook's user passes through to its staging folder
        sys.exit("docker (stand-in): the notebook's user could not reach its staging folder in " + out)
    open(os.path.join(out, "smoke-output"), "w").close()  # what the run leaves, for the cleanup
    sys.exit(int(os.environ.get("FAKE_SMOKE_EXIT", "0")))
elif args[0] == "push":
    uri, tag = args[-1].rsplit(":", 1)
    blob = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
            "digest": "sha256:" + hashlib.sha256(args[-1].encode()).hexdigest()}  # moto digests the layers
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": blob, "layers": [blob]}
    boto3.client("ecr").put_image(repositoryName=uri.split("/", 1)[1], imageManifest=json.dumps(manifest),
                                  imageTag=tag)
"""
# What scripts/build.sh sends as the runner's build context, and the example model's files, as stubs.
STUBS = ("Dockerfile", "run_notebook.sh", "runner/requirements.txt", "runner/model.Dockerfile",
         "runner/run.py", "runner/templates/report/index.html.j2", "usp.ipynb",
         "requirements.txt")  # fmt: skip
BASE = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"


class Publisher:
    """The platform's scripts in a folder of their own, with stubs of the files they build, a VERSION of the
    test's, the stand-in docker first on PATH, and a runner repository in moto."""

    def __init__(self, root: Path, moto: str, region: str) -> None:
        self.root, self.moto, self.region = root, moto, region
        for stub in STUBS:
            (root / stub).parent.mkdir(parents=True, exist_ok=True)
            (root / stub).write_text("")
        (root / "scripts").mkdir()
        for script in ("platform.sh", "stack.sh", "build.sh"):
            shutil.copy2(REPO / "scripts" / script, root / "scripts" / script)
        (root / "bin").mkdir()
        (root / "bin" / "docker").write_text(f"#!{sys.executable}{DOCKER}")
        (root / "bin" / "docker").chmod(0o755)
        self.stack = f"platform-{uuid.uuid4().hex[:8]}"
        self.ecr, self.ssm = client("ecr", moto, region), client("ssm", moto, region)
        created = self.ecr.create_repository(repositoryName=f"{self.stack}-runner")
        self.uri = created["repository"]["repositoryUri"]

    def publish(self, version: str, **fake: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
        (self.root / "VERSION").write_text(f"{version}\n")
        calls = self.root / "docker-calls.jsonl"
        calls.unlink(missing_ok=True)
        env = aws_env(self.moto, self.region, PLATFORM_STACK=self.stack, RUNNER_REPOSITORY_URI=self.uri,
                      BASE_IMAGE=BASE, DOCKER_CALLS=str(calls), **fake)  # fmt: skip
        env["PATH"] = f"{self.root / 'bin'}:{env['PATH']}"
        script = self.root / "scripts" / "platform.sh"
        done = subprocess.run([str(script), "publish"], env=env, capture_output=True, text=True, check=False)
        logged = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
        return done, logged

    def named(self, major: int = 1) -> str | None:
        try:
            return self.ssm.get_parameter(Name=f"/{self.stack}/runner/v{major}")["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None


@pytest.fixture
def publisher(tmp_path: Path, moto_endpoint: str) -> Publisher:
    return Publisher(tmp_path / "platform", moto_endpoint, "eu-west-3")


def position(calls: list[list[str]], *words: str) -> int:
    """The index of the one call holding every word."""
    (found,) = [n for n, call in enumerate(calls) if all(w in call for w in words)]
    return found


def test_publish_builds_smoke_runs_pushes_and_names_the_version(publisher: Publisher) -> None:
    done, calls = publisher.publish("1.0.0")

    assert done.returncode == 0, done.stderr
    image = f"{publisher.uri}:1.0.0"
    found = publisher.ecr.describe_images(repositoryName=publisher.uri.split("/", 1)[1],
                                          imageIds=[{"imageTag": "1.0.0"}])["imageDetails"]  # fmt: skip
    named = f"{publisher.uri}@{found[0]['imageDigest']}"
    assert publisher.named() == named
    assert done.stdout.strip() == f"1.0.0 {named}"
    runner = position(calls, "build", "runner", f"BASE_IMAGE={BASE}", "RUNNER_VERSION=1.0.0", image)
    model = position(calls, "build", f"RUNNER={image}", str(publisher.root))
    smoke = position(calls, "run", "DATA_URI=/data/lake")
    assert runner < model < smoke < position(calls, "push", image)  # pushed only after the smoke run
    run = calls[smoke]
    out = next(a for a in run if a.startswith("OUTPUT_URI=")).split("=", 1)[1]
    assert run[:11] == ["run", "--rm", "--read-only", "--cap-drop", "ALL", "--cap-add", "SETUID",
                        "--cap-add", "SETGID", "--cap-add", "KILL"]  # fmt: skip
    assert {f"{out}:{out}", "RUN_DATE=2019-08-01", f"{publisher.root}/sample/lake:/data/lake:ro"} <= set(run)
    assert not Path(out).exists()  # the smoke run's output is removed


def test_publish_refuses_a_version_already_published(publisher: Publisher) -> None:
    assert publisher.publish("1.0.0")[0].returncode == 0
    before = publisher.named()

    done, calls = publisher.publish("1.0.0")

    assert done.returncode == 2
    assert "version 1.0.0 is already published" in done.stderr
    assert "bump VERSION (e.g. to 1.0.1)" in done.stderr
    assert calls == [] and publisher.named() == before  # nothing built, nothing moved


def test_publish_never_moves_a_major_backwards(publisher: Publisher) -> None:
    assert publisher.publish("1.1.0")[0].returncode == 0
    before = publisher.named()

    done, calls = publisher.publish("1.0.5")

    assert done.returncode == 2
    assert f"VERSION 1.0.5 is older than 1.1.0, which /{publisher.stack}/runner/v1 names" in done.stderr
    assert calls == [] and publisher.named() == before
    assert publisher.publish("2.0.0")[0].returncode == 0  # another major has a parameter of its own
    assert publisher.named(2) != before and publisher.named() == before


def test_publish_pushes_nothing_when_the_smoke_run_fails(publisher: Publisher) -> None:
    done, calls = publisher.publish("1.0.0", FAKE_SMOKE_EXIT="20")

    assert done.returncode == 2
    assert "the smoke run failed on the runner 1.0.0 (exit 20" in done.stderr
    assert "push" not in [c[0] for c in calls] and publisher.named() is None


def test_publish_refuses_a_base_from_no_registry(publisher: Publisher) -> None:
    done, calls = publisher.publish("1.0.0", FAKE_STANDIN="yes")

    assert done.returncode == 2
    assert "comes from no registry (a local stand-in)" in done.stderr
    assert "build" not in [c[0] for c in calls] and publisher.named() is None


BAD_VERSIONS = {"not semver": "1.0", "major 0": "0.9.0", "leading zero": "1.02.0", "a v prefix": "v1.0.0"}


@pytest.mark.parametrize("version", BAD_VERSIONS.values(), ids=BAD_VERSIONS.keys())
def test_publish_refuses_a_version_a_model_cannot_follow(tmp_path: Path, version: str) -> None:
    (tmp_path / "scripts").mkdir()
    for script in ("platform.sh", "stack.sh"):
        shutil.copy2(REPO / "scripts" / script, tmp_path / "scripts" / script)
    (tmp_path / "VERSION").write_text(version)
    env = {"PATH": os.environ["PATH"], "AWS_CLI": "false", "PLATFORM_STACK": "p"}  # no AWS call is made

    script = tmp_path / "scripts" / "platform.sh"
    done = subprocess.run([str(script), "publish"], env=env, capture_output=True, text=True, check=False)

    assert done.returncode == 2
    assert done.stderr.startswith(f"platform: VERSION={version} is not valid: the file VERSION holds MAJOR.")


# --- make deploy-platform: the exact calls, through the recording stand-in `aws` (fake_aws.py) ------------


def test_deploy_platform_deploys_the_template_with_the_given_values_only(tmp_path: Path) -> None:
    fake = {"FAKE_CONNECTION_STATUS": "PENDING"}
    done, calls = fake_aws.make(tmp_path, "deploy-platform", fake, GITHUB_REPO="hotel/notebook-pipeline",
                                NOTIFICATION_EMAILS="a@x.io,b@x.io")  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert calls[0] == [
        "cloudformation", "deploy", "--stack-name", "notebook-platform",  # platform.yml's stack
        "--template-file", f"{REPO}/template/platform.yaml", "--capabilities", "CAPABILITY_IAM",
        "--no-fail-on-empty-changeset", "--parameter-overrides", "GitHubRepository=hotel/notebook-pipeline",
        "GitHubBranch=main", "NotificationEmails=a@x.io,b@x.io",  # no ConnectionArn: the stack's stays
    ]  # fmt: skip
    assert "authorize the GitHub connection once" in done.stderr


OK = {"GITHUB_REPO": "hotel/notebook-pipeline"}
BAD_DEPLOYS = {
    "no repository": ({}, "GITHUB_REPO is not set: make deploy-platform GITHUB_REPO=owner/name"),
    "bad email": (OK | {"NOTIFICATION_EMAILS": "a@x.io;b@x.io"}, "NOTIFICATION_EMAILS=a@x.io;b@x.io is not"),
    "bad stack": (OK | {"PLATFORM_STACK": "9lives"}, "PLATFORM_STACK=9lives is not valid"),
    "bad repository name": (OK | {"RUNNER_REPOSITORY": "Runner"}, "RUNNER_REPOSITORY=Runner is not valid"),
}


@pytest.mark.parametrize("variables, message", BAD_DEPLOYS.values(), ids=BAD_DEPLOYS.keys())
def test_deploy_platform_refuses_a_bad_value_before_any_aws_call(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    done, calls = fake_aws.make(tmp_path, "deploy-platform", {}, **variables)

    assert done.returncode != 0
    assert message in done.stderr
    assert calls == []


# --- the platform stack's name: platform.yml's, read by scripts/platform.sh as settings.py reads it ---------

STACK_LINES = {
    "plain": ("stack: other-platform\n", "other-platform"),
    "quoted, with a comment": ('stack: "quoted-platform"  # the platform stack\n', "quoted-platform"),
    "single-quoted": ("stack: 'single-platform'\n", "single-platform"),
    "left out": ("bounds: {}\n", None),
}


@pytest.mark.parametrize("text, expected", STACK_LINES.values(), ids=STACK_LINES.keys())
def test_platform_sh_names_the_platform_stack_platform_yml_names(
    tmp_path: Path, text: str, expected: str | None
) -> None:
    platform_file = tmp_path / "platform.yml"
    platform_file.write_text(text)
    aws = tmp_path / "aws"
    aws.write_text("#!/bin/sh\nexit 0\n")  # no stacks at all
    aws.chmod(0o755)
    default = load()["Parameters"]["PlatformStackName"]["Default"]
    read = yaml.safe_load(text).get("stack", default)

    done = subprocess.run([str(REPO / "scripts" / "platform.sh"), "models"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "AWS_CLI": str(aws), "AWS_REGION": "eu-west-1",
                               "PLATFORM_FILE": str(platform_file)}, check=False)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert read == (expected or default)
    assert done.stdout.startswith(f"no model stacks of the platform {read} in eu-west-1")
