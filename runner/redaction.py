"""The notebook's secrets (NOTEBOOK_SECRETS): what the runner writes never shows their values.

ECS injects each secret as an environment variable (the stack's SecretNames, listed in NOTEBOOK_SECRETS); the
kernel and the check read them there. They are never notebook parameters (papermill keeps parameters in the
executed notebook). Everything the runner writes, the executed notebook, the HTML report, the manifest,
check.txt, its log (with the notebook's and the check's output) and its mails, has MARK where a value was:
the value itself and the forms printing or storing it gives (see forms() and truncated()), and each string
of a JSON secret. Redaction is for accidents: a notebook that encodes a secret some other way before it
prints it is not caught; what a secret opens is limited by its own grants, not by this.
"""

from __future__ import annotations

import html
import json
import logging
import re
import sys
import urllib.parse
from collections.abc import Mapping
from typing import IO, Any

from runner.config import SETTING_NAMES, fail

MARK = "[REDACTED]"
MIN_LENGTH = 6  # a shorter value would also replace text that merely contains it
NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
# Variables a secret may not take: the runner's settings, and what the loader, the C library, OpenSSL, the
# SDKs, Python and Jupyter read (ECS sets a secret's variable before any of them starts). The template's
# SecretNames pattern refuses the same (tests/pipeline/test_data_sources.py holds it to these).
RESERVED_PREFIXES = (
    "AWS_", "ECS_", "RUNNER_", "PYTHON", "JUPYTER", "IPY", "PAPERMILL", "LD_", "GLIBC_", "GCONV_", "MALLOC_",
    "OPENSSL_", "SSL_", "BOTO_", "LC_",
)  # fmt: skip
RESERVED_NAMES = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NOTEBOOK_SECRETS", "PATH", "HOME", "TMPDIR", "TZ", "LANG", "USER", "SHELL",
)  # fmt: skip


def reserved(name: str) -> bool:
    return name in SETTING_NAMES or name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


TRUNCATED_FROM = 12  # a display that cuts a long value (pandas: 47 characters and '...') keeps this many


def parts(value: str) -> set[str]:
    """The value, and for a JSON object (Secrets Manager's shape for credentials) each string in it."""
    found = {value}
    try:
        document = json.loads(value)
    except ValueError:
        return found
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict | list):
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


def forms(value: str) -> set[str]:
    """The ways a value shows in text the runner writes: as it is, escaped for JSON, repr (of the text and
    of its bytes), HTML and URLs (and HTML over repr), and each line of a multi-line value."""
    escapes = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    found = set(escapes)
    found |= {html.escape(f) for f in escapes} | {html.escape(f, quote=False) for f in escapes}
    found |= {repr(value.encode())[2:-1], urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    found |= {line.strip() for line in value.splitlines()}
    return {f for f in found if len(f) >= MIN_LENGTH}


def truncated(value: str) -> str | None:
    """A display's cut of a long value: its first TRUNCATED_FROM or more characters, then '...' or '…'."""
    if len(value) <= TRUNCATED_FROM + 3:
        return None
    rest = value[TRUNCATED_FROM:200]
    nested = "".join(f"(?:{re.escape(c)}" for c in rest) + ")?" * len(rest)
    return f"{re.escape(value[:TRUNCATED_FROM])}{nested}(?:\\.\\.\\.|…)"


class Redactor:
    def __init__(self, values: list[str]) -> None:
        every = {f for v in values for part in parts(v) for f in forms(part)}
        cuts = [c for v in values for part in parts(v) if (c := truncated(part))]
        ordered = sorted(every, key=len, reverse=True)  # a longer form first: it may contain a shorter one
        alternatives = cuts + [re.escape(f) for f in ordered]  # a cut first: it may go on past the value
        self.pattern = re.compile("|".join(alternatives)) if alternatives else None

    def text(self, text: str) -> str:
        return self.pattern.sub(MARK, text) if self.pattern else text

    def data(self, value: Any) -> Any:
        """A JSON document (the notebook, the manifest) with every string redacted, keys too."""
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.data(v) for k, v in value.items()}
        return value

    def file_bytes(self, data: bytes | None, name: str) -> bytes | None:
        """A report file: a notebook redacted as JSON (its strings, wherever they are), the rest as text."""
        if data is None or self.pattern is None:
            return data
        if name.endswith(".ipynb"):
            try:
                document = json.loads(data)
            except ValueError:
                pass
            else:
                coalesce_streams(document)
                return (json.dumps(self.data(document), indent=1, ensure_ascii=False) + "\n").encode()
        return self.text(data.decode("utf-8", errors="replace")).encode()


def coalesce_streams(notebook: Any) -> None:
    """Consecutive outputs of one stream as one, as Jupyter shows them: a value printed in pieces is whole."""
    for cell in notebook.get("cells", []) if isinstance(notebook, dict) else []:
        merged: list[Any] = []
        for output in cell.get("outputs", []):
            last = merged[-1] if merged else None
            if (
                isinstance(last, dict) and isinstance(output, dict) and output.get("output_type") == "stream"
                and last.get("output_type") == "stream" and last.get("name") == output.get("name")
            ):  # fmt: skip
                last["text"] = "".join(_lines(last.get("text"))) + "".join(_lines(output.get("text")))
            else:
                merged.append(output)
        if "outputs" in cell:
            cell["outputs"] = merged


def _lines(text: Any) -> list[str]:
    return text if isinstance(text, list) else [str(text or "")]


ACTIVE = Redactor([])


def text(value: str) -> str:
    return ACTIVE.text(value)


def data(value: Any) -> Any:
    return ACTIVE.data(value)


def load(environ: Mapping[str, str]) -> None:
    """Make NOTEBOOK_SECRETS' values the ones redacted; RunFailed (exit 2) for a name that cannot be a
    secret's or a value that cannot be redacted, after every usable value is already redacted."""
    global ACTIVE
    names = [n.strip() for n in environ.get("NOTEBOOK_SECRETS", "").split(",") if n.strip()]
    problems = []
    values = []
    for name in names:
        value = environ.get(name, "")
        if not NAME_PATTERN.match(name):
            problems.append(f"{name[:64]!r} is not a variable name (A-Z, 0-9, '_'; no digit first)")
        elif reserved(name):
            problems.append(f"{name} is a variable the runner, the AWS SDKs or Python read: rename it")
        elif not value:
            problems.append(
                f"{name} is not set: in AWS, ECS injects it (settings.yml secrets); locally, pass -e {name}"
            )
        elif len(value) < MIN_LENGTH:
            problems.append(
                f"{name}'s value is shorter than {MIN_LENGTH} characters, too short to redact without "
                "garbling the report: use a longer secret"
            )
        else:
            values.append(value)
    ACTIVE = Redactor(values)
    if problems:
        raise fail(f"NOTEBOOK_SECRETS: {'; '.join(problems)}")


def check_params(params: Mapping[str, Any]) -> None:
    """A secret is never a notebook parameter: papermill writes parameters into the executed notebook."""
    held = sorted(name for name, value in params.items() if text(json.dumps(value)) != json.dumps(value))
    if held:
        raise fail(
            f"NOTEBOOK_PARAMS {', '.join(held)} hold a secret's value: read it in the notebook from its "
            "environment variable (os.environ) instead; papermill stores parameters in the executed notebook"
        )


class RedactingFormatter(logging.Formatter):
    """The runner's log lines, the notebook's output papermill logs, and their tracebacks, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return text(super().format(record))


def copy_lines(source: IO[bytes] | None, *sinks: IO[bytes]) -> None:
    """A process's output, line by line, redacted, into each sink (the container's output, a report file)."""
    assert source is not None
    for line in iter(source.readline, b""):
        clean = text(line.decode("utf-8", errors="replace")).encode()
        for sink in sinks:
            sink.write(clean)
            sink.flush()


def to_stderr(source: IO[bytes] | None) -> None:
    copy_lines(source, sys.stderr.buffer)
