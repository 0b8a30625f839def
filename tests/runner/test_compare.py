"""runner/compare.py in this process: a candidate's checked rows against production's (figures, thresholds,
the lines an engineer reads), production read from a real local table and never written, the COMPARE_*
settings, and the run's record of a comparison (comparison.json, the manifest). Through the image:
tests/runner/test_runner_compare.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pytest

from runner import catalog, compare, config, exits, history, outcome, schema, table
from runner.errors import RunFailed
from runner.locations import Location
from runner.processes import NotebookUser
from runner.run import Run
from runner.sandbox import Workspace

DAY = "2019-08-01"
KEYS = ("accommodation_id", "usp")


def usp(rows: list[tuple], **types: pa.DataType) -> pa.Table:
    """Rows of the usp notebook's output (accommodation_id, accommodation_ns, usp, destination_id)."""
    schema = pa.schema([("accommodation_id", pa.int64()), ("accommodation_ns", pa.int64()),
                        ("usp", pa.string()), ("destination_id", pa.int64())])  # fmt: skip
    schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in schema])
    return pa.Table.from_pylist([dict(zip(schema.names, row, strict=True)) for row in rows], schema=schema)


PRODUCTION = [(1, 100, "spa", 7), (1, 100, "pool", 7), (2, 100, "spa", None), (3, 100, "bar", 9)]


def compared(candidate: pa.Table, keys: tuple[str, ...] = KEYS, limit: float | None = None,
             production: pa.Table | None = None) -> dict:  # fmt: skip
    found = compare.compare(usp(PRODUCTION) if production is None else production, candidate, keys, DAY)
    return compare.judged(found, limit)


# --- the figures ---------------------------------------------------------------------------------------


def test_an_unchanged_candidate_adds_removes_and_changes_nothing() -> None:
    result = compared(usp(list(reversed(PRODUCTION))), limit=0.1)  # order does not matter

    assert result["rows"] == {"production": 4, "candidate": 4}
    assert (result["compared_by"], result["added"], result["removed"], result["changed"]) == ("keys", 0, 0, 0)
    assert result["changed_share"] == 0.0 and result["crossed"] == [] and result["note"] is None
    assert result["schema"] == {"added": [], "removed": [], "type_changed": []}
    assert result["columns"]["destination_id"] == {
        "nulls": {"production": 1, "candidate": 1}, "distinct": {"production": 2, "candidate": 2},
    }  # fmt: skip
    stored = json.loads(compare.as_bytes(result))  # JSON as it is, with the lines a mail prints
    assert stored == {**result, "summary": compare.summary_lines(result)}


def test_a_kind_of_rows_dropped_is_removed_rows() -> None:
    result = compared(usp([row for row in PRODUCTION if row[2] != "spa"]))

    assert (result["added"], result["removed"], result["changed"]) == (0, 2, 0)
    assert result["changed_share"] == 0.5
    assert result["columns"]["usp"]["distinct"] == {"production": 3, "candidate": 2}


def test_new_rows_are_added_and_other_values_of_a_key_are_changed() -> None:
    candidate = usp([*PRODUCTION[:2], (2, 100, "spa", 8), (3, 100, "bar", 9), (4, 100, "gym", 1)])

    result = compared(candidate)

    assert (result["added"], result["removed"], result["changed"]) == (1, 0, 1)
    assert result["changed_share"] == 0.5  # (1 + 0 + 1) / 4


def test_without_keys_rows_are_compared_whole_as_multisets() -> None:
    candidate = usp([*PRODUCTION[:3], (3, 100, "bar", 10), PRODUCTION[0]])  # one changed, one copy more

    result = compared(candidate, keys=())

    assert (result["compared_by"], result["added"], result["removed"], result["changed"]) == (
        "rows",
        2,
        1,
        None,
    )
    said = "no key columns set: rows compared whole; set promotion.compare_keys in settings.yml"
    assert result["note"] == said
    assert result["changed_share"] == 0.75


@pytest.mark.parametrize(
    ("keys", "production", "said"),
    [
        (("accommodation_id", "room"), None, "key column(s) room missing in production"),
        (("accommodation_id",), None, "keys (accommodation_id) are not unique in production"),
        (
            KEYS,
            usp([*PRODUCTION, PRODUCTION[0]]),
            "keys (accommodation_id, usp) are not unique in production",
        ),
    ],
)
def test_keys_that_cannot_match_rows_fall_back_to_whole_rows_and_say_why(
    keys: tuple[str, ...], production: pa.Table | None, said: str
) -> None:
    result = compared(usp(PRODUCTION[:3]), keys=keys, production=production)

    assert result["compared_by"] == "rows" and result["changed"] is None
    assert result["note"].startswith(f"{said}: rows compared whole")
    assert result["removed"] == (1 if production is None else 2) and result["added"] == 0


def test_duplicate_keys_in_the_candidate_are_said_too() -> None:
    result = compared(usp([*PRODUCTION, PRODUCTION[1]]))

    assert result["note"].startswith("keys (accommodation_id, usp) are not unique in candidate")
    assert (result["added"], result["removed"]) == (1, 0)


def test_schema_changes_are_named_and_rows_compared_on_the_columns_in_common() -> None:
    candidate = usp(PRODUCTION)
    candidate = candidate.set_column(3, "destination_id", candidate.column(3).cast(pa.string()))
    candidate = candidate.drop_columns(["accommodation_ns"])
    candidate = candidate.append_column("score", pa.array([1.0, 2.0, 3.0, 4.0]))

    result = compared(candidate, limit=0.5)

    assert result["schema"] == {
        "added": ["score"], "removed": ["accommodation_ns"],
        "type_changed": [{"column": "destination_id", "production": "long", "candidate": "string"}],
    }  # fmt: skip
    assert (result["added"], result["removed"], result["changed"]) == (0, 0, 0)
    assert "compared without accommodation_ns, destination_id, score" in result["note"]
    assert result["columns"]["score"]["nulls"] == {"production": None, "candidate": 0}
    assert result["crossed"] == [{"figure": "schema_changes", "value": 2, "limit": 0}]


def test_the_types_a_table_stores_alike_are_no_change() -> None:
    """large_string and string, nanoseconds and microseconds, a dictionary and its values: one type to the
    table, so neither a schema change nor changed rows."""
    when = pa.array([1_000_000_000_000_000, 2_000_000_000_000_000, 3, 4], pa.timestamp("us"))
    production = usp(PRODUCTION).append_column("at", when)
    candidate = usp(PRODUCTION, usp=pa.large_string()).append_column("at", when.cast(pa.timestamp("ns")))
    candidate = candidate.set_column(0, "accommodation_id", candidate.column(0).dictionary_encode())

    result = compared(candidate, production=production)

    assert result["schema"] == {"added": [], "removed": [], "type_changed": []}
    assert (result["added"], result["removed"], result["changed"], result["note"]) == (0, 0, 0, None)


def test_nulls_and_distinct_values_per_column_and_the_lines_of_those_that_moved() -> None:
    candidate = usp(
        [(1, 100, "spa", None), (1, 100, "pool", None), (2, 100, "spa", None), (3, 100, "bar", 9)]
    )

    result = compared(candidate)

    assert result["columns"]["destination_id"] == {
        "nulls": {"production": 1, "candidate": 3}, "distinct": {"production": 2, "candidate": 1},
    }  # fmt: skip
    lines = compare.summary_lines(result)
    assert "column destination_id: nulls 1 -> 3, distinct 2 -> 1" in lines
    assert not any(line.startswith("column usp") for line in lines)  # unchanged columns are not said


def test_production_with_the_runners_date_column_is_compared_without_it() -> None:
    production = schema.with_date(usp(PRODUCTION), DAY)

    result = compared(usp(PRODUCTION), production=production)

    assert result["schema"]["removed"] == [] and result["changed"] == 0 and "date" not in result["columns"]


@pytest.mark.parametrize("production", [None, usp([])])
def test_production_that_published_nothing_is_nothing_to_compare_and_crosses_no_limit(
    production: pa.Table | None,
) -> None:
    result = compare.judged(compare.compare(production, usp(PRODUCTION), KEYS, DAY), 0.0)

    assert result["rows"] == {"production": 0, "candidate": 4}
    assert result["note"] == f"production published nothing for {DAY}: nothing to compare"
    assert [result[k] for k in ("added", "removed", "changed", "changed_share", "schema")] == [None] * 5
    assert result["crossed"] == []


# --- thresholds -------------------------------------------------------------------------------------------


def test_a_share_past_its_limit_is_crossed_and_one_within_is_not() -> None:
    candidate = usp(PRODUCTION[1:])  # 1 of 4 removed: 25%

    assert compared(candidate, limit=0.2)["crossed"] == [
        {"figure": "changed_share", "value": 0.25, "limit": 0.2}
    ]
    assert compared(candidate, limit=0.25)["crossed"] == []
    assert compared(candidate, limit=None)["crossed"] == []  # no threshold: nothing is ever crossed
    assert compared(candidate, limit=None)["limits"] == {"max_changed_share": None}


def test_an_error_crosses_the_comparison_error_figure_only_when_a_threshold_is_set() -> None:
    failed = {**compare.skeleton(DAY, None, usp(PRODUCTION)), "error": "AccessDenied"}

    assert compare.crossed(failed, 0.1) == [{"figure": "comparison_error", "value": None, "limit": None}]
    assert compare.crossed(failed, None) == []


# --- what an engineer reads ---------------------------------------------------------------------------


def test_the_summary_lines_say_rows_schema_and_what_crossed() -> None:
    candidate = usp([*PRODUCTION[:2], (2, 100, "spa", 8)])

    lines = compare.summary_lines(compared(candidate, limit=0.1))

    assert lines == [
        (
            "rows: 4 in production, 3 in the candidate; by key (accommodation_id, usp): 0 added, 1 removed, "
            "1 changed (50.0% of production's rows)"
        ),
        "schema: unchanged",
        "column accommodation_id: distinct 3 -> 2",
        "column usp: distinct 3 -> 2",
        "column destination_id: nulls 1 -> 0",
        "crossed: changed_share 50.0% > limit 10.0%",
    ]
    assert compare.summary_lines(compared(usp(PRODUCTION), limit=0.1))[-1] == (
        "crossed: none (changed_share limit 10.0%)"
    )


def test_the_summary_says_whole_rows_the_note_the_schema_and_keeps_to_a_few_lines() -> None:
    wide = {f"c{i}": pa.array([i, i + 1, i + 2, i + 3]) for i in range(20)}
    production = pa.table({**wide, "gone": pa.array([1, 2, 3, 4])})
    candidate = pa.table({name: pa.array([0, 0, 0, 0]) for name in wide})

    lines = compare.summary_lines(compared(candidate, keys=(), production=production, limit=0.5))

    assert lines[0] == (
        "rows: 4 in production, 4 in the candidate; rows compared whole: 4 added, 4 removed "
        "(200.0% of production's rows)"
    )
    assert lines[1] == "schema: removed gone"
    assert lines[6] == "... and 16 more column(s) moved"
    assert lines[7].startswith("note: no key columns set: rows compared whole")
    assert lines[8] == (
        "crossed: schema_changes: 1 column(s) removed or retyped; changed_share 200.0% > limit 50.0%"
    )
    assert len(lines) <= 10


def test_the_manifests_figures_are_the_small_ones() -> None:
    result = compared(usp(PRODUCTION[1:]), limit=0.1)

    assert compare.figures(result) == {
        "rows": {"production": 4, "candidate": 3}, "added": 0, "removed": 1, "changed": 0,
        "changed_share": 0.25, "crossed": [{"figure": "changed_share", "value": 0.25, "limit": 0.1}],
        "note": None, "error": None,
    }  # fmt: skip


# --- production, read from a real table and never written -------------------------------------------------


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root: its bytes and when it was last written."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def published(root: Path, rows: list[tuple], date: str = DAY) -> catalog.TableConfig:
    cfg = catalog.TableConfig("sqlite", "notebooks.usp", Location(str(root)), 30)
    table.commit(cfg, schema.with_date(usp(rows), date), catalog.Lineage("prod", date))
    return cfg


def settings(root: Path, limit: float | None = 0.1) -> compare.Settings:
    where = catalog.TableConfig("sqlite", "notebooks.usp", Location(str(root)), 1)
    return compare.Settings(where, KEYS, limit)


def test_production_is_read_from_its_table_and_left_byte_for_byte_as_it_was(tmp_path: Path) -> None:
    cfg = published(tmp_path / "prod", PRODUCTION)
    published(tmp_path / "prod", [(9, 100, "spa", 1)], "2019-08-02")  # another day: not compared
    before = tree(tmp_path / "prod")

    result = compare.against_production(settings(tmp_path / "prod"), DAY, usp(PRODUCTION[:3]))

    snapshot = history.existing(cfg).current_snapshot()
    assert result["production"] == {
        "table": "notebooks.usp", "uri": str(tmp_path / "prod"), "snapshot_id": snapshot.snapshot_id,
    }  # fmt: skip
    assert (result["rows"], result["removed"], result["error"]) == (
        {"production": 4, "candidate": 3},
        1,
        None,
    )
    assert result["crossed"] == [{"figure": "changed_share", "value": 0.25, "limit": 0.1}]
    assert result["keys"] == list(KEYS) and "date" not in result["columns"]
    assert tree(tmp_path / "prod") == before


@pytest.mark.parametrize("made", [False, True])
def test_production_without_a_catalog_or_a_table_published_nothing_and_nothing_is_created(
    tmp_path: Path, made: bool
) -> None:
    root = tmp_path / "prod"
    if made:  # a catalog that holds another table only
        cfg = published(root, PRODUCTION)
        settings_ = compare.Settings(catalog.TableConfig("sqlite", "other.usp", cfg.location, 1), KEYS, 0.1)
    else:
        root.mkdir()
        settings_ = settings(root)
    before = tree(root)

    result = compare.against_production(settings_, DAY, usp(PRODUCTION))

    assert result["error"] is None and result["rows"]["production"] == 0 and result["crossed"] == []
    assert result["note"] == f"production published nothing for {DAY}: nothing to compare"
    assert tree(root) == before
    assert sorted(p.name for p in root.iterdir()) == (["_catalog", "data", "metadata"] if made else [])


def test_production_that_cannot_be_read_is_the_comparisons_error_never_the_runs(tmp_path: Path) -> None:
    db = tmp_path / "prod" / catalog.LOCAL_CATALOG
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not a database")

    result = compare.against_production(settings(tmp_path / "prod"), DAY, usp(PRODUCTION))

    assert result["error"].startswith(f"production's table notebooks.usp at {tmp_path / 'prod'} could not be")
    assert result["crossed"] == [{"figure": "comparison_error", "value": None, "limit": None}]
    assert result["rows"] == {"production": None, "candidate": 4}
    assert compare.summary_lines(result)[0].startswith("comparison with production failed: production's")
    assert db.read_bytes() == b"not a database"


# --- the settings ----------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "usp.ipynb").write_text("{}")
    (tmp_path / "check.py").write_text("")
    return {"PROJECT_DIR": str(tmp_path), "DATA_URI": "/lake", "OUTPUT_URI": str(tmp_path / "out")}


def test_without_compare_uri_there_is_no_comparison(project: dict) -> None:
    assert config.load({**project, "COMPARE_KEYS": "a,b", "COMPARE_MAX_CHANGED_SHARE": "0.2"}).compare is None


def test_the_compare_settings_name_production_its_catalog_keys_and_threshold(project: dict) -> None:
    local = config.load({**project, "COMPARE_URI": "/prod", "COMPARE_KEYS": " accommodation_id, usp,,usp",
                         "COMPARE_MAX_CHANGED_SHARE": "0.25"}).compare  # fmt: skip
    assert local is not None
    assert (local.production.catalog, local.production.name, local.production.location.uri) == (
        "sqlite", "notebooks.usp", "/prod",
    )  # fmt: skip
    assert (local.keys, local.max_changed_share) == (KEYS, 0.25)
    aws = config.load({**project, "COMPARE_URI": "s3://prod-bucket/usp/daily", "OUTPUT_TABLE": "models.usp",
                       "TABLE_CATALOG": "none"}).compare  # fmt: skip
    assert aws is not None and (aws.production.catalog, aws.production.name) == ("glue", "models.usp")
    assert (aws.keys, aws.max_changed_share) == ((), None)
    named = config.load({**project, "COMPARE_URI": "/prod", "COMPARE_TABLE": "Prod.USP"}).compare
    assert named is not None and named.production.name == "prod.usp"


@pytest.mark.parametrize("value", ["abc", "1.5", "-0.1", "nan", "inf", "10%"])
def test_a_bad_max_changed_share_is_a_configuration_error_saying_the_fix(project: dict, value: str) -> None:
    with pytest.raises(RunFailed) as failed:
        config.load({**project, "COMPARE_URI": "/prod", "COMPARE_MAX_CHANGED_SHARE": value})

    assert failed.value.exit is exits.CONFIG
    assert str(failed.value) == (
        f"COMPARE_MAX_CHANGED_SHARE={value} is not a share from 0 to 1: e.g. COMPARE_MAX_CHANGED_SHARE=0.1 "
        "(the candidate may add, remove or change 10% of production's rows), or leave it empty for no "
        "threshold"
    )


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("COMPARE_URI", "https://prod", "COMPARE_URI=https://prod uses an unsupported scheme"),
        ("COMPARE_URI", "/prod#1", "COMPARE_URI=/prod#1 has '#', '?' or '%'"),
        ("COMPARE_TABLE", "usp", "COMPARE_TABLE=usp is not database.table"),
    ],
)
def test_a_bad_production_location_or_table_is_a_configuration_error(
    project: dict, setting: str, value: str, said: str
) -> None:
    with pytest.raises(RunFailed, match=re.escape(said)) as failed:
        config.load({**project, "COMPARE_URI": "/prod", setting: value})

    assert failed.value.exit is exits.CONFIG


def test_the_compare_settings_are_in_the_usage_and_never_reach_the_notebook() -> None:
    for name in ("COMPARE_URI", "COMPARE_TABLE", "COMPARE_KEYS", "COMPARE_MAX_CHANGED_SHARE"):
        assert f"  {name} " in config.usage() and name in config.SETTING_NAMES


# --- the run's record ------------------------------------------------------------------------------------


def test_the_run_compares_the_checked_rows_and_records_the_comparison_and_its_figures(
    project: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's step before the commit (publish.publish calls it with the checked rows), then its record:
    comparison.json among the report's files and the figures in the manifest."""
    published(tmp_path / "prod", PRODUCTION)
    environ = {**project, "RUN_DATE": DAY, "COMPARE_URI": str(tmp_path / "prod"),
               "COMPARE_KEYS": "accommodation_id,usp", "COMPARE_MAX_CHANGED_SHARE": "0.1"}  # fmt: skip
    run = Run(environ, Workspace(tmp_path / "work"), *[NotebookUser(os.getuid(), os.getgid())] * 2)
    run.config = config.load(environ)

    with caplog.at_level("INFO", logger="runner"):
        run.compare_with_production(usp(PRODUCTION[1:]))

    assert "comparison: crossed: changed_share 25.0% > limit 10.0%" in caplog.messages
    facts = outcome.manifest(run.facts(), outcome.succeeded("published"), "", "")
    stored = json.loads(run.report_files(facts, run.config.run_reports)[compare.FILE])
    assert stored == {**run.comparison, "summary": compare.summary_lines(run.comparison)}
    assert (stored["comparison"], stored["removed"]) == (1, 1)
    assert facts["comparison"] == compare.figures(stored)
    assert facts["comparison"]["crossed"] == [{"figure": "changed_share", "value": 0.25, "limit": 0.1}]


def test_a_run_without_compare_uri_records_no_comparison(project: dict, tmp_path: Path) -> None:
    run = Run(project, Workspace(tmp_path / "work"), *[NotebookUser(os.getuid(), os.getgid())] * 2)
    run.config = config.load(project)

    run.compare_with_production(usp(PRODUCTION))

    facts = outcome.manifest(run.facts(), outcome.succeeded("published"), "", "")
    assert run.comparison is None and compare.FILE not in run.report_files(facts, run.config.run_reports)
    assert facts["comparison"] is None


def test_a_column_named_to_forge_lines_in_a_mail_or_a_terminal_is_printed_escaped() -> None:
    """The candidate's notebook names its columns: the summary lines reach the promotion and approval mails
    and `make versions`, so a newline or an escape sequence in a name stays one escaped line."""
    forged = "x\nApprove: make approve GITHUB_REPO=evil/model\x1b[2J"
    candidate = usp(PRODUCTION).append_column(forged, pa.array([1, 2, 3, 4], pa.int64()))

    lines = compare.summary_lines(compared(candidate, limit=0.1))

    assert all(line.isprintable() for line in lines)
    assert not [line for line in lines if line.startswith("Approve:")]
    assert any("x\\nApprove: make approve GITHUB_REPO=evil/model\\x1b[2J" in line for line in lines), lines


def test_nested_columns_whose_values_no_figure_compares_cross_a_limit() -> None:
    """A list column rewritten in every row changes no row figure (rows group by flat columns only): with a
    limit, such a column is a crossed figure of its own, never a silent pass."""
    production = usp(PRODUCTION).append_column("tags", pa.array([["a"]] * 4, pa.list_(pa.string())))
    candidate = usp(PRODUCTION).append_column("tags", pa.array([["rewritten"]] * 4, pa.list_(pa.string())))

    result = compared(candidate, limit=0.1, production=production)

    assert (result["changed_share"], result["uncompared"]) == (0.0, ["tags"])
    assert result["crossed"] == [{"figure": "uncompared_columns", "value": 1, "limit": 0}]
    assert compared(candidate, production=production)["crossed"] == []  # no limit, no crossing


def test_the_share_is_held_to_its_limit_unrounded() -> None:
    """10 004 rows moved of 100 000 is 10.004%: stored as 0.1 (4 decimals), and still past a 0.1 limit."""
    found = {"rows": {"production": 100_000, "candidate": 100_000}, "added": 0, "removed": 10_004,
             "changed": 0, "changed_share": 0.1}  # fmt: skip

    assert compare.crossed(found, 0.1) == [{"figure": "changed_share", "value": 0.1, "limit": 0.1}]
    assert compare.crossed({**found, "removed": 10_000}, 0.1) == []
