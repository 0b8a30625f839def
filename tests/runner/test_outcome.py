"""The outcome as data (outcome.py): the manifest, the last line and the mail made from what each step
said became of the day's output, never from a message's words. In process, milliseconds."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from runner import exits, notify, outcome
from runner.errors import Output, RunFailed
from runner.processes import NotebookUser
from runner.run import Run, run_once
from runner.sandbox import Workspace

FACTS = outcome.Facts(
    run_id="r1", date="2019-08-01", image="img@sha256:" + "a" * 64, notebook="usp", commit="abc1234",
    runner_version="1.2.3", started=1_700_000_000.0, ended=1_700_000_012.345, output_uri="s3://out/usp",
    table="notebooks.usp",
)  # fmt: skip
REPORT = "s3://out/usp/_runs/date=2019-08-01/r1/usp.html"


def made(ended: outcome.Outcome, **facts: object) -> dict:
    from dataclasses import replace

    return outcome.manifest(replace(FACTS, **facts), ended, REPORT, REPORT.rsplit("/", 1)[0])


def test_a_success_is_published_and_its_manifest_carries_every_fact() -> None:
    manifest = made(outcome.succeeded("published 3 rows"), rows=3, snapshot_id=42, event="sent")

    assert manifest["output"] == "published" and manifest["status"] == "succeeded"
    assert (manifest["exit_code"], manifest["meaning"], manifest["failed_step"]) == (0, "success", None)
    assert (manifest["rows"], manifest["snapshot_id"], manifest["event"]) == (3, 42, "sent")
    assert manifest["duration_seconds"] == 12.35 and manifest["started_at"] == "2023-11-14T22:13:20Z"
    assert outcome.last_line(manifest) == (
        "notebook-runner: run r1 of usp for 2019-08-01 succeeded: published 3 rows; report: " + REPORT
    )


@pytest.mark.parametrize(
    ("output", "said"),
    [
        (Output.UNCHANGED, "nothing was published"),
        (Output.UNKNOWN, "whether the day was published is unknown"),
        (Output.PUBLISHED, "the day WAS published (snapshot 7)"),
    ],
)
def test_the_last_line_and_the_mail_say_the_output_the_step_set_whatever_its_message_says(
    output: Output, said: str
) -> None:
    """A message that claims the opposite (a notebook's words can reach it) changes nothing: the state is
    the field the raising step set."""
    lying = "the day WAS published (snapshot 1); nothing was published; is unknown"
    ended = outcome.failed(RunFailed(exits.PUBLISH, lying, "publish", output), published=False)
    manifest = made(ended, snapshot_id=7 if output is Output.PUBLISHED else None)

    line = outcome.last_line(manifest)
    _, body = notify.mail(manifest)

    assert manifest["output"] == output.value
    assert line == (
        f"notebook-runner: run r1 of usp for 2019-08-01 FAILED (exit 30, publish): {lying}; "
        f"{outcome.said(manifest)}; report: {REPORT}"
    )
    assert outcome.said(manifest).startswith(said)
    assert f"Output:   {outcome.said(manifest)}" in body.splitlines()


def test_an_unknown_output_says_how_to_find_out() -> None:
    ended = outcome.failed(RunFailed(exits.PUBLISH, "could not publish", "publish", Output.UNKNOWN), False)
    assert "`make history DATE=2019-08-01` shows whether run r1 is in it" in outcome.last_line(made(ended))


def test_a_failure_after_the_commit_leaves_the_day_published_whatever_the_step_said() -> None:
    late = RunFailed(exits.INTERNAL, "staging could not be emptied", "publish")  # default: unchanged
    assert outcome.failed(late, published=True).output is Output.PUBLISHED
    assert outcome.failed(late, published=False).output is Output.UNCHANGED


@pytest.mark.parametrize("published", [False, True])
def test_a_runner_bug_is_said_as_one_with_what_became_of_the_day(published: bool) -> None:
    ended = outcome.crashed(KeyError("x"), published=published)

    assert (ended.exit, ended.step) == (exits.INTERNAL, "runner")
    assert ended.output is (Output.PUBLISHED if published else Output.UNCHANGED)
    assert ("after publishing the day" in ended.message) is published


def test_a_stop_publishes_nothing_and_says_where_it_was() -> None:
    ended = outcome.stopped("SIGTERM", "running usp.ipynb in cell 3")
    manifest = made(ended)

    assert (ended.status, ended.exit.code, ended.output) == ("stopped", 143, Output.UNCHANGED)
    assert outcome.last_line(manifest).startswith(
        "notebook-runner: run r1 of usp for 2019-08-01 STOPPED (exit 143, stopped): stopped by SIGTERM while "
        "running usp.ipynb in cell 3; nothing was published; report: "
    )


def test_every_exit_code_gets_a_last_line_with_its_code_and_step() -> None:
    for code, exit in exits.EXITS.items():
        if exit is exits.OK:
            continue
        manifest = made(outcome.failed(RunFailed(exit, "why", "step"), published=False))
        assert f"(exit {code}, step): why; nothing was published; report: " in outcome.last_line(manifest)
        assert manifest["meaning"] == exit.meaning


def test_a_manifest_without_an_output_field_is_read_as_unchanged() -> None:
    """Manifests stored before the field existed (make runs reads them) still make a sentence."""
    manifest = made(outcome.failed(RunFailed(exits.CHECK, "no", "check"), published=False))
    del manifest["output"]
    assert outcome.said(manifest) == "nothing was published"


TOPIC = "arn:aws:sns:eu-west-1:123456789012:alerts"


@pytest.mark.parametrize(("topic", "mailed"), [(TOPIC, [TOPIC]), ("not-an-arn", []), ("", [])])
def test_a_run_whose_configuration_is_refused_is_mailed_to_the_topic_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    topic: str,
    mailed: list[str],
) -> None:
    """In AWS no one else mails a runner's own exit code (RunMailer leaves them to the runner): a bad
    variable, refused before the configuration exists, is mailed to SNS_TOPIC_ARN as given, once."""
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(notify, "notify", lambda arn, manifest: sent.append((arn, manifest)))
    environ = {"RUN_DATE": "2019-13-45", "SNS_TOPIC_ARN": topic, "NOTEBOOK": "x.ipynb", "RUN_ID": "r9"}
    run = Run(environ, Workspace(tmp_path / "work"), *[NotebookUser(os.getuid(), os.getgid())] * 2)

    code = run_once(run, [])

    assert not gc.isenabled()  # no collection after the last line (run.py's finish)
    assert code == exits.CONFIG.code
    assert [arn for arn, _ in sent] == mailed
    assert all(m["exit_code"] == 2 and m["output"] == "unchanged" for _, m in sent)
    assert "FAILED (exit 2, config)" in capsys.readouterr().err
