"""constraints.py -- what template/pipeline.yaml says of a deploy's values, for scripts/settings.py.

Each parameter's constraints (AllowedPattern, AllowedValues, MinValue/MaxValue), and the template's rules and
conditions evaluated as CloudFormation evaluates them, before any resource. Two things CloudFormation checks
only mid-deploy, or not at all, are held here beside the parameter they concern: the ids of a typed parameter
(List<AWS::EC2::Subnet::Id>: CloudFormation looks them up in the account) and that ScheduleTimezone names a
zone (its pattern admits any name; EventBridge Scheduler refuses an unknown one at the schedule's creation).
Nothing here makes an AWS call or knows the settings file: settings.py words the refusals.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "template" / "pipeline.yaml"


class _TemplateLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML with CloudFormation's short tags (!Ref, !Select ...) as their long forms ({"Ref": ...})."""


def _function(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _function)


@functools.cache
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_TemplateLoader)  # noqa: S506 -- a safe loader's subclass


def parameters() -> dict[str, dict[str, Any]]:
    return template()["Parameters"]


def default(name: str) -> str | None:
    """The parameter's Default as CloudFormation passes it (a text); None when it has none (required)."""
    parameter = parameters()[name]
    return str(parameter["Default"]) if "Default" in parameter else None


def pattern(name: str) -> str:
    """The parameter's AllowedPattern less its leading '^$|': the pattern of a value given (not empty)."""
    return parameters()[name]["AllowedPattern"].removeprefix("^$|")


def _time_zone(text: str) -> bool:
    try:
        zoneinfo.ZoneInfo(text)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):  # not found, a folder, or no key at all
        return False
    return True


# A typed parameter's ids, each as the account names them (CloudFormation checks them only mid-deploy).
IDS = {
    "List<AWS::EC2::Subnet::Id>": r"subnet-[0-9a-f]{8,17}",
    "List<AWS::EC2::SecurityGroup::Id>": r"sg-[0-9a-f]{8,17}",
}
# What a parameter's pattern admits and AWS refuses all the same.
MORE: dict[str, Callable[[str], bool]] = {"ScheduleTimezone": _time_zone}


def accepts(name: str, text: str) -> bool:
    """Whether the template takes text (not empty) as the parameter's value: its AllowedValues, else a
    Number's range (a whole number: MiB, not fractions), else its AllowedPattern; a typed list's ids one by
    one; and what MORE holds of it."""
    parameter = parameters()[name]
    if "AllowedValues" in parameter:
        taken = text in [str(value) for value in parameter["AllowedValues"]]
    elif parameter["Type"] == "Number":
        least, most = parameter.get("MinValue", float("-inf")), parameter.get("MaxValue", float("inf"))
        taken = re.fullmatch(r"-?[0-9]+", text) is not None and least <= int(text) <= most
    elif parameter["Type"] in IDS:
        taken = all(re.fullmatch(IDS[parameter["Type"]], item) for item in text.split(","))
    else:
        taken = re.fullmatch(parameter.get("AllowedPattern", ".*"), text) is not None
    return taken and MORE.get(name, bool)(text)


def constraint(name: str) -> str:
    """The parameter's ConstraintDescription, as a message quotes it: 'must be ...' without its full stop."""
    return parameters()[name]["ConstraintDescription"].rstrip(".")


def evaluate(expression: Any, values: Mapping[str, str]) -> Any:
    """One of the template's rule or condition expressions, for these parameter values, as CloudFormation
    evaluates it: Ref, Fn::Join, Fn::Split, Fn::Select, Fn::Equals, Fn::Not, Fn::And, Fn::Or and Condition
    (another of its conditions). Anything else is no expression make deploy evaluates: it stops."""
    if not isinstance(expression, dict):
        return [evaluate(item, values) for item in expression] if isinstance(expression, list) else expression
    ((function, arguments),) = expression.items()
    if function == "Ref":
        return values[arguments]
    if function in ("Condition", "Fn::Condition"):
        return evaluate(template()["Conditions"][arguments], values)
    if function == "Fn::Join":
        return arguments[0].join(evaluate(arguments[1], values))
    if function == "Fn::Split":
        return str(evaluate(arguments[1], values)).split(arguments[0])
    if function == "Fn::Select":
        return evaluate(arguments[1], values)[int(arguments[0])]
    if function == "Fn::Equals":
        left, right = (str(evaluate(argument, values)) for argument in arguments)
        return left == right
    if function == "Fn::Not":
        return not evaluate(arguments[0], values)
    if function == "Fn::And":
        return all(evaluate(argument, values) for argument in arguments)
    if function == "Fn::Or":
        return any(evaluate(argument, values) for argument in arguments)
    raise AssertionError(f"constraints.py does not evaluate {function} (template/pipeline.yaml)")


def references(expression: Any) -> set[str]:
    """The parameters an expression of the template reads (its Refs)."""
    if isinstance(expression, dict) and "Ref" in expression:
        return {expression["Ref"]}
    items = expression.values() if isinstance(expression, dict) else expression
    return set().union(*map(references, items)) if isinstance(expression, dict | list) else set()


def broken(rule: str, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The assertions of the template's rule that these values break (none when its RuleCondition does not
    hold): CloudFormation refuses the deploy with each one's AssertDescription, before any resource."""
    found = template()["Rules"][rule]
    if not evaluate(found.get("RuleCondition", True), values):
        return []
    return [assertion for assertion in found["Assertions"] if not evaluate(assertion["Assert"], values)]


# The template's rule and condition that keep the validation (unvalidated images) out of OutputPrefix.
PREFIX_RULE = "ValidationNeverWhereConsumersRead"
PREFIX_CONDITION = "ValidationPrefixOverlapsOutputPrefix"


def prefixes_refused(validation: str, output: str) -> bool:
    """Whether the template refuses ValidationPrefix=validation beside OutputPrefix=output: its rule (the
    equal pair, before any resource) or its condition (one the same as, holding or inside the other)."""
    values = {"ValidationPrefix": validation, "OutputPrefix": output}
    return bool(broken(PREFIX_RULE, values)) or evaluate(template()["Conditions"][PREFIX_CONDITION], values)
