"""One run, start to finish: the run object the steps share, and the one place a run ends.

    configuration (config.py) -> notebook (execute.py) -> pin (publish.py) -> check (checking.py)
      -> publish (publish.py: one commit to the output table, table.py) -> expiry and the consumers' event
      -> finish: report (report.py), metrics and mail (notify.py), last line

Every step raises RunFailed (or Stopped) for a failure; finish() turns it into the manifest, the report,
the mail, the run's last line and its exit code (exits.py).
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner import config as configuration
from runner import exits, notify, processes, publish, redaction, table
from runner.checking import run_check, verdict
from runner.credentials import NotebookIdentity, RoleCredentials
from runner.errors import RunFailed, Stopped
from runner.execute import execute, failing_cell, kernel_python
from runner.locations import Location
from runner.report import HtmlReport, assemble, read_regular, write_and_store

log = logging.getLogger("runner")


@dataclass
class Outcome:
    status: str  # succeeded, failed, stopped
    exit: exits.Exit
    step: str
    message: str


@dataclass
class Run:
    environ: dict[str, str]
    work: Path
    started: float = field(default_factory=time.time)
    config: configuration.Config | None = None
    stage: str = "starting"
    reports_ready: bool = False  # the run's report folder exists: the report can be stored there
    html: HtmlReport | None = None
    check_report: Path | None = None
    inventory: publish.Inventory | None = None
    rows: int | None = None
    committed: table.Committed | None = None
    told: str = ""  # what became of the consumers' event: '' (none configured), sent, or why not
    publishing: bool = False  # once publishing has begun, a stop waits for it to complete
    stop_signal: str = ""
    finishing: bool = False

    @property
    def report_dir(self) -> Path:
        return self.work / "report"

    @property
    def executed(self) -> Path:
        assert self.config is not None
        return self.report_dir / f"{self.config.notebook_name}.ipynb"

    # --- signals ------------------------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.finishing or self.stop_signal:
            return
        log.info("received %s: stopping the run", name)
        if self.publishing:  # publishing is short; a partition is never left half-written
            log.info("the output is being published: completing the run first")
            return
        self.stop_signal = name
        raise Stopped(name)

    # --- the steps ------------------------------------------------------------------------------------

    def go(self) -> Outcome:
        redaction.load(self.environ)  # first: every later line, file and mail is redacted
        config = self.config = configuration.load(self.environ)
        assert config.table is not None
        config.table = replace(config.table, scratch=self.work)  # TABLE_CATALOG=none keeps its file here
        redaction.check_params(config.params)
        log.info(
            "run %s: %s for %s; data %s; output %s; report %s", config.run_id, config.notebook,
            config.run_date, config.data, config.output, config.run_reports,
        )  # fmt: skip
        self.prepare_locations()
        role = (
            RoleCredentials(config.notebook_role_arn, config.run_id, config.run_date)
            if config.notebook_role_arn
            else None
        )
        with NotebookIdentity(self.environ, role) as identity:
            log.info("%s", identity.describe())
            before = publish.fingerprint(config.output, config.reports, config.staging_area)
            try:
                self.stage = "running the notebook"
                self.html = HtmlReport(self.executed).start()
                execute(config, identity, self.executed)
                self.html.render()
                # Pinned before the check reads it: publish copies exactly these files, unchanged.
                self.inventory = publish.pin(config.staging.child(config.partition), config.staging)
                self.stage = "checking the output"
                # check.txt in a folder made after the kernel's end: nothing of the notebook's is there
                self.check_report = Path(tempfile.mkdtemp(prefix="check.", dir=self.work)) / "check.txt"
                run_check(config, identity.env(), kernel_python(), self.check_report)
            finally:
                with processes.signals_held():
                    self.guard_output(before)
        self.stage = "publishing"
        self.publishing = True
        said = redaction.text(verdict((read_regular(self.check_report) or b"").decode(errors="replace")))
        lineage = table.Lineage(
            config.run_id, config.run_date, config.commit, table.image_of(self.environ), said
        )
        committed = self.committed = publish.publish(self.inventory, config, lineage, self.work)
        self.rows = committed.rows
        publish.remove_published_from_staging(self.inventory, config.staging)
        self.after_commit(committed, lineage)
        replaced = f", replacing {committed.replaced} rows" if committed.replaced else ""
        told = f"; consumers were NOT told ({self.told})" if self.told not in ("", "sent") else ""
        return Outcome(
            "succeeded", exits.OK, "",
            f"published {committed.rows} rows of {config.run_date} to the table {committed.table} at "
            f"{config.output} (snapshot {committed.snapshot_id}{replaced}){told}",
        )  # fmt: skip

    def after_commit(self, committed: table.Committed, lineage: table.Lineage) -> None:
        """The day is published: tell the consumers, then expire the old history. Neither undoes the commit,
        so a failure here is a warning (the event's is on the last line)."""
        config = self.config
        assert config is not None and config.table is not None
        if config.table.event_bus:
            problem = table.announce(config.table, committed, lineage)
            self.told = problem or "sent"
            if problem:
                log.warning("the consumers' event was not sent to %s (%s)", config.table.event_bus, problem)
            else:
                log.info("told consumers on the event bus %s", config.table.event_bus)
        try:
            log.info("%s", table.expire(config.table, dt.datetime.now(dt.UTC)))
        except Exception as exc:  # noqa: BLE001 -- the next run expires what this one could not
            log.warning("the table's old snapshots were not expired (%s): the next run tries again", exc)

    def prepare_locations(self) -> None:
        """The local folders the run writes must be creatable by the container's user."""
        config = self.config
        assert config is not None
        for name, loc in (
            ("OUTPUT_URI", config.output),
            ("REPORT_URI", config.run_reports),
            ("STAGING_URI", config.staging),
        ):
            if loc.is_s3:
                continue
            try:
                loc.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise configuration.fail(
                    f"{name} folder {loc} cannot be created ({exc.strerror}): mount a folder the container "
                    f"user ({os.getuid()}) may write"
                ) from exc
        self.reports_ready = True

    def guard_output(self, before: publish.Fingerprint | None) -> None:
        """A local OUTPUT_URI is the runner's alone: undo what the notebook or its check wrote there."""
        assert self.config is not None
        if before is None:
            return
        config = self.config
        violation = publish.undo_writes(
            config.output,
            before,
            publish.fingerprint(config.output, config.reports, config.staging_area) or before,
        )
        after = publish.fingerprint(config.output, config.reports, config.staging_area)
        if violation is not None and after is not None:
            left = sorted((set(after.files) - set(before.files)) | (after.folders - before.folders))
            if left:  # the undo could not remove everything: say so, never that it did
                violation = RunFailed(
                    violation.exit,
                    f"{violation}; NOT removed, remove by hand: {', '.join(left[:5])}",
                    violation.step,
                )
        if violation is None:
            return
        if sys.exc_info()[0] is None:
            raise violation
        log.error("%s", violation)  # the failure already under way is the run's; this one is logged

    # --- the end ----------------------------------------------------------------------------------------

    def stopped_outcome(self, signal_name: str) -> Outcome:
        where = ""
        if self.config is not None and self.stage == "running the notebook":
            cell = failing_cell(self.executed)
            where = f" in {cell}" if cell else ""
            what = f"running {self.config.notebook.name}{where}"
        else:
            what = self.stage
        return Outcome("stopped", exits.STOPPED, "stopped", f"stopped by {signal_name} while {what}")

    def finish(self, outcome: Outcome) -> int:
        """The manifest and the report stored, the metrics and the mail sent, the last line printed."""
        self.finishing = True
        config = self.config
        body = self.html.wait() if self.html is not None else None
        name = config.notebook_name if config else Path(self.environ.get("NOTEBOOK") or "the notebook").stem
        files: dict[str, bytes | None] = {}
        if config is not None:
            files[f"{name}.ipynb"] = read_regular(self.executed)
            files[f"{name}.html"] = body.encode() if body is not None else None
        if self.check_report is not None:
            files["check.txt"] = read_regular(self.check_report)
        files = {file: redaction.ACTIVE.file_bytes(data, file) for file, data in files.items()}
        folder = assemble(self.work, files)
        report = "none (the run stopped before it started)"
        dest: Location | None = None
        if config is not None and self.reports_ready:
            dest = config.run_reports
            shown = f"{name}.html" if (folder / f"{name}.html").exists() else "manifest.json"
            report = f"{dest}/{shown}"
        manifest = {
            "run_id": config.run_id if config else self.environ.get("RUN_ID", ""),
            "date": config.run_date if config else self.environ.get("RUN_DATE", ""),
            "image": config.image if config else self.environ.get("RUNNER_IMAGE", "unknown"),
            "notebook": name,
            "status": outcome.status,
            "exit_code": outcome.exit.code,
            "meaning": outcome.exit.meaning,
            "failed_step": outcome.step or None,
            "message": outcome.message,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_seconds": round(time.time() - self.started, 2),
            "rows": self.rows,
            "output_uri": config.output.uri if config else "",
            "table": config.table.name if config and config.table else "",
            "snapshot_id": self.committed.snapshot_id if self.committed else None,
            "event": self.told or None,
            "report_uri": dest.uri if dest else "",
            "report": report,
            "published_files": [f.name for f in self.inventory.files]
            if self.inventory and outcome.exit is exits.OK
            else [],
            "not_published": self.inventory.left_out if self.inventory else [],
        }
        manifest = redaction.data(manifest)
        lost = write_and_store(folder, manifest, dest)
        if lost:
            manifest["report"] = report = lost
        if config is not None and outcome.exit is exits.OK and config.metrics_namespace:
            notify.put_success_metrics(config.metrics_namespace, config.metrics_job, manifest)
        if (
            config is not None
            and config.topic_arn
            and (outcome.exit is not exits.OK or config.notify_on_success)
        ):
            notify.notify(config.topic_arn, manifest)
        run_id, date = manifest["run_id"] or "?", manifest["date"] or "?"
        if outcome.exit is exits.OK:
            line = (
                f"notebook-runner: run {run_id} of {name} for {date} succeeded: {outcome.message}; "
                f"report: {report}"
            )
        else:
            # The table's own messages say what became of the table; a changed table is never a failure's
            said = ("is unknown", "another writer replaced it", "was not published")
            published = "" if any(words in outcome.message for words in said) else "nothing was published; "
            line = (
                f"notebook-runner: run {run_id} of {name} for {date} {outcome.status.upper()} "
                f"(exit {outcome.exit.code}, {outcome.step}): {outcome.message}; {published}report: {report}"
            )
        gc.collect()  # what the collector logs about the finished kernel client comes before the last line
        print(redaction.text(line), file=sys.stderr, flush=True)
        return outcome.exit.code


def table_command(argv: list[str]) -> int:
    """`history` and `restore` on the table OUTPUT_URI holds (make history, make restore)."""
    try:
        if not os.environ.get("OUTPUT_URI"):
            raise configuration.fail(f"{argv[0]} needs OUTPUT_URI, the table's location (and TABLE_CATALOG, "
                                     "OUTPUT_TABLE as the runs have them)")  # fmt: skip
        output = configuration.location("OUTPUT_URI", os.environ["OUTPUT_URI"])
        config = configuration.table_config(os.environ, output)
        if config.catalog == "none":
            raise configuration.fail("TABLE_CATALOG=none keeps no history: use sqlite or glue")
    except RunFailed as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return exc.exit.code
    return table.main(argv, config)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.captureWarnings(True)  # a library's warning goes through the redacting handler too
    for handler in logging.getLogger().handlers:  # jupyter_client's noise when a finished client is collected
        handler.setFormatter(redaction.RedactingFormatter("[runner] %(message)s"))
        handler.addFilter(lambda record: not record.getMessage().startswith("Could not destroy zmq context"))
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "traitlets", "asyncio", "pyiceberg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    processes.harden()
    if argv[:1] in (["-h"], ["--help"]):
        print(configuration.usage(), file=sys.stderr)
        return 0
    if argv[:1] in (["history"], ["restore"]):
        return table_command(argv)
    environ = dict(os.environ)
    work = Path(tempfile.mkdtemp(prefix="notebook-run.", dir=environ.get("TMPDIR") or "/tmp"))  # noqa: S108
    home = environ.get("HOME", "")
    if not home or not os.access(home, os.W_OK):  # an arbitrary --user has no home of its own
        environ["HOME"] = os.environ["HOME"] = str(work)
    (work / "report").mkdir()
    run = Run(environ, work)
    signal.signal(signal.SIGTERM, run.on_signal)
    signal.signal(signal.SIGINT, run.on_signal)
    try:
        if argv:
            print(configuration.usage(), file=sys.stderr)
            raise configuration.fail(
                f"run_notebook.sh takes no arguments (got: {' '.join(argv)}): configure it with environment "
                "variables"
            )
        outcome = run.go()
    except RunFailed as exc:
        outcome = Outcome("failed", exc.exit, exc.step, str(exc))
    except Stopped as exc:
        processes.kill_descendants("after the stop")
        outcome = run.stopped_outcome(str(exc))
    except Exception as exc:  # an unforeseen failure still ends the run in finish, with its reason
        log.exception("the runner itself failed")
        outcome = Outcome(
            "failed", exits.INTERNAL, "runner",
            f"the runner itself failed ({type(exc).__name__}: {exc}): this is a bug, please report it with "
            "the log above",
        )  # fmt: skip
    try:
        return run.finish(outcome)
    finally:
        shutil.rmtree(work, ignore_errors=True)
