"""check.py, the team's sanity check, run as a program on Parquet partitions it must pass or fail (in this
process, as its __main__; once in a process of its own)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import REPO

DATE = "2019-08-01"
SCHEMA = pa.schema(
    [
        ("accommodation_id", pa.int64()),
        ("accommodation_ns", pa.int64()),
        ("usp", pa.string()),
        ("destination_id", pa.int64()),
    ]
)
GOOD = [(1, 100, "spa", 7), (1, 100, "sauna", 7), (2, 100, "spa", None), (3, 100, "spa", None)]


def write_partition(out: Path, rows: list[tuple], schema: pa.Schema = SCHEMA, files: int = 1) -> Path:
    part = out / f"date={DATE}"
    part.mkdir(parents=True)
    table = pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema=schema)
    step = max(1, -(-len(rows) // files))
    for i in range(files):
        pq.write_table(table.slice(i * step, step), part / f"part-{i}.parquet")
    return out


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def check(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Done]:
    """check.py run as its own program (`python check.py ARGS`: its __main__, its exit code), in this process
    (a process of its own, with pyarrow to import, takes a second; the runner runs it so:
    test_good_partition_passes_as_a_program)."""

    def run(*args: str) -> Done:
        monkeypatch.setattr(sys, "argv", [str(REPO / "check.py"), *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as ended:
            runpy.run_path(str(REPO / "check.py"), run_name="__main__")
        said = capsys.readouterr()
        code = ended.value.code
        return Done(code if isinstance(code, int) else 1, said.out, said.err)

    return run


def test_good_partition_passes_as_a_program(tmp_path: Path) -> None:
    out = write_partition(tmp_path, GOOD)

    done = subprocess.run(
        [sys.executable, str(REPO / "check.py"), "--date", DATE, "--output", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"VALIDATION PASSED for {DATE}: 4 rows, all 5 checks passed"


def test_good_partition_passes_and_reports_the_null_destination_share(
    tmp_path: Path, check: Callable[..., Done]
) -> None:
    out = write_partition(tmp_path, GOOD, files=2)

    done = check("--date", DATE, "--output", str(out))

    assert done.returncode == 0, done.stdout
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"VALIDATION PASSED for {DATE}: 4 rows, all 5 checks passed"
    assert "destination_id null in 2 of 4 rows (50.0%)" in done.stdout


FAILURES = {
    "duplicate pair": ([*GOOD, (1, 100, "spa", 7)], SCHEMA, "1 duplicated pairs, e.g. (1, 'spa') x2"),
    "other namespace": ([*GOOD, (4, 200, "spa", 1)], SCHEMA, "1 rows not in {100}, e.g. 200"),
    "null namespace": ([*GOOD, (4, None, "spa", 1)], SCHEMA, "accommodation_ns: 1 rows not in {100}"),
    "null key": ([*GOOD, (None, 100, "spa", 1)], SCHEMA, "accommodation_id null in 1 rows"),
    "empty": ([], SCHEMA, "not empty: 0 rows"),
    "float ids": (
        [(1, 100, "spa", 7.0)],
        pa.schema([*list(SCHEMA)[:3], pa.field("destination_id", pa.float64())]),
        "destination_id is double, expected int64",
    ),
    "missing column": ([(1, 100, "spa")], pa.schema(list(SCHEMA)[:3]), "destination_id is missing"),
    "extra column": (
        [(1, 100, "spa", 7, "x")],
        pa.schema([*SCHEMA, pa.field("note", pa.string())]),
        "unexpected column(s) note",
    ),
}


@pytest.mark.parametrize("rows, schema, reason", FAILURES.values(), ids=FAILURES.keys())
def test_bad_partition_fails_with_its_reason(
    tmp_path: Path, check: Callable[..., Done], rows: list, schema: pa.Schema, reason: str
) -> None:
    out = write_partition(tmp_path, rows, schema)

    done = check("-d", DATE, "--output", str(out))

    assert done.returncode == 1
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"VALIDATION FAILED for {DATE}:")
    assert reason in last


def test_missing_partition_fails_readably(tmp_path: Path, check: Callable[..., Done]) -> None:
    done = check("--date", DATE, "--output", str(tmp_path))

    assert done.returncode == 1
    assert f"cannot read {tmp_path}/date={DATE}/" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--date", "2019-8-1", "--output", "x"], "'2019-8-1' is not a date: use YYYY-MM-DD"),
        (["--date", "2019-02-30", "--output", "x"], "is not a date"),
        (["--date", DATE], "one of the arguments -b/--bucket -o/--output is required"),
        (["--date", DATE, "-b", "b", "-o", "x"], "not allowed with argument"),
    ],
)
def test_usage_errors_exit_2(check: Callable[..., Done], args: list[str], message: str) -> None:
    done = check(*args)

    assert done.returncode == 2
    assert message in done.stderr


def test_bucket_option_reads_the_teams_usual_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    import check as team_check

    args = team_check.parse_args(["-d", DATE, "-b", "hotel-output"])

    assert args.output == "s3://hotel-output/usp/output"
