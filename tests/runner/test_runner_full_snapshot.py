"""The usp image on the team's full 2019-08-01 snapshot (where ../shared/data/challenge is present)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pyarrow.compute as pc
import pytest
from support import OUTPUT_COLUMNS, REPO, day_rows, docker_run, manifest, run_dirs, writable_dir

pytestmark = pytest.mark.docker


def test_full_snapshot_publishes_every_usp_row_with_its_destination(
    runner_image: str, full_lake: Path, out: Path
) -> None:
    run = docker_run(
        runner_image,
        {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": "2019-08-01"},
        {full_lake: "/data/lake:ro", out: "/output"},
    )

    assert run.code == 0, run.stderr
    table = day_rows(out)
    assert table.column_names == OUTPUT_COLUMNS
    assert table.num_rows == 416_927
    assert table.column("destination_id").null_count == 365_711  # what the data is, not a failure
    assert pc.count_distinct(table.column("usp")).as_py() == 63
    assert manifest(out)["rows"] == 416_927
    assert "destination_id null in 365,711 of 416,927 rows (87.7%)" in run.stderr
    assert "VALIDATION PASSED for 2019-08-01: 416,927 rows" in run.stderr


# The candidate: usp.ipynb without its most frequent USP kind, a cell before the one that writes the output.
DROP_ONE_KIND = """
kinds = usp_destinations["usp"].value_counts().to_pylist()
counted = sorted(kinds, key=lambda c: (-c["counts"], c["values"]))
usp_destinations = usp_destinations.filter(pc.not_equal(usp_destinations["usp"], counted[0]["values"]))
"""


def test_full_snapshot_a_candidate_dropping_one_usp_kind_shows_the_rows_removed_and_crosses_its_limit(
    runner_image: str, full_lake: Path, tmp_path: Path
) -> None:
    """Issue 18's comparison on the full snapshot: production is usp's run, the candidate usp without one USP
    kind; its comparison (comparison.json, with the report) counts exactly that kind's rows as removed, and a
    limit below that share is crossed, which is what stops its promotion (the promote project reads
    `crossed`: tests/pipeline/test_versions.py)."""
    production, candidate = writable_dir(tmp_path / "production"), writable_dir(tmp_path / "candidate")
    lake = {full_lake: "/data/lake:ro"}
    base = {"DATA_URI": "/data/lake", "RUN_DATE": "2019-08-01"}
    first = docker_run(
        runner_image, {**base, "OUTPUT_URI": "/production"}, {**lake, production: "/production"}
    )
    assert first.code == 0, first.stderr[-3000:]
    published = day_rows(production, mounted_at="/production")

    nb = nbformat.read(REPO / "usp.ipynb", as_version=4)
    nb.cells.insert(len(nb.cells) - 2, nbformat.v4.new_code_cell(DROP_ONE_KIND))
    notebook = tmp_path / "nb"
    notebook.mkdir()
    nbformat.write(nb, notebook / "usp.ipynb")
    env = {**base, "OUTPUT_URI": "/candidate", "TABLE_CATALOG": "none", "NOTEBOOK": "/nb/usp.ipynb",
           "COMPARE_URI": "/production", "COMPARE_KEYS": "accommodation_id,usp",
           "COMPARE_MAX_CHANGED_SHARE": "0.1"}  # fmt: skip
    second = docker_run(runner_image, env, {**lake, production: "/production", candidate: "/candidate",
                                            notebook: "/nb:ro"})  # fmt: skip

    assert second.code == 0, second.stderr[-3000:]
    (run,) = run_dirs(candidate)
    comparison = json.loads((run / "comparison.json").read_text())
    counted = published["usp"].value_counts().to_pylist()
    of_kind = sorted(counted, key=lambda c: (-c["counts"], c["values"]))[0]["counts"]  # the kind dropped
    assert of_kind > 0.1 * published.num_rows  # the change is larger than the limit
    assert comparison["rows"] == {"production": published.num_rows, "candidate": published.num_rows - of_kind}
    assert (comparison["compared_by"], comparison["added"], comparison["removed"], comparison["changed"]) == (
        "keys", 0, of_kind, 0,
    )  # fmt: skip
    assert comparison["crossed"] == [
        {"figure": "changed_share", "value": round(of_kind / published.num_rows, 4), "limit": 0.1}
    ]
    assert comparison["columns"]["usp"]["distinct"] == {"production": 63, "candidate": 62}
    assert any(f"0 added, {of_kind:,} removed" in line or f"0 added, {of_kind} removed" in line
               for line in comparison["summary"])  # fmt: skip
