"""A candidate against production through the image: a first run publishes production's table, then a
changed notebook's run compares its checked rows with it (COMPARE_URI) before publishing elsewhere; the
comparison is in the report and the manifest, and production's folder is left byte for byte as it was."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from support import REPO, SAMPLE_DATE, SAMPLE_LAKE, docker_run, manifest, output_table, run_dirs, writable_dir

pytestmark = pytest.mark.docker

# Before the notebook writes its output: 500 of the sample's 3000 rows dropped, 10 of the rest given
# another destination.
DROP_AND_CHANGE = """
usp_destinations = usp_destinations.slice(0, 2500)
moved = [999_999] * 10 + usp_destinations.column("destination_id").to_pylist()[10:]
usp_destinations = usp_destinations.set_column(3, "destination_id", pa.array(moved, pa.int64()))
"""


def changed_notebook(folder: Path) -> Path:
    """usp.ipynb with DROP_AND_CHANGE as a cell before its last (the one that writes the output)."""
    nb = nbformat.read(REPO / "usp.ipynb", as_version=4)
    nb.cells.insert(len(nb.cells) - 1, nbformat.v4.new_code_cell(DROP_AND_CHANGE))
    folder.mkdir()
    nbformat.write(nb, folder / "usp.ipynb")
    return folder


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_a_candidate_is_compared_with_production_before_it_publishes_and_production_is_untouched(
    runner_image: str, tmp_path: Path
) -> None:
    production = writable_dir(tmp_path / "production")
    lake = {SAMPLE_LAKE: "/data/lake:ro"}
    base = {"DATA_URI": "/data/lake", "RUN_DATE": SAMPLE_DATE}
    first = docker_run(
        runner_image, {**base, "OUTPUT_URI": "/production"}, {**lake, production: "/production"}
    )
    assert first.code == 0, first.stderr[-3000:]
    before = tree(production)
    snapshot = output_table(production, "/production").current_snapshot().snapshot_id

    candidate = writable_dir(tmp_path / "candidate")
    notebook = changed_notebook(tmp_path / "nb")
    env = {**base, "OUTPUT_URI": "/candidate", "TABLE_CATALOG": "none", "NOTEBOOK": "/nb/usp.ipynb",
           "COMPARE_URI": "/production", "COMPARE_KEYS": "accommodation_id,usp",
           "COMPARE_MAX_CHANGED_SHARE": "0.1"}  # fmt: skip
    volumes = {**lake, production: "/production", candidate: "/candidate", notebook: "/nb:ro"}
    second = docker_run(runner_image, env, volumes)

    assert second.code == 0, second.stderr[-3000:]
    assert tree(production) == before  # nothing written, created or touched in production's folder
    (run,) = run_dirs(candidate)
    comparison = json.loads((run / "comparison.json").read_text())
    assert comparison["production"] == {
        "table": "notebooks.usp",
        "uri": "/production",
        "snapshot_id": snapshot,
    }
    assert comparison["rows"] == {"production": 3000, "candidate": 2500}
    assert (comparison["compared_by"], comparison["added"], comparison["removed"]) == ("keys", 0, 500)
    assert (comparison["changed"], comparison["changed_share"]) == (10, 0.17)
    assert comparison["crossed"] == [{"figure": "changed_share", "value": 0.17, "limit": 0.1}]
    assert comparison["schema"] == {"added": [], "removed": [], "type_changed": []}
    facts = manifest(candidate)
    assert (facts["status"], facts["rows"]) == ("succeeded", 2500)
    assert facts["comparison"] == {
        "rows": {"production": 3000, "candidate": 2500}, "added": 0, "removed": 500, "changed": 10,
        "changed_share": 0.17, "crossed": comparison["crossed"], "note": None, "error": None,
    }  # fmt: skip
    assert (
        "[runner] comparison: rows: 3000 in production, 2500 in the candidate; by key (accommodation_id, "
        "usp): 0 added, 500 removed, 10 changed (17.0% of production's rows)" in second.stderr
    )
    assert "[runner] comparison: crossed: changed_share 17.0% > limit 10.0%" in second.stderr
