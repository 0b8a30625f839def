"""A model repository `make new-model` wrote, run from the platform's checkout with `make run MODEL_DIR=`
(issue 17): built with the runner's recipe, run on its own copy of the sample, published to its own table in
its own output folder, with the same last line and report as the example model's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import REPO, env_with

pytestmark = pytest.mark.docker
IMAGE = "notebook-model:test-new-model"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900, check=False, env=env_with(MAKEFLAGS=""))  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Path:
    root = tmp_path_factory.mktemp("new-model") / "hotel-usp"
    done = make("new-model", f"DIR={root}")
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def ran(model: Path, base_image: str) -> subprocess.CompletedProcess[str]:
    command = ["make", "--no-print-directory", "run", f"MODEL_DIR={model}", f"IMAGE={IMAGE}"]
    env = env_with(MAKEFLAGS="", BASE_IMAGE=base_image)
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False, env=env
    )


def test_make_run_builds_and_runs_the_new_model_into_its_own_table(
    ran: subprocess.CompletedProcess[str], model: Path
) -> None:
    last = [line for line in ran.stderr.splitlines() if line.startswith("notebook-runner: run ")][-1]

    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert " of hotel_usp for 2019-08-01 succeeded: published 1765 rows of 2019-08-01 to the table " in last
    assert f"notebooks.hotel_usp at {model}/output " in last
    assert f"history: make history DATE=2019-08-01 MODEL_DIR={model}" in ran.stdout
    reports = list((model / "output" / "_runs" / "date=2019-08-01").glob("*/hotel_usp.html"))
    assert len(reports) == 1 and "VALIDATION PASSED" in (reports[0].parent / "check.txt").read_text()


def test_the_models_image_holds_its_files_only_in_app(ran: subprocess.CompletedProcess[str]) -> None:
    listing = subprocess.run(["docker", "run", "--rm", "--entrypoint", "/bin/ls", IMAGE, "-A", "/app"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip

    assert sorted(listing) == ["check.py", "hotel_usp.ipynb", "requirements.txt", "settings.yml"]


def test_make_history_reads_the_models_table(ran: subprocess.CompletedProcess[str], model: Path) -> None:
    done = make("history", "DATE=2019-08-01", f"MODEL_DIR={model}", f"IMAGE={IMAGE}")

    assert done.returncode == 0, done.stderr
    assert "1765 rows" in done.stdout and "check: VALIDATION PASSED" in done.stdout
