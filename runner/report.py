"""The run's report: the executed notebook and its HTML, check.txt and manifest.json, stored under
REPORT_URI/date=D/RUN_ID/ whatever the outcome.

The report lives in the runner's memory until it is stored: the executed notebook (papermill writes it to
memory), its HTML (rendered in memory), the check's output (kept as it streams) and the manifest. Storing
it needs no local disk, so a notebook that fills the task's storage cannot take the run's record with it;
each file is stored on its own, and one that cannot be stored is named, never the run's exit code changed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from runner import page, redaction, storage
from runner.locations import Location, aws_problem

log = logging.getLogger("runner")

RENDER_SECONDS = 600  # the longest the run waits for its HTML report
MANIFEST = "manifest.json"


class HtmlReport:
    """Renders the executed notebook's cells as HTML off the critical path (page.py): nbconvert is imported
    while the notebook runs, and the cells are rendered, in memory, while the check runs; the page around
    them is made when the run's outcome is known (page.document)."""

    def __init__(self, executed: Callable[[], bytes | None], name: str) -> None:
        self.executed = executed
        self.name = name
        self.cells: page.Cells | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._work, name="report", daemon=True)

    def start(self) -> HtmlReport:
        self._thread.start()
        return self

    def render(self) -> None:
        """The notebook has ended and its processes are gone: render now (in the background)."""
        self._ready.set()

    def wait(self) -> page.Cells | None:
        if self._thread.ident is None:
            return None  # never started: the run ended before the notebook did
        self._ready.set()
        self._thread.join(timeout=RENDER_SECONDS)
        if self._thread.is_alive():
            log.warning("the HTML report took longer than %d s: the run goes on without it", RENDER_SECONDS)
            return None
        return self.cells

    def _work(self) -> None:
        try:
            import nbconvert  # noqa: F401 -- imported while the notebook runs

            self._ready.wait()
            # rendered from the redacted notebook: the page never holds a secret, however nbconvert escapes it
            data = redaction.ACTIVE.file_bytes(self.executed(), self.name)
            if data is not None:
                self.cells = redacted(page.render(data))
        except Exception as exc:  # noqa: BLE001 -- the executed notebook is kept either way
            log.warning("the HTML report could not be rendered (%s); the executed notebook is kept", exc)


def redacted(cells: page.Cells) -> page.Cells:
    """The cells as text redacted once more (what nbconvert made of the notebook), then cleaned again, so
    that a redaction can never make markup (a secret chosen to end an attribute); the page around them is
    never rewritten."""
    return replace(cells, html=page.clean(redaction.ACTIVE.text(cells.html)))


def store(dest: Location, files: dict[str, bytes]) -> dict[str, str]:
    """Each file stored on its own; returns {name: why it was not stored} for those that were not."""
    lost = {}
    target = storage.at(dest)
    for name, data in files.items():
        try:
            target.put(name, data)
        except Exception as exc:  # noqa: BLE001 -- losing a report file must not change the run's exit code
            log.warning("could not store %s in %s (%s)", name, dest, aws_problem(exc))
            lost[name] = f"writing {dest}/{name} failed ({aws_problem(exc)})"
    return lost


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()


def console_link(loc: Location, region: str) -> str:
    if not loc.is_s3:
        return loc.uri
    prefix = urllib.parse.quote(loc.prefix(), safe="/=")  # a key's '&', '#', '+' or space stays the key's
    return f"https://s3.console.aws.amazon.com/s3/buckets/{loc.bucket}?region={region}&prefix={prefix}"


def console_object_link(loc: Location, region: str) -> str:
    """An S3 object's page in the AWS console (its Open button shows it); a local file as it is."""
    if not loc.is_s3:
        return loc.uri
    key = urllib.parse.quote(loc.key, safe="/=")
    return f"https://s3.console.aws.amazon.com/s3/object/{loc.bucket}?region={region}&prefix={key}"


def latest_run(reports: Location, date: str, besides: str = "") -> tuple[Location, list[str]] | None:
    """Of the runs of `date` under REPORT_URI, the one whose manifest was stored last (other than the run
    `besides`): its folder and the names of its files; None when there is none."""
    day = reports.child(f"date={date}")
    runs: dict[str, tuple[float, list[str]]] = {}
    for entry in storage.at(day).files():
        run, _, name = entry.name.partition("/")
        _, names = runs.setdefault(run, (0.0, []))
        names.append(name)
        if name == MANIFEST:
            runs[run] = (entry.modified.timestamp(), names)
    stored = [(when, run, names) for run, (when, names) in runs.items() if when and run != besides]
    if not stored:
        return None
    _, run, names = max(stored)
    return day.child(run), names


def links(here: Location, run: RunPlace, files: set[str], region: str) -> list[tuple[str, str]]:
    """The header's links (label, href): the run's own files, its staging folder, and the previous run of its
    date and of the day before. Console links for S3, paths relative to the page for a folder. A neighbour
    that cannot be listed is left out, never the run's outcome changed."""

    def href(target: Location, folder: bool = False) -> str:
        if target.is_s3:
            return console_link(target, region) if folder else console_object_link(target, region)
        return os.path.relpath(target.uri, here.uri) + ("/" if folder else "")

    found = [(name, href(here.child(name))) for name in (MANIFEST, "check.txt") if name in files]
    found.append(("staging folder", href(run.staging, folder=True)))
    day_before = (dt.date.fromisoformat(run.date) - dt.timedelta(days=1)).isoformat()
    for label, date, besides in (("previous run of the day", run.date, run.run_id),
                                 (f"previous day ({day_before})", day_before, "")):  # fmt: skip
        try:
            latest = latest_run(run.reports, date, besides)
        except Exception as exc:  # noqa: BLE001 -- a link less, nothing more
            log.warning("the report's link to the %s was not made (%s)", label, aws_problem(exc))
            continue
        if latest is not None:
            folder, names = latest
            found.append((label, href(folder.child(run.page if run.page in names else MANIFEST))))
    return found


@dataclass(frozen=True)
class RunPlace:
    """Where a run's report lives among the others: REPORT_URI, its date, its id, its staging, its page."""

    reports: Location
    date: str
    run_id: str
    staging: Location
    page: str
