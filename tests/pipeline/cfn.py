"""The pipeline template and buildspecs, loaded for the tests (short tags such as !Ref kept as Fn:: maps)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from support import REPO

TEMPLATE = REPO / "template" / "pipeline.yaml"
BUILDSPEC_FILES = {"BuildProject": REPO / "buildspec.yml"}  # the build's is the repository's
PROJECTS = (
    "BuildProject",
    "ValidateProject",
)  # the validation's is in the template: the repository cannot change it


def buildspec_text(project: str) -> str:
    """A CodeBuild project's buildspec, from the repository or written in the template."""
    if project in BUILDSPEC_FILES:
        return BUILDSPEC_FILES[project].read_text()
    return load()["Resources"][project]["Properties"]["Source"]["BuildSpec"]


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's !Ref, !Sub, !GetAtt ... as their long forms."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 -- a SafeLoader subclass


def resolve(value: Any, values: dict[str, Any]) -> Any:
    """Ref, Fn::Join and Fn::Sub evaluated as CloudFormation would, given the values of the names they
    use (a name without one stays as it is written); other maps and lists are resolved member by member."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return values.get(value["Ref"], f"<{value['Ref']}>")
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, items = value["Fn::Join"]
        return separator.join(resolve(items, values))
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        name = ".".join(value["Fn::GetAtt"])
        return values.get(name, f"<{name}>")
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        text, local = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        names = {**values, **{k: resolve(v, values) for k, v in local.items()}}

        def substitute(m: re.Match[str]) -> str:
            if m.group(1).startswith("!"):  # ${!Literal} is written as ${Literal}
                return "${" + m.group(1)[1:] + "}"
            return str(names.get(m.group(1), m.group(0)))

        return re.sub(r"\$\{(![^}]+|[A-Za-z0-9:.]+)\}", substitute, text)
    if isinstance(value, dict):
        return {k: resolve(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    return value


def statements(resources: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    """A role's policy statements, inline or in AWS::IAM::Policy resources attached to it, by Sid (by policy
    and position where a statement has none)."""
    found = {}
    attached = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
    ]  # fmt: skip
    for policy in resources[role]["Properties"]["Policies"] + attached:
        for n, statement in enumerate(policy["PolicyDocument"]["Statement"]):
            found[statement.get("Sid", f"{policy['PolicyName']}-{n}")] = statement
    return found


def actions(statement: dict[str, Any]) -> set[str]:
    """A statement's Action, one or a list, as a set."""
    listed = statement["Action"]
    return {listed} if isinstance(listed, str) else set(listed)


def granted(resources: dict[str, Any], role: str) -> set[str]:
    """Every action a role's inline policies allow."""
    return set().union(*(actions(s) for s in statements(resources, role).values()))
