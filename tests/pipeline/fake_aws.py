"""A stand-in `aws` on PATH for the Make targets that drive AWS: it records every call's arguments and
answers what the scripts read, as the AWS CLI would print it (text output, tab-separated).

Its answers come from the environment: FAKE_STACK_EXISTS (yes/no; a stack exists once deployed),
FAKE_CONNECTION_STATUS, FAKE_OUTPUTS (a JSON object of the stack's outputs), FAKE_FAILING_DAYS
(day=exit code, comma-separated), FAKE_UNSTARTABLE_DAYS (days RunTask refuses), FAKE_NO_DEFAULT_VPC,
FAKE_VALIDATED_IMAGE (what `ssm get-parameter` prints: the value of /<stack>/validated-image, such as
none or repository@sha256:...; unset, the parameter is missing and the call fails as the CLI's does,
exit 254 with ParameterNotFound), FAKE_APPROVAL (the Approve stage's "status<TAB>token<TAB>execution id"),
FAKE_WAITING_VERSION (the version that execution validated)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import REPO

SCRIPT = r"""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AWS_CALLS"], "a") as log:
    log.write(json.dumps(args) + "\n")

def opt(name):
    return args[args.index(name) + 1] if name in args else ""

query = opt("--query")
with open(os.environ["AWS_CALLS"]) as log:
    deployed = any(json.loads(line)[:2] == ["cloudformation", "deploy"] for line in log)
if args[:2] == ["cloudformation", "describe-stacks"]:
    if os.environ.get("FAKE_STACK_EXISTS", "yes") == "no" and not deployed:
        sys.stderr.write("An error occurred (ValidationError) when calling the DescribeStacks operation: "
                         "Stack with id x does not exist\n")
        sys.exit(254)
    if "ConnectionStatus" in query:
        print(os.environ.get("FAKE_CONNECTION_STATUS", "AVAILABLE"))
    elif query == "Stacks[0].Outputs[].[OutputKey,OutputValue]":
        for key, value in json.loads(os.environ.get("FAKE_OUTPUTS", "{}")).items():
            print(f"{key}\t{value}")
    elif query == "Stacks[0].Parameters[].ParameterKey":
        print("GitHubRepository\tScheduleExpression\tScheduleState\tSubnets")
    elif query == "Stacks[0].StackName":
        print(opt("--stack-name"))
elif "--no-execute-changeset" in args:  # what `aws cloudformation deploy` prints then
    print("Changeset created successfully. Run the following command to review changes:")
    print("aws cloudformation describe-change-set --change-set-name "
          "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/awscli-cloudformation-package-deploy-1/abc")
elif args[:2] == ["ssm", "get-parameter"]:
    if "FAKE_VALIDATED_IMAGE" not in os.environ:
        sys.stderr.write("\nAn error occurred (ParameterNotFound) when calling the GetParameter operation: "
                         "\n")
        sys.exit(254)
    print(os.environ["FAKE_VALIDATED_IMAGE"])
elif args[:2] == ["codepipeline", "get-pipeline-state"]:  # the Approve stage's status, token, execution
    print(os.environ.get("FAKE_APPROVAL", "None\tNone\tNone"))
elif args[:2] == ["codepipeline", "list-action-executions"]:  # the waiting execution's version
    print(os.environ.get("FAKE_WAITING_VERSION", "None"))
elif args[:2] == ["ec2", "describe-vpcs"]:
    print("None" if os.environ.get("FAKE_NO_DEFAULT_VPC") else "vpc-0a1b2c3d")
elif args[:2] == ["ec2", "describe-subnets"]:
    print("subnet-0a1b2c3d\tsubnet-4e5f6a7b")
elif args[:2] == ["ec2", "describe-security-groups"]:
    print("sg-0a1b2c3d")
elif args[:2] == ["ecs", "run-task"]:
    env = json.loads(opt("--overrides"))["containerOverrides"][0]["environment"]
    day = {e["name"]: e["value"] for e in env}["RUN_DATE"]
    if day in os.environ.get("FAKE_UNSTARTABLE_DAYS", "").split(","):
        sys.stderr.write("RunTask failures: RESOURCE:ENI\n")
        print("None")
    else:
        print(f"arn:aws:ecs:eu-west-1:123456789012:task/usp-runs/task{day.replace('-', '')}")
elif args[:2] == ["ecs", "describe-tasks"]:
    failing = dict(item.split("=") for item in os.environ.get("FAKE_FAILING_DAYS", "").split(",") if item)
    tasks = args[args.index("--tasks") + 1:]
    tasks = tasks[:next((i for i, a in enumerate(tasks) if a.startswith("--")), len(tasks))]
    for task in tasks:
        digits = task.rsplit("task", 1)[1]
        day = f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
        print(f"{task}\tSTOPPED\t{failing.get(day, '0')}")
"""


def make(tmp_path: Path, target: str, env: dict[str, str] | None = None, **variables: str):
    """`make -s TARGET VARIABLES` with the stand-in `aws` first on PATH: the result and the recorded calls."""
    aws = tmp_path / "bin" / "aws"
    aws.parent.mkdir(parents=True, exist_ok=True)
    # The tests' own Python: `python3` on PATH may be a shim (pyenv's costs 150 ms a call).
    aws.write_text(f"#!{sys.executable}{SCRIPT}")
    aws.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "AWS_", "STACK_", "FAKE_", "SETTINGS_"))
        and k
        not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")  # a make of its own, also when the tests run under make
    }
    base |= {"PATH": f"{aws.parent}:{base['PATH']}", "AWS_CALLS": str(calls), **(env or {})}
    args = [f"{k}={v}" for k, v in variables.items()]
    done = subprocess.run(["make", "-s", target, *args], cwd=REPO, env=base, capture_output=True, text=True)
    logged = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return done, logged
