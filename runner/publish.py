"""Publish exactly what was checked (exit 30 when it cannot be; exit 20 for rows no table may take).

The check read the runner's copy of the staged files (staged.py); publishing reads that same copy. The
Parquet files are parsed by the runner's own pinned pyarrow in a process of the image's `reader` user (no
capability, no credential, no way into the runner's memory or files, nor the check's into it): a file
crafted to exploit the parser reaches nothing of the trusted step's powers. It hands the rows back as an
Arrow IPC stream, which the runner validates in full and refuses if a secret's value is in them (Reading:
all of it while the check runs, since both read the sealed copy); then, once the check has passed, it
commits them as one commit to the output table (table.py).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runner import exits, redaction, schema, table
from runner.catalog import Committed, Lineage
from runner.config import Config
from runner.errors import RunFailed
from runner.processes import HELPER_ENV, NotebookUser
from runner.staged import Inventory

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("runner")


def nothing_written(inventory: Inventory) -> RunFailed:
    return RunFailed(
        exits.PUBLISH,
        f"the notebook wrote nothing under {inventory.staged}/: write the output partitioned by date "
        "(output_uri/date=YYYY-MM-DD/)",
        "publish",
    )


def checked_rows(inventory: Inventory, reader: NotebookUser) -> pa.Table:
    """The checked copy's rows, parsed by the reader and searched for the notebook's secrets; RunFailed
    (exit 20 or 30) otherwise. Nothing here publishes: it runs while the check does (Reading)."""
    if not inventory.files:
        raise nothing_written(inventory)
    data = read_checked(inventory, reader)
    try:
        held = redaction.columns_holding_secrets(data)
    except Exception as exc:
        raise unchanged(f"could not search the checked rows for the notebook's secrets ({exc})") from exc
    if held:
        raise RunFailed(
            exits.CHECK,
            f"the output's column(s) {', '.join(held)} hold the value of one of the notebook's secrets "
            "(NOTEBOOK_SECRETS), in a value or in the column's name: publish no secret",
            "check",
        )
    return data


class Reading(threading.Thread):
    """checked_rows in a thread of its own, begun as the check starts: result() waits for it and returns
    its rows, or raises what it raised. The run asks for them only once the check has passed."""

    def __init__(self, inventory: Inventory, reader: NotebookUser) -> None:
        super().__init__(name="reading the checked rows", daemon=True)
        self.inventory, self.reader = inventory, reader
        self.rows: pa.Table | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.rows = checked_rows(self.inventory, self.reader)
        except BaseException as exc:  # noqa: BLE001 -- handed to result(), in the run's own thread
            self.error = exc

    def result(self) -> pa.Table:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.rows is not None
        return self.rows


def publish(
    data: pa.Table,
    inventory: Inventory,
    config: Config,
    lineage: Lineage,
    before_commit: Callable[[pa.Table], None] | None = None,
) -> Committed:
    """Commit exactly the checked copy's rows (checked_rows) as the day's rows of the output table (RunFailed
    otherwise); before_commit gets those rows (without the date column) once the table could take them,
    before the commit."""
    assert config.table is not None
    dated = schema.with_date(data, config.run_date)
    if before_commit is not None:
        before_commit(data)
    committed = table.commit(config.table, dated, lineage)
    log.info(
        "published %d file(s) of %s/ to %s: snapshot %d, %d rows", len(inventory.files), inventory.staged,
        committed.table, committed.snapshot_id, committed.rows,
    )  # fmt: skip
    return committed


# Reads the Parquet files named in argv[1:] with the runner's own pyarrow and writes their rows, one table, as
# an Arrow IPC stream on stdout; says what is wrong on its last line otherwise (exit 3).
READ_PARQUET = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
tables = []
for path in sys.argv[1:]:
    try:
        tables.append(pq.read_table(path))
    except Exception as exc:
        sys.exit(f"NOT PARQUET {path}: " + " ".join(str(exc).split())[:200])
try:
    table = pa.concat_tables(tables, promote_options="none")
except Exception as exc:
    sys.exit("SCHEMAS " + " ".join(str(exc).split())[:300])
with pa.output_stream(sys.stdout.buffer) as sink, pa.ipc.new_stream(sink, table.schema) as writer:
    writer.write_table(table)
"""


def unchanged(message: str) -> RunFailed:
    """Publishing failed before the commit began: nothing was written (the outcome says so)."""
    return RunFailed(exits.PUBLISH, message, "publish")


def read_checked(inventory: Inventory, reader: NotebookUser) -> pa.Table:
    """The rows of the checked copy; RunFailed exit 20 if they are not Parquet or do not share one schema
    (the table takes one)."""
    import pyarrow as pa

    site = str(Path(pa.__file__).parents[1])  # the runner's own pyarrow, read-only to every user
    code = f"import sys; sys.path[:0] = [{site!r}]\n{READ_PARQUET}"
    argv = reader.command([sys.executable, "-I", "-S", "-c", code, *map(str, inventory.paths())])
    try:
        proc = subprocess.Popen(
            argv,
            cwd="/",
            env=HELPER_ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise unchanged(f"could not read the checked files ({exc})") from exc
    errors: list[bytes] = []
    draining = threading.Thread(target=lambda: errors.append(proc.stderr.read() if proc.stderr else b""))
    draining.start()
    rows, problem = None, ""
    try:
        assert proc.stdout is not None
        rows = pa.ipc.open_stream(proc.stdout).read_all()
        rows.validate(full=True)
    except (pa.ArrowException, OSError) as exc:
        rows, problem = None, str(exc)
    finally:
        code_ = proc.wait()
        draining.join()
        reader.stop_all("after reading the checked files")
    said = (b"".join(errors).decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    said = said.replace(f"{inventory.copy}/", "")
    if code_ != 0:
        if said.startswith("NOT PARQUET "):
            raise RunFailed(
                exits.CHECK,
                f"{said.removeprefix('NOT PARQUET ')[:300]}: the table takes Parquet files only; write the "
                "output with pyarrow.parquet.write_table or DataFrame.to_parquet under "
                "output_uri/date=YYYY-MM-DD/",
                "check",
            )
        if said.startswith("SCHEMAS "):
            raise RunFailed(
                exits.CHECK,
                f"the output's files do not share one schema ({said.removeprefix('SCHEMAS ')}): write every "
                "file of the day with the same columns and types",
                "check",
            )
        raise unchanged(f"could not read the checked files ({said[:300]})")
    if rows is None:
        raise unchanged(f"could not read the checked rows back ({problem[:300]})")
    return rows
