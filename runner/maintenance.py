"""The table's upkeep after a run's commit: its old snapshots expired, and the files no snapshot references
removed (PyIceberg 0.12 deletes no file when it expires snapshots and has no orphan-file removal, so this is
the platform's own). Neither undoes a commit: the run logs a failure here as a warning, and the next run
tries again.

Snapshots older than KEEP_SNAPSHOT_DAYS go (never the current one, nor one a branch or tag points at), and
then the files under data/ and metadata/ that no remaining snapshot references and that are older than
ORPHAN_AGE (a younger one may belong to a commit under way).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import TYPE_CHECKING

from runner import storage
from runner.catalog import FOLDERS, TableConfig, open_catalog, plain
from runner.locations import Location
from runner.table import same_location

if TYPE_CHECKING:
    from pyiceberg.table import Table

ORPHAN_AGE = dt.timedelta(days=1)  # an unreferenced file younger than this may be a commit's under way


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


def remove_orphans(table: Table, location: Location, before: dt.datetime) -> int:
    """Delete the files under data/ and metadata/ that no snapshot references and were written before
    `before`. The whole reference set is read first: a file is never deleted on a partial read."""
    keep = referenced(table)
    files = storage.at(location)
    doomed = [f.name for f in files.files(*FOLDERS) if plain(f.uri) not in keep and f.modified < before]
    if doomed:
        files.delete(doomed)
    return len(doomed)
