"""The usp image on the team's full 2019-08-01 snapshot (where ../shared/data/challenge is present)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest
from support import OUTPUT_COLUMNS, day_rows, docker_run, manifest

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
