"""`make runs` (issue 19): a model's run history, one line a run, from the manifests its runs stored.

In process: scripts/history.py on a week of runs written as manifest files (each failure class of
runner/exits.py, a rerun, a stopped run, an older runner's manifest, an unreadable one). Then `make runs` as a
subprocess: on a local OUTPUT_URI, its refusals before any AWS call (a stand-in `aws`, fake_aws.py), and once
on S3 through the real AWS CLI against moto behind the IAM proxy, where a manifest stored before the window is
neither listed nor downloaded."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import cfn
import fake_aws
import pytest
from codebuild import HARNESS_BIN
from support import AWS_CLI, REPO, Reply, proxy
from validation_stack import REGION, Stack, deployed

from runner.exits import EXITS, OK, STOPPED


def load_history() -> ModuleType:
    spec = importlib.util.spec_from_file_location("history", REPO / "scripts" / "history.py")
    assert spec and spec.loader
    sys.modules["history"] = module = importlib.util.module_from_spec(
        spec
    )  # a dataclass's module is looked up
    spec.loader.exec_module(module)
    return module


history = load_history()
NOW = time.time()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "abcdef0123456789" * 4
FAILURES = [e for e in EXITS.values() if e is not OK]  # one a day: 2019-08-01, -02, ...
NO_ROWS = "-"


def step(code: int) -> str | None:
    """The step a run of that exit code failed at, as test data ("stopped" for a stop, as the runner says)."""
    return None if code == OK.code else "stopped" if code == STOPPED.code else f"step{code}"


def manifest(date: str, run_id: str, code: int, started: str, **fields: Any) -> dict[str, Any]:
    """A manifest as runner/run.py writes it (commit and runner_version included)."""
    exit = EXITS[code]
    status = "succeeded" if exit is OK else "stopped" if exit is STOPPED else "failed"
    report = f"s3://out/daily/_runs/date={date}/{run_id}"
    return {
        "run_id": run_id, "date": date, "image": f"acct.dkr.ecr/usp@{DIGEST}", "notebook": "usp",
        "status": status, "exit_code": exit.code, "meaning": exit.meaning, "failed_step": step(code),
        "message": exit.advice, "started_at": started, "duration_seconds": 61.4,
        "rows": 3000 if exit is OK else None, "report_uri": report, "report": f"{report}/usp.html",
        "commit": COMMIT, "runner_version": "1.2.0", **fields,
    }  # fmt: skip


def store(folder: Path, date: str, run_id: str, body: dict[str, Any] | str, days_ago: float = 1) -> None:
    path = folder / f"date={date}" / run_id / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    os.utime(path, (NOW - days_ago * 86400,) * 2)


def week(folder: Path) -> None:
    """A week of daily runs: each failure class of the runner's (one a day), the fifth day rerun successfully
    (its manifest naming the image by tag, its commit unknown), an older runner's manifest (no commit, no
    duration), one that is not JSON, one stored before the window, and what the listing must not read."""
    for day, exit in enumerate(FAILURES, 1):
        date, run_id = f"2019-08-{day:02d}", f"schedule-{day}"
        store(folder, date, run_id, manifest(date, run_id, exit.code, f"2026-12-0{day}T06:00:00Z"))
    rerun = manifest(
        "2019-08-05", "rerun-5", 0, "2026-12-05T09:30:00Z", commit="unknown", image="r:5000/usp:1.2"
    )
    store(folder, "2019-08-05", "rerun-5", rerun)
    older = manifest("2019-07-31", "schedule-0", 0, "2026-11-30T06:00:00Z", image="notebook-runner:34b4b46")
    for key in ("commit", "runner_version", "duration_seconds"):
        del older[key]
    store(folder, "2019-07-31", "schedule-0", older)
    store(folder, "2019-08-02", "schedule-2b", "{not json", days_ago=0.5)
    store(folder, "2019-06-30", "old", manifest("2019-06-30", "old", 0, "2026-10-30T06:00:00Z"), days_ago=40)
    # The notebook's staging folder lies deeper: a manifest.json there is no run's.
    staging = folder / "date=2019-08-01" / "schedule-1" / "staging"
    store(staging, "2019-08-01", "x", manifest("2019-08-01", "x", 0, "2026-12-09T00:00:00Z"))
    (folder / "date=2019-08-01" / "notes.txt").write_text("not a run")


def listed(folder: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = history.main([str(folder), *argv], now=NOW)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def report(date: str, run_id: str) -> str:
    return f"s3://out/daily/_runs/date={date}/{run_id}/usp.html"


def test_a_week_of_runs_is_listed_newest_first_with_each_failure_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    week(tmp_path)

    code, lines, err = listed(tmp_path, "30", capsys=capsys)

    assert (code, err) == (0, "")
    title, header, *rows, legend, summary = lines
    assert title == (
        f"Runs under {tmp_path} whose manifest was stored in the last 30 days, newest first "
        "(by run date, then start):"
    )
    columns = ["DATE", "RUN", "ID", "STATUS", "EXIT", "STEP", "ROWS", "DURATION", "VERSION", "REPORT"]
    assert header.split() == columns
    expected = []
    for day, exit in reversed(list(enumerate(FAILURES, 1))):
        date, run_id = f"2019-08-{day:02d}", f"schedule-{day}"
        if day == 5:  # the rerun started later that day: it comes first
            rerun = [date, "rerun-5", "succeeded", "0", "-", "3000", "1m01s", "1.2", report(date, "rerun-5")]
            expected.append(rerun)
        status = "stopped" if exit is STOPPED else "failed"
        expected.append(
            [date, run_id, status, str(exit.code), step(exit.code), NO_ROWS, "1m01s", COMMIT[:12],
             report(date, run_id)]
        )  # fmt: skip
        if day == 2:  # unreadable: no start time, after the day's readable runs
            where = f"{tmp_path}/date={date}/schedule-2b/manifest.json"
            expected.append([date, "schedule-2b", "unreadable", *["?"] * 5, where, "(not", "JSON)"])
    old = ["2019-07-31", "schedule-0", "succeeded", "0", "-", "3000", "?", "34b4b46"]
    expected.append([*old, report("2019-07-31", "schedule-0")])
    assert [row.split() for row in rows] == expected
    # aligned: each line's report starts under REPORT
    starts = {row.index("s3://" if "s3://" in row else str(tmp_path)) for row in rows}
    assert starts == {header.index("REPORT")}
    assert legend == "? = not in the manifest (an older runner's), - = none"
    assert summary == f"10 runs, {len(FAILURES)} failed (1 of them stopped), 1 unreadable"


def test_only_manifests_stored_in_the_last_days_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recent, older = (manifest("2019-08-01", r, 0, "2026-12-01T06:00:00Z") for r in ("recent", "older"))
    store(tmp_path, "2019-08-01", "recent", recent, days_ago=2.9)
    store(tmp_path, "2019-08-01", "older", older, days_ago=3.1)

    code, lines, _ = listed(tmp_path, "3", capsys=capsys)

    assert code == 0
    assert [line.split()[1] for line in lines[2:-1]] == ["recent"]
    assert lines[-1] == "1 run, 0 failed"


def test_downloaded_manifests_are_listed_whatever_their_time_and_named_by_their_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As scripts/runs.sh hands over S3's: chosen by their LastModified already."""
    failed = manifest("2019-08-01", "r1", 20, "2026-12-01T06:00:00Z")
    store(tmp_path, "2019-08-01", "r1", failed, days_ago=100)
    store(tmp_path, "2019-08-02", "r2", "[]")

    code, lines, _ = listed(tmp_path, "7", "s3://out/daily/_runs/", capsys=capsys)

    assert code == 0
    assert lines[0].startswith("Runs under s3://out/daily/_runs whose manifest was stored in the last 7 days")
    assert lines[2].endswith("s3://out/daily/_runs/date=2019-08-02/r2/manifest.json (not a JSON object)")
    assert lines[3].split()[:4] == ["2019-08-01", "r1", "failed", "20"]
    assert lines[-1] == "2 runs, 1 failed, 1 unreadable"


def test_what_a_manifest_holds_never_breaks_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = manifest("2019-08-01", "r1", 0, "x", status="succeeded\nforged line", rows="many", exit_code=None)
    store(tmp_path, "2019-08-01", "r1", odd)
    store(tmp_path, "2019-08-02", "r2", json.dumps({"run_id": "r2"}))  # nothing but its id
    (tmp_path / "date=2019-08-03" / "r3" / "manifest.json").mkdir(parents=True)  # not a file

    code, lines, _ = listed(tmp_path, "30", capsys=capsys)

    assert code == 0
    assert [line.split() for line in lines[2:4]] == [
        ["2019-08-02", "r2", *["?"] * 6, f"{tmp_path}/date=2019-08-02/r2/"],
        ["2019-08-01", "r1", "succeeded", "forged", "line", "-", "-", "many", "1m01s", COMMIT[:12],
         report("2019-08-01", "r1")],
    ]  # fmt: skip
    assert lines[-1] == "2 runs, 0 failed, 2 of unknown status"


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"commit": COMMIT, "image": "usp:1"}, COMMIT[:12]),
        (
            {"commit": "unknown", "image": f"123.dkr.ecr.eu-west-1.amazonaws.com/usp@{DIGEST}"},
            "@abcdef012345",
        ),
        ({"image": f"usp:1.2.0@{DIGEST}"}, "@abcdef012345"),
        ({"commit": "", "image": "127.0.0.1:5000/notebook-model:usp"}, "usp"),
        ({"image": "127.0.0.1:5000/notebook-model"}, "notebook-model"),
        ({"image": "unknown"}, "?"),
        ({}, "?"),
    ],
)
def test_the_version_is_the_commit_else_the_image_shortened(fields: dict[str, str], shown: str) -> None:
    assert history.version(fields) == shown


@pytest.mark.parametrize("days", ["0", "367", "-1", "1.5", "30d", "", "0030"])
def test_bad_days_are_refused_with_exit_2(
    tmp_path: Path, days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = listed(tmp_path, days, capsys=capsys)

    assert (code, lines) == (2, [])
    assert err == f"runs: DAYS={days} is not valid: a whole number from 1 to 366 (e.g. DAYS=30)\n"


def test_no_runs_and_no_folder_are_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store(tmp_path, "2019-08-01", "old", manifest("2019-08-01", "old", 0, ""), days_ago=31)

    code, lines, err = listed(tmp_path, "30", capsys=capsys)
    assert (code, lines) == (1, [])
    assert err == (
        f"runs: no run under {tmp_path} stored its manifest in the last 30 days: list more days (DAYS=, "
        "at most 366), or name the location the runs write to\n"
    )
    code, _, err = listed(tmp_path / "nothing", "30", capsys=capsys)
    assert code == 2
    assert err.startswith(f"runs: no report folder {tmp_path / 'nothing'}: name the one the runs wrote")


# --- make runs, as a subprocess ------------------------------------------------------------------------


def clean_env(**more: str) -> dict[str, str]:
    """This environment without what would name other runs, or another make's, and `more`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "AWS_", "STACK_", "OUTPUT_", "REPORT_"))
           and k not in ("ENV", "DAYS", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")}  # fmt: skip
    return env | more


def test_make_runs_lists_a_local_output_folder(tmp_path: Path) -> None:
    week(tmp_path / "out" / "_runs")

    done = subprocess.run(["make", "-s", "runs", f"OUTPUT_URI={tmp_path / 'out'}", "DAYS=7"], cwd=REPO,
                          env=clean_env(), capture_output=True, text=True)  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Runs under {tmp_path / 'out'}/_runs whose manifest")
    assert lines[1].split()[:3] == ["DATE", "RUN", "ID"]
    assert [line.split()[1] for line in lines[2:5]] == ["schedule-7", "schedule-6", "rerun-5"]
    assert lines[-1] == f"10 runs, {len(FAILURES)} failed (1 of them stopped), 1 unreadable"


OUTPUTS = {"RunOutputUri": "s3://hotel-out/daily", "RunCluster": "usp-runs"}
REPO_VAR = {"GITHUB_REPO": "hotel-profiling/usp-model"}
BAD = {
    "days": ({**REPO_VAR, "DAYS": "0"}, {}, "DAYS=0 is not valid: a whole number from 1 to 366"),
    "days too many": ({"OUTPUT_URI": "output", "DAYS": "400"}, {}, "DAYS=400 is not valid"),
    "no stack": ({}, {}, (
        "GITHUB_REPO is not set: name the stack with GITHUB_REPO=owner/name [ENV=staging|production] or "
        "STACK_NAME=..., or the runs' location with OUTPUT_URI= (make run's: OUTPUT_URI=output)")),
    "both": ({"STACK_NAME": "usp", "OUTPUT_URI": "output"}, {},
             "give the runs' stack (GITHUB_REPO= [ENV=] or STACK_NAME=) or their location"),
    "bad env": ({**REPO_VAR, "ENV": "Prod"}, {}, "ENV=Prod is not valid"),
    "other scheme": ({"OUTPUT_URI": "gs://b/daily"}, {}, "gs://b/daily/_runs uses an unsupported scheme"),
    "no such stack": ({**REPO_VAR, "ENV": "staging"}, {"FAKE_STACK_EXISTS": "no"}, (
        "cannot read the stack notebook-pipeline-usp-model-staging (the AWS CLI says why above): check "
        "GITHUB_REPO=hotel-profiling/usp-model ENV=staging and AWS_REGION")),
    "an older stack": ({"STACK_NAME": "usp"}, {"FAKE_OUTPUTS": "{}"},
                       "stack usp has no output RunOutputUri: deploy the current template first"),
}  # fmt: skip


@pytest.mark.parametrize(("variables", "fake", "message"), BAD.values(), ids=BAD.keys())
def test_make_runs_refuses_bad_input_in_one_line_with_exit_2(
    tmp_path: Path, variables: dict[str, str], fake: dict[str, str], message: str
) -> None:
    env = {"FAKE_OUTPUTS": json.dumps(OUTPUTS), **fake}

    done, calls = fake_aws.make(tmp_path, "runs", env, **variables)

    assert "] Error 2" in done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("runs: ")]
    assert len(said) == 1 and said[0].startswith(f"runs: {message}"), done.stderr
    assert done.stdout == ""
    assert [c[:2] for c in calls] == ([["cloudformation", "describe-stacks"]] if fake else [])


LISTING = re.compile(
    r"\(Contents \|\| `\[\]`\)\[\?ends_with\(Key, '/manifest.json'\) && LastModified >= '(.{19})'\]\.\[Key\]"
)


def test_make_runs_lists_only_the_manifests_stored_in_the_window_in_the_query(tmp_path: Path) -> None:
    env = {"FAKE_OUTPUTS": json.dumps(OUTPUTS)}
    done, calls = fake_aws.make(tmp_path, "runs", env, STACK_NAME="usp", DAYS="7", AWS_REGION="eu-west-1")

    assert "] Error 1" in done.stderr  # the stand-in lists nothing
    assert done.stderr.splitlines()[0] == (
        "runs: no run under s3://hotel-out/daily/_runs stored its manifest in the last 7 days: list more "
        "days (DAYS=, at most 366), or name the location the runs write to"
    )
    describe, listing = calls
    assert describe[:4] == ["cloudformation", "describe-stacks", "--region", "eu-west-1"]
    query = listing[listing.index("--query") + 1]
    since = LISTING.fullmatch(query)
    assert since, query
    cutoff = datetime.strptime(since[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert abs(cutoff - (datetime.now(UTC) - timedelta(days=7))) < timedelta(minutes=1)
    assert listing[: listing.index("--query")] == [
        "s3api", "list-objects-v2", "--region", "eu-west-1", "--bucket", "hotel-out",
        "--prefix", "daily/_runs/date=",
    ]  # fmt: skip


# --- on S3: the real AWS CLI, moto behind the IAM proxy ----------------------------------------------------


@pytest.fixture(scope="module")
def reports(moto_endpoint: str) -> Iterator[Stack]:
    """A model stack's buckets in moto behind the IAM proxy (no image: its registry is never reached)."""
    with deployed(moto_endpoint, "127.0.0.1:1") as created:
        yield created


@contextmanager
def aged(upstream: str, old: set[str], fetched: list[str]) -> Iterator[str]:
    """In front of the IAM proxy: the keys in `old` listed as stored 40 days ago (moto stamps an object with
    the time it was put), and the path of every object read recorded in `fetched`."""
    stamp = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def age(block: re.Match[str]) -> str:
        key = re.search(r"<Key>(.*?)</Key>", block[0])
        if key is None or urllib.parse.unquote(key[1]) not in old:
            return block[0]
        return re.sub(
            r"<LastModified>[^<]*</LastModified>", f"<LastModified>{stamp}</LastModified>", block[0]
        )

    def handle(request: Any, body: bytes, forward: Any) -> Reply:
        status, headers, reply = forward(body)
        path, _, query = request.path.partition("?")
        if request.command == "GET" and "list-type=2" in query:
            reply = re.sub(r"<Contents>.*?</Contents>", age, reply.decode(), flags=re.S).encode()
        elif request.command == "GET" and status == 200:
            fetched.append(urllib.parse.unquote(path))
        return status, headers, reply

    with proxy(upstream, handle) as endpoint:
        yield endpoint


def test_make_runs_on_s3_downloads_only_the_runs_manifests_stored_in_the_window(
    reports: Stack, tmp_path: Path
) -> None:
    bucket = reports.values["OutputBucket"]
    uri = str(cfn.resolve(cfn.load()["Outputs"]["RunOutputUri"]["Value"], reports.values))  # the stack's
    prefix = uri.removeprefix(f"s3://{bucket}/") + "/_runs"
    objects = {
        "date=2019-08-01/r1/manifest.json": manifest("2019-08-01", "r1", 0, "2026-12-01T06:00:00Z"),
        "date=2019-08-02/r2/manifest.json": manifest("2019-08-02", "r2", 20, "2026-12-02T06:00:00Z"),
        "date=2019-08-02/r2/usp.html": "<html>",
        "date=2019-08-02/r2/staging/date=2019-08-02/manifest.json": manifest("2019-08-02", "x", 0, "z"),
        "date=2019-08-03/r3/manifest.json": "{not json",
        "date=2019-07-01/old/manifest.json": manifest("2019-07-01", "old", 0, "2026-11-01T06:00:00Z"),
    }
    s3 = reports.client("s3")
    for key, body in objects.items():
        s3.put_object(
            Bucket=bucket, Key=f"{prefix}/{key}", Body=body if isinstance(body, str) else json.dumps(body)
        )
    fetched: list[str] = []
    env = clean_env(
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", AWS_CLI=str(HARNESS_BIN / "engineer-aws"),
        HARNESS_REAL_AWS=AWS_CLI, HARNESS_OUTPUTS=json.dumps({"RunOutputUri": uri}),
        HARNESS_BUILDS=str(tmp_path),  # engineer-aws's CodeBuild stand-in: unused here
        AWS_ACCESS_KEY_ID=reports.engineer_key, AWS_SECRET_ACCESS_KEY="engineer", AWS_DEFAULT_REGION=REGION,
    )  # fmt: skip

    with aged(reports.proxy, {f"{prefix}/date=2019-07-01/old/manifest.json"}, fetched) as endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
        done = subprocess.run(["make", "-s", "runs", f"STACK_NAME={reports.name}", "DAYS=30"], cwd=REPO,
                              env=env, capture_output=True, text=True)  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Runs under {uri}/_runs whose manifest was stored in the last 30 days")
    assert [line.split()[:4] for line in lines[2:-1]] == [
        ["2019-08-03", "r3", "unreadable", "?"],
        ["2019-08-02", "r2", "failed", "20"],
        ["2019-08-01", "r1", "succeeded", "0"],
    ]
    assert lines[2].endswith(f"{uri}/_runs/date=2019-08-03/r3/manifest.json (not JSON)")
    assert lines[-1] == "3 runs, 1 failed, 1 unreadable"
    manifests = [f"/{bucket}/{prefix}/date=2019-08-0{d}/r{d}/manifest.json" for d in (1, 2, 3)]
    assert sorted(fetched) == manifests  # neither the old manifest, the staging folder's nor the report
