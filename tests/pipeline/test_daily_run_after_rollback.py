"""The next daily run after a promotion (issue 18: a rollback's acceptance is the next daily run running the
version rolled back to): EventBridge Scheduler's RunTask of the template's DailyRunSchedule target, signed
with SchedulerRole's key through the IAM proxy, starts the run family's latest revision, which promotion
pinned to the promoted digest; its container runs on the Fargate stand-in as TaskRole (its notebook as
NotebookRole) and publishes the day before the scheduled date. The schedule's role starts nothing else.

The stack is moto behind the IAM proxy (validation_stack.deployed); the version is the template's inline
build, validation and promotion of a new model repository's commit (as test_versions.py pushes)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import SAMPLE_DATE
from validation_stack import (
    DailyRun,
    Stack,
    daily_run,
    push_commit,
    run_task_as_scheduler,
    schedule_request,
    table_day,
)

pytestmark = pytest.mark.docker
SCHEDULED = "2019-08-02T06:00:00Z"  # the run for the day before: the sample lake's 2019-08-01
SAMPLE_ROWS = 1765  # what the model template's notebook publishes from the sample


@dataclass
class Promoted:
    commit: str
    image: str


@pytest.fixture(scope="module")
def promoted(model: Path, stack: Stack) -> Promoted:
    """A new model repository's commit, built, validated and promoted as the pipeline does."""
    pushed = push_commit(model, stack)
    assert pushed.validation.succeeded, pushed.validation.log[-3000:]
    return Promoted(pushed.commit, pushed.digest)


@pytest.fixture(scope="module")
def run(promoted: Promoted, stack: Stack) -> DailyRun:
    return daily_run(stack, SCHEDULED)


def test_the_next_daily_run_runs_the_promoted_digest_and_publishes_its_rows(
    promoted: Promoted, run: DailyRun, stack: Stack
) -> None:
    assert run.code == 0, run.log[-3000:]
    assert run.image == promoted.image == stack.validated_image()
    assert run.task_definition == stack.run_revisions()[-1]["taskDefinitionArn"]
    assert run.date == SAMPLE_DATE  # the day before the scheduled date, in SCHEDULE_TIMEZONE (UTC)
    assert run.run_id.startswith("schedule-") and run.manifest["run_id"] == run.run_id
    assert run.manifest["status"] == "succeeded"
    assert promoted.commit in run.manifest["image"]  # the name the runner gives its image: that commit's
    assert run.rows == SAMPLE_ROWS
    assert table_day(stack, SAMPLE_DATE).num_rows == SAMPLE_ROWS


def test_the_schedule_starts_it_as_scheduler_role_and_the_run_holds_only_the_run_roles(
    run: DailyRun, stack: Stack
) -> None:
    started = [d for d in stack.iam.decisions if d.key == stack.scheduler_key]
    task, notebook = stack.iam.by_role("TaskRole"), stack.iam.by_role("NotebookRole")

    assert run.code == 0
    assert [(d.role, d.actions, d.allowed) for d in started] == [("SchedulerRole", ["ecs:RunTask"], True)]
    assert task and notebook
    assert [(d.method, d.path, d.actions) for d in task if not d.allowed] == []
    assert f"assumed {stack.values['NotebookRole.Arn']} for the notebook" in run.log


def scheduled_with(stack: Stack, **changes: Any) -> dict[str, Any]:
    request = schedule_request(stack, SCHEDULED, "adversary")
    if "task_role" in changes:
        request["overrides"]["taskRoleArn"] = changes.pop("task_role")
    return request | changes


@pytest.mark.parametrize(
    "case",
    ["the validation family", "the validation family on its cluster", "the run family on another cluster",
     "the run family with another task role"],
)  # fmt: skip
def test_the_schedules_role_starts_nothing_but_the_run_family_on_the_run_cluster(
    stack: Stack, case: str
) -> None:
    values = stack.values
    request = {
        "the validation family": lambda: scheduled_with(stack, taskDefinition=f"{stack.name}-validate"),
        "the validation family on its cluster": lambda: scheduled_with(
            stack, taskDefinition=f"{stack.name}-validate", cluster=values["ValidationCluster.Arn"]
        ),
        "the run family on another cluster": lambda: scheduled_with(
            stack, cluster=values["ValidationCluster.Arn"]
        ),
        "the run family with another task role": lambda: scheduled_with(
            stack, task_role=values["ValidationTaskRole.Arn"]
        ),
    }[case]()
    before = len(stack.iam.decisions)

    done = run_task_as_scheduler(stack, request)

    if done.returncode == 0:  # started after all: stop its container before failing
        for task in json.loads(done.stdout)["tasks"]:
            subprocess.run(
                ["docker", "rm", "-f", f"fargate-{task['taskArn'].rsplit('/', 1)[1]}"], check=False
            )
    assert done.returncode != 0 and "AccessDenied" in done.stderr, done.stdout + done.stderr[-2000:]
    (decision,) = [d for d in stack.iam.decisions[before:] if d.key == stack.scheduler_key]
    assert (decision.role, decision.allowed, decision.actions[0]) == ("SchedulerRole", False, "ecs:RunTask")
    for cluster in (values["RunCluster"], values["ValidationCluster"]):
        tasks = stack.client("ecs").list_tasks(cluster=cluster, startedBy="schedule")["taskArns"]
        described = stack.client("ecs").describe_tasks(cluster=cluster, tasks=tasks)["tasks"] if tasks else []
        assert not [t for t in described if "adversary" in json.dumps(t["overrides"])]


def test_what_the_schedule_sends_is_its_targets_input_with_the_stacks_values(stack: Stack) -> None:
    request = schedule_request(stack, SCHEDULED, "e-1")

    assert request["cluster"] == stack.values["RunCluster.Arn"]
    assert request["taskDefinition"] == f"{stack.name}-run"
    assert request["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": stack.subnets, "securityGroups": [stack.security_group], "assignPublicIp": "DISABLED",
    }  # fmt: skip
    (override,) = request["overrides"]["containerOverrides"]
    assert override["name"] == "runner"
    assert override["environment"] == [
        {"name": "SCHEDULED_TIME", "value": SCHEDULED}, {"name": "RUN_ID", "value": "schedule-e-1"},
    ]  # fmt: skip
