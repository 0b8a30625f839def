"""Run the project's check on the staged partition (exit 20 when it rejects it). check.py is the data
scientist's code too: it runs with the notebook's environment and identity, never the runner's."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

from runner import exits, redaction
from runner.config import Config
from runner.errors import RunFailed
from runner.processes import kill_descendants, signals_held

log = logging.getLogger("runner")

VERDICT_LIMIT = 1000  # characters of the check's last line on the run's last line and in the mail


def verdict(output: str) -> str:
    """The check's last non-blank line, cut to VERDICT_LIMIT characters."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    if len(last) > VERDICT_LIMIT:
        last = f"{last[:VERDICT_LIMIT]}… (cut at {VERDICT_LIMIT} of {len(last):,} characters: see check.txt)"
    return last


def run_check(config: Config, env: dict[str, str], python: str, report: Path) -> None:
    """python CHECK_SCRIPT --date D --output STAGING, its output streamed to the log and kept in report;
    every process it started is gone when this returns."""
    name = config.check_script.name
    log.info("checking the output with %s", name)
    command = [
        python,
        str(config.check_script),
        "--date",
        config.run_date,
        "--output",
        config.staging.uri,
    ]
    with report.open("wb") as sink:
        proc = subprocess.Popen(
            command, cwd=config.project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        # A reader thread: a process the check left behind may hold the pipe open; it is killed first.
        reader = threading.Thread(
            target=redaction.copy_lines, args=(proc.stdout, sink, sys.stderr.buffer), daemon=True
        )
        reader.start()
        try:
            code = proc.wait(timeout=config.check_timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with signals_held():
                kill_descendants("after the check")
            reader.join(timeout=10)
    if code is None:
        raise RunFailed(
            exits.CHECK,
            f"{name} ran longer than CHECK_TIMEOUT={config.check_timeout} s: make it faster or raise "
            f"CHECK_TIMEOUT; the output is kept in {config.staging}",
            "check",
        )
    if code != 0:
        said = verdict(report.read_text(errors="replace"))
        raise RunFailed(
            exits.CHECK,
            f"{name} rejected the output (exit {code}): {said}; the rejected data is kept in "
            f"{config.staging}",
            "check",
        )
