"""One run, start to finish: the run object the steps share, and the one place a run ends.

    the two users and the run's folders (processes.py, sandbox.py) -> configuration (config.py)
      -> notebook, as the notebook's user (execute.py) -> the checked copy of its output (staged.py)
      -> check, as the notebook's user, on that copy (checking.py)
      -> publish that copy (publish.py: one commit to the output table, table.py)
      -> expiry and the consumers' event
      -> finish: report (report.py), metrics and mail (notify.py), last line

Every step raises RunFailed (or Stopped) for a failure; finish() turns it into the manifest, the report,
the mail, the run's last line and its exit code (exits.py).
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import compare, exits, notify, page, processes, publish, redaction, table
from runner import config as configuration
from runner.checking import run_check, verdict
from runner.credentials import NotebookIdentity, RoleCredentials
from runner.errors import NOTHING, PUBLISHED, SAID, RunFailed, Stopped
from runner.execute import execute, executed_bytes, failing_cell, notebook_python
from runner.locations import Location
from runner.processes import NotebookUser
from runner.report import MANIFEST, HtmlReport, RunPlace, links, manifest_bytes, store
from runner.sandbox import Workspace, confine_runner, refuse_if_the_notebook_may_write
from runner.staged import Inventory, copy_staged, remove_published_from_staging

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("runner")


@dataclass
class Outcome:
    status: str  # succeeded, failed, stopped
    exit: exits.Exit
    step: str
    message: str
    output: str = NOTHING  # what became of the day's output (errors.py): the last line says it


@dataclass
class Run:
    environ: dict[str, str]  # as the container got it: the notebook's environment is made from it
    work: Workspace
    user: NotebookUser
    started: float = field(default_factory=time.time)
    config: configuration.Config | None = None
    stage: str = "starting"
    reports_ready: bool = False  # the run's report folder exists: the report can be stored there
    html: HtmlReport | None = None
    check_output: bytearray | None = None  # check.txt, kept in memory as the check writes it
    inventory: Inventory | None = None
    committed: table.Committed | None = None
    comparison: dict[str, Any] | None = None  # the checked rows against production's (compare.py)
    told: str = ""  # what became of the consumers' event: '' (none configured), sent, or why not
    publishing: bool = False  # once publishing has begun, a stop waits for it to complete
    stop_signal: str = ""
    finishing: bool = False

    @property
    def name(self) -> str:
        return (
            self.config.notebook_name
            if self.config
            else Path(self.environ.get("NOTEBOOK") or "notebook").stem
        )

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
        # the scratch folder is where TABLE_CATALOG=none keeps its catalog file
        config.table = replace(config.table, scratch=self.work.private)
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
        with NotebookIdentity(self.environ, role, self.work) as identity:
            log.info("%s", identity.describe())
            self.stage = "running the notebook"
            name = config.notebook.name
            self.html = HtmlReport(lambda: executed_bytes(name), name)
            execute(config, identity, self.user, self.work, self.html.start)
            self.html.render()
            # No process of the notebook's user is left: the copy is what the check reads and what is
            # published, whatever is written to staging from now on.
            self.stage = "copying the output for its check"
            partition = self.work.checked / config.partition
            staged = config.staging.child(config.partition)
            self.inventory = copy_staged(staged, config.staging, partition)
            self.stage = "checking the output"
            self.check_output = bytearray()
            run_check(config, identity.env(), notebook_python(), self.work.checked, self.user,
                      self.check_output)  # fmt: skip
        return self.publish()

    def publish(self) -> Outcome:
        config, inventory = self.config, self.inventory
        assert config is not None and inventory is not None
        self.stage = "publishing"
        self.publishing = True
        said = redaction.text(verdict(bytes(self.check_output or b"").decode(errors="replace")))
        lineage = table.Lineage(
            config.run_id, config.run_date, config.commit, table.image_of(self.environ), said
        )
        committed = self.committed = publish.publish(
            inventory, config, lineage, self.user, self.compare_with_production
        )
        remove_published_from_staging(inventory, config.staging, self.user)
        self.after_commit(committed, lineage)
        replaced = f", replacing {committed.replaced} rows" if committed.replaced else ""
        told = f"; consumers were NOT told ({self.told})" if self.told not in ("", "sent") else ""
        return Outcome(
            "succeeded", exits.OK, "",
            f"published {committed.rows} rows of {config.run_date} to the table {committed.table} at "
            f"{config.output} (snapshot {committed.snapshot_id}{replaced}){told}", PUBLISHED,
        )  # fmt: skip

    def compare_with_production(self, checked: pa.Table) -> None:
        """With COMPARE_URI: the checked rows against production's, before the commit (never a failure)."""
        config = self.config
        if config is None or config.compare is None:
            return
        production = config.compare.production
        log.info("comparing the checked rows with production's table %s at %s", production.name,
                 production.location)  # fmt: skip
        self.comparison = compare.against_production(config.compare, config.run_date, checked)
        for line in compare.summary_lines(self.comparison):
            log.info("comparison: %s", line)

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
        """The local folders the run writes: the runner's alone (RunFailed exit 2 for one the notebook's user
        could write: it could change the published table or the reports), creatable by the runner; the run's
        staging folder writable by the notebook's group (it writes there, and the runner belongs to it)."""
        config = self.config
        assert config is not None
        for name, loc in (("OUTPUT_URI", config.output), ("REPORT_URI", config.reports)):
            if not loc.is_s3:
                refuse_if_the_notebook_may_write(name, loc.path, self.user)
        for name, loc in (
            ("OUTPUT_URI", config.output),
            ("REPORT_URI", config.run_reports),
            ("STAGING_URI", config.staging),
        ):
            if loc.is_s3:
                continue
            try:
                loc.path.mkdir(parents=True, exist_ok=True)
                if loc == config.staging:
                    os.chown(loc.path, -1, self.user.gid)
                    loc.path.chmod(0o2770)
            except OSError as exc:
                raise configuration.fail(
                    f"{name} folder {loc} cannot be created ({exc.strerror}): mount a folder the runner's "
                    f"user ({os.getuid()}) may write (make run passes RUNNER_USER, your own uid)"
                ) from exc
        self.reports_ready = True

    # --- the end ----------------------------------------------------------------------------------------

    def stopped_outcome(self, signal_name: str) -> Outcome:
        where = ""
        if self.config is not None and self.stage == "running the notebook":
            cell = failing_cell(self.config.notebook.name)
            where = f" in {cell}" if cell else ""
            what = f"running {self.config.notebook.name}{where}"
        else:
            what = self.stage
        return Outcome("stopped", exits.STOPPED, "stopped", f"stopped by {signal_name} while {what}")

    def report_files(self, manifest: dict[str, Any], dest: Location) -> dict[str, bytes]:
        """The report's files, from memory, redacted: the executed notebook, check.txt, the comparison, and
        the page (the run's header, from the redacted manifest, above the notebook's cells)."""
        assert self.config is not None
        files: dict[str, bytes | None] = {f"{self.name}.ipynb": executed_bytes(self.config.notebook.name)}
        if self.check_output is not None:
            files["check.txt"] = bytes(self.check_output)
        if self.comparison is not None:
            files[compare.FILE] = compare.as_bytes(redaction.data(self.comparison))
        redacted = {name: redaction.ACTIVE.file_bytes(data, name) for name, data in files.items()}
        kept = {name: data for name, data in redacted.items() if data is not None}
        # the page is made of redacted parts (page.py): rewriting it would rewrite its markup and its policy
        kept[f"{self.name}.html"] = self.page(manifest, dest, set(kept) | {MANIFEST})
        return kept

    def page(self, manifest: dict[str, Any], dest: Location, files: set[str]) -> bytes:
        """The report's HTML page (page.py): every text in it redacted before it is escaped."""
        config = self.config
        assert config is not None
        cells = self.html.wait() if self.html is not None else None
        missing = "The notebook did not start." if self.html is None else "It could not be rendered."
        place = RunPlace(config.reports, config.run_date, config.run_id, config.staging, f"{self.name}.html")
        said = self.check_output
        check = None if said is None else redaction.text(bytes(said).decode(errors="replace"))
        failing = failing_cell(config.notebook.name) if manifest["status"] != "succeeded" else ""
        header = page.Header(manifest, check, links(dest, place, files, notify.region()), failing)
        return page.document(header, cells, missing).encode()

    def manifest(self, outcome: Outcome, report: str, dest: Location | None) -> dict[str, Any]:
        config = self.config
        return {
            "run_id": config.run_id if config else self.environ.get("RUN_ID", ""),
            "date": config.run_date if config else self.environ.get("RUN_DATE", ""),
            "image": config.image if config else self.environ.get("RUNNER_IMAGE", "unknown"),
            "notebook": self.name,
            "status": outcome.status,
            "exit_code": outcome.exit.code,
            "meaning": outcome.exit.meaning,
            "failed_step": outcome.step or None,
            "message": outcome.message,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_seconds": round(time.time() - self.started, 2),
            "rows": self.committed.rows if self.committed else None,
            "output_uri": config.output.uri if config else "",
            "table": config.table.name if config and config.table else "",
            "snapshot_id": self.committed.snapshot_id if self.committed else None,
            "event": self.told or None,
            "report_uri": dest.uri if dest else "",
            "report": report,
            "published_files": [f.name for f in self.inventory.files]
            if self.inventory and self.committed
            else [],
            "not_published": self.inventory.left_out if self.inventory else [],
            "check_verdict": verdict(bytes(self.check_output).decode(errors="replace"))
            if self.check_output is not None
            else None,
            "commit": config.commit if config else self.environ.get("RUNNER_COMMIT", "unknown"),
            "runner_version": self.environ.get("NOTEBOOK_RUNNER_VERSION", "unknown"),
            "comparison": compare.figures(self.comparison) if self.comparison is not None else None,
        }

    def record(self, outcome: Outcome) -> dict[str, Any]:
        """The report and the manifest stored, from memory; returns the manifest (its report field says
        where the report is, or why it was not stored)."""
        dest = self.config.run_reports if self.config is not None and self.reports_ready else None
        page_name = f"{self.name}.html"
        report = f"{dest}/{page_name}" if dest is not None else "none (the run stopped before it started)"
        manifest = redaction.data(self.manifest(outcome, report, dest))
        if dest is None:
            return manifest
        files = self.report_files(manifest, dest)
        lost = store(dest, files)
        if lost:
            manifest["not_stored"] = redaction.data(lost)
        if page_name not in files or page_name in lost:
            manifest["report"] = f"{dest}/{MANIFEST}"
        missing = store(dest, {MANIFEST: manifest_bytes(manifest)})
        if missing:
            manifest["report"] = f"not stored: {missing[MANIFEST]}"
        return manifest

    def finish(self, outcome: Outcome) -> int:
        """The report and the manifest stored, the metrics and the mail sent, the last line printed: each
        step on its own, so that whatever fails among them, the last line and the exit code tell the truth."""
        self.finishing = True
        config = self.config
        try:
            manifest = self.record(outcome)
        except Exception as exc:
            log.exception("the run's record could not be made")
            manifest = redaction.data(
                self.manifest(outcome, f"not stored: {type(exc).__name__}: {exc}", None)
            )
        # Every run that finishes is counted, by exit code (a configuration refused before it was read too,
        # from the variables as given); only a success puts SuccessfulRuns (notify.py).
        namespace = config.metrics_namespace if config else self.environ.get("METRICS_NAMESPACE", "")
        if namespace:
            job = config.metrics_job if config else self.environ.get("METRICS_JOB") or self.name
            notify.put_run_metrics(namespace, job, manifest)
        if (
            config is not None
            and config.topic_arn
            and (outcome.exit is not exits.OK or config.notify_on_success)
        ):
            notify.notify(config.topic_arn, manifest)
        gc.collect()  # what the collector logs about the finished kernel client comes before the last line
        print(redaction.text(last_line(outcome, manifest)), file=sys.stderr, flush=True)
        return outcome.exit.code


def last_line(outcome: Outcome, manifest: dict[str, Any]) -> str:
    """The run in one sentence: what happened, what became of the day's output, where the report is."""
    run_id, date = manifest["run_id"] or "?", manifest["date"] or "?"
    run = f"notebook-runner: run {run_id} of {manifest['notebook']} for {date}"
    if outcome.exit is exits.OK:
        return f"{run} succeeded: {outcome.message}; report: {manifest['report']}"
    output = {
        NOTHING: "nothing was published; ",
        SAID: "",
        PUBLISHED: f"the day WAS published (snapshot {manifest['snapshot_id']}); ",
    }[outcome.output]
    return (
        f"{run} {outcome.status.upper()} (exit {outcome.exit.code}, {outcome.step}): {outcome.message}; "
        f"{output}report: {manifest['report']}"
    )


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
    problem = processes.runner_is_confined()
    if problem:
        print(f"notebook-runner: {problem}; nothing was run", file=sys.stderr)
        return exits.CONFIG.code
    environ = dict(os.environ)
    environ.setdefault("PROJECT_DIR", str(Path.cwd()))  # the image's /app, before the runner leaves it
    user = NotebookUser.of_image()
    work = Workspace.create(user)
    try:
        confine_runner(work)
        if argv[:1] in (["history"], ["restore"]):
            return table_command(argv)
        return run_once(Run(environ, work, user), argv)
    finally:
        work.remove(user)


def run_once(run: Run, argv: list[str]) -> int:
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
        outcome = Outcome("failed", exc.exit, exc.step, str(exc), exc.output)
    except Stopped as exc:
        with processes.signals_held():
            run.user.stop_all("after the stop")
        outcome = run.stopped_outcome(str(exc))
    except Exception as exc:  # an unforeseen failure still ends the run in finish, with its reason
        log.exception("the runner itself failed")
        after = " after publishing the day" if run.committed else ""
        outcome = Outcome(
            "failed", exits.INTERNAL, "runner",
            f"the runner itself failed{after} ({type(exc).__name__}: {exc}): this is a bug, please report it "
            "with the log above", PUBLISHED if run.committed else NOTHING,
        )  # fmt: skip
    return run.finish(outcome)
