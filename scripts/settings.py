"""settings.py -- the parameters `make deploy` and `make deploy-plan` pass to CloudFormation, for
scripts/pipeline.sh, in two steps around its AWS look-ups:

    python -I scripts/settings.py check FOLDER
    python -I scripts/settings.py write FOLDER PARAMETER_FILE [Parameter=Value ...]

Both merge the model's settings file (SETTINGS_FILE, else MODEL_DIR's settings.yml, else this repository's;
read from FOLDER, the caller's folder, when relative; scripts/settings_file.py), the environment ENV chooses
in it (scripts/environments.py) and the variables (make passes its command line in the environment: a
variable wins over the file), and check every value against the template's constraints and rules
(scripts/constraints.py) and the platform's bounds (PLATFORM_FILE, default: platform.yml; scripts/bounds.py).
A refusal is one line on stderr naming the key or variable, the value and the fix, with exit 2: check runs
before any AWS call. check prints, as shell assignments, what pipeline.sh reads for its look-ups and messages;
write adds the look-ups' values (the image last promoted, the default VPC's network, a new stack's
database), each checked as well, and writes every parameter the deploy passes to PARAMETER_FILE, a JSON list
of Parameter=Value texts that `aws cloudformation deploy --parameter-overrides file://PARAMETER_FILE` reads.
Nothing of the model's checkout is imported or run, and pipeline.sh runs this isolated (-I).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

try:
    import yaml  # noqa: F401 -- settings_file.py, constraints.py and bounds.py read YAML
except ImportError:  # pragma: no cover -- make deploy runs this with .venv's Python, which has PyYAML
    sys.stderr.write("pipeline: reading settings.yml needs PyYAML: run make deploy, or set SETTINGS_PYTHON\n")
    sys.exit(2)

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ROOT / "platform.yml"
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # the platform's own code, whatever the current folder
import bounds  # noqa: E402 -- the platform's bounds, scripts/bounds.py
import constraints  # noqa: E402 -- the template's word, scripts/constraints.py
import environments  # noqa: E402 -- the model's environments, scripts/environments.py
from settings_file import (  # noqa: E402 -- the settings file, scripts/settings_file.py
    KEYS,
    SECRET_NAMES,
    Key,
    Refused,
    RefusedVariable,
    check_items,
    given,
    read,
)

from runner.redaction import reserved  # noqa: E402 -- the runner's own rule for a secret's name

# Parameters a variable sets that the file never does.
REPOSITORY = Key("GITHUB_REPO", "GitHubRepository", str, "always")
ENVIRONMENT = Key("ENV", "EnvironmentName", str, "always")
# Parameters from pipeline.sh's look-ups, which write takes as Parameter=Value.
LOOKED_UP = ("ValidatedImage", "Subnets", "SecurityGroups", "AssignPublicIp", "OutputDatabase")
# What pipeline.sh reads of check's assignments besides PLATFORM_STACK_NAME and VALIDATED_IMAGE_PATTERN.
SHELL = ("GITHUB_BRANCH", "RELEASES_FROM_REPOSITORY", "SUBNETS", "ASSIGN_PUBLIC_IP", "TABLE_DATABASE")
VARIABLE_FIX = "fix the variable {} (make's command line or the environment), or leave it out"


class Refusal(Exception):
    """The deploy refused, before any AWS call: the message is the whole line, naming the problem and the
    fix (and the settings file or the platform file when the value is theirs)."""


@dataclass(frozen=True)
class Deploy:
    """What the deploy passes, by template parameter; and what pipeline.sh reads, by variable."""

    parameters: dict[str, str]
    shell: dict[str, str]


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"pipeline: {message}\n")
    sys.exit(2)


def display(path: Path, folder: Path) -> str:
    """A path as messages name it: relative to the caller's folder when inside it."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def settings_path(environment: Mapping[str, str], folder: Path) -> Path:
    """The settings file: SETTINGS_FILE, else MODEL_DIR's settings.yml, else this repository's (none there:
    an empty one, every setting from the variables). A model's checkout is read as data only."""
    model = environment.get("MODEL_DIR", "")
    checkout, named = folder / model, f"MODEL_DIR={model}"
    if model and not checkout.is_dir():
        raise Refusal(
            f"{named} is not a folder: give the checkout of the model's repository, e.g. "
            "MODEL_DIR=../hotel-usp"
        )
    if environment.get("SETTINGS_FILE"):
        return folder / environment["SETTINGS_FILE"]
    if not model:
        return ROOT / "settings.yml" if (ROOT / "settings.yml").exists() else Path(os.devnull)
    if (checkout / "settings.yml").is_symlink():
        raise Refusal(
            f"{named} has a link as settings.yml: the model's settings are a file of its own, read as it is; "
            "replace the link by the file, or name a file with SETTINGS_FILE=path"
        )
    if not (checkout / "settings.yml").is_file():
        raise Refusal(
            f"{named} has no settings.yml: a model repository keeps its settings in settings.yml at its root "
            "(this repository's settings.yml shows every key), or name the file with SETTINGS_FILE=path"
        )
    return checkout / "settings.yml"


def platform(environment: Mapping[str, str], folder: Path) -> bounds.Platform:
    """The platform file, PLATFORM_FILE (default: platform.yml), checked; its stack is PLATFORM_STACK's, if
    given."""
    path = folder / environment["PLATFORM_FILE"] if environment.get("PLATFORM_FILE") else PLATFORM
    shown = display(path, folder)
    try:
        found = bounds.load(path, shown, constraints.parameters())
    except OSError as error:
        raise Refusal(
            f"PLATFORM_FILE={shown} cannot be read: {error.strerror} (point PLATFORM_FILE at the platform's "
            "settings, such as its platform.yml)"
        ) from None
    except bounds.BadPlatform as bad:
        raise Refusal(f"{shown}: {bad}") from None
    stack = environment.get("PLATFORM_STACK", "")
    if stack and stack != found.stack:
        raise Refusal(
            f"PLATFORM_STACK={stack} is not the stack of the platform file {path} ({found.stack}): a model "
            "deploys under the platform whose bounds it is held to; leave PLATFORM_STACK out, or give "
            f"PLATFORM_FILE= a platform file whose stack is {stack}"
        )
    return found


def merged(environment: Mapping[str, str], folder: Path) -> Deploy:
    """The deploy's parameters: the settings file's, the environment's and the variables', each checked
    against the template and the platform's bounds; Refusal otherwise."""
    held = platform(environment, folder)
    path = settings_path(environment, folder)
    shown = display(path, folder)
    try:
        from_file, labels = read(path, shown, environment.get("ENV", ""))
        check_variables(environment)
        values = passed(environment, from_file)
        check_together(environment, from_file, values, labels)
        within_bounds(held, environment, from_file)
    except OSError as error:
        raise Refusal(
            f"SETTINGS_FILE={shown} cannot be read: {error.strerror} (point SETTINGS_FILE at a settings file)"
        ) from None
    except RefusedVariable as refused:
        raise Refusal(str(refused)) from None
    except Refused as refused:
        raise Refusal(f"{shown}: {refused}") from None
    values["PlatformStackName"] = held.stack
    shell = {variable: given(environment, from_file, variable) or "" for variable in SHELL}
    shell["GITHUB_BRANCH"] = values["GitHubBranch"]
    return Deploy(ordered(values), shell)


def ordered(values: Mapping[str, str]) -> dict[str, str]:
    """The parameters in the template's order."""
    return {name: values[name] for name in constraints.parameters() if name in values}


def check_variables(environment: Mapping[str, str]) -> None:
    """Each variable given a value checked as the file's are: against its template parameter."""
    for key in [REPOSITORY, *KEYS.values(), SECRET_NAMES]:
        if environment.get(key.variable):
            try:
                check_items(key.variable, key, environment[key.variable], VARIABLE_FIX.format(key.variable))
            except Refused as refused:
                raise RefusedVariable(str(refused)) from None


def passed(environment: Mapping[str, str], from_file: Mapping[str, str]) -> dict[str, str]:
    """Each parameter the deploy passes, by the key's rule (settings_file.Key.passed), and its value."""
    values = {}
    for name, key in [("", REPOSITORY), ("", ENVIRONMENT), *KEYS.items(), ("secrets", SECRET_NAMES)]:
        text = given(environment, from_file, key.variable)
        if key.passed == "always":
            default = constraints.default(key.parameter)
            if not text and default is None:
                where = f"settings.yml {name}, or " if name else ""
                raise RefusedVariable(
                    f"{key.variable} is not set: the template's {key.parameter} has no default; give it with "
                    f"{where}{key.variable}=... on make's command line"
                )
            values[key.parameter] = text or default or ""
        elif text or (text is not None and key.passed == "given"):
            values[key.parameter] = text
    return values


def check_together(
    environment: Mapping[str, str],
    from_file: Mapping[str, str],
    values: Mapping[str, str],
    labels: Mapping[str, str],
) -> None:
    """What holds between the values: the network's two lists, the secrets' names and ARNs, the query
    results apart from the data, the validation apart from the output, production's records, and every rule
    of the template."""
    if ("Subnets" in values) != ("SecurityGroups" in values):
        raise RefusedVariable(
            "set SUBNETS and SECURITY_GROUPS together (or neither, for the default VPC on creation)"
        )
    names, arns = ([i for i in values[p].split(",") if i] for p in ("SecretNames", "SecretArns"))
    if len(names) != len(arns):
        raise RefusedVariable(
            "SECRET_NAMES and SECRET_ARNS go together, one name for each ARN in the same order (SECRET_NAMES "
            f"has {len(names)}, SECRET_ARNS {len(arns)}): set both, or neither (the template's rule "
            "SecretsNeedTheirNames)"
        )
    results = values["AthenaResultsBucket"]
    same = [
        p
        for p, v in (("OUTPUT_BUCKET", "OutputBucket"), ("DATA_LAKE_BUCKET", "DataLakeBucket"))
        if results and results == values[v]
    ]
    if same:
        raise Refused(
            f"athena.results_bucket={results!r} is also {same[0]}: the notebook writes its query results, so "
            "they go to a bucket of their own, never where consumers read or the lake (the template's rule "
            "QueryResultsApartFromTheData)"
        )
    taken = sorted({n for n in names if reserved(n)} | {n for n in names if names.count(n) > 1})
    if taken and "SECRET_NAMES" in environment:  # the file's names were checked one by one
        raise RefusedVariable(
            f"SECRET_NAMES names {', '.join(taken)}: a secret's variable must be new and its own, not one "
            "the runner, the AWS SDKs, the C library or Python read: rename it, e.g. HADOOP_PASSWORD"
        )
    check_prefixes(environment, from_file)
    env = environment.get("ENV", "")
    try:
        environments.releases_from_staging(env, lambda name: values.get(KEYS[name].parameter, ""))
    except environments.BadEnvironment as bad:
        raise Refused(str(bad)) from None
    for rule in constraints.template()["Rules"]:
        check_rule(rule, environment, values, labels, env)


def check_rule(
    name: str, environment: Mapping[str, str], values: Mapping[str, str], labels: Mapping[str, str], env: str
) -> None:
    """The template's rule, for the values the deploy passes (else the template's defaults), as CloudFormation
    evaluates it before any resource. A broken assertion is refused with its AssertDescription, naming the
    keys it reads."""
    keys = {k.parameter: (n, k) for n, k in [*KEYS.items(), ("secrets", SECRET_NAMES), ("", REPOSITORY)]}
    taken = {p: values[p] if p in values else constraints.default(p) or "" for p in constraints.parameters()}
    for assertion in constraints.broken(name, taken)[:1]:
        reads = [keys[p] for p in sorted(constraints.references(assertion["Assert"])) if p in keys]
        shown = ", ".join(f"{labels.get(n, n)} ({k.variable})={taken[k.parameter]!r}" for n, k in reads)
        where = f"; environments.{env} may set its own" if env and not set(dict(reads)) <= set(labels) else ""
        description = assertion["AssertDescription"].rstrip(".")
        refused = RefusedVariable if any(k.variable in environment for _, k in reads) else Refused
        raise refused(f"{shown}: {description} (the template's rule {name}{where})")


def check_prefixes(environment: Mapping[str, str], from_file: Mapping[str, str]) -> None:
    """The validation's prefix apart from the output's, as the template's rule and condition decide, for the
    values the deploy passes (a variable, else the file's); one not given is checked at the template's
    default, which a new stack takes (an update keeps the stack's, which CloudFormation checks)."""
    validation, output = KEYS["validation.prefix"], KEYS["output.prefix"]
    shown, prefixes = {}, {}
    for name, key in (("validation.prefix", validation), ("output.prefix", output)):
        text = given(environment, from_file, key.variable) or ""
        prefixes[key] = text or constraints.default(key.parameter) or ""  # '': the stack keeps its own
        if environment.get(key.variable):
            shown[key] = f"{key.variable}={text!r}"
        elif text:
            shown[key] = f"{name}={text!r}"
        else:
            shown[key] = f"{name}'s default {prefixes[key]!r} (the template's {key.parameter})"
    ours, theirs = prefixes[validation], prefixes[output]
    if not constraints.prefixes_refused(ours, theirs):
        return
    relation = (
        "is the same prefix as" if ours == theirs
        else "lies inside" if ours.startswith(f"{theirs}/")
        else "contains"
    )  # fmt: skip
    parent = theirs.rpartition("/")[0]
    beside = f"{parent}/validation" if parent else "validation"
    beside = f"{beside}-ci" if constraints.prefixes_refused(beside, theirs) else beside
    message = (
        f"{shown[validation]} {relation} {shown[output]}, where the daily runs publish the table (data/, "
        "metadata/) and its _runs/ reports: the validation runs images nobody validated yet and may never "
        f"write there. Give validation.prefix ({validation.variable}) a prefix beside output.prefix "
        f"({output.variable}), neither inside the other, e.g. {beside} (the template's rule "
        f"{constraints.PREFIX_RULE} and condition {constraints.PREFIX_CONDITION})"
    )
    raise (
        RefusedVariable
        if environment.get(validation.variable) or environment.get(output.variable)
        else Refused
    )(message)


def deployed(name: str, environment: Mapping[str, str], from_file: Mapping[str, str]) -> bounds.Given:
    """What the deploy passes for the key: its variable's value, else the file's; an empty one is not passed,
    so a new stack takes the template's default (an update keeps the stack's, which was bounded when
    deployed)."""
    key = KEYS[name]
    source: Literal["file", "variable", "default"] = "variable" if key.variable in environment else "file"
    text = given(environment, from_file, key.variable) or ""
    if not text and constraints.default(key.parameter):
        text, source = constraints.default(key.parameter) or "", "default"
    return bounds.Given(name, key.variable, text, source, many=key.kind in (list, dict))


def within_bounds(
    held: bounds.Platform, environment: Mapping[str, str], from_file: Mapping[str, str]
) -> None:
    """Every value the deploy passes within the platform's bounds: else Refused, naming the key and its
    variable, the value, the bound and the fix (RefusedVariable when a variable gave it)."""
    names = given(environment, from_file, SECRET_NAMES.variable) or ""
    labels = tuple(f"secrets.{name} ({KEYS['secrets'].variable})" for name in names.split(",") if name)

    def each(name: str) -> bounds.Given:
        found = deployed(name, environment, from_file)
        return dataclasses.replace(found, labels=labels) if name == "secrets" else found  # ARNs by name

    try:
        bounds.check(held, each)
    except bounds.OutOfBounds as outside:
        raise (RefusedVariable if outside.from_variable else Refused)(str(outside)) from None


def looked_up(deploy: Deploy, found: list[str]) -> dict[str, str]:
    """The deploy's parameters with pipeline.sh's look-ups (Parameter=Value texts), each checked against the
    template: what AWS answered, not what anyone gave, so a refusal names it as such."""
    parameters = dict(deploy.parameters)
    for item in found:
        name, equals, value = item.partition("=")
        if name not in LOOKED_UP or not equals:
            raise Refusal(
                f"{item!r} is no look-up settings.py takes: give one of {', '.join(LOOKED_UP)} as Name=Value"
            )
        if value and not constraints.accepts(name, value):
            raise Refusal(
                f"AWS answered {name}={value!r}, which is not valid: it {constraints.constraint(name)} (the "
                "template's): check the stack and the region, or give the setting yourself"
            )
        parameters[name] = value
    return ordered(parameters)


def main(argv: list[str]) -> None:
    command, arguments = (argv[0], argv[1:]) if argv else ("", [])
    if (command, min(len(arguments), 2)) not in (("check", 1), ("write", 2)):
        fail(
            "usage: settings.py check FOLDER | settings.py write FOLDER PARAMETER_FILE [Parameter=Value ...]"
        )
    folder = Path(arguments[0])
    try:
        deploy = merged(os.environ, folder)
        parameters = looked_up(deploy, arguments[2:])
    except Refusal as refusal:
        fail(str(refusal))
    if command == "write":
        text = json.dumps([f"{name}={value}" for name, value in parameters.items()], indent=1)
        (folder / arguments[1]).write_text(f"{text}\n")
        return
    shell = {
        **deploy.shell,
        "PLATFORM_STACK_NAME": deploy.parameters["PlatformStackName"],
        "VALIDATED_IMAGE_PATTERN": constraints.pattern("ValidatedImage"),
    }
    print("\n".join(f"{variable}={shlex.quote(value)}" for variable, value in shell.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
