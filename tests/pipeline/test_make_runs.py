"""`make run-remote` and `make backfill`: argument checks before any AWS call, the exact calls they make
(a stand-in `aws` records them, tests/pipeline/fake_aws.py), and a backfill that meets a failing day."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import fake_aws
import pytest

OUTPUTS = {
    "RunCluster": "usp-runs",
    "RunTaskFamily": "notebook-pipeline-usp-model-run",
    "RunSubnets": "subnet-0a1b2c3d,subnet-4e5f6a7b",
    "RunSecurityGroups": "sg-0a1b2c3d",
    "RunAssignPublicIp": "DISABLED",
    "RunOutputUri": "s3://hotel-out/daily",
    "OutputTable": "notebook_pipeline_usp_model.usp",
    "RunLogGroupName": "/ecs/notebook-pipeline-usp-model-run",
    "PipelineConsoleUrl": "https://example.invalid/",
}


def make(tmp_path: Path, target: str, fake: dict[str, str] | None = None, **variables: str):
    env = {"FAKE_OUTPUTS": json.dumps(OUTPUTS), "POLL_SECONDS": "0", **(fake or {})}
    return fake_aws.make(tmp_path, target, env, **variables)


def run_tasks(calls: list[list[str]]) -> list[list[str]]:
    return [c for c in calls if c[:2] == ["ecs", "run-task"]]


def run_date(call: list[str]) -> str:
    environment = json.loads(call[call.index("--overrides") + 1])["containerOverrides"][0]["environment"]
    return {e["name"]: e["value"] for e in environment}["RUN_DATE"]


def test_run_remote_starts_one_run_for_the_day_and_says_where_it_writes(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "run-remote", DATE="2019-08-01", GITHUB_REPO="hotel-profiling/usp-model")

    assert done.returncode == 0, done.stderr
    assert calls[0] == [
        "cloudformation", "describe-stacks", "--stack-name", "notebook-pipeline-usp-model",
        "--query", "Stacks[0].Outputs[].[OutputKey,OutputValue]", "--output", "text",
    ]  # fmt: skip
    (call,) = run_tasks(calls)
    overrides = json.loads(call[call.index("--overrides") + 1])
    run_id = overrides["containerOverrides"][0]["environment"][1]["value"]
    assert call == [
        "ecs", "run-task", "--cluster", "usp-runs", "--task-definition", "notebook-pipeline-usp-model-run",
        "--launch-type", "FARGATE", "--started-by", "make-run-remote", "--network-configuration",
        ("awsvpcConfiguration={subnets=[subnet-0a1b2c3d,subnet-4e5f6a7b],securityGroups=[sg-0a1b2c3d],"
         "assignPublicIp=DISABLED}"),
        "--overrides", json.dumps(overrides, separators=(",", ":")),
        "--query", "tasks[0].taskArn", "--output", "text",
    ]  # fmt: skip
    assert overrides["containerOverrides"][0]["name"] == "runner"
    assert overrides["containerOverrides"][0]["environment"][0] == {"name": "RUN_DATE", "value": "2019-08-01"}
    assert run_id.startswith("run-remote-2019-08-01-")
    # Where it writes: the stack's table, named and at its location (its day a partition of it, no folder),
    # and the run's own report folder.
    (table,) = [line for line in done.stderr.splitlines() if OUTPUTS["OutputTable"] in line]
    assert f"{OUTPUTS['RunOutputUri']}/" in table.split()
    assert f"{OUTPUTS['RunOutputUri']}/date=" not in done.stderr
    assert f"{OUTPUTS['RunOutputUri']}/_runs/date=2019-08-01/{run_id}/" in done.stderr
    assert "stream run/runner/task20190801" in done.stderr
    assert len(calls) == 2  # it starts the run and leaves it to AWS


def test_run_remote_says_so_when_ecs_does_not_start_the_run(tmp_path: Path) -> None:
    done, _ = make(tmp_path, "run-remote", {"FAKE_UNSTARTABLE_DAYS": "2019-08-01"}, DATE="2019-08-01",
                   STACK_NAME="usp")  # fmt: skip

    assert done.returncode != 0
    assert "] Error 1" in done.stderr  # runs.sh's own exit code, under make's
    assert "2019-08-01: ECS did not start the run" in done.stderr


def test_backfill_runs_each_day_in_order_one_at_a_time_by_default(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "backfill", FROM="2019-07-30", TO="2019-08-02", STACK_NAME="usp")

    assert done.returncode == 0, done.stderr
    assert [run_date(c) for c in run_tasks(calls)] == ["2019-07-30", "2019-07-31", "2019-08-01", "2019-08-02"]
    kinds = [c[1] for c in calls[1:]]
    assert kinds == ["run-task", "describe-tasks"] * 4  # each run waited for before the next
    assert "backfill 2019-07-30 to 2019-08-02: 4 succeeded, 0 failed" in done.stderr


def test_backfill_reports_a_failing_day_and_carries_on(tmp_path: Path) -> None:
    fake = {"FAKE_FAILING_DAYS": "2019-08-02=20", "FAKE_UNSTARTABLE_DAYS": "2019-08-04"}
    done, calls = make(tmp_path, "backfill", fake, FROM="2019-08-01", TO="2019-08-05", STACK_NAME="usp")

    assert done.returncode != 0
    assert "] Error 1" in done.stderr
    assert [run_date(c) for c in run_tasks(calls)] == [f"2019-08-0{d}" for d in range(1, 6)]
    assert "2019-08-02: FAILED with exit code 20" in done.stderr
    assert done.stderr.strip().splitlines()[-2] == (
        "runs: backfill 2019-08-01 to 2019-08-05: 3 succeeded, 2 failed: 2019-08-02 (exit 20) "
        "2019-08-04 (not started); rerun a day with make run-remote DATE=..."
    )


def test_backfill_with_parallel_keeps_that_many_runs_going(tmp_path: Path) -> None:
    done, calls = make(
        tmp_path, "backfill", FROM="2019-08-01", TO="2019-08-05", PARALLEL="2", STACK_NAME="usp"
    )

    assert done.returncode == 0, done.stderr
    kinds = [c[1] for c in calls[1:]]
    assert kinds == ["run-task", "run-task", "describe-tasks"] * 2 + ["run-task", "describe-tasks"]
    waits = [c for c in calls if c[1] == "describe-tasks"]
    assert waits[0][waits[0].index("--tasks") + 1 : waits[0].index("--query")] == [
        "arn:aws:ecs:eu-west-1:123456789012:task/usp-runs/task20190801",
        "arn:aws:ecs:eu-west-1:123456789012:task/usp-runs/task20190802",
    ]


BAD = {
    "run-remote without a date": ("run-remote", {"STACK_NAME": "usp"}, "DATE is not set"),
    "not a date": ("run-remote", {"DATE": "2019-02-30", "STACK_NAME": "usp"},
                   "DATE=2019-02-30 is not a calendar date"),
    "no stack": ("run-remote", {"DATE": "2019-08-01"},
                 "GITHUB_REPO is not set: name the stack with GITHUB_REPO"),
    "bad region": ("run-remote", {"DATE": "2019-08-01", "STACK_NAME": "usp", "AWS_REGION": "mars"},
                   "AWS_REGION=mars is not valid"),
    "backfill without TO": ("backfill", {"FROM": "2019-08-01", "STACK_NAME": "usp"},
                            "FROM and TO are required"),
    "reversed range": ("backfill", {"FROM": "2019-08-05", "TO": "2019-08-01", "STACK_NAME": "usp"},
                       "FROM=2019-08-05 is after TO=2019-08-01"),
    "too many at once": ("backfill", {"FROM": "2019-08-01", "TO": "2019-08-02", "PARALLEL": "50",
                                      "STACK_NAME": "usp"}, "PARALLEL=50 is not valid"),
    "over a year": ("backfill", {"FROM": "2018-01-01", "TO": "2019-08-01", "STACK_NAME": "usp"},
                    "FROM=2018-01-01 TO=2019-08-01 spans more than 366 days"),
}  # fmt: skip


@pytest.mark.parametrize("target, variables, message", BAD.values(), ids=BAD.keys())
def test_bad_arguments_stop_before_any_aws_call(
    tmp_path: Path, target: str, variables: dict[str, str], message: str
) -> None:
    done, calls = make(tmp_path, target, **variables)

    assert done.returncode != 0
    assert "] Error 2" in done.stderr
    assert calls == []
    assert done.stderr.splitlines()[0].startswith(f"runs: {message}")


def test_a_stack_without_the_run_outputs_is_named_with_the_fix(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "run-remote", {"FAKE_OUTPUTS": "{}"}, DATE="2019-08-01", STACK_NAME="old")

    assert done.returncode != 0
    assert len(calls) == 1
    assert "stack old has no output RunCluster: deploy the current template first" in done.stderr


def test_help_lists_the_run_targets() -> None:
    listed = subprocess.run(
        ["make", "-s", "help"], cwd=fake_aws.REPO, capture_output=True, text=True, check=True
    )

    for target in ("run-remote", "backfill", "pause", "resume"):
        assert target in listed.stdout
