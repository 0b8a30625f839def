"""The model's published output: one Apache Iceberg table, one commit per run (exit 30 when it cannot be).

The table lives at OUTPUT_URI (data/ and metadata/; the run reports stay in _runs/) and is partitioned by
`date`, the run's date, which the runner adds to every row (schema.py). A run's publish is one commit: an
overwrite filtered on its date, which PyIceberg writes as a delete and an append snapshot in one catalog
update, so a reader sees the day before the run or the day after it, never a mix (catalog.py opens it).

Concurrency: the catalog accepts a commit only on top of the state it was based on. PyIceberg retries a
conflict against the new state and refuses it (ValidationException) when the other commit touched the same
day: the run then fails with exit 30 naming the run that won. Runs of other days commit independently.
Every failure says what became of the day's output as data (errors.Output): unchanged, or unknown when the
table could not be read back; a commit that landed after all is a success.

The runner reads the checked files with its own pinned pyarrow (never the notebook's) and writes the
table's files itself: what it commits is the copy the check read (staged.py). Expiry and the removal of
unreferenced files are maintenance.py's; history and restore, history.py's.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from runner import exits, storage
from runner.catalog import (
    FOLDERS,
    PROPERTY,
    Committed,
    Lineage,
    TableConfig,
    day_holder,
    load,
    open_catalog,
    own_snapshot,
    plain,
    summary,
)
from runner.errors import Output, RunFailed
from runner.locations import aws_problem
from runner.schema import DATE, differences

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger("runner")

COMMIT_ATTEMPTS = 3  # whole-transaction attempts when the schema or the catalog moved under the run


TABLE_PROPERTIES = {
    "format-version": "2",
    # Each commit writes a metadata file; the table keeps the last 100 and deletes older ones as it commits.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
    "commit.retry.num-retries": "8",
    "commit.retry.min-wait-ms": "200",
}


def prepare(catalog: str) -> None:
    """Import what the commit needs (PyIceberg's catalog, table and pyarrow I/O: a second or more, cold)
    while the notebook runs, so that publishing does not wait for it (run.py joins it before the commit)."""
    try:
        import pyiceberg.expressions
        import pyiceberg.io.pyarrow
        import pyiceberg.table

        if catalog == "glue":
            import pyiceberg.catalog.glue
        else:
            import pyiceberg.catalog.sql  # noqa: F401
    except Exception as exc:  # noqa: BLE001 -- the commit imports them again and says what failed
        log.warning("the table's libraries were not imported ahead (%s)", exc)


def failed(message: str, output: Output = Output.UNCHANGED) -> RunFailed:
    """A failed commit (exit 30): the message says what failed and what to do, output what became of the
    day's output (this run's rows are not the day's rows unless it says otherwise)."""
    return RunFailed(exits.PUBLISH, message, "publish", output)


def commit(config: TableConfig, data: pa.Table, lineage: Lineage) -> Committed:
    """Replace the rows of lineage.date with data (which carries the date column) in one commit; RunFailed
    exit 20 for a schema the table cannot take, exit 30 when the commit does not land (its output says
    whether the table changed)."""
    from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError, ValidationException

    catalog: Catalog | None = None
    problem = ""
    writing: list[bool] = []  # set once the commit writes: before that, a failure changed nothing
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            catalog = catalog or open_catalog(config)
            return commit_once(catalog, config, data, lineage, writing)
        except ValidationException as exc:
            log.info("PyIceberg refused the commit: %s", str(exc)[:300])
            table = reloaded(catalog, config.name)
            winner = day_holder(table, lineage.date) if table not in (None, UNREADABLE) else ""
            raise failed(
                f"run {winner or '(unknown)'} published {lineage.date} to {config.name} while this run was "
                f"publishing it: the table holds run {winner or '(unknown)'}'s rows for that day; rerun the "
                "day if this run's output should win"
            ) from exc
        except CommitFailedException as exc:
            problem = f"CommitFailedException: {str(exc)[:300]}"
            log.warning("commit %d of %d to %s failed (%s): retrying against the new state", attempt,
                        COMMIT_ATTEMPTS, config.name, problem)  # fmt: skip
        except RunFailed:
            raise
        except NoSuchNamespaceError as exc:
            raise failed(
                f"the {config.catalog} catalog has no database {config.name.split('.')[0]} for the table "
                f"{config.name}: deploy the stack (it creates the database), or set OUTPUT_TABLE to a "
                "database that exists"
            ) from exc
        except Exception as exc:  # noqa: BLE001 -- whatever it was, the table is read back to say what became of it
            problem = aws_problem(exc)
            break
    if problem.startswith("CommitFailedException") and writing:
        raise failed(
            f"other commits to {config.name} kept landing first ({COMMIT_ATTEMPTS} attempts, each retried by "
            "PyIceberg); rerun the day"
        )
    if not writing:
        raise failed(
            f"could not read the table {config.name} at {config.location} ({problem}): check the run role's "
            "Glue and S3 rights on the table"
        )
    return unknown_outcome(catalog, config, lineage, problem)


UNREADABLE = object()  # reloaded()'s answer when the table could not be read


def reloaded(catalog: Catalog | None, name: str) -> Any:
    """The table as the catalog has it now, None when there is none, UNREADABLE when it cannot be read."""
    try:
        return load(catalog, name) if catalog is not None else UNREADABLE
    except Exception as exc:  # noqa: BLE001 -- the caller says the table's state is unknown
        log.warning("could not reload %s (%s)", name, aws_problem(exc))
        return UNREADABLE


def unknown_outcome(
    catalog: Catalog | None, config: TableConfig, lineage: Lineage, problem: str
) -> Committed:
    """After a failed commit: the table is reloaded to tell whether the commit landed after all (a reply
    lost on the way back), so that the last line is true either way."""
    table = reloaded(catalog, config.name)
    if table not in (None, UNREADABLE):
        ours = own_snapshot(table, lineage)
        if ours is not None:
            log.warning(
                "the commit reported a failure (%s), but the table holds this run's snapshot", problem
            )
            return committed_from(table, ours, config)
    raise failed(
        f"could not publish to the table {config.name} at {config.location} ({problem}): check the run "
        "role's Glue and S3 rights on the table",
        Output.UNKNOWN if table is UNREADABLE else Output.UNCHANGED,
    )


def same_location(table: Table, config: TableConfig) -> None:
    """The catalog's table lives at OUTPUT_URI: a table elsewhere is another model's, or OUTPUT_URI moved."""
    if plain(table.location()).rstrip("/") != plain(config.uri).rstrip("/"):
        raise failed(
            f"the table {config.name} lives at {table.location()}, not at OUTPUT_URI {config.location}: set "
            "OUTPUT_TABLE to this model's own table, or OUTPUT_URI to the table's location"
        )


def location_is_free(config: TableConfig) -> None:
    """A new table's location holds no other table's files: their expiry would delete each other's."""
    files = storage.at(config.location).files(*FOLDERS)
    found = next((f.uri for f in files if f.name.endswith(".metadata.json")), "")
    if found:
        raise failed(
            f"{config.location} already holds an Iceberg table's files ({found.rsplit('/', 2)[-2]}/"
            f"{found.rsplit('/', 1)[-1]}) but the {config.catalog} catalog has no table {config.name}: give "
            "the table a location of its own (OUTPUT_URI), or set OUTPUT_TABLE to the table that is there"
        )


def commit_once(
    catalog: Catalog, config: TableConfig, data: pa.Table, lineage: Lineage, writing: list[bool]
) -> Committed:
    from pyiceberg.exceptions import TableAlreadyExistsError
    from pyiceberg.expressions import EqualTo

    day = EqualTo(DATE, lineage.date)
    dates = data.column(DATE).unique().to_pylist() if DATE in data.column_names else []
    if dates and [str(d) for d in dates] != [lineage.date]:  # a bug's guard: the commit replaces one day
        raise ValueError(f"rows of {dates} given to replace {lineage.date}")
    table = load(catalog, config.name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        if table is None and config.catalog != "none":
            location_is_free(config)
        if table is None:
            try:
                writing.append(True)
                with catalog.create_table_transaction(
                    config.name, schema=data.schema, location=config.uri, properties=TABLE_PROPERTIES
                ) as tx:
                    with tx.update_spec() as spec:
                        spec.add_identity(DATE)
                    tx.overwrite(data, overwrite_filter=day, snapshot_properties=lineage.properties())
                log.info("created the table %s at %s", config.name, config.location)
            except TableAlreadyExistsError:
                table = load(catalog, config.name)  # another run created it in between: commit on top
        if table is not None:
            same_location(table, config)
            added, broken = differences(table.schema().as_arrow(), data.schema)
            if broken:
                raise RunFailed(
                    exits.CHECK,
                    f"the output {'; '.join(broken)} of the table {config.name}: consumers' queries would "
                    "break; keep the column (nulls are fine) with its type, or publish to a new table "
                    "(OUTPUT_TABLE) and tell its consumers",
                    "check",
                )
            writing.append(True)
            with table.transaction() as tx:
                if added:
                    with tx.update_schema() as update:
                        update.union_by_name(data.schema)
                    log.info("the table %s gains the column(s) %s", config.name, ", ".join(added))
                tx.overwrite(data, overwrite_filter=day, snapshot_properties=lineage.properties())
    table = load(catalog, config.name)  # confirmed from the catalog, not from what the commit returned
    ours = own_snapshot(table, lineage) if table is not None else None
    if table is None or ours is None:
        raise failed(
            f"the commit to {config.name} returned, but the table's current history does not hold run "
            f"{lineage.run_id}'s snapshot: another writer replaced it; `make history DATE={lineage.date}` "
            "shows what the table holds"
        )
    return committed_from(table, ours, config)


def committed_from(table: Table, snapshot: Any, config: TableConfig) -> Committed:
    rows = int(summary(snapshot).get("added-records", "0"))
    replaced = 0
    parent = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    if parent is not None and summary(parent).get(PROPERTY + "run-id") == summary(snapshot).get(
        PROPERTY + "run-id"
    ):
        replaced = int(summary(parent).get("deleted-records", "0"))
    return Committed(config.name, snapshot.snapshot_id, rows, replaced)
