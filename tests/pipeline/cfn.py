"""The pipeline template and buildspecs, loaded for the tests (short tags such as !Ref kept as Fn:: maps)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

# Not support's REPO: tests/support.py may import this module (a cycle otherwise).
REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template" / "pipeline.yaml"
# The buildspecs are the template's: no model decides them.
PROJECTS = ("BuildProject", "ValidateProject", "PromoteProject")


def buildspec_text(project: str) -> str:
    """A CodeBuild project's buildspec, written in the template."""
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
    """Ref, Fn::Join, Fn::Split, Fn::Select, Fn::If and Fn::Sub evaluated as CloudFormation would, given
    the values of the names they use (a name without one stays as it is written; Fn::If's conditions read
    the template's parameter defaults under them); other maps and lists are resolved member by member."""
    value = choose(value, values)
    if isinstance(value, dict) and set(value) == {"Fn::Split"}:
        separator, text = value["Fn::Split"]
        return str(resolve(text, values)).split(separator)
    if isinstance(value, dict) and set(value) == {"Fn::Select"}:
        index, items = value["Fn::Select"]
        return resolve(items, values)[int(index)]
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return values.get(value["Ref"], f"<{value['Ref']}>")
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, items = value["Fn::Join"]
        return separator.join(resolve(items, values))
    if isinstance(value, dict) and set(value) == {"Fn::ImportValue"}:  # the platform stack's export
        name = str(resolve(value["Fn::ImportValue"], values))
        return values.get(f"Export:{name}", f"<Export:{name}>")
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


NO_VALUE = {"Ref": "AWS::NoValue"}


@functools.cache
def _template() -> dict[str, Any]:
    """The template as read once, for its parameters' defaults and its conditions (never changed)."""
    return load()


def defaults() -> dict[str, Any]:
    """The template's parameters at their defaults (every data source off)."""
    return {name: p["Default"] for name, p in _template()["Parameters"].items() if "Default" in p}


def condition(name: str, values: dict[str, Any]) -> bool:
    """A condition of the template's, given the parameter values (defaults for those not given)."""
    return holds(_template()["Conditions"][name], {**defaults(), **values})


def holds(expression: dict[str, Any], values: dict[str, Any]) -> bool:
    ((function, arguments),) = expression.items()
    if function in ("Condition", "Fn::Condition"):  # !Condition, as this loader reads it
        return condition(arguments, values)
    if function == "Fn::Equals":
        left, right = (str(resolve(a, values)) for a in arguments)
        return left == right
    if function == "Fn::Not":
        return not holds(arguments[0], values)
    if function == "Fn::And":
        return all(holds(a, values) for a in arguments)
    if function == "Fn::Or":
        return any(holds(a, values) for a in arguments)
    raise AssertionError(f"cfn.py does not evaluate {function} in a condition")


def choose(value: Any, values: dict[str, Any]) -> Any:
    """Fn::If decided and AWS::NoValue dropped, as CloudFormation does; every other function left as is."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        name, when_true, when_false = value["Fn::If"]
        return choose(when_true if condition(name, values) else when_false, values)
    if isinstance(value, dict):
        chosen = {k: choose(v, values) for k, v in value.items()}
        return {k: v for k, v in chosen.items() if v != NO_VALUE}
    if isinstance(value, list):
        return [c for c in (choose(v, values) for v in value) if c != NO_VALUE]
    return value


def exists(resource: dict[str, Any], values: dict[str, Any]) -> bool:
    return "Condition" not in resource or condition(resource["Condition"], values)


def statements(
    resources: dict[str, Any], role: str, values: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """A role's policy statements, inline or in AWS::IAM::Policy resources attached to it, by Sid (by policy
    and position where a statement has none), for the parameter values given (the defaults otherwise):
    a conditional policy only when its condition holds, each Fn::If decided."""
    values = values or {}
    found = {}
    attached = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and exists(r, values)
        and {"Ref": role} in choose(r["Properties"]["Roles"], values)
    ]  # fmt: skip
    for policy in resources[role]["Properties"]["Policies"] + attached:
        for n, statement in enumerate(choose(policy["PolicyDocument"]["Statement"], values)):
            found[statement.get("Sid", f"{policy['PolicyName']}-{n}")] = statement
    return found


def mailer_role(resources: dict[str, Any], mailer: str, rule: str) -> dict[str, dict[str, Any]]:
    """Asserts that a Step Functions mailer may publish to the alert topic only (encrypting with its key)
    and is started by `rule` alone, through a role that may start it and nothing else; returns the
    statements of the mailer's own role, by Sid, for its other grants."""
    (target,) = resources[rule]["Properties"]["Targets"]
    invoke_role = target["RoleArn"]["Fn::GetAtt"][0]
    role = resources[mailer]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    granted = statements(resources, role)
    (invoke,) = statements(resources, invoke_role).values()

    assert (granted["Mail"]["Action"], granted["Mail"]["Resource"]) == ("sns:Publish", {"Ref": "AlertTopic"})
    assert granted["EncryptMail"]["Resource"] == {"Fn::GetAtt": ["AlertKey", "Arn"]}
    assert target["Arn"] == {"Ref": mailer}
    assert (invoke["Action"], invoke["Resource"]) == ("states:StartExecution", {"Ref": mailer})
    return granted


def actions(statement: dict[str, Any]) -> set[str]:
    """A statement's Action, one or a list, as a set (none for a NotAction statement's)."""
    listed = statement.get("Action", [])
    return {listed} if isinstance(listed, str) else set(listed)


def granted(resources: dict[str, Any], role: str, values: dict[str, Any] | None = None) -> set[str]:
    """Every action a role's policies allow (for the parameter values given, the defaults otherwise); its
    Deny statements grant nothing."""
    allowed = [s for s in statements(resources, role, values).values() if s["Effect"] == "Allow"]
    return set().union(*(actions(s) for s in allowed))


def failed_rules(values: dict[str, Any]) -> list[str]:
    """The template's Rules CloudFormation fails for these parameter values (the rest at their defaults)."""
    given = {**defaults(), **values}
    return [
        name
        for name, rule in _template()["Rules"].items()
        if holds(rule.get("RuleCondition", {"Fn::Equals": ["", ""]}), given)
        and not all(holds(a["Assert"], given) for a in rule["Assertions"])
    ]


# --- the containers' capabilities ----------------------------------------------------------------------

TASK_DEFINITIONS = ("TaskDefinition", "ValidationTaskDefinition")


def capabilities(definition: str = "TaskDefinition") -> dict[str, list[str]]:
    """A task definition's container's LinuxParameters.Capabilities, {"Drop": [...]} (and "Add" if any)."""
    (container,) = _template()["Resources"][definition]["Properties"]["ContainerDefinitions"]
    return container.get("LinuxParameters", {}).get("Capabilities", {})


def dropped_capabilities(definition: str = "TaskDefinition") -> list[str]:
    """The capabilities a task definition (the daily run's, or ValidationTaskDefinition) drops from Docker's
    default set, as the template lists them (CHOWN, DAC_OVERRIDE, ...: ECS's names, without CAP_)."""
    return list(capabilities(definition).get("Drop", []))


def docker_capability_options(definition: str = "TaskDefinition") -> list[str]:
    """`docker run` options that give a container the capabilities the task definition gives it on Fargate:
    --cap-drop for each it drops, --cap-add for each it adds (as the harness's Fargate stand-in does)."""
    listed = capabilities(definition)
    drops = [option for name in listed.get("Drop", []) for option in ("--cap-drop", name)]
    return drops + [option for name in listed.get("Add", []) for option in ("--cap-add", name)]


def references(value: Any) -> set[str]:
    """The logical names a piece of the template refers to: Ref, Fn::GetAtt, and ${Name} in Fn::Sub."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return {value["Ref"]}
        if set(value) == {"Fn::GetAtt"}:
            return {value["Fn::GetAtt"][0]}
        if set(value) == {"Fn::Sub"}:
            text, local = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
            named = {m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z0-9.:]+)\}", text)} - set(local)
            return named | references(local)
        return set().union(*(references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()
