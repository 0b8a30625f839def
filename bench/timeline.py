"""The timeline of one run, for `make bench`: when each step of the runner starts and ends, seconds after
`docker run` was called; and what each library the run imports costs, in the image.

The model image is run as the bench runs it (the full snapshot, the daily run's capabilities), with two
additions in an image of the bench's own, derived from it: bench/trace_run.py, loaded before the runner,
marks each step on stderr; the entrypoint marks when it starts. Papermill's own lines mark the cells, the
kernel's first line its start. The imports are timed apart, in a fresh process of the runner's user (the
runner's Python, as the entrypoint starts it) or the notebook's (the kernel's), one library after another
in the order a run imports them (`-X importtime` cannot tell the run's threads apart).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRY = "/opt/notebook-runner/run_notebook.sh"
RUNNER_IMPORT = "from runner.run import main"
TRACE = re.compile(r"^\[trace\] (\d+\.\d+) (.+)$")
# (what, the modules, whose: runner or notebook): in the order a run imports them
IMPORTS = [
    ("the runner's own modules", ["runner.run"], "runner"),
    ("jupyter_client (the kernel's manager)", ["jupyter_client.manager"], "runner"),
    ("papermill", ["papermill"], "runner"),
    ("nbconvert (the report)", ["nbconvert"], "runner"),
    ("pyarrow (the checked rows)", ["pyarrow", "pyarrow.parquet"], "runner"),
    ("PyIceberg and SQLAlchemy (the commit)",
     ["pyiceberg.catalog.sql", "pyiceberg.io.pyarrow", "pyiceberg.table", "pyiceberg.expressions"], "runner"),
    ("the kernel: ipykernel and IPython", ["ipykernel.kernelapp", "IPython"], "notebook"),
    ("the kernel: the debugger (ipykernel.debugger, debugpy)", ["ipykernel.debugger"], "notebook"),
]  # fmt: skip
# Run in the image: imports each group in turn, prints the seconds each took (nan: it could not be imported).
TIME_IMPORTS = """
import glob, importlib, sys, time
if sys.argv[1] == "runner":  # the runner's path, as run_notebook.sh makes it
    sys.path[:0] = ["/opt/notebook-runner", *glob.glob("/opt/notebook-runner/venv/lib/python3*/site-*")]
for group in sys.argv[2:]:
    start = time.perf_counter()
    try:
        for name in group.split(","):
            importlib.import_module(name)
        print(f"{time.perf_counter() - start:.4f}")
    except ImportError:
        print("nan")
"""
PYTHONS = {
    "runner": ["/opt/notebook-runner/venv/bin/python", "-I", "-S"],  # as run_notebook.sh starts it
    "notebook": ["/opt/venv/bin/python"],  # as the kernel starts
}
USERS = {"runner": "10001", "notebook": "10002"}
# Lines of the run's own output that mark a moment: (pattern, event, first or last occurrence)
MOMENTS = [
    (re.compile(r"^\[IPKernelApp\]"), "the kernel's first line (its app initialising)", "first"),
    (re.compile(r"Executing Cell 1-"), "first cell starts", "first"),
    (re.compile(r"Ending Cell \d+-"), "last cell ends", "last"),
    (re.compile(r"^notebook-runner: run "), "the run's last line", "last"),
]


@dataclass(frozen=True)
class Timeline:
    events: list[tuple[float, str]]  # (seconds after docker run, event), in order

    @property
    def total(self) -> float:
        return self.events[-1][0]


def traced_image(model: str, tag: str) -> str:
    """model with bench/trace_run.py loaded before the runner and the entrypoint's start marked."""
    entry = subprocess.run(["docker", "run", "--rm", "--entrypoint", "/bin/cat", model, ENTRY],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert RUNNER_IMPORT in entry, f"{ENTRY} of {model} no longer imports the runner as the trace expects"
    started = "set -Eeuo pipefail\nprintf '[trace] %s entrypoint\\n' \"$(date +%s.%N)\" >&2\n"
    entry = entry.replace("set -Eeuo pipefail\n", started, 1)
    entry = entry.replace(RUNNER_IMPORT, f"import trace_run; {RUNNER_IMPORT}")
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "run_notebook.sh").write_text(entry)
        (context / "run_notebook.sh").chmod(0o755)
        (context / "trace_run.py").write_text((HERE / "trace_run.py").read_text())
        (context / "Dockerfile").write_text(
            f"FROM {model}\nCOPY trace_run.py run_notebook.sh /opt/notebook-runner/\n"
        )
        subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], capture_output=True, check=True)
    return tag


def run_traced(command: Sequence[str]) -> Timeline:
    """command (a docker run of a traced image), its stderr read as it comes."""
    start = time.time()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    events: list[tuple[float, str]] = []
    seen: dict[str, tuple[float, str]] = {}
    lines: list[str] = []
    for line in proc.stderr:
        now = time.time() - start
        lines.append(line)
        if found := TRACE.match(line.strip()):
            events.append((float(found[1]) - start, found[2]))
        else:
            for pattern, event, which in MOMENTS:
                if pattern.search(line) and (which == "last" or event not in seen):
                    seen[event] = (now, event)
    code = proc.wait()
    assert code == 0, f"the traced run exited {code}:\n{''.join(lines)[-3000:]}"
    events += seen.values()
    events.append((time.time() - start, "container gone (docker run returns)"))
    return Timeline(sorted(events))


def median_run(runs: list[Timeline]) -> Timeline:
    """The run whose total is the median of runs (one real run, not a mix of several)."""
    middle = statistics.median_low([run.total for run in runs])
    return next(run for run in runs if run.total == middle)


def rows(before: Timeline, after: Timeline) -> list[str]:
    """A Markdown table: each event of the run, seconds after docker run, before and after, and the seconds
    since the previous event (after)."""
    was = {event: at for at, event in reversed(before.events)}  # the first occurrence of each
    out = ["| event | before (s) | after (s) | after: since the previous (s) |", "|---|---|---|---|"]
    previous = 0.0
    for at, event in after.events:
        old = f"{was[event]:.2f}" if event in was else "-"
        out.append(f"| {event} | {old} | {at:.2f} | {at - previous:+.2f} |")
        previous = at
    return out


def import_costs(image: str, repeat: int = 3) -> dict[str, float]:
    """Seconds each group of IMPORTS takes in image, each after those before it in one fresh process per
    user, as in a run; the median of repeat processes (nan: the image could not import it)."""
    costs: dict[str, list[float]] = {}
    for whose, python in PYTHONS.items():
        groups = [(what, ",".join(modules)) for what, modules, user in IMPORTS if user == whose]
        for _ in range(repeat):
            done = subprocess.run(
                ["docker", "run", "--rm", "--user", USERS[whose], "--entrypoint", python[0], image,
                 *python[1:], "-c", TIME_IMPORTS, whose, *(modules for _, modules in groups)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            for (what, _), took in zip(groups, done.stdout.split(), strict=True):
                costs.setdefault(what, []).append(float(took))
    return {what: statistics.median(runs) for what, runs in costs.items()}


def import_rows(before: dict[str, float], after: dict[str, float]) -> list[str]:
    out = ["| import, in a fresh process, after those above it | before (s) | after (s) |", "|---|---|---|"]
    for what, _, _ in IMPORTS:
        out.append(f"| {what} | {before.get(what, float('nan')):.2f} | {after.get(what, float('nan')):.2f} |")
    return out
