"""The output table's catalog: where the table is registered, and what its snapshots say of their runs.

The catalog is the Glue Data Catalog in AWS (TABLE_CATALOG=glue), an SQLite file under a local OUTPUT_URI
(sqlite), or one that lives for the run only (none: the validation writes the table's files but registers
nothing). Every snapshot a run commits carries its lineage in its summary (PROPERTY + name): the run id,
the date, the commit, the image and the check's verdict. Reading only: the commit is table.py's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.locations import Location, default_region
from runner.printable import LINE_CONTROLS

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

PROPERTY = "notebook-pipeline."  # the prefix of the lineage properties in each snapshot's summary
# The folders of OUTPUT_URI: the table's own files (Iceberg's), the local catalog, the runs' reports.
FOLDERS = ("data", "metadata")
REPORTS = "_runs"  # the runs' reports, when REPORT_URI is not set
LOCAL_CATALOG = "_catalog/iceberg.db"  # under a local OUTPUT_URI
SQL_CATALOG_NAME = "local"  # the SQLite catalog's name: its rows are keyed by it (README's query opens it)


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
    """text with a space for each control or direction-changing character (printable.LINE_CONTROLS: a
    terminal would obey them in make history)."""
    return LINE_CONTROLS.sub(" ", text)


@dataclass(frozen=True)
class Committed:
    table: str
    snapshot_id: int
    rows: int
    replaced: int  # rows of the day the commit replaced


def plain(path: str) -> str:
    """A file's location without the scheme's variations: file:/x, file:///x and /x are one file."""
    return (
        re.sub(r"^file:/*", "/", path) if not path.startswith("s3") else re.sub(r"^s3[an]?://", "s3://", path)
    )


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
