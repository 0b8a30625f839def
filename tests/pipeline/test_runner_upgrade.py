"""Runner upgrades re-validate every model that follows the runner's major version (issue 17).

The platform publishes a runner version by overwriting /<platform>/runner/v<major>: the model stack's rule
hands that change to its RunnerUpgrade workflow (run here on moto's state machine interpreter), which starts
the pipeline on the model's promoted commit. The pipeline's two stages are then run as CodePipeline would
for two models on one platform: the one that still passes is promoted on the new runner; the one the new
runner breaks fails its validation, is mailed, and its runs keep the image they had."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import cfn
import nbformat
import pytest
import stepfunctions
from moto.codepipeline.responses import CodePipelineResponse
from support import REPO, build_runner, copy_repository
from validation_stack import Stack, build, commit_id, deployed, validate

RESOURCES = cfn.load()["Resources"]
COMMIT = "c0ffee" + "0" * 34
PARAMETER = "/notebook-platform/runner/v1"


def test_the_rule_hands_a_new_version_of_the_followed_major_to_the_workflow_and_a_pinned_model_has_none() -> (
    None
):
    rule = RESOURCES["RunnerPublishedRule"]
    pattern = cfn.resolve(rule["Properties"]["EventPattern"], cfn.defaults())
    (target,) = rule["Properties"]["Targets"]

    assert pattern == {
        "source": ["aws.ssm"], "detail-type": ["Parameter Store Change"],
        "detail": {"name": [PARAMETER], "operation": ["Create", "Update"]},
    }  # fmt: skip
    assert target["Arn"] == {"Ref": "RunnerUpgrade"}
    pinned = {"RunnerImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/r@sha256:" + "0" * 64}
    assert cfn.condition("FollowsRunnerMajorVersion", {}) and not cfn.condition(
        "FollowsRunnerMajorVersion", pinned
    )
    followers = [name for name, r in RESOURCES.items() if r.get("Condition") == "UpgradesWithTheRunner"]
    production = {"ReleasesFromRepository": "arn:aws:ecr:eu-west-1:123456789012:repository/r"}
    assert cfn.condition("UpgradesWithTheRunner", {}) and not cfn.condition("UpgradesWithTheRunner", pinned)
    assert not cfn.condition("UpgradesWithTheRunner", production)  # production never rebuilds
    assert {"RunnerPublishedRule", "RunnerUpgrade", "RunnerUpgradeRole", "RunnerUpgradeInvokeRole"} <= set(
        followers
    )


def test_the_workflow_may_read_the_promoted_commit_and_start_this_pipeline_only() -> None:
    granted = cfn.statements(RESOURCES, "RunnerUpgradeRole")

    assert granted["ReadPromotedCommit"]["Action"] == "ssm:GetParameter"
    assert granted["ReadPromotedCommit"]["Resource"]["Fn::Sub"].endswith(
        ":parameter${PromotedCommitParameter}"
    )
    assert granted["RebuildPromotedCommit"]["Action"] == "codepipeline:StartPipelineExecution"
    assert granted["RebuildPromotedCommit"]["Resource"]["Fn::Sub"].endswith(":${Pipeline}")


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """moto executing state machines, with a pipeline; each StartPipelineExecution's sourceRevisions."""
    calls: list[Any] = []
    original = CodePipelineResponse.start_pipeline_execution

    def recording(self: CodePipelineResponse) -> str:
        calls.append(self._get_param("sourceRevisions"))
        return original(self)

    monkeypatch.setattr(CodePipelineResponse, "start_pipeline_execution", recording)
    with stepfunctions.executing_aws():
        stepfunctions.create_pipeline("model-a")
        yield calls


def upgrade(commit: str) -> dict[str, Any]:
    boto3.client("ssm").put_parameter(
        Name="/model-a/promoted-commit", Value=commit, Type="String", Overwrite=True
    )
    machine = RESOURCES["RunnerUpgrade"]["Properties"]
    substitutions = {"Pipeline": "model-a", "CommitParameter": "/model-a/promoted-commit"}
    assert set(machine["DefinitionSubstitutions"]) == set(substitutions)
    return stepfunctions.run(machine["Definition"], substitutions, {"parameter": PARAMETER, "time": "t"})


def test_a_published_version_starts_the_pipeline_on_the_promoted_commit_not_the_branch_head(
    started: list[Any],
) -> None:
    assert upgrade(COMMIT)["status"] == "SUCCEEDED"

    source = cfn.resolve(RESOURCES["Pipeline"]["Properties"]["Stages"][0]["Actions"][0]["Name"], {})
    assert started == [[{"actionName": source, "revisionType": "COMMIT_ID", "revisionValue": COMMIT}]]


def test_a_model_that_never_promoted_waits_for_its_next_push(started: list[Any]) -> None:
    assert upgrade("none")["status"] == "SUCCEEDED"

    assert started == []


# --- the two stages, for two models, on the new runner ---------------------------------------------------

BREAKS_ON_A_NEW_RUNNER = """
from pathlib import Path
version = Path("/opt/notebook-runner/VERSION").read_text().strip()
assert version == "1.0.0", f"this model was only ever checked on runner 1.0.0, not {version}"
"""


def model(root: Path, fragile: bool) -> Path:
    source = copy_repository(root)
    if fragile:
        notebook = source / "usp.ipynb"
        nb = nbformat.read(notebook, as_version=4)
        nb.cells.insert(2, nbformat.v4.new_code_cell(BREAKS_ON_A_NEW_RUNNER))
        nbformat.write(nb, notebook)
    return source


def new_runner(root: Path, base_image: str, version: str) -> str:
    """This platform's runner as the next version (its VERSION file bumped), built from a copy."""
    platform = copy_repository(root)
    (platform / "VERSION").write_text(version + "\n")
    return build_runner(f"notebook-runner:test-{version}", base_image, root=platform)


@pytest.mark.docker
def test_a_new_runner_version_promotes_the_model_that_passes_and_leaves_the_one_it_breaks_on_its_image(
    tmp_path: Path, registry: str, moto_endpoint: str, platform_runner: str, base_image: str
) -> None:
    with ExitStack() as stacks:
        a: Stack = stacks.enter_context(deployed(moto_endpoint, registry))
        b: Stack = stacks.enter_context(deployed(moto_endpoint, registry))
        old = a.publish_runner(platform_runner, "1.0.0")
        sources = {a.name: model(tmp_path / "a", fragile=False), b.name: model(tmp_path / "b", fragile=True)}
        for stack in (a, b):  # each promoted on runner 1.0.0
            stack.runner, commit = old, commit_id()
            built = build(sources[stack.name], stack, commit)
            promoted = validate(
                sources[stack.name], registry, stack, commit, built.exported["IMAGE_DIGEST"], old
            )
            assert promoted.succeeded, promoted.log[-3000:]
        before = {stack.name: (stack.validated_image(), stack.run_revisions()[-1]) for stack in (a, b)}

        new = a.publish_runner(new_runner(tmp_path / "platform", base_image, "1.0.1"), "1.0.1")
        outcomes = {}
        for stack in (a, b):  # what the pipeline started on the promoted commit does
            commit = stack.promoted_commit()
            built = build(sources[stack.name], stack, commit)
            assert built.succeeded and built.exported["RUNNER_IMAGE"] == new, built.log[-3000:]
            outcomes[stack.name] = (
                validate(sources[stack.name], registry, stack, commit, built.exported["IMAGE_DIGEST"], new),
                built.exported["IMAGE_DIGEST"],
            )

    (passed, a_image), (failed, _) = outcomes[a.name], outcomes[b.name]
    assert new != old
    assert passed.succeeded, passed.log[-3000:]
    assert a.validated_image() == a_image != before[a.name][0]
    assert a.run_revisions()[-1]["containerDefinitions"][0]["image"] == a_image
    assert (a.promoted_runner(), b.promoted_runner()) == (new, old)  # what make models shows
    assert (
        not failed.succeeded and "this model was only ever checked on runner 1.0.0, not 1.0.1" in failed.log
    )
    assert (b.validated_image(), b.run_revisions()[-1]) == before[b.name]  # its runs keep their image
    # b: its first promotion only (its candidate's failure is its pipeline execution's mail, PipelineMailer:
    # the candidate mails nothing); a: its two promotions, the second a runner upgrade (a run's success is
    # quiet: the promotion's mail, and the pipeline's outcome mail, tell of it)
    b_subjects = [m["Subject"] for m in b.announcements()]
    assert len(b_subjects) == 1 and b_subjects[0].startswith("Promoted version 1 of "), b_subjects
    by = [m["Subject"].split(" (")[-1] for m in a.announcements()]
    assert by == [f"push by {a.name})", f"runner-upgrade by {a.name})"]
    assert [(p["version"], p["by"]) for p in a.promotions()] == [(1, "push"), (2, "runner-upgrade")]
    assert REPO.exists()
