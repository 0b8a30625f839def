"""README's configuration table (The runner contract > Configuration) against the runner's own declaration
of its variables, runner/config.py's SETTINGS, as test_runner_units.py holds README's exit table against
runner/exits.py: every variable the runner reads has its row, no row names one it does not, and a row's
default column holds the variable's default."""

from __future__ import annotations

import re

from support import REPO

from runner.config import SETTINGS

# Variables the table documents that the runner does not read itself, and who does.
NOT_THE_RUNNERS = {"AWS_ENDPOINT_URL": "the AWS SDKs (S3, SNS, Glue, EventBridge clients)"}


def readme_configuration_table() -> dict[str, str]:
    """Each variable the table names (a row may name several), and its row's default column."""
    section = (REPO / "README.md").read_text().split("### Configuration (environment variables)", 1)[1]
    rows = re.findall(
        r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| [^|]+ \| ([^|]+) \|$", section.split("\n\n###", 1)[0], re.M
    )
    table: dict[str, str] = {}
    for names, default in rows:
        for name in re.findall(r"`([A-Z_]+)`", names):
            assert name not in table, f"{name}: two rows"
            table[name] = default.strip()
    return table


def test_the_readme_configuration_table_names_exactly_the_runners_settings() -> None:
    table = readme_configuration_table()

    assert set(table) - set(NOT_THE_RUNNERS) == {setting.name for setting in SETTINGS}


def test_each_row_gives_the_runners_default() -> None:
    table = readme_configuration_table()

    for setting in SETTINGS:
        if setting.default:
            assert setting.default in table[setting.name], (
                setting.name,
                setting.default,
                table[setting.name],
            )
