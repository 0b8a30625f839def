"""The lint gates of `make lint`, one test each, so a finding fails the suite with the linter's output."""

from __future__ import annotations

import subprocess

import pytest
from support import REPO


@pytest.mark.parametrize(
    "target", ["lint-hadolint", "lint-shellcheck", "lint-ruff", "lint-cfn", "lint-checkov", "lint-taskcat"]
)
def test_linter_is_clean(target: str) -> None:
    done = subprocess.run(["make", "-s", target], cwd=REPO, capture_output=True, text=True, check=False)

    assert done.returncode == 0, f"make {target}:\n{done.stdout}{done.stderr}"
