"""The run's report: the executed notebook and its HTML, check.txt and manifest.json, stored under
REPORT_URI/date=D/RUN_ID/ whatever the outcome."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from runner.locations import Location, aws_client, aws_problem

log = logging.getLogger("runner")

CONTENT_TYPES = {
    ".html": "text/html",
    ".json": "application/json",
    ".ipynb": "application/x-ipynb+json",
    ".txt": "text/plain",
}


class HtmlReport:
    """Renders the executed notebook as HTML off the critical path: nbconvert is imported while the notebook
    runs, and the page is rendered while the check runs."""

    def __init__(self, executed: Path, html: Path) -> None:
        self.executed, self.html = executed, html
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._work, name="report", daemon=True)
        self.problem = ""

    def start(self) -> HtmlReport:
        self._thread.start()
        return self

    def render(self) -> None:
        """The notebook has ended: render now (in the background)."""
        self._ready.set()

    def wait(self) -> None:
        self._ready.set()
        self._thread.join()

    def _work(self) -> None:
        try:
            import nbformat
            from nbconvert import HTMLExporter

            exporter = HTMLExporter()
            self._ready.wait()
            if self.executed.exists():
                body, _ = exporter.from_notebook_node(nbformat.read(self.executed, as_version=4))
                self.html.write_text(body, encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 -- the executed notebook is kept either way
            self.problem = f"{type(exc).__name__}: {exc}"
            log.warning(
                "the HTML report could not be rendered (%s); the executed notebook is kept", self.problem
            )


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


def write_and_store(report_dir: Path, manifest: dict[str, Any], dest: Location | None) -> str:
    """manifest.json written, the folder stored; returns '' or why the report could not be stored."""
    (report_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if dest is None:
        return ""
    try:
        store(report_dir, dest)
    except Exception as exc:  # noqa: BLE001 -- losing the report must not change the run's exit code
        log.warning("could not store the report in %s (%s)", dest, aws_problem(exc))
        return f"not stored: writing {dest} failed ({aws_problem(exc)})"
    return ""


def console_link(loc: Location, region: str) -> str:
    if not loc.is_s3:
        return loc.uri
    return f"https://s3.console.aws.amazon.com/s3/buckets/{loc.bucket}?region={region}&prefix={loc.prefix()}"
