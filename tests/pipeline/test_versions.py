"""Every promoted image is a version (issue 18): three pushes make three versions, `make versions` lists
them, `make rollback` and `make promote` move the daily runs between them through the promote project (the
same trusted path as a validated push), and what was never validated, or was built on another runner major,
is refused.

The stack is moto behind the IAM proxy (validation_stack.deployed); each push is the template's inline
build, validation and promotion (the pipeline's stages) of a commit of a model repository. The make targets
run with an engineer's key and the real AWS CLI, CodeBuild's StartBuild of the promote project stood in for by
harness/engineer-aws (the template's buildspec, run with the promote role's key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from codebuild import HARNESS_BIN, Build
from support import AWS_CLI, REPO
from validation_stack import (
    REGION,
    Stack,
    daily_run,
    execution_id,
    promote_env,
    promote_version,
    push_commit,
    register,
)

from runner.locations import Location
from runner.report import console_link

pytestmark = pytest.mark.docker
MODEL = "hotel-profiling/usp-model"  # the GITHUB_REPOSITORY the harness's projects carry
# Each push keeps the accommodations with more than this many USPs: three images, three row counts.
PUSHES = (0, 1, 2)


@dataclass
class Pushed:
    commit: str
    image: str


def with_filter(model: Path, more_than: int) -> None:
    """The model's notebook, keeping only the accommodations with more than `more_than` USPs."""
    notebook = model / "usp.ipynb"
    cells = json.loads(notebook.read_text())
    for cell in cells["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "count_distinct" in source:
            kept = f'\ncounts = counts.filter(pc.greater(counts["usps"], {more_than}))  # push filter\n'
            source = source.split("\ncounts = counts.filter(")[0].rstrip("\n") + kept
            cell["source"] = source.splitlines(keepends=True)
    notebook.write_text(json.dumps(cells))


def push_filtered(model: Path, stack: Stack, more_than: int, release: bool = True) -> tuple[Pushed, Build]:
    """One more push of the model (its notebook keeping the accommodations with more than `more_than` USPs):
    built and validated, then promoted by the Promote stage if `release` (a held release is not, yet)."""
    with_filter(model, more_than)
    pushed = push_commit(model, stack, promote=release)
    return Pushed(pushed.commit, pushed.digest), pushed.validation


@pytest.fixture(scope="module")
def pushes(model: Path, registry: str, stack: Stack) -> list[Pushed]:
    """Three pushes, each built, validated and promoted as the pipeline does."""
    made = []
    for more_than in PUSHES:
        pushed, released = push_filtered(model, stack, more_than)
        assert released.succeeded, released.log[-3000:]
        made.append(pushed)
    return made


@contextmanager
def crafted(stack: Stack, *records: dict) -> Iterator[None]:
    """Version records written into the stack's bucket for the block (as only a validation could: the
    tests' own key), then removed."""
    s3, bucket = stack.client("s3"), stack.values["VersionsBucket"]
    keys = [f"versions/{record['version']:06d}.json" for record in records]
    for key, record in zip(keys, records, strict=True):
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record))
    try:
        yield
    finally:
        for key in keys:
            s3.delete_object(Bucket=bucket, Key=key)


def running_image(stack: Stack) -> str:
    return stack.run_revisions()[-1]["containerDefinitions"][0]["image"]


def make(stack: Stack, tmp_path: Path, target: str, who: str = "alice", **variables: str):
    """`make TARGET` as an engineer runs it (their key, the real AWS CLI), CodeBuild stood in for."""
    builds = tmp_path / "builds"
    builds.mkdir(exist_ok=True)
    outputs = {
        "VersionsBucketName": stack.values["VersionsBucket"], "RunTaskFamily": f"{stack.name}-run",
        "PromoteProjectName": f"{stack.name}-promote", "PipelineName": stack.name,
    }  # fmt: skip
    project = {"name": f"{stack.name}-promote", "env": {
        **promote_env(stack), "AWS_ACCESS_KEY_ID": stack.promote_key, "AWS_SECRET_ACCESS_KEY": "promote",
        "AWS_ENDPOINT_URL": stack.proxy}}  # fmt: skip
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "AWS_", "STACK_")) and k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    }  # fmt: skip
    env |= {
        "PATH": f"{Path(sys.executable).parent}:{env['PATH']}",
        "AWS_CLI": str(HARNESS_BIN / "engineer-aws"), "HARNESS_REAL_AWS": AWS_CLI,
        "HARNESS_BUILDS": str(builds), "HARNESS_OUTPUTS": json.dumps(outputs), "HARNESS_INITIATOR": who,
        "HARNESS_PROJECT_ENV": json.dumps(project), "AWS_ENDPOINT_URL": stack.proxy,
        "AWS_ACCESS_KEY_ID": stack.engineer_key, "AWS_SECRET_ACCESS_KEY": "engineer",
        "AWS_DEFAULT_REGION": REGION, "POLL_SECONDS": "0",
    }  # fmt: skip
    args = [f"{k}={v}" for k, v in {"STACK_NAME": stack.name, "GITHUB_REPO": MODEL, **variables}.items()]
    return subprocess.run(["make", "-s", target, *args], cwd=REPO, env=env, capture_output=True, text=True)


def versions_listed(stack: Stack, tmp_path: Path) -> list[list[str]]:
    done = make(stack, tmp_path, "versions")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "VERSION" in line and "COMMIT" in line)
    return [
        line.split()
        for line in lines[header + 1 :]
        if line.strip() and not line.startswith(("Back", "Forward", "Each"))
    ]


def test_three_pushes_make_three_versions_each_recorded_promoted_and_mailed(
    pushes: list[Pushed], stack: Stack
) -> None:
    versions = stack.versions()
    assert [(v["version"], v["commit"], v["image"]) for v in versions] == [
        (n, p.commit, p.image) for n, p in enumerate(pushes, 1)
    ]
    assert len({p.image for p in pushes}) == 3
    for v in versions:
        assert v["runner"] == stack.runner and v["runner_version"] == "1.0.0"
        assert v["report"].startswith(f"s3://{stack.values['OutputBucket']}/validation/{v['commit']}/_runs/")
    assert [(p["version"], p["by"]) for p in stack.promotions()] == [(1, "push"), (2, "push"), (3, "push")]
    assert running_image(stack) == pushes[-1].image == stack.validated_image()
    subjects = [m.get("Subject", "") for m in stack.announcements()]
    assert any(s.startswith("Promoted version 3 of hotel-profiling/usp-model (push") for s in subjects), (
        subjects
    )


def test_make_versions_lists_them_newest_first_marking_the_one_the_runs_use(
    pushes: list[Pushed], stack: Stack, tmp_path: Path
) -> None:
    listed = versions_listed(stack, tmp_path)
    assert [row[:3] for row in listed] == [
        ["*", "3", pushes[2].commit[:12]],
        ["2", pushes[1].commit[:12], "1.0.0"],
        ["1", pushes[0].commit[:12], "1.0.0"],
    ]


def test_rollback_to_the_first_moves_the_daily_runs_to_its_digest_and_mails_who_did_it(
    pushes: list[Pushed], stack: Stack, tmp_path: Path
) -> None:
    stack.announcements()  # what the pushes mailed
    done = make(stack, tmp_path, "rollback", TO="1")
    assert done.returncode == 0, done.stderr
    assert running_image(stack) == pushes[0].image == stack.validated_image()
    assert stack.promoted_commit() == pushes[0].commit
    last = stack.promotions()[-1]
    assert (last["version"], last["by"], last["who"], last["replaced"]) == (1, "rollback", "alice", 3)
    (mail,) = stack.announcements()
    assert mail["Subject"] == "Promoted version 1 of hotel-profiling/usp-model (rollback by alice)"
    assert "now start version 1 (rollback, by alice" in mail["Message"]
    assert "It replaces version 3" in mail["Message"]
    report = stack.versions()[0]["report"]
    assert f"  report    {report}/\n            {console_link(Location(report), REGION)}\n" in mail["Message"]
    assert f"Undo: make promote GITHUB_REPO={MODEL} TO=3" in mail["Message"]  # forward again: not a rollback
    assert versions_listed(stack, tmp_path)[2][:2] == ["*", "1"]
    # the next daily run, as the schedule starts it, runs the first digest and publishes its rows
    run = daily_run(stack)
    assert run.code == 0, run.log[-3000:]
    assert (run.image, run.rows) == (pushes[0].image, 1765)
    # and forward again, by commit
    done = make(stack, tmp_path, "promote", TO=pushes[2].commit[:10])
    assert done.returncode == 0, done.stderr
    assert running_image(stack) == pushes[2].image
    assert stack.promotions()[-1]["by"] == "promote"
    assert f"Undo: make rollback GITHUB_REPO={MODEL} TO=1" in stack.announcements()[-1]["Message"]


@pytest.mark.parametrize(
    ("target", "to", "said"),
    [
        ("rollback", "sha256:" + "0" * 64, "is no validated version of hotel-profiling/usp-model"),
        ("promote", "deadbeefcafe", "is no validated version of hotel-profiling/usp-model"),
        ("rollback", "3", "is already the one the daily runs use"),
    ],
)
def test_what_was_never_validated_is_refused_and_nothing_moves(
    pushes: list[Pushed], stack: Stack, tmp_path: Path, target: str, to: str, said: str
) -> None:
    before, revisions = running_image(stack), len(stack.run_revisions())
    done = make(stack, tmp_path, target, TO=to)
    assert done.returncode != 0
    assert said in done.stderr, done.stderr
    assert (running_image(stack), len(stack.run_revisions())) == (before, revisions)


def test_a_version_built_on_another_runner_major_is_refused(
    pushes: list[Pushed], stack: Stack, tmp_path: Path
) -> None:
    image = pushes[0].image[:-64] + "d" * 64  # an image of its own, in the stack's repository
    record = {**stack.versions()[0], "version": 99, "runner_version": "2.0.0", "image": image}
    with crafted(stack, record):
        done = make(stack, tmp_path, "promote", TO="99")
    assert done.returncode != 0
    assert "was built on runner 2.0.0, and this stack follows runner major 1" in done.stderr, done.stderr


def test_a_digest_or_a_commit_prefix_naming_more_than_one_version_is_refused(
    pushes: list[Pushed], stack: Stack, tmp_path: Path
) -> None:
    """A commit validated twice is one image and two versions; a commit id's first digits may be another's
    (a model's author can make one): neither picks a version silently."""
    first = stack.versions()[0]
    twin = {**first, "version": 97}
    lookalike = {**first, "version": 96, "commit": first["commit"][:7] + "f" * 33,
                 "image": first["image"][:-64] + "e" * 64}  # fmt: skip
    with crafted(stack, twin, lookalike):
        by_digest = make(stack, tmp_path, "rollback", TO=first["image"].split("@")[1])
        by_prefix = make(stack, tmp_path, "rollback", TO=first["commit"][:7])
    assert by_digest.returncode != 0
    assert "is the image of versions 1, 97: give the version number" in by_digest.stderr, by_digest.stderr
    assert by_prefix.returncode != 0
    assert "is the start of more than one commit" in by_prefix.stderr, by_prefix.stderr


def test_a_rollback_goes_only_to_a_version_promoted_before(
    pushes: list[Pushed], stack: Stack, tmp_path: Path
) -> None:
    never = {**stack.versions()[0], "version": 98, "image": pushes[0].image[:-64] + "d" * 64}
    with crafted(stack, never):
        done = make(stack, tmp_path, "rollback", TO="98")
    assert done.returncode != 0
    assert "was never promoted, so it is nothing to roll back to" in done.stderr, done.stderr


def test_a_held_release_is_mailed_with_its_report_and_comparison_and_promoted_only_once_approved(
    pushes: list[Pushed], model: Path, registry: str, stack: Stack
) -> None:
    stack.values["ReleaseApproval"] = "required"
    stack.announcements()
    before = running_image(stack)
    try:
        held, validated = push_filtered(model, stack, 3, release=False)  # the pipeline waits in Approve
    finally:
        stack.values["ReleaseApproval"] = "none"
    assert validated.succeeded, validated.log[-3000:]
    version = int(validated.exported["VERSION"])
    (request,) = stack.announcements()
    assert request["Subject"] == f"Approve version {version} of {MODEL}? (commit {held.commit[:12]})"
    message = request["Message"]
    assert (
        f"Version {version} of {MODEL} (commit {held.commit[:12]}) passed its validation and waits" in message
    )
    record = stack.versions()[-1]
    assert (
        f"report    {record['report']}/\n            {console_link(Location(record['report']), REGION)}\n"
        in message
    )
    execution = execution_id(held.commit)
    assert (
        f"(or on the Approve stage of pipeline execution {execution}: https://{REGION}.console.aws.amazon.com/"
        f"codesuite/codepipeline/pipelines/{stack.name}/executions/{execution}/timeline?region={REGION})."
    ) in message  # PipelineMailer's link to an execution (test_alerts.py: one shape)
    assert "Compared with what this stack's daily runs published for 2019-08-01:" in message
    assert record["comparison"]["summary"][0] in message  # rows in production, in the candidate, ...
    assert f"Approve: make approve GITHUB_REPO={MODEL} RELEASE={version}" in message
    assert f"Reject:  make reject GITHUB_REPO={MODEL} RELEASE={version}" in message
    # held: rejected or expired, the Promote stage never runs, and nothing moves
    assert running_image(stack) == before
    # approved: the Promote stage runs, as for any push
    promoted = promote_version(stack, held.image, validated.exported["PROMOTED_BY"])
    assert promoted.succeeded, promoted.log[-3000:]
    assert running_image(stack) == held.image


def test_a_push_that_changes_productions_rows_past_the_limit_is_not_promoted_until_accepted(
    pushes: list[Pushed], model: Path, registry: str, stack: Stack, tmp_path: Path
) -> None:
    """Production holds the first version's 1765 rows of 2019-08-01 (the daily run above); a candidate that
    keeps fewer accommodations removes more than the stack's limit of them."""
    stack.values |= {"MaxChangedShare": "0.1", "CompareKeyColumns": "accommodation_id"}
    nothing = f"{registry}/notebook-runner-ci@sha256:{'0' * 64}"
    register(stack, "ValidationTaskDefinition", f"{stack.name}-validate", nothing)  # the stack's update
    stack.announcements()
    before = running_image(stack)
    try:
        pushed, released = push_filtered(model, stack, 5)
    finally:
        stack.values |= {"MaxChangedShare": "", "CompareKeyColumns": ""}
    version = stack.versions()[-1]
    assert version["image"] == pushed.image  # validated, recorded ...
    comparison = version["comparison"]
    assert comparison["rows"]["production"] == 1765 and comparison["removed"] > 0.1 * 1765
    assert [c["figure"] for c in comparison["crossed"]] == ["changed_share"]
    assert not released.succeeded  # ... and not promoted
    assert "is NOT promoted: its output differs from what production published" in released.log
    assert running_image(stack) == before
    (refusal,) = stack.announcements()
    n = version["version"]
    assert (
        refusal["Subject"]
        == f"NOT promoted: version {n} of {MODEL} changed production's output (changed_share)"
    )
    assert f"changed_share {comparison['changed_share']} > limit 0.1" in refusal["Message"]
    assert f"make promote GITHUB_REPO={MODEL} TO={n} ACCEPT=changed_share" in refusal["Message"]
    assert (
        f"its report: {version['report']}/ ({console_link(Location(version['report']), REGION)})"
        in (refusal["Message"])
    )

    done = make(stack, tmp_path, "promote", TO=str(n))  # not without the acknowledgement
    assert done.returncode != 0 and "ACCEPT=changed_share" in done.stderr, done.stderr
    assert running_image(stack) == before
    done = make(stack, tmp_path, "promote", TO=str(n), ACCEPT="changed_share")
    assert done.returncode == 0, done.stderr
    assert running_image(stack) == pushed.image
    last = stack.promotions()[-1]
    assert (last["by"], last["who"], last["accepted"]) == ("promote", "alice", ["changed_share"])
    assert "Accepted by alice: changed_share." in stack.announcements()[-1]["Message"]
