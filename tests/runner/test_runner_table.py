"""The output table through the image and make, as a user drives it: `make run` twice for a day, another
day, a run its check fails, `make history` and `make restore`, and the README's first queries run as
written against what `make run` left."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support import REPO, SAMPLE_DATE, day_rows, env_with, make_notebook, output_table

IMAGE = "notebook-runner:make-table"
NEXT_DAY = "2019-08-02"


def make(target: str, out: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target, f"OUTPUT_DIR={out}", f"IMAGE={IMAGE}", *variables],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
        env=env_with(BASE_IMAGE="", MAKEFLAGS=""),
    )  # fmt: skip


def versions(listing: str) -> list[tuple[bool, str, str]]:
    """(current, snapshot id, run id) of each line `make history` printed."""
    found = re.findall(r"^([* ]) \S+  snapshot (\d+)  run (\S+)  ", listing, re.MULTILINE)
    return [(mark == "*", snapshot, run) for mark, snapshot, run in found]


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Path:
    """Two `make run`s of the sample day and one of the next day (a day the sample has no data for
    fails before publishing, so the next day reuses the sample's by RUN_DATE's partition)."""
    out = tmp_path_factory.mktemp("make-table") / "output"
    for date in (SAMPLE_DATE, SAMPLE_DATE):
        done = make("run", out, f"RUN_DATE={date}")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_make_run_twice_for_a_day_holds_the_day_once_with_two_runs_in_its_history(table_dir: Path) -> None:
    mounted = str(table_dir)  # make run mounts OUTPUT_DIR at its own path
    rows = day_rows(table_dir, SAMPLE_DATE, mounted)
    assert rows.num_rows == 3000  # once, not twice
    listing = make("history", table_dir, f"DATE={SAMPLE_DATE}")
    assert listing.returncode == 0, listing.stderr
    found = versions(listing.stdout)
    assert [current for current, _, _ in found] == [False, True], listing.stdout
    assert "3000 rows" in listing.stdout and "check: VALIDATION PASSED" in listing.stdout


def test_make_restore_puts_the_first_version_back_as_a_new_commit(table_dir: Path, tmp_path: Path) -> None:
    first_snapshot = versions(make("history", table_dir, f"DATE={SAMPLE_DATE}").stdout)[0][1]
    done = make("restore", table_dir, f"DATE={SAMPLE_DATE}", f"SNAPSHOT={first_snapshot}")
    assert done.returncode == 0, done.stderr
    assert f"as it was at snapshot {first_snapshot}: 3000 rows" in done.stdout
    found = versions(make("history", table_dir, f"DATE={SAMPLE_DATE}").stdout)
    assert len(found) == 3 and found[-1][0] and found[-1][2].startswith("restore-")
    assert day_rows(table_dir, SAMPLE_DATE, str(table_dir)).num_rows == 3000


def test_make_history_and_restore_say_what_they_need(table_dir: Path) -> None:
    done = make("history", table_dir)
    assert done.returncode == 2 and "give the day, e.g. make history DATE=" in done.stderr
    done = make("restore", table_dir, f"DATE={SAMPLE_DATE}")
    assert done.returncode == 2 and "give DATE=YYYY-MM-DD and SNAPSHOT=" in done.stderr
    done = make("restore", table_dir, f"DATE={SAMPLE_DATE}", "SNAPSHOT=42")
    assert done.returncode == 2 and "has no snapshot 42" in done.stderr


def test_a_second_day_adds_its_rows_and_a_failed_check_commits_nothing(
    runner_image: str, table_dir: Path, tmp_path: Path
) -> None:
    """Another day's run, then a run whose check fails: the table gains the day, then nothing."""
    lake = tmp_path / "lake"
    subprocess.run(["cp", "-r", str(REPO / "sample" / "lake"), str(lake)], check=True)
    for folder in lake.glob(f"*/date={SAMPLE_DATE}"):  # the sample's day, again as the next day
        (next_day := folder.with_name(f"date={NEXT_DAY}")).mkdir()
        for path in folder.iterdir():
            (next_day / path.name).write_text(path.read_text().replace(SAMPLE_DATE, NEXT_DAY))
    done = make("run", table_dir, f"RUN_DATE={NEXT_DAY}", f"DATA_DIR={lake}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert day_rows(table_dir, NEXT_DAY, str(table_dir)).num_rows == 3000
    assert day_rows(table_dir, SAMPLE_DATE, str(table_dir)).num_rows == 3000
    snapshots = len(output_table(table_dir, str(table_dir)).snapshots())

    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "check.py").write_text("import sys\nprint('REJECTED: on purpose')\nsys.exit(1)\n")
    make_notebook(
        failing / "nb.ipynb", "import pathlib", "pathlib.Path(output_uri, f'date={date}').mkdir(parents=True)"
    )
    done = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{lake}:/data/lake:ro", "-v", f"{table_dir}:{table_dir}",
         "-v", f"{failing}:/nb:ro", "-e", "DATA_URI=/data/lake", "-e", f"OUTPUT_URI={table_dir}",
         "-e", f"RUN_DATE={NEXT_DAY}", "-e", "PROJECT_DIR=/nb", "-e", "NOTEBOOK=nb.ipynb",
         "-e", "OUTPUT_TABLE=notebooks.usp", runner_image],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 20, done.stderr[-2000:]
    assert len(output_table(table_dir, str(table_dir)).snapshots()) == snapshots


def readme_block(marker: str) -> str:
    """The README's fenced block whose first line is the comment `marker`."""
    blocks = re.findall(r"```(?:python|sql)\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    (block,) = [b for b in blocks if b.splitlines()[0].strip() in (f"# {marker}", f"-- {marker}")]
    return block


def test_the_readmes_laptop_query_runs_as_written_on_what_make_run_left(table_dir: Path) -> None:
    """README: pandas and DuckDB over the table, from the folder make run was started in."""
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-c", readme_block("first query, on a laptop")],
        cwd=table_dir.parent, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3000 rows" in done.stdout
    assert re.search(r"│\s+usp\s+│\s+n\s+│", done.stdout), done.stdout  # DuckDB printed its result


def test_the_readmes_athena_queries_parse_as_athena_sql() -> None:
    import sqlglot

    for marker in ("first query, in Athena", "a day as of an earlier version, in Athena"):
        sql = readme_block(marker)
        (statement,) = sqlglot.parse(sql, read="athena")
        assert statement is not None and statement.find(sqlglot.exp.Table) is not None
