"""The validation's prefix apart from the daily runs' (OutputPrefix: the production table's data/ and
metadata/, and the _runs/ reports). The validation runs unvalidated images, holding ValidationTaskRole:
ValidationPrefix may not equal, contain or lie inside OutputPrefix.

The template says so once: its rule ValidationNeverWhereConsumersRead (the equal pair, before any resource:
a rule cannot split a value) and its condition ValidationPrefixOverlapsOutputPrefix (folder by folder), which
takes the validation's grants under ValidationPrefix away; its Deny keeps the validation's roles out of
OutputPrefix whatever the prefixes. Both are evaluated here over a table of prefix pairs twice: by the
tests' reading of CloudFormation (cfn.py) and by scripts/constraints.py, which `make deploy` evaluates
(scripts/settings.py, in process here) before any AWS call."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cfn
import iam
import pytest
from deploying import GOOD, constraints, merged, refused
from test_runs import PARAMETERS, RESOURCES, VALUES

STACK_VALUES = {**cfn.defaults(), **VALUES, "ValidationTaskRole.Arn": "arn:aws:iam::123456789012:role/v"}
OUTPUT = "arn:aws:s3:::hotel-out"
COMMIT = "4c0ffee0d15e" * 3 + "abcd"

# (ValidationPrefix, OutputPrefix): how the one lies to the other; None where they lie apart.
PAIRS: dict[tuple[str, str], str | None] = {
    ("daily", "daily"): "is the same prefix as",
    ("usp/daily", "usp/daily"): "is the same prefix as",
    ("a/b/c/d/e/f", "a/b/c/d/e/f"): "is the same prefix as",  # six folders, the most either may have
    ("daily/validation", "daily"): "lies inside",
    ("usp/daily/ci", "usp/daily"): "lies inside",
    ("a/b/c/d/e/f", "a"): "lies inside",  # deeper nesting
    ("a/b/c/d/e/f", "a/b/c/d/e"): "lies inside",
    ("usp", "usp/daily"): "contains",
    ("a", "a/b/c/d/e/f"): "contains",
    ("a/b", "a/b/c/d"): "contains",
    ("validation", "daily"): None,
    ("usp/validation", "usp/daily"): None,  # siblings
    ("daily2", "daily"): None,  # siblings that share a string prefix, not a folder
    ("daily", "daily2"): None,
    ("usp/daily-validation", "usp/daily"): None,
    ("usp/daily", "usp/daily-output"): None,
    ("usp/dailyx/ci", "usp/daily"): None,
    ("a/b/c/d/e/f", "a/b/c/d/e/g"): None,  # apart at the last folder only
    ("a/b/c/d/e/g", "a/b/c/d/x"): None,
    ("x/b/c", "a/b/c"): None,  # apart at the first folder only
    ("Daily", "daily"): None,  # S3 keys and IAM compare case by case
    ("validation", "usp/validation"): None,
}
REFUSED = [pair for pair, relation in PAIRS.items() if relation]


def values(validation: str, output: str) -> dict[str, Any]:
    return {**STACK_VALUES, "ValidationPrefix": validation, "OutputPrefix": output}


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{v}|{o}" for v, o in PAIRS])
def test_the_template_refuses_exactly_the_pairs_where_one_prefix_holds_the_other(
    pair: tuple[str, str],
) -> None:
    validation, output = pair
    given = values(validation, output)
    overlaps = PAIRS[pair] is not None

    assert re.fullmatch(PARAMETERS["ValidationPrefix"]["AllowedPattern"], validation)
    assert re.fullmatch(PARAMETERS["OutputPrefix"]["AllowedPattern"], output)
    assert cfn.condition("ValidationPrefixOverlapsOutputPrefix", given) is overlaps
    assert cfn.condition("ValidationPrefixApartFromOutputPrefix", given) is not overlaps
    # the rule, before any resource: the equal pair (it cannot split a value to see a containment)
    assert cfn.failed_rules(given) == (["ValidationNeverWhereConsumersRead"] if validation == output else [])
    assert constraints.prefixes_refused(validation, output) is overlaps  # make deploy's reading of the same


def test_the_prefixes_have_at_most_six_folders_so_the_condition_compares_them_all() -> None:
    for name in ("ValidationPrefix", "OutputPrefix"):
        pattern = PARAMETERS[name]["AllowedPattern"]

        assert re.fullmatch(pattern, "a/b/c/d/e/f"), name
        assert not re.fullmatch(pattern, "a/b/c/d/e/f/g"), name
        assert "1 to 6 folders" in PARAMETERS[name]["ConstraintDescription"], name
    condition = cfn.load()["Conditions"]["ValidationPrefixOverlapsOutputPrefix"]["Fn::And"]
    assert len(condition) == 6  # one comparison a folder


def validation_statements(validation: str, output: str) -> list[dict[str, Any]]:
    """ValidationTaskRole's statements, resolved for these prefixes."""
    given = values(validation, output)
    return [cfn.resolve(s, given) for s in cfn.statements(RESOURCES, "ValidationTaskRole", given).values()]


def may(statements: list[dict[str, Any]], action: str, resource: str, **context: str) -> bool:
    """What IAM decides (the IAM proxy's evaluation, iam.py): an Allow matches and no Deny does."""
    return iam.allows(statements, iam.Check(action, resource, context), tags={})


# the production table's files and reports, under OutputPrefix
TABLE = [
    "data/date=2019-08-01/00000-0-evil.parquet", "metadata/00001-x.metadata.json",
    "_runs/date=2019-08-01/run/manifest.json",
]  # fmt: skip


@pytest.mark.parametrize("pair", REFUSED, ids=[f"{v}|{o}" for v, o in REFUSED])
def test_an_overlapping_validation_may_touch_nothing_of_the_production_tables(pair: tuple[str, str]) -> None:
    """A stack deployed with such a pair anyway (a console deploy: the rule catches only the equal pair) runs
    candidates that can neither write, read nor delete the table's files and reports, nor list them."""
    validation, output = pair
    granted = validation_statements(validation, output)

    for key in TABLE:
        for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
            assert not may(granted, action, f"{OUTPUT}/{output}/{key}"), (action, key)
    for prefix in (output, f"{output}/", f"{output}/data/"):
        assert not may(granted, "s3:ListBucket", OUTPUT, **{"s3:prefix": prefix}), prefix
    # and nowhere else in the bucket: its grants under ValidationPrefix are gone
    assert not may(granted, "s3:PutObject", f"{OUTPUT}/{validation}/{COMMIT}/data/x.parquet")


@pytest.mark.parametrize("pair", [p for p in PAIRS if not PAIRS[p]], ids=lambda p: f"{p[0]}|{p[1]}")
def test_a_validation_apart_from_the_output_writes_its_commits_folder_and_nothing_of_the_table(
    pair: tuple[str, str],
) -> None:
    validation, output = pair
    granted = validation_statements(validation, output)

    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert may(granted, action, f"{OUTPUT}/{validation}/{COMMIT}/data/date=2019-08-01/x.parquet"), action
    assert may(granted, "s3:ListBucket", OUTPUT, **{"s3:prefix": f"{validation}/{COMMIT}/"})
    for key in TABLE:
        assert not may(granted, "s3:PutObject", f"{OUTPUT}/{output}/{key}"), key
        assert not may(granted, "s3:DeleteObject", f"{OUTPUT}/{output}/{key}"), key
        # the candidate's runner compares its rows with the table's (data/, metadata/), never its reports
        assert may(granted, "s3:GetObject", f"{OUTPUT}/{output}/{key}") == (not key.startswith("_runs/")), key


def test_the_candidates_notebook_is_denied_the_output_prefix_too() -> None:
    given = values("validation", "usp/daily")
    on = {**given, "AthenaWorkGroup": "wg", "AthenaResultsBucket": "hotel-athena", "AthenaResultsPrefix": "r"}
    for parameters in (given, on):
        granted = [
            cfn.resolve(s, parameters)
            for s in cfn.statements(RESOURCES, "ValidationNotebookRole", parameters).values()
        ]
        assert not may(granted, "s3:PutObject", f"{OUTPUT}/usp/daily/data/x.parquet")


def test_a_stack_deployed_with_an_overlapping_pair_says_why_its_validations_fail() -> None:
    output = cfn.load()["Outputs"]["ValidationPrefixRefused"]

    assert output["Condition"] == "ValidationPrefixOverlapsOutputPrefix"
    assert cfn.resolve(output["Value"], values("usp", "usp/daily")) == (
        "ValidationPrefix usp overlaps OutputPrefix usp/daily"
    )


# --- make deploy refuses each such pair before any AWS call (settings.py, in process) ----------------------


def message(validation: str, relation: str, output: str, beside: str) -> str:
    return (
        f"{validation} {relation} {output}, where the daily runs publish the table (data/, metadata/) and "
        "its _runs/ reports: the validation runs images nobody validated yet and may never write there. Give "
        "validation.prefix (VALIDATION_PREFIX) a prefix beside output.prefix (OUTPUT_PREFIX), neither "
        f"inside the other, e.g. {beside} (the template's rule ValidationNeverWhereConsumersRead and "
        "condition ValidationPrefixOverlapsOutputPrefix)"
    )


def beside(output: str) -> str:
    """The prefix the message suggests: a sibling of the output's."""
    parent = output.rpartition("/")[0]
    return f"{parent}/validation" if parent else "validation"


@pytest.mark.parametrize("pair", REFUSED, ids=[f"{v}|{o}" for v, o in REFUSED])
def test_make_deploy_refuses_each_pair_given_as_variables(tmp_path: Path, pair: tuple[str, str]) -> None:
    validation, output = pair
    said = refused(tmp_path, **GOOD, VALIDATION_PREFIX=validation, OUTPUT_PREFIX=output)

    ours, theirs = f"VALIDATION_PREFIX={validation!r}", f"OUTPUT_PREFIX={output!r}"
    assert said == message(ours, PAIRS[pair], theirs, beside(output))


def test_make_deploy_refuses_such_a_pair_in_the_settings_file_naming_its_keys(tmp_path: Path) -> None:
    said = refused(tmp_path, "output: {prefix: usp/daily}\nvalidation: {prefix: usp/daily/ci}\n", **GOOD)

    ours, theirs = "validation.prefix='usp/daily/ci'", "output.prefix='usp/daily'"
    path = tmp_path / "model-settings.yml"
    assert said == f"{path}: " + message(ours, "lies inside", theirs, "usp/validation")


def test_make_deploy_checks_a_prefix_left_out_at_the_templates_default(tmp_path: Path) -> None:
    """A new stack takes the default; an update keeps the stack's own, which CloudFormation checks."""
    assert refused(tmp_path, **GOOD, VALIDATION_PREFIX="daily/ci") == message(
        "VALIDATION_PREFIX='daily/ci'", "lies inside",
        "output.prefix's default 'daily' (the template's OutputPrefix)", "validation",
    )  # fmt: skip


def test_a_variable_moving_the_output_away_from_the_files_validation_prefix_deploys(tmp_path: Path) -> None:
    text = "output: {prefix: usp/daily}\nvalidation: {prefix: usp/daily/ci}\n"
    passed = merged(tmp_path, text, **GOOD, OUTPUT_PREFIX="usp/published")

    assert (passed["OutputPrefix"], passed["ValidationPrefix"]) == ("usp/published", "usp/daily/ci")
