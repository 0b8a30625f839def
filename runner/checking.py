"""Run the project's check on the checked copy of the output (exit 20 when it rejects it). check.py is the
data scientist's code too: it runs as the notebook's user, with the notebook's environment and identity,
never the runner's. It reads the copy the runner made of the staged files, which it cannot change, and
that copy is what the runner publishes."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from runner import exits, redaction
from runner.config import Config
from runner.errors import RunFailed
from runner.processes import NotebookUser, signals_held

log = logging.getLogger("runner")

VERDICT_LIMIT = 1000  # characters of the check's last line on the run's last line and in the mail
KEPT = 64 * 2**20  # bytes of the check's output kept for check.txt (in memory); the log gets all of it


def verdict(output: str) -> str:
    """The check's last non-blank line, cut to VERDICT_LIMIT characters."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    if len(last) > VERDICT_LIMIT:
        last = f"{last[:VERDICT_LIMIT]}… (cut at {VERDICT_LIMIT} of {len(last):,} characters: see check.txt)"
    return last


class Kept:
    """A sink that keeps the first KEPT bytes written to it, in memory."""

    def __init__(self, into: bytearray) -> None:
        self.into = into

    def write(self, data: bytes) -> int:
        self.into += data[: max(0, KEPT - len(self.into))]
        return len(data)

    def flush(self) -> None:
        pass


def run_check(
    config: Config, env: dict[str, str], python: str, checked: Path, user: NotebookUser, output: bytearray
) -> None:
    """python CHECK_SCRIPT --date D --output CHECKED as the notebook's user, its output streamed to the log
    and kept in output (check.txt); no process of the notebook's user is left when this returns."""
    name = config.check_script.name
    log.info("checking the output with %s", name)
    command = [python, str(config.check_script), "--date", config.run_date, "--output", str(checked)]
    proc = subprocess.Popen(
        user.command(command), cwd=config.project_dir, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    # A reader thread: a process the check left behind may hold the pipe open; it is killed first.
    sinks: tuple[IO[bytes] | Kept, ...] = (Kept(output), sys.stderr.buffer)
    reader = threading.Thread(target=redaction.copy_lines, args=(proc.stdout, *sinks), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=config.check_timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        with signals_held():
            user.stop_all("after the check")
        reader.join(timeout=10)
    if code is None:
        raise RunFailed(
            exits.CHECK,
            f"{name} ran longer than CHECK_TIMEOUT={config.check_timeout} s: make it faster or raise "
            f"CHECK_TIMEOUT; the output is kept in {config.staging}",
            "check",
        )
    if code != 0:
        said = verdict(output.decode(errors="replace"))
        raise RunFailed(
            exits.CHECK,
            f"{name} rejected the output (exit {code}): {said}; the rejected data is kept in "
            f"{config.staging}",
            "check",
        )
