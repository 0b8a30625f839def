"""The report as an engineer reads it: its page opened from the file in headless chromium, read as rendered
text (never the HTML source), its requests watched, screenshots kept in .artefacts/reports/. Pages of real
runs in the container (usp succeeding, a notebook failing in a cell, a check failing, a hostile notebook),
and one rendered in process (a DataFrame, a Markdown table and a PNG plot)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import browser
import nbformat
import pytest
from support import (
    SAMPLE_DATE,
    SAMPLE_LAKE,
    docker_run,
    http_server,
    make_notebook,
    run_dirs,
    writable_dir,
    write_rows_cell,
)
from test_page import displays_notebook, manifest

from runner import page


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    with browser.browser() as launched:
        yield launched


def assert_reads_well(seen: browser.Seen, *shown: str, markup_in_code: bool = False) -> None:
    """Rendered, not escaped (but where a cell's code writes markup); the run's header above the first
    cell; nothing asked of any server."""
    for text in shown:
        assert text in seen.text, (text, seen.text[:3000])
    for markup in ("<h1", "<h2", "<th", "<td", "&lt;", "&gt;", "<div", "<p>"):
        assert markup_in_code or markup not in seen.text, (markup, seen.text[:3000])
    assert seen.first_cell_top is None or seen.header_bottom <= seen.first_cell_top
    assert len(seen.requests) == 1 and seen.requests[0].startswith("file://"), seen.requests
    assert all(seen.header_anchors.values()), seen.header_anchors
    assert seen.phone_overflow == 0
    assert seen.header_on_top  # nothing of the notebook's is painted over the run's status


# JupyterLab's own overlay class (absolute, full size, z-index 10) around a copy of a succeeded header
SPOOF = ('<div class="jp-Spinner"><div class="jp-Collapser-child" style="background-color: white">'
         '<h2 style="color: green">SUCCEEDED</h2></div></div>')  # fmt: skip


def test_a_frame_a_markdown_table_and_a_plot_read_as_jupyter_shows_them(chrome: Any, tmp_path: Path) -> None:
    node = nbformat.reads(displays_notebook().decode(), as_version=4)
    node.cells[1].outputs[0]["data"]["text/html"] += SPOOF  # a failed run dressed as a success
    cells = page.render(nbformat.writes(node).encode())
    run = page.Header(manifest(message="usp raised KeyError in cell [3]: 'destination'"), None, [],
                      "cell [3] ('raise KeyError')")  # fmt: skip
    (tmp_path / "usp.html").write_text(page.document(run, cells))

    seen = browser.read(chrome, tmp_path / "usp.html", "displays")

    assert_reads_well(seen, "Unique selling points", "kind\tcount", "usp\taccommodations", "spa\t3",
                      "FAILED — the notebook failed (exit 10)", "KeyError: 'destination'")  # fmt: skip
    assert seen.header_anchors == {f"#{cells.failing_anchor}": True}


# --- pages of real runs ----------------------------------------------------------------------------------

HOSTILE = """
from IPython.display import HTML, Javascript, Markdown, display
server = "http://127.0.0.1:{port}"
display(HTML(f'''<script>window.PWNED = 1; document.title = "PWNED"</script>
<img src="{{server}}/img" onerror="window.PWNED = 2">
<a href="javascript:window.PWNED = 3">a javascript link</a>
<a href="{{server}}/link">a link that acts</a>
<form action="{{server}}/form"><input name="q" value="1"><button>send</button></form>
<iframe src="{{server}}/frame"></iframe><link rel="stylesheet" href="{{server}}/css">
<style>@import url({{server}}/import); .nbp-status {{{{ display: none }}}}</style>
<div style="background-image: url({{server}}/bg)">a remote background</div>
<svg onload="window.PWNED = 4"><image href="{{server}}/svg"/></svg>
<p class="nbp-status">SUCCEEDED (said the notebook)</p>'''))
display(Javascript("window.PWNED = 5"))
display(Markdown(f"![remote]({{server}}/md.png) [md javascript](javascript:window.PWNED=6) "
                 "<img src=x onerror='window.PWNED=7'>"))
print("<script>window.PWNED = 8</script> printed, shown as text")
"""


class Hits(BaseHTTPRequestHandler):
    seen: list[str] = []  # noqa: RUF012 -- shared by the handler's instances on purpose

    def do_GET(self) -> None:
        Hits.seen.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def attacker_port() -> Iterator[int]:
    with http_server(Hits) as port:
        yield port


def run(image: str, out: Path, nb_dir: Path | None = None, notebook: str = "", **env: str) -> Path:
    """One run in the container; returns its report folder."""
    volumes = {SAMPLE_LAKE: "/data/lake:ro", out: "/output"}
    base = {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": SAMPLE_DATE}
    if nb_dir is not None:
        volumes[nb_dir] = "/nb:ro"
        base["NOTEBOOK"] = f"/nb/{notebook}"
    done = docker_run(image, {**base, **env}, volumes)
    assert run_dirs(out), done.stderr[-3000:]
    (folder,) = run_dirs(out)
    return folder


@pytest.fixture(scope="module")
def reports(
    runner_image: str, tmp_path_factory: pytest.TempPathFactory, attacker_port: int
) -> dict[str, Path]:
    """The pages of four runs: usp succeeding, a cell failing, a check failing, a hostile notebook."""
    root = tmp_path_factory.mktemp("pages")
    nb = root / "nb"
    make_notebook(nb / "broken.ipynb", "x = 1", "rows = {'usp': 'spa'}\nrows['destination']")
    make_notebook(nb / "bad_output.ipynb", write_rows_cell("[(1, 101, 'spa', 7)]"))
    make_notebook(nb / "hostile.ipynb", HOSTILE.format(port=attacker_port), write_rows_cell())
    found = {"usp": run(runner_image, writable_dir(root / "usp"))}
    for name in ("broken", "bad_output", "hostile"):
        found[name] = run(runner_image, writable_dir(root / name), nb, f"{name}.ipynb")
    return found


def opened(chrome: Any, reports: dict[str, Path], name: str) -> tuple[browser.Seen, dict]:
    facts = json.loads((reports[name] / "manifest.json").read_text())
    return browser.read(chrome, reports[name] / f"{name}.html", name), facts


@pytest.mark.docker
def test_a_successful_usp_run_reads_as_jupyter_shows_it_under_its_summary(chrome: Any, reports: dict) -> None:
    seen, facts = opened(chrome, reports, "usp")

    assert_reads_well(
        seen, "SUCCEEDED", "Unique selling points with their destination", "Distinct destinations per USP",
        f"Rows published\n{facts['rows']}", str(facts["snapshot_id"]), facts["run_id"], "VALIDATION PASSED",
        "manifest.json", "check.txt", "staging folder",
    )  # fmt: skip
    assert seen.text.index("SUCCEEDED") < seen.text.index("Unique selling points with their destination")


@pytest.mark.docker
def test_a_run_failing_in_a_cell_names_the_cell_links_it_and_shows_its_traceback(
    chrome: Any, reports: dict
) -> None:
    seen, facts = opened(chrome, reports, "broken")

    assert_reads_well(seen, "FAILED — the notebook failed (exit 10)", "Failed step\nnotebook", "KeyError",
                      "Rows published\nnone", "Check\ndid not run")  # fmt: skip
    (anchor,) = seen.header_anchors
    assert anchor.startswith("#cell-id=")
    assert "Traceback" in seen.text or "KeyError: 'destination'" in seen.text
    assert facts["exit_code"] == 10


@pytest.mark.docker
def test_a_run_whose_check_fails_shows_the_verdict_and_the_check_s_output(chrome: Any, reports: dict) -> None:
    seen, facts = opened(chrome, reports, "bad_output")

    assert_reads_well(seen, "FAILED — the check failed (exit 20)", "VALIDATION FAILED",
                      "Rows published\nnone", "accommodation_ns: 1 rows not in {100}")  # fmt: skip
    assert facts["check_verdict"] and facts["check_verdict"] in seen.text


@pytest.mark.docker
def test_a_hostile_notebook_s_output_runs_nothing_and_loads_nothing(chrome: Any, reports: dict) -> None:
    Hits.seen.clear()

    seen, _ = opened(chrome, reports, "hostile")

    assert Hits.seen == []  # the attacker's server was never asked, whatever was clicked
    assert seen.flags == {"pwned": None, "title": seen.title} and seen.title != "PWNED"
    assert_reads_well(seen, "SUCCEEDED", "a javascript link", "a link that acts", "a remote background",
                      "[JavaScript output: not run in the report]", "printed, shown as text",
                      markup_in_code=True)  # fmt: skip
    assert seen.text.startswith(
        "SUCCEEDED"
    )  # the header's; the notebook's own "SUCCEEDED" is below, unstyled
