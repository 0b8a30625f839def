"""environments.py -- a model's environments in its settings file, for scripts/settings.py.

A settings file may describe the model's environments, each its own stack (make deploy ENV=staging, then
ENV=production): `environments:` maps each environment's name to settings of the file's own shape (sections
and keys) that override the file's values key by key; a section given in an environment overrides only the
keys it names. ENV chooses one. A file with environments needs ENV, and ENV needs the file's environment of
that name. The environment named production never builds: it promotes the images staging validated, so it
names staging's records (releases.from_repository, releases.from_versions_bucket). No environment publishes
or validates where another publishes. Every refusal is one line naming the key or the variable and the fix
(BadEnvironment: settings.py prints it and exits 2). Nothing here makes an AWS call.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

from bounds import inside  # a location inside another, folder by folder

PRODUCTION = "production"  # the environment that never builds: it promotes what staging validated
RELEASES = ("releases.from_repository", "releases.from_versions_bucket")
STAGING_OUTPUTS = (
    "the staging stack's outputs ImageRepositoryArn and VersionsBucketName (make deploy GITHUB_REPO=... "
    "ENV=staging prints them)"
)
NAMED = "1 to 16 lower-case letters and digits, starting with a letter, e.g. staging or production"
EXAMPLE = "see the example at the end of settings.yml"


class BadEnvironment(Exception):
    """A bad environments: block (the file's), or a bad ENV (from_variable: the message names it)."""

    def __init__(self, message: str, from_variable: bool = False) -> None:
        super().__init__(message)
        self.from_variable = from_variable


def described(document: Any) -> tuple[Any, dict[str, Any] | None]:
    """The file's own settings, and its environments by name (None: the file has no environments: key)."""
    if not isinstance(document, dict) or "environments" not in document:
        return document, None
    environments = document["environments"]
    if not isinstance(environments, dict) or not environments:
        what = "describes no environment" if environments == {} else "is not a mapping of environments"
        raise BadEnvironment(
            f"environments={environments!r} {what}: write environments: "
            "{staging: {...}, production: {...}}, each with the settings that differ in it "
            f"({EXAMPLE}), or remove the key"
        )
    own = {key: value for key, value in document.items() if key != "environments"}
    return own, {str(name): overlay for name, overlay in environments.items()}


def chosen(
    document: Any,
    env: str,
    pattern: str,
    flatten: Callable[[Any, str], dict[str, Any]],
    defaults: Mapping[str, str],
    file: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values by dotted key that the deploy of environment env ('' for none) takes: the file's, each key
    the environment gives replaced; and the labels of those keys (environments.<env>.<key>) for messages.
    pattern: an environment's name (the template's EnvironmentName); flatten(document, label prefix):
    settings.py's reader of a document's keys; defaults: the template's output.prefix and validation.prefix
    (what a stack takes for a prefix not given)."""
    if env and re.fullmatch(pattern, env) is None:
        raise BadEnvironment(
            f"ENV={env!r} is not valid: an environment's name is {NAMED} (the template's EnvironmentName): "
            f"give one of {file}'s environments, or leave ENV out",
            from_variable=True,
        )
    own, environments = described(document)
    top = flatten(own, "")
    if environments is None:
        if env:
            raise BadEnvironment(
                f"ENV={env} names an environment, but {file} describes none: add environments: {{{env}: "
                f"{{...}}}} with the settings that differ in {env} ({EXAMPLE}), or leave ENV out",
                from_variable=True,
            )
        return top, {}
    each = {}
    for name, overlay in environments.items():
        if re.fullmatch(pattern, name) is None:
            raise BadEnvironment(f"environments.{name} is no environment's name: rename it, {NAMED}")
        if not isinstance(overlay, dict):
            raise BadEnvironment(
                f"environments.{name}={overlay!r} is not a mapping: write the settings that differ in "
                f"{name}, e.g. {name}: {{output: {{prefix: usp/{name}}}}}, or {name}: {{}} for the file's"
            )
        each[name] = flatten(overlay, f"environments.{name}.")
    names = list(each)
    give = " or ".join(f"ENV={name}" for name in names)
    if not env:
        raise BadEnvironment(
            f"{file} describes environments {', '.join(names)}: give {give}, each environment its own "
            f"stack (make deploy GITHUB_REPO=... ENV={names[0]})",
            from_variable=True,
        )
    if env not in each:
        raise BadEnvironment(
            f"ENV={env} is no environment of {file}, which describes {', '.join(names)}: give {give}, or "
            f"add environments.{env} with the settings that differ in {env}",
            from_variable=True,
        )
    apart({name: {**top, **values} for name, values in each.items()}, defaults)
    return {**top, **each[env]}, {key: f"environments.{env}.{key}" for key in each[env]}


def location(values: Mapping[str, Any], key: str, defaults: Mapping[str, str]) -> str | None:
    """bucket/prefix of an environment's output.prefix or validation.prefix (a prefix not given: the
    template's default); None if a part is missing or no text (that environment's own deploy names it)."""
    bucket, prefix = values.get("output.bucket"), values.get(key) or defaults[key]  # '': the default
    return f"{bucket}/{prefix}" if isinstance(bucket, str) and isinstance(prefix, str) and prefix else None


def apart(environments: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, str]) -> None:
    """No environment publishes where another's table is (the same output.bucket/output.prefix, or one inside
    the other: each one's runs would overwrite and expire the other's files), nor validates there (a
    building environment's validation.prefix: unvalidated images writing where consumers read)."""
    tables = {name: location(values, "output.prefix", defaults) for name, values in environments.items()}
    for one, other in itertools.combinations(environments, 2):  # in the file's order
        ours, theirs = tables[one], tables[other]
        if ours and theirs and (inside(ours, theirs) or inside(theirs, ours)):
            where = f"both publish to {ours}" if ours == theirs else f"publish to {ours} and {theirs}"
            outer = theirs if inside(ours, theirs) else ours  # a prefix beside it: in its parent folder
            parent = outer.partition("/")[2].rpartition("/")[0]
            beside = f"{parent}/{one}" if parent else one
            raise BadEnvironment(
                f"environments {one} and {other} {where} (output.bucket/output.prefix): their tables would "
                "overwrite each other. Give each its own output.prefix, neither inside the other, e.g. "
                f"environments.{one}.output.prefix: {beside}"
            )
    for one, other in itertools.permutations(environments, 2):
        builds = not environments[other].get(RELEASES[0])  # production validates nothing
        ours = tables[one]
        validation = location(environments[other], "validation.prefix", defaults) if builds else None
        if ours and validation and (inside(validation, ours) or inside(ours, validation)):
            raise BadEnvironment(
                f"environment {other}'s validation writes to {validation}, which overlaps {one}'s table "
                f"{ours}: a validation runs images nobody validated yet, and may never write where consumers "
                f"read. Give environments.{other}.validation.prefix a prefix apart from {one}'s output.prefix"
            )


def releases_from_staging(env: str, effective: Callable[[str], str]) -> None:
    """The environment named production releases from another stack; effective(key): what the deploy passes
    for the key (its variable's value, else the file's)."""
    missing = [key for key in RELEASES if not effective(key)]
    if env == PRODUCTION and missing:
        raise BadEnvironment(
            f"environments.{PRODUCTION} has no {' and no '.join(missing)}: production never builds, it "
            f"promotes exactly the images staging validated. Set environments.{PRODUCTION}'s "
            f"{' and '.join(RELEASES)} to {STAGING_OUTPUTS}"
        )
