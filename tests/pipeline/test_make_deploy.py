"""`make deploy` and friends: argument checks before any AWS call, and the exact aws calls they make
(a stand-in `aws` on PATH records its arguments)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import fake_aws
import pytest
from support import REPO

CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"


def make(
    tmp_path: Path, target: str, **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """FAKE_* variables set the stand-in's answers; the others are Make's."""
    env = {k: v for k, v in variables.items() if k.startswith("FAKE_")}
    return fake_aws.make(tmp_path, target, env, **{k: v for k, v in variables.items() if k not in env})


GOOD = {
    "GITHUB_REPO": "hotel-profiling/usp-model",
    "DATA_LAKE_BUCKET": "hotel-lake",
    "OUTPUT_BUCKET": "hotel-out",
}


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
        "--parameter-overrides", "GitHubRepository=hotel-profiling/usp-model", "GitHubBranch=main",
        "ConnectionArn=", "NotebookPath=usp.ipynb", "DataLakeBucket=hotel-lake", "OutputBucket=hotel-out",
        "NotificationEmails=", "Subnets=subnet-0a1b2c3d,subnet-4e5f6a7b", "SecurityGroups=sg-0a1b2c3d",
        "AssignPublicIp=ENABLED",
    ]  # fmt: skip
    assert calls[5][:2] == ["cloudformation", "describe-stacks"]
    assert "runs start in the default VPC vpc-0a1b2c3d" in done.stderr
    assert "authorize the GitHub connection" in done.stderr


def test_updating_a_stack_keeps_its_network_and_run_settings_unless_given(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD)

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ec2"]
    assert deploy_call(calls)[-1] == "NotificationEmails="  # nothing of the run: CloudFormation keeps it


def test_run_settings_given_are_passed_and_an_empty_schedule_removes_it(tmp_path: Path) -> None:
    done, calls = make(
        tmp_path, "deploy", **GOOD, SCHEDULE="", SCHEDULE_TIMEZONE="Europe/Amsterdam",
        OUTPUT_PREFIX="usp/daily", TASK_CPU="2048", TASK_MEMORY="4096", SUBNETS="subnet-0a1b2c3d4e5f60718",
        SECURITY_GROUPS="sg-0a1b2c3d", ASSIGN_PUBLIC_IP="DISABLED", FAKE_STACK_EXISTS="no",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ec2"]
    assert deploy_call(calls)[-8:] == [
        "ScheduleExpression=", "ScheduleTimezone=Europe/Amsterdam", "OutputPrefix=usp/daily", "TaskCpu=2048",
        "TaskMemory=4096", "Subnets=subnet-0a1b2c3d4e5f60718", "SecurityGroups=sg-0a1b2c3d",
        "AssignPublicIp=DISABLED",
    ]  # fmt: skip


def test_a_new_stack_without_subnets_in_a_region_without_default_vpc_stops_with_the_fix(
    tmp_path: Path,
) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, FAKE_STACK_EXISTS="no", FAKE_NO_DEFAULT_VPC="1")

    assert done.returncode == 2
    assert not [c for c in calls if c[:2] == ["cloudformation", "deploy"]]
    assert "the region has no default VPC: set SUBNETS=" in done.stderr


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
    calls = calls[1:]
    assert calls[0][-1] == "--no-execute-changeset"
    assert calls[0][calls[0].index("--stack-name") + 1] == "usp-ci"
    assert calls[1][:4] == [
        "cloudformation", "describe-change-set", "--change-set-name",
        "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/awscli-cloudformation-package-deploy-1/abc",
    ]  # fmt: skip
    assert len(calls) == 2  # nothing executed
    assert "not executed" in done.stderr


BAD = {
    "no repository": ({"GITHUB_REPO": ""}, "GITHUB_REPO is not set"),
    "no owner": ({"GITHUB_REPO": "usp-model"}, "GITHUB_REPO=usp-model has no owner"),
    "malformed repository": ({"GITHUB_REPO": "a/b/c"}, "GITHUB_REPO=a/b/c is not valid: use owner/name"),
    "malformed branch": ({"GITHUB_BRANCH": "-x"}, "GITHUB_BRANCH=-x is not valid"),
    "malformed bucket": ({"OUTPUT_BUCKET": "Hotel_Out"}, "OUTPUT_BUCKET=Hotel_Out is not valid"),
    "missing bucket": ({"DATA_LAKE_BUCKET": ""}, "DATA_LAKE_BUCKET is not set"),
    "malformed connection": (
        {"CONNECTION_ARN": "my-connection"},
        "CONNECTION_ARN=my-connection is not valid",
    ),
    "malformed region": ({"AWS_REGION": "Europe"}, "AWS_REGION=Europe is not valid"),
    "malformed stack": ({"STACK_NAME": "1stack"}, "STACK_NAME=1stack is not valid"),
    "stack name too long for the mail subjects": (
        {"STACK_NAME": "s" * 65},
        f"STACK_NAME={'s' * 65} is not valid",
    ),
    "malformed email": ({"NOTIFICATION_EMAILS": "data-eng"}, "NOTIFICATION_EMAILS=data-eng is not valid"),
    "four emails": ({"NOTIFICATION_EMAILS": "a@x.io,b@x.io,c@x.io,d@x.io"}, "NOTIFICATION_EMAILS=a@x.io"),
    "crontab schedule": ({"SCHEDULE": "0 6 * * *"}, "SCHEDULE=0 6 * * * is not valid: cron(minutes hours"),
    "five-field cron": ({"SCHEDULE": "cron(0 6 * * ?)"}, "SCHEDULE=cron(0 6 * * ?) is not valid"),
    "rate of zero": ({"SCHEDULE": "rate(0 days)"}, "SCHEDULE=rate(0 days) is not valid"),
    "unknown time zone": (
        {"SCHEDULE_TIMEZONE": "Mars/Olympus"},
        "SCHEDULE_TIMEZONE=Mars/Olympus is not a time zone",
    ),
    "time zone path": (
        {"SCHEDULE_TIMEZONE": "../etc/passwd"},
        "SCHEDULE_TIMEZONE=../etc/passwd is not a time zone",
    ),
    "subnets alone": ({"SUBNETS": "subnet-0a1b2c3d"}, "set SUBNETS and SECURITY_GROUPS together"),
    "malformed subnet": (
        {"SUBNETS": "subnet-x", "SECURITY_GROUPS": "sg-0a1b2c3d"},
        "SUBNETS=subnet-x is not valid",
    ),
    "odd cpu": ({"TASK_CPU": "3000"}, "TASK_CPU=3000 is not valid"),
    "public ip yes": ({"ASSIGN_PUBLIC_IP": "yes"}, "ASSIGN_PUBLIC_IP=yes is not valid"),
    "prefix with slashes": ({"OUTPUT_PREFIX": "/usp/"}, "OUTPUT_PREFIX=/usp/ is not valid"),
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
    assert status_calls[1][:4] == [
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


def test_make_deploy_accepts_and_refuses_the_schedules_the_template_does(tmp_path: Path) -> None:
    """The same values as the template's ScheduleExpression and ScheduleTimezone patterns (test_runs.py)."""
    from test_runs import PATTERNS

    cases = [
        (variable, value, accepted)
        for name, variable in (("ScheduleExpression", "SCHEDULE"), ("ScheduleTimezone", "SCHEDULE_TIMEZONE"))
        for accepted, values in zip((True, False), PATTERNS[name], strict=True)
        for value in values
        if value or variable == "SCHEDULE"  # an empty SCHEDULE_TIMEZONE means: keep the stack's
    ]
    for n, (variable, value, accepted) in enumerate(cases):
        done, calls = make(tmp_path / str(n), "deploy", **GOOD, **{variable: value})
        assert (done.returncode == 0) == accepted, f"{variable}={value!r}: {done.stderr}"
        assert bool(calls) == accepted
