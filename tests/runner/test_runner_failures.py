"""The runner contract, end to end in the container: each failure class, its exit code, its last line,
and nothing published (a partition published before stays as it was). Each configuration error and each of
check.py's verdicts are in process (tests/runner/test_config.py, tests/notebook/test_check.py): one run
here shows each exit code end to end."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from support import (
    SAMPLE_DATE,
    SAMPLE_LAKE,
    Run,
    docker_run,
    make_notebook,
    manifest,
    published,
    run_dirs,
    writable_dir,
    write_rows_cell,
)

GOOD_ROWS = write_rows_cell()


def run_notebook(image: str, out: Path, nb_dir: Path, notebook: str, extra: tuple[str, ...] = (), **env: str):
    base = {
        "DATA_URI": "/data/lake",
        "OUTPUT_URI": "/output",
        "RUN_DATE": SAMPLE_DATE,
        "NOTEBOOK": f"/nb/{notebook}",
    }
    volumes = {SAMPLE_LAKE: "/data/lake:ro", out: "/output", nb_dir: "/nb:ro"}
    return docker_run(image, {**base, **env}, volumes, extra=extra)


@pytest.fixture(scope="module")
def seeded(runner_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """One good run, made once for the module: its output (a published partition, the run's report) and
    the run itself."""
    root = tmp_path_factory.mktemp("seeded")
    out = writable_dir(root / "out")
    make_notebook(root / "nb" / "good.ipynb", GOOD_ROWS)
    run = run_notebook(runner_image, out, root / "nb", "good.ipynb")
    assert run.code == 0, run.stderr
    return out, run


def seed_partition(seeded: tuple[Path, Run], out: Path) -> bytes:
    """The good run's output copied into out, owners and modes kept (the table's files name the container's
    /output, where out is mounted too), so a failing run can be seen to leave its partition untouched."""
    subprocess.run(["cp", "-a", f"{seeded[0]}/.", str(out)], check=True)
    (part,) = published(out)
    return part.read_bytes()


def assert_failed(out: Path, run, code: int, step: str, *words: str) -> dict:
    assert run.code == code, run.stderr
    assert f"(exit {code}, {step})" in run.last_line
    assert "nothing was published" in run.last_line or "output was not published" in run.last_line
    for word in words:
        assert word in run.last_line
    facts = manifest(out) if len(run_dirs(out)) == 1 else {}
    if facts:
        assert facts["exit_code"] == code
        assert facts["failed_step"] == step
        assert run.last_line.endswith(facts["report"])
    return facts


# Each configuration error is test_config.py's, in process; this is the one run that shows exit 2 end to end.
def test_a_configuration_error_exits_2_before_any_cell_runs(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "nb" / "untagged.ipynb", GOOD_ROWS, tagged=False)

    run = run_notebook(runner_image, out, tmp_path / "nb", "untagged.ipynb")

    facts = assert_failed(out, run, 2, "config", "untagged.ipynb")
    assert facts["status"] == "failed"
    assert "Executing Cell" not in run.stderr
    assert not published(out)


NOTEBOOK_FAILURES = {
    "exception": ("raise ValueError('bad input row')", 10, "raised ValueError in cell [3]: bad input row"),
    "non-zero sys.exit": ("import sys\nsys.exit(3)", 10, "raised SystemExit"),
    "failing magic": ("%%bash\necho partial\nexit 4", 10, "raised CalledProcessError"),
    "dead kernel": ("import os\nos._exit(1)", 10, "the kernel died"),
    "cell timeout": (
        "import time\ntime.sleep(30)",
        11,
        "cell [3] ('import time') of broken.ipynb ran longer than CELL_TIMEOUT=3 s",
    ),
}


@pytest.mark.parametrize("source, code, message", NOTEBOOK_FAILURES.values(), ids=NOTEBOOK_FAILURES.keys())
def test_failing_notebook_publishes_nothing_and_keeps_its_report(
    runner_image: str,
    seeded: tuple[Path, Run],
    out: Path,
    tmp_path: Path,
    source: str,
    code: int,
    message: str,
) -> None:
    nb_dir = tmp_path / "nb"
    before = seed_partition(seeded, out)
    make_notebook(nb_dir / "broken.ipynb", source, GOOD_ROWS)

    run = run_notebook(runner_image, out, nb_dir, "broken.ipynb", CELL_TIMEOUT="3", RUN_DATE=SAMPLE_DATE)

    assert run.code == code, run.stderr
    assert f"(exit {code}, notebook)" in run.last_line
    assert message in run.last_line
    assert published(out)[0].read_bytes() == before
    failed_run = [d for d in run_dirs(out) if (d / "broken.ipynb").exists()]
    assert len(failed_run) == 1
    assert (failed_run[0] / "broken.html").exists()
    assert run.last_line.endswith(f"{failed_run[0].name}/broken.html")


# Each of check.py's verdicts is tests/notebook/test_check.py's, in process: this is the one run that shows
# a rejected output end to end (exit 20, its verdict on the last line and in check.txt, nothing published).
def test_output_failing_its_check_is_never_published(
    runner_image: str, seeded: tuple[Path, Run], out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    before = seed_partition(seeded, out)
    make_notebook(nb_dir / "bad_output.ipynb", write_rows_cell("[(1, 100, 'spa', 7), (1, 100, 'spa', 7)]"))

    run = run_notebook(runner_image, out, nb_dir, "bad_output.ipynb")

    assert run.code == 20, run.stderr
    assert "(exit 20, check)" in run.last_line
    assert "check.py rejected the output" in run.last_line
    assert "1 duplicated pairs" in run.last_line
    assert published(out)[0].read_bytes() == before
    (failed_run,) = [d for d in run_dirs(out) if (d / "bad_output.ipynb").exists()]
    assert "VALIDATION FAILED" in (failed_run / "check.txt").read_text()


def test_publish_failure_exits_30_and_keeps_the_previous_partition(
    runner_image: str, seeded: tuple[Path, Run], out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    before = seed_partition(seeded, out)
    make_notebook(nb_dir / "other.ipynb", write_rows_cell("[(3, 100, 'pool', 9)]"))
    (out / "metadata").chmod(0o555)  # the table's next metadata file cannot be written

    run = run_notebook(runner_image, out, nb_dir, "other.ipynb", OUTPUT_TABLE="notebooks.good")

    (out / "metadata").chmod(0o755)
    assert_failed(
        out, run, 30, "publish", "could not publish to the table notebooks.good", "nothing was published"
    )
    (failed,) = [d for d in run_dirs(out) if (d / "other.ipynb").exists()]
    facts = json.loads((failed / "manifest.json").read_text())
    assert (facts["exit_code"], facts["rows"], facts["snapshot_id"]) == (30, None, None)
    assert published(out)[0].read_bytes() == before


def test_sigterm_shuts_the_kernel_down_and_exits_143(runner_image: str, out: Path, tmp_path: Path) -> None:
    nb_dir = tmp_path / "nb"
    make_notebook(
        nb_dir / "slow.ipynb", "import time\nprint('sleeping', flush=True)\ntime.sleep(300)", GOOD_ROWS
    )
    name = f"runner-sigterm-{time.monotonic_ns()}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "-v", f"{SAMPLE_LAKE}:/data/lake:ro", "-v", f"{out}:/output",
         "-v", f"{nb_dir}:/nb:ro", "-e", "DATA_URI=/data/lake", "-e", "OUTPUT_URI=/output",
         "-e", f"RUN_DATE={SAMPLE_DATE}", "-e", "NOTEBOOK=/nb/slow.ipynb", runner_image],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (
            "sleeping" not in subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
        ):
            assert time.monotonic() < deadline, "the notebook never started its slow cell"
            time.sleep(0.3)
        # A stop that took the whole grace period would end in SIGKILL (137), not 143.
        subprocess.run(["docker", "stop", "--time", "20", name], check=True, capture_output=True)
        code = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.ExitCode}}", name], capture_output=True, text=True
        ).stdout.strip()
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    assert code == "143"
    last = [line for line in logs.splitlines() if line.strip()][-1]
    assert "STOPPED (exit 143, stopped): stopped by SIGTERM while running slow.ipynb" in last
    assert "nothing was published" in last
    assert not published(out)
    facts = manifest(out)
    assert facts["status"] == "stopped"
    assert (run_dirs(out)[0] / "slow.ipynb").exists()


def test_a_passing_checks_own_output_is_in_the_runs_log(seeded: tuple[Path, Run]) -> None:
    """usp's check shares the null destinations it let pass (its figures are test_check.py's)."""
    _, run = seeded

    assert "destination_id null in 1 of 2 rows" in run.stderr
    assert "VALIDATION PASSED" in run.stderr


def test_a_300_kb_check_verdict_is_cut_on_the_last_line_and_the_report_still_happens(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "good.ipynb", GOOD_ROWS)
    (nb_dir / "loud_check.py").write_text("import sys\nprint('x' * 300_000)\nsys.exit(1)\n")

    run = run_notebook(runner_image, out, nb_dir, "good.ipynb", CHECK_SCRIPT="/nb/loud_check.py")

    facts = assert_failed(out, run, 20, "check", "(cut at 1000 of 300,000 characters: see check.txt)")
    assert len(run.last_line) < 2000
    assert (
        facts["message"]
        == run.last_line.split("(exit 20, check): ", 1)[1].split("; nothing was published")[0]
    )
    (report,) = run_dirs(out)
    assert len((report / "check.txt").read_text()) > 300_000  # the whole verdict stays in the report
    assert (report / "good.html").exists()
