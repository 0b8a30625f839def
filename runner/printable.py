"""Text the runner did not write (the notebook's and the check's output, file and column names, messages
that quote them), made safe to show: a terminal's controls (ESC, CR, BEL, ...) are escaped so that no line
can rewrite, hide or forge what follows it, lone surrogates (a file name that is not UTF-8) are escaped so
that every channel can encode the text, and a message is cut to what every channel takes (a mail's body:
SNS refuses one over 256 KB)."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 4000  # characters of a run's message, and of each string of its manifest
# C0 and C1 controls but tab and newline, which a stream of lines keeps (one_line escapes them too)
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
LINE_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


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
