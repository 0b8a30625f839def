"""Text the runner did not write (the notebook's and the check's output, file and column names, messages
that quote them), made safe to show: a terminal's controls (ESC, CR, BEL, ...) are escaped so that no line
can rewrite, hide or forge what follows it, lone surrogates (a file name that is not UTF-8) are escaped so
that every channel can encode the text, and a message is cut to what every channel takes (a mail's body:
SNS refuses one over 256 KB)."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 4000  # characters of a run's message, and of each string of its manifest
# What a terminal obeys instead of showing: the C0 and C1 controls, and the marks, embeddings, overrides and
# isolates that reorder the text after them (a right-to-left override can make a line read backwards).
# CONTROLS spares tab and newline, which a stream of lines keeps; LINE_CONTROLS, for one line, takes them
# too, and the line and paragraph separators (str.splitlines breaks a line at them).
DIRECTION = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
CONTROLS = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{DIRECTION}]")
LINE_CONTROLS = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{DIRECTION}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unicode(text: str) -> str:
    """Lone surrogates (os.fsdecode's stand-ins for bytes that are not UTF-8) as \\udcXX escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def lines(text: str) -> str:
    """Lines of output as a terminal may show them: tab and newline kept, a carriage return made a newline
    (a progress bar's states one under the other: no line overwrites another), every other control
    escaped."""
    return CONTROLS.sub(_escape, _unicode(text.replace("\r\n", "\n").replace("\r", "\n")))


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line that says what it quotes: every control escaped (a newline too: the last line stays the
    last), cut at limit characters with a note of the length."""
    text = LINE_CONTROLS.sub(_escape, _unicode(text))
    if len(text) > limit:
        return f"{text[:limit]}... (cut at {limit:,} of {len(text):,} characters)"
    return text
