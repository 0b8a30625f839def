"""One run, start to finish: the run object the steps share, and the one place a run ends.

    the two users and the run's folders (processes.py, sandbox.py) -> configuration (config.py)
      -> notebook, as the notebook's user (execute.py) -> the checked copy of its output (staged.py)
      -> check, as the notebook's user, on that copy (checking.py)
      -> publish that copy (publish.py: one commit to the output table, table.py)
      -> the consumers' event (notify.py) and the table's upkeep (maintenance.py)
      -> finish: the outcome and the run's facts made into the manifest and the last line (outcome.py), the
         report stored (report.py, page.py), metrics and mail sent (notify.py), the last line printed

Every step raises RunFailed (or Stopped) for a failure, saying what became of the day's output; finish()
only delivers what outcome.py makes of it, and returns the exit code (exits.py).
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import (
    compare,
    exits,
    history,
    maintenance,
    notify,
    outcome,
    page,
    processes,
    publish,
    redaction,
    table,
)
from runner import config as configuration
from runner.catalog import Committed, Lineage
from runner.checking import run_check, verdict
from runner.credentials import NotebookIdentity, RoleCredentials
from runner.errors import RunFailed, Stopped
from runner.execute import execute, executed_bytes, failing_cell, notebook_python
from runner.locations import Location
from runner.processes import READER_ACCOUNT, NotebookUser
from runner.report import MANIFEST, HtmlReport, RunPlace, links, manifest_bytes, store
from runner.sandbox import Workspace, confine_runner, refuse_if_the_notebook_may_write
from runner.staged import Inventory, copy_staged, remove_published_from_staging

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("runner")


@dataclass
class Run:
    environ: dict[str, str]  # as the container got it: the notebook's environment is made from it
    work: Workspace
    user: NotebookUser  # the notebook's code and its check run as this user
    reader: NotebookUser  # the checked files are parsed as this one, while the check runs (publish.py)
    started: float = field(default_factory=time.time)
    config: configuration.Config | None = None
    stage: str = "starting"
    reports_ready: bool = False  # the run's report folder exists: the report can be stored there
    html: HtmlReport | None = None
    check_output: bytearray | None = None  # check.txt, kept in memory as the check writes it
    inventory: Inventory | None = None
    committed: Committed | None = None
    comparison: dict[str, Any] | None = None  # the checked rows against production's (compare.py)
    told: str = ""  # what became of the consumers' event: '' (none configured), sent, or why not
    publishing: bool = False  # once publishing has begun, a stop waits for it to complete
    stop_signal: str = ""
    finishing: bool = False
    preparing: threading.Thread | None = None  # the commit's imports, while the notebook runs (table.py)

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

    def go(self) -> outcome.Outcome:
        redaction.load(self.environ)  # first: every later line, file and mail is redacted
        config = self.config = configuration.load(self.environ, scratch=self.work.private)
        catalog = config.table.catalog if config.table else ""
        self.preparing = threading.Thread(target=table.prepare, args=(catalog,), daemon=True)
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
            execute(config, identity, self.user, self.work, self.meanwhile)
            self.html.render()
            # No process of the notebook's user is left: the copy is what the check reads and what is
            # published, whatever is written to staging from now on.
            self.stage = "copying the output for its check"
            partition = self.work.checked / config.partition
            staged = config.staging.child(config.partition)
            self.inventory = copy_staged(staged, config.staging, partition)
            self.stage = "checking the output"
            self.check_output = bytearray()
            reading = publish.Reading(self.inventory, self.reader)  # the rows read back meanwhile
            reading.start()
            try:
                run_check(config, identity.env(), notebook_python(), self.work.checked, self.user,
                          self.check_output)  # fmt: skip
            finally:
                reading.join()  # its process ends with the check's, whatever the check said
        return self.publish(reading.result())

    def meanwhile(self) -> None:
        """Once the notebook's first cell is sent (execute.py): the report's imports and the commit's, off the
        critical path and not in the way of the kernel's start."""
        if self.html is not None:
            self.html.start()
        if self.preparing is not None:
            self.preparing.start()

    def publish(self, rows: pa.Table) -> outcome.Outcome:
        """The checked rows (publish.checked_rows) committed as the day's; the check has passed."""
        config, inventory = self.config, self.inventory
        assert config is not None and inventory is not None
        self.stage = "publishing"
        self.publishing = True
        if self.preparing is not None and self.preparing.ident is not None:
            self.preparing.join()
        said = redaction.text(verdict(bytes(self.check_output or b"").decode(errors="replace")))
        lineage = Lineage(config.run_id, config.run_date, config.commit, config.image, said)
        committed = self.committed = publish.publish(
            rows, inventory, config, lineage, self.compare_with_production
        )
        remove_published_from_staging(inventory, config.staging, self.user)
        self.after_commit(committed, lineage)
        replaced = f", replacing {committed.replaced} rows" if committed.replaced else ""
        told = f"; consumers were NOT told ({self.told})" if self.told not in ("", "sent") else ""
        return outcome.succeeded(
            f"published {committed.rows} rows of {config.run_date} to the table {committed.table} at "
            f"{config.output} (snapshot {committed.snapshot_id}{replaced}){told}"
        )

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

    def after_commit(self, committed: Committed, lineage: Lineage) -> None:
        """The day is published: tell the consumers, then expire the old history. Neither undoes the commit,
        so a failure here is a warning (the event's is on the last line)."""
        config = self.config
        assert config is not None and config.table is not None
        if config.table.event_bus:
            problem = notify.announce(config.table, committed, lineage)
            self.told = problem or "sent"
            if problem:
                log.warning("the consumers' event was not sent to %s (%s)", config.table.event_bus, problem)
            else:
                log.info("told consumers on the event bus %s", config.table.event_bus)
        try:
            log.info("%s", maintenance.expire(config.table, dt.datetime.now(dt.UTC)))
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

    def stopped_outcome(self, signal_name: str) -> outcome.Outcome:
        what = self.stage
        if self.config is not None and self.stage == "running the notebook":
            cell = failing_cell(self.config.notebook.name)
            what = f"running {self.config.notebook.name}{f' in {cell}' if cell else ''}"
        return outcome.stopped(signal_name, what)

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

    def facts(self) -> outcome.Facts:
        """What the run knows of itself now: from its configuration, or from the variables as given when
        the configuration was refused."""
        config, env, committed, inventory = self.config, self.environ, self.committed, self.inventory
        said = None if self.check_output is None else bytes(self.check_output).decode(errors="replace")
        return outcome.Facts(
            run_id=config.run_id if config else env.get("RUN_ID", ""),
            date=config.run_date if config else env.get("RUN_DATE", ""),
            image=config.image if config else configuration.image_of(env),
            notebook=self.name,
            commit=config.commit if config else env.get("RUNNER_COMMIT", "unknown"),
            runner_version=env.get("NOTEBOOK_RUNNER_VERSION", "unknown"),
            started=self.started,
            ended=time.time(),
            output_uri=config.output.uri if config else "",
            table=config.table.name if config and config.table else "",
            rows=committed.rows if committed else None,
            snapshot_id=committed.snapshot_id if committed else None,
            event=self.told,
            published_files=[f.name for f in inventory.files] if inventory and committed else [],
            not_published=inventory.left_out if inventory else [],
            check_verdict=None if said is None else verdict(said),
            comparison=compare.figures(self.comparison) if self.comparison is not None else None,
        )

    def record(self, ended: outcome.Outcome) -> dict[str, Any]:
        """The report and the manifest stored, from memory; returns the manifest (its report field says
        where the report is, or why it was not stored)."""
        dest = self.config.run_reports if self.config is not None and self.reports_ready else None
        page_name = f"{self.name}.html"
        report = f"{dest}/{page_name}" if dest is not None else "none (the run stopped before it started)"
        manifest = redaction.data(outcome.manifest(self.facts(), ended, report, dest.uri if dest else ""))
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

    def finish(self, ended: outcome.Outcome) -> int:
        """Deliver what the outcome makes: the report and the manifest stored, the metrics and the mail
        sent, the last line printed; each on its own, so that whatever fails among them, the last line and
        the exit code tell the truth."""
        self.finishing = True
        try:
            manifest = self.record(ended)
        except Exception as exc:
            log.exception("the run's record could not be made")
            why = f"not stored: {type(exc).__name__}: {exc}"
            manifest = redaction.data(outcome.manifest(self.facts(), ended, why, ""))
        self.tell(manifest)
        # No collection from here on (the entrypoint leaves with os._exit): what the collector would log about
        # the finished kernel client never follows the last line, and a full collection of this heap (a tenth
        # of a second) is not paid.
        gc.disable()
        print(redaction.text(outcome.last_line(manifest)), file=sys.stderr, flush=True)
        return ended.exit.code

    def tell(self, manifest: dict[str, Any]) -> None:
        """Every finished run counted by exit code, and every failure mailed (a configuration refused too,
        from the variables as given); a success mailed when asked (notify.py)."""
        config, env = self.config, self.environ
        namespace = config.metrics_namespace if config else env.get("METRICS_NAMESPACE", "")
        if namespace:
            job = config.metrics_job if config else env.get("METRICS_JOB") or self.name
            notify.put_run_metrics(namespace, job, manifest)
        # A configuration refused is mailed too, to SNS_TOPIC_ARN as given when it is a topic's ARN: in AWS
        # nothing else mails a runner's own exit code (RunMailer leaves them to the runner).
        topic = config.topic_arn if config else configuration.topic_of(env)
        wanted = manifest["status"] != "succeeded" or (config is not None and config.notify_on_success)
        if topic and wanted:
            notify.notify(topic, manifest)


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
            return history.command(argv)
        return run_once(Run(environ, work, user, NotebookUser.of_image(READER_ACCOUNT)), argv)
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
        ended = run.go()
    except RunFailed as exc:
        ended = outcome.failed(exc, published=run.committed is not None)
    except Stopped as exc:
        with processes.signals_held():
            run.user.stop_all("after the stop")
        ended = run.stopped_outcome(str(exc))
    except Exception as exc:  # an unforeseen failure still ends the run in finish, with its reason
        log.exception("the runner itself failed")
        ended = outcome.crashed(exc, published=run.committed is not None)
    return run.finish(ended)
