"""The check of MODEL_NAME's output for one run date: the platform publishes the day only if this passes.

The platform runs it on a copy of what the notebook wrote, as the notebook's user:

    python check.py --date 2019-08-01 --output <folder holding date=2019-08-01/>

Print one line per check and a verdict last. Exit 0 if every check passes, 1 if any fails, 2 for a usage
error. Add the checks your consumers rely on: each is a function returning (passed, detail).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

EXPECTED_SCHEMA = {"accommodation_id": pa.int64(), "usps": pa.int64()}
KEY = "accommodation_id"


def schema(table: pa.Table) -> tuple[bool, str]:
    found = {name: table.schema.field(name).type for name in table.column_names if name != "date"}
    return found == EXPECTED_SCHEMA, f"columns {found}, expected {EXPECTED_SCHEMA}"


def not_empty(table: pa.Table) -> tuple[bool, str]:
    return table.num_rows > 0, f"{table.num_rows:,} rows"


def unique_key(table: pa.Table) -> tuple[bool, str]:
    keys = table[KEY]
    duplicates = table.num_rows - pc.count_distinct(keys).as_py()
    return (
        duplicates == 0 and keys.null_count == 0,
        f"{duplicates} duplicate and {keys.null_count} null {KEY}",
    )


def positive_counts(table: pa.Table) -> tuple[bool, str]:
    low = pc.min(table["usps"]).as_py()
    return low is not None and low > 0, f"the smallest count is {low}"


CHECKS: list[Callable[[pa.Table], tuple[bool, str]]] = [schema, not_empty, unique_key, positive_counts]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", "-d", required=True, help="the run date, YYYY-MM-DD")
    parser.add_argument("--output", "-o", required=True, help="the folder holding date=<date>/")
    args = parser.parse_args(argv)
    folder = Path(args.output) / f"date={args.date}"
    if not folder.is_dir():
        print(f"FAILED: no partition {folder}/: the notebook wrote nothing for {args.date}")
        return 1
    table = ds.dataset(folder, format="parquet").to_table()
    failed = 0
    for check in CHECKS:
        passed, detail = check(table)
        failed += not passed
        print(f"{'ok  ' if passed else 'FAIL'} {check.__name__}: {detail}")
    verdict = "PASSED" if not failed else f"FAILED ({failed} of {len(CHECKS)} checks)"
    print(f"VALIDATION {verdict} for {args.date}: {table.num_rows:,} rows")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
