"""`make deploy` and friends: argument checks before any AWS call, and the exact aws calls they make
(a stand-in `aws` on PATH records its arguments); a model's checkout (MODEL_DIR) is read, never run."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import fake_aws
import pytest
import yaml
from cfn import load
from support import REPO

PARAMETERS = load()["Parameters"]
CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"
REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/notebook-pipeline-usp-model"
DIGEST = "sha256:" + "0123456789abcdef" * 4
PROMOTED = f"{REPOSITORY}@{DIGEST}"  # what the validation writes into /<stack>/validated-image


# A stack of no environment, which builds its own releases and shares none: always passed, so that settings
# that leave them out make such a stack.
ONE_STACK = [
    "EnvironmentName=", "ReleasesFromRepository=", "ReleasesFromVersionsBucket=", "ReleaseAccountIds=",
]  # fmt: skip
# The data sources, all off: always passed, so that a source left out of the settings loses its grant.
SOURCES_OFF = [
    "AthenaWorkGroup=", "AthenaResultsBucket=", "AthenaResultsPrefix=", "GlueDatabases=",
    "OpenSearchDomainArns=", "SecretNames=", "SecretArns=", "SecretKmsKeyArns=",
]  # fmt: skip


# The platform the tests deploy under: make() passes it as PLATFORM_FILE unless given (PLATFORM_FILE=""
# deploys under the shipped platform.yml). Its bounds hold every bucket, workgroup, database, domain, secret,
# task size and runner major the tests give, a bucket alone holding all of it; test_settings.py tries each
# bound's refusal.
DOMAIN = "arn:aws:es:eu-west-1:123456789012:domain/reviews-domain"
HOTELS = "arn:aws:es:eu-west-1:123456789012:domain/hotels"
HADOOP = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hadoop-AbCdEf"
KEYTAB = "arn:aws:ssm:eu-west-1:123456789012:parameter/usp/hive-keytab"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"
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


def platform_file(tmp_path: Path, platform: dict[str, Any] = TEST_PLATFORM) -> Path:
    path = tmp_path / "test-platform.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(platform))
    return path


def make(
    tmp_path: Path, target: str, **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """FAKE_* variables set the stand-in's answers; the others are Make's (PLATFORM_FILE: TEST_PLATFORM's)."""
    env = {k: v for k, v in variables.items() if k.startswith("FAKE_")}
    given = {k: v for k, v in variables.items() if k not in env}
    given.setdefault("PLATFORM_FILE", str(platform_file(tmp_path)))
    return fake_aws.make(tmp_path, target, env, **given)


GOOD = {
    "GITHUB_REPO": "hotel-profiling/usp-model",
    "DATA_LAKE_BUCKET": "hotel-lake",
    "OUTPUT_BUCKET": "hotel-out",
}


def without_settings(tmp_path: Path) -> dict[str, str]:
    """SETTINGS_FILE for a deploy that takes every setting from the variables: an empty settings file (the
    repository's settings.yml would add its own overrides)."""
    empty = tmp_path / "empty-settings.yml"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_text("")
    return {"SETTINGS_FILE": str(empty)}


def deploy_call(calls: list[list[str]]) -> list[str]:
    (call,) = [c for c in calls if c[:2] == ["cloudformation", "deploy"]]
    return call


def test_deploy_of_a_new_stack_makes_the_cloudformation_deploy_call_in_the_default_vpc(
    tmp_path: Path,
) -> None:
    done, calls = make(
        tmp_path,
        "deploy",
        **GOOD,
        **without_settings(tmp_path),
        AWS_REGION="eu-west-1",
        FAKE_CONNECTION_STATUS="PENDING",
        FAKE_STACK_EXISTS="no",
    )

    assert done.returncode == 0, done.stderr
    assert [c[:2] for c in calls[:4]] == [
        ["cloudformation", "describe-stacks"], ["ec2", "describe-vpcs"], ["ec2", "describe-subnets"],
        ["ec2", "describe-security-groups"],
    ]  # fmt: skip
    assert "Name=vpc-id,Values=vpc-0a1b2c3d" in calls[2] and "Name=default-for-az,Values=true" in calls[2]
    assert calls[4] == [
        "cloudformation", "deploy", "--region", "eu-west-1", "--stack-name", "notebook-pipeline-usp-model",
        "--template-file", f"{REPO}/template/pipeline.yaml",
        "--capabilities", "CAPABILITY_IAM", "--no-fail-on-empty-changeset",
        "--tags", "notebook-pipeline:platform=test-platform", "notebook-pipeline:model=usp-model",
        "--parameter-overrides", "GitHubRepository=hotel-profiling/usp-model", "GitHubBranch=main",
        "ConnectionArn=", *ONE_STACK, "NotebookPath=usp.ipynb", "PlatformStackName=test-platform",
        "RunnerImage=", "DataLakeBucket=hotel-lake", "OutputBucket=hotel-out",
        "NotificationEmails=", *SOURCES_OFF, "Subnets=subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroups=sg-0a1b2c3d", "AssignPublicIp=ENABLED", "OutputDatabase=notebook_pipeline_usp_model",
    ]  # fmt: skip
    assert calls[5][:2] == ["cloudformation", "describe-stacks"]
    assert "runs start in the default VPC vpc-0a1b2c3d" in done.stderr
    assert "authorize the GitHub connection" in done.stderr


def test_deploy_ends_with_the_stacks_dashboard_before_the_next_step(tmp_path: Path) -> None:
    url = "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/s-eu-west-1"
    done, _ = make(
        tmp_path,
        "deploy",
        **GOOD,
        **without_settings(tmp_path),
        FAKE_OUTPUTS=json.dumps({"DashboardUrl": url}),
    )
    older, _ = make(tmp_path / "older", "deploy", **GOOD, **without_settings(tmp_path / "older"))

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[-2:] == [
        "pipeline: its dashboard (runs and failures by exit code, rows, durations, validations, alarms): "
        + url,
        "Next step: push to main; the pipeline starts on every push.",
    ]
    assert (older.returncode, "its dashboard" in older.stderr) == (0, False)  # a stack of an older template


def test_updating_a_stack_keeps_its_network_and_run_settings_unless_given(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, **without_settings(tmp_path))

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ec2"]
    # nothing of the run: CloudFormation keeps it
    assert deploy_call(calls)[-9:] == ["NotificationEmails=", *SOURCES_OFF]


def test_run_settings_given_are_passed_and_an_empty_schedule_removes_it(tmp_path: Path) -> None:
    done, calls = make(
        tmp_path, "deploy", **GOOD, SCHEDULE="", SCHEDULE_TIMEZONE="Europe/Amsterdam",
        OUTPUT_PREFIX="usp/daily", TASK_CPU="2048", TASK_MEMORY="4096", SUBNETS="subnet-0a1b2c3d4e5f60718",
        SECURITY_GROUPS="sg-0a1b2c3d", ASSIGN_PUBLIC_IP="DISABLED", FAKE_STACK_EXISTS="no",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ec2"]
    assert deploy_call(calls)[-13:] == [
        "ScheduleExpression=", "ScheduleTimezone=Europe/Amsterdam", "OutputPrefix=usp/daily",
        "OutputTable=usp", "SnapshotRetentionDays=30", "ConsumerScanLimitBytes=10737418240",  # settings.yml's
        "TaskCpu=2048", "TaskMemory=4096", "RunnerMajorVersion=1",  # settings.yml's
        "Subnets=subnet-0a1b2c3d4e5f60718", "SecurityGroups=sg-0a1b2c3d",
        "AssignPublicIp=DISABLED", "OutputDatabase=notebook_pipeline_usp_model",
    ]  # fmt: skip


def test_a_new_stack_without_subnets_in_a_region_without_default_vpc_stops_with_the_fix(
    tmp_path: Path,
) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, FAKE_STACK_EXISTS="no", FAKE_NO_DEFAULT_VPC="1")

    assert done.returncode == 2
    assert not [c for c in calls if c[:2] == ["cloudformation", "deploy"]]
    assert "the region has no default VPC: set SUBNETS=" in done.stderr


@pytest.mark.parametrize(
    "target, image",
    [("deploy", PROMOTED), ("deploy-plan", f"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/usp@{DIGEST}")],
)
def test_updating_a_stack_passes_the_image_the_last_validation_promoted(
    tmp_path: Path, target: str, image: str
) -> None:
    done, calls = make(tmp_path, target, **GOOD, AWS_REGION="eu-west-1", FAKE_VALIDATED_IMAGE=image)

    pattern = PARAMETERS["ValidatedImage"]["AllowedPattern"]
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(pattern, image)  # the template takes it
    assert f"VALIDATED_IMAGE='{pattern.removeprefix('^$|')}'" in (REPO / "scripts/pipeline.sh").read_text()
    assert calls[1] == [
        "ssm", "get-parameter", "--region", "eu-west-1",
        "--name", "/notebook-pipeline-usp-model/validated-image",
        "--query", "Parameter.Value", "--output", "text",
    ]  # fmt: skip
    assert f"ValidatedImage={image}" in deploy_call(calls)


NOT_PROMOTED = {
    "parameter missing": None,
    "none promoted yet": "none",
    "a tag": f"{REPOSITORY}:latest",
    "a short digest": PROMOTED[:-1],
}


@pytest.mark.parametrize("image", NOT_PROMOTED.values(), ids=NOT_PROMOTED.keys())
def test_updating_a_stack_without_a_promoted_image_passes_none_and_says_the_runs_keep_the_stacks(
    tmp_path: Path, image: str | None
) -> None:
    fake = {} if image is None else {"FAKE_VALIDATED_IMAGE": image}
    done, calls = make(tmp_path, "deploy", **GOOD, **fake)

    assert done.returncode == 0, done.stderr
    assert image is None or not re.fullmatch(PARAMETERS["ValidatedImage"]["AllowedPattern"], image)
    assert calls[1][:2] == ["ssm", "get-parameter"]
    # None passed: CloudFormation keeps the stack's.
    assert not [arg for arg in deploy_call(calls) if arg.startswith("ValidatedImage=")]
    (said,) = [line for line in done.stderr.splitlines() if "validated-image" in line]
    assert "the runs keep the stack's image until the first validation promotes one" in said


def test_creating_a_stack_passes_no_validated_image(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, FAKE_STACK_EXISTS="no", FAKE_VALIDATED_IMAGE=PROMOTED)

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ssm"]  # a new stack's parameter holds none
    assert not [arg for arg in deploy_call(calls) if arg.startswith("ValidatedImage=")]


def test_bare_repository_name_takes_the_owner_from_github_owner(tmp_path: Path) -> None:
    variables = {**GOOD, "GITHUB_REPO": "usp-model", "GITHUB_OWNER": "hotel-profiling"}
    done, calls = make(
        tmp_path, "deploy", **variables, CONNECTION_ARN=CONNECTION, GITHUB_BRANCH="release/1",
        NOTIFICATION_EMAILS="data-eng@example.com,oncall@example.com",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "GitHubRepository=hotel-profiling/usp-model" in deploy_call(calls)
    assert f"ConnectionArn={CONNECTION}" in deploy_call(calls)
    assert "GitHubBranch=release/1" in deploy_call(calls)
    assert "NotificationEmails=data-eng@example.com,oncall@example.com" in deploy_call(calls)
    assert "Next step: push to release/1" in done.stderr


def test_plan_creates_the_change_set_and_shows_it_without_executing_it(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy-plan", **GOOD, STACK_NAME="usp-ci")

    assert done.returncode == 0, done.stderr
    assert calls[0][:2] == ["cloudformation", "describe-stacks"]  # an existing stack keeps its network
    assert calls[1][:2] == ["ssm", "get-parameter"]  # and runs the image the last validation promoted
    calls = calls[2:]
    assert calls[0][-1] == "--no-execute-changeset"
    assert calls[0][calls[0].index("--stack-name") + 1] == "usp-ci"
    assert calls[1][:4] == [
        "cloudformation", "describe-change-set", "--change-set-name",
        "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/awscli-cloudformation-package-deploy-1/abc",
    ]  # fmt: skip
    assert len(calls) == 2  # nothing executed
    assert "not executed" in done.stderr


# The messages: what failed and what to do. Which values make deploy refuses is the template's to say (see
# test_make_deploy_refuses_exactly_the_values_the_template_refuses), and the checks it has of its own.
BAD = {
    "no repository": ({"GITHUB_REPO": ""}, "GITHUB_REPO is not set"),
    "no owner": ({"GITHUB_REPO": "usp-model"}, "GITHUB_REPO=usp-model has no owner"),
    "malformed repository": ({"GITHUB_REPO": "a/b/c"}, "GITHUB_REPO=a/b/c is not valid: use owner/name"),
    "missing bucket": ({"DATA_LAKE_BUCKET": ""}, "DATA_LAKE_BUCKET is not set"),
    "malformed region": ({"AWS_REGION": "Europe"}, "AWS_REGION=Europe is not valid"),
    "malformed stack": ({"STACK_NAME": "1stack"}, "STACK_NAME=1stack is not valid"),
    "stack name too long for the mail subjects": (
        {"STACK_NAME": "s" * 65},
        f"STACK_NAME={'s' * 65} is not valid",
    ),
    "memory out of range": (
        {"TASK_MEMORY": "100"},
        "TASK_MEMORY=100 is not valid: a whole number from 512 to 122880 (MiB",
    ),
    "crontab schedule": ({"SCHEDULE": "0 6 * * *"}, "SCHEDULE=0 6 * * * is not valid: cron(minutes hours"),
    "unknown time zone": (
        {"SCHEDULE_TIMEZONE": "Mars/Olympus"},
        "SCHEDULE_TIMEZONE=Mars/Olympus is not a time zone",
    ),
    "time zone path": (
        {"SCHEDULE_TIMEZONE": "../etc/passwd"},
        "SCHEDULE_TIMEZONE=../etc/passwd is not a time zone",
    ),
    "subnets alone": ({"SUBNETS": "subnet-0a1b2c3d"}, "set SUBNETS and SECURITY_GROUPS together"),
    "another platform stack than the platform file's": (
        {"PLATFORM_STACK": "other-platform"},
        "PLATFORM_STACK=other-platform is not the stack of the platform file",
    ),
    "model dir that is no folder": (
        {"MODEL_DIR": "/nonexistent/hotel-usp"},
        (
            "MODEL_DIR=/nonexistent/hotel-usp is not a folder: give the checkout of the model's repository, "
            "e.g. MODEL_DIR=../hotel-usp"
        ),
    ),
    "a changed share above 1": (
        {"MAX_CHANGED_SHARE": "1.5"},
        (
            "MAX_CHANGED_SHARE=1.5 is not valid: a number from 0 to 1 with at most 4 decimals, e.g. 0.1 for "
            "10%; empty for no limit"
        ),
    ),
    "a changed share in words": (
        {"MAX_CHANGED_SHARE": "lots"},
        "MAX_CHANGED_SHARE=lots is not valid: a number",
    ),
    "a compare key that is no column name": (
        {"COMPARE_KEYS": "accommodation_id,usp-count"},
        (
            "COMPARE_KEYS=accommodation_id,usp-count is not valid: up to 10 column names (letters, digits "
            "and '_'), comma-separated, e.g. accommodation_id; empty compares whole rows"
        ),
    ),
    "an approval the template refuses": (
        {"RELEASE_APPROVAL": "always"},
        (
            "RELEASE_APPROVAL=always is not valid: none, or required (each validated release waits for make "
            "approve or make reject)"
        ),
    ),
    "malformed subnet": (
        {"SUBNETS": "subnet-x", "SECURITY_GROUPS": "sg-0a1b2c3d"},
        "SUBNETS=subnet-x is not valid",
    ),
}


@pytest.mark.parametrize("override, message", BAD.values(), ids=BAD.keys())
def test_bad_variables_stop_before_any_aws_call(
    tmp_path: Path, override: dict[str, str], message: str
) -> None:
    done, calls = make(tmp_path, "deploy", **{**GOOD, **override})

    assert done.returncode != 0
    assert calls == []
    assert done.stderr.splitlines()[0].startswith(f"pipeline: {message}")


@pytest.mark.parametrize("target, state", [("pause", "DISABLED"), ("resume", "ENABLED")])
def test_pause_and_resume_set_only_the_schedule_state(tmp_path: Path, target: str, state: str) -> None:
    done, calls = make(tmp_path, target, STACK_NAME="usp-ci")

    assert done.returncode == 0, done.stderr
    assert calls[1] == [
        "cloudformation", "update-stack", "--stack-name", "usp-ci", "--use-previous-template",
        "--capabilities", "CAPABILITY_IAM", "--parameters",
        "ParameterKey=GitHubRepository,UsePreviousValue=true",
        "ParameterKey=ScheduleExpression,UsePreviousValue=true",
        "ParameterKey=Subnets,UsePreviousValue=true", f"ParameterKey=ScheduleState,ParameterValue={state}",
    ]  # fmt: skip
    assert calls[2] == ["cloudformation", "wait", "stack-update-complete", "--stack-name", "usp-ci"]
    assert f"the daily schedule of usp-ci is {state}" in done.stderr


def test_status_and_delete_name_the_stack_from_the_repository(tmp_path: Path) -> None:
    status, status_calls = make(tmp_path / "s", "status", GITHUB_REPO="hotel-profiling/usp.model")
    delete, delete_calls = make(tmp_path / "d", "delete", STACK_NAME="usp-ci", AWS_REGION="eu-west-1")

    assert (status.returncode, delete.returncode) == (0, 0)
    assert status_calls[0][:4] == [
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        "notebook-pipeline-usp-model",
    ]
    assert status_calls[1][:2] == ["cloudformation", "describe-stacks"]  # its outputs: no production stack
    assert status_calls[2][:4] == [
        "codepipeline",
        "list-pipeline-executions",
        "--pipeline-name",
        "notebook-pipeline-usp-model",
    ]
    assert delete_calls == [
        ["cloudformation", "delete-stack", "--region", "eu-west-1", "--stack-name", "usp-ci"],
        [
            "cloudformation",
            "wait",
            "stack-delete-complete",
            "--region",
            "eu-west-1",
            "--stack-name",
            "usp-ci",
        ],
    ]


# Each variable make deploy checks, the template parameter it sets, and values to try: the template says
# which ones make deploy must refuse. The schedule's, time zone's and output prefix's are test_runs.py's too.
TRIED = {
    "GITHUB_REPO": ("GitHubRepository", [
        "hotel-profiling/usp-model", "a/b", "o/" + "n" * 100, "o" * 39 + "/u.s_p-1", "", "usp-model", "a/b/c",
        "-o/n", "o/" + "n" * 101, "o" * 40 + "/n", "o/n m", "o_x/n",
    ]),
    "GITHUB_BRANCH": ("GitHubBranch", [
        "main", "release/2024", "a.b_c-d", "b" * 255, "", "-x", "/main", "b" * 256, "a b", "a:b",
    ]),
    "NOTEBOOK": ("NotebookPath", [
        "usp.ipynb", "notebooks/daily/usp.ipynb", "_a-b/c.d.ipynb", "", "usp.py", "/abs/usp.ipynb",
        "../usp.ipynb", ".usp.ipynb", "a b.ipynb", "dir/.ipynb",
    ]),
    "CONNECTION_ARN": ("ConnectionArn", [
        "", CONNECTION, CONNECTION.replace("codeconnections", "codestar-connections"),
        CONNECTION.replace("arn:aws:", "arn:aws-cn:"), "my-connection", CONNECTION[:-1], f"{CONNECTION}/x",
        CONNECTION.replace("123456789012", "12345678901"), CONNECTION.replace("codeconnections", "codebuild"),
    ]),
    "DATA_LAKE_BUCKET": ("DataLakeBucket", [
        "hotel-lake", "abc", "a.b-c", "b" * 63, "", "ab", "b" * 64, "Hotel-Lake", "hotel_lake", "-lake",
        "lake-",
    ]),
    "OUTPUT_BUCKET": ("OutputBucket", ["hotel-out", "0.9", "", "Hotel-Out", "hotel_out", "out.", "o", "a b"]),
    "NOTIFICATION_EMAILS": ("NotificationEmails", [
        "", "a@x.io", "data-eng@example.com,oncall@example.com", "a@x.io,b@y.co.uk,c@z.io", "data-eng", "a@x",
        "a@x.io,b@x.io,c@x.io,d@x.io", "a@x.io, b@x.io", "a@x.io,", "a@@x.io",
    ]),
    "SCHEDULE": ("ScheduleExpression", []),
    "SCHEDULE_TIMEZONE": ("ScheduleTimezone", []),
    "OUTPUT_PREFIX": ("OutputPrefix", ["usp/daily(1)", "o/b/c/d/e/f", "a b", "usp\\daily", "o/b/c/d/e/f/g"]),
    "TASK_CPU": ("TaskCpu", ["256", "1024", "16384", "", "3000", "1 vCPU", "0256", "32768"]),
    "TASK_MEMORY": ("TaskMemory", [
        "512", "2048", "122880", "", "511", "122881", "100", "999999", "0", "-2048", "2GB", "2 048",
        "99999999999999999999",
    ]),
    "ASSIGN_PUBLIC_IP": ("AssignPublicIp", ["ENABLED", "DISABLED", "", "yes", "enabled"]),
    "DATA_LAKE_PREFIX": ("DataLakePrefix", [
        "snapshots", "lake/snapshots", "a.b_c-(1)", "", "/snapshots", "snapshots/", "a//b", "a b", "a\\b",
    ]),
    "VALIDATION_DATE": ("ValidationDate", [
        "2019-08-01", "2024-02-29", "2019-12-31", "", "2019-8-1", "2019-13-01", "2019-08-32", "20190801",
        "2019-08-01T00:00", "yesterday",
    ]),
    # none inside OUTPUT_PREFIX's value beside it, nor holding it (test_validation_prefix.py refuses those)
    "VALIDATION_PREFIX": ("ValidationPrefix", [
        "validation", "ci/validation", "v/b/c/d/e/f", "", "/validation", "validation/", "a//b", "a b",
        "v/b/c/d/e/f/g",
    ]),
    "TABLE_DATABASE": ("OutputDatabase", ["usp_models", "_x1", "", "Usp", "usp-models", "1usp", "a" * 256]),
    "TABLE_NAME": ("OutputTable", ["usp", "usp_daily_v2", "", "USP", "usp.daily", "9x"]),
    "KEEP_SNAPSHOT_DAYS": ("SnapshotRetentionDays", ["1", "30", "3650", "", "0", "3651", "30d"]),
    "CONSUMER_SCAN_LIMIT_BYTES": ("ConsumerScanLimitBytes", [
        "10485760", "10737418240", "", "10485759", "10 GiB", "1125899906842625",
    ]),
    "COMPARE_KEYS": ("CompareKeyColumns", [
        "accommodation_id", "accommodation_id,usp", "_k1", ",".join(f"c{n}" for n in range(10)), "k" * 64, "",
        ",".join(f"c{n}" for n in range(11)), "k" * 65, "1id", "usp-count", "a,,b", "a, b", ",a", "a,", "a.b",
        "a;b",
    ]),
    "MAX_CHANGED_SHARE": ("MaxChangedShare", [
        "0", "0.1", "0.0001", "0.9999", "1", "1.0", "1.0000", "", "1.5", "lots", "0.12345", "1.01", "-0.1",
        ".5", "10%", "0,1", "01", "1e-4", "0.1 ",
    ]),
    "RELEASE_APPROVAL": ("ReleaseApproval", ["none", "required", "", "None", "REQUIRED", "yes", "approval"]),
    # A valid name needs the settings file's environment of that name: test_settings.py deploys them.
    "ENV": ("EnvironmentName", ["", "Staging", "1prod", "e" * 17, "pro-d", "prod uction", "staging/x"]),
}  # fmt: skip
# Checked, but against no template constraint: the stack's name and region are no parameters, and Subnets and
# SecurityGroups are typed ids (List<AWS::EC2::Subnet::Id>...) that CloudFormation looks up in the account.
# MODEL_DIR must be a folder, PLATFORM_STACK the platform file's stack.
UNCONSTRAINED = {"STACK_NAME", "AWS_REGION", "SUBNETS", "SECURITY_GROUPS", "MODEL_DIR", "PLATFORM_STACK"}


def template_accepts(parameter: dict[str, Any], value: str) -> bool:
    """What CloudFormation would take for the parameter (a Number as a whole number: MiB, not fractions)."""
    if "AllowedValues" in parameter:
        return value in [str(allowed) for allowed in parameter["AllowedValues"]]
    if parameter["Type"] == "Number":
        whole = re.fullmatch(r"-?[0-9]+", value) is not None
        return whole and parameter["MinValue"] <= int(value) <= parameter["MaxValue"]
    return re.fullmatch(parameter["AllowedPattern"], value) is not None


def deploy_must_accept(name: str, value: str) -> bool:
    """What the template takes; and an empty value where the parameter has a Default, which means: keep the
    stack's value (or take the default on creation)."""
    parameter = PARAMETERS[name]
    return template_accepts(parameter, value) or (value == "" and "Default" in parameter)


def checked_variables() -> set[str]:
    """The variables scripts/pipeline.sh checks (itself or with stack.sh's check functions)."""
    code = "\n".join(
        line
        for script in ("pipeline.sh", "stack.sh")
        for line in (REPO / "scripts" / script).read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    checked = re.findall(
        r"\b(?:check|check_number|pass_if_set|pass_if_given|pass_number_if_set) ([A-Z_]+)\b", code
    )
    return set(checked) | set(re.findall(r'\bdie "([A-Z_]+)[= ]', code))


def test_make_deploy_refuses_exactly_the_values_the_template_refuses(tmp_path: Path) -> None:
    """A value the template's AllowedPattern, AllowedValues or MinValue/MaxValue refuses stops make deploy
    before any AWS call, naming the variable; every other one reaches the parameter overrides."""
    from test_runs import PATTERNS

    assert checked_variables() == set(TRIED) | UNCONSTRAINED, "pipeline.sh checks other variables than these"
    accepted = {}
    for variable, (name, values) in TRIED.items():
        values = values + [v for listed in PATTERNS.get(name, ()) for v in listed]
        accepted[variable] = [v for v in values if deploy_must_accept(name, v)]
        refused = [v for v in values if not deploy_must_accept(name, v)]
        assert refused and accepted[variable], f"try {variable} values {name} accepts and values it refuses"
        for n, value in enumerate(refused):
            done, calls = make(
                tmp_path / f"{variable}-{n}", "deploy", **{**GOOD, "STACK_NAME": "usp-ci", variable: value}
            )
            assert (done.returncode, calls) == (2, []), f"{variable}={value!r}: the template refuses it"
            assert done.stderr.startswith(f"pipeline: {variable}"), done.stderr
    # The accepted values go through whole deploys, every variable's n-th value in the n-th one: fewer runs.
    for n in range(max(len(values) for values in accepted.values())):
        given = {variable: values[n] for variable, values in accepted.items() if n < len(values)}
        done, calls = make(tmp_path / f"accepted-{n}", "deploy", **{**GOOD, "STACK_NAME": "usp-ci", **given})
        assert done.returncode == 0, f"{given}: {done.stderr}"
        passed = {f"{TRIED[variable][0]}={value}" for variable, value in given.items() if value}
        assert passed - set(deploy_call(calls)) == set(), "given, but not passed to CloudFormation"


def test_pipeline_sh_checks_each_variable_it_passes_with_the_template_parameters_own_pattern() -> None:
    """pass_if_set's and pass_if_given's regexes are the template's AllowedPattern (or its AllowedValues as
    one); pass_if_set's without the pattern's leading '^$|': an empty value is not passed (the stack keeps
    its own), where pass_if_given passes it, which the template reads as none."""
    code = (REPO / "scripts" / "pipeline.sh").read_text()
    passed = re.findall(r"\b(pass_if_set|pass_if_given) ([A-Z_]+) ([A-Za-z]+) '([^']*)'", code)

    assert {variable for _, variable, _, _ in passed} >= set(PROMOTION)
    for how, variable, name, regex in passed:
        parameter = PARAMETERS[name]
        pattern = parameter.get("AllowedPattern") or f"^({'|'.join(map(str, parameter['AllowedValues']))})$"
        assert regex == (pattern.removeprefix("^$|") if how == "pass_if_set" else pattern), variable
        assert how == "pass_if_set" or re.fullmatch(pattern, ""), f"{variable}: '' is no value of {name}"


# The promotion's variables and their parameters; (the variables given, what the deploy passes of them).
PROMOTION = {
    "COMPARE_KEYS": "CompareKeyColumns", "MAX_CHANGED_SHARE": "MaxChangedShare",
    "RELEASE_APPROVAL": "ReleaseApproval",
}  # fmt: skip
PROMOTION_GIVEN = {
    "unset: the stack's": ({}, []),
    "set": (
        {"COMPARE_KEYS": "accommodation_id,usp", "MAX_CHANGED_SHARE": "0.25", "RELEASE_APPROVAL": "required"},
        ["CompareKeyColumns=accommodation_id,usp", "MaxChangedShare=0.25", "ReleaseApproval=required"],
    ),
    "set empty: whole rows, no limit, the stack's approval": (
        {"COMPARE_KEYS": "", "MAX_CHANGED_SHARE": "", "RELEASE_APPROVAL": ""},
        ["CompareKeyColumns=", "MaxChangedShare="],
    ),
}  # fmt: skip


@pytest.mark.parametrize("variables, passed", PROMOTION_GIVEN.values(), ids=PROMOTION_GIVEN.keys())
def test_the_promotion_variables_are_passed_when_set_and_empty_ones_as_none(
    tmp_path: Path, variables: dict[str, str], passed: list[str]
) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, **without_settings(tmp_path), **variables)

    assert done.returncode == 0, done.stderr
    names = tuple(f"{parameter}=" for parameter in PROMOTION.values())
    assert [arg for arg in deploy_call(calls) if arg.startswith(names)] == passed


def test_a_new_stack_names_its_table_database_after_itself_and_an_update_never_renames_it(
    tmp_path: Path,
) -> None:
    """Replacing the Glue database would drop the table's registration: only creation gets the default."""
    done, calls = make(tmp_path / "new", "deploy", **GOOD, STACK_NAME="Usp-Model-ci", FAKE_STACK_EXISTS="no")
    assert done.returncode == 0, done.stderr
    assert "OutputDatabase=usp_model_ci" in deploy_call(calls)

    done, calls = make(
        tmp_path / "update", "deploy", **GOOD, STACK_NAME="Usp-Model-ci", FAKE_STACK_EXISTS="yes"
    )
    assert done.returncode == 0, done.stderr
    assert not [a for a in deploy_call(calls) if a.startswith("OutputDatabase=")]


# --- a model's checkout (MODEL_DIR): its settings.yml is read as data, nothing in it runs -------------------

MODEL_SETTINGS = (
    "notebook: models/adr.ipynb\nrunner: {major: 2}\ndata_lake: {bucket: adr-lake, prefix: raw}\n"
    "output: {bucket: adr-out, prefix: adr/daily}\n"
)
# What the deploy passes of the model's settings.yml.
FROM_MODEL = {
    "NotebookPath=models/adr.ipynb", "DataLakeBucket=adr-lake", "DataLakePrefix=raw", "OutputBucket=adr-out",
    "OutputPrefix=adr/daily", "RunnerMajorVersion=2",
}  # fmt: skip
# The stand-in aws is the test's own Python, run with the same PYTHONPATH: its start is not the deploy's.
PYTHON_MARK = (
    "import pathlib, sys\n"
    "if not sys.argv[0].endswith('/bin/aws'):\n"
    "    with pathlib.Path({log!r}).open('a') as log:\n"
    "        log.write({name!r} + chr(10))\n"
)
SHELL_MARK = "#!/bin/sh\necho {name} >> '{log}'\n"
# Each file of a hostile model checkout, and how it would run: imported by a Python whose path holds the
# checkout (the current folder, PYTHONPATH), or run by a shell, make or a PATH that resolves in it.
HOSTILE = {
    "runner/__init__.py": PYTHON_MARK, "runner/redaction.py": PYTHON_MARK, "runner/config.py": PYTHON_MARK,
    "scripts/settings.py": PYTHON_MARK, "scripts/bounds.py": PYTHON_MARK, "sitecustomize.py": PYTHON_MARK,
    "usercustomize.py": PYTHON_MARK, "yaml.py": PYTHON_MARK, "bounds.py": PYTHON_MARK,
    "settings.py": PYTHON_MARK,
    "hostile.pth": "import pathlib; pathlib.Path({log!r}).open('a').write({name!r} + chr(10))\n",
    "scripts/pipeline.sh": SHELL_MARK, "scripts/stack.sh": SHELL_MARK, ".venv/bin/python": SHELL_MARK,
    ".venv/bin/pip": SHELL_MARK, "aws": SHELL_MARK, "python3": SHELL_MARK,
    "Makefile": ".PHONY: deploy venv\ndeploy venv %:\n\t@echo {name} >> '{log}'\n",
}  # fmt: skip


def hostile_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A model's checkout whose every file above writes its name into a log when run or imported (and a git
    repository whose fsmonitor would do the same, on a git command that reads its index); the checkout and
    the log."""
    checkout, log = tmp_path / "hotel-usp", tmp_path / "ran.log"
    for name, text in HOSTILE.items():
        path = checkout / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(name=name, log=str(log)))
        path.chmod(0o755)
    (checkout / "settings.yml").write_text(MODEL_SETTINGS)
    (checkout / "requirements.txt").write_text("pandas\n")
    (checkout / "requirements-dev.txt").write_text("pytest\n")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    fsmonitor = f"echo .git/config core.fsmonitor >> '{log}'; false"
    subprocess.run(["git", "-C", str(checkout), "config", "core.fsmonitor", fsmonitor], check=True)
    return checkout, log


def test_make_deploy_with_a_model_dir_deploys_its_settings_and_runs_nothing_of_it(tmp_path: Path) -> None:
    """Even with the checkout on PYTHONPATH: settings.py runs isolated, from the platform's folder."""
    checkout, log = hostile_checkout(tmp_path)
    done, calls = make(
        tmp_path, "deploy", GITHUB_REPO="hotel-profiling/hotel-usp", MODEL_DIR=str(checkout),
        PYTHONPATH=f"{checkout}:{checkout / 'scripts'}",
    )  # fmt: skip

    assert not log.exists(), f"the model's files ran: {log.read_text()}"
    assert done.returncode == 0, done.stderr
    call = deploy_call(calls)
    assert set(call) >= FROM_MODEL, call
    assert call[call.index("--tags") + 1 : call.index("--parameter-overrides")] == [
        "notebook-pipeline:platform=test-platform", "notebook-pipeline:model=hotel-usp",
    ]  # fmt: skip


def test_the_platforms_makefile_run_in_the_models_folder_runs_nothing_of_it(tmp_path: Path) -> None:
    """`make -f <platform>/Makefile deploy MODEL_DIR=.` in the model's checkout: the deploy's venv, script
    and Python are the platform's, whatever the current folder."""
    checkout, log = hostile_checkout(tmp_path)
    fake_aws.make(tmp_path, "help")  # the stand-in aws in tmp_path/bin
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "AWS_", "STACK_", "FAKE_", "SETTINGS_", "PLATFORM_", "MODEL_"))
        and k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    }  # fmt: skip
    env |= {"PATH": f"{tmp_path / 'bin'}:{env['PATH']}", "AWS_CALLS": str(tmp_path / "calls.jsonl")}
    done = subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), "deploy", "GITHUB_REPO=hotel-profiling/hotel-usp",
         "MODEL_DIR=.", f"PLATFORM_FILE={platform_file(tmp_path)}"],
        cwd=checkout, env=env, capture_output=True, text=True,
    )  # fmt: skip

    assert not log.exists(), f"the model's files ran: {log.read_text()}"
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert set(deploy_call(calls)) >= FROM_MODEL


def test_a_model_dir_without_settings_yml_is_refused_before_any_aws_call(tmp_path: Path) -> None:
    checkout = tmp_path / "hotel-usp"
    checkout.mkdir()
    (checkout / "usp.ipynb").write_text("{}")
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/hotel-usp", MODEL_DIR=str(checkout))

    assert (done.returncode, calls) == (2, [])
    assert done.stderr.splitlines()[0] == (
        f"pipeline: MODEL_DIR={checkout} has no settings.yml: a model repository keeps its settings in "
        "settings.yml at its root (this repository's settings.yml shows every key), or name the file with "
        "SETTINGS_FILE=path"
    )


def test_settings_file_wins_over_the_model_dirs_settings_yml(tmp_path: Path) -> None:
    checkout, _ = hostile_checkout(tmp_path)
    other = tmp_path / "other.yml"
    other.write_text("data_lake: {bucket: hotel-lake}\noutput: {bucket: hotel-out}\n")
    done, calls = make(
        tmp_path, "deploy", GITHUB_REPO="o/r", MODEL_DIR=str(checkout), SETTINGS_FILE=str(other)
    )

    assert done.returncode == 0, done.stderr
    assert {"DataLakeBucket=hotel-lake", "OutputBucket=hotel-out"} <= set(deploy_call(calls))


def test_a_model_dirs_settings_yml_that_is_a_link_is_refused_before_any_aws_call(tmp_path: Path) -> None:
    """A link could have the deploy read (and quote in its messages) any file of the deployer's machine."""
    checkout = tmp_path / "hotel-usp"
    checkout.mkdir()
    (checkout / "settings.yml").symlink_to(REPO / "settings.yml")
    done, calls = make(tmp_path, "deploy", GITHUB_REPO="o/hotel-usp", MODEL_DIR=str(checkout))

    assert (done.returncode, calls) == (2, [])
    assert done.stderr.splitlines()[0] == (
        f"pipeline: MODEL_DIR={checkout} has a link as settings.yml: the model's settings are a file of its "
        "own, read as it is; replace the link by the file, or name a file with SETTINGS_FILE=path"
    )


def test_platform_stack_given_as_the_platform_files_deploys(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, PLATFORM_STACK="test-platform")

    assert done.returncode == 0, done.stderr
    assert "PlatformStackName=test-platform" in deploy_call(calls)


# --- a model's environments (settings.yml environments:, make ... ENV=staging|production) -----------------

STAGING_REPOSITORY = "arn:aws:ecr:eu-west-1:111111111111:repository/notebook-pipeline-usp-model-staging"
STAGING_VERSIONS = "notebook-pipeline-usp-model-staging-versionsbucket-0a1b2c3d"
# Staging builds from main into usp/staging and shares with production's account; production releases what
# staging validated into usp/daily (the file's), and mails its own alerts.
ENVIRONMENTS = (
    "data_lake: {bucket: hotel-lake}\noutput: {bucket: hotel-out, prefix: usp/daily}\n"
    "schedule: {expression: 'cron(0 6 * * ? *)'}\nalerts: {emails: [data-eng@example.com]}\n"
    "environments:\n"
    "  staging:\n"
    "    output: {prefix: usp/staging}\n"
    "    schedule: {expression: 'cron(0 5 * * ? *)'}\n"
    "    releases: {to_accounts: ['222222222222']}\n"
    "  production:\n"
    f"    releases: {{from_repository: '{STAGING_REPOSITORY}', from_versions_bucket: {STAGING_VERSIONS}}}\n"
    "    alerts: {emails: [oncall@example.com]}\n"
)
STAGING_OUTPUTS = {"ImageRepositoryArn": STAGING_REPOSITORY, "VersionsBucketName": STAGING_VERSIONS}


def environments_file(tmp_path: Path, text: str = ENVIRONMENTS) -> str:
    path = tmp_path / "environments.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def tags(call: list[str]) -> list[str]:
    return call[call.index("--tags") + 1 : call.index("--parameter-overrides")]


def test_make_deploy_env_staging_deploys_the_environments_own_stack_and_says_what_production_needs(
    tmp_path: Path,
) -> None:
    done, calls = make(
        tmp_path, "deploy", GITHUB_REPO="hotel-profiling/usp-model", ENV="staging",
        SETTINGS_FILE=environments_file(tmp_path), FAKE_OUTPUTS=json.dumps(STAGING_OUTPUTS),
    )  # fmt: skip

    call = deploy_call(calls)
    assert done.returncode == 0, done.stderr
    assert call[call.index("--stack-name") + 1] == "notebook-pipeline-usp-model-staging"
    assert tags(call) == [
        "notebook-pipeline:platform=test-platform", "notebook-pipeline:model=usp-model",
        "notebook-pipeline:environment=staging",
    ]  # fmt: skip
    assert {
        "EnvironmentName=staging", "ReleasesFromRepository=", "ReleasesFromVersionsBucket=",
        "ReleaseAccountIds=222222222222", "OutputPrefix=usp/staging", "ScheduleExpression=cron(0 5 * * ? *)",
        "NotificationEmails=data-eng@example.com",
    } <= set(call)  # fmt: skip
    assert calls[1] == [
        "ssm", "get-parameter", "--name", "/notebook-pipeline-usp-model-staging/validated-image",
        "--query", "Parameter.Value", "--output", "text",
    ]  # fmt: skip
    (line,) = [line for line in done.stderr.splitlines() if "environments.production" in line]
    assert line == (
        "pipeline: production releases what this environment validates: settings.yml "
        f"environments.production.releases: {{from_repository: '{STAGING_REPOSITORY}', from_versions_bucket: "
        f"{STAGING_VERSIONS}}} (from another AWS account: this environment's releases.to_accounts: [that "
        "account's id])"
    )
    assert "Next step: push to main" in done.stderr


def test_make_deploy_env_staging_of_a_stack_without_the_outputs_skips_what_production_needs(
    tmp_path: Path,
) -> None:
    done, _ = make(
        tmp_path, "deploy", GITHUB_REPO="o/r", ENV="staging", SETTINGS_FILE=environments_file(tmp_path)
    )

    assert done.returncode == 0, done.stderr
    assert "environments.production" not in done.stderr
    assert "Next step: push to main" in done.stderr


def test_make_deploy_env_production_releases_from_staging_and_says_how_to_promote_not_to_push(
    tmp_path: Path,
) -> None:
    done, calls = make(
        tmp_path, "deploy", GITHUB_REPO="hotel-profiling/usp-model", ENV="production",
        SETTINGS_FILE=environments_file(tmp_path), FAKE_CONNECTION_STATUS="PENDING",
    )  # fmt: skip

    call = deploy_call(calls)
    assert done.returncode == 0, done.stderr
    assert call[call.index("--stack-name") + 1] == "notebook-pipeline-usp-model-production"
    assert tags(call)[-1] == "notebook-pipeline:environment=production"
    assert {
        "EnvironmentName=production", f"ReleasesFromRepository={STAGING_REPOSITORY}",
        f"ReleasesFromVersionsBucket={STAGING_VERSIONS}", "ReleaseAccountIds=", "OutputPrefix=usp/daily",
        "NotificationEmails=oncall@example.com",
    } <= set(call)  # fmt: skip
    repo = "GITHUB_REPO=hotel-profiling/usp-model ENV=production"
    assert done.stderr.splitlines()[-3:] == [
        (
            "Next step: notebook-pipeline-usp-model-production has no pipeline (it never builds): it runs "
            "what staging validated, once promoted here."
        ),
        f"  Staging's validated versions: make versions {repo}",
        f"  Release one of them:          make promote {repo} TO=<version>",
    ]
    assert "push" not in done.stderr and "authorize the GitHub connection" not in done.stderr
    assert not [c for c in calls if "ConnectionStatus" in " ".join(c)]


def test_a_stack_of_no_environment_is_untagged_and_passes_none(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, **without_settings(tmp_path))

    assert done.returncode == 0, done.stderr
    assert [tag for tag in tags(deploy_call(calls)) if "environment" in tag] == []
    assert [arg for arg in deploy_call(calls) if arg.split("=")[0] in PARAMETERS] == [
        "GitHubRepository=hotel-profiling/usp-model", "GitHubBranch=main", "ConnectionArn=", *ONE_STACK,
        "NotebookPath=usp.ipynb", "PlatformStackName=test-platform", "RunnerImage=",
        "DataLakeBucket=hotel-lake", "OutputBucket=hotel-out", "NotificationEmails=", *SOURCES_OFF,
    ]  # fmt: skip


# Each make target in AWS, and the first call it makes (all name the stack).
FIRST_CALLS = {
    "status": ["cloudformation", "describe-stacks"],
    "pause": ["cloudformation", "describe-stacks"],
    "delete": ["cloudformation", "delete-stack"],
    "versions": ["cloudformation", "describe-stacks"],
    "run-remote": ["cloudformation", "describe-stacks"],
}


@pytest.mark.parametrize("target", FIRST_CALLS)
def test_every_target_in_aws_addresses_the_environments_stack_and_stack_name_wins(
    tmp_path: Path, target: str
) -> None:
    env, named = (
        make(tmp_path / name, target, GITHUB_REPO="o/usp.model", ENV="staging", DATE="2019-08-01", **stack)
        for name, stack in (("env", {}), ("named", {"STACK_NAME": "usp-ci"}))
    )

    for (done, calls), stack in ((env, "notebook-pipeline-usp-model-staging"), (named, "usp-ci")):
        assert calls and calls[0][:2] == FIRST_CALLS[target], done.stderr
        assert calls[0][calls[0].index("--stack-name") + 1] == stack


@pytest.mark.parametrize(
    ("target", "program"),
    [("status", "pipeline"), ("run-remote", "runs"), ("versions", "releases"), ("deploy", "pipeline")],
)
def test_a_bad_env_is_refused_by_every_script_before_any_aws_call(
    tmp_path: Path, target: str, program: str
) -> None:
    done, calls = make(tmp_path, target, **GOOD, ENV="Staging", DATE="2019-08-01")

    assert (done.returncode, calls) == (2, [])
    assert done.stderr.startswith(f"{program}: ENV=") and "is not valid" in done.stderr, done.stderr


def test_the_scripts_check_env_with_the_templates_pattern() -> None:
    code = (REPO / "scripts" / "stack.sh").read_text()
    pattern = PARAMETERS["EnvironmentName"]["AllowedPattern"]

    assert f"ENVIRONMENT_NAME='{pattern.removeprefix('^$|')}'" in code


def production_make(tmp_path: Path, target: str, **variables: str):
    """A make target on a production stack: its outputs say it releases from staging."""
    outputs = {
        "ReleasesFromStaging": "yes", "PromoteProjectName": "usp-promote", "RunTaskFamily": "usp-run",
        "VersionsBucketName": "production-versions", "VersionRecordsBucketName": STAGING_VERSIONS,
    }  # fmt: skip
    return make(
        tmp_path, target, GITHUB_REPO="hotel-profiling/usp-model", ENV="production",
        FAKE_OUTPUTS=json.dumps(outputs), FAKE_APPROVAL="InProgress\ttoken-0123\texecution-0123", **variables,
    )  # fmt: skip


@pytest.mark.parametrize("target", ["approve", "reject"])
def test_approving_or_rejecting_on_a_production_stack_is_refused_it_has_no_pipeline(
    tmp_path: Path, target: str
) -> None:
    done, calls = production_make(tmp_path, target, RELEASE="5")

    repo = "GITHUB_REPO=hotel-profiling/usp-model ENV=production"
    assert done.returncode == 2
    assert [c[:2] for c in calls] == [["cloudformation", "describe-stacks"]]  # no pipeline asked
    assert done.stderr.splitlines()[0] == (
        "releases: notebook-pipeline-usp-model-production releases what staging validated: it has no "
        "pipeline, so no release waits for approval in it (a release held for approval waits in "
        f"staging's: make {target} ... ENV=staging). Its release is make promote {repo} TO=<version> (make "
        f"versions {repo} lists staging's validated versions)"
    )


def test_status_of_a_production_stack_asks_no_pipeline(tmp_path: Path) -> None:
    done, calls = production_make(tmp_path, "status")

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "codepipeline"]
    assert "make promote GITHUB_REPO=hotel-profiling/usp-model ENV=production TO=<version>" in done.stderr


@pytest.mark.parametrize(
    ("outputs", "records"),
    [
        ({"VersionRecordsBucketName": STAGING_VERSIONS}, STAGING_VERSIONS),
        ({}, "production-versions"),  # a stack of an older template: its own
    ],
    ids=["production", "older stack"],
)
def test_make_versions_reads_the_records_where_the_stack_promotes_from_and_its_own_promotions(
    tmp_path: Path, outputs: dict[str, str], records: str
) -> None:
    stack = {"VersionsBucketName": "production-versions", "RunTaskFamily": "usp-run", **outputs}
    done, calls = make(
        tmp_path, "versions", GITHUB_REPO="o/usp", ENV="production", FAKE_OUTPUTS=json.dumps(stack)
    )

    assert done.returncode == 0, done.stderr
    copied = [c[2] for c in calls if c[:2] == ["s3", "cp"]]
    assert copied == [f"s3://{records}/versions/", "s3://production-versions/promotions/"]


def test_the_commands_make_versions_prints_name_the_environment(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "promotions").mkdir()
    record = {"version": 3, "image": PROMOTED, "commit": "0a1b2c3d" * 5, "validated_at": "2024-05-01T06:00Z"}
    (tmp_path / "versions" / "3.json").write_text(json.dumps(record))
    script = REPO / "scripts" / "versions.py"
    listed = {
        env: subprocess.run(
            ["python3", "-I", str(script), str(tmp_path), PROMOTED, "o/usp", *env],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        for env in [(), ("",), ("production",)]
    }  # fmt: skip

    assert listed[()] == listed[("",)]
    assert "Back:    make rollback GITHUB_REPO=o/usp TO=<version>" in listed[()]
    assert "Back:    make rollback GITHUB_REPO=o/usp ENV=production TO=<version>" in listed[("production",)]
    (forward,) = [line for line in listed[("production",)] if line.startswith("Forward:")]
    assert forward.startswith("Forward: make promote GITHUB_REPO=o/usp ENV=production TO=<version> [ACCEPT=")


def test_make_help_documents_env_for_every_target_in_aws() -> None:
    listed = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True)
    said = " ".join(listed.stdout.split())

    env = "ENV=staging|production: the environment's stack, settings.yml environments.<ENV> ("
    assert said.count(env) == 1, said
    assert said.split(env)[1].split(")")[0].split(", ") == [
        "deploy", "deploy-plan", "status", "versions", "rollback", "promote", "approve", "reject",
        "run-remote", "backfill", "pause", "resume", "delete",
    ]  # fmt: skip
