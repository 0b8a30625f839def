"""runner/page.py in process: the notebook's HTML cut to the allow-list, the run's header, the page around
them. Milliseconds each (but the one that renders with nbconvert); the browser reads pages in
test_report_browser.py."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from runner import page

# What a notebook's output or Markdown may carry, each with what must not survive it.
HOSTILE = {
    "script": ("<script>window.PWNED=1</script>", "<script"),
    "event handler": ('<img src="data:image/png;base64,AAAA" onerror="window.PWNED=1">', "onerror"),
    "javascript link": ('<a href="javascript:window.PWNED=1">click</a>', "javascript:"),
    "remote image": ('<img src="https://attacker.example/pixel.png">', "attacker.example"),
    "relative image": ('<img src="../../manifest.json">', "manifest.json"),
    "form": ('<form action="https://attacker.example/"><input name="q"><button>go</button></form>', "<form"),
    "link that acts": ('<a href="https://console.aws.amazon.com/approve">Approve</a>', "console.aws"),
    "style element": ("<style>.nbp-status{display:none}</style>", "<style"),
    "covering style": ('<div style="position:fixed;top:0;color:red">x</div>', "position"),
    "remote style": ('<div style="background-image:url(https://attacker.example/x)">x</div>', "attacker"),
    "header class": ('<p class="nbp-status nbp-ok">SUCCEEDED</p>', "nbp-"),
    "frame": ('<iframe src="https://attacker.example/"></iframe>', "iframe"),
    "svg script": ('<svg onload="window.PWNED=1"><script>1</script></svg>', "svg"),
    "meta refresh": ('<meta http-equiv="refresh" content="0;url=https://attacker.example/">', "refresh"),
    "base": ('<base href="https://attacker.example/">', "<base"),
    "stylesheet": ('<link rel="stylesheet" href="https://attacker.example/x.css">', "<link"),
    "object": ('<object data="https://attacker.example/x.swf"></object>', "<object"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_cells_keep_nothing_that_runs_loads_or_acts(name: str) -> None:
    fragment, forbidden = HOSTILE[name]
    cleaned = page.clean(f"<div class='jp-Cell'>{fragment}</div>")
    assert forbidden not in cleaned, cleaned


def test_the_cells_keep_what_jupyter_shows() -> None:
    shown = (
        '<h2 id="Totals">Totals</h2><table class="dataframe"><thead><tr><th>usp</th></tr></thead>'
        '<tbody><tr><td style="color: red; text-align: right">spa</td></tr></tbody></table>'
        '<img src="data:image/png;base64,iVBORw0KGgo=" width="20"><a href="#Totals">up</a>'
        '<span class="ansi-red-fg">KeyError</span>'
    )
    cleaned = page.clean(shown)
    kept_all = ('<h2 id="Totals">', "<th>usp</th>", 'class="dataframe"', "color:red", "text-align:right",
                'src="data:image/png;base64,iVBORw0KGgo="', 'href="#Totals"',
                'class="ansi-red-fg"')  # fmt: skip
    for kept in kept_all:
        assert kept in cleaned.replace("; ", ";").replace(": ", ":"), (kept, cleaned)


def png() -> str:
    """A 2x2 PNG, as a plotting library's output carries it."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw))
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")).decode()


def displays_notebook() -> bytes:
    """An executed notebook as Jupyter leaves it: Markdown with a table, a DataFrame, a plot, a failure."""
    import pandas as pd

    frame = pd.DataFrame({"usp": ["spa", "pool"], "accommodations": [3, 5]})
    failing = new_code_cell("raise KeyError('destination')", execution_count=3)
    failing.outputs = [new_output("error", ename="KeyError", evalue="'destination'",
                                  traceback=["\x1b[31mKeyError\x1b[0m: 'destination'"])]  # fmt: skip
    failing.metadata["papermill"] = {"status": "failed", "exception": True, "start_time": "2019-08-01"}
    cells = [
        new_markdown_cell("# Unique selling points\n\n| kind | count |\n|---|---|\n| spa | 3 |"),
        new_code_cell(
            "frame",
            execution_count=1,
            outputs=[
                new_output(
                    "execute_result",
                    data={"text/html": frame._repr_html_(), "text/plain": repr(frame)},
                    execution_count=1,
                )
            ],
        ),
        new_code_cell(
            "plot()",
            execution_count=2,
            outputs=[new_output("display_data", data={"image/png": png(), "text/plain": "<Figure>"})],
        ),
        failing,
    ]
    return nbformat.writes(new_notebook(cells=cells)).encode()


def test_a_notebook_renders_as_jupyter_shows_it() -> None:
    cells = page.render(displays_notebook())

    assert re.search(r"<h1 id=\"Unique-selling-points\">Unique selling points", cells.html)
    assert "<th>kind</th>" in cells.html and "<th>usp</th>" in cells.html  # Markdown's table and the frame's
    assert 'src="data:image/png;base64,' in cells.html
    assert "KeyError" in cells.html and "&lt;h1" not in cells.html and "<script" not in cells.html
    assert cells.failing_anchor.startswith("cell-id=") and f'id="{cells.failing_anchor}"' in cells.html
    assert ".jp-Cell" in cells.css and ".highlight" in cells.css  # JupyterLab's styles and the code colours


def manifest(**changes: object) -> dict:
    base = {"run_id": "r1", "date": "2019-08-01", "notebook": "usp", "status": "failed", "exit_code": 10,
            "meaning": "the notebook failed", "failed_step": "notebook",
            "message": "usp raised KeyError in cell [3]: <script>x</script>", "rows": None,
            "table": "notebooks.usp", "output_uri": "s3://out/usp", "snapshot_id": None,
            "image": "123.dkr.ecr.eu-west-1.amazonaws.com/m@sha256:" + "a" * 64, "commit": "0123456789ab",
            "runner_version": "1.4.0", "started_at": "2026-12-04T03:00:00Z", "duration_seconds": 75.5,
            "check_verdict": None}  # fmt: skip
    return {**base, **changes}


def test_a_failed_run_s_header_names_its_class_cell_and_error_escaped() -> None:
    run = page.Header(
        manifest(), None, [("manifest.json", "https://console/x?a=1&b=2")], "cell [3] ('raise')"
    )

    shown = page.header(run, "cell-id=abc")

    assert "FAILED — the notebook failed (exit 10)" in shown
    assert '<a href="#cell-id=abc">cell [3] (&#x27;raise&#x27;)</a>' in shown
    assert "&lt;script&gt;x&lt;/script&gt;" in shown and "<script" not in shown
    assert 'href="https://console/x?a=1&amp;b=2"' in shown
    assert "did not run" in shown and "1 min 15.5 s" in shown and "sha256:" + "a" * 64 in shown
    assert "0123456789ab" in shown and "1.4.0" in shown


def test_a_succeeded_run_s_header_says_what_was_published_and_what_the_check_said() -> None:
    facts = manifest(status="succeeded", exit_code=0, meaning="success", failed_step=None, rows=3000,
                     snapshot_id=42, message="published 3000 rows",
                     check_verdict="VALIDATION PASSED")  # fmt: skip
    run = page.Header(facts, "rows: 3000 <ok>\nVALIDATION PASSED\n")

    shown = page.header(run)

    assert shown.count("SUCCEEDED") == 1 and "Failed step" not in shown
    assert "published 3000 rows" in shown and ">3000<" in shown and ">42<" in shown
    assert "VALIDATION PASSED" in shown and "rows: 3000 &lt;ok&gt;" in shown
    assert '<details class="nbp-check">' in shown  # folded on success, open on failure


def test_the_page_forbids_the_browser_to_run_or_load_anything() -> None:
    doc = page.document(page.Header(manifest()), None, "The notebook did not start.")

    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', doc)
    assert csp is not None
    rules = dict(rule.strip().split(" ", 1) for rule in csp.group(1).split(";"))
    assert rules["default-src"] == "'none'" and rules["img-src"] == "data:"
    assert rules["form-action"] == "'none'" and rules["base-uri"] == "'none'"
    assert "script-src" not in rules  # default-src 'none' covers it
    assert doc.index("<header") < doc.index("<main") and "The notebook did not start." in doc


def test_an_output_too_large_for_a_page_is_named_not_rendered() -> None:
    node = nbformat.reads(displays_notebook().decode(), as_version=4)
    node.cells[1].outputs[0]["data"]["text/html"] = "<table>" + "<tr><td>x</td></tr>" * 200_000 + "</table>"

    cells = page.render(nbformat.writes(node).encode())

    assert "too large for this page, see the .ipynb" in cells.html and cells.html.count("<td>") < 10


def test_the_failing_cell_s_anchor_is_one_no_output_could_guess() -> None:
    node = nbformat.reads(displays_notebook().decode(), as_version=4)
    planted = f"cell-id={node.cells[3].id}"  # an earlier output carrying the failing cell's own id
    node.cells[1].outputs[0]["data"]["text/html"] += f'<div id="{planted}">safe to ignore</div>'

    first, second = (page.render(nbformat.writes(node).encode()) for _ in range(2))

    assert first.failing_anchor != planted and first.failing_anchor != second.failing_anchor
    assert first.html.count(f'id="{first.failing_anchor}"') == 1
    assert 'id="nbp-run"' not in page.clean('<p id="nbp-run">x</p>')


def test_format_characters_never_reach_the_header() -> None:
    shown = page.header(page.Header(manifest(notebook="usp\u202eevil", commit="0123")))

    assert "\u202e" not in shown and "uspevil" in shown


def test_a_redaction_never_makes_markup_in_the_cells() -> None:
    """A secret chosen to close an attribute: redacting it in cleaned HTML would free what followed."""
    from runner import redaction
    from runner.report import redacted

    secret = 'title="ZZZZZZ'
    redaction.load({"NOTEBOOK_SECRETS": "S", "S": secret})
    try:
        hostile = "<img src='data:image/png;base64,AAAA' title='ZZZZZZ x onerror=window.PWNED=1 y'>"
        cells = page.Cells(page.clean(hostile), "")
        assert "onerror" not in redacted(cells).html
        assert "onerror=" in redaction.ACTIVE.text(cells.html)  # what rewriting the cleaned page did
    finally:
        redaction.load({})
