"""Session fixtures: the runner image (a real docker build), a moto server over HTTP, the data lakes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO, SHARED_DATA, build_model, build_runner, moto_server, writable_dir

sys.path.insert(0, str(REPO))  # the runner package, for the tests that hold its tables to the template

RUNNER_IMAGE = "notebook-runner:test"


def docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def base_image() -> str:
    """The image to build on: BASE_IMAGE (make test sets it), else what scripts/base-image.sh picks."""
    if not docker_answers():
        pytest.fail("no Docker engine answers: run `make test`, which installs and starts one")
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    done = subprocess.run(["scripts/base-image.sh"], cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.strip()


TEST_RUNNER = "notebook-runner:test-runner"


@pytest.fixture(scope="session")
def platform_runner(base_image: str) -> str:
    """The runner image of this checkout (the platform's, with no model in /app)."""
    return build_runner(TEST_RUNNER, base_image)


@pytest.fixture(scope="session")
def runner_image(platform_runner: str) -> str:
    """The usp model image: this repository's example model built on the runner with its recipe;
    TEST_RUNNER_IMAGE names another (an earlier commit's image, to show an adversarial test failing there)."""
    if os.environ.get("TEST_RUNNER_IMAGE"):
        return os.environ["TEST_RUNNER_IMAGE"]
    return build_model(REPO, RUNNER_IMAGE, platform_runner, "GIT_COMMIT=test")


@pytest.fixture(scope="session")
def build(platform_runner: str):
    """Build another model's context on the same runner: build(context, tag, *build_args)."""

    def _build(context: Path, tag: str, *build_args: str) -> str:
        return build_model(context, tag, platform_runner, *build_args)

    return _build


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A local OUTPUT_URI the container may write, mounted at /output."""
    return writable_dir(tmp_path / "out")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1, standing in for S3, SNS, SQS and SSM over real HTTP."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def full_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The team's full 2019-08-01 snapshot laid out as the data lake (only where ../shared has it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the full snapshot is not on this machine ({SHARED_DATA})")
    lake = tmp_path_factory.mktemp("full-lake")
    for table in ("accommodation", "unique_selling_points"):
        part = lake / table / "date=2019-08-01"
        part.mkdir(parents=True)
        shutil.copyfile(SHARED_DATA / f"{table}.json", part / f"{table}.json")
    for path in [lake, *lake.rglob("*")]:  # readable by the container's user
        path.chmod(0o755 if path.is_dir() else 0o644)
    return lake
