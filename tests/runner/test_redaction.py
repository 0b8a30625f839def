"""runner/redaction.py on its own, in process: the encodings clients build from a secret (hex, base64 at
each of the three byte alignments, as in an HTTP Basic header) redacted in text and in a notebook, a PNG
and ordinary text left as they were, and the checked rows' columns holding a secret named, never the value.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import urllib.parse
import zlib
from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest

from runner import redaction
from runner.redaction import MARK

# '~', '?' and '>' make base64's '+' and '/', so the URL-safe encoding differs at each alignment.
SECRET = "hunter2~?>s3cr3t>>?~"
PASSWORD = "Pa55w0rd-xyz!"
DB_SECRET = json.dumps({"username": "etl_user", "password": PASSWORD})
ENVIRON = {"NOTEBOOK_SECRETS": "API_PASSWORD,DB_SECRET", "API_PASSWORD": SECRET, "DB_SECRET": DB_SECRET}
# "user:" puts the secret 2, 0 or 1 bytes (mod 3) into a base64 group: these lengths give each twice or more.
USERS = ["a", "bo", "bob", "etl_", "admin", "svc-acct", "svc-notebook", "firstname.lastname@x"]


@pytest.fixture(autouse=True)
def active_redactor_restored() -> Iterator[None]:
    saved = redaction.ACTIVE
    yield
    redaction.ACTIVE = saved


def b64(data: str | bytes, url_safe: bool = False, padded: bool = True) -> str:
    raw = data.encode() if isinstance(data, str) else data
    done = (base64.urlsafe_b64encode if url_safe else base64.b64encode)(raw).decode()
    return done if padded else done.rstrip("=")


def basic(user: str, password: str) -> str:
    return f"Basic {b64(f'{user}:{password}')}"


def kept_around_secret(before: int, secret_bytes: int, encoded: str) -> tuple[str, str]:
    """What a redacted encoding may keep: the characters holding any bit of the `before` bytes ahead of
    the secret, and those holding any bit after it (one, then the padding)."""
    first = -(-8 * before // 6)
    end = 8 * (before + secret_bytes) // 6
    return encoded[:first], encoded[end:]


def png(width: int = 256, height: int = 256, seed: int = 0) -> bytes:
    """A real PNG of noise (what matplotlib's compressed pixels look like to base64: random)."""
    rng = random.Random(seed)  # noqa: S311 - a fixed picture, not a key
    rows = b"".join(b"\0" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --- the encodings, in text ------------------------------------------------------------------------------


@pytest.mark.parametrize("user", USERS)
def test_an_http_basic_header_keeps_no_character_of_the_secret_whatever_the_users_length(user: str) -> None:
    redactor = redaction.Redactor([SECRET])
    encoded = b64(f"{user}:{SECRET}")
    before, after = kept_around_secret(len(user) + 1, len(SECRET), encoded)

    said = redactor.text(f"Authorization: Basic {encoded}")

    assert said == f"Authorization: Basic {before}{MARK}{after}"
    assert len(after.rstrip("=")) <= 1  # at most 4 of the secret's 160 bits, the rest padding


def test_the_users_tested_put_the_secret_at_each_of_the_three_alignments() -> None:
    assert {(len(user) + 1) % 3 for user in USERS} == {0, 1, 2}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("url_safe", [False, True], ids=["standard", "url-safe"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize(
    ("ahead", "behind"),
    [("{user}:", ""), ("", ":{user}"), ("\0{user}\0", ""), ("", "")],
    ids=["basic", "secret-first", "smtp-auth-plain", "alone"],
)
def test_base64_of_a_secret_wherever_it_sits_is_redacted(
    user: str, url_safe: bool, padded: bool, ahead: str, behind: str
) -> None:
    redactor = redaction.Redactor([SECRET])
    ahead, behind = ahead.format(user=user), behind.format(user=user)
    encoded = b64(f"{ahead}{SECRET}{behind}", url_safe=url_safe, padded=padded)
    before, after = kept_around_secret(len(ahead), len(SECRET), encoded)

    assert redactor.text(f"token={encoded}&next=1") == f"token={before}{MARK}{after}&next=1"


def test_the_url_safe_encoding_differs_from_the_standard_one_for_the_secret_tested() -> None:
    for prefix in ("", "x", "xy"):
        assert b64(prefix + SECRET) != b64(prefix + SECRET, url_safe=True)


def test_hex_of_a_secret_is_redacted_in_either_case() -> None:
    redactor = redaction.Redactor([SECRET])
    raw = SECRET.encode()

    said = redactor.text(f"lower {raw.hex()} upper {raw.hex().upper()} in a longer one 00ff{raw.hex()}ff00")

    assert said == f"lower {MARK} upper {MARK} in a longer one 00ff{MARK}ff00"


def test_requests_latin1_basic_header_of_a_non_ascii_secret_is_redacted() -> None:
    secret = "pässwörd-ünïcode"
    redactor = redaction.Redactor([secret])
    for raw in (secret.encode("latin-1"), secret.encode()):  # requests' and urllib3's; httpx's
        encoded = b64(b"bob:" + raw)
        before, after = kept_around_secret(4, len(raw), encoded)

        assert redactor.text(f"Basic {encoded}") == f"Basic {before}{MARK}{after}"


def test_each_string_of_a_json_secret_gets_the_encodings_too() -> None:
    redaction.load(ENVIRON)

    said = redaction.text(f"{basic('etl_user', PASSWORD)} {PASSWORD.encode().hex()}")

    assert PASSWORD not in said
    assert b64(f"etl_user:{PASSWORD}") not in said
    assert said.count(MARK) == 3  # the username's base64, the password's and the password's hex


def test_a_secret_quoted_for_a_url_keeping_its_slash_is_redacted() -> None:
    secret = "wJalrXUt/K7MDENG+bPxRfiCY"
    redactor = redaction.Redactor([secret])

    said = redactor.text(f"postgresql://etl_user:{urllib.parse.quote(secret)}@db.internal/lake")

    assert said == f"postgresql://etl_user:{MARK}@db.internal/lake"


def test_the_longest_form_at_a_place_is_the_one_replaced() -> None:
    """A value's first line is a form of its own and a prefix of the value: the value goes as one."""
    value = "first-line-of-it\nsecond-line-of-it"
    redactor = redaction.Redactor([value, "aaaaaaab", "aaaaaaabaaaaaaab"])

    assert redactor.text(f"<{value}>") == f"<{MARK}>"
    assert redactor.text(f"<{json.dumps(value)}>") == f'<"{MARK}">'
    assert redactor.text("aaaaaaabaaaaaaab aaaaaaab") == f"{MARK} {MARK}"
    assert redactor.text(f"<{value[:20]}...>") == f"<{MARK}>"


def test_a_png_and_ordinary_text_are_left_as_they_were() -> None:
    redaction.load(ENVIRON)
    image = b64(png())
    ordinary = (
        "commit 34b4b46c3ebe327e5940cf94d0dd35f27bf0a1b2, run 20260101T000000Z-a1b2c3, id "
        "123e4567-e89b-12d3-a456-426614174000: mean 0.4375, rows 1024; aGVsbG8gd29ybGQ= is 'hello world'\n"
    )

    assert redaction.text(image) == image
    assert redaction.text(ordinary) == ordinary


def test_a_json_secrets_short_strings_are_not_encoded() -> None:
    """A 5-byte string redacted as base64 would be 6 characters, too few to tell from an image's bytes."""
    redactor = redaction.Redactor([json.dumps({"user": "admin", "password": PASSWORD})])
    text = f"{b64('admin')} {b64('xadmin')} {b64('xyadmin')} {b'admin'.hex()}"

    assert redactor.text(text) == text


def test_the_encodings_are_redacted_in_a_notebook_and_its_image_is_kept() -> None:
    redaction.load(ENVIRON)
    image = b64(png())
    request = (
        f"send: b'GET /v1/items HTTP/1.1\\r\\nHost: api.internal\\r\\nAuthorization: {basic('svc', SECRET)}"
        "\\r\\n\\r\\n'\n"
    )
    token = f"token={b64('x' + SECRET, url_safe=True, padded=False)} key={SECRET.encode().hex()}\n"
    header = {"Authorization": basic("etl_user", PASSWORD), "X-Key": SECRET.encode().hex().upper()}
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "source": ["requests.get(url, auth=auth)\n"],
                "metadata": {},
                "execution_count": 1,
                "outputs": [
                    {"output_type": "stream", "name": "stderr", "text": [request, token]},
                    {"output_type": "execute_result", "data": {"text/plain": [repr(header)]}, "metadata": {},
                     "execution_count": 1},
                    {"output_type": "display_data", "data": {"image/png": image, "text/plain": ["<Figure>"]},
                     "metadata": {}},
                ],
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip

    redacted = redaction.ACTIVE.file_bytes(json.dumps(notebook).encode(), "report.ipynb")

    assert redacted is not None
    outputs = json.loads(redacted)["cells"][0]["outputs"]
    said = "".join(outputs[0]["text"]) + "".join(outputs[1]["data"]["text/plain"])
    # the header's base64, the token's and the key's hex; the dict's base64 (user, password) and upper hex
    assert said.count(MARK) == 6, said
    for form in (b64(f"svc:{SECRET}")[6:-6], b64(f"etl_user:{PASSWORD}")[12:-4], SECRET.encode().hex()):
        assert form.upper() not in said.upper()
    assert b64("x" + SECRET, url_safe=True)[4:-4] not in said
    assert outputs[2]["data"]["image/png"] == image


# --- columns_holding_secrets -----------------------------------------------------------------------------

HEADER = basic("bob", SECRET)
TABLES: dict[str, Callable[[], pa.Table]] = {
    "string": lambda: pa.table({"s": ["clean", None, f"pw={SECRET};"]}),
    "large_string": lambda: pa.table({"s": pa.array([None, SECRET], pa.large_string())}),
    "string_view": lambda: pa.table({"s": pa.array([SECRET, None], pa.string_view())}),
    "dictionary": lambda: pa.table({"s": pa.array(["a", SECRET, "a", None]).dictionary_encode()}),
    "list<string>": lambda: pa.table({"s": pa.array([["a"], None, ["b", SECRET]])}),
    "large_list<string>": lambda: pa.table({"s": pa.array([[SECRET]], pa.large_list(pa.string()))}),
    "struct field": lambda: pa.table({"s": pa.array([{"n": 1, "f": "x"}, None, {"n": 2, "f": SECRET}])}),
    "map value": lambda: pa.table({"s": pa.array([[("k", SECRET)]], pa.map_(pa.string(), pa.string()))}),
    "map key": lambda: pa.table({"s": pa.array([[(SECRET, 1)]], pa.map_(pa.string(), pa.int64()))}),
    "binary": lambda: pa.table({"s": pa.array([b"\xff\x00", None, SECRET.encode()])}),
    "large_binary": lambda: pa.table({"s": pa.array([SECRET.encode()], pa.large_binary())}),
    "chunked": lambda: pa.table({"s": pa.chunked_array([["clean", None], [], [None, SECRET]])}),
    "base64 basic": lambda: pa.table({"s": ["Basic Zm9vOmJhcg==", HEADER]}),
    "hex": lambda: pa.table({"s": [SECRET.encode().hex()]}),
    "json password": lambda: pa.table({"s": [f"postgresql://etl_user:{PASSWORD}@db/lake"]}),
}


@pytest.mark.parametrize("build", TABLES.values(), ids=TABLES.keys())
def test_a_column_holding_a_secret_is_named(build: Callable[[], pa.Table]) -> None:
    redaction.load(ENVIRON)
    table = build()
    table = table.append_column("clean", pa.array(["x"] * table.num_rows))

    assert redaction.columns_holding_secrets(table) == ["s"]


def test_a_column_whose_name_holds_a_secret_is_named_redacted() -> None:
    redaction.load(ENVIRON)
    table = pa.table({f"col_{SECRET}": [1], "nested": pa.array([{PASSWORD: 1}]), "clean": [2]})

    assert redaction.columns_holding_secrets(table) == [f"col_{MARK}", "nested"]


def test_a_clean_or_empty_table_holds_no_secret() -> None:
    redaction.load(ENVIRON)
    clean = pa.table(
        {
            "s": ["a", None, "Basic Zm9vOmJhcg=="],
            "image": [b64(png(32, 32)), None, ""],
            "d": pa.array(["x", "y", None]).dictionary_encode(),
            "l": pa.array([["etl"], None, []]),
            "st": pa.array([{"f": "Pa55"}, None, {"f": None}]),
            "b": pa.array([b"\x00", None, b""]),
            "n": [1, None, 3],
        }
    )

    assert redaction.columns_holding_secrets(clean) == []
    assert redaction.columns_holding_secrets(clean.slice(0, 0)) == []
    assert redaction.columns_holding_secrets(pa.table({})) == []


def test_without_secrets_no_column_holds_one() -> None:
    redaction.load({})

    assert redaction.columns_holding_secrets(pa.table({"s": [SECRET]})) == []
