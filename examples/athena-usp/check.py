"""Check of the Athena example's output: the day's partition has the expected columns, rows, and only
accommodation_ns 100. Run by the runner as: python check.py --date D --output STAGING_URI."""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

COLUMNS = {"accommodation_id": pa.int64(), "accommodation_ns": pa.int64(), "usp": pa.string(),
           "destination_id": pa.int64()}  # fmt: skip

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--date", required=True)
parser.add_argument("--output", required=True, help="s3://bucket/prefix or a folder holding date=D/")
args = parser.parse_args()

fs, root = (
    pafs.FileSystem.from_uri(args.output) if "://" in args.output else (pafs.LocalFileSystem(), args.output)
)
table = ds.dataset(f"{root.rstrip('/')}/date={args.date}", filesystem=fs, format="parquet").to_table()
problems = [f"{name} is {table.schema.field(name).type if name in table.column_names else 'missing'}"
            for name, kind in COLUMNS.items()
            if name not in table.column_names or table.schema.field(name).type != kind]  # fmt: skip
if table.num_rows == 0:
    problems.append("no rows")
elif pc.any(pc.not_equal(table["accommodation_ns"], 100)).as_py():
    problems.append("an accommodation_ns other than 100")
if problems:
    sys.exit(f"ATHENA USP CHECK FAILED for {args.date}: {'; '.join(problems)}")
print(f"ATHENA USP CHECK PASSED for {args.date}: {table.num_rows} rows")
