"""Sanity check of the usp notebook's output for one run date.

Reads the Parquet partition ``<output>/date=<date>/`` (S3 or a local folder) and checks that it has the
expected columns and types, is not empty, has no duplicate (accommodation_id, usp) pair, no null key, and
that every accommodation_ns is 100. The share of rows without a destination is reported, not judged: most
USPs belong to accommodations with no known locality in this data.

    python check.py --date 2019-08-01 --bucket my-output-bucket      # s3://my-output-bucket/usp/output
    python check.py -d 2019-08-01 --output ./output                  # a local folder or s3://bucket/prefix

Prints one line per check and a verdict last.
Exit 0 if every check passes, 1 if any fails, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

DEFAULT_PREFIX = "usp/output"  # where the team's --bucket option has always pointed
EXPECTED_SCHEMA = {
    "accommodation_id": pa.int64(),
    "accommodation_ns": pa.int64(),
    "usp": pa.string(),
    "destination_id": pa.int64(),
}
ALLOWED_NAMESPACES = {100}
EXAMPLES = 3


@dataclass
class Result:
    name: str
    passed: bool
    detail: str


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def read_partition(output: str, date: str) -> pa.Table:
    fs, root = filesystem(output)
    folder = f"{root.rstrip('/')}/date={date}"
    info = fs.get_file_info(folder)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no partition {output.rstrip('/')}/date={date}/")
    dataset = ds.dataset(folder, filesystem=fs, format="parquet", exclude_invalid_files=False)
    return dataset.to_table()


def check_schema(table: pa.Table) -> Result:
    problems = []
    for name, expected in EXPECTED_SCHEMA.items():
        if name not in table.column_names:
            problems.append(f"{name} is missing")
            continue
        actual = table.schema.field(name).type
        if actual != expected and not (pa.types.is_large_string(actual) and expected == pa.string()):
            problems.append(f"{name} is {actual}, expected {expected}")
    extra = sorted(set(table.column_names) - set(EXPECTED_SCHEMA))
    if extra:
        problems.append(f"unexpected column(s) {', '.join(extra)}")
    detail = "; ".join(problems) or ", ".join(f"{n} {t}" for n, t in EXPECTED_SCHEMA.items())
    return Result("columns and types", not problems, detail)


def check_not_empty(table: pa.Table) -> Result:
    return Result("not empty", table.num_rows > 0, f"{table.num_rows:,} rows")


def check_keys_not_null(table: pa.Table) -> Result:
    nulls = {k: table[k].null_count for k in ("accommodation_id", "usp")}
    bad = {k: n for k, n in nulls.items() if n}
    detail = (
        ", ".join(f"{k} null in {n:,} rows" for k, n in bad.items()) or "accommodation_id and usp never null"
    )
    return Result("keys not null", not bad, detail)


def check_unique_pairs(table: pa.Table) -> Result:
    counts = table.group_by(["accommodation_id", "usp"]).aggregate([("usp", "count")])
    dupes = counts.filter(pc.greater(counts["usp_count"], 1))
    if not dupes.num_rows:
        return Result("unique (accommodation_id, usp)", True, f"{counts.num_rows:,} distinct pairs")
    examples = ", ".join(
        f"({r['accommodation_id']}, {r['usp']!r}) x{r['usp_count']}"
        for r in dupes.slice(0, EXAMPLES).to_pylist()
    )
    return Result(
        "unique (accommodation_id, usp)", False, f"{dupes.num_rows:,} duplicated pairs, e.g. {examples}"
    )


def check_namespace(table: pa.Table) -> Result:
    column = table["accommodation_ns"]
    allowed = pa.array(sorted(ALLOWED_NAMESPACES), type=column.type)
    bad = table.filter(pc.invert(pc.fill_null(pc.is_in(column, value_set=allowed), False)))
    wanted = ", ".join(map(str, sorted(ALLOWED_NAMESPACES)))
    if not bad.num_rows:
        return Result("accommodation_ns", True, f"every value in {{{wanted}}}")
    seen = ", ".join(str(v) for v in pc.unique(bad["accommodation_ns"]).to_pylist()[:EXAMPLES])
    return Result("accommodation_ns", False, f"{bad.num_rows:,} rows not in {{{wanted}}}, e.g. {seen}")


CHECKS: list[Callable[[pa.Table], Result]] = [
    check_not_empty,
    check_keys_not_null,
    check_unique_pairs,
    check_namespace,
]


def validate(table: pa.Table) -> list[Result]:
    schema = check_schema(table)
    if not schema.passed:  # the other checks need the expected columns
        return [schema]
    return [schema, *(check(table) for check in CHECKS)]


def destination_share(table: pa.Table) -> str:
    if "destination_id" not in table.column_names or not table.num_rows:
        return "destination_id: not reported"
    nulls = table["destination_id"].null_count
    return (
        f"info  destination_id null in {nulls:,} of {table.num_rows:,} rows ({nulls / table.num_rows:.1%}):"
        " expected, USPs of accommodations without a known locality"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sanity check of the usp output for one run date.")
    parser.add_argument("-d", "--date", required=True, type=run_date, help="run date, YYYY-MM-DD")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-b", "--bucket", help=f"output bucket: reads s3://BUCKET/{DEFAULT_PREFIX}/date=DATE")
    where.add_argument("-o", "--output", help="output location: s3://bucket/prefix or a local folder")
    args = parser.parse_args(argv)
    args.output = args.output or f"s3://{args.bucket}/{DEFAULT_PREFIX}"
    return args


def run_date(value: str) -> str:
    try:
        if len(value) == len("YYYY-MM-DD"):
            return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{value!r} is not a date: use YYYY-MM-DD")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    where = f"{args.output.rstrip('/')}/date={args.date}/"
    print(f"Checking usp output for {args.date} at {where}")
    try:
        table = read_partition(args.output, args.date)
    except (OSError, pa.ArrowException) as exc:
        print(f"FAIL  readable: {exc}")
        print(f"VALIDATION FAILED for {args.date}: cannot read {where} ({exc})")
        return 1
    results = validate(table)
    for r in results:
        print(f"{'ok   ' if r.passed else 'FAIL '} {r.name}: {r.detail}")
    print(destination_share(table))
    failed = [r for r in results if not r.passed]
    if failed:
        summary = "; ".join(f"{r.name}: {r.detail}" for r in failed)
        print(f"VALIDATION FAILED for {args.date}: {len(failed)} of {len(results)} checks failed: {summary}")
        return 1
    print(f"VALIDATION PASSED for {args.date}: {table.num_rows:,} rows, all {len(results)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
