"""template/pipeline.yaml read feature by feature: its parameter groups (the Interface's ParameterGroups,
the one list of the features) name the features in their order, and Parameters and Resources each hold
one region per feature, under a banner that names it (`  # --- <label> ----`), in that order. A region's
parameters are its group's; each resource is in one region, and each role, log group and alarm sits in the
region of a resource that uses it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from cfn import TEMPLATE, load, references

DOCUMENT = load()
TEXT = TEMPLATE.read_text()
GROUPS = DOCUMENT["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
FEATURES = [group["Label"]["default"] for group in GROUPS]
BANNER = re.compile(r"^  # ---")  # any comment of this shape is a banner, and must name a feature
KEY = re.compile(r"^  ([A-Za-z0-9]+):")
# Resources that sit beside what uses them: a role beside what assumes or passes it, a log group beside
# what writes it, an alarm beside what it watches.
BESIDE_THEIR_USERS = ("AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::CloudWatch::Alarm")


@dataclass
class Region:
    feature: str | None  # None: what comes before the section's first banner
    keys: list[str]
    lines: int


def regions(text: str, section: str) -> list[Region]:
    """A top-level section of the template's text (Parameters, Resources) cut at its banners."""
    lines = text.split("\n")
    start = lines.index(f"{section}:") + 1
    end = next((n for n in range(start, len(lines)) if re.match(r"^[A-Za-z]", lines[n])), len(lines))
    found = [Region(None, [], 0)]
    for line in lines[start:end]:
        if BANNER.match(line):
            found.append(Region(line[len("  # ---") :].strip(" -"), [], 0))
        elif key := KEY.match(line):
            found[-1].keys.append(key.group(1))
        found[-1].lines += 1
    return found if found[0].keys else found[1:]


def users(resources: dict[str, Any], name: str) -> set[str]:
    """What uses a resource: for an alarm, what it watches (its dimensions' resources, or else what its
    description names); for anything else, the resources that refer to it."""
    resource = resources[name]
    if resource["Type"] == "AWS::CloudWatch::Alarm":
        watched = references(resource["Properties"]["Dimensions"]) & set(resources)
        return watched or references(resource["Properties"].get("AlarmDescription")) & set(resources)
    return {other for other, r in resources.items() if other != name and name in references(r)}


def misplaced(text: str, document: dict[str, Any]) -> list[str]:
    """Each role, log group and alarm that sits in no region of a resource that uses it."""
    resources = document["Resources"]
    region_of = {key: r.feature for r in regions(text, "Resources") for key in r.keys}
    return [
        f"{name} ({region_of[name]}) is used only in {sorted({region_of[u] for u in used})}"
        for name, resource in resources.items()
        if resource["Type"] in BESIDE_THEIR_USERS
        and (used := users(resources, name))
        and region_of[name] not in {region_of[u] for u in used}
    ]


@pytest.mark.parametrize("section", ["Parameters", "Resources"])
def test_each_section_has_one_region_per_feature_in_the_parameter_groups_order(section: str) -> None:
    """Every banner names a feature, none repeats, none is missing, nothing comes before the first."""
    assert [r.feature for r in regions(TEXT, section)] == FEATURES


def test_the_parameters_of_each_region_are_its_group_in_order() -> None:
    by_feature = {r.feature: r.keys for r in regions(TEXT, "Parameters")}

    for group in GROUPS:
        assert by_feature[group["Label"]["default"]] == group["Parameters"], group["Label"]["default"]


def test_each_resource_is_in_exactly_one_region() -> None:
    """Every resource CloudFormation reads is under one banner, once (YAML keeps the last of a repeated
    key: the text would show it twice)."""
    placed = [key for r in regions(TEXT, "Resources") for key in r.keys]

    assert sorted(placed) == sorted(DOCUMENT["Resources"])


def test_roles_log_groups_and_alarms_sit_beside_what_uses_them() -> None:
    assert misplaced(TEXT, DOCUMENT) == []


def test_the_layout_rules_see_a_misplaced_resource_and_a_stray_banner() -> None:
    """The rules above, on the template with a role moved to the end and a banner that names no feature."""
    lines = TEXT.split("\n")
    start = lines.index("  PromoteRole:")
    end = next(n for n in range(start + 1, len(lines)) if KEY.match(lines[n]) or BANNER.match(lines[n]))
    while not lines[end - 1].strip() or lines[end - 1].startswith("  #"):
        end -= 1
    role = lines[start:end]
    outputs = lines.index("Outputs:")
    moved = [*lines[:start], *lines[end:outputs], *role, "", "  # --- Odds and ends ---", *lines[outputs:]]
    text = "\n".join(moved)

    assert misplaced(text, DOCUMENT) == [
        "PromoteRole (Consumers) is used only in ['Validation and promotion']"
    ]
    assert [r.feature for r in regions(text, "Resources")] == [*FEATURES, "Odds and ends"]
