"""The run's report: the executed notebook and its HTML, check.txt and manifest.json, stored under
REPORT_URI/date=D/RUN_ID/ whatever the outcome.

The report lives in the runner's memory until it is stored: the executed notebook (papermill writes it to
memory), its HTML (rendered in memory), the check's output (kept as it streams) and the manifest. Storing
it needs no local disk, so a notebook that fills the task's storage cannot take the run's record with it;
each file is stored on its own, and one that cannot be stored is named, never the run's exit code changed.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from runner import redaction
from runner.files import replace_file
from runner.locations import Location, aws_client, aws_problem

log = logging.getLogger("runner")

CONTENT_TYPES = {
    ".html": "text/html",
    ".json": "application/json",
    ".ipynb": "application/x-ipynb+json",
    ".txt": "text/plain",
}
RENDER_SECONDS = 600  # the longest the run waits for its HTML report
MANIFEST = "manifest.json"


class HtmlReport:
    """Renders the executed notebook as HTML off the critical path: nbconvert is imported while the notebook
    runs, and the page is rendered, in memory, while the check runs."""

    def __init__(self, executed: Callable[[], bytes | None], name: str) -> None:
        self.executed = executed
        self.name = name
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
        if self._thread.ident is None:
            return None  # never started: the run ended before the notebook did
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

            # The notebook's outputs are untrusted HTML; no template folder but the runner's own (nbconvert
            # would also look in the working directory it was created in, extra_template_basedirs).
            exporter = HTMLExporter(sanitize_html=True, extra_template_basedirs=[])
            self._ready.wait()
            # rendered from the redacted notebook: the page never holds a secret, however nbconvert escapes it
            data = redaction.ACTIVE.file_bytes(self.executed(), self.name)
            if data is not None:
                self.body, _ = exporter.from_notebook_node(nbformat.reads(data.decode(), as_version=4))
        except Exception as exc:  # noqa: BLE001 -- the executed notebook is kept either way
            log.warning("the HTML report could not be rendered (%s); the executed notebook is kept", exc)


def store_file(dest: Location, name: str, data: bytes) -> None:
    """One file of the report at its place in REPORT_URI, from memory (S3 or a folder)."""
    if dest.is_s3:
        extra = {"ContentType": CONTENT_TYPES.get("." + name.rsplit(".", 1)[-1], "application/octet-stream")}
        aws_client().upload_fileobj(io.BytesIO(data), dest.bucket, dest.prefix() + name, ExtraArgs=extra)
    else:
        dest.path.mkdir(parents=True, exist_ok=True)
        replace_file(dest.path / name, data)


def store(dest: Location, files: dict[str, bytes]) -> dict[str, str]:
    """Each file stored on its own; returns {name: why it was not stored} for those that were not."""
    lost = {}
    for name, data in files.items():
        try:
            store_file(dest, name, data)
        except Exception as exc:  # noqa: BLE001 -- losing a report file must not change the run's exit code
            log.warning("could not store %s in %s (%s)", name, dest, aws_problem(exc))
            lost[name] = f"writing {dest}/{name} failed ({aws_problem(exc)})"
    return lost


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()


def console_link(loc: Location, region: str) -> str:
    if not loc.is_s3:
        return loc.uri
    return f"https://s3.console.aws.amazon.com/s3/buckets/{loc.bucket}?region={region}&prefix={loc.prefix()}"
