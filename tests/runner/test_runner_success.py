"""The runner contract, end to end in the container: what a successful run leaves behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support import (
    OUTPUT_COLUMNS,
    SAMPLE_DATE,
    SAMPLE_LAKE,
    day_rows,
    docker_run,
    make_notebook,
    manifest,
    output_table,
    published,
    run_dirs,
    write_rows_cell,
)

pytestmark = pytest.mark.docker


def run_sample(image: str, out: Path, **env: str):
    volumes = {SAMPLE_LAKE: "/data/lake:ro", out: "/output"}
    base = {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": SAMPLE_DATE}
    return docker_run(image, {**base, **env}, volumes)


def test_sample_run_publishes_the_checked_partition_with_its_report(runner_image: str, out: Path) -> None:
    run = run_sample(runner_image, out)

    assert run.code == 0, run.stderr
    table = day_rows(out)
    assert table.column_names == OUTPUT_COLUMNS
    assert table.num_rows == 3000
    (run_dir,) = run_dirs(out)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "check.txt",
        "manifest.json",
        "usp.html",
        "usp.ipynb",
    ]
    assert "Distinct destinations per USP" in (run_dir / "usp.html").read_text()
    assert "VALIDATION PASSED" in (run_dir / "check.txt").read_text()
    facts = manifest(out)
    assert facts["status"] == "succeeded"
    assert facts["exit_code"] == 0
    assert facts["failed_step"] is None
    assert facts["rows"] == 3000
    assert (
        facts["table"] == "notebooks.usp"
        and facts["snapshot_id"] == output_table(out).current_snapshot().snapshot_id
    )
    assert facts["date"] == SAMPLE_DATE
    assert facts["notebook"] == "usp"
    assert facts["image"] == "notebook-runner:test"
    assert facts["run_id"] == run_dir.name
    assert facts["duration_seconds"] > 0
    assert "succeeded" in run.last_line
    assert f"/output/_runs/date={SAMPLE_DATE}/{run_dir.name}/usp.html" in run.last_line


def test_progress_is_logged_cell_by_cell(runner_image: str, out: Path) -> None:
    run = run_sample(runner_image, out)

    assert run.code == 0
    assert "Executing Cell 1" in run.stderr
    assert "USP rows and 1,000 accommodations" in run.stderr  # cell output streams while it runs


def test_rerunning_a_date_replaces_its_partition(runner_image: str, out: Path) -> None:
    first = run_sample(runner_image, out)
    second = run_sample(runner_image, out)

    assert (first.code, second.code) == (0, 0)
    assert day_rows(out).num_rows == 3000  # the day once
    assert len(published(out)) == 1
    assert len(run_dirs(out)) == 2  # each run keeps its own report


def test_notebook_runs_with_the_image_kernel_from_its_own_folder_with_params(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    (nb_dir / "lookup.txt").parent.mkdir(parents=True)
    (nb_dir / "lookup.txt").write_text("spa\n")
    make_notebook(  # saved with a kernel the image does not have
        nb_dir / "custom.ipynb",
        "import sys\nprint('kernel python', sys.executable)",
        "usp_name = open('lookup.txt').read().strip()  # relative to the notebook's folder",
        write_rows_cell(rows="[(i, 100, usp_name, None) for i in range(n_rows)]"),
    )
    run = docker_run(
        runner_image,
        {
            "DATA_URI": "/data/lake",
            "OUTPUT_URI": "/output",
            "RUN_DATE": SAMPLE_DATE,
            "NOTEBOOK": "/nb/custom.ipynb",
            "NOTEBOOK_PARAMS": "n_rows: 5\nunused: [1, 2]",
        },
        {SAMPLE_LAKE: "/data/lake:ro", out: "/output", nb_dir: "/nb:ro"},
    )

    assert run.code == 0, run.stderr
    assert "kernel python /opt/venv/bin/python" in run.stderr
    assert day_rows(out).column("usp").to_pylist() == ["spa"] * 5
    executed = json.loads((run_dirs(out)[0] / "custom.ipynb").read_text())
    injected = "".join(executed["cells"][1]["source"])
    assert "n_rows = 5" in injected
    assert f'date = "{SAMPLE_DATE}"' in injected


def test_run_date_defaults_to_yesterday_utc(runner_image: str, out: Path) -> None:
    run = run_sample(runner_image, out, RUN_DATE="")
    yesterday = subprocess.run(
        ["date", "-u", "-d", "yesterday", "+%F"], capture_output=True, text=True, check=True
    ).stdout.strip()

    # The sample has no partition for yesterday: the notebook says so, and nothing is published.
    assert run.code == 10
    assert f"for {yesterday} FAILED" in run.last_line
    assert f"no unique_selling_points data for date={yesterday}" in run.last_line


@pytest.mark.parametrize(
    "scheduled, zone, day",
    [
        ("2019-08-02T06:00:00Z", "UTC", SAMPLE_DATE),
        ("2019-08-01T23:30:00Z", "Europe/Amsterdam", SAMPLE_DATE),  # already 2 August there
        ("2019-08-02T05:00:00Z", "America/Los_Angeles", "2019-07-31"),  # still 1 August there
        ("2019-03-31T00:30:00Z", "Europe/Amsterdam", "2019-03-30"),  # the night clocks go forward
    ],
)
def test_a_scheduled_run_is_for_the_day_before_its_scheduled_date_in_the_schedules_zone(
    runner_image: str, out: Path, scheduled: str, zone: str, day: str
) -> None:
    run = run_sample(runner_image, out, RUN_DATE="", SCHEDULED_TIME=scheduled, SCHEDULE_TIMEZONE=zone)

    assert f"of usp for {day} " in run.last_line
    assert run.code == (0 if day == SAMPLE_DATE else 10), run.stderr  # the sample holds one day


def test_run_date_given_wins_over_the_scheduled_time(runner_image: str, out: Path) -> None:
    run = run_sample(runner_image, out, SCHEDULED_TIME="2030-01-01T06:00:00Z")

    assert run.code == 0, run.stderr
    assert f"of usp for {SAMPLE_DATE} succeeded" in run.last_line


def test_runs_on_a_read_only_root_filesystem_as_the_fargate_task_does(runner_image: str, out: Path) -> None:
    """--read-only, as the task definition's ReadonlyRootFilesystem; /tmp is the image's VOLUME, which Fargate
    (and Docker) mount with the image's own permissions."""
    volumes = {SAMPLE_LAKE: "/data/lake:ro", out: "/output"}
    env = {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": SAMPLE_DATE}

    run = docker_run(runner_image, env, volumes, extra=("--read-only",))

    assert run.code == 0, run.stderr
    assert len(published(out)) == 1
