"""bounds.py -- the platform's bounds (platform.yml) on what a model's settings may ask, for settings.py.

platform.yml names the platform stack and, under bounds:, the data lake locations a model may read, where it
may publish, the Athena workgroups and result locations, Glue databases, OpenSearch domains, secrets and
their KMS keys it may use, the largest task and the runner majors it may follow. load() reads and checks the
file (an unknown key, a value of the wrong type or a wildcard is refused: BadPlatform); check() holds the
values a deploy passes to it (OutOfBounds names the model's key and variable, the value, the bound and the
fix). Neither makes an AWS call; neither reads anything of the model but the values given to check().

A location is bucket or bucket/prefix; another lies inside it folder by folder: hotel-lake/snapshots holds
hotel-lake/snapshots and hotel-lake/snapshots/v2, not hotel-lake/snapshots-old; a bucket alone holds all of
it. A secret bound is a full ARN (that secret), or an ARN ending in '/' after its name's path (every secret,
or SSM parameter, whose name starts with that path: ...:secret:usp/ holds ...:secret:usp/hadoop-AbCdEf).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

WILDCARDS = ("*", "?")  # IAM's: a bound names what it allows, never a pattern
# A secret bound that holds every secret (or parameter) under a path of its name: at least one folder.
SECRET_PATH = re.compile(
    r"^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:([A-Za-z0-9_+=.@-]+/)+"
    r"|ssm:[a-z0-9-]+:[0-9]{12}:parameter/([A-Za-z0-9_.-]+/)+)$"
)


@dataclass(frozen=True)
class Bound:
    """A list under bounds: what its entries are and which of the model's settings it holds."""

    kind: Literal["location", "member", "secret"]
    parameter: str  # the template parameter whose pattern an entry matches (a location: its bucket's)
    what: str  # what one entry is, for messages
    example: str
    keys: tuple[tuple[str, ...], ...]  # the model's settings it holds: (bucket, prefix) pairs, or a key
    numbers: bool = False  # entries may be written as YAML numbers (the runner's majors)


BOUNDS = {
    "data_lake": Bound(
        "location", "DataLakeBucket", "a data lake location, bucket or bucket/prefix",
        "hotel-data-lake/snapshots", (("data_lake.bucket", "data_lake.prefix"),),
    ),
    "publish": Bound(
        "location", "OutputBucket", "a location to publish to, bucket or bucket/prefix", "hotel-output/usp",
        (("output.bucket", "output.prefix"), ("output.bucket", "validation.prefix")),
    ),
    "athena_workgroups": Bound(
        "member", "AthenaWorkGroup", "an Athena workgroup's name", "usp", (("athena.workgroup",),),
    ),
    "athena_results": Bound(
        "location", "AthenaResultsBucket", "a query result location, bucket or bucket/prefix",
        "hotel-athena-results/usp", (("athena.results_bucket", "athena.results_prefix"),),
    ),
    "glue_databases": Bound(
        "member", "GlueDatabases", "a Glue database's name", "hotel_lake", (("glue.databases",),),
    ),
    "opensearch_domains": Bound(
        "member", "OpenSearchDomainArns", "an OpenSearch domain's ARN",
        "arn:aws:es:eu-west-1:123456789012:domain/reviews", (("opensearch.domains",),),
    ),
    "secrets": Bound(
        "secret", "SecretArns", "a secret's or parameter's full ARN, or one ending in '/' after a name path",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:usp/", (("secrets",),),
    ),
    "secret_kms_keys": Bound(
        "member", "SecretKmsKeyArns", "a KMS key's ARN",
        "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
        (("secret_kms_keys",),),
    ),
    "runner_majors": Bound(
        "member", "RunnerMajorVersion", "a runner major version", "1", (("runner.major",),), numbers=True,
    ),
}  # fmt: skip
TASK = {"cpu": "run.cpu", "memory": "run.memory"}  # bounds.task: the most each of these may ask
TASK_EXAMPLE = "task: {cpu: 4096, memory: 16384}"
TOP = ("stack", "bounds")


class BadPlatform(Exception):
    """A bad platform file: the message names the key, the value and the fix."""


class OutOfBounds(Exception):
    """A model's setting outside the platform's bounds; from_variable when a variable gave (part of) it."""

    def __init__(self, message: str, from_variable: bool) -> None:
        super().__init__(message)
        self.from_variable = from_variable


@dataclass(frozen=True)
class Platform:
    shown: str  # the platform file, as messages name it
    stack: str
    lists: Mapping[str, tuple[str, ...]]  # each list of BOUNDS: its entries
    task: Mapping[str, int]  # each of TASK: the most a model may ask


@dataclass(frozen=True)
class Given:
    """One of the model's settings as the deploy passes it."""

    name: str  # the settings.yml key, e.g. data_lake.prefix
    variable: str  # its variable, e.g. DATA_LAKE_PREFIX
    text: str  # a list's items comma-separated
    source: Literal["file", "variable", "default"]  # default: the template's, none given
    many: bool = False  # a list
    labels: tuple[str, ...] = ()  # each item's own name, where it has one (secrets.HADOOP_PASSWORD)

    def items(self) -> list[tuple[str, str]]:
        """(label, value) of each item: a list's as the key's item, a secret's by its name."""
        values = [item for item in self.text.split(",") if item] if self.many else [self.text]
        if len(self.labels) == len(values):
            return list(zip(self.labels, values, strict=True))
        label = f"{self.name} ({self.variable})" + (" item" if self.many else "")
        return [(label, value) for value in values if value]


def _unknown(name: str, known: list[str]) -> BadPlatform:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"the keys are {', '.join(known)}"
    return BadPlatform(f"unknown key {name}: {hint} (see the comments in platform.yml)")


def _entry(name: str, bound: Bound, item: Any, parameters: Mapping[str, Mapping[str, Any]]) -> str:
    """One entry of bounds.NAME, checked."""
    if bound.numbers and isinstance(item, int) and not isinstance(item, bool):
        item = str(item)
    given = f"bounds.{name} item {item!r}"
    if not isinstance(item, str) or not item:
        raise BadPlatform(f"{given} is not a text: write {bound.what}, e.g. {name}: [{bound.example}]")
    if any(wildcard in item for wildcard in WILDCARDS):
        raise BadPlatform(
            f"{given} is a wildcard: a bound names each thing it allows, never a pattern that would let any "
            f"model ask for more; write {bound.what}, e.g. {name}: [{bound.example}]"
        )
    pattern = parameters[bound.parameter]["AllowedPattern"]
    if bound.kind == "location":
        bucket, slash, prefix = item.partition("/")
        prefix_pattern = parameters["DataLakePrefix"]["AllowedPattern"]  # any number of folders
        valid = (
            bucket and re.fullmatch(pattern, bucket) and (not slash or re.fullmatch(prefix_pattern, prefix))
        )
    else:
        valid = "," not in item and re.fullmatch(pattern, item)
        valid = valid or (bound.kind == "secret" and SECRET_PATH.fullmatch(item))
    if not valid:
        raise BadPlatform(f"{given} is not {bound.what}: write one, e.g. {name}: [{bound.example}]")
    return item


def _task(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise BadPlatform(f"bounds.task={value!r} is not a mapping: write {TASK_EXAMPLE}")
    for key in value:
        if key not in TASK:
            raise _unknown(f"bounds.task.{key}", [f"bounds.task.{k}" for k in TASK])
    task = {}
    for key, setting in TASK.items():
        if key not in value:
            raise BadPlatform(
                f"bounds.task.{key} is missing: the most a model's {setting} may be; write {TASK_EXAMPLE}"
            )
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise BadPlatform(
                f"bounds.task.{key}={number!r} is not a whole number above 0: write {TASK_EXAMPLE}"
            )
        task[key] = number
    return task


def load(path: Path, shown: str, parameters: Mapping[str, Mapping[str, Any]]) -> Platform:
    """The platform file, checked; OSError when it cannot be read."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise BadPlatform(f"the file is not valid YAML{at} (check its indentation and quoting)") from None
    if not isinstance(document, dict):
        raise BadPlatform(
            f"the file is a YAML {type(document).__name__}, not a mapping: write stack: and bounds: (see the "
            "comments in platform.yml)"
        )
    for key in document:
        if key not in TOP:
            raise _unknown(str(key), list(TOP))
    stack_parameter = parameters["PlatformStackName"]
    stack = document.get("stack", stack_parameter["Default"])
    if not isinstance(stack, str) or not re.fullmatch(stack_parameter["AllowedPattern"], stack):
        raise BadPlatform(
            f"stack={stack!r} is not valid: it {stack_parameter['ConstraintDescription'].rstrip('.')} (the "
            "template's PlatformStackName)"
        )
    found = document.get("bounds")
    if not isinstance(found, dict):
        raise BadPlatform(
            f"bounds={found!r} is not a mapping: write bounds: with {', '.join([*BOUNDS, 'task'])} (see the "
            "comments in platform.yml)"
        )
    for key in found:
        if key not in [*BOUNDS, "task"]:
            raise _unknown(f"bounds.{key}", [f"bounds.{k}" for k in [*BOUNDS, "task"]])
    lists = {}
    for name, bound in BOUNDS.items():
        if name not in found:
            raise BadPlatform(
                f"bounds.{name} is missing: list what models may ask, e.g. {name}: [{bound.example}], or [] "
                "for none"
            )
        value = found[name]
        if not isinstance(value, list):
            raise BadPlatform(
                f"bounds.{name}={value!r} is not a list: write a YAML list, e.g. {name}: [{bound.example}]"
            )
        lists[name] = tuple(_entry(name, bound, item, parameters) for item in value)
    if "task" not in found:
        raise BadPlatform(f"bounds.task is missing: the largest task a model may ask, e.g. {TASK_EXAMPLE}")
    return Platform(shown, stack, lists, _task(found["task"]))


def inside(location: str, bound: str) -> bool:
    """Whether bucket[/prefix] lies inside the bound, folder by folder."""
    folders = bound.split("/")
    return location.split("/")[: len(folders)] == folders


def admitted(bound: Bound, value: str, entries: tuple[str, ...]) -> bool:
    if bound.kind == "location":
        return any(inside(value, entry) for entry in entries)
    if bound.kind == "secret":
        return any(value == entry or (entry.endswith("/") and value.startswith(entry)) for entry in entries)
    return value in entries


def _refusal(label: str, value: str, parts: list[Given], where: str, fix: str) -> OutOfBounds:
    defaults = "".join(
        f" ({g.name} not given: the template's default)" for g in parts if g.source == "default"
    )
    return OutOfBounds(
        f"{label}={value!r}{defaults} is outside the platform's bounds ({where}): ask the platform's "
        f"engineers to {fix}",
        from_variable=any(g.source == "variable" for g in parts),
    )


def _fix(bound: Bound, entries: tuple[str, ...], where: str) -> str:
    if not entries:
        return f"add it to {where}, which allows none yet"
    choose = "a location inside one of" if bound.kind == "location" else "one of"
    under = " (an ARN ending in '/': any secret under it)" if any(e.endswith("/") for e in entries) else ""
    return f"add it to {where}, or choose {choose}{under}: {', '.join(entries)}"


def check(platform: Platform, given: Callable[[str], Given | None]) -> None:
    """Each value the deploy passes within its bound, else OutOfBounds. given(key) is None for a value its
    template parameter refuses: settings.py's check names it."""
    for name, bound in BOUNDS.items():
        entries, where = platform.lists[name], f"{platform.shown} bounds.{name}"
        for keys in bound.keys:
            parts = [part for part in (given(key) for key in keys) if part is not None]
            if len(parts) < len(keys):
                continue
            if bound.kind == "location":
                bucket, prefix = parts
                if not bucket.text:  # the source is off, or the bucket missing (settings.py says so)
                    continue
                label = f"{bucket.name}/{prefix.name} ({bucket.variable}/{prefix.variable})"
                located = [(label, "/".join(text for text in (bucket.text, prefix.text) if text))]
            else:
                located = parts[0].items()
            for label, value in located:
                if not admitted(bound, value, entries):
                    raise _refusal(label, value, parts, where, _fix(bound, entries, where))
    for key, setting in TASK.items():
        part = given(setting)
        if part is not None and part.text and int(part.text) > platform.task[key]:
            where = f"{platform.shown} bounds.task.{key}"
            fix = f"raise {where}, or choose at most {platform.task[key]}"
            raise _refusal(f"{part.name} ({part.variable})", part.text, [part], where, fix)
