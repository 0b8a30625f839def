"""What a run came to, as data: the outcome (status, exit code, failed step, message and what became of the
day's output), the manifest made of it and the run's facts, and the last line made of the manifest. Pure:
no file, no network, no clock (run.py gathers the facts and delivers what is made here; notify.py makes the
mail and the metrics of the same manifest)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from runner import exits, printable
from runner.errors import Output, RunFailed


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded, failed, stopped
    exit: exits.Exit
    step: str
    message: str
    output: Output  # what became of the day's output (errors.py): the last line and the mail say it


def succeeded(message: str) -> Outcome:
    return Outcome("succeeded", exits.OK, "", message, Output.PUBLISHED)


def failed(exc: RunFailed, published: bool) -> Outcome:
    """A step's failure; once the day was published, a later failure leaves it published."""
    return Outcome("failed", exc.exit, exc.step, str(exc), Output.PUBLISHED if published else exc.output)


def stopped(signal_name: str, what: str) -> Outcome:
    """A stop never interrupts a commit (run.py waits for it): the day's output is as it was."""
    return Outcome("stopped", exits.STOPPED, "stopped", f"stopped by {signal_name} while {what}",
                   Output.UNCHANGED)  # fmt: skip


def crashed(exc: BaseException, published: bool) -> Outcome:
    """A failure the runner did not foresee: a bug, said as one, with what became of the day's output."""
    after = " after publishing the day" if published else ""
    return Outcome(
        "failed", exits.INTERNAL, "runner",
        f"the runner itself failed{after} ({type(exc).__name__}: {exc}): this is a bug, please report it "
        "with the log above", Output.PUBLISHED if published else Output.UNCHANGED,
    )  # fmt: skip


@dataclass(frozen=True)
class Facts:
    """What the run knows of itself when it finishes (run.py gathers them, from its configuration or, when
    that was refused, from the variables as given)."""

    run_id: str
    date: str
    image: str
    notebook: str
    commit: str
    runner_version: str
    started: float  # seconds since the epoch
    ended: float
    output_uri: str = ""
    table: str = ""
    rows: int | None = None  # the rows the commit added (None: no commit)
    snapshot_id: int | None = None
    event: str = ""  # the consumers' event: '' (none configured), sent, or why not
    published_files: list[str] = field(default_factory=list)
    not_published: list[str] = field(default_factory=list)
    check_verdict: str | None = None
    comparison: dict[str, Any] | None = None  # compare.figures()


def manifest(facts: Facts, outcome: Outcome, report: str, report_uri: str) -> dict[str, Any]:
    """The run's manifest.json: its facts and outcome; report says where the report is (or why there is
    none), report_uri the run's report folder ('' when it has none). Each string one printable line of at
    most printable.MESSAGE_LIMIT characters, whoever chose its words (a column's name, a file's, a check's
    verdict): the last line, the page and the mail are made of it."""
    return shown(
        {
            "run_id": facts.run_id,
            "date": facts.date,
            "image": facts.image,
            "notebook": facts.notebook,
            "status": outcome.status,
            "exit_code": outcome.exit.code,
            "meaning": outcome.exit.meaning,
            "failed_step": outcome.step or None,
            "message": outcome.message,
            "output": outcome.output.value,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(facts.started)),
            "duration_seconds": round(facts.ended - facts.started, 2),
            "rows": facts.rows,
            "output_uri": facts.output_uri,
            "table": facts.table,
            "snapshot_id": facts.snapshot_id,
            "event": facts.event or None,
            "report_uri": report_uri,
            "report": report,
            "published_files": facts.published_files,
            "not_published": facts.not_published,
            "check_verdict": facts.check_verdict,
            "commit": facts.commit,
            "runner_version": facts.runner_version,
            "comparison": facts.comparison,
        }
    )


def shown(value: Any) -> Any:
    """A JSON document with every string, keys too, made one printable line (printable.one_line)."""
    if isinstance(value, str):
        return printable.one_line(value)
    if isinstance(value, list):
        return [shown(v) for v in value]
    if isinstance(value, dict):
        return {shown(k): shown(v) for k, v in value.items()}
    return value


def said(manifest: dict[str, Any]) -> str:
    """What became of the day's output, in words, from the manifest's output field: the one sentence the
    last line and the mail both say."""
    output = Output(manifest.get("output") or Output.UNCHANGED)
    if output is Output.PUBLISHED:
        return f"the day WAS published (snapshot {manifest['snapshot_id']})"
    if output is Output.UNKNOWN:
        return (
            "whether the day was published is unknown (the table could not be read back): `make history "
            f"DATE={manifest['date']}` shows whether run {manifest['run_id']} is in it"
        )
    return "nothing was published"


def last_line(manifest: dict[str, Any]) -> str:
    """The run in one sentence: what happened, what became of the day's output, where the report is."""
    run_id, date = manifest["run_id"] or "?", manifest["date"] or "?"
    run = f"notebook-runner: run {run_id} of {manifest['notebook']} for {date}"
    if manifest["exit_code"] == exits.OK.code:
        return f"{run} succeeded: {manifest['message']}; report: {manifest['report']}"
    return (
        f"{run} {manifest['status'].upper()} (exit {manifest['exit_code']}, {manifest['failed_step']}): "
        f"{manifest['message']}; {said(manifest)}; report: {manifest['report']}"
    )
