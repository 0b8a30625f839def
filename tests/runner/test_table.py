"""runner/table.py on the local SQLite catalog, in this process: one commit per run, the history and the
restore, the schema rules, expiry and orphan files, concurrent runs and readers. The same code on the Glue
catalog and S3 (moto over HTTP) is tests/table/; in the image, tests/runner/test_runner_table.py."""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest
from races import runs_in_day, runs_seen_by_a_reader_while, started_together, two_runs_of_one_day_race

from runner import catalog, exits, history, maintenance, schema, table
from runner.errors import Output, RunFailed
from runner.locations import Location

DAY, NEXT = "2019-08-01", "2019-08-02"


def config(root: Path, keep_days: int = 30) -> catalog.TableConfig:
    return catalog.TableConfig("sqlite", "notebooks.usp", Location(str(root / "out")), keep_days)


def rows(run: str, n: int, date: str = DAY, **extra: pa.Array) -> pa.Table:
    """n rows whose usp names the run that wrote them, for date."""
    data = pa.table({"id": pa.array(range(n), pa.int64()), "usp": pa.array([run] * n), **extra})
    return schema.with_date(data, date)


def publish(
    cfg: catalog.TableConfig, run: str, n: int = 3, date: str = DAY, **extra: pa.Array
) -> catalog.Committed:
    return table.commit(
        cfg, rows(run, n, date, **extra), catalog.Lineage(run, date, "c0ffee", "img@sha256:1", "ok")
    )


def test_a_run_is_one_commit_that_replaces_exactly_its_day(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a", 3)
    publish(cfg, "other-day", 2, NEXT)
    done = publish(cfg, "b", 5)
    assert (done.rows, done.replaced) == (5, 3)
    assert runs_in_day(cfg) == ["b"] and history.read_day(cfg, DAY).num_rows == 5
    assert runs_in_day(cfg, NEXT) == ["other-day"]
    loaded = catalog.open_catalog(cfg).load_table(cfg.name)
    last_two = list(catalog.ancestry(loaded))[:2]
    assert [s.summary.operation.value for s in last_two] == ["append", "delete"]
    assert {catalog.summary(s)[catalog.PROPERTY + "run-id"] for s in last_two} == {"b"}
    assert [f.name for f in loaded.spec().fields] == ["date"]


def test_each_snapshot_carries_the_runs_lineage(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    snapshot = catalog.open_catalog(cfg).load_table(cfg.name).current_snapshot()
    props = catalog.summary(snapshot)
    assert {k: props[catalog.PROPERTY + k] for k in ("run-id", "date", "commit", "image", "check")} == {
        "run-id": "a", "date": DAY, "commit": "c0ffee", "image": "img@sha256:1", "check": "ok",
    }  # fmt: skip


def test_history_lists_one_version_per_run_and_marks_the_current(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    for run in ("a", "b", "c"):
        publish(cfg, run)
    publish(cfg, "other-day", date=NEXT)
    versions = history.history(cfg, DAY)
    assert [(v.run_id, v.current) for v in versions] == [("a", False), ("b", False), ("c", True)]
    assert all(v.rows == 3 and v.commit == "c0ffee" for v in versions)
    assert history.history(cfg, "2019-07-01") == []


def test_a_day_reads_as_of_an_earlier_snapshot_and_restores_as_a_new_commit(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    publish(cfg, "b", 4, z=pa.array([1.5] * 4))  # a column added since a's version
    first = history.history(cfg, DAY)[0]
    assert runs_in_day(cfg, snapshot_id=first.snapshot_id) == ["a"]
    done = history.restore(cfg, DAY, first.snapshot_id, "restore-1")
    assert runs_in_day(cfg) == ["a"] and done.rows == 3
    restored = history.read_day(cfg, DAY)
    assert restored.column("z").null_count == 3  # the later column is kept, empty for the old rows
    versions = history.history(cfg, DAY)
    assert [(v.run_id, v.restored_from, v.current) for v in versions] == [
        ("a", "", False), ("b", "", False), ("restore-1", str(first.snapshot_id), True),
    ]  # fmt: skip
    assert runs_in_day(cfg, snapshot_id=versions[1].snapshot_id) == ["b"]  # nothing was lost


def test_restoring_a_snapshot_the_table_does_not_have_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    with pytest.raises(RunFailed, match=r"has no snapshot 42 .*make history DATE=2019-08-01") as caught:
        history.restore(cfg, DAY, 42, "restore-1")
    assert caught.value.exit is exits.CONFIG


def test_an_added_column_evolves_the_table(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    publish(cfg, "b", date=NEXT, score=pa.array([0.5, 0.6, 0.7]))
    loaded = catalog.open_catalog(cfg).load_table(cfg.name)
    assert [f.name for f in loaded.schema().fields] == ["id", "usp", "date", "score"]
    assert history.read_day(cfg, DAY).column("score").null_count == 3


@pytest.mark.parametrize(
    ("new_rows", "said"),
    [
        (pa.table({"id": pa.array([1], pa.int64())}), "drops usp (string)"),
        (pa.table({"id": pa.array(["1"]), "usp": pa.array(["x"])}), "retypes id from long to string"),
        (pa.table({"id": pa.array([1], pa.int32()), "usp": pa.array(["x"])}), "retypes id from long to int"),
    ],
    ids=["dropped", "retyped", "narrowed"],
)
def test_a_dropped_or_retyped_column_is_refused_before_anything_is_written(
    tmp_path: Path, new_rows: pa.Table, said: str
) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    before = sorted(p.relative_to(cfg.location.path) for p in cfg.location.path.rglob("*"))
    with pytest.raises(RunFailed, match=re.escape(said)) as caught:
        table.commit(cfg, schema.with_date(new_rows, NEXT), catalog.Lineage("b", NEXT))
    assert caught.value.exit is exits.CHECK and caught.value.output is Output.UNCHANGED
    assert sorted(p.relative_to(cfg.location.path) for p in cfg.location.path.rglob("*")) == before


@pytest.mark.parametrize(
    ("columns", "said"),
    [
        ({"date": pa.array(["2019-08-01"])}, "named date, which clash"),
        ({"a": pa.array([1]), "A": pa.array([2])}, "named a, which clash once case is ignored"),
        ({"DATE": pa.array([1])}, "named date, which clash"),
        ({"a": pa.nulls(1)}, "column a has no type (all its values are null)"),
        ({"a.b": pa.array([1])}, "a column named 'a.b'"),
    ],
    ids=["date", "case", "DATE", "null-typed", "dotted"],
)
def test_an_output_the_table_cannot_take_is_refused_naming_the_column(columns: dict, said: str) -> None:
    with pytest.raises(RunFailed, match=re.escape(said)) as caught:
        schema.with_date(pa.table(columns), DAY)
    assert caught.value.exit is exits.CHECK


def test_required_columns_and_nanosecond_timestamps_are_stored_as_the_table_takes_them(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path)
    given = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("at", pa.timestamp("ns"))])
    first = pa.table({"id": [1], "at": pa.array([1_000_000_000], pa.timestamp("ns"))}, schema=given)
    table.commit(cfg, schema.with_date(first, DAY), catalog.Lineage("a", DAY))
    later = pa.table({"id": pa.array([None, 2], pa.int64()), "at": pa.array([None, 5], pa.timestamp("ns"))})
    table.commit(cfg, schema.with_date(later, NEXT), catalog.Lineage("b", NEXT))  # nulls where a had none
    loaded = catalog.open_catalog(cfg).load_table(cfg.name)
    assert all(not f.required for f in loaded.schema().fields)
    assert str(loaded.schema().find_field("at").field_type) == "timestamp"


def test_a_table_that_lives_elsewhere_is_never_written_nor_swept(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    moved = catalog.TableConfig("sqlite", cfg.name, Location(str(tmp_path / "copy")), 30)
    (tmp_path / "copy" / "_catalog").mkdir(parents=True)
    (tmp_path / "copy" / "_catalog" / "iceberg.db").write_bytes(
        (cfg.location.path / catalog.LOCAL_CATALOG).read_bytes()
    )
    with pytest.raises(RunFailed, match=r"lives at file://.*/out, not at OUTPUT_URI .*/copy") as caught:
        publish(moved, "b")
    assert caught.value.exit is exits.PUBLISH
    with pytest.raises(RunFailed, match="lives at"):
        maintenance.expire(moved, dt.datetime.now(dt.UTC), dt.timedelta(0))
    assert runs_in_day(cfg) == ["a"]


def test_a_snapshot_replaced_a_moment_ago_outlives_its_expiry_for_readers_under_way(tmp_path: Path) -> None:
    cfg = config(tmp_path, keep_days=1)
    publish(cfg, "a")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)  # a's snapshot is old, b's is not yet settled
    publish(cfg, "b")
    said = maintenance.expire(cfg, later, orphan_age=dt.timedelta(days=4))
    assert said.startswith("expired 0 snapshot(s)")
    assert maintenance.expire(cfg, later, orphan_age=dt.timedelta(days=2)).startswith("expired 2 snapshot(s)")


def test_a_reused_run_id_never_passes_for_this_commit(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "same")
    loaded = catalog.open_catalog(cfg).load_table(cfg.name)
    assert catalog.own_snapshot(loaded, catalog.Lineage("same", DAY)) is None


def test_old_snapshots_expire_and_only_their_files_are_removed(tmp_path: Path) -> None:
    cfg = config(tmp_path, keep_days=7)
    for run in ("a", "b"):
        publish(cfg, run)
    publish(cfg, "other-day", date=NEXT)
    now = dt.datetime.now(dt.UTC)
    assert maintenance.expire(cfg, now, dt.timedelta(0)).startswith("expired 0 snapshot(s)")  # all are young
    files = lambda: sorted(p for p in cfg.location.path.rglob("*.parquet"))  # noqa: E731
    assert len(files()) == 3
    said = maintenance.expire(cfg, now + dt.timedelta(days=8), dt.timedelta(0))
    loaded = catalog.open_catalog(cfg).load_table(cfg.name)
    assert [s.snapshot_id for s in loaded.snapshots()] == [loaded.current_snapshot().snapshot_id]
    assert len(files()) == 2 and "removed" in said  # a's file went; b's and the other day's stay
    assert runs_in_day(cfg) == ["b"] and runs_in_day(cfg, NEXT) == ["other-day"]
    assert maintenance.referenced(loaded) >= {catalog.plain(str(p)) for p in files()}


def test_a_young_unreferenced_file_is_kept_it_may_be_a_commit_under_way(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    stray = cfg.location.path / "data" / f"date={DAY}" / "in-flight.parquet"
    stray.write_bytes(b"PAR1")
    maintenance.expire(cfg, dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    assert stray.exists()
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).timestamp()
    os.utime(stray, (old, old))
    maintenance.expire(cfg, dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    assert not stray.exists() and runs_in_day(cfg) == ["a"]


def test_two_runs_of_one_day_that_read_the_same_table_leave_one_runs_rows_and_the_loser_named(
    tmp_path: Path,
) -> None:
    two_runs_of_one_day_race(config(tmp_path), publish)


def test_runs_of_different_days_commit_independently(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "seed", date="2019-07-31")
    days = [f"2019-08-0{i}" for i in range(1, 5)]
    outcomes = started_together({day: partial(publish, cfg, f"run-{day}", 2, day) for day in days})
    assert all(isinstance(o, catalog.Committed) for o in outcomes.values()), outcomes
    assert [runs_in_day(cfg, day) for day in days] == [[f"run-{day}"] for day in days]


def test_a_reader_never_sees_a_day_mixing_two_runs_during_20_publishes(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "run-0", 50)
    seen = runs_seen_by_a_reader_while(cfg, lambda: [publish(cfg, f"run-{i}", 50 + i) for i in range(1, 21)])
    assert len(seen) >= 20
    assert all(len(runs) == 1 for runs in seen), [runs for runs in seen if len(runs) != 1][:3]


def test_a_commit_that_fails_leaves_the_table_unchanged_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    from pyiceberg.catalog.sql import SqlCatalog

    def refuse(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(SqlCatalog, "commit_table", refuse)
    with pytest.raises(RunFailed, match=r"\(OSError: disk full\)") as caught:
        publish(cfg, "b")
    assert caught.value.exit is exits.PUBLISH and caught.value.output is Output.UNCHANGED
    monkeypatch.undo()
    assert runs_in_day(cfg) == ["a"] and [v.run_id for v in history.history(cfg, DAY)] == ["a"]


def test_a_commit_whose_reply_was_lost_but_landed_counts_as_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    from pyiceberg.catalog.sql import SqlCatalog

    real = SqlCatalog.commit_table

    def lands_then_fails(self: SqlCatalog, *args: object, **kwargs: object) -> object:
        real(self, *args, **kwargs)
        raise OSError("connection reset")

    monkeypatch.setattr(SqlCatalog, "commit_table", lands_then_fails)
    done = publish(cfg, "b", 6)
    monkeypatch.undo()
    assert done.rows == 6 and runs_in_day(cfg) == ["b"]


def test_the_table_setting_is_checked(tmp_path: Path) -> None:
    from runner.config import table_config

    out = Location(str(tmp_path))
    assert table_config({"NOTEBOOK": "My Model.ipynb"}, out).name == "notebooks.my_model"
    assert table_config({}, Location("s3://bucket/x")).catalog == "glue"
    assert table_config({"OUTPUT_TABLE": "Sales.Daily"}, out).name == "sales.daily"  # as Glue keeps it
    for environ, said in (
        ({"OUTPUT_TABLE": "sales-eu.daily"}, "OUTPUT_TABLE=sales-eu.daily is not database.table"),
        ({"OUTPUT_TABLE": "daily"}, "is not database.table"),
        ({"TABLE_CATALOG": "hive"}, "TABLE_CATALOG=hive is not one of sqlite, glue, none"),
        ({"TABLE_CATALOG": "glue"}, "TABLE_CATALOG=glue needs an s3:// OUTPUT_URI"),
        ({"KEEP_SNAPSHOT_DAYS": "0"}, "KEEP_SNAPSHOT_DAYS=0 is not a whole number of days"),
        ({"EVENT_BUS": "bus name"}, "EVENT_BUS=bus name is not an event bus name or ARN"),
    ):
        with pytest.raises(RunFailed, match=re.escape(said)) as caught:
            table_config(environ, out)
        assert caught.value.exit is exits.CONFIG


def test_a_new_table_where_another_tables_files_are_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    publish(cfg, "a")
    other = catalog.TableConfig("sqlite", "notebooks.other", cfg.location, 30)
    with pytest.raises(RunFailed, match=r"already holds an Iceberg table's files \(metadata/0000") as caught:
        publish(other, "b")
    assert caught.value.exit is exits.PUBLISH and "set OUTPUT_TABLE to the table that is there" in str(
        caught.value
    )
    assert runs_in_day(cfg) == ["a"]


def pins(path: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", path.read_text(), re.MULTILINE)
    return {name.lower(): version for name, version in found}


def test_the_table_library_and_pyarrow_are_pinned_alike_wherever_they_are_installed() -> None:
    """The runner's lock is the pin: the tests read the table with the same PyIceberg, and usp's own
    requirements take the runner's pyarrow, which the image then stores once (Dockerfile)."""
    repo = Path(__file__).resolve().parents[2]
    runner = pins(repo / "runner" / "requirements.txt")
    assert pins(repo / "requirements-dev.txt")["pyiceberg"] == runner["pyiceberg"]
    assert pins(repo / "requirements.txt")["pyarrow"] == runner["pyarrow"]
