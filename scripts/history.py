"""history.py -- print a model's runs for make runs, one line a run, from their manifests.

    python3 -I scripts/history.py FOLDER DAYS [URI]

FOLDER is laid out as the runner writes REPORT_URI: date=YYYY-MM-DD/<run id>/manifest.json; nothing deeper is
read (a run's staging folder, which its notebook wrote, lies deeper). Without URI, FOLDER is the report folder
itself and a run is listed when its manifest was modified in the last DAYS days (the file's mtime). With URI,
FOLDER holds the manifests scripts/runs.sh downloaded from URI (S3), chosen by their LastModified already:
each is listed, and named by its place under URI.

Prints a title, a header naming the columns, one line a run, newest first (by run date, then by start time),
and a summary (N runs, K failed). A field the manifest lacks (an older runner's) shows as ?, a null one as -,
and a manifest that is not a JSON object as unreadable. Exits 0; 1 when no run is found; 2 for bad input.
"""

from __future__ import annotations

import json
import re
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_DAYS = 366
MANIFEST = "manifest.json"
MISSING = "?"  # the manifest has no such field (an older runner's)
NONE = "-"  # the field is null or empty: a succeeded run has no failing step, a failed one no rows
DAY = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # the runner's own rule (runner/config.py)
HEADER = ("DATE", "RUN ID", "STATUS", "EXIT", "STEP", "ROWS", "DURATION", "VERSION", "REPORT")
RIGHT = {"EXIT", "ROWS", "DURATION"}


@dataclass(frozen=True)
class Run:
    date: str  # the run's day and id: its folder's names
    run_id: str
    where: str  # the manifest's location, as the user knows it
    manifest: dict[str, Any] | None  # None: unreadable
    problem: str = ""  # why it is unreadable

    @property
    def started(self) -> str:
        value = (self.manifest or {}).get("started_at")
        return value if isinstance(value, str) else ""


def manifests(folder: Path, since: float | None) -> list[Path]:
    """FOLDER's date=D/<run id>/manifest.json files (regular files, no symbolic link on the way), modified at
    or after `since` when it is given."""
    found = []
    for day in folder.iterdir():
        if not DAY.match(day.name) or day.is_symlink() or not day.is_dir():
            continue
        for run in day.iterdir():
            path = run / MANIFEST
            if not RUN_ID.match(run.name) or run.is_symlink():
                continue
            try:
                status = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(status.st_mode) and (since is None or status.st_mtime >= since):
                found.append(path)
    return found


def read(path: Path, where: str) -> Run:
    date, run_id = path.parent.parent.name.removeprefix("date="), path.parent.name
    location = f"{where}/date={date}/{run_id}/{MANIFEST}"
    try:
        manifest = json.loads(path.read_bytes())
    except OSError as exc:
        return Run(date, run_id, location, None, f"cannot be read: {type(exc).__name__}")
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past what json reads
        return Run(date, run_id, location, None, "not JSON")
    if not isinstance(manifest, dict):
        return Run(date, run_id, location, None, "not a JSON object")
    return Run(date, run_id, location, manifest)


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return str(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


def field(manifest: dict[str, Any], key: str, show: Callable[[Any], str] = str) -> str:
    if key not in manifest:
        return MISSING
    value = manifest[key]
    return NONE if value is None or value == "" else show(value)


def short_image(image: str) -> str:
    """An image reference in a few characters: @ and the digest's first 12 hex digits, else its tag."""
    name, _, digest = image.partition("@")
    if digest:
        return "@" + digest.removeprefix("sha256:")[:12]
    last = name.rsplit("/", 1)[-1]
    return last.partition(":")[2] or last


def version(manifest: dict[str, Any]) -> str:
    """The commit the image was built from (12 digits), else its image shortened."""
    commit, image = manifest.get("commit"), manifest.get("image")
    if isinstance(commit, str) and commit and commit != "unknown":
        return commit[:12]
    if isinstance(image, str) and image and image != "unknown":
        return short_image(image)
    return MISSING


def report(run: Run) -> str:
    manifest = run.manifest or {}
    for key in ("report", "report_uri"):
        if isinstance(manifest.get(key), str) and manifest[key]:
            return manifest[key]
    return run.where.removesuffix(MANIFEST)


def cells(run: Run) -> tuple[str, ...]:
    m = run.manifest
    if m is None:
        return (run.date, run.run_id, "unreadable", *[MISSING] * 5, f"{run.where} ({run.problem})")
    return (
        run.date, run.run_id, field(m, "status"), field(m, "exit_code"), field(m, "failed_step"),
        field(m, "rows"), field(m, "duration_seconds", duration), version(m), report(run),
    )  # fmt: skip


def printable(text: str) -> str:
    """One line, whatever a manifest holds: control characters as spaces."""
    return "".join(c if c.isprintable() else " " for c in text)


def table(runs: list[Run]) -> list[str]:
    rows = [HEADER] + [tuple(printable(c) for c in cells(r)) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for row in rows:
        padded = [
            c.rjust(w) if name in RIGHT else c.ljust(w)
            for c, w, name in zip(row, widths, HEADER, strict=False)
        ]
        lines.append("  ".join([*padded, row[-1]]))
    return lines


def summary(runs: list[Run]) -> str:
    statuses = [(r.manifest or {}).get("status") if r.manifest is not None else "unreadable" for r in runs]
    failed = sum(s in ("failed", "stopped") for s in statuses)
    said = f"{len(runs)} run{'' if len(runs) == 1 else 's'}, {failed} failed"
    if stopped := statuses.count("stopped"):
        said += f" ({stopped} of them stopped)"
    if unreadable := statuses.count("unreadable"):
        said += f", {unreadable} unreadable"
    if unknown := sum(s not in ("succeeded", "failed", "stopped", "unreadable") for s in statuses):
        said += f", {unknown} of unknown status"
    return said


def fail(message: str, code: int) -> int:
    print(f"runs: {message}", file=sys.stderr)
    return code


def main(argv: list[str], now: float | None = None) -> int:
    if len(argv) not in (2, 3):
        return fail(__doc__.strip().splitlines()[2].strip(), 2)
    folder, days = Path(argv[0]), argv[1]
    if not re.fullmatch(r"[1-9][0-9]{0,2}", days) or int(days) > MAX_DAYS:
        return fail(f"DAYS={days} is not valid: a whole number from 1 to {MAX_DAYS} (e.g. DAYS=30)", 2)
    listed = len(argv) == 3
    where = argv[2].rstrip("/") if listed else argv[0].rstrip("/")
    if not folder.is_dir():
        return fail(
            f"no report folder {folder}: name the one the runs wrote, OUTPUT_URI=<their OUTPUT_URI> (its "
            "_runs/; make run's is OUTPUT_URI=output) or REPORT_URI=<their REPORT_URI>",
            2,
        )
    since = None if listed else (time.time() if now is None else now) - int(days) * 86400
    runs = [read(path, where) for path in manifests(folder, since)]
    if not runs:
        return fail(
            f"no run under {where} stored its manifest in the last {days} days: list more days (DAYS=, at "
            f"most {MAX_DAYS}), or name the location the runs write to",
            1,
        )
    runs.sort(key=lambda r: (r.date, r.started, r.run_id), reverse=True)
    print(
        f"Runs under {where} whose manifest was stored in the last {days} days, newest first "
        "(by run date, then start):"
    )
    print("\n".join(table(runs)))
    if any(MISSING in cells(r)[2:-1] for r in runs if r.manifest is not None):
        print(f"{MISSING} = not in the manifest (an older runner's), {NONE} = none")
    print(summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
