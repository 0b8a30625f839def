"""settings_file.py -- a model's settings file (settings.yml) read as data, for scripts/settings.py.

KEYS names each key of the file, the variable that overrides it (make's command line, or the environment) and
the template parameter it sets. read() takes the file's values (of the environment ENV chooses, with
scripts/environments.py), each of the key's type and checked against its parameter's constraints
(scripts/constraints.py): a bad file is Refused, the message naming the key, the value and the fix. Nothing
of the file is run or imported: it is YAML data.
"""

from __future__ import annotations

import datetime
import decimal
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import constraints
import environments
import yaml

from runner.redaction import NAME_PATTERN, reserved  # the runner's own rule for a secret's name


@dataclass(frozen=True)
class Key:
    variable: str  # what overrides the file's value
    parameter: str  # the template parameter it sets
    kind: type  # str, int, float (a number or a text), list (of strings, comma-joined), dict (the secrets)
    # When the deploy passes it: always (one not given passes the template's default, so that a key left out
    # of the file is off), set (only a value: none keeps the stack's), given (even empty: the template
    # reads '' as none).
    passed: Literal["always", "set", "given"] = "set"


KEYS = {
    "notebook": Key("NOTEBOOK", "NotebookPath", str, "always"),
    "runner.major": Key("RUNNER_MAJOR", "RunnerMajorVersion", int),
    "runner.image": Key("RUNNER_PIN", "RunnerImage", str, "always"),
    "data_lake.bucket": Key("DATA_LAKE_BUCKET", "DataLakeBucket", str, "always"),
    "data_lake.prefix": Key("DATA_LAKE_PREFIX", "DataLakePrefix", str),
    "output.bucket": Key("OUTPUT_BUCKET", "OutputBucket", str, "always"),
    "output.prefix": Key("OUTPUT_PREFIX", "OutputPrefix", str),
    "output.database": Key("TABLE_DATABASE", "OutputDatabase", str),
    "output.table": Key("TABLE_NAME", "OutputTable", str),
    "output.keep_snapshot_days": Key("KEEP_SNAPSHOT_DAYS", "SnapshotRetentionDays", int),
    "consumers.scan_limit_bytes": Key("CONSUMER_SCAN_LIMIT_BYTES", "ConsumerScanLimitBytes", int),
    "validation.date": Key("VALIDATION_DATE", "ValidationDate", str),
    "validation.prefix": Key("VALIDATION_PREFIX", "ValidationPrefix", str),
    "promotion.compare_keys": Key("COMPARE_KEYS", "CompareKeyColumns", list, "given"),
    "promotion.max_changed_share": Key("MAX_CHANGED_SHARE", "MaxChangedShare", float, "given"),
    "promotion.approval": Key("RELEASE_APPROVAL", "ReleaseApproval", str),
    "schedule.expression": Key("SCHEDULE", "ScheduleExpression", str, "given"),
    "schedule.timezone": Key("SCHEDULE_TIMEZONE", "ScheduleTimezone", str),
    "run.cpu": Key("TASK_CPU", "TaskCpu", int),
    "run.memory": Key("TASK_MEMORY", "TaskMemory", int),
    "alerts.emails": Key("NOTIFICATION_EMAILS", "NotificationEmails", list, "always"),
    "network.subnets": Key("SUBNETS", "Subnets", list),
    "network.security_groups": Key("SECURITY_GROUPS", "SecurityGroups", list),
    "network.assign_public_ip": Key("ASSIGN_PUBLIC_IP", "AssignPublicIp", str),
    "github.branch": Key("GITHUB_BRANCH", "GitHubBranch", str, "always"),
    "github.connection_arn": Key("CONNECTION_ARN", "ConnectionArn", str, "always"),
    "releases.from_repository": Key("RELEASES_FROM_REPOSITORY", "ReleasesFromRepository", str, "always"),
    "releases.from_versions_bucket": Key(
        "RELEASES_FROM_VERSIONS_BUCKET", "ReleasesFromVersionsBucket", str, "always"
    ),
    "releases.to_accounts": Key("RELEASE_ACCOUNTS", "ReleaseAccountIds", list, "always"),
    "athena.workgroup": Key("ATHENA_WORKGROUP", "AthenaWorkGroup", str, "always"),
    "athena.results_bucket": Key("ATHENA_RESULTS_BUCKET", "AthenaResultsBucket", str, "always"),
    "athena.results_prefix": Key("ATHENA_RESULTS_PREFIX", "AthenaResultsPrefix", str, "always"),
    "glue.databases": Key("GLUE_DATABASES", "GlueDatabases", list, "always"),
    "opensearch.domains": Key("OPENSEARCH_DOMAIN_ARNS", "OpenSearchDomainArns", list, "always"),
    "secrets": Key("SECRET_ARNS", "SecretArns", dict, "always"),  # NAME: ARN; SECRET_NAMES holds the names
    "secret_kms_keys": Key("SECRET_KMS_KEY_ARNS", "SecretKmsKeyArns", list, "always"),
}
SECRET_NAMES = Key("SECRET_NAMES", "SecretNames", list, "always")
# The data sources, off unless set: always passed, so that a source removed from the file loses its grant.
DATA_SOURCES = ("athena.workgroup", "athena.results_bucket", "athena.results_prefix", "glue.databases",
                "opensearch.domains", "secrets", "secret_kms_keys")  # fmt: skip
# Where a stack's releases come from (production: staging's records) and go to (staging: production's
# accounts): always passed too, so that one left out of the file is off.
RELEASES = ("releases.from_repository", "releases.from_versions_bucket", "releases.to_accounts")
SECTIONS = sorted({name.split(".")[0] for name in KEYS if "." in name})
EXAMPLES = {str: "'text'", int: "1024", float: "0.1", list: "[a, b]", dict: "{NAME: arn:...}"}
PREFIXES = ("output.prefix", "validation.prefix")  # compared between environments at the template's default


class Refused(Exception):
    """A bad settings file: the message names the key, the value and the fix."""


class RefusedVariable(Refused):
    """A bad variable (make's command line, or the environment): the message names it, not the file."""


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
    """A value as the deploy passes it, if it has the key's type."""
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


def check(name: str, key: Key, text: str, fix: str = "") -> None:
    """The template parameter's own constraints; an empty value only where the parameter has a Default
    (the deploy then keeps the stack's value, or passes the default or none) or for a list (the network: the
    default VPC on creation)."""
    if text == "":
        if constraints.default(key.parameter) is not None or key.kind is list:
            return
    elif constraints.accepts(key.parameter, text):
        return
    fix = fix or f"fix it in the file, or override it with {key.variable}=..."
    raise Refused(
        f"{name}={text!r} is not valid: it {constraints.constraint(key.parameter)} (the template's "
        f"{key.parameter}): {fix}"
    )


def check_items(name: str, key: Key, text: str, fix: str = "") -> None:
    """A list's items one by one (the message names the bad one), then the list (its length)."""
    if key.kind is list:
        for item in text.split(",") if text else []:
            check(f"{name} item", key, item, fix)
    check(name, key, text, fix)


def secret_lists(name: str, value: Any) -> tuple[str, str]:
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
        check(f"{name}.{variable}", KEYS["secrets"], arn)  # names the bad one
    return ",".join(str(v) for v in value), ",".join(value.values())


def document(path: Path) -> Any:
    """The file's YAML; OSError when it cannot be read."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise Refused(
            f"the file is not valid YAML{at}: {problem} (check its indentation and quoting)"
        ) from None


def read(path: Path, shown: str, env: str) -> tuple[dict[str, str], dict[str, str]]:
    """The file's value of each variable it sets, for the environment env ('' for none), every one checked
    against the template; and the label of each key an environment gave (environments.<env>.<key>), by
    dotted key. shown: the file as messages name it."""
    parameters = constraints.parameters()
    try:
        values, labels = environments.chosen(
            document(path), env, constraints.pattern("EnvironmentName"), flatten,
            {name: str(parameters[KEYS[name].parameter]["Default"]) for name in PREFIXES}, shown,
        )  # fmt: skip
    except environments.BadEnvironment as bad:
        raise (RefusedVariable if bad.from_variable else Refused)(str(bad)) from None
    from_file = {}
    for name, value in values.items():
        key, label = KEYS[name], labels.get(name, name)
        if key.kind is dict:
            names, arns = secret_lists(label, value)
            texts = {SECRET_NAMES: names, key: arns}
        else:
            texts = {key: as_text(label, key, value)}
        for each, text in texts.items():
            check_items(label, each, text)
            from_file[each.variable] = text
    return from_file, labels


def given(environment: Mapping[str, str], from_file: Mapping[str, str], variable: str) -> str | None:
    """What the deploy takes for the variable: its own value when set (even empty), else the file's; None
    when neither gives it."""
    return environment[variable] if variable in environment else from_file.get(variable)
