"""The image is generic: another project (its own notebook, check and requirements) builds with the same
Dockerfile and run_notebook.sh, unchanged, and gets the same contract."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import (
    REPO,
    SAMPLE_DATE,
    day_rows,
    docker_run,
    manifest,
    model_repository,
    published,
    writable_dir,
)

OTHER_PROJECT = REPO / "tests" / "fixtures" / "other_project"


@pytest.fixture(scope="module")
def counts_image(build, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The other project's repository: its own files plus the platform's, copied as they are."""
    context = model_repository(OTHER_PROJECT, tmp_path_factory.mktemp("other-repo"), "lake")
    return build(context, "notebook-runner-counts:test", "NOTEBOOK=counts.ipynb")


def run_counts(image: str, out: Path, **env: str):
    base = {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": SAMPLE_DATE}
    return docker_run(image, {**base, **env}, {OTHER_PROJECT / "lake": "/data/lake:ro", out: "/output"})


def test_another_project_builds_and_runs_with_the_same_runner(counts_image: str, tmp_path: Path) -> None:
    out = writable_dir(tmp_path / "out")

    run = run_counts(counts_image, out)

    assert run.code == 0, run.stderr
    assert day_rows(out).to_pylist() == [
        {"user": "ana", "event": "click", "count": 2},
        {"user": "bo", "event": "click", "count": 2},
    ]
    assert "COUNTS CHECK PASSED: 2 rows" in run.stderr
    facts = manifest(out)
    assert (facts["notebook"], facts["table"], facts["rows"]) == ("counts", "notebooks.counts", 2)
    assert run.last_line.endswith("counts.html")


def test_another_projects_check_failure_is_exit_20(counts_image: str, tmp_path: Path) -> None:
    out = writable_dir(tmp_path / "out")

    run = run_counts(counts_image, out, RUN_DATE="2019-07-31")  # no events that day: an empty counts.csv

    assert run.code == 20, run.stderr
    assert "COUNTS CHECK FAILED: 0 rows" in run.last_line
    assert not published(out, "2019-07-31")


def test_each_project_image_has_only_its_own_requirements(counts_image: str, runner_image: str) -> None:
    """tabulate is the counts project's requirement, not usp's; pyarrow is every image's (the platform's)."""
    probe = "import pyarrow\ntry:\n import tabulate\n print('tabulate')\nexcept ImportError:\n print('none')"
    said = []
    for image in (counts_image, runner_image):
        done = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "/opt/venv/bin/python", image, "-c", probe],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        said.append(done.stdout.strip())
    assert said == ["tabulate", "none"]
