"""A report read as an engineer reads it: Debian's chromium, headless, driven by Playwright, every request it
makes recorded. The page's visible text, where its parts are, and a screenshot (kept in ARTEFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import REPO

ARTEFACTS = Path(os.environ.get("TEST_ARTEFACTS") or REPO / ".artefacts") / "reports"
# As the machine's probe found: without the background-networking flags chromium calls Google at start.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
PHONE = {"width": 390, "height": 844}


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("chromium is not installed: run `make test`, which installs Debian's chromium")
    return found


@dataclass
class Seen:
    text: str  # the page's visible text (innerText of the body)
    requests: list[str]  # every URL the browser asked for, the page's own first
    title: str
    header_bottom: float  # where the run's header ends on the page
    first_cell_top: float | None  # where the notebook's first cell starts
    flags: dict[str, Any] = field(default_factory=dict)  # what a hostile script would have set, if it ran
    phone_overflow: float = 0.0  # how much wider than a phone's screen the header is (0: it fits)
    header_on_top: bool = False  # what is painted where the status is belongs to the header
    header_anchors: dict[str, bool] = field(
        default_factory=dict
    )  # the header's #links: does each lead somewhere


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def read(launched: Any, page_file: Path, shot: str) -> Seen:
    """Opens the report as a file (as it is opened from a download), reads it, and keeps screenshots."""
    context = launched.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_file.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # anything deferred (a timer, a lazy image) has its chance to ask
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{shot}.png"))
    page.screenshot(path=str(ARTEFACTS / f"{shot}-header.png"), clip=_box(page, "header") or None)
    on_top = page.evaluate(
        "() => { const s = document.querySelector('header p'); if (!s) return false;"
        " const r = s.getBoundingClientRect();"
        " const e = document.elementFromPoint(r.left + 5, r.top + r.height / 2);"
        " return !!e && !!e.closest('header'); }"
    )
    header = _box(page, "header")
    cell = _box(page, ".jp-Cell")
    anchors = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('header a[href^=\"#\"]')]"
        ".map(a => [a.getAttribute('href'), !!document.getElementById(a.getAttribute('href').slice(1))]))"
    )
    # whatever a reader might click in the notebook, clicked
    page.evaluate(
        "() => document.querySelectorAll('main a, main button, main input').forEach(x => x.click())"
    )
    page.wait_for_timeout(300)
    flags = page.evaluate("() => ({pwned: window.PWNED || null, title: document.title})")
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(ARTEFACTS / f"{shot}-phone.png"))
    overflow = page.evaluate(
        "() => { const h = document.querySelector('header');"
        " return h ? Math.max(0, h.scrollWidth - window.innerWidth) : 0; }"
    )
    seen = Seen(
        text=page.inner_text("body"),
        requests=requests,
        title=page.title(),
        header_bottom=header["y"] + header["height"] if header else 0.0,
        first_cell_top=cell["y"] if cell else None,
        flags=flags,
        phone_overflow=float(overflow),
        header_anchors=anchors,
        header_on_top=bool(on_top),
    )
    context.close()
    return seen


def _box(page: Any, selector: str) -> dict[str, float] | None:
    element = page.query_selector(selector)
    return element.bounding_box() if element else None
