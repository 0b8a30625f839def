"""The lint gates of `make lint`, one test each, so a finding fails the suite with the linter's output; and
the suite's own: each test is in the lanes of what it uses (tests/conftest.py), so `make test-fast` runs
no test that needs Docker, a moto server, a browser or a linter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import REPO


@pytest.mark.parametrize(
    "target", ["lint-hadolint", "lint-shellcheck", "lint-ruff", "lint-cfn", "lint-checkov", "lint-taskcat"]
)
def test_linter_is_clean(lint_tools: None, target: str) -> None:
    done = subprocess.run(["make", "-s", target], cwd=REPO, capture_output=True, text=True, check=False)

    assert done.returncode == 0, f"make {target}:\n{done.stdout}{done.stderr}"


# Files none of whose tests is marked by hand, each with the lanes its tests are in by what they use.
LANES = {
    # the runner_image fixture, and docker_run through the module's helper run_notebook
    "tests/runner/test_runner_failures.py": {"docker"},
    # run_notebook, a helper imported from test_runner_failures
    "tests/runner/test_runner_secrets.py": {"docker"},
    # a moto server started by a fixture of the module's own (support.moto_server)
    "tests/table/test_glue_table.py": {"aws"},
    # moto in this process (mock_aws) is no server
    "tests/runner/test_config.py": set(),
    "tests/notebook/test_check.py": set(),
    # the lint_tools fixture
    "tests/test_lint.py::test_linter_is_clean": {"lint"},
}


def lanes(*args: str) -> dict[str, tuple[set[str], str]]:
    """Each test pytest collects with these arguments: its lanes and whether it runs (conftest.py's
    --lanes)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--lanes", *args],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: every test deselected
    found = [line[6:].rsplit(" ", 2) for line in done.stdout.splitlines() if line.startswith("lanes ")]
    return {node: (set(marked.split(",")) - {"-"}, kept) for node, marked, kept in found}


def test_each_test_is_in_the_lanes_of_what_it_uses_and_the_fast_lane_takes_none_of_them() -> None:
    found = lanes("--fast", *LANES)

    for prefix, expected in LANES.items():
        tests = {node: marked for node, (marked, _) in found.items() if node.startswith(prefix)}
        assert tests, f"no test collected from {prefix}"
        assert {node: marked for node, marked in tests.items() if marked != expected} == {}
    assert {node for node, (marked, kept) in found.items() if kept == "selected"} == {
        node for node, (marked, _) in found.items() if not marked
    }
