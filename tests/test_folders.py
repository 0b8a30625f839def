"""The output location's folder names are catalog.py's (FOLDERS, REPORTS, LOCAL_CATALOG): every other file
that names one (the template's grants and links, the scripts, the Makefile) names the same. In process."""

from __future__ import annotations

import re
from pathlib import Path

from runner.catalog import FOLDERS, LOCAL_CATALOG, REPORTS

ROOT = Path(__file__).resolve().parents[1]
OTHERS = [ROOT / "Makefile", ROOT / "run_notebook.sh", *sorted((ROOT / "scripts").glob("*.sh")),
          *sorted((ROOT / "scripts").glob("*.py")), *sorted((ROOT / "template").glob("*.yaml"))]  # fmt: skip
# A folder of the output location's own: a name starting with '_' and ending with '/' (_runs/, _catalog/).
OWN_FOLDER = re.compile(r"(?<![\w$])(_[a-z]+)/")


def test_every_underscore_folder_named_outside_the_runner_is_one_of_the_runners() -> None:
    named = {m.group(1): path.name for path in OTHERS for m in OWN_FOLDER.finditer(path.read_text())}
    assert set(named) <= {REPORTS, LOCAL_CATALOG.split("/")[0]}, named
    assert REPORTS in named, "the scripts name the reports' folder: the test would no longer see a rename"


def test_the_run_role_writes_the_tables_folders_and_the_reports_and_no_other() -> None:
    template = (ROOT / "template" / "pipeline.yaml").read_text()
    granted = set(re.findall(r"\$\{OutputPrefix\}/([A-Za-z_]+)/\*", template))
    assert granted == {*FOLDERS, REPORTS}
