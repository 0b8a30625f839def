"""Candidate against production: a run's checked rows against what production published for its day.

When COMPARE_URI names production's table (config.py: COMPARE_URI, COMPARE_TABLE, COMPARE_KEYS,
COMPARE_MAX_CHANGED_SHARE), the run compares the rows it is about to commit (publish.py's checked rows,
before the runner adds its `date` column) with the rows production's table holds for the run's date, with
the runner's own pyarrow, before its commit. Production is only read: a local catalog is opened read-only,
Glue's only queried, and nothing is ever created there. A comparison never fails or blocks the run: a
problem is recorded in it (`error`).

The comparison, stored as comparison.json among the run's report files, is one JSON object:

    comparison      1, the version of this shape
    date            the run's date, YYYY-MM-DD
    production      {table: database.table, uri: COMPARE_URI, snapshot_id: the snapshot read, or null}
    keys            the key columns asked for (COMPARE_KEYS), [] for none
    rows            {production: its rows of the day (null: unknown), candidate: the candidate's rows}
    compared_by     "keys" (rows matched by the key columns), "rows" (whole rows, as multisets), or null
                    (not compared: production published nothing, no column in common, or an error)
    added           rows only the candidate has (null: not compared)
    removed         rows only production has (null: not compared)
    changed         rows of one key on both sides whose other values differ (null unless by "keys")
    changed_share   (added + removed + changed) / max(production's rows, 1), 4 decimals (null: not compared)
    schema          {added: [column], removed: [column], type_changed: [{column, production, candidate}]}
                    (Iceberg's type names); null when not compared
    columns         {column: {nulls: {production, candidate}, distinct: {production, candidate}}}: null
                    where the column is absent on that side; distinct counts non-null values (null for a
                    type it cannot be counted for: lists, structs)
    uncompared      production's columns the candidate keeps, with their type, whose values no figure
                    compares (nested or null-typed): [] when every column is compared (absent: not compared)
    note            how rows were matched when not by keys, or why a figure is null; else null
    error           why production could not be compared (its table unreadable); else null
    limits          {max_changed_share: COMPARE_MAX_CHANGED_SHARE, null for no threshold}
    crossed         [{figure, value, limit}]: "changed_share" above its limit; "schema_changes" (the count
                    of production's columns removed or retyped, limit 0); "uncompared_columns" (the count
                    of `uncompared`, limit 0); "comparison_error" (value and limit null). Always [] without
                    a threshold, and when production published nothing. changed_share is held to its limit
                    unrounded.
                    A promotion step reads this field alone.
    summary         summary_lines(): the plain lines the version's mails carry (stored: the validation's
                    promotion step has no pyarrow and prints them as they are)

The manifest carries figures() under "comparison"; the log and a mail, summary_lines().
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner import catalog
from runner.locations import aws_problem
from runner.schema import DATE, comparable

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

    from runner.catalog import TableConfig

VERSION = 1
FILE = "comparison.json"  # among the run's report files
SIDES = ("production", "candidate")
COUNTS = ("__compare_production_rows", "__compare_candidate_rows")  # the comparison's own columns
COLUMN_LINES = 5  # summary_lines: the columns whose figures moved, at most
MANIFEST_FIELDS = ("rows", "added", "removed", "changed", "changed_share", "crossed", "note", "error")


@dataclass(frozen=True)
class Settings:
    """COMPARE_*: production's table (only ever read), the model's key columns, the threshold."""

    production: TableConfig
    keys: tuple[str, ...] = ()
    max_changed_share: float | None = None


# --- the run's comparison -------------------------------------------------------------------------------


def against_production(settings: Settings, date: str, candidate: pa.Table) -> dict[str, Any]:
    """The candidate's checked rows against production's rows of date, judged against the threshold. Never
    raises: a production that cannot be read or compared is the comparison's `error`."""
    production = settings.production
    where = {"table": production.name, "uri": production.location.uri, "snapshot_id": None}
    try:
        rows, where["snapshot_id"] = read_production(production, date)
        result = compare(rows, candidate, settings.keys, date)
    except Exception as exc:  # noqa: BLE001 -- a comparison never fails the run: it says why
        result = skeleton(date, None, candidate)
        result["error"] = (
            f"production's table {production.name} at {production.location} could not be compared "
            f"({aws_problem(exc)[:300]})"
        )
    return judged({**result, "production": where, "keys": list(settings.keys)}, settings.max_changed_share)


def read_production(config: TableConfig, date: str) -> tuple[pa.Table | None, int | None]:
    """Production's rows of date and the snapshot read; (None, None) when there is no table."""
    from pyiceberg.expressions import EqualTo

    found = production_table(config)
    if found is None:
        return None, None
    snapshot = found.current_snapshot()
    rows = found.scan(row_filter=EqualTo(DATE, date)).to_arrow()
    return rows, snapshot.snapshot_id if snapshot is not None else None


def production_table(config: TableConfig) -> Table | None:
    """Production's table, opened so that nothing is created (catalog.open_catalog would make a local
    catalog's folder and namespace): a local catalog read-only, and only when its file exists; Glue's is
    only queried."""
    if config.catalog != "sqlite":
        return catalog.load(catalog.open_catalog(config), config.name)
    from pyiceberg.catalog.sql import SqlCatalog

    db = config.location.path / catalog.LOCAL_CATALOG
    if not db.is_file():
        return None
    sql = SqlCatalog(
        catalog.SQL_CATALOG_NAME,
        uri=f"sqlite:///file:{db}?mode=ro&uri=true",
        init_catalog_tables="false",
        warehouse=config.uri,
        **catalog.file_properties(config.location),
    )
    try:
        return catalog.load(sql, config.name)
    finally:
        sql.engine.dispose()


def judged(comparison: dict[str, Any], max_changed_share: float | None) -> dict[str, Any]:
    """The comparison with its limits and the figures that crossed them."""
    limits = {"max_changed_share": max_changed_share}
    return {**comparison, "limits": limits, "crossed": crossed(comparison, max_changed_share)}


def crossed(comparison: dict[str, Any], max_changed_share: float | None) -> list[dict[str, Any]]:
    """The figures past their limits: [] without a threshold, or when production published nothing."""
    if max_changed_share is None:
        return []
    if comparison.get("error"):
        return [{"figure": "comparison_error", "value": None, "limit": None}]
    found = []
    schema = comparison.get("schema") or {}
    broken = len(schema.get("removed", [])) + len(schema.get("type_changed", []))
    if broken:
        found.append({"figure": "schema_changes", "value": broken, "limit": 0})
    if comparison.get("uncompared"):
        found.append({"figure": "uncompared_columns", "value": len(comparison["uncompared"]), "limit": 0})
    share = comparison.get("changed_share")
    if share is not None and exact_share(comparison) > max_changed_share:  # not the 4 decimals stored
        found.append({"figure": "changed_share", "value": share, "limit": max_changed_share})
    return found


def exact_share(comparison: dict[str, Any]) -> float:
    moved = comparison["added"] + comparison["removed"] + (comparison.get("changed") or 0)
    return moved / max(comparison["rows"]["production"] or 0, 1)


def figures(comparison: dict[str, Any]) -> dict[str, Any]:
    """The manifest's part of a comparison."""
    return {name: comparison.get(name) for name in MANIFEST_FIELDS}


def as_bytes(comparison: dict[str, Any]) -> bytes:
    """comparison.json: the comparison with its summary lines."""
    return (json.dumps({**comparison, "summary": summary_lines(comparison)}, indent=2) + "\n").encode()


# --- the comparison itself ------------------------------------------------------------------------------


def skeleton(date: str, production: pa.Table | None, candidate: pa.Table) -> dict[str, Any]:
    """A comparison with the figures of each side's columns, and no other figure yet."""
    names = [*(production.column_names if production is not None else []), *candidate.column_names]
    return {
        "comparison": VERSION,
        "date": date,
        "production": None,
        "keys": [],
        "rows": {
            "production": None if production is None else production.num_rows,
            "candidate": candidate.num_rows,
        },
        "compared_by": None,
        "added": None,
        "removed": None,
        "changed": None,
        "changed_share": None,
        "schema": None,
        "columns": {name: column_figures(production, candidate, name) for name in dict.fromkeys(names)},
        "note": None,
        "error": None,
        "limits": {"max_changed_share": None},
        "crossed": [],
    }


def compare(
    production: pa.Table | None, candidate: pa.Table, keys: Sequence[str] = (), date: str = ""
) -> dict[str, Any]:
    """The figures of the candidate's rows against production's (None: production has no table yet), with
    no limits (judged() adds them)."""
    before = None if production is None else normalized(without_date(production))
    after = normalized(candidate)
    result = {**skeleton(date, before, after), "keys": list(keys)}
    if before is None or before.num_rows == 0:
        result["rows"]["production"] = 0
        result["note"] = f"production published nothing for {date or 'the day'}: nothing to compare"
        return result
    result["schema"] = schema_changes(before.schema, after.schema)
    result.update(row_changes(before, after, list(keys)))
    result["uncompared"] = uncompared(before, after)
    if result["added"] is not None:
        moved = result["added"] + result["removed"] + (result["changed"] or 0)
        result["changed_share"] = round(moved / max(before.num_rows, 1), 4)
    return result


def without_date(production: pa.Table) -> pa.Table:
    """Production's rows without the date column the runner adds to every row it publishes."""
    if DATE not in production.column_names:
        return production
    return production.drop_columns([DATE])


def stored_type(kind: pa.DataType) -> pa.DataType:
    """A column's type as the table stores it: large strings as strings, nanoseconds as microseconds,
    dictionaries decoded; so that only a real difference of type or value counts."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return stored_type(kind.value_type)
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        return pa.timestamp("us", kind.tz)
    return {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}.get(kind, kind)


def normalized(data: pa.Table) -> pa.Table:
    import pyarrow as pa

    arrays = [column.cast(stored_type(column.type), safe=False) for column in data.columns]
    return pa.Table.from_arrays(arrays, names=data.column_names)  # every column nullable


def type_names(schema: pa.Schema) -> dict[str, str]:
    """Each column's type by Iceberg's name for it (pyarrow's, for a type Iceberg has none for)."""
    try:
        return {name: kind[1] for name, kind in comparable(schema).items()}
    except Exception:  # noqa: BLE001 -- a type Iceberg cannot store still has a name
        return {f.name: str(f.type) for f in schema}


def schema_changes(production: pa.Schema, candidate: pa.Schema) -> dict[str, Any]:
    before, after = type_names(production), type_names(candidate)
    retyped = [name for name, kind in before.items() if after.get(name, kind) != kind]
    return {
        "added": [name for name in after if name not in before],
        "removed": [name for name in before if name not in after],
        "type_changed": [
            {"column": name, "production": before[name], "candidate": after[name]} for name in retyped
        ],
    }


def column_figures(production: pa.Table | None, candidate: pa.Table, name: str) -> dict[str, Any]:
    found = {side: column_of(data, name) for side, data in zip(SIDES, (production, candidate), strict=True)}
    return {
        "nulls": {side: None if column is None else column.null_count for side, column in found.items()},
        "distinct": {side: distinct(column) for side, column in found.items()},
    }


def column_of(data: pa.Table | None, name: str) -> pa.ChunkedArray | None:
    return data.column(name) if data is not None and name in data.column_names else None


def distinct(column: pa.ChunkedArray | None) -> int | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if column is None:
        return None
    try:
        return int(pc.count_distinct(column).as_py())
    except pa.ArrowException:
        return None  # a type without the kernel (lists, structs)


# --- rows added, removed and changed -------------------------------------------------------------------


def comparable_columns(production: pa.Table, candidate: pa.Table) -> list[str]:
    """The columns both sides have with one type, which rows can be grouped by (no nested type)."""
    import pyarrow as pa

    kinds = {f.name: f.type for f in candidate.schema}
    return [
        f.name
        for f in production.schema
        if kinds.get(f.name) == f.type and not pa.types.is_nested(f.type) and not pa.types.is_null(f.type)
    ]


def row_changes(production: pa.Table, candidate: pa.Table, keys: list[str]) -> dict[str, Any]:
    """compared_by, added, removed, changed and the note: by the keys when they can match rows, else
    whole rows."""
    columns = comparable_columns(production, candidate)
    if not columns:
        return {"note": "no column in common with one type: rows not compared"}
    every = dict.fromkeys(production.column_names + candidate.column_names)
    left_out = [name for name in every if name not in columns]
    also = (
        f"compared without {', '.join(left_out)} (not on both sides, retyped or nested)" if left_out else ""
    )
    why = unusable_keys(production, candidate, keys, columns)
    if why:
        added, removed = multiset_changes(production, candidate, columns)
        note = "; ".join(
            filter(None, [f"{why}: rows compared whole; set promotion.compare_keys in settings.yml", also])
        )
        return {"compared_by": "rows", "added": added, "removed": removed, "note": note}
    added, removed, changed = keyed_changes(production, candidate, keys, columns)
    return {
        "compared_by": "keys",
        "added": added,
        "removed": removed,
        "changed": changed,
        "note": also or None,
    }


def uncompared(production: pa.Table, candidate: pa.Table) -> list[str]:
    """Production's columns the candidate keeps with their type whose values no row figure compares (nested
    or null-typed): a change there would go uncounted, so with a limit they are a crossed figure."""
    kinds = {f.name: f.type for f in candidate.schema}
    columns = set(comparable_columns(production, candidate))
    return [f.name for f in production.schema if kinds.get(f.name) == f.type and f.name not in columns]


def unusable_keys(production: pa.Table, candidate: pa.Table, keys: list[str], columns: list[str]) -> str:
    """Why the keys cannot match rows ('' when they can)."""
    if not keys:
        return "no key columns set"
    return missing_keys(production, candidate, keys, columns) or duplicate_keys(production, candidate, keys)


def missing_keys(production: pa.Table, candidate: pa.Table, keys: list[str], columns: list[str]) -> str:
    for side, data in zip(SIDES, (production, candidate), strict=True):
        missing = [key for key in keys if key not in data.column_names]
        if missing:
            return f"key column(s) {', '.join(missing)} missing in {side}"
    retyped = [key for key in keys if key not in columns]
    return f"key column(s) {', '.join(retyped)} retyped or nested" if retyped else ""


def duplicate_keys(production: pa.Table, candidate: pa.Table, keys: list[str]) -> str:
    for side, data in zip(SIDES, (production, candidate), strict=True):
        if data.group_by(keys, use_threads=False).aggregate([]).num_rows != data.num_rows:
            return f"keys ({', '.join(keys)}) are not unique in {side}"
    return ""


def counted(production: pa.Table, candidate: pa.Table, columns: list[str]) -> tuple[pa.Array, pa.Array]:
    """For each distinct value of the columns: how many of production's rows have it, and of the
    candidate's."""
    import pyarrow as pa

    def tagged(data: pa.Table, side: int) -> pa.Table:
        counts = [pa.repeat(pa.scalar(int(side == i), pa.int64()), data.num_rows) for i in (0, 1)]
        return pa.Table.from_arrays([*data.select(columns).columns, *counts], names=[*columns, *COUNTS])

    both = pa.concat_tables([tagged(production, 0), tagged(candidate, 1)])
    groups = both.group_by(columns, use_threads=False).aggregate([(name, "sum") for name in COUNTS])
    ours, theirs = (groups.column(f"{name}_sum").combine_chunks() for name in COUNTS)
    return ours, theirs


def multiset_changes(production: pa.Table, candidate: pa.Table, columns: list[str]) -> tuple[int, int]:
    """(added, removed) with rows as multisets: each copy of a row counts."""
    import pyarrow.compute as pc

    ours, theirs = counted(production, candidate, columns)
    more = pc.subtract(theirs, ours)
    added = pc.sum(pc.max_element_wise(more, 0)).as_py() or 0
    removed = pc.sum(pc.max_element_wise(pc.negate(more), 0)).as_py() or 0
    return int(added), int(removed)


def keyed_changes(
    production: pa.Table, candidate: pa.Table, keys: list[str], columns: list[str]
) -> tuple[int, int, int]:
    """(added, removed, changed) by keys unique on both sides: a key on one side only, or on both with
    other values in the columns compared."""
    import pyarrow.compute as pc

    ours, theirs = counted(production, candidate, keys)
    added = int(pc.sum(pc.equal(ours, 0)).as_py() or 0)
    removed = int(pc.sum(pc.equal(theirs, 0)).as_py() or 0)
    ours, theirs = counted(production, candidate, columns)
    same = int(pc.sum(pc.and_(pc.greater(ours, 0), pc.greater(theirs, 0))).as_py() or 0)
    return added, removed, production.num_rows - removed - same


# --- what an engineer reads ----------------------------------------------------------------------------


def percent(share: float) -> str:
    return f"{share:.1%}"


def summary_lines(comparison: dict[str, Any]) -> list[str]:
    """A few plain lines for the log or a mail: rows, schema, the columns whose figures moved, the note,
    what crossed its limit. Printable text only: a column's name is the notebook's, and these lines reach
    mails and terminals (a newline or an escape sequence in it could forge a line there)."""
    if comparison.get("error"):
        lines = [f"comparison with production failed: {comparison['error']}"]
    else:
        lines = [rows_line(comparison), *schema_lines(comparison)]
        lines += [f"note: {comparison['note']}"] if comparison.get("note") else []
    return [printable(line) for line in lines + limit_lines(comparison)]


def printable(line: str) -> str:
    """The line with every character that is not printable (controls, line and paragraph separators) as
    its \\x, \\u escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def rows_line(comparison: dict[str, Any]) -> str:
    rows, by = comparison["rows"], comparison.get("compared_by")
    said = f"rows: {rows['production']} in production, {rows['candidate']} in the candidate"
    if by is None:
        return said
    share = f"({percent(comparison['changed_share'])} of production's rows)"
    added, removed = f"{comparison['added']} added", f"{comparison['removed']} removed"
    if by == "keys":
        keys = ", ".join(comparison["keys"])
        return f"{said}; by key ({keys}): {added}, {removed}, {comparison['changed']} changed {share}"
    return f"{said}; rows compared whole: {added}, {removed} {share}"


def schema_lines(comparison: dict[str, Any]) -> list[str]:
    """The schema's line and the moved columns' lines (none when production published nothing)."""
    schema = comparison.get("schema")
    if schema is None:
        return []
    retyped = [f"{c['column']} ({c['production']} -> {c['candidate']})" for c in schema["type_changed"]]
    parts = [
        f"{what} {', '.join(names)}"
        for what, names in (
            ("added", schema["added"]),
            ("removed", schema["removed"]),
            ("type changed", retyped),
        )
        if names
    ]
    return [f"schema: {'; '.join(parts) or 'unchanged'}", *column_lines(comparison.get("columns") or {})]


def column_lines(columns: dict[str, Any]) -> list[str]:
    """A line for each column on both sides whose nulls or distinct values moved, COLUMN_LINES at most."""
    moved = []
    for name, found in columns.items():
        said = [
            f"{figure} {pair['production']} -> {pair['candidate']}"
            for figure, pair in found.items()
            if None not in pair.values() and pair["production"] != pair["candidate"]
        ]
        moved += [f"column {name}: {', '.join(said)}"] if said else []
    if len(moved) > COLUMN_LINES:
        moved[COLUMN_LINES - 1 :] = [f"... and {len(moved) - COLUMN_LINES + 1} more column(s) moved"]
    return moved


CROSSED_SAID = {
    "changed_share": lambda f: f"changed_share {percent(f['value'])} > limit {percent(f['limit'])}",
    "schema_changes": lambda f: f"schema_changes: {f['value']} column(s) removed or retyped",
    "comparison_error": lambda f: "comparison_error: production could not be compared",
    "uncompared_columns": lambda f: (
        f"uncompared_columns: {f['value']} nested column(s) whose values no figure compares"
    ),
}


def limit_lines(comparison: dict[str, Any]) -> list[str]:
    limit = (comparison.get("limits") or {}).get("max_changed_share")
    if limit is None:
        return []
    said = [CROSSED_SAID[f["figure"]](f) for f in comparison.get("crossed") or []]
    return [
        f"crossed: {'; '.join(said)}" if said else f"crossed: none (changed_share limit {percent(limit)})"
    ]
