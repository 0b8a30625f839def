"""What the table takes: the checked rows with the runner's date column, and the schema rules (a column may
be added; none dropped or retyped, which would break the consumers' queries). A breach is exit 20."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from runner import exits
from runner.errors import RunFailed

if TYPE_CHECKING:
    import pyarrow as pa

DATE = "date"  # the partition column the runner adds


def refused(message: str) -> RunFailed:
    """Rows no table may take: the check's failure (exit 20), and nothing was written."""
    return RunFailed(exits.CHECK, message, "check")


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
