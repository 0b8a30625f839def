"""A model repository through the pipeline (issue 17): only the model in it, its image built with the runner's
recipe FROM the platform's runner by digest, and the validation's layer check refusing any candidate that is
not the runner's layers plus layers under /opt/venv and /app.

The candidates the layer check must refuse are built as a compromised build would make them (a Dockerfile of
their own, FROM the runner), pushed to the model's repository and handed to the template's validation with
the runner's digest: each is refused before it runs, and nothing is promoted. A model repository carrying a
Dockerfile that would change the runner builds, with the recipe, an image in which the runner is untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from validation_stack import REPOSITORY, Promoted, Stack, build, commit_id, push_commit, tag_digest, validate

pytestmark = pytest.mark.docker
RUNNER_DIR = "/opt/notebook-runner"


def push(registry: str, runner: str, dockerfile: str, context: Path, tag: str) -> str:
    """A candidate built from `dockerfile` (FROM the runner), pushed to the model's repository."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {runner}\n{dockerfile}")
    image = f"{registry}/{REPOSITORY}:{tag}"
    for command in (["docker", "build", "-q", "-t", image, str(context)], ["docker", "push", "-q", image]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    return f"{registry}/{REPOSITORY}@{tag_digest(registry, tag)}"


@pytest.fixture(scope="module")
def promoted(model: Path, stack: Stack) -> Promoted:
    return push_commit(model, stack)


def test_a_model_repository_with_no_platform_file_is_built_on_the_runner_validated_and_promoted(
    model: Path, promoted: Promoted, stack: Stack
) -> None:
    assert [p.name for p in model.glob("*.ipynb")] == ["usp.ipynb"]  # the harness stack's NotebookPath
    assert not [
        p for p in ("Dockerfile", "run_notebook.sh", "runner", "buildspec.yml") if (model / p).exists()
    ]
    assert "is ignored" not in promoted.build.log
    assert promoted.validation.succeeded, promoted.validation.log[-4000:]
    assert "the layer check passed" in promoted.validation.log
    assert (
        "succeeded: published 1765 rows" in promoted.validation.log
    )  # its own notebook, not usp's 3000 rows
    assert stack.validated_image() == promoted.digest
    assert stack.promoted_commit() == promoted.commit


# Each builds, FROM the promoted model image (which would pass its validation run), what no recipe of the
# runner's builds.
REFUSED = {
    "a layer changes the runner's entrypoint script": (
        "RUN echo 'echo owned' >> /opt/notebook-runner/run_notebook.sh",
        "changes /opt/notebook-runner",
    ),
    "a layer deletes a runner module (a whiteout)": (
        "RUN rm /opt/notebook-runner/runner/publish.py",
        "changes /opt",
    ),
    "a layer adds a file to /etc": ("RUN echo x > /etc/evil", "changes /etc"),
    "/opt/venv made a link to the runner, then written through": (
        "RUN rm -rf /opt/venv && ln -s /opt/notebook-runner /opt/venv",
        "makes /opt/venv something other than a folder",
    ),
    "another entrypoint": ('ENTRYPOINT ["/bin/sh"]', "its Entrypoint is"),
    "another user": ("USER 10002", "its User is"),
    "the runner's PATH changed": (
        "ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "its environment differs",
    ),
}


@pytest.mark.parametrize("dockerfile, why", REFUSED.values(), ids=REFUSED.keys())
def test_the_layer_check_refuses_a_candidate_no_recipe_of_the_runner_built_before_it_runs(
    tmp_path: Path, registry: str, stack: Stack, promoted: Promoted, dockerfile: str, why: str
) -> None:
    before = (stack.validated_image(), tag_digest(registry, "validated"))
    commit = commit_id()
    candidate = push(registry, promoted.digest, dockerfile, tmp_path / "evil", commit)

    validation = validate(tmp_path, registry, stack, commit, candidate, stack.runner)

    assert not validation.succeeded
    assert validation.failed_phase == "pre_build"  # before the candidate ran
    assert "the layer check refused" in validation.log and why in validation.log, validation.log[-3000:]
    assert "is not promoted" in validation.log
    assert (stack.validated_image(), tag_digest(registry, "validated")) == before


def test_a_candidate_on_another_base_than_the_runner_is_refused(
    tmp_path: Path, registry: str, stack: Stack, base_image: str
) -> None:
    commit = commit_id()
    candidate = push(registry, base_image, "RUN echo x > /tmp/x", tmp_path / "other", commit)

    validation = validate(tmp_path, registry, stack, commit, candidate, stack.runner)

    assert not validation.succeeded and validation.failed_phase == "pre_build"
    assert "layers are not the runner's" in validation.log, validation.log[-3000:]


def test_a_dockerfile_in_the_model_repository_is_ignored_and_said_so(
    model: Path, tmp_path: Path, registry: str, stack: Stack
) -> None:
    """A model repository that carries a Dockerfile (and a buildspec.yml) changing the runner: the recipe
    builds it, the log says both are ignored, and the image's runner is the runner's byte for byte."""
    source = tmp_path / "src"
    subprocess.run(["cp", "-a", f"{model}/.", str(source)], check=True)
    (source / "Dockerfile").write_text(
        "FROM notebook-runner:anything\nRUN echo 'echo owned' >> /opt/notebook-runner/run_notebook.sh\n"
    )
    (source / "buildspec.yml").write_text("version: 0.2\nphases: {build: {commands: [echo owned]}}\n")
    commit = commit_id()

    built = build(source, stack, commit)
    validation = validate(source, registry, stack, commit, built.exported["IMAGE_DIGEST"], stack.runner)

    assert built.succeeded, built.log[-4000:]
    assert (
        "the model's Dockerfile is ignored" in built.log
        and "the model's buildspec.yml is ignored" in built.log
    )
    assert "owned" not in built.log
    assert validation.succeeded, validation.log[-4000:]
    script = [
        subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "/bin/cat", image, f"{RUNNER_DIR}/run_notebook.sh"],
            capture_output=True, text=True, check=True,
        ).stdout
        for image in (built.exported["IMAGE_DIGEST"], stack.runner)
    ]  # fmt: skip
    assert script[0] == script[1] and "owned" not in script[0]
