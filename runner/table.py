"""The model's published output: one Apache Iceberg table, one commit per run (exit 30 when it cannot be).

The table lives at OUTPUT_URI (data/ and metadata/; the run reports stay in _runs/) and is partitioned by
`date`, the run's date, which the runner adds to every row. A run's publish is one commit: an overwrite
filtered on its date, which PyIceberg writes as a delete and an append snapshot in one catalog update, so a
reader sees the day before the run or the day after it, never a mix. The catalog is the Glue Data Catalog in
AWS (TABLE_CATALOG=glue), an SQLite file under a local OUTPUT_URI (sqlite), or one that lives for the run
only (none: the validation writes the table's files but registers nothing).

- Concurrency: the catalog accepts a commit only on top of the state it was based on. PyIceberg retries a
  conflict against the new state and refuses it (ValidationException) when the other commit touched the
  same day: the run then fails with exit 30 naming the run that won. Runs of other days commit independently.
- Lineage: every snapshot's summary carries the run id, the date, the commit, the image and the check's
  verdict (PROPERTY + name); `history` lists a day's versions, one per run, and `restore` commits an
  earlier version of a day again (a new commit: nothing is lost).
- Expiry: after its commit the runner expires the snapshots older than KEEP_SNAPSHOT_DAYS (never the
  current one) and deletes the files under data/ and metadata/ that no remaining snapshot references and
  that are older than ORPHAN_AGE (a younger one may belong to a commit under way). PyIceberg 0.12 deletes no
  file when it expires snapshots and has no orphan-file removal, so this is the platform's own.
- Consumers are told: after each successful commit, one EventBridge event (EVENT_SOURCE, EVENT_DETAIL_TYPE).

The runner reads the checked files with its own pinned pyarrow (never the notebook's) and writes the
table's files itself: what it commits is the copy the check read (staged.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
import sys
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import exits
from runner.errors import SAID, RunFailed
from runner.locations import Location, aws_client, aws_problem, default_region, list_objects

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger("runner")

# What a consumer's EventBridge rule matches on, with the source (EVENT_SOURCE, per stack in AWS):
# template/pipeline.yaml grants exactly these; a test holds the two equal.
EVENT_DETAIL_TYPE = "Iceberg table partition published"
PROPERTY = "notebook-pipeline."  # the prefix of the lineage properties in each snapshot's summary
DATE = "date"  # the partition column the runner adds
CATALOGS = ("sqlite", "glue", "none")
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")  # a Glue (and Athena) database or table name
LOCAL_CATALOG = "_catalog/iceberg.db"  # under a local OUTPUT_URI
SQL_CATALOG_NAME = "local"  # the SQLite catalog's name: its rows are keyed by it (README's query opens it)
ORPHAN_AGE = dt.timedelta(days=1)  # an unreferenced file younger than this may be a commit's under way
COMMIT_ATTEMPTS = 3  # whole-transaction attempts when the schema or the catalog moved under the run
TABLE_PROPERTIES = {
    "format-version": "2",
    # Each commit writes a metadata file; the table keeps the last 100 and deletes older ones as it commits.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
    "commit.retry.num-retries": "8",
    "commit.retry.min-wait-ms": "200",
}


@dataclass(frozen=True)
class TableConfig:
    catalog: str  # sqlite, glue or none
    name: str  # database.table
    location: Location  # OUTPUT_URI: the table's data/ and metadata/
    keep_days: int
    event_bus: str = ""
    scratch: Path | None = None  # where the run-only catalog (none) keeps its file
    event_source: str = ""  # EVENT_SOURCE (config.py): the event's source, the stack's own in AWS

    @property
    def uri(self) -> str:
        """The table's location as Iceberg writes it: s3://bucket/prefix or file:///folder."""
        return self.location.uri if self.location.is_s3 else f"file://{self.location.path}"


@dataclass(frozen=True)
class Lineage:
    run_id: str
    date: str
    commit: str = "unknown"
    image: str = "unknown"
    check: str = "passed"
    restored_from: str = ""
    # This commit's own mark: a reused RUN_ID never makes another run's snapshot look like this one's.
    nonce: str = field(default_factory=lambda: os.urandom(8).hex())

    def properties(self) -> dict[str, str]:
        values = {
            "run-id": self.run_id, "date": self.date, "commit": self.commit, "image": self.image,
            "check": printable(self.check)[:500], "restored-from": self.restored_from,
            "commit-id": self.nonce,
        }  # fmt: skip
        return {PROPERTY + key: value for key, value in values.items() if value}


def printable(text: str) -> str:
    """text without control or direction-changing characters (a terminal would obey them in make history)."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]", " ", text)


@dataclass(frozen=True)
class Committed:
    table: str
    snapshot_id: int
    rows: int
    replaced: int  # rows of the day the commit replaced


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


def failed(message: str) -> RunFailed:
    """A failed commit: its message says what became of the table (unchanged, unknown, another run's)."""
    return RunFailed(exits.PUBLISH, message, "publish", SAID)


def refused(message: str) -> RunFailed:
    return RunFailed(exits.CHECK, message, "check")


# --- the catalog --------------------------------------------------------------------------------------------


def endpoint(service: str) -> str:
    """AWS_ENDPOINT_URL_<SERVICE> or AWS_ENDPOINT_URL ('' for AWS's own), as boto3 reads them."""
    return os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get("AWS_ENDPOINT_URL") or ""


def runner_credentials(*services: str) -> dict[str, str]:
    """The runner's own credentials (the task role in ECS, botocore's chain), resolved once, as PyIceberg's
    properties for each service (s3, glue): passed explicitly, so that the AWS SDK under pyarrow never looks
    for any of its own (a profile or a credential_process in a configuration file)."""
    import boto3

    found = boto3.Session().get_credentials()
    if found is None:
        return {}
    frozen = found.get_frozen_credentials()
    keys = {"access-key-id": frozen.access_key, "secret-access-key": frozen.secret_key}
    if frozen.token:
        keys["session-token"] = frozen.token
    return {f"{service}.{key}": value for service in services for key, value in keys.items()}


def file_properties(location: Location, *signed: str) -> dict[str, str]:
    """PyIceberg's FileIO settings: the region, any endpoint, and for S3 the runner's own credentials (for
    the other services named in signed too)."""
    props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    if default_region():
        props["s3.region"] = default_region() or ""
    if endpoint("s3"):
        props["s3.endpoint"] = endpoint("s3")
    if location.is_s3:
        props |= runner_credentials("s3", *signed)
    return props


def open_catalog(config: TableConfig) -> Catalog:
    if config.catalog == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        props = file_properties(config.location, "glue")  # a Glue catalog's table is on S3 (config.py)
        if default_region():
            props["glue.region"] = default_region() or ""
        if endpoint("glue"):
            props["glue.endpoint"] = endpoint("glue")
        return GlueCatalog("glue", **props)
    from pyiceberg.catalog.sql import SqlCatalog

    if config.catalog == "sqlite":
        db = config.location.path / LOCAL_CATALOG
    else:
        assert config.scratch is not None
        db = config.scratch / "iceberg.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        SQL_CATALOG_NAME, uri=f"sqlite:///{db}", warehouse=config.uri, **file_properties(config.location)
    )
    namespace = config.name.split(".")[0]
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    try:
        if not catalog.namespace_exists(namespace):
            catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass  # another run made it in between
    return catalog


def load(catalog: Catalog, name: str) -> Table | None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table(name)
    except NoSuchTableError:
        return None


def ancestry(table: Table) -> Iterator[Any]:
    """The current snapshot and its ancestors, newest first."""
    current = table.current_snapshot()
    return snapshot_ancestry(table, current.snapshot_id) if current is not None else iter(())


def snapshot_ancestry(table: Table, snapshot_id: int) -> Iterator[Any]:
    """A snapshot and its ancestors, newest first."""
    snapshot = table.snapshot_by_id(snapshot_id)
    seen: set[int] = set()
    while snapshot is not None and snapshot.snapshot_id not in seen:
        seen.add(snapshot.snapshot_id)
        yield snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None


def summary(snapshot: Any) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary else {}


def day_holder(table: Table | None, date: str) -> str:
    """The run whose rows the table holds for date now: the newest snapshot in the current history that
    carries that date ('' when none does)."""
    if table is None:
        return ""
    for snapshot in ancestry(table):
        props = summary(snapshot)
        if props.get(PROPERTY + "date") == date:
            return props.get(PROPERTY + "run-id", "")
    return ""


def own_snapshot(table: Table, lineage: Lineage) -> Any | None:
    """This commit's last snapshot in the table's current history, if it landed."""
    for snapshot in ancestry(table):
        if summary(snapshot).get(PROPERTY + "commit-id") == lineage.nonce:
            return snapshot
    return None


# --- schemas ------------------------------------------------------------------------------------------------


def comparable(schema: pa.Schema) -> dict[str, tuple[pa.DataType, str]]:
    """Each top-level column's type as Iceberg stores it (large_string and string are one type, as are
    timestamp units), so that only a real change of type counts; with its Iceberg name, for messages."""
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, schema_to_pyarrow, visit_pyarrow
    from pyiceberg.schema import assign_fresh_schema_ids

    iceberg = assign_fresh_schema_ids(visit_pyarrow(schema, _ConvertToIcebergWithoutIDs()))
    arrow = schema_to_pyarrow(iceberg, include_field_ids=False)
    return {f.name: (f.type, str(field.field_type)) for f, field in zip(arrow, iceberg.fields, strict=True)}


def differences(current: pa.Schema, incoming: pa.Schema) -> tuple[list[str], list[str]]:
    """(the columns incoming adds, what it drops or retypes) against the table's current schema."""
    now, new = comparable(current), comparable(incoming)
    broken = [f"drops {name} ({kind[1]})" for name, kind in now.items() if name not in new]
    broken += [
        f"retypes {name} from {kind[1]} to {new[name][1]}"
        for name, kind in now.items()
        if name in new and not kind[0].equals(new[name][0])
    ]
    return [name for name in new if name not in now], broken


def with_date(data: pa.Table, date: str) -> pa.Table:
    """The checked rows as the table takes them, with the partition column the runner adds: every column
    optional (a day without a value must not break the next), nanosecond timestamps as Iceberg's
    microseconds; RunFailed exit 20 for what no table can take, named."""
    import pyarrow as pa

    names = [name.lower() for name in data.column_names]
    clash = sorted({name for name in names if names.count(name) > 1 or name == DATE})
    if clash:
        raise refused(
            f"the output has column(s) named {', '.join(clash)}, which clash once case is ignored (Athena "
            f"and Glue ignore it) or with the {DATE} column the runner adds from RUN_DATE (the day is the "
            "partition, output_uri/date=D/): rename or drop them in what the notebook writes"
        )
    fields = []
    for f in data.schema:
        if not f.name or "." in f.name:
            raise refused(f"the output has a column named {f.name!r}: give every column a name without '.'")
        if pa.types.is_null(f.type):
            raise refused(f"the output's column {f.name} has no type (all its values are null): give it one, "
                          "e.g. pa.array(values, pa.int64())")  # fmt: skip
        kind = (
            pa.timestamp("us", f.type.tz) if pa.types.is_timestamp(f.type) and f.type.unit == "ns" else f.type
        )
        fields.append(pa.field(f.name, kind, nullable=True))
    try:
        data = data.cast(pa.schema(fields), safe=False)  # nanoseconds cut to microseconds, Iceberg's unit
        comparable(data.schema)  # what Iceberg cannot store, said before anything is written
    except (pa.ArrowException, ValueError, TypeError, NotImplementedError) as exc:
        raise refused(
            f"the output has a column the table cannot store ({str(exc)[:300]}): use the common types "
            "(integers, floats, strings, dates, timestamps, decimals, lists, structs)"
        ) from exc
    day = pa.scalar(dt.date.fromisoformat(date), pa.date32())
    return data.append_column(pa.field(DATE, pa.date32()), pa.repeat(day, data.num_rows))


# --- the commit ---------------------------------------------------------------------------------------------


def commit(config: TableConfig, data: pa.Table, lineage: Lineage) -> Committed:
    """Replace the rows of lineage.date with data (which carries the date column) in one commit; RunFailed
    exit 20 for a schema the table cannot take, exit 30 when the commit does not land (the message says
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
                f"publishing it: the table holds run {winner or '(unknown)'}'s rows for that day and this "
                "run's output was not published; rerun the day if this run's output should win"
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
                "database that exists; the table is unchanged and this run's output was not published"
            ) from exc
        except Exception as exc:  # noqa: BLE001 -- whatever it was, the table is read back to say what became of it
            problem = aws_problem(exc)
            break
    if problem.startswith("CommitFailedException") and writing:
        raise failed(
            f"other commits to {config.name} kept landing first ({COMMIT_ATTEMPTS} attempts, each retried by "
            "PyIceberg): the table is unchanged and this run's output was not published; rerun the day"
        )
    if not writing:
        raise failed(
            f"could not read the table {config.name} at {config.location} ({problem}): check the run role's "
            "Glue and S3 rights on the table; the table is unchanged and this run's output was not published"
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
    if table is None:
        state = "the table is unchanged (there is none yet), and this run's output was not published"
    elif table is not UNREADABLE:
        ours = own_snapshot(table, lineage)
        if ours is not None:
            log.warning(
                "the commit reported a failure (%s), but the table holds this run's snapshot", problem
            )
            return committed_from(table, ours, config)
        state = "the table is unchanged, and this run's output was not published"
    else:
        state = (
            "whether the table changed is unknown (it could not be read back): `make history "
            f"DATE={lineage.date}` shows whether run {lineage.run_id} is in it"
        )
    raise failed(
        f"could not publish to the table {config.name} at {config.location} ({problem}): check the run "
        f"role's Glue and S3 rights on the table; {state}"
    )


def same_location(table: Table, config: TableConfig) -> None:
    """The catalog's table lives at OUTPUT_URI: a table elsewhere is another model's, or OUTPUT_URI moved."""
    if plain(table.location()).rstrip("/") != plain(config.uri).rstrip("/"):
        raise failed(
            f"the table {config.name} lives at {table.location()}, not at OUTPUT_URI {config.location}: set "
            "OUTPUT_TABLE to this model's own table, or OUTPUT_URI to the table's location; the table is "
            "unchanged and this run's output was not published"
        )


def location_is_free(config: TableConfig) -> None:
    """A new table's location holds no other table's files: their expiry would delete each other's."""
    found = next((f for f, _ in table_files(config.location) if f.endswith(".metadata.json")), "")
    if found:
        raise failed(
            f"{config.location} already holds an Iceberg table's files ({found.rsplit('/', 2)[-2]}/"
            f"{found.rsplit('/', 1)[-1]}) but the {config.catalog} catalog has no table {config.name}: give "
            "the table a location of its own (OUTPUT_URI), or set OUTPUT_TABLE to the table that is there; "
            "the table is unchanged and this run's output was not published"
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
                    "break, so nothing was published; keep the column (nulls are fine) with its type, or "
                    "publish to a new table (OUTPUT_TABLE) and tell its consumers",
                    "check",
                    SAID,
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


# --- expiry and the files no snapshot references ----------------------------------------------------------


def expire(config: TableConfig, now: dt.datetime, orphan_age: dt.timedelta = ORPHAN_AGE) -> str:
    """Expire the snapshots older than keep_days (never one a branch or tag points at), then delete the
    unreferenced files older than orphan_age. Returns what it did, for the log."""
    catalog = open_catalog(config)
    table = catalog.load_table(config.name)
    same_location(table, config)
    cutoff_ms = int((now - dt.timedelta(days=config.keep_days)).timestamp() * 1000)
    settled_ms = int((now - orphan_age).timestamp() * 1000)
    kept = {ref.snapshot_id for ref in table.metadata.refs.values()}
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    # A snapshot goes when it is old and so is the one after it: a reader or a commit under way may still
    # stand on a snapshot that was replaced a moment ago, however old it is itself.
    old = [
        s.snapshot_id
        for s, after in itertools.pairwise(snapshots)
        if s.timestamp_ms < cutoff_ms and after.timestamp_ms < settled_ms and s.snapshot_id not in kept
    ]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
        table = catalog.load_table(config.name)
    removed = remove_orphans(table, config.location, now - orphan_age)
    return f"expired {len(old)} snapshot(s) older than {config.keep_days} day(s), removed {removed} file(s)"


def plain(path: str) -> str:
    """A file's location without the scheme's variations: file:/x, file:///x and /x are one file."""
    return (
        re.sub(r"^file:/*", "/", path) if not path.startswith("s3") else re.sub(r"^s3[an]?://", "s3://", path)
    )


def referenced(table: Table) -> set[str]:
    """Every file a remaining snapshot needs, and the metadata files the table still lists."""
    io = table.io
    files = {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}
    files |= {stat.statistics_path for stat in table.metadata.statistics}
    for snapshot in table.snapshots():
        files.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            files.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                files.add(entry.data_file.file_path)
    return {plain(f) for f in files}


def table_files(location: Location) -> Iterator[tuple[str, dt.datetime]]:
    """Each file under the table's data/ and metadata/, with when it was last written."""
    if location.is_s3:
        s3 = aws_client()
        for folder in ("data", "metadata"):
            for obj in list_objects(s3, location.bucket, location.prefix() + folder + "/"):
                yield f"s3://{location.bucket}/{obj['Key']}", obj["LastModified"]
        return
    for folder in ("data", "metadata"):
        if (location.path / folder).is_symlink():
            log.warning("%s/%s is a link: its files are not the table's, none is removed", location, folder)
            continue
        for root, _dirs, names in os.walk(location.path / folder):
            for name in names:
                path = Path(root) / name
                when = dt.datetime.fromtimestamp(path.lstat().st_mtime, dt.UTC)
                yield str(path), when


def remove_orphans(table: Table, location: Location, before: dt.datetime) -> int:
    """Delete the files under data/ and metadata/ that no snapshot references and were written before
    `before`. The whole reference set is read first: a file is never deleted on a partial read."""
    keep = referenced(table)
    doomed = [path for path, when in table_files(location) if plain(path) not in keep and when < before]
    if not doomed:
        return 0
    if location.is_s3:
        from runner.locations import delete_keys

        delete_keys(aws_client(), location.bucket, [p.split("/", 3)[3] for p in doomed])
    else:
        for path in doomed:
            Path(path).unlink(missing_ok=True)
    return len(doomed)


# --- consumers are told -------------------------------------------------------------------------------------


def announce(config: TableConfig, committed: Committed, lineage: Lineage) -> str:
    """One EventBridge event for the commit; returns '' or what went wrong (the data is published either
    way: the caller says consumers were not told)."""
    if not config.event_bus:
        return ""
    detail = {
        "table": committed.table, "location": config.location.uri, "date": lineage.date,
        "snapshot_id": committed.snapshot_id, "rows": committed.rows, "run_id": lineage.run_id,
        "commit": lineage.commit, "image": lineage.image,
    }  # fmt: skip
    entry = {
        "Source": config.event_source, "DetailType": EVENT_DETAIL_TYPE, "Detail": json.dumps(detail),
        "EventBusName": config.event_bus,
    }  # fmt: skip
    try:
        reply = aws_client("events").put_events(Entries=[entry])
    except Exception as exc:  # noqa: BLE001 -- reported by the caller
        return aws_problem(exc)
    if reply.get("FailedEntryCount"):
        first = (reply.get("Entries") or [{}])[0]
        return f"{first.get('ErrorCode', '?')}: {first.get('ErrorMessage', '')}"
    return ""


def image_of(environ: Mapping[str, str]) -> str:
    """The image the run runs: its digest from ECS's task metadata where there is one, else RUNNER_IMAGE."""
    fallback = environ.get("RUNNER_IMAGE", "unknown")
    url = environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not url.startswith("http://"):
        return fallback
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:  # noqa: S310 -- ECS's own http endpoint
            meta = json.load(reply)
    except (OSError, ValueError) as exc:
        log.info("the image's digest was not read from ECS's metadata (%s)", exc)
        return fallback
    image, digest = str(meta.get("Image", "")), str(meta.get("ImageID", ""))
    if "@sha256:" in image:
        return image
    return f"{image or fallback}@{digest}" if digest.startswith("sha256:") else fallback


# --- history and restore (make history, make restore) ------------------------------------------------------


def existing(config: TableConfig) -> Table:
    """The table, for history and restore: never a catalog or a folder made where there is none."""
    if config.catalog == "sqlite" and not (config.location.path / LOCAL_CATALOG).is_file():
        raise RunFailed(
            exits.CONFIG,
            f"there is no table at {config.location} (no {LOCAL_CATALOG}): give the OUTPUT_DIR (or "
            "OUTPUT_URI) make run published to",
            "config",
        )
    table = load(open_catalog(config), config.name)
    if table is None:
        raise RunFailed(
            exits.CONFIG,
            f"the {config.catalog} catalog has no table {config.name}: set OUTPUT_TABLE (or NOTEBOOK, which "
            "names the default) to the table the runs publish",
            "config",
        )
    return table


def history(config: TableConfig, date: str) -> list[Version]:
    """The day's versions, oldest first: one per run (its last snapshot), the current one marked."""
    table = existing(config)
    holder = day_holder(table, date)
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
        raise RunFailed(
            exits.CONFIG,
            f"the table {config.name} has no snapshot {snapshot_id} (expired, or of another table): "
            f"`make history DATE={date}` lists the day's versions",
            "config",
        )
    return table.scan(row_filter=EqualTo(DATE, date), snapshot_id=snapshot_id).to_arrow()


def restore(config: TableConfig, date: str, snapshot_id: int, run_id: str) -> Committed:
    """Put the day as it was at snapshot_id back, as a new commit; the versions in between stay in the
    history until they expire."""
    table = existing(config)
    data = read_day(config, date, snapshot_id)
    # The lineage of the version restored: the run that held the day at that snapshot.
    old = next(
        (s for s in snapshot_ancestry(table, snapshot_id) if summary(s).get(PROPERTY + "date") == date), None
    )
    if data.num_rows == 0:
        raise RunFailed(
            exits.CONFIG,
            f"the table {config.name} held no rows of {date} at snapshot {snapshot_id}: pick a version "
            f"`make history DATE={date}` lists",
            "config",
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
        problem = announce(config, done, Lineage(run_id, args.date, restored_from=str(args.snapshot)))
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
