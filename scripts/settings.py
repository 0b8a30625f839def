"""settings.py -- read a model's settings file (settings.yml) for scripts/pipeline.sh deploy|plan.

    python -I scripts/settings.py SETTINGS_FILE [PLATFORM_FILE]

Prints one shell assignment per variable the file sets and the environment does not already set (a variable
given to make on the command line wins over the file), and PLATFORM_STACK_NAME, the platform file's stack,
for pipeline.sh to evaluate. Every value in the file is checked first, against the constraints
(AllowedPattern, AllowedValues, MinValue/MaxValue) of the template parameter it sets, read from
template/pipeline.yaml: a bad file stops with exit 2 and one line on stderr naming the key, the value and the
fix, before any AWS call. The validation's prefix and the output's are held apart by the template's own rule
and condition, and a stack's releases by its rule RELEASES_RULE, evaluated here as CloudFormation would. Then
every value the deploy passes (the variable's, else the file's, else the template's default) is held to the
platform's bounds, PLATFORM_FILE (default: the platform's platform.yml; scripts/bounds.py). A file describing
the model's environments is read as the one ENV chooses (scripts/environments.py). Nothing of the model's
checkout is imported or run: this file reads the settings file as YAML data only, and pipeline.sh runs it
isolated (-I) from the platform's folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import difflib
import functools
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

try:
    import yaml
except ImportError:  # pragma: no cover -- make deploy runs this with .venv's Python, which has PyYAML
    sys.stderr.write("pipeline: reading settings.yml needs PyYAML: run make deploy, or set SETTINGS_PYTHON\n")
    sys.exit(2)

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template" / "pipeline.yaml"
PLATFORM = ROOT / "platform.yml"
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # the platform's own code, whatever the current folder
import bounds  # noqa: E402 -- the platform's bounds, scripts/bounds.py
import environments  # noqa: E402 -- the model's environments, scripts/environments.py

from runner.redaction import NAME_PATTERN, reserved  # noqa: E402 -- the runner's own rule for a secret's name


@dataclass(frozen=True)
class Key:
    variable: str  # what pipeline.sh reads
    parameter: str  # the template parameter it sets
    kind: type  # str, int, float (a number or a text), list (of strings, comma-joined for pipeline.sh), dict


KEYS = {
    "notebook": Key("NOTEBOOK", "NotebookPath", str),
    "runner.major": Key("RUNNER_MAJOR", "RunnerMajorVersion", int),
    "runner.image": Key("RUNNER_PIN", "RunnerImage", str),
    "data_lake.bucket": Key("DATA_LAKE_BUCKET", "DataLakeBucket", str),
    "data_lake.prefix": Key("DATA_LAKE_PREFIX", "DataLakePrefix", str),
    "output.bucket": Key("OUTPUT_BUCKET", "OutputBucket", str),
    "output.prefix": Key("OUTPUT_PREFIX", "OutputPrefix", str),
    "output.database": Key("TABLE_DATABASE", "OutputDatabase", str),
    "output.table": Key("TABLE_NAME", "OutputTable", str),
    "output.keep_snapshot_days": Key("KEEP_SNAPSHOT_DAYS", "SnapshotRetentionDays", int),
    "consumers.scan_limit_bytes": Key("CONSUMER_SCAN_LIMIT_BYTES", "ConsumerScanLimitBytes", int),
    "validation.date": Key("VALIDATION_DATE", "ValidationDate", str),
    "validation.prefix": Key("VALIDATION_PREFIX", "ValidationPrefix", str),
    "promotion.compare_keys": Key("COMPARE_KEYS", "CompareKeyColumns", list),
    "promotion.max_changed_share": Key("MAX_CHANGED_SHARE", "MaxChangedShare", float),
    "promotion.approval": Key("RELEASE_APPROVAL", "ReleaseApproval", str),
    "schedule.expression": Key("SCHEDULE", "ScheduleExpression", str),
    "schedule.timezone": Key("SCHEDULE_TIMEZONE", "ScheduleTimezone", str),
    "run.cpu": Key("TASK_CPU", "TaskCpu", int),
    "run.memory": Key("TASK_MEMORY", "TaskMemory", int),
    "alerts.emails": Key("NOTIFICATION_EMAILS", "NotificationEmails", list),
    "network.subnets": Key("SUBNETS", "Subnets", list),
    "network.security_groups": Key("SECURITY_GROUPS", "SecurityGroups", list),
    "network.assign_public_ip": Key("ASSIGN_PUBLIC_IP", "AssignPublicIp", str),
    "github.branch": Key("GITHUB_BRANCH", "GitHubBranch", str),
    "github.connection_arn": Key("CONNECTION_ARN", "ConnectionArn", str),
    "releases.from_repository": Key("RELEASES_FROM_REPOSITORY", "ReleasesFromRepository", str),
    "releases.from_versions_bucket": Key("RELEASES_FROM_VERSIONS_BUCKET", "ReleasesFromVersionsBucket", str),
    "releases.to_accounts": Key("RELEASE_ACCOUNTS", "ReleaseAccountIds", list),
    "athena.workgroup": Key("ATHENA_WORKGROUP", "AthenaWorkGroup", str),
    "athena.results_bucket": Key("ATHENA_RESULTS_BUCKET", "AthenaResultsBucket", str),
    "athena.results_prefix": Key("ATHENA_RESULTS_PREFIX", "AthenaResultsPrefix", str),
    "glue.databases": Key("GLUE_DATABASES", "GlueDatabases", list),
    "opensearch.domains": Key("OPENSEARCH_DOMAIN_ARNS", "OpenSearchDomainArns", list),
    "secrets": Key("SECRET_ARNS", "SecretArns", dict),  # NAME: ARN; SECRET_NAMES holds the names
    "secret_kms_keys": Key("SECRET_KMS_KEY_ARNS", "SecretKmsKeyArns", list),
}
# The data sources: off unless set. pipeline.sh always passes them (an unset one turns its grant off, so that
# a source removed from the file loses its grant), and settings.py checks a value the environment gives too.
DATA_SOURCES = ("athena.workgroup", "athena.results_bucket", "athena.results_prefix", "glue.databases",
                "opensearch.domains", "secrets", "secret_kms_keys")  # fmt: skip
# Where a stack's releases come from (production: staging's records) and go to (staging: production's
# accounts): always passed too, so that one left out of the file is off.
RELEASES = ("releases.from_repository", "releases.from_versions_bucket", "releases.to_accounts")
# Checked here when a variable gives them too (pipeline.sh checks the others' variables itself).
CHECKED_VARIABLES = (*DATA_SOURCES, *RELEASES, "runner.major", "runner.image")
SECRET_NAMES = Key("SECRET_NAMES", "SecretNames", list)
SECTIONS = sorted({name.split(".")[0] for name in KEYS if "." in name})
EXAMPLES = {str: "'text'", int: "1024", float: "0.1", list: "[a, b]", dict: "{NAME: arn:...}"}


class Refused(Exception):
    """A bad settings file: the message names the key, the value and the fix."""


class RefusedVariable(Refused):
    """A bad variable (make's command line, or the environment): the message names it, not the file."""


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
def _template(template: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(template.read_text(), Loader=_TemplateLoader)  # noqa: S506 -- a safe loader's subclass


def template_parameters(template: Path = TEMPLATE) -> dict[str, dict[str, Any]]:
    return _template(template)["Parameters"]


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
        return evaluate(_template()["Conditions"][arguments], values)
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
    raise AssertionError(f"settings.py does not evaluate {function} (template/pipeline.yaml)")


# The template's rule and condition that keep the validation (unvalidated images) out of OutputPrefix.
PREFIX_RULE = "ValidationNeverWhereConsumersRead"
PREFIX_CONDITION = "ValidationPrefixOverlapsOutputPrefix"


def prefixes_refused(validation: str, output: str) -> bool:
    """Whether the template refuses ValidationPrefix=validation beside OutputPrefix=output: its rule (the
    equal pair, before any resource) or its condition (one the same as, holding or inside the other)."""
    values = {"ValidationPrefix": validation, "OutputPrefix": output}
    rule = _template()["Rules"][PREFIX_RULE]
    broken = not all(evaluate(assertion["Assert"], values) for assertion in rule["Assertions"])
    return broken or evaluate(_template()["Conditions"][PREFIX_CONDITION], values)


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"pipeline: {message}\n")
    sys.exit(2)


def unknown(name: str, known: list[str], prefix: str = "") -> Refused:
    """An unknown key, with the closest known one (a typo is never silently ignored); prefix: where the keys
    are in the file (environments.staging.), for the message."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    leaf = name.rsplit(".", 1)[-1]
    close = close or [k for k in KEYS if k.rsplit(".", 1)[-1] == leaf or k.split(".")[0] == leaf][:1]
    hint = f"did you mean {prefix}{close[0]}?" if close else f"the keys are {', '.join(known)}"
    return Refused(f"unknown key {prefix}{name}: {hint} (see the comments in settings.yml)")


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """The file's values by dotted key (data_lake.bucket), its shape checked against KEYS; prefix: where the
    document is in the file (an environment's: environments.staging.), for messages."""
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise Refused(
            f"the file is a YAML {type(document).__name__}, not a mapping of keys: write key: value lines, "
            f"e.g. notebook: usp.ipynb (the keys: {', '.join(sorted({k.split('.')[0] for k in KEYS}))})"
        )
    values = {}
    for top, value in document.items():
        top = str(top)
        if top in SECTIONS:
            names = sorted(k.split(".", 1)[1] for k in KEYS if k.startswith(f"{top}."))
            if not isinstance(value, dict):
                raise Refused(
                    f"{prefix}{top}={value!r} is not a mapping: write {top}: {{{': ..., '.join(names)}: ...}}"
                )
            for leaf, item in value.items():
                name = f"{top}.{leaf}"
                if name not in KEYS:
                    raise unknown(name, [f"{top}.{n}" for n in names], prefix)
                values[name] = item
        elif top in KEYS:
            values[top] = value
        else:
            raise unknown(top, sorted({k.split(".")[0] for k in KEYS}), prefix)
    return values


def as_text(name: str, key: Key, value: Any) -> str:
    """A value as pipeline.sh takes it, if it has the key's type."""
    given = f"{name}={value!r}"
    if value is None:
        raise Refused(f"{name} has no value: give it one (e.g. {EXAMPLES[key.kind]}), or remove the key")
    if key.kind is list:
        if not isinstance(value, list):
            raise Refused(f"{given} is not a list: write a YAML list, e.g. {name.split('.')[-1]}: [{value}]")
        if not all(isinstance(item, str) and item and "," not in item for item in value):
            raise Refused(f"{given}: each item must be one non-empty text without commas, e.g. [a, b]")
        return ",".join(value)
    if key.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Refused(
                f"{given} is not a whole number: write digits only, e.g. {name.split('.')[-1]}: 1024"
            )
        return str(value)
    if key.kind is float and not isinstance(value, str):  # a text ('' for none) is checked as it is
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Refused(f"{given} is not a number: write one, e.g. {name.split('.')[-1]}: 0.1")
        return format(decimal.Decimal(repr(value)), "f")  # as written: 0.1, not 0.1000000000000000055...
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()  # validation.date: 2019-08-01, unquoted, is a YAML date
    if not isinstance(value, str):
        kind = (
            "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else "number or flag"
        )
        raise Refused(
            f"{given} is a {kind}, not a text: write one value, quoted if need be, e.g. {name}: 'x'"
        )
    return value


def check(name: str, key: Key, text: str, parameter: dict[str, Any], fix: str = "") -> None:
    """The template parameter's own constraints; an empty value only where the parameter has a Default
    (pipeline.sh then keeps the stack's value; promotion's compare_keys and max_changed_share it passes, as
    none) or for a list (the network: the default VPC on creation)."""
    if text == "":
        if "Default" in parameter or key.kind is list:
            return
        refused = True
    elif "AllowedValues" in parameter:
        refused = text not in [str(v) for v in parameter["AllowedValues"]]
    elif parameter["Type"] == "Number":
        refused = not re.fullmatch(r"-?[0-9]+", text) or not (
            parameter["MinValue"] <= int(text) <= parameter["MaxValue"]
        )
    elif "AllowedPattern" in parameter:
        refused = re.fullmatch(parameter["AllowedPattern"], text) is None
    else:
        refused = False
    if refused:
        fix = fix or f"fix it in the file, or override it with {key.variable}=..."
        raise Refused(
            f"{name}={text!r} is not valid: it {parameter['ConstraintDescription'].rstrip('.')} "
            f"(the template's {key.parameter}): {fix}"
        )


def check_items(name: str, key: Key, text: str, parameter: dict[str, Any], fix: str = "") -> None:
    """A list's items one by one (the message names the bad one), then the list (its length)."""
    if key.kind is list:
        for item in text.split(",") if text else []:
            check(f"{name} item", key, item, parameter, fix)
    check(name, key, text, parameter, fix)


def secret_lists(name: str, value: Any, parameters: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """secrets (named so, or environments.<env>.secrets): {VARIABLE: ARN, ...} as SecretNames and SecretArns,
    in the same order."""
    if value is None:
        raise Refused(
            f"{name} has no value: give it one (e.g. {EXAMPLES[dict]}, or {{}} for none), or remove the key"
        )
    if value == []:
        return "", ""
    if not isinstance(value, dict):
        raise Refused(
            f"{name}={value!r} is not a mapping: write one VARIABLE: ARN line per secret, e.g. "
            f"{name}: {{HADOOP_PASSWORD: arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf}}"
        )
    for variable, arn in value.items():
        variable = str(variable)
        if not NAME_PATTERN.match(variable):
            raise Refused(
                f"{name}.{variable} is not a variable name: the notebook reads the secret from it, so use "
                "A-Z, 0-9 and '_', not starting with a digit, e.g. HADOOP_PASSWORD"
            )
        if reserved(variable):
            raise Refused(
                f"{name}.{variable} is a variable the runner, the AWS SDKs, the C library or Python read: "
                "give the secret another name, e.g. HADOOP_PASSWORD"
            )
        if not isinstance(arn, str) or not arn or "," in arn:  # one ARN: a comma would make two
            raise Refused(f"{name}.{variable}={arn!r} is not an ARN: give the secret's or parameter's ARN")
        check(f"{name}.{variable}", KEYS["secrets"], arn, parameters["SecretArns"])  # names the bad one
    return ",".join(str(v) for v in value), ",".join(value.values())


def assignments(path: Path, environment: Mapping[str, str]) -> list[str]:
    """The shell assignments of the file's variables that the environment does not set."""
    return read(path, environment)[0]


def read(path: Path, environment: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The shell assignments of the file's variables that the environment does not set, and the file's value
    of each variable, every one checked against the template."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise Refused(
            f"the file is not valid YAML{at}: {problem} (check its indentation and quoting)"
        ) from None
    parameters = template_parameters()
    env = environment.get("ENV", "")
    try:
        values, labels = environments.chosen(
            document, env, parameters["EnvironmentName"]["AllowedPattern"].removeprefix("^$|"), flatten,
            {name: str(parameters[KEYS[name].parameter]["Default"]) for name in PREFIXES}, display(path),
        )  # fmt: skip
    except environments.BadEnvironment as bad:
        raise (RefusedVariable if bad.from_variable else Refused)(str(bad)) from None
    lines = []
    from_file = {}
    for name, value in values.items():
        key, label = KEYS[name], labels.get(name, name)
        if key.kind is dict:
            names, arns = secret_lists(label, value, parameters)
            texts = {SECRET_NAMES: names, key: arns}
        else:
            texts = {key: as_text(label, key, value)}
        for each, text in texts.items():
            check_items(label, each, text, parameters[each.parameter])
            from_file[each.variable] = text
            if each.variable not in environment:
                lines.append(f"{each.variable}={shlex.quote(text)}")
    # A data source given on the command line is checked here too (pipeline.sh passes them as they are).
    for key in [KEYS[name] for name in CHECKED_VARIABLES] + [SECRET_NAMES]:
        if environment.get(key.variable):
            fix = f"fix the variable {key.variable} (make's command line or the environment), or leave it out"
            try:
                check_items(key.variable, key, environment[key.variable], parameters[key.parameter], fix)
            except Refused as refused:
                raise RefusedVariable(str(refused)) from None

    def effective(variable: str) -> str:
        """What the deploy passes: the variable's value if set, else the file's."""
        return environment.get(variable, from_file.get(variable, ""))

    # The names and ARNs deployed: one name for each ARN.
    names, arns = ([i for i in effective(v).split(",") if i] for v in ("SECRET_NAMES", "SECRET_ARNS"))
    if len(names) != len(arns):
        raise RefusedVariable(
            "SECRET_NAMES and SECRET_ARNS go together, one name for each ARN in the same order (SECRET_NAMES "
            f"has {len(names)}, SECRET_ARNS {len(arns)}): set both, or neither"
        )
    results, apart = effective("ATHENA_RESULTS_BUCKET"), ("OUTPUT_BUCKET", "DATA_LAKE_BUCKET")
    same = [variable for variable in apart if results and results == effective(variable)]
    if same:
        raise Refused(
            f"athena.results_bucket={results!r} is also {same[0]}: the notebook writes its query results, so "
            "they go to a bucket of their own, never where consumers read or the lake (the template's rule "
            "QueryResultsApartFromTheData)"
        )
    taken = sorted({n for n in names if reserved(n)} | {n for n in names if names.count(n) > 1})
    if taken and "SECRET_NAMES" in environment:  # the file's names were checked one by one above
        raise RefusedVariable(
            f"SECRET_NAMES names {', '.join(taken)}: a secret's variable must be new and its own, not one "
            "the runner, the AWS SDKs, the C library or Python read: rename it, e.g. HADOOP_PASSWORD"
        )
    check_prefixes(environment, from_file, parameters)
    try:
        environments.releases_from_staging(env, lambda name: effective(KEYS[name].variable))
    except environments.BadEnvironment as bad:
        raise Refused(str(bad)) from None
    check_rule(RELEASES_RULE, environment, from_file, labels, env)
    return lines, from_file


# The template's rule that a stack releasing from staging (production) names staging's records, holds no
# release for approval and shares no images of its own.
RELEASES_RULE = "ReleasesComeWithTheirRecords"
PREFIXES = ("output.prefix", "validation.prefix")  # compared between environments at the template's default


def check_rule(
    name: str,
    environment: Mapping[str, str],
    from_file: Mapping[str, str],
    labels: Mapping[str, str],
    env: str,
) -> None:
    """The template's rule, for the values the deploy passes (the variable's, else the file's, else the
    template's default), as CloudFormation evaluates it before any resource: each assertion, if the rule's
    RuleCondition holds. A broken one is refused with its AssertDescription, naming the keys it reads."""
    rule = _template()["Rules"][name]
    keys = {k.parameter: (n, k) for n, k in [*KEYS.items(), ("secrets", SECRET_NAMES)]}
    given = {p: environment.get(k.variable, from_file.get(k.variable, "")) for p, (_, k) in keys.items()}
    values = {p: given.get(p) or str(each.get("Default", "")) for p, each in template_parameters().items()}
    if not evaluate(rule.get("RuleCondition", True), values):
        return
    for assertion in rule["Assertions"]:
        if evaluate(assertion["Assert"], values):
            continue
        read = [keys[p] for p in sorted(references(assertion["Assert"])) if p in keys]
        shown = ", ".join(f"{labels.get(n, n)} ({k.variable})={values[k.parameter]!r}" for n, k in read)
        where = f"; environments.{env} may set its own" if env and not set(dict(read)) <= set(labels) else ""
        description = assertion["AssertDescription"].rstrip(".")
        refused = RefusedVariable if any(k.variable in environment for _, k in read) else Refused
        raise refused(f"{shown}: {description} (the template's rule {name}{where})")


def references(expression: Any) -> set[str]:
    """The parameters an expression of the template reads (its Refs)."""
    if isinstance(expression, dict) and "Ref" in expression:
        return {expression["Ref"]}
    items = expression.values() if isinstance(expression, dict) else expression
    return set().union(*map(references, items)) if isinstance(expression, dict | list) else set()


def deployed(name: str, environment: Mapping[str, str], from_file: Mapping[str, str]) -> bounds.Given | None:
    """What the deploy passes for the key: its variable's value, else the file's; an empty one is not passed,
    so a new stack takes the template's default (an update keeps the stack's, which was bounded when
    deployed). None for a value the template refuses: that check names it (pipeline.sh's, for a variable)."""
    key, parameter = KEYS[name], template_parameters()[KEYS[name].parameter]
    source: Literal["file", "variable", "default"] = "variable" if key.variable in environment else "file"
    text = environment[key.variable] if source == "variable" else from_file.get(key.variable, "")
    if not text and str(parameter.get("Default", "")):
        text, source = str(parameter["Default"]), "default"
    try:
        check_items(name, key, text, parameter)
    except Refused:
        return None
    return bounds.Given(name, key.variable, text, source, many=key.kind in (list, dict))


def within_bounds(
    platform: bounds.Platform, environment: Mapping[str, str], from_file: Mapping[str, str]
) -> None:
    """Every value the deploy passes within the platform's bounds: else Refused, naming the key and its
    variable, the value, the bound and the fix (RefusedVariable when a variable gave it)."""
    names = environment.get(SECRET_NAMES.variable, from_file.get(SECRET_NAMES.variable, ""))
    labels = tuple(f"secrets.{name} ({KEYS['secrets'].variable})" for name in names.split(",") if name)

    def given(name: str) -> bounds.Given | None:
        found = deployed(name, environment, from_file)
        if found is not None and name == "secrets":  # each ARN by its secret's name
            return dataclasses.replace(found, labels=labels)
        return found

    try:
        bounds.check(platform, given)
    except bounds.OutOfBounds as outside:
        raise (RefusedVariable if outside.from_variable else Refused)(str(outside)) from None


def check_prefixes(
    environment: Mapping[str, str], from_file: Mapping[str, str], parameters: dict[str, dict[str, Any]]
) -> None:
    """The validation's prefix apart from the output's, as the template's rule and condition decide, for the
    values the deploy passes (a variable, else the file's); one not given is checked at the template's
    default, which a new stack takes (an update keeps the stack's, which CloudFormation checks). A value its
    own pattern refuses is left to that check."""
    validation, output = KEYS["validation.prefix"], KEYS["output.prefix"]
    shown, given = {}, {}
    for name, key in (("validation.prefix", validation), ("output.prefix", output)):
        default = str(parameters[key.parameter]["Default"])
        passed = environment[key.variable] if key.variable in environment else from_file.get(key.variable, "")
        value = passed or default  # an empty one is not passed: the stack keeps its own
        if re.fullmatch(parameters[key.parameter]["AllowedPattern"], value) is None:
            return
        given[key] = value
        if environment.get(key.variable):
            shown[key] = f"{key.variable}={value!r}"
        elif passed:
            shown[key] = f"{name}={value!r}"
        else:
            shown[key] = f"{name}'s default {value!r} (the template's {key.parameter})"
    ours, theirs = given[validation], given[output]
    if not prefixes_refused(ours, theirs):
        return
    relation = (
        "is the same prefix as" if ours == theirs
        else "lies inside" if ours.startswith(f"{theirs}/")
        else "contains"
    )  # fmt: skip
    parent = theirs.rpartition("/")[0]
    beside = f"{parent}/validation" if parent else "validation"
    beside = f"{beside}-ci" if prefixes_refused(beside, theirs) else beside
    message = (
        f"{shown[validation]} {relation} {shown[output]}, where the daily runs publish the table (data/, "
        "metadata/) and its _runs/ reports: the validation runs images nobody validated yet and may never "
        f"write there. Give validation.prefix ({validation.variable}) a prefix beside output.prefix "
        f"({output.variable}), neither inside the other, e.g. {beside} (the template's rule {PREFIX_RULE} "
        f"and condition {PREFIX_CONDITION})"
    )
    if environment.get(validation.variable) or environment.get(output.variable):
        raise RefusedVariable(message)
    raise Refused(message)


def display(path: Path) -> str:
    """A path as messages name it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str]) -> None:
    if len(argv) not in (1, 2):
        fail("usage: settings.py SETTINGS_FILE [PLATFORM_FILE]")
    path, platform_path = Path(argv[0]), Path(argv[1] if len(argv) == 2 else PLATFORM)
    try:
        platform = bounds.load(platform_path, display(platform_path), template_parameters())
    except OSError as error:
        fail(
            f"PLATFORM_FILE={display(platform_path)} cannot be read: {error.strerror} "
            "(point PLATFORM_FILE at the platform's settings, such as its platform.yml)"
        )
    except bounds.BadPlatform as bad:
        fail(f"{display(platform_path)}: {bad}")
    try:
        lines, from_file = read(path, os.environ)
        within_bounds(platform, os.environ, from_file)
    except OSError as error:
        fail(
            f"SETTINGS_FILE={display(path)} cannot be read: {error.strerror} "
            "(point SETTINGS_FILE at a settings file)"
        )
    except RefusedVariable as refused:
        fail(str(refused))
    except Refused as refused:
        fail(f"{display(path)}: {refused}")
    print("\n".join([*lines, f"PLATFORM_STACK_NAME={shlex.quote(platform.stack)}"]))


if __name__ == "__main__":
    main(sys.argv[1:])
