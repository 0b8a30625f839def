"""Session fixtures: the runner image (a real docker build), a moto server over HTTP, the data lakes; and the
lanes: each test marked with what it needs beyond this process, found from what it uses."""

from __future__ import annotations

import functools
import gc
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import browser
import pytest
import support
from support import FAST_LANE, REPO, SHARED_DATA, build_model, build_runner, moto_server, writable_dir

sys.path.insert(0, str(REPO))  # the runner package, for the tests that hold its tables to the template

RUNNER_IMAGE = "notebook-runner:test"
TESTS = Path(__file__).resolve().parent

# --- the lanes ------------------------------------------------------------------------------------------
# A test is marked with what it needs beyond this process when it uses one of the conftests' FIXTURES (itself
# or through another fixture), or one of these FUNCTIONS is called by it, by a fixture it uses or by a helper
# of the tests they call; or their code names one of the PROGRAMS. So a test is marked by what it does, not
# by hand. `pytest --fast` (make test-fast) runs those with no marker.
FIXTURES = {
    "base_image": "docker", "platform_runner": "docker", "runner_image": "docker", "build": "docker",
    "registry": "docker", "stack": "docker", "moto_endpoint": "aws", "lint_tools": "lint",
}  # fmt: skip
FUNCTIONS = {  # as written, not their decorators' wrappers (contextmanager)
    support.docker_run: "docker", support.build_runner: "docker", support.build_model: "docker",
    support.local_registry: "docker", support.moto_server: "aws", browser.browser: "browser",
    browser.chromium: "browser",
}  # fmt: skip
UNWRAPPED = {inspect.unwrap(function): marker for function, marker in FUNCTIONS.items()}
PROGRAMS = {"docker": "docker", "docker-registry": "docker", "dockerd": "docker", "chromium": "browser"}
LANES = ("docker", "aws", "browser", "lint")


def codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A function's code and that of each function, lambda and comprehension defined in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from codes(const)


@functools.cache
def in_tests(file: str) -> bool:
    return Path(file).resolve().is_relative_to(TESTS)


def tests_own(obj: Any) -> bool:
    """Whether a function, class or module is the tests' own (defined under tests/)."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    code = getattr(obj, "__code__", None)
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    file = code.co_filename if code else getattr(obj, "__file__", None) or getattr(module, "__file__", None)
    return bool(file) and in_tests(file)


@functools.cache
def refers(obj: Any) -> tuple[frozenset[str], tuple[Any, ...]]:
    """What one function or class refers to: the PROGRAMS named in its code, and the tests' own functions
    and classes it names, directly or as an attribute of one of the tests' modules."""
    if isinstance(obj, type):
        return frozenset(), tuple(v for v in vars(obj).values() if inspect.isfunction(v))
    if not hasattr(obj, "__code__"):
        return frozenset(), ()
    referred = {n for code in codes(obj.__code__) for n in code.co_names}
    strings = {c for code in codes(obj.__code__) for c in code.co_consts if isinstance(c, str)}
    modules = [m for m in map(obj.__globals__.get, referred) if isinstance(m, types.ModuleType)]
    callees = [
        scope[n]
        for scope in [obj.__globals__, *(vars(m) for m in modules if tests_own(m))]
        for n in referred
        if callable(scope.get(n)) and tests_own(scope[n])
    ]
    return frozenset(PROGRAMS[s] for s in strings if s in PROGRAMS), tuple(callees)


def reached(roots: Iterable[Any]) -> tuple[list[Any], set[str]]:
    """The tests' own functions and classes the roots call, recursively, and the markers their PROGRAMS
    need."""
    found: list[Any] = []
    markers: set[str] = set()
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        obj = inspect.unwrap(todo.pop())
        if id(obj) not in seen:
            seen.add(id(obj))
            found.append(obj)
            programs, callees = refers(obj)
            markers |= programs
            todo += callees
    return found, markers


def needs(item: pytest.Item) -> set[str]:
    """The lanes' markers this test needs, from the conftests' fixtures it uses and what it and its
    fixtures call."""
    info = getattr(item, "_fixtureinfo", None)
    defs = [d for ds in (info.name2fixturedefs.values() if info else []) for d in ds]
    markers = {
        FIXTURES[d.argname]
        for d in defs
        if d.argname in FIXTURES and Path(inspect.getfile(d.func)).name == "conftest.py" and tests_own(d.func)
    }
    functions, programs = reached([getattr(item, "obj", None), *(d.func for d in defs)])
    return markers | programs | {UNWRAPPED[f] for f in functions if f in UNWRAPPED}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast", action="store_true",
        help="the fast lane (make test-fast): only the tests that need no Docker, no moto server, no browser "
        "and no linter (marked by tests/conftest.py from what they use); in it, docker and chromium are not "
        "found",
    )  # fmt: skip
    parser.addoption(
        "--lanes", action="store_true",
        help="print each collected test's lanes (docker, aws, browser, lint: what it needs) and whether it "
        "runs (with --fast), e.g. with --collect-only -q",
    )  # fmt: skip


SHIM = """#!/bin/sh
echo '{program}: not in the fast lane (pytest --fast): the test running it needs the {marker} marker, which \
tests/conftest.py gives a test from the fixtures and functions it uses (FIXTURES, FUNCTIONS, PROGRAMS)' >&2
exit 127
"""


def pytest_configure(config: pytest.Config) -> None:
    """In the fast lane, a test that was not marked but starts docker, dockerd, docker-registry, chromium or
    a moto server fails saying so, whether this machine has them or not."""
    if not config.getoption("--fast"):
        return
    shims = Path(tempfile.mkdtemp(prefix="fast-lane-"))
    config.add_cleanup(lambda: shutil.rmtree(shims, ignore_errors=True))
    for program, marker in PROGRAMS.items():
        (shims / program).write_text(SHIM.format(program=program, marker=marker))
        (shims / program).chmod(0o755)
    os.environ["PATH"] = f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["DOCKER_HOST"] = f"unix://{shims}/no-docker-in-the-fast-lane.sock"
    os.environ["CHROMIUM"] = str(shims / "chromium")
    os.environ[FAST_LANE] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in sorted(needs(item)):
            item.add_marker(marker)
    fast = config.getoption("--fast")
    lanes = {id(item): sorted({m.name for m in item.iter_markers()} & set(LANES)) for item in items}
    if config.getoption("--lanes"):
        for item in items:
            kept = "deselected" if fast and lanes[id(item)] else "selected"
            print(f"lanes {item.nodeid} {','.join(lanes[id(item)]) or '-'} {kept}")
    if fast:
        config.hook.pytest_deselected(items=[item for item in items if lanes[id(item)]])
        items[:] = [item for item in items if not lanes[id(item)]]
    heaviest_modules_first(items, lanes)


# With workers (make test runs pytest -n, one module to a worker at a time), the modules of the slowest
# kind go first, the in-process ones last: the last minutes are spent on milliseconds, not on one pipeline
# emulation running alone. A module's kind is its heaviest test's: it uses one of EMULATIONS (a pipeline
# stand-in: a registry, a stack in moto, pushes), else a lane's marker in HEAVIEST order (the linters make
# their venvs on a fresh clone), else none.
EMULATIONS = {"registry", "stack"}
HEAVIEST = ("docker", "lint", "aws", "browser")
assert sorted(HEAVIEST) == sorted(LANES), "HEAVIEST orders the lanes: each of LANES, once"


def heaviest_modules_first(items: list[pytest.Item], lanes: dict[int, list[str]]) -> None:
    def kind(item: pytest.Item) -> int:
        if EMULATIONS & set(getattr(item, "fixturenames", ())):
            return 0
        return min((1 + HEAVIEST.index(lane) for lane in lanes[id(item)]), default=1 + len(HEAVIEST))

    modules: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        modules[module] = min(modules.get(module, kind(item)), kind(item))
    items.sort(key=lambda item: modules[item.nodeid.split("::", 1)[0]])  # stable: a module's order kept


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


@pytest.fixture(autouse=True)
def collector_back_on() -> Iterator[None]:
    """A run's finish turns Python's collector off for the rest of its process (run.py: the image's runner
    then leaves with os._exit); a test that ran one in process gets it back."""
    yield
    gc.enable()


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


@pytest.fixture(scope="session")
def lint_tools() -> None:
    """The linters' venvs, as `make lint` sets them up (a fresh machine has none)."""
    targets = ["venv", ".venv-checkov/.installed", ".venv-taskcat/.installed"]
    done = subprocess.run(["make", "-s", *targets], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"make {' '.join(targets)}:\n{done.stdout}{done.stderr}"
