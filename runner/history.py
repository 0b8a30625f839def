"""The output table's operator commands: `history` lists a day's versions, one per run, and `restore` commits
an earlier version of a day again, as a new commit (nothing is lost). make history and make restore run them
through the image's entrypoint (run_notebook.sh history|restore)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner import catalog, exits, notify
from runner import config as configuration
from runner.catalog import LOCAL_CATALOG, PROPERTY, Committed, Lineage, TableConfig, summary
from runner.errors import RunFailed
from runner.locations import aws_problem
from runner.schema import DATE
from runner.table import commit

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table


@dataclass(frozen=True)
class Version:
    """One run's version of a day: its last snapshot (the append), with its lineage."""

    run_id: str
    snapshot_id: int
    committed_at: str
    rows: int
    commit: str
    image: str
    check: str
    restored_from: str
    current: bool


def existing(config: TableConfig) -> Table:
    """The table, for history and restore: never a catalog or a folder made where there is none."""
    if config.catalog == "sqlite" and not (config.location.path / LOCAL_CATALOG).is_file():
        raise configuration.fail(
            f"there is no table at {config.location} (no {LOCAL_CATALOG}): give the OUTPUT_DIR (or "
            "OUTPUT_URI) make run published to",
        )
    table = catalog.load(catalog.open_catalog(config), config.name)
    if table is None:
        raise configuration.fail(
            f"the {config.catalog} catalog has no table {config.name}: set OUTPUT_TABLE (or NOTEBOOK, which "
            "names the default) to the table the runs publish",
        )
    return table


def history(config: TableConfig, date: str) -> list[Version]:
    """The day's versions, oldest first: one per run (its last snapshot), the current one marked."""
    table = existing(config)
    holder = catalog.day_holder(table, date)
    last: dict[str, Any] = {}
    for snapshot in sorted(table.snapshots(), key=lambda s: s.timestamp_ms):
        props = summary(snapshot)
        if props.get(PROPERTY + "date") == date:
            last[props.get(PROPERTY + "run-id", f"snapshot-{snapshot.snapshot_id}")] = snapshot
    versions = []
    for run_id, snapshot in last.items():
        props = summary(snapshot)
        versions.append(
            Version(
                run_id=run_id,
                snapshot_id=snapshot.snapshot_id,
                committed_at=dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, dt.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                rows=int(props.get("added-records", "0")),
                commit=props.get(PROPERTY + "commit", ""),
                image=props.get(PROPERTY + "image", ""),
                check=props.get(PROPERTY + "check", ""),
                restored_from=props.get(PROPERTY + "restored-from", ""),
                current=run_id == holder,
            )
        )
    return versions


def read_day(config: TableConfig, date: str, snapshot_id: int | None = None) -> pa.Table:
    """The rows of date, now or as of an earlier snapshot."""
    from pyiceberg.expressions import EqualTo

    table = existing(config)
    if snapshot_id is not None and table.snapshot_by_id(snapshot_id) is None:
        raise configuration.fail(
            f"the table {config.name} has no snapshot {snapshot_id} (expired, or of another table): "
            f"`make history DATE={date}` lists the day's versions",
        )
    return table.scan(row_filter=EqualTo(DATE, date), snapshot_id=snapshot_id).to_arrow()


def restore(config: TableConfig, date: str, snapshot_id: int, run_id: str) -> Committed:
    """Put the day as it was at snapshot_id back, as a new commit; the versions in between stay in the
    history until they expire."""
    table = existing(config)
    data = read_day(config, date, snapshot_id)
    # The lineage of the version restored: the run that held the day at that snapshot.
    old = next(
        (
            s
            for s in catalog.snapshot_ancestry(table, snapshot_id)
            if summary(s).get(PROPERTY + "date") == date
        ),
        None,
    )
    if data.num_rows == 0:
        raise configuration.fail(
            f"the table {config.name} held no rows of {date} at snapshot {snapshot_id}: pick a version "
            f"`make history DATE={date}` lists",
        )
    import pyarrow as pa

    for column in table.schema().as_arrow():  # columns added since that version: nulls, as for any old day
        if column.name not in data.column_names:
            data = data.append_column(column.with_nullable(True), pa.nulls(data.num_rows, column.type))
    props = summary(old) if old is not None else {}
    lineage = Lineage(
        run_id=run_id, date=date, commit=props.get(PROPERTY + "commit", "unknown"),
        image=props.get(PROPERTY + "image", "unknown"), check=props.get(PROPERTY + "check", "passed"),
        restored_from=str(snapshot_id),
    )  # fmt: skip
    return commit(config, data, lineage)


def main(argv: list[str], config: TableConfig) -> int:
    """`history --date D` and `restore --date D --snapshot S` (the image's entrypoint hands them over)."""
    import argparse

    parser = argparse.ArgumentParser(prog="run_notebook.sh", description="the output table's history")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("history", help="list a day's versions, one per run")
    show.add_argument("--date", required=True)
    back = commands.add_parser("restore", help="commit an earlier version of a day again")
    back.add_argument("--date", required=True)
    back.add_argument("--snapshot", required=True, type=int)
    back.add_argument("--run-id", default="")
    args = parser.parse_args(argv)
    try:
        dt.date.fromisoformat(args.date)
    except ValueError:
        print(f"{args.command}: DATE={args.date} is not a date: use YYYY-MM-DD", file=sys.stderr)
        return exits.CONFIG.code
    try:
        if args.command == "history":
            versions = history(config, args.date)
            if not versions:
                print(
                    f"{config.name}: no version of {args.date} in the history kept (no run published that "
                    f"day within the last {config.keep_days} days of snapshots, KEEP_SNAPSHOT_DAYS)"
                )
            for v in versions:
                mark = "* " if v.current else "  "
                also = f" restored from {v.restored_from}" if v.restored_from else ""
                print(
                    f"{mark}{v.committed_at}  snapshot {v.snapshot_id}  run {v.run_id}  {v.rows} rows  "
                    f"commit {v.commit}  image {v.image}  check: {v.check}{also}"
                )
            return 0
        run_id = args.run_id or f"restore-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"
        done = restore(config, args.date, args.snapshot, run_id)
        problem = notify.announce(config, done, Lineage(run_id, args.date, restored_from=str(args.snapshot)))
        if problem:
            print(f"restore: consumers were NOT told on {config.event_bus} ({problem})", file=sys.stderr)
        print(
            f"restored {args.date} of {config.name} as it was at snapshot {args.snapshot}: {done.rows} rows, "
            f"new snapshot {done.snapshot_id} (run {run_id})"
        )
        return 0
    except RunFailed as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return exc.exit.code
    except Exception as exc:  # noqa: BLE001 -- a reason, not a traceback
        print(f"{args.command}: the table {config.name} at {config.location} could not be read "
              f"({aws_problem(exc)})", file=sys.stderr)  # fmt: skip
        return exits.PUBLISH.code


def command(argv: list[str]) -> int:
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
    return main(argv, config)
