"""What a run shows of words it did not choose (a column's or a file's name, a check's verdict, a variable's
value): one line each channel takes, whoever wrote it. The last line, the manifest, the page and the mail are
made of the manifest; the log streams copy the notebook's and the check's output. In process, milliseconds.

Each case was reproduced against a whole run first (an attacker's review, issue 20): a 300,000-character
column name made a mail SNS refused (256 KB), so the failure was mailed to no one; a file name that is not
UTF-8 made a page and a mail that could not be encoded; ESC[8m in the notebook's output hid the runner's own
last line in a terminal."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
from pathlib import Path

import pytest
from test_outcome import FACTS, REPORT

from runner import exits, notify, outcome, page, printable, redaction
from runner.errors import RunFailed
from runner.processes import NotebookUser
from runner.run import Run, run_once
from runner.sandbox import Workspace

SNS_MESSAGE_BYTES = 256 * 1024  # SNS refuses a larger message
# C0 and C1 controls, the line and paragraph separators, and the characters that reorder what follows them
CONTROL = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F),
                            0x2028, 0x2029, *range(0x2066, 0x206A)]]  # fmt: skip
WORDS = {
    "a huge column name": "the column 'a." + "x" * 300_000 + "' has a dot",
    "a file name that is not UTF-8": "\udcff.parquet in staging cannot be read by the runner",
    "a terminal's conceal": "the check said: ok\x1b[8m",
    "a right-to-left override": "the check said: ok\u202e)dehsilbup 3 :deeccus(",
    "a paragraph separator": "bad\u2029notebook-runner: run r1 of usp for 2019-08-01 succeeded",
    "a forged last line": "bad\nnotebook-runner: run r1 of usp for 2019-08-01 succeeded: published 3 rows\r",
}


def shows_one_line(text: str) -> None:
    assert not any(c in text for c in CONTROL), "a control character is shown as it is"
    text.encode("utf-8")  # every channel encodes it (raises for a lone surrogate)


@pytest.mark.parametrize("words", WORDS.values(), ids=WORDS.keys())
def test_a_failure_s_words_make_one_line_every_channel_takes(words: str) -> None:
    ended = outcome.failed(RunFailed(exits.PUBLISH, words, "publish"), published=False)
    manifest = outcome.manifest(FACTS, ended, REPORT, REPORT.rsplit("/", 1)[0])
    subject, body = notify.mail(manifest)
    document = page.document(page.Header(manifest), None, "The notebook did not start.")

    shows_one_line(manifest["message"])
    shows_one_line(outcome.last_line(manifest))
    assert len(manifest["message"]) <= printable.MESSAGE_LIMIT + 60
    assert len(body.encode("utf-8")) < SNS_MESSAGE_BYTES and subject.isascii()
    document.encode("utf-8")
    json.dumps(manifest, ensure_ascii=False).encode("utf-8")


def test_what_was_cut_or_escaped_is_said() -> None:
    assert printable.one_line("x" * 5000).endswith("... (cut at 4,000 of 5,000 characters)")
    assert printable.one_line("a\x1b[8mb\nc") == "a\\x1b[8mb\\x0ac"
    assert printable.one_line("\udcff.parquet") == "\\udcff.parquet"
    assert printable.one_line("ok\u202eko") == "ok\\u202eko"


def test_every_string_of_the_manifest_is_one_line_file_names_too() -> None:
    facts = dataclasses.replace(FACTS, not_published=["\udcff\n.hidden"], check_verdict="\x07ok")
    manifest = outcome.manifest(facts, outcome.succeeded("published 3 rows"), REPORT, "")
    assert manifest["not_published"] == ["\\udcff\\x0a.hidden"] and manifest["check_verdict"] == "\\x07ok"


def test_the_notebook_s_output_reaches_the_log_with_its_lines_and_no_control_obeyed() -> None:
    out, kept = io.BytesIO(), io.BytesIO()
    redaction.copy_lines(io.BytesIO(b"plain\tline\r\nhidden \x1b[8mrest\rover\xc2\x9b2K\n"), out, kept)
    assert out.getvalue() == kept.getvalue() == b"plain\tline\nhidden \\x1b[8mrest\nover\\x9b2K\n"


def test_the_runner_s_log_lines_obey_no_control_either() -> None:
    record = logging.LogRecord("runner", logging.INFO, __file__, 1, "said %s", ("\x1b]0;title\x07",), None)
    assert redaction.RedactingFormatter().format(record) == "said \\x1b]0;title\\x07"


@pytest.mark.parametrize("words", WORDS.values(), ids=WORDS.keys())
def test_a_refused_variable_s_value_is_mailed_and_printed_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], words: str
) -> None:
    """The whole finish of a run (run_once): the configuration refused quotes the variable as given."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(notify, "notify", lambda _arn, manifest: sent.append(notify.mail(manifest)))
    environ = {
        "RUN_DATE": words,
        "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
        "RUN_ID": "r9",
    }

    user = NotebookUser(os.getuid(), os.getgid())
    code = run_once(Run(environ, Workspace(tmp_path / "work"), user, user), [])

    last = capsys.readouterr().err.rstrip("\n").splitlines()[-1]
    assert code == exits.CONFIG.code and "FAILED (exit 2, config)" in last
    shows_one_line(last)
    [(subject, body)] = sent
    assert len(body.encode("utf-8")) < SNS_MESSAGE_BYTES and subject.isascii()
