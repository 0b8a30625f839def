"""The build and the validation, run for real: their buildspecs' phases executed as CodeBuild would
(tests/pipeline/codebuild.py) with the variables the template and the pipeline set; Docker builds, a local
registry stands in for ECR, and moto, behind the IAM proxy (iam.py), for ECS, SSM, S3 and SNS. The
validation's candidate runs in a Fargate stand-in (the harness's `aws ecs run-task`: the image run with the
task definition's settings and its role's credentials as ECS serves them). Every request the validation,
its run and its notebook make is authorized for the template's role of the key that signed it. The stack and
the two stages are validation_stack.py's, which `make bench` times."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cfn
import nbformat
import pytest
from codebuild import run
from support import REPO, copy_repository
from validation_stack import (
    REPOSITORY,
    VALIDATION_ROLES,
    Promoted,
    Stack,
    build,
    commit_id,
    tag_digest,
    validate,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory, registry: str, stack: Stack) -> Promoted:
    """The repository as it is: built, pushed, validated on the Fargate stand-in and promoted."""
    source = copy_repository(tmp_path_factory.mktemp("good") / "src")
    commit = commit_id()
    built = build(source, stack, commit)
    assert built.succeeded, built.log[-4000:]
    assert built.exported["RUNNER_IMAGE"] == stack.runner
    validation = validate(source, registry, stack, commit, built.exported["IMAGE_DIGEST"], stack.runner)
    return Promoted(commit, built.exported["IMAGE_DIGEST"], built, validation)


def test_build_pushes_the_commit_tagged_image_and_exports_its_digest(
    promoted: Promoted, registry: str, stack: Stack
) -> None:
    repository, digest = promoted.digest.split("@")

    assert repository == f"{registry}/{REPOSITORY}"
    assert tag_digest(registry, promoted.commit) == digest
    assert "no validated image yet, this build starts from the local layer cache only" in promoted.build.log
    assert f"building on the runner {stack.runner}" in promoted.build.log


def test_validation_runs_the_digest_on_fargate_and_promotes_exactly_it(
    promoted: Promoted, registry: str, stack: Stack
) -> None:
    digest = promoted.digest.split("@")[1]
    output = stack.values["OutputBucket"]

    assert promoted.validation.succeeded, promoted.validation.log[-6000:]
    assert tag_digest(registry, f"keep-{digest.removeprefix('sha256:')}") == digest  # never expired
    assert tag_digest(registry, "latest") == digest
    assert stack.validated_image() == promoted.digest
    assert stack.promoted_commit() == promoted.commit
    assert stack.promoted_runner() == stack.runner
    assert "the layer check passed" in promoted.validation.log
    keys = stack.keys(output)
    table = f"validation/{promoted.commit}/"  # the table's files, registered nowhere (TABLE_CATALOG=none)
    assert [k for k in keys if k.startswith(table + "data/date=2019-08-01/") and k.endswith(".parquet")]
    assert [k for k in keys if k.startswith(table + "metadata/") and k.endswith(".metadata.json")]
    assert all(k.startswith(f"validation/{promoted.commit}/") for k in keys)  # never the consumers' prefix
    assert "succeeded: published 3000 rows" in promoted.validation.log
    (promotion,) = stack.announcements()  # the run's success is quiet; the promotion is mailed
    assert promotion["Subject"].startswith("Promoted version 1 of ")


def test_validation_pins_the_daily_runs_to_the_validated_digest(promoted: Promoted, stack: Stack) -> None:
    """The stack's run task definition, copied with the digest, is now the family's latest revision."""
    first, *_, latest = stack.run_revisions()

    assert promoted.validation.succeeded, promoted.validation.log[-6000:]
    assert latest["containerDefinitions"][0]["image"] == promoted.digest
    assert f"the daily runs now start version 1: {latest['taskDefinitionArn']}" in promoted.validation.log
    kept = ("family", "cpu", "memory", "taskRoleArn", "executionRoleArn", "networkMode", "volumes")
    for field_name in kept:
        assert latest[field_name] == first[field_name], field_name
    unchanged = {k: v for k, v in first["containerDefinitions"][0].items() if k != "image"}
    assert {k: latest["containerDefinitions"][0][k] for k in unchanged} == unchanged


def test_every_request_of_the_validation_is_one_its_roles_allow(promoted: Promoted, stack: Stack) -> None:
    """The project's own calls, promotion's (as PromoteRole), the candidate runner's and its notebook's, each
    signed by its role's key."""
    decisions = [d for d in stack.iam.decisions if d.role in VALIDATION_ROLES or d.key is None]
    by_role = {role: [d for d in decisions if d.role == role] for role in VALIDATION_ROLES}

    assert promoted.validation.succeeded
    assert [d for d in decisions if d.key is None] == []
    assert all(by_role.values()), {r: len(d) for r, d in by_role.items()}
    assert [(d.role, d.method, d.path, d.actions) for d in decisions if not d.allowed] == []
    notebook_reads = {
        c.resource for d in by_role["ValidationNotebookRole"] for c in d.checks if c.action == "s3:GetObject"
    }
    lake = f"arn:aws:s3:::{stack.values['DataLakeBucket']}/snapshots/"
    assert {r for r in notebook_reads if r.startswith(lake)} and all(
        "/date=2019-08-01/" in r for r in notebook_reads
    )


def broken_source(root: Path, how: str) -> Path:
    source = copy_repository(root / "src")
    notebook = source / "usp.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    if how == "notebook raises":
        nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')"))
    elif how == "check fails":  # every row twice
        nb.cells.insert(
            -1, nbformat.v4.new_code_cell("usp_destinations = pa.concat_tables([usp_destinations] * 2)")
        )
    else:  # an adversary: it reaches for promotion's powers, then fails
        nb.cells.append(nbformat.v4.new_code_cell(ADVERSARY.replace("STACK", f"{how}")))
    nbformat.write(nb, notebook)
    return source


# With whatever credentials it finds, the candidate's notebook tries to promote itself.
ADVERSARY = """
import boto3
attempts = {}
for name, call in {
    "register": lambda: boto3.client("ecs").register_task_definition(
        family="STACK-run", containerDefinitions=[{"name": "runner", "image": "evil"}]),
    "parameter": lambda: boto3.client("ssm").put_parameter(
        Name="/STACK/validated-image", Value="evil", Type="String", Overwrite=True),
    "tag": lambda: boto3.client("ecr").put_image(
        repositoryName="notebook-runner-ci", imageManifest="{}", imageTag="validated"),
    "run": lambda: boto3.client("ecs").run_task(cluster="STACK-validation", taskDefinition="STACK-validate"),
}.items():
    try:
        call()
        attempts[name] = "ALLOWED"
    except Exception as exc:
        attempts[name] = type(exc).__name__
print("ATTEMPTS", attempts)
assert all(v != "ALLOWED" for v in attempts.values()), attempts
raise RuntimeError("the adversary gave up")
"""


@pytest.mark.parametrize("how, exit_code", [("notebook raises", 10), ("check fails", 20), ("adversary", 10)])
def test_failed_validation_promotes_nothing(
    promoted: Promoted, tmp_path: Path, registry: str, stack: Stack, how: str, exit_code: int
) -> None:
    source = broken_source(tmp_path, stack.name if how == "adversary" else how)
    commit = commit_id()
    built = build(source, stack, commit)
    assert built.succeeded, built.log[-4000:]
    revisions = len(stack.run_revisions())
    stack.announcements()  # what came before (the promotion the fixture made)

    validation = validate(source, registry, stack, commit, built.exported["IMAGE_DIGEST"], stack.runner)

    assert not validation.succeeded
    assert validation.failed_phase == "build"
    assert f"[harness] phase build FAILED (exit {exit_code})" in validation.log
    assert f"ended with exit code {exit_code}" in validation.log and "is not promoted" in validation.log
    assert "nothing was published" in validation.log
    good = promoted.digest.split("@")[1]
    assert tag_digest(registry, "latest") == good
    assert stack.validated_image() == promoted.digest
    assert len(stack.run_revisions()) == revisions  # nobody registered a run revision
    assert stack.run_revisions()[-1]["containerDefinitions"][0]["image"] == promoted.digest  # runs keep it
    assert not [
        k for k in stack.keys(stack.values["OutputBucket"]) if k.startswith(f"validation/{commit}/date=")
    ]
    # the candidate's runner mails nothing: the failed Validate stage is PipelineMailer's to mail (issue 20)
    assert stack.announcements() == []
    if how == "adversary":
        assert "ATTEMPTS {'register': 'AccessDeniedException'" in validation.log
        denied = {a for d in stack.iam.by_role("ValidationNotebookRole") if not d.allowed for a in d.actions}
        assert {"ecs:RegisterTaskDefinition", "ssm:PutParameter", "ecr:PutImage", "ecs:RunTask"} <= denied


def test_rebuild_reuses_the_validated_image_layers(promoted: Promoted, tmp_path: Path, stack: Stack) -> None:
    source = copy_repository(tmp_path / "src")
    notebook = source / "usp.ipynb"
    nb = json.loads(notebook.read_text())
    nb["metadata"]["edited"] = True  # a notebook-only change
    notebook.write_text(json.dumps(nb))

    built = build(source, stack, commit_id())

    assert built.succeeded, built.log[-4000:]
    assert "no validated image yet" not in built.log  # the promoted image was pulled as the cache
    assert built.log.count("Using cache") >= 3  # the requirements' layers came from it


@pytest.mark.parametrize("project", cfn.PROJECTS)
def test_a_missing_variable_fails_the_first_phase_by_name(project: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    buildspec = cfn.buildspec_text(project)

    result = run(buildspec, source, {"IMAGE_REPO_URI": "127.0.0.1:1/x"})

    assert result.failed_phase == "pre_build"
    assert "is not set: deploy the pipeline with 'make deploy'" in result.log


ECR_REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/notebook-runner-ci"
RUNNER_REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/platform-runner"
GOOD_DIGEST = "sha256:" + "0123456789abcdef" * 4
DIGESTS = {
    "the repository's, by digest": (f"{ECR_REPOSITORY}@{GOOD_DIGEST}", False),
    # a host that differs only where the repository's URI has a '.': a regex would read each as any character
    "a host with X for its first dot": (f"{ECR_REPOSITORY.replace('.', 'X', 1)}@{GOOD_DIGEST}", True),
    "a host with '-' for every dot": (f"{ECR_REPOSITORY.replace('.', '-')}@{GOOD_DIGEST}", True),
    "another host ending in the URI": (f"evil.example/{ECR_REPOSITORY}@{GOOD_DIGEST}", True),
    "another repository in the registry": (f"{ECR_REPOSITORY}-evil@{GOOD_DIGEST}", True),
    "a tag": (f"{ECR_REPOSITORY}:latest", True),
    "two digests": (f"{ECR_REPOSITORY}@{GOOD_DIGEST}@{GOOD_DIGEST}", True),
    "a short digest": (f"{ECR_REPOSITORY}@{GOOD_DIGEST[:-1]}", True),
}


@pytest.mark.parametrize("digest, refused", DIGESTS.values(), ids=DIGESTS.keys())
def test_the_validation_runs_only_an_image_of_its_own_repository_refusing_others_before_any_aws_call(
    tmp_path: Path, digest: str, refused: bool
) -> None:
    """IMAGE_DIGEST comes from the build, which runs the repository's buildspec: the validation compares its
    repository with IMAGE_REPO_URI as text, never as a pattern."""
    source, calls = tmp_path / "src", tmp_path / "aws-calls"
    source.mkdir()
    stand_in = tmp_path / "bin" / "aws"  # records each call, and answers none
    stand_in.parent.mkdir()
    stand_in.write_text(f'#!/bin/sh\necho "$*" >>{calls}\nexit 1\n')
    stand_in.chmod(0o755)
    env = {
        "IMAGE_REPO_URI": ECR_REPOSITORY, "VALIDATION_CLUSTER": "c", "VALIDATION_TASK_DEFINITION": "v",
        "VALIDATION_URI": "s3://hotel-out/validation", "VALIDATION_DATE": "2019-08-01",
        "VERSIONS_BUCKET": "versions", "RELEASE_APPROVAL": "none", "ALERT_TOPIC": "arn:aws:sns:eu-west-1:1:a",
        "GITHUB_REPOSITORY": "hotel-profiling/usp-model", "SUBNETS": "subnet-0a1b2c3d",
        "COMMIT_PARAMETER": "/p/promoted-commit", "PROMOTED_RUNNER_PARAMETER": "/p/promoted-runner",
        "RUNNER_REPO_URI": RUNNER_REPOSITORY,
        "RUNNER_IMAGE": f"{RUNNER_REPOSITORY}@{GOOD_DIGEST}",
        "SECURITY_GROUPS": "sg-0a1b2c3d", "ASSIGN_PUBLIC_IP": "DISABLED", "COMMIT_ID": commit_id(),
        "IMAGE_DIGEST": digest,
        "PATH": f"{stand_in.parent}:{os.environ['PATH']}",
    }  # fmt: skip

    result = run(cfn.buildspec_text("ValidateProject"), source, env)

    assert result.failed_phase == "pre_build"  # refused, or the stand-in answered the first call with nothing
    assert ("is not an image of" in result.log) is refused, result.log
    if refused:
        assert not calls.exists(), calls.read_text()
    else:  # the check let it through to its first call: the layer check reads the runner's manifest
        assert calls.read_text().startswith("ecr batch-get-image --repository-name platform-runner ")


def test_the_harness_knows_only_the_calls_the_buildspecs_make() -> None:
    aws = REPO / "tests" / "pipeline" / "harness" / "aws"
    done = subprocess.run([str(aws), "s3", "rm", "s3://y/x"], capture_output=True, text=True, check=False)

    assert done.returncode != 0
    assert "is not something the buildspecs call" in done.stderr
