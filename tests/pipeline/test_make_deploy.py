"""`make deploy` and friends: argument checks before any AWS call, and the exact aws calls they make
(a stand-in `aws` on PATH records its arguments)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import REPO

CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"
FAKE_AWS = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["AWS_CALLS"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if "--query" in sys.argv and "ConnectionStatus" in sys.argv[sys.argv.index("--query") + 1]:
    print(os.environ.get("FAKE_CONNECTION_STATUS", "AVAILABLE"))
if "--no-execute-changeset" in sys.argv:  # what `aws cloudformation deploy` prints then
    print("Changeset created successfully. Run the following command to review changes:")
    print("aws cloudformation describe-change-set --change-set-name "
          "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/awscli-cloudformation-package-deploy-1/abc")
"""


def make(
    tmp_path: Path, target: str, **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    aws = tmp_path / "bin" / "aws"
    aws.parent.mkdir(parents=True, exist_ok=True)
    aws.write_text(FAKE_AWS)
    aws.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "AWS_", "STACK_"))}
    env |= {"PATH": f"{aws.parent}:{env['PATH']}", "AWS_CALLS": str(calls)}
    args = [f"{k}={v}" for k, v in variables.items()]
    done = subprocess.run(["make", "-s", target, *args], cwd=REPO, env=env, capture_output=True, text=True)
    logged = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return done, logged


GOOD = {
    "GITHUB_REPO": "hotel-profiling/usp-model",
    "DATA_LAKE_BUCKET": "hotel-lake",
    "OUTPUT_BUCKET": "hotel-out",
}


def test_deploy_makes_the_cloudformation_deploy_call_then_shows_outputs(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, AWS_REGION="eu-west-1", FAKE_CONNECTION_STATUS="PENDING")

    assert done.returncode == 0, done.stderr
    assert calls[0] == [
        "cloudformation", "deploy", "--region", "eu-west-1", "--stack-name", "notebook-pipeline-usp-model",
        "--template-file", f"{REPO}/template/pipeline.yaml",
        "--capabilities", "CAPABILITY_IAM", "--no-fail-on-empty-changeset",
        "--parameter-overrides", "GitHubRepository=hotel-profiling/usp-model", "GitHubBranch=main",
        "ConnectionArn=", "NotebookPath=usp.ipynb", "DataLakeBucket=hotel-lake", "OutputBucket=hotel-out",
        "NotificationEmails=",
    ]  # fmt: skip
    assert calls[1][:2] == ["cloudformation", "describe-stacks"]
    assert "authorize the GitHub connection" in done.stderr


def test_bare_repository_name_takes_the_owner_from_github_owner(tmp_path: Path) -> None:
    variables = {**GOOD, "GITHUB_REPO": "usp-model", "GITHUB_OWNER": "hotel-profiling"}
    done, calls = make(
        tmp_path, "deploy", **variables, CONNECTION_ARN=CONNECTION, GITHUB_BRANCH="release/1",
        NOTIFICATION_EMAILS="data-eng@example.com,oncall@example.com",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "GitHubRepository=hotel-profiling/usp-model" in calls[0]
    assert f"ConnectionArn={CONNECTION}" in calls[0]
    assert "GitHubBranch=release/1" in calls[0]
    assert "NotificationEmails=data-eng@example.com,oncall@example.com" in calls[0]
    assert "Next step: push to release/1" in done.stderr


def test_plan_creates_the_change_set_and_shows_it_without_executing_it(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy-plan", **GOOD, STACK_NAME="usp-ci")

    assert done.returncode == 0, done.stderr
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
    "malformed email": ({"NOTIFICATION_EMAILS": "data-eng"}, "NOTIFICATION_EMAILS=data-eng is not valid"),
    "four emails": ({"NOTIFICATION_EMAILS": "a@x.io,b@x.io,c@x.io,d@x.io"}, "NOTIFICATION_EMAILS=a@x.io"),
}


@pytest.mark.parametrize("override, message", BAD.values(), ids=BAD.keys())
def test_bad_variables_stop_before_any_aws_call(
    tmp_path: Path, override: dict[str, str], message: str
) -> None:
    done, calls = make(tmp_path, "deploy", **{**GOOD, **override})

    assert done.returncode != 0
    assert calls == []
    assert done.stderr.splitlines()[0].startswith(f"pipeline: {message}")


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
