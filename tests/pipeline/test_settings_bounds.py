"""The platform's bounds (platform.yml, scripts/bounds.py) on what a model's settings may ask, as `make
deploy` holds every value it passes to them (scripts/settings.py, in process here): a setting outside them is
refused naming the key and its variable, the value, the bound and the fix; a bad platform file is refused as
well (make deploy prints the line and exits 2 before any AWS call)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploying import (
    DOMAIN,
    HADOOP,
    HOTELS,
    KEYTAB,
    KMS_KEY,
    PARAMETERS,
    merged,
    platform_file,
    refused,
    settings,
)
from support import REPO
from test_settings_variables import SOURCES

PLATFORM = REPO / "platform.yml"
SETTINGS_TEXT = (REPO / "settings.yml").read_text()


# A platform that allows exactly INSIDE's values (bounds a folder deep, so that one beside them is outside).
BOUNDED = {
    "stack": "hotel-platform",
    "bounds": {
        "data_lake": ["hotel-data-lake/snapshots"],
        "publish": ["hotel-output/usp", "hotel-output/validation"],
        "athena_workgroups": ["usp-analysts"],
        "athena_results": ["hotel-athena-results/athena-results"],
        "glue_databases": ["hotel_lake", "reviews"],
        "opensearch_domains": [DOMAIN],
        "secrets": [HADOOP, "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/"],
        "secret_kms_keys": [KMS_KEY],
        "task": {"cpu": 2048, "memory": 8192},
        "runner_majors": [1, 2],
    },
}
INSIDE = (
    "data_lake: {bucket: hotel-data-lake, prefix: snapshots/v2}\n"
    "output: {bucket: hotel-output, prefix: usp/daily}\nvalidation: {prefix: validation/usp}\n"
    f"run: {{cpu: 2048, memory: 8192}}\nrunner: {{major: 2}}\n{SOURCES}"
)


def bounded(tmp_path: Path, text: str, platform: dict[str, Any] = BOUNDED, **variables: str) -> str:
    """The refusal of the settings (text, and the variables) under the platform."""
    return refused(
        tmp_path, text, GITHUB_REPO="o/r", PLATFORM_FILE=str(platform_file(tmp_path, platform)), **variables
    )


def test_settings_inside_every_bound_pass_and_name_the_platforms_stack(tmp_path: Path) -> None:
    passed = merged(tmp_path, INSIDE, GITHUB_REPO="o/r", PLATFORM_FILE=str(platform_file(tmp_path, BOUNDED)))

    assert passed["PlatformStackName"] == "hotel-platform"


# What every refusal says between the value and the bound's choices ({platform}: the platform file).
ASK = (
    "is outside the platform's bounds ({platform} bounds.{bound}): ask the platform's engineers to add it to "
)
LAKE = "data_lake.bucket/data_lake.prefix (DATA_LAKE_BUCKET/DATA_LAKE_PREFIX)"
LAKE_CHOICE = "{platform} bounds.data_lake, or choose a location inside one of: hotel-data-lake/snapshots"
OUT = "output.bucket/output.prefix (OUTPUT_BUCKET/OUTPUT_PREFIX)"
PUBLISH_CHOICE = (
    "{platform} bounds.publish, or choose a location inside one of: hotel-output/usp, hotel-output/validation"
)
SECRETS_CHOICE = (
    "{platform} bounds.secrets, or choose one of (an ARN ending in '/': any secret under it): "
    f"{HADOOP}, arn:aws:ssm:eu-west-1:123456789012:parameter/usp/"
)
MORE = (
    "run.{key} ({variable})='{value}' is outside the platform's bounds ({{platform}} bounds.task.{key}): "
    "ask the platform's engineers to raise {{platform}} bounds.task.{key}, or choose at most {most}"
)
OTHER_KEYTAB = KEYTAB.replace("/usp/", "/usp-ops/")  # beside the bound's path usp/
OTHER_HADOOP = HADOOP.replace("AbCdEf", "XyZ123")
OTHER_KMS_KEY = KMS_KEY.replace("0a1b2c3d4e5f", "ffffffffffff")
# (the change to INSIDE, the bound, the refusal): each value outside its bound, and its exact message.
OUTSIDE = {
    "a data lake folder that only starts as the bound's": (
        ("prefix: snapshots/v2}", "prefix: snap}"), "data_lake",
        f"{LAKE}='hotel-data-lake/snap' {{ask}}{LAKE_CHOICE}",
    ),
    "a data lake folder beside the bound's": (
        ("prefix: snapshots/v2}", "prefix: snapshots-old}"), "data_lake",
        f"{LAKE}='hotel-data-lake/snapshots-old' {{ask}}{LAKE_CHOICE}",
    ),
    "another data lake bucket": (
        ("bucket: hotel-data-lake,", "bucket: finance-lake,"), "data_lake",
        f"{LAKE}='finance-lake/snapshots/v2' {{ask}}{LAKE_CHOICE}",
    ),
    "an output folder that only starts as the bound's": (
        ("prefix: usp/daily}", "prefix: usp-athena/daily}"), "publish",
        f"{OUT}='hotel-output/usp-athena/daily' {{ask}}{PUBLISH_CHOICE}",
    ),
    "an output prefix left out, its default outside": (
        (", prefix: usp/daily}", "}"), "publish",
        (
            f"{OUT}='hotel-output/daily' (output.prefix not given: the template's default) "
            f"{{ask}}{PUBLISH_CHOICE}"
        ),
    ),
    "a validation prefix outside": (
        ("prefix: validation/usp}", "prefix: ci/usp}"), "publish",
        (
            "output.bucket/validation.prefix (OUTPUT_BUCKET/VALIDATION_PREFIX)='hotel-output/ci/usp' "
            f"{{ask}}{PUBLISH_CHOICE}"
        ),
    ),
    "another athena workgroup": (
        ("workgroup: usp-analysts", "workgroup: primary"), "athena_workgroups",
        (
            "athena.workgroup (ATHENA_WORKGROUP)='primary' {ask}{platform} bounds.athena_workgroups, or "
            "choose one of: usp-analysts"
        ),
    ),
    "query results beside the bound's": (
        ("results_prefix: athena-results/usp", "results_prefix: athena-results-v2/usp"), "athena_results",
        (
            "athena.results_bucket/athena.results_prefix (ATHENA_RESULTS_BUCKET/ATHENA_RESULTS_PREFIX)="
            "'hotel-athena-results/athena-results-v2/usp' {ask}{platform} bounds.athena_results, or choose a "
            "location inside one of: hotel-athena-results/athena-results"
        ),
    ),
    "another glue database": (
        ("[hotel_lake, reviews]", "[hotel_lake, finance]"), "glue_databases",
        (
            "glue.databases (GLUE_DATABASES) item='finance' {ask}{platform} bounds.glue_databases, or choose "
            "one of: hotel_lake, reviews"
        ),
    ),
    "another opensearch domain": (
        (DOMAIN, HOTELS), "opensearch_domains",
        (
            f"opensearch.domains (OPENSEARCH_DOMAIN_ARNS) item='{HOTELS}' {{ask}}{{platform}} "
            f"bounds.opensearch_domains, or choose one of: {DOMAIN}"
        ),
    ),
    "a secret beside the bound's path": (
        (KEYTAB, OTHER_KEYTAB), "secrets",
        f"secrets.HIVE_KEYTAB (SECRET_ARNS)='{OTHER_KEYTAB}' {{ask}}{SECRETS_CHOICE}",
    ),
    "another secret": (
        (HADOOP, OTHER_HADOOP), "secrets",
        f"secrets.HADOOP_PASSWORD (SECRET_ARNS)='{OTHER_HADOOP}' {{ask}}{SECRETS_CHOICE}",
    ),
    "another kms key": (
        (KMS_KEY, OTHER_KMS_KEY), "secret_kms_keys",
        (
            f"secret_kms_keys (SECRET_KMS_KEY_ARNS) item='{OTHER_KMS_KEY}' {{ask}}{{platform}} "
            f"bounds.secret_kms_keys, or choose one of: {KMS_KEY}"
        ),
    ),
    "more cpu": (
        ("cpu: 2048, memory: 8192", "cpu: 4096, memory: 8192"), "task.cpu",
        MORE.format(key="cpu", variable="TASK_CPU", value=4096, most=2048),
    ),
    "more memory": (
        ("memory: 8192", "memory: 16384"), "task.memory",
        MORE.format(key="memory", variable="TASK_MEMORY", value=16384, most=8192),
    ),
    "another runner major": (
        ("major: 2", "major: 3"), "runner_majors",
        "runner.major (RUNNER_MAJOR)='3' {ask}{platform} bounds.runner_majors, or choose one of: 1, 2",
    ),
}  # fmt: skip


@pytest.mark.parametrize("change, bound, message", OUTSIDE.values(), ids=OUTSIDE.keys())
def test_a_setting_outside_the_platforms_bounds_is_refused_naming_key_variable_value_and_bound(
    tmp_path: Path, change: tuple[str, str], bound: str, message: str
) -> None:
    platform = platform_file(tmp_path, BOUNDED)
    assert change[0] in INSIDE
    said = bounded(tmp_path, INSIDE.replace(*change))

    path = tmp_path / "model-settings.yml"
    ask = ASK.format(platform=platform, bound=bound)
    assert said == f"{path}: {message.format(ask=ask, platform=platform)}"


def test_a_bound_holds_a_location_folder_by_folder_and_a_secret_under_its_path() -> None:
    inside = settings.bounds.inside
    assert inside("lake/snapshots", "lake/snapshots") and inside("lake/snapshots/v2/x", "lake/snapshots")
    assert inside("lake/snapshots", "lake")  # a bucket alone: all of it
    assert not inside("lake/snap", "lake/snapshots") and not inside("lake/snapshots-old", "lake/snapshots")
    assert not inside("lake", "lake/snapshots") and not inside("lakehouse/snapshots", "lake")
    secret = settings.bounds.BOUNDS["secrets"]
    path = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:usp/"
    assert settings.bounds.admitted(secret, f"{path}hadoop-AbCdEf", (path,))
    assert not settings.bounds.admitted(secret, f"{path[:-1]}-ops/hadoop-AbCdEf", (path,))
    assert not settings.bounds.admitted(secret, HADOOP, (HADOOP[:-1],))  # a full ARN is exact


API_TOKEN = "arn:aws:ssm:eu-west-1:123456789012:parameter/api-token"  # outside the bound's path usp/
# (variables, the bound, the refusal): a variable on make's command line is bounded as the file's values are,
# and named as a variable (no file).
VARIABLES_OUTSIDE = {
    "an output bucket": (
        {"OUTPUT_BUCKET": "other-out"}, "publish", f"{OUT}='other-out/usp/daily' {{ask}}{PUBLISH_CHOICE}",
    ),
    "a data lake prefix": (
        {"DATA_LAKE_PREFIX": "raw"}, "data_lake", f"{LAKE}='hotel-data-lake/raw' {{ask}}{LAKE_CHOICE}",
    ),
    "the memory": (
        {"TASK_MEMORY": "12288"}, "task.memory",
        MORE.format(key="memory", variable="TASK_MEMORY", value=12288, most=8192),
    ),
    "a secret": (
        {"SECRET_NAMES": "API_TOKEN", "SECRET_ARNS": API_TOKEN},
        "secrets",
        (
            f"secrets.API_TOKEN (SECRET_ARNS)='{API_TOKEN}' {{ask}}{SECRETS_CHOICE}"
        ),
    ),
    "a runner major": (
        {"RUNNER_MAJOR": "9"}, "runner_majors",
        "runner.major (RUNNER_MAJOR)='9' {ask}{platform} bounds.runner_majors, or choose one of: 1, 2",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "variables, bound, message", VARIABLES_OUTSIDE.values(), ids=VARIABLES_OUTSIDE.keys()
)
def test_a_command_line_variable_outside_the_bounds_is_refused_naming_it(
    tmp_path: Path, variables: dict[str, str], bound: str, message: str
) -> None:
    platform = platform_file(tmp_path, BOUNDED)
    said = bounded(tmp_path, INSIDE, **variables)

    ask = ASK.format(platform=platform, bound=bound)
    assert said == message.format(ask=ask, platform=platform)


def test_a_variable_outside_the_shipped_platforms_bounds_is_refused(tmp_path: Path) -> None:
    """PLATFORM_FILE empty: the shipped platform.yml, named as the caller's folder reads it."""
    said = refused(tmp_path, SETTINGS_TEXT, GITHUB_REPO="o/r", PLATFORM_FILE="", TASK_CPU="8192")

    assert said == MORE.format(key="cpu", variable="TASK_CPU", value=8192, most=4096).format(
        platform="platform.yml"
    )


def test_a_value_its_template_parameter_refuses_is_refused_as_such_not_out_of_bounds(tmp_path: Path) -> None:
    said = bounded(tmp_path, INSIDE, OUTPUT_BUCKET="Hotel_Output")

    assert said.startswith("OUTPUT_BUCKET='Hotel_Output' is not valid: it must be an S3 bucket name")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a platform document: the value at a dotted path (None: the key removed)."""

    def change(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for parent in parents:
            document = document[parent]
        if value is None:
            del document[leaf]
        else:
            document[leaf] = value

    return change


WILDCARD = (
    "is a wildcard: a bound names each thing it allows, never a pattern that would let any model ask for more"
)
SECRET_ENTRY = (
    "a secret's or parameter's full ARN, or one ending in '/' after a name path, e.g. secrets: "
    "[arn:aws:secretsmanager:eu-west-1:123456789012:secret:usp/]"
)
TASK_EXAMPLE = "write task: {cpu: 4096, memory: 16384}"
# (a change to BOUNDED, the refusal): a bad platform file is refused before the model's settings are read.
BAD_PLATFORMS = {
    "an unknown key": (
        _set("bound", {}), "unknown key bound: did you mean bounds? (see the comments in platform.yml)"
    ),
    "an unknown bound": (
        _set("bounds.glue_database", ["hotel_lake"]),
        (
            "unknown key bounds.glue_database: did you mean bounds.glue_databases? (see the comments in "
            "platform.yml)"
        ),
    ),
    "a bound left out": (
        _set("bounds.secrets", None),
        (
            "bounds.secrets is missing: list what models may ask, e.g. secrets: "
            "[arn:aws:secretsmanager:eu-west-1:123456789012:secret:usp/], or [] for none"
        ),
    ),
    "a text for a list": (
        _set("bounds.glue_databases", "hotel_lake"),
        (
            "bounds.glue_databases='hotel_lake' is not a list: write a YAML list, e.g. glue_databases: "
            "[hotel_lake]"
        ),
    ),
    "a wildcard database": (
        _set("bounds.glue_databases", ["*"]),
        (
            f"bounds.glue_databases item '*' {WILDCARD}; write a Glue database's name, e.g. glue_databases: "
            "[hotel_lake]"
        ),
    ),
    "a wildcard in a location": (
        _set("bounds.data_lake", ["hotel-data-lake/*"]),
        (
            f"bounds.data_lake item 'hotel-data-lake/*' {WILDCARD}; write a data lake location, bucket or "
            "bucket/prefix, e.g. data_lake: [hotel-data-lake/snapshots]"
        ),
    ),
    "a wildcard secret": (
        _set("bounds.secrets", ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:*"]),
        (
            f"bounds.secrets item 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:*' {WILDCARD}; write "
            f"{SECRET_ENTRY}"
        ),
    ),
    "every parameter of an account": (
        _set("bounds.secrets", ["arn:aws:ssm:eu-west-1:123456789012:parameter/"]),
        (
            "bounds.secrets item 'arn:aws:ssm:eu-west-1:123456789012:parameter/' is not "
            + SECRET_ENTRY.replace(", e.g.", ": write one, e.g.")
        ),
    ),
    "a location ending in '/'": (
        _set("bounds.data_lake", ["hotel-data-lake/"]),
        (
            "bounds.data_lake item 'hotel-data-lake/' is not a data lake location, bucket or bucket/prefix: "
            "write one, e.g. data_lake: [hotel-data-lake/snapshots]"
        ),
    ),
    "a bucket name that is none": (
        _set("bounds.publish", ["Hotel_Output/usp"]),
        (
            "bounds.publish item 'Hotel_Output/usp' is not a location to publish to, bucket or "
            "bucket/prefix: write one, e.g. publish: [hotel-output/usp]"
        ),
    ),
    "a number for a name": (
        _set("bounds.athena_workgroups", [7]),
        (
            "bounds.athena_workgroups item 7 is not a text: write an Athena workgroup's name, e.g. "
            "athena_workgroups: [usp]"
        ),
    ),
    "a runner major of 0": (
        _set("bounds.runner_majors", [0]),
        "bounds.runner_majors item '0' is not a runner major version: write one, e.g. runner_majors: [1]",
    ),
    "a task that is no mapping": (
        _set("bounds.task", [4096, 16384]), f"bounds.task=[4096, 16384] is not a mapping: {TASK_EXAMPLE}"
    ),
    "a task size as text": (
        _set("bounds.task.memory", "16 GiB"),
        f"bounds.task.memory='16 GiB' is not a whole number above 0: {TASK_EXAMPLE}",
    ),
    "an unknown task key": (
        _set("bounds.task.mem", 8192),
        "unknown key bounds.task.mem: did you mean bounds.task.memory? (see the comments in platform.yml)",
    ),
    "a stack name that is none": (
        _set("stack", "1platform"),
        (
            "stack='1platform' is not valid: it must be a CloudFormation stack name (a letter, then letters, "
            "digits and '-') (the template's PlatformStackName)"
        ),
    ),
    "no bounds": (
        _set("bounds", None),
        (
            "bounds=None is not a mapping: write bounds: with data_lake, publish, athena_workgroups, "
            "athena_results, glue_databases, opensearch_domains, secrets, secret_kms_keys, runner_majors, "
            "task (see the comments in platform.yml)"
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("change, message", BAD_PLATFORMS.values(), ids=BAD_PLATFORMS.keys())
def test_a_bad_platform_file_is_refused_naming_the_key_value_and_fix(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    document = copy.deepcopy(BOUNDED)
    change(document)

    assert bounded(tmp_path, INSIDE, document) == f"{platform_file(tmp_path, document)}: {message}"


NO_PLATFORM = {
    "a list": (
        "- stack\n",
        "the file is a YAML list, not a mapping: write stack: and bounds: (see the comments in platform.yml)",
    ),
    "invalid YAML": (
        "stack: [x\n",
        "the file is not valid YAML at line 2, column 1 (check its indentation and quoting)",
    ),
}


@pytest.mark.parametrize("text, message", NO_PLATFORM.values(), ids=NO_PLATFORM.keys())
def test_a_platform_file_that_is_no_mapping_is_refused(tmp_path: Path, text: str, message: str) -> None:
    platform = tmp_path / "platform.yml"
    platform.write_text(text)

    assert (
        refused(tmp_path, INSIDE, GITHUB_REPO="o/r", PLATFORM_FILE=str(platform)) == f"{platform}: {message}"
    )


def test_a_missing_platform_file_is_refused(tmp_path: Path) -> None:
    assert refused(tmp_path, GITHUB_REPO="o/r", PLATFORM_FILE=str(tmp_path / "nope.yml")) == (
        f"PLATFORM_FILE={tmp_path / 'nope.yml'} cannot be read: No such file or directory "
        "(point PLATFORM_FILE at the platform's settings, such as its platform.yml)"
    )


MODELS = ["settings.yml", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("examples/*/settings.yml"))]


@pytest.mark.parametrize("model", MODELS)
def test_the_shipped_platform_holds_this_repositorys_models(model: str) -> None:
    passed = settings.merged({"GITHUB_REPO": "o/r", "SETTINGS_FILE": model}, REPO).parameters

    assert passed["PlatformStackName"] == PARAMETERS["PlatformStackName"]["Default"]


def test_the_shipped_platform_file_documents_every_bound_and_the_stacks_default() -> None:
    """Its stack is the template's default, which its comment names; each bound has a comment above it
    naming it; each holds keys of the model's settings."""
    text = PLATFORM.read_text()
    default = PARAMETERS["PlatformStackName"]["Default"]
    shipped = yaml.safe_load(text)
    bounds = settings.bounds

    assert shipped["stack"] == default and f"the template's default: {default}." in text
    assert set(shipped["bounds"]) == {*bounds.BOUNDS, "task"}
    lines = text.splitlines()
    for name in shipped["bounds"]:
        (line,) = [n for n, line in enumerate(lines) if line.startswith(f"  {name}:")]
        while lines[line - 1].lstrip().startswith("#"):
            line -= 1
        assert lines[line].startswith(f"  # {name}: "), f"bounds.{name}: no comment above it"
    held = {key for bound in bounds.BOUNDS.values() for keys in bound.keys for key in keys}
    assert held | set(bounds.TASK.values()) <= set(settings.KEYS)
