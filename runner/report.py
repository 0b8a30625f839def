"""The run's report: the executed notebook and its HTML, check.txt and manifest.json, stored under
REPORT_URI/date=D/RUN_ID/ whatever the outcome."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from runner import redaction
from runner.locations import Location, aws_client, aws_problem
from runner.publish import create_new, open_regular

log = logging.getLogger("runner")

CONTENT_TYPES = {
    ".html": "text/html",
    ".json": "application/json",
    ".ipynb": "application/x-ipynb+json",
    ".txt": "text/plain",
}


RENDER_SECONDS = 600  # the longest the run waits for its HTML report
LARGEST = 512 * 2**20  # a report file larger than this is the notebook's doing: it is not kept


def read_regular(path: Path) -> bytes | None:
    """A file the notebook's processes could have replaced (they run as the same user): read only if it is
    a regular file, never through a link, never blocking on a FIFO, never unbounded; None otherwise."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            data = f.read(LARGEST + 1)
    except OSError:
        return None
    return data if len(data) <= LARGEST else None


class HtmlReport:
    """Renders the executed notebook as HTML off the critical path: nbconvert is imported while the notebook
    runs, and the page is rendered, in memory, while the check runs."""

    def __init__(self, executed: Path) -> None:
        self.executed = executed
        self.body: str | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._work, name="report", daemon=True)

    def start(self) -> HtmlReport:
        self._thread.start()
        return self

    def render(self) -> None:
        """The notebook has ended and its processes are gone: render now (in the background)."""
        self._ready.set()

    def wait(self) -> str | None:
        self._ready.set()
        self._thread.join(timeout=RENDER_SECONDS)
        if self._thread.is_alive():
            log.warning("the HTML report took longer than %d s: the run goes on without it", RENDER_SECONDS)
            return None
        return self.body

    def _work(self) -> None:
        try:
            import nbformat
            from nbconvert import HTMLExporter

            exporter = HTMLExporter(sanitize_html=True)  # the notebook's outputs are untrusted HTML
            self._ready.wait()
            # rendered from the redacted notebook: the page never holds a secret, however nbconvert escapes it
            data = redaction.ACTIVE.file_bytes(read_regular(self.executed), self.executed.name)
            if data is not None:
                self.body, _ = exporter.from_notebook_node(nbformat.reads(data.decode(), as_version=4))
        except Exception as exc:  # noqa: BLE001 -- the executed notebook is kept either way
            log.warning("the HTML report could not be rendered (%s); the executed notebook is kept", exc)


def store(report_dir: Path, dest: Location) -> None:
    """Every file of the report folder to its place in REPORT_URI (S3 or a folder)."""
    files = sorted(p for p in report_dir.iterdir() if p.is_file())
    if dest.is_s3:
        s3 = aws_client()
        for path in files:
            extra = {"ContentType": CONTENT_TYPES.get(path.suffix, "application/octet-stream")}
            s3.upload_file(str(path), dest.bucket, dest.prefix() + path.name, ExtraArgs=extra)
    else:
        dest.path.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, dest.path / path.name)


def assemble(work: Path, files: dict[str, bytes | None]) -> Path:
    """The report's files, written anew in a folder made now, after every process of the notebook and the
    check has gone: none of them can have been swapped for a link or a FIFO."""
    folder = Path(tempfile.mkdtemp(prefix="report.", dir=work))
    for name, data in files.items():
        if data is not None:
            with create_new(folder / name) as f:
                f.write(data)
    return folder


def write_and_store(folder: Path, manifest: dict[str, Any], dest: Location | None) -> str:
    """manifest.json written, the folder stored; returns '' or why the report could not be stored."""
    with create_new(folder / "manifest.json") as f:
        f.write((json.dumps(manifest, indent=2) + "\n").encode())
    if dest is None:
        return ""
    try:
        store(folder, dest)
    except Exception as exc:  # noqa: BLE001 -- losing the report must not change the run's exit code
        log.warning("could not store the report in %s (%s)", dest, aws_problem(exc))
        return f"not stored: writing {dest} failed ({aws_problem(exc)})"
    return ""


def console_link(loc: Location, region: str) -> str:
    if not loc.is_s3:
        return loc.uri
    return f"https://s3.console.aws.amazon.com/s3/buckets/{loc.bucket}?region={region}&prefix={loc.prefix()}"
