"""The deploy's settings, for the tests: scripts/settings.py's merge in process (a settings file, the
environment and the variables as make passes them: milliseconds a case, no make, bash or Python start), and
`make deploy` itself with a stand-in `aws` recording the calls (fake_aws.py) for the few tests of its wiring:
the parameter file the cloudformation deploy call names, the refusals before any AWS call, ENV."""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path
from typing import Any

import fake_aws
import pytest
import yaml
from support import REPO, settings_script

settings = settings_script()  # scripts/settings.py, which puts scripts/ on the path for its modules
settings_file = importlib.import_module("settings_file")
constraints = importlib.import_module("constraints")
PARAMETERS: dict[str, dict[str, Any]] = constraints.parameters()

# The platform the tests deploy under, unless they give PLATFORM_FILE ('' deploys under the shipped
# platform.yml). Its bounds hold every bucket, workgroup, database, domain, secret, task size and runner major
# the tests give, a bucket alone holding all of it; test_settings_bounds.py tries each bound's refusal.
DOMAIN = "arn:aws:es:eu-west-1:123456789012:domain/reviews-domain"
HOTELS = "arn:aws:es:eu-west-1:123456789012:domain/hotels"
HADOOP = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf"
KEYTAB = "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/hive-keytab"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"
CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"
TEST_PLATFORM = {
    "stack": "test-platform",
    "bounds": {
        "data_lake": ["hotel-lake", "hotel-data-lake", "adr-lake", "lake", "abc", "a.b-c", "b" * 63],
        "publish": ["hotel-out", "hotel-output", "other-out", "adr-out", "out", "0.9"],
        "athena_workgroups": ["usp-analysts"],
        "athena_results": ["hotel-athena-results"],
        "glue_databases": ["hotel_lake", "reviews"],
        "opensearch_domains": [DOMAIN, HOTELS],
        "secrets": [HADOOP, "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/"],
        "secret_kms_keys": [KMS_KEY],
        "task": {"cpu": 16384, "memory": 122880},
        "runner_majors": [1, 2],
    },
}
GOOD = {
    "GITHUB_REPO": "hotel-profiling/usp-model",
    "DATA_LAKE_BUCKET": "hotel-lake",
    "OUTPUT_BUCKET": "hotel-out",
}
# What a deploy passes whatever it is given: a stack of no environment, which builds its own releases and
# shares none, with every data source off (so that one left out of the settings is off), at the template's
# defaults; the repository and the buckets are GOOD's.
ALWAYS = {
    "GitHubRepository": GOOD["GITHUB_REPO"], "GitHubBranch": "main", "ConnectionArn": "",
    "EnvironmentName": "",
    "ReleasesFromRepository": "", "ReleasesFromVersionsBucket": "", "ReleaseAccountIds": "",
    "NotebookPath": "usp.ipynb", "PlatformStackName": "test-platform", "RunnerImage": "",
    "DataLakeBucket": GOOD["DATA_LAKE_BUCKET"], "OutputBucket": GOOD["OUTPUT_BUCKET"],
    "NotificationEmails": "",
    "AthenaWorkGroup": "", "AthenaResultsBucket": "", "AthenaResultsPrefix": "", "GlueDatabases": "",
    "OpenSearchDomainArns": "", "SecretNames": "", "SecretArns": "", "SecretKmsKeyArns": "",
}  # fmt: skip


def platform_file(tmp_path: Path, platform: dict[str, Any] = TEST_PLATFORM) -> Path:
    path = tmp_path / "test-platform.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(platform))
    return path


def write(tmp_path: Path, text: str, name: str = "model-settings.yml") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def environment(tmp_path: Path, text: str | None, variables: dict[str, str]) -> dict[str, str]:
    """The environment make gives settings.py: the variables, SETTINGS_FILE a file of text (None: an empty
    one, every setting from the variables) and PLATFORM_FILE TEST_PLATFORM's, unless given."""
    given = {"SETTINGS_FILE": write(tmp_path, text or "")}
    if "PLATFORM_FILE" not in variables:
        given["PLATFORM_FILE"] = str(platform_file(tmp_path))
    return {**given, **variables}


def merged(tmp_path: Path, text: str | None = None, **variables: str) -> dict[str, str]:
    """The parameters the deploy passes (before its AWS look-ups), as settings.py check and write merge them
    from a settings file of text and the variables."""
    return settings.merged(environment(tmp_path, text, variables), REPO).parameters


def refused(tmp_path: Path, text: str | None = None, **variables: str) -> str:
    """The line settings.py refuses these settings with (pipeline: and exit 2, before any AWS call)."""
    with pytest.raises(settings.Refusal) as raised:
        merged(tmp_path, text, **variables)
    return str(raised.value)


# --- make deploy, with the stand-in aws -------------------------------------------------------------------


def make(
    tmp_path: Path, target: str, **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """`make TARGET` with the stand-in aws: FAKE_* variables set its answers; the others are make's
    (PLATFORM_FILE: TEST_PLATFORM's, PARAMETER_FILE: tmp_path/parameters.json, unless given)."""
    env = {k: v for k, v in variables.items() if k.startswith("FAKE_")}
    given = {k: v for k, v in variables.items() if k not in env}
    given.setdefault("PLATFORM_FILE", str(platform_file(tmp_path)))
    given.setdefault("PARAMETER_FILE", str(tmp_path / "parameters.json"))
    return fake_aws.make(tmp_path, target, env, **given)


def without_settings(tmp_path: Path) -> dict[str, str]:
    """SETTINGS_FILE for a deploy that takes every setting from the variables: an empty settings file (the
    repository's settings.yml would add its own)."""
    return {"SETTINGS_FILE": write(tmp_path, "", "empty-settings.yml")}


def deploy_call(calls: list[list[str]]) -> list[str]:
    (call,) = [c for c in calls if c[:2] == ["cloudformation", "deploy"]]
    return call


def passed(calls: list[list[str]]) -> dict[str, str]:
    """The parameters the cloudformation deploy call passed: its one --parameter-overrides, file://PATH,
    read as the AWS CLI reads it (a JSON list of Name=Value texts)."""
    call = deploy_call(calls)
    overrides = call[call.index("--parameter-overrides") + 1 :]
    (named,) = overrides[: next((n for n, a in enumerate(overrides) if a.startswith("--")), len(overrides))]
    assert named.startswith("file://"), call
    items = json.loads(Path(named.removeprefix("file://")).read_text())
    assert all(isinstance(item, str) for item in items)
    return dict(item.split("=", 1) for item in items)
