"""The notebook's secrets (NOTEBOOK_SECRETS): what the runner writes never shows their values.

ECS injects each secret as an environment variable (the stack's SecretNames, listed in NOTEBOOK_SECRETS); the
kernel and the check read them there. They are never notebook parameters (papermill keeps parameters in the
executed notebook). Everything the runner writes, the executed notebook, the HTML report, the manifest,
check.txt, its log (with the notebook's and the check's output) and its mails, has MARK where a value was:
the value itself, the forms printing or storing it gives and the encodings clients build from it (hex,
base64 as in an HTTP Basic header; see forms(), encoded() and truncated()), and each string of a JSON
secret. columns_holding_secrets() names the checked rows' columns holding one: the runner publishes none.
Redaction is for accidents: a notebook that encodes a secret some other way before it prints it is not
caught; what a secret opens is limited by its own grants, not by this.
"""

from __future__ import annotations

import base64
import contextlib
import html
import itertools
import json
import logging
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, TypeVar

from runner import printable
from runner.config import SETTING_NAMES, fail

if TYPE_CHECKING:
    import pyarrow as pa

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
    of its bytes), HTML and URLs (and HTML over repr), each line of a multi-line value, and the encodings
    a client builds from it (encoded())."""
    escapes = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    found = set(escapes)
    found |= {html.escape(f) for f in escapes} | {html.escape(f, quote=False) for f in escapes}
    found |= {repr(value.encode())[2:-1], urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    found.add(urllib.parse.quote(value))  # quote()'s default keeps '/': the usual way into a URL's userinfo
    found |= {line.strip() for line in value.splitlines()}
    return {f for f in found if len(f) >= MIN_LENGTH} | encoded(value)


# What clients build from a credential's bytes and print or log (requests' and urllib3's debug output, a
# printed header dict, smtplib's debug output): HTTP Basic's base64(user + ":" + password), SMTP's AUTH
# PLAIN base64("\0" + user + "\0" + password), a Kubernetes or Docker secret's base64, a URL-safe token's
# base64url, bytes.hex(). Left out: hashes and HMACs (Digest auth, PostgreSQL md5, SCRAM, a JWT's signature),
# which do not give the value back; base32, base85 and UTF-16 base64, which no common client builds from a
# credential; base64 wrapped into lines (MIME), whose line breaks fall anywhere in the value.
URL_SAFE = str.maketrans("+/", "-_")


def encoded(value: str) -> set[str]:
    """Hex of the value's bytes (both cases) and, for each of the three places the bytes can start in a
    3-byte group of what is encoded, the base64 run only they make (standard and URL-safe; padded or not,
    the run is the same). The bytes are UTF-8's and, for a value with non-ASCII characters, Latin-1's too:
    requests, urllib3 and aiohttp encode HTTP Basic's credentials as Latin-1.

    A value of fewer than MIN_LENGTH bytes is not encoded, as it is not redacted as itself either. The
    shortest run left is then 7 characters (a 6-byte value gives 8, 7 and 7 at the three offsets), 42 bits
    that turn up by chance in random base64 such as a report's PNG once in 2^42 (4e12) places: a 5 MB report
    meets one run with odds of about 1 in 900,000, where a shorter bound would garble an image far sooner."""
    found: set[str] = set()
    for raw in _bytes(value):
        if len(raw) < MIN_LENGTH:
            continue
        found |= {raw.hex(), raw.hex().upper()}
        runs = {base64_run(raw, offset) for offset in range(3)}
        found |= runs | {run.translate(URL_SAFE) for run in runs}
    return found


def _bytes(value: str) -> set[bytes]:
    """The value's bytes as clients send them: UTF-8, and Latin-1 where it can hold the value."""
    found = {value.encode()}
    with contextlib.suppress(UnicodeEncodeError):
        found.add(value.encode("latin-1"))
    return found


def base64_run(raw: bytes, offset: int) -> str:
    """The base64 characters raw's bits alone make when raw starts offset (0, 1 or 2) bytes into a 3-byte
    group: each character holds 6 bits, so the one also holding the bytes before raw and the one also
    holding those after it (or the padding) are left out; what is left is in every encoding of such text."""
    first = -(-8 * offset // 6)  # rounded up: the first character all of whose 6 bits are raw's
    end = 8 * (offset + len(raw)) // 6  # rounded down: past the last such character
    return base64.b64encode(bytes(offset) + raw)[first:end].decode()


def truncated(value: str, upto: int = 200) -> str | None:
    """A display's cut of a long value: its first TRUNCATED_FROM or more characters (to upto), then '...'
    or '…'."""
    if len(value) <= TRUNCATED_FROM + 3:
        return None
    rest = value[TRUNCATED_FROM:upto]
    nested = "".join(f"(?:{re.escape(c)}" for c in rest) + ")?" * len(rest)
    return f"{re.escape(value[:TRUNCATED_FROM])}{nested}(?:\\.\\.\\.|…)"


def longest_first(literals: set[str]) -> list[str]:
    """Regex alternatives that match, at a place, the longest of literals starting there (a longer form may
    contain a shorter one), one per first character: a trie, each shared prefix once, then the ways on.
    A place costs a few steps, not one per form (there are dozens per secret), and as each alternative
    starts with a literal, the regex engine skips at once a place whose character none starts with."""
    branches = []
    for _, group in itertools.groupby(sorted(f for f in literals if f), key=lambda f: f[0]):
        words = list(group)
        shared = _shared_prefix(words[0], words[-1])  # sorted: what the first and last share, all share
        rest = {w[len(shared) :] for w in words}
        ways = longest_first(rest)
        # greedy: a longer way on is tried before stopping where a shorter literal ends
        tail = f"(?:{'|'.join(ways)})" + ("?" if "" in rest else "") if ways else ""
        branches.append(re.escape(shared) + tail)
    return branches


def _shared_prefix(first: str, last: str) -> str:
    differs = (i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b)
    return first[: next(differs, min(len(first), len(last)))]


class Redactor:
    def __init__(self, values: list[str]) -> None:
        self.parts = {part for v in values for part in parts(v)}
        self.forms = {f for part in self.parts for f in forms(part)}
        cuts = [c for part in self.parts if (c := truncated(part))]
        alternatives = cuts + longest_first(self.forms)  # a cut first: it may go on past the value
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


# Arrow compiles a pattern at each call (about 1 ms for 5 secrets): chunks are joined up to this many bytes
# first, so a table read from many small files is a few calls, and the copy a join makes stays small.
BATCH_BYTES = 1 << 27
# RE2 (Arrow's regex engine) runs a pattern as an automaton of bounded memory: past some 10,000 characters
# of alternatives it outgrows it and falls back to a matcher 10 to 50 times slower. So Arrow looks for each
# form's first FORM_START characters (as specific as the whole; a value holding them leaks that much of the
# secret, and a longer display's cut holds them too), in patterns of at most ARROW_PATTERN characters.
FORM_START = 64
ARROW_PATTERN = 8000


def columns_holding_secrets(table: pa.Table) -> list[str]:
    """The columns of the checked rows holding a secret's value or one of its forms (the ACTIVE redactor's)
    in their name, a nested field's name or any value: strings and bytes of every Arrow type, plain,
    dictionary-encoded (every entry of the dictionary, used or not) or nested in lists, structs, maps and
    unions, named by the top-level column. Arrow matches them (pyarrow.compute, RE2) over each string
    child: no row becomes a Python object. In the table's order, each once; [] for a clean table or one
    without rows (a null holds nothing). Numbers, dates and the schema's metadata are not looked at.

    A name comes back redacted, MARK where it holds a secret, so the caller can say which column without
    saying the value; nothing here logs, and an Arrow error is raised without its message (which may quote
    the pattern)."""
    if ACTIVE.pattern is None:
        return []
    cuts = [c for part in ACTIVE.parts if (c := truncated(part, FORM_START))]
    alternatives = cuts + sorted({re.escape(f[:FORM_START]) for f in ACTIVE.forms})  # RE2 factors prefixes
    patterns = ["|".join(group) for group in _packed(alternatives, len, ARROW_PATTERN)]
    found: list[str] = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if _names_hold(ACTIVE.pattern, field) or _values_hold(patterns, column):
            name = ACTIVE.text(field.name)
            found += [] if name in found else [name]
    return found


def _names_hold(pattern: re.Pattern[str], field: pa.Field) -> bool:
    """Whether field's name or a nested field's (a struct's, a list's item, a map's entries) holds a
    secret: each is in the published table's schema."""
    import pyarrow as pa

    stack = [field]
    while stack:
        item = stack.pop()
        if pattern.search(item.name):
            return True
        kind = item.type
        while isinstance(kind, pa.ExtensionType | pa.DictionaryType):  # to the type of the values
            kind = kind.storage_type if isinstance(kind, pa.ExtensionType) else kind.value_type
        stack.extend(kind.field(i) for i in range(kind.num_fields))
    return False


def _values_hold(patterns: list[str], column: pa.ChunkedArray) -> bool:
    import pyarrow as pa

    groups = _packed(column.chunks, lambda chunk: chunk.nbytes, BATCH_BYTES)
    batches = (group[0] if len(group) == 1 else pa.concat_arrays(group) for group in groups)  # one: no copy
    return any(_matches(strings, p) for batch in batches for strings in _strings(batch) for p in patterns)


def _matches(strings: pa.Array, pattern: str) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.any(pc.match_substring_regex(strings, pattern)).as_py() is True
    except pa.ArrowException:  # its message may quote the pattern, which spells the secrets out
        raise RuntimeError("Arrow could not match the secrets' forms in the checked rows") from None


T = TypeVar("T")


def _packed(items: list[T], size: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    """items in order, in groups of at most limit in all (an item bigger than that alone)."""
    group: list[T] = []
    total = 0
    for item in items:
        if group and total + size(item) > limit:
            yield group
            group, total = [], 0
        group.append(item)
        total += size(item)
    if group:
        yield group


def _strings(array: pa.Array) -> Iterator[pa.Array]:
    """The string and binary arrays in array, of types match_substring_regex takes: itself, its dictionary,
    its nested values (a list's items and a struct's fields as the rows hold them, not past a slice)."""
    import pyarrow as pa

    if isinstance(array, pa.StringArray | pa.LargeStringArray | pa.BinaryArray | pa.LargeBinaryArray):
        yield array
    elif isinstance(array, pa.StringViewArray):
        yield array.cast(pa.large_string())  # Arrow 26 has no match kernel for views
    elif isinstance(array, pa.BinaryViewArray | pa.FixedSizeBinaryArray):
        yield array.cast(pa.large_binary())
    elif isinstance(array, pa.DictionaryArray):
        yield from _strings(array.dictionary)  # every entry, used or not: a Parquet dictionary keeps them
    elif isinstance(array, pa.MapArray):  # before lists: a MapArray is one, but has no flatten() kernel
        yield from _strings(array.cast(pa.list_(array.type.field(0))).flatten())
    elif isinstance(array, pa.lib.BaseListArray):  # list, large_list, fixed_size_list and their views
        yield from _strings(array.flatten())
    elif isinstance(array, pa.StructArray):
        for child in array.flatten():
            yield from _strings(child)
    elif isinstance(array, pa.UnionArray):
        for i in range(array.type.num_fields):
            yield from _strings(array.field(i))
    elif isinstance(array, pa.RunEndEncodedArray):
        yield from _strings(array.values.slice(array.find_physical_offset(), array.find_physical_length()))
    elif isinstance(array, pa.ExtensionArray):
        yield from _strings(array.storage)


class RedactingFormatter(logging.Formatter):
    """The runner's log lines, the notebook's output papermill logs, and their tracebacks, redacted, with
    no terminal control obeyed (printable.lines)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable.lines(text(super().format(record)))


def copy_lines(source: IO[bytes] | None, *sinks: IO[bytes]) -> None:
    """A process's output, line by line, redacted and with no terminal control obeyed, into each sink (the
    container's output, a report file)."""
    assert source is not None
    for line in iter(source.readline, b""):
        clean = printable.lines(text(line.decode("utf-8", errors="replace"))).encode()
        for sink in sinks:
            sink.write(clean)
            sink.flush()


def to_stderr(source: IO[bytes] | None) -> None:
    copy_lines(source, sys.stderr.buffer)
