"""A model's environments (issue 18): a staging stack that builds and validates, and a production stack in
another account that never builds and promotes exactly the digests staging validated.

The two stacks are the one template with two sets of parameters, each in its own emulated account: moto's
backends of that account (the IAM proxy of each stack forwards there, x-moto-account-id), and a proxy that
authorizes a request for the other account's resources only if both the caller's role and the resource's
policy allow it (iam.Accounts: staging's versions bucket policy and its image repository policy, resolved
from the template). Production's runs pull staging's image as ECS does, with the production stack's
TaskExecutionRole, through that repository policy (harness/aws pull_refused).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import uuid4

import boto3
import botocore.exceptions
import cfn
import iam
import pytest
from support import SAMPLE_DATE
from validation_stack import (
    REGION,
    RESOURCES,
    Promoted,
    Stack,
    build,
    commit_id,
    daily_run,
    deployed,
    env_value,
    promote_version,
    push_commit,
)

PRODUCTION_ACCOUNT = "210987654321"
STRANGER_ACCOUNT = "345678901234"  # an account staging does not name
SAMPLE_ROWS = 1765  # what the model template's notebook publishes from the sample
ENGINEER = f"arn:aws:iam::{PRODUCTION_ACCOUNT}:user/release-engineer"
# What a building stack has and a production stack must not: no source, build, validation or repository.
BUILDING = (
    "GitHubConnection", "ArtifactBucket", "ImageRepository", "BuildRole", "BuildProject", "PipelineRole",
    "Pipeline", "ValidateRole", "ValidateProject", "ValidationCluster", "ValidationTaskDefinition",
    "ValidationTaskRole", "ValidationNotebookRole", "RunnerUpgrade", "RunnerPublishedRule",
)  # fmt: skip


def staging_parameters() -> dict[str, Any]:
    return {"EnvironmentName": "staging", "ReleaseAccountIds": PRODUCTION_ACCOUNT}


def production_parameters(staging: dict[str, Any]) -> dict[str, Any]:
    """A production stack's parameters, from its staging stack's outputs (as settings.yml's releases.*)."""
    return {
        "EnvironmentName": "production",
        "ReleasesFromRepository": staging["ImageRepository.Arn"],
        "ReleasesFromVersionsBucket": staging["VersionsBucket"],
    }


# --- the template, in process --------------------------------------------------------------------------


def test_a_production_stack_has_nothing_that_builds_or_validates() -> None:
    staging = {
        **cfn.defaults(),
        **staging_parameters(),
        "ImageRepository.Arn": "arn:aws:ecr:eu-west-1:1:repository/r",
    }
    production = {
        **cfn.defaults(),
        **production_parameters({**staging, "VersionsBucket": "staging-versions"}),
    }

    present = {name for name, r in RESOURCES.items() if cfn.exists(r, production)}

    assert not present & set(BUILDING)
    assert set(BUILDING) <= {name for name, r in RESOURCES.items() if cfn.exists(r, staging)}
    assert [n for n in present if RESOURCES[n]["Type"] == "AWS::CodeBuild::Project"] == ["PromoteProject"]
    assert not [n for n in present if RESOURCES[n]["Type"] == "AWS::CodePipeline::Pipeline"]
    for role in (n for n in present if RESOURCES[n]["Type"] == "AWS::IAM::Role"):
        pushes = {
            "ecr:PutImage",
            "ecr:InitiateLayerUpload",
            "ecr:CompleteLayerUpload",
            "codebuild:StartBuild",
        }
        assert not cfn.granted(RESOURCES, role, production) & pushes, role


def test_staging_shares_only_pulls_and_version_records_with_the_accounts_it_names() -> None:
    values = {**cfn.defaults(), **staging_parameters(), "VersionsBucket.Arn": "arn:aws:s3:::v"}
    repository = RESOURCES["ImageRepository"]["Properties"]["RepositoryPolicyText"]
    bucket = RESOURCES["VersionsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]

    (pull,) = cfn.resolve(cfn.choose({"p": repository}, values), values)["p"]["Statement"]
    shared = [s for s in cfn.resolve(cfn.choose(bucket, values), values) if s["Effect"] == "Allow"]
    unshared = {**cfn.defaults(), "VersionsBucket.Arn": "arn:aws:s3:::v"}

    assert pull["Principal"] == {"AWS": [PRODUCTION_ACCOUNT]}
    assert sorted(pull["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                      "ecr:GetDownloadUrlForLayer"]  # fmt: skip
    assert {(s["Action"], str(s["Resource"])) for s in shared} == {
        ("s3:ListBucket", "arn:aws:s3:::v"), ("s3:GetObject", "arn:aws:s3:::v/versions/*"),
    }  # fmt: skip
    assert all(s["Principal"] == {"AWS": [PRODUCTION_ACCOUNT]} for s in shared)
    assert "p" not in cfn.choose({"p": repository}, unshared)  # no policy unless accounts are named
    assert [s["Effect"] for s in cfn.choose(bucket, unshared)] == ["Deny"]


@pytest.mark.parametrize(
    "changes",
    [{"ReleasesFromVersionsBucket": ""}, {"ReleaseApproval": "required"},
     {"ReleaseAccountIds": STRANGER_ACCOUNT}],
)  # fmt: skip
def test_the_template_refuses_a_production_stack_that_is_half_set_holds_releases_or_shares(
    changes: dict[str, str],
) -> None:
    values = production_parameters({"ImageRepository.Arn": "arn:aws:ecr:eu-west-1:1:repository/r",
                                    "VersionsBucket": "staging-versions"})  # fmt: skip

    assert cfn.failed_rules({**values, **changes}) == ["ReleasesComeWithTheirRecords"]
    assert cfn.failed_rules(values) == []


def test_the_task_definition_and_the_output_name_the_same_repository_in_production() -> None:
    """The placeholder image of the run family, before production's first promotion, and the repository
    promotion holds each record's image to, are the one the output ImageRepositoryUri names (the one fact
    written three times: held equal here)."""
    values = {**cfn.defaults(), **production_parameters({
        "ImageRepository.Arn": "arn:aws:ecr:eu-west-1:111111111111:repository/notebook-pipeline-usp-staging",
        "VersionsBucket": "v"}), "AWS::URLSuffix": "amazonaws.com"}  # fmt: skip
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]

    image = cfn.resolve(container["Image"], values)
    output = cfn.resolve(cfn.load()["Outputs"]["ImageRepositoryUri"]["Value"], values)
    promote = cfn.resolve(env_value("PromoteProject", "IMAGE_REPO_URI"), values)

    assert output == "111111111111.dkr.ecr.eu-west-1.amazonaws.com/notebook-pipeline-usp-staging"
    assert image.split("@", 1)[0] == output == promote
    assert cfn.resolve(env_value("PromoteProject", "VERSION_RECORDS_ACCOUNT"), values) == "111111111111"


# --- two accounts, in moto behind their proxies ----------------------------------------------------------


@pytest.fixture(scope="module")
def accounts() -> iam.Accounts:
    return iam.Accounts()


@pytest.fixture(scope="module")
def staging(
    registry: str, moto_endpoint: str, platform_runner: str, accounts: iam.Accounts
) -> Iterator[Stack]:
    with deployed(moto_endpoint, registry, staging_parameters(), accounts=accounts) as created:
        created.runner = created.publish_runner(platform_runner, "1.0.0")
        yield created


@pytest.fixture(scope="module")
def production(registry: str, moto_endpoint: str, staging: Stack, accounts: iam.Accounts) -> Iterator[Stack]:
    parameters = production_parameters(staging.values)
    with deployed(moto_endpoint, registry, parameters, PRODUCTION_ACCOUNT, accounts) as created:
        yield created


@pytest.fixture(scope="module")
def stranger(registry: str, moto_endpoint: str, staging: Stack, accounts: iam.Accounts) -> Iterator[Stack]:
    """A production stack in an account staging does not name."""
    parameters = production_parameters(staging.values)
    with ExitStack() as stack:
        yield stack.enter_context(deployed(moto_endpoint, registry, parameters, STRANGER_ACCOUNT, accounts))


@pytest.fixture(scope="module")
def released(model: Path, staging: Stack) -> Promoted:
    """A commit pushed to staging: built, validated (version 1 in staging's records) and promoted there."""
    pushed = push_commit(model, staging)
    assert pushed.validation.succeeded, pushed.validation.log[-3000:]
    return pushed


def pull(stack: Stack, repository_arn: str, digest: str) -> str:
    """ecr:BatchGetImage of `digest` as the stack's TaskExecutionRole asks it (ECS's pull): '' if allowed,
    else the error's code."""
    client = boto3.client("ecr", region_name=REGION, endpoint_url=stack.proxy,
                          aws_access_key_id=stack.execution_key, aws_secret_access_key="x")  # fmt: skip
    account, name = repository_arn.split(":")[4], repository_arn.split(":repository/", 1)[1]
    try:
        client.batch_get_image(registryId=account, repositoryName=name, imageIds=[{"imageDigest": digest}])
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    return ""


@pytest.mark.docker
def test_production_runs_exactly_the_digest_staging_validated_pulled_through_the_repository_policy(
    released: Promoted, staging: Stack, production: Stack
) -> None:
    (version,) = staging.versions()

    promoted = promote_version(production, "1", "promote", who=ENGINEER)
    run = daily_run(production, "2019-08-02T06:00:00Z")

    assert promoted.succeeded, promoted.log[-3000:]
    assert production.validated_image() == version["image"] == released.digest
    assert production.run_revisions()[-1]["containerDefinitions"][0]["image"] == released.digest
    assert [(p["version"], p["image"], p["by"]) for p in production.promotions()] == [
        (1, released.digest, "promote")]  # fmt: skip
    assert staging.promotions()[-1]["by"] == "push"  # staging's own history is untouched
    assert run.code == 0, run.log[-3000:]
    assert (run.image, run.date, run.rows) == (released.digest, SAMPLE_DATE, SAMPLE_ROWS)
    pulls = [d for d in production.iam.by_role("TaskExecutionRole") if "ecr:BatchGetImage" in d.actions]
    assert pulls and all(d.allowed for d in pulls)
    assert {c.resource for d in pulls for c in d.checks} == {staging.values["ImageRepository.Arn"]}
    assert production.keys(production.values["OutputBucket"], f"daily/_runs/date={SAMPLE_DATE}/")


@pytest.mark.docker
def test_the_production_promotion_mail_names_the_environment_and_its_commands(
    released: Promoted, production: Stack
) -> None:
    if not production.promotions():
        assert promote_version(production, "1", "promote", who=ENGINEER).succeeded
    mails = production.announcements()

    (mail,) = [m for m in mails if m.get("Subject", "").startswith("Promoted version 1")]
    assert (
        mail["Subject"]
        == "Promoted version 1 of hotel-profiling/usp-model (production) (promote by release-engineer)"
    )
    assert "The daily runs of hotel-profiling/usp-model (production) now start version 1" in mail["Message"]
    assert (
        "All versions: make versions GITHUB_REPO=hotel-profiling/usp-model ENV=production" in mail["Message"]
    )
    assert "Compared with what the stack that validated it published for 2019-08-01:" in mail["Message"]


@pytest.mark.docker
def test_production_refuses_an_image_staging_built_but_never_validated(
    model: Path, released: Promoted, staging: Stack, production: Stack
) -> None:
    built = build(model, staging, commit_id())  # pushed to staging's repository, never validated
    assert built.succeeded, built.log[-3000:]
    before = production.validated_image()

    refused = promote_version(
        production, built.exported["IMAGE_DIGEST"].split("@", 1)[1], "promote", who=ENGINEER
    )

    assert not refused.succeeded
    assert "is no validated version of hotel-profiling/usp-model" in refused.log
    assert "make versions GITHUB_REPO=hotel-profiling/usp-model ENV=production" in refused.log
    assert production.validated_image() == before


@pytest.mark.docker
def test_production_cannot_write_a_record_or_an_image_in_staging(
    released: Promoted, staging: Stack, production: Stack
) -> None:
    """A forged record would be a version production promotes: its roles read staging's records only."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=production.proxy,
                      aws_access_key_id=production.promote_key, aws_secret_access_key="x")  # fmt: skip
    bucket = staging.values["VersionsBucket"]
    ecr = boto3.client("ecr", region_name=REGION, endpoint_url=production.proxy,
                       aws_access_key_id=production.execution_key, aws_secret_access_key="x")  # fmt: skip

    with pytest.raises(botocore.exceptions.ClientError) as forged:
        s3.put_object(Bucket=bucket, Key="versions/000099.json", Body=b"{}")
    with pytest.raises(botocore.exceptions.ClientError) as pushed:
        ecr.put_image(registryId=staging.account, repositoryName="notebook-runner-ci", imageManifest="{}",
                      imageTag="latest")  # fmt: skip

    assert forged.value.response["Error"]["Code"] == "AccessDenied"
    assert pushed.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "versions/000099.json" not in staging.keys(bucket, "versions/")


@pytest.mark.docker
def test_an_account_staging_does_not_name_reads_no_version_and_pulls_no_image(
    released: Promoted, staging: Stack, production: Stack, stranger: Stack
) -> None:
    repository, digest = staging.values["ImageRepository.Arn"], released.digest.split("@", 1)[1]

    refused = promote_version(stranger, "1", "promote", who=f"arn:aws:iam::{STRANGER_ACCOUNT}:user/x")

    assert not refused.succeeded and "AccessDenied" in refused.log
    assert stranger.promotions() == [] and stranger.validated_image() == "none"
    assert pull(stranger, repository, digest) == "AccessDeniedException"
    assert pull(production, repository, digest) != "AccessDeniedException"  # the account staging names may


@pytest.mark.docker
def test_production_refuses_a_record_whose_image_is_outside_stagings_repository(
    released: Promoted, staging: Stack, production: Stack
) -> None:
    """A record naming an image elsewhere (a public registry Fargate pulls without any role) is never pinned,
    however it got into staging's records (only staging's ValidateRole, or its account's admins, write
    there)."""
    (version,) = [v for v in staging.versions() if v["version"] == 1]
    bucket, key = staging.values["VersionsBucket"], "versions/000077.json"
    forged = {**version, "version": 77, "image": "docker.io/attacker/evil@sha256:" + "2" * 64}
    staging.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(forged).encode())
    before = production.run_revisions()[-1]["taskDefinitionArn"]
    try:
        refused = promote_version(production, "77", "promote", who=ENGINEER)
    finally:
        staging.client("s3").delete_object(Bucket=bucket, Key=key)

    assert not refused.succeeded
    assert "names the image 'docker.io/attacker/evil@sha256:" in refused.log
    assert "which is not in" in refused.log and "the repository this stack releases from" in refused.log
    assert production.run_revisions()[-1]["taskDefinitionArn"] == before


@pytest.mark.docker
def test_production_reads_no_records_from_a_bucket_of_its_name_in_another_account(
    registry: str, moto_endpoint: str, released: Promoted, staging: Stack, accounts: iam.Accounts
) -> None:
    """Staging's versions bucket deleted and its name taken by another account, which lets production read
    its forged records: production reads records only from the account of staging's repository."""
    taken = f"taken-{uuid4().hex[:8]}"
    parameters = {**production_parameters(staging.values), "ReleasesFromVersionsBucket": taken}
    with deployed(moto_endpoint, registry, parameters, PRODUCTION_ACCOUNT, accounts) as victim:
        squatter = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint,
                                aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
        squatter.meta.events.register("before-send", lambda request, **_: request.headers.__setitem__(
            iam.MOTO_ACCOUNT, STRANGER_ACCOUNT))  # fmt: skip
        squatter.create_bucket(Bucket=taken, CreateBucketConfiguration={"LocationConstraint": REGION})
        (version,) = [v for v in staging.versions() if v["version"] == 1]
        squatter.put_object(Bucket=taken, Key="versions/000001.json", Body=json.dumps(version).encode())
        accounts.buckets[taken] = STRANGER_ACCOUNT
        accounts.policies[taken] = [{"Effect": "Allow", "Principal": {"AWS": [PRODUCTION_ACCOUNT]},
                                     "Action": "s3:*", "Resource": f"arn:aws:s3:::{taken}*"}]  # fmt: skip

        refused = promote_version(victim, "1", "promote", who=ENGINEER)

        assert not refused.succeeded and "AccessDenied" in refused.log
        assert victim.validated_image() == "none" and victim.promotions() == []
