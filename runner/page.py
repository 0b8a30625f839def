"""The report's HTML page: the run's header above the executed notebook, which reads as JupyterLab shows it,
and is safe to open from a mail.

Two locks, each enough on its own for what it covers:
- The notebook's cells (its Markdown and every output: untrusted HTML) are cleaned by nh3 (ammonia, bleach's
  successor) to an allow-list: no script, style element, event handler, form, frame or object; no link but to
  a place on this page; no image but one carried inside the page (data:image/...); inline styles limited to
  colours, alignment and borders, so nothing can cover or restyle the header; no class of the header's own.
- The page's Content-Security-Policy lets the browser run no script and load nothing from anywhere: images
  only from data: URLs, styles only the page's own, no form target, no base URL, no frame.

The header is the runner's own (escaped, never the notebook's HTML): status, failure class, the failing cell
(a link to it) and its error, the check's verdict and output, what was published, which image ran, when,
and links to the run's other files and to its neighbours.
"""

from __future__ import annotations

import html
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("templates")  # runner/templates/report: the cells, JupyterLab's markup
HEADER_CLASS = "nbp-"  # the header's own class names start so; the cells may not use them
CHECK_SHOWN = 20_000  # characters of check.txt the header shows (the whole file is linked)

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; form-action 'none'; "
    "base-uri 'none'; frame-src 'none'; object-src 'none'"
)

# What the cells may hold (nh3's defaults, less the tags that link or map elsewhere, plus table parts).
TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details",
    "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var", "wbr",
}  # fmt: skip
DROPPED_WITH_CONTENT = {"script", "style", "template", "noscript", "iframe", "object", "embed", "svg", "math",
                        "form", "textarea", "select", "button", "title"}  # fmt: skip
ATTRIBUTES = {
    "*": {"class", "id", "title", "style", "align", "data-mime-type", "lang", "dir"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
    "col": {"span"},
    "colgroup": {"span"},
}
STYLES = {
    "color", "background-color", "text-align", "vertical-align", "font-weight", "font-style",
    "text-decoration", "white-space", "border", "border-top", "border-bottom", "border-left", "border-right",
    "border-collapse", "border-color", "border-style", "border-width", "padding", "padding-left",
    "padding-right", "padding-top", "padding-bottom",
}  # fmt: skip
IMAGES = ("data:image/png;", "data:image/jpeg;", "data:image/gif;", "data:image/webp;", "data:image/svg+xml;")


def _attribute(tag: str, name: str, value: str) -> str | None:
    """nh3's attribute filter: links only within the page, images only inside it, no header class."""
    if name == "href":
        return value if value.startswith("#") else None
    if name == "src":
        return value if tag == "img" and value.startswith(IMAGES) else None
    if name == "id" and value.startswith(HEADER_CLASS):
        return None
    if name == "class":
        kept = [c for c in value.split() if not c.startswith(HEADER_CLASS)]
        return " ".join(kept) or None
    return value


def clean(cells: str) -> str:
    """The cells' HTML cut to the allow-list (the module's docstring)."""
    import nh3

    return nh3.clean(
        cells,
        tags=TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ATTRIBUTES,
        attribute_filter=_attribute,
        url_schemes={"data"},
        filter_style_properties=STYLES,
        link_rel=None,
        strip_comments=True,
    )


OUTPUT_SHOWN = 2_000_000  # characters of one output the page renders; a larger one is named (see the .ipynb)


def _shrink(node: Any) -> None:
    """Each output larger than OUTPUT_SHOWN replaced by a line that says so: rendering and cleaning cost
    memory many times an output's size, and the runner must outlive any notebook's page."""
    for cell in node.cells:
        for output in cell.get("outputs", []):
            sizes = [len(str(v)) for v in output.get("data", {}).values()]
            if max([*sizes, len(str(output.get("text", "")))]) > OUTPUT_SHOWN:
                size = max([*sizes, len(str(output.get("text", "")))])
                note = f"[an output of {size:,} characters: too large for this page, see the .ipynb]"
                output.clear()
                output.update({"output_type": "stream", "name": "stdout", "text": note})


@dataclass(frozen=True)
class Cells:
    """The notebook as the page shows it: its cleaned cells, the styles they need, and its failing cell."""

    html: str
    css: str
    failing_anchor: str = ""  # the failing (or last started) code cell's id on the page, '' if it has none


def render(notebook: bytes) -> Cells:
    """The executed notebook's cells with JupyterLab's markup and styles, cleaned (nbconvert, nh3)."""
    import nbformat
    from nbconvert import HTMLExporter

    from runner.execute import failing_code_cell

    # Only the runner's own template folder (nbconvert would also look in the working directory); nothing
    # is sanitised by nbconvert itself (it escapes Markdown so): clean() does it, after rendering.
    exporter = HTMLExporter(
        template_name="report", extra_template_basedirs=[str(TEMPLATES)], sanitize_html=False
    )
    node = nbformat.reads(notebook.decode(), as_version=4)
    _shrink(node)
    failing = failing_code_cell(node)
    if failing is not None:  # an id no output can have guessed, for the header's link to the failing cell
        failing["id"] = f"failed-{secrets.token_hex(8)}"
    body, resources = exporter.from_notebook_node(node)
    lab = next(Path(p) for p in exporter.template_paths if (Path(p) / "static" / "index.css").is_file())
    styles = [(lab / "static" / name).read_text() for name in ("index.css", "theme-light.css")]
    styles += [str(css) for css in resources.get("inlining", {}).get("css", [])]
    anchor = f"cell-id={failing.id}" if failing is not None and failing.get("id") else ""
    return Cells(clean(body), "\n".join(styles), anchor)


@dataclass
class Header:
    """What the page says of the run above the notebook (from the manifest, the check and the storage)."""

    manifest: dict[str, Any]
    check_output: str | None = None  # check.txt as the check wrote it; None when the check never ran
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, href), the runner's own
    failing_cell: str = ""  # as the message names it, e.g. cell [5] ('df = ...')


def _e(value: Any) -> str:
    """A value for the header, escaped, without format characters (a right-to-left override in a notebook's
    name would reverse what follows it)."""
    text = "-" if value is None or value == "" else str(value)
    return html.escape("".join(c for c in text if unicodedata.category(c) != "Cf"))


def _row(label: str, value: str, wide: bool = False) -> str:
    kind = "nbp-field nbp-wide" if wide else "nbp-field"
    return f'<div class="{kind}"><dt>{html.escape(label)}</dt><dd>{value}</dd></div>'


def _seconds(value: Any) -> str:
    try:
        total = float(value)
    except (TypeError, ValueError):
        return "-"
    minutes, seconds = divmod(total, 60)
    return f"{int(minutes)} min {seconds:.1f} s" if minutes else f"{seconds:.2f} s"


def _status(m: dict[str, Any]) -> str:
    status = str(m.get("status") or "unknown")
    if status == "succeeded":
        return "SUCCEEDED"
    return f"{status.upper()} — {_e(m.get('meaning'))} (exit {_e(m.get('exit_code'))})"


def _check(run: Header) -> str:
    if run.check_output is None:
        return ""
    shown = run.check_output[:CHECK_SHOWN] or "(empty)"
    if len(run.check_output) > CHECK_SHOWN:
        shown += f"\n… (the first {CHECK_SHOWN:,} characters: see check.txt)"
    opened = "" if run.manifest.get("status") == "succeeded" else " open"
    return (
        f'<details class="nbp-check"{opened}><summary>The check\'s output</summary>'
        f"<pre>{html.escape(shown)}</pre></details>"
    )


def _fields(run: Header, failing_anchor: str) -> list[str]:
    m = run.manifest
    fields = []
    if m.get("status") != "succeeded":
        fields.append(_row("Failed step", _e(m.get("failed_step"))))
        if run.failing_cell:
            cell = _e(run.failing_cell)
            link = f'<a href="#{html.escape(failing_anchor)}">{cell}</a>' if failing_anchor else cell
            fields.append(_row("Cell", link))
        fields.append(_row("Error", f'<span class="nbp-error">{_e(m.get("message"))}</span>', wide=True))
    else:
        fields.append(_row("Result", _e(m.get("message")), wide=True))
    check = m.get("check_verdict") or ("did not run" if run.check_output is None else "")
    rows = m.get("rows") if m.get("rows") is not None else "none"
    return [
        *fields,
        _row("Check", _e(check)),
        _row("Rows published", _e(rows)),
        _row("Table", f"{_e(m.get('table'))} at {_e(m.get('output_uri'))}"),
        _row("Snapshot", _e(m.get("snapshot_id"))),
        _row("Model", f"{_e(m.get('notebook'))} at commit {_e(m.get('commit'))}"),
        _row("Image", _e(m.get("image"))),
        _row("Runner", _e(m.get("runner_version"))),
        _row("Started", f"{_e(m.get('started_at'))}, took {_seconds(m.get('duration_seconds'))}"),
    ]


def header(run: Header, failing_anchor: str = "") -> str:
    """The run's header: escaped text and the runner's own links only."""
    m = run.manifest
    kind = "ok" if m.get("status") == "succeeded" else "failed"
    links = " ".join(
        f'<a class="nbp-link" href="{html.escape(href)}">{html.escape(label)}</a>'
        for label, href in run.links
    )
    return "\n".join([
        f'<header class="nbp-header nbp-{kind}" id="nbp-run">',
        f'<p class="nbp-status" role="status">{_status(m)}</p>',
        (f'<p class="nbp-title">{_e(m.get("notebook"))} for {_e(m.get("date"))}, '
        f"run {_e(m.get('run_id'))}</p>"),
        f'<dl class="nbp-fields">{"".join(_fields(run, failing_anchor))}</dl>',
        f'<nav class="nbp-links">{links}</nav>' if links else "",
        _check(run),
        "</header>",
    ])  # fmt: skip


HEADER_CSS = """
body { margin: 0; }
/* the header stays on top: nothing in the cells (JupyterLab's own overlay classes included) is painted
   outside main's box or above the header */
.nbp-header { position: relative; z-index: 1; }
main.nbp-notebook { padding: 0 8px 24px; position: relative; z-index: 0; contain: paint; }
.nbp-header { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px;
  line-height: 1.4; padding: 12px 16px; border-bottom: 1px solid #ccc; background: #f7f7f7;
  overflow-wrap: anywhere; }
.nbp-status { font-size: 20px; font-weight: 700; margin: 0 0 4px; }
.nbp-ok .nbp-status { color: #146c2e; }
.nbp-failed .nbp-status { color: #b3261e; }
.nbp-failed { background: #fff4f2; border-left: 6px solid #b3261e; }
.nbp-ok { border-left: 6px solid #146c2e; }
.nbp-title { margin: 0 0 8px; color: #333; }
.nbp-fields { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 4px 16px;
  margin: 0 0 8px; }
.nbp-field { display: flex; gap: 8px; min-width: 0; }
.nbp-field dt { font-weight: 600; flex: 0 0 8.5em; color: #555; }
.nbp-field dd { margin: 0; min-width: 0; }
.nbp-error { color: #b3261e; }
.nbp-wide { grid-column: 1 / -1; }
.nbp-links { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 4px 0; }
.nbp-header a { color: #0b57d0; text-decoration: underline; }
a.anchor-link, .jp-Collapser { display: none; }
.nbp-check pre { max-height: 24em; overflow: auto; background: #fff; border: 1px solid #ddd; padding: 6px;
  white-space: pre-wrap; }
.jp-OutputArea-output, .jp-RenderedHTMLCommon { overflow-x: auto; }
@media (max-width: 600px) {
  .nbp-field { flex-direction: column; gap: 0; }
  .nbp-field dt { flex: none; }
  .jp-InputPrompt, .jp-OutputPrompt { display: none !important; }
  .jp-Cell { padding: 2px 0 !important; }
}
"""


def document(run: Header, cells: Cells | None, missing: str = "The notebook could not be rendered.") -> str:
    """The whole page: the header, then the notebook's cleaned cells (or, `missing`, why there are none)."""
    m = run.manifest
    title = f"{m.get('status', '?')}: {m.get('notebook', '')} for {m.get('date', '')}"
    if cells is None:
        body = f'<p class="nbp-missing">{html.escape(missing)} See the run\'s log.</p>'
        styles = ""
    else:
        body, styles = cells.html, cells.css
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{styles}\n{HEADER_CSS}</style>",
        "</head>",
        '<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">',
        header(run, cells.failing_anchor if cells else ""),
        f'<main class="nbp-notebook">{body}</main>',
        "</body>",
        "</html>",
    ])  # fmt: skip
