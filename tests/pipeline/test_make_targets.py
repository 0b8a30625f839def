"""The make targets in AWS besides deploy (status, pause, resume, delete, run-remote, versions, approve,
reject, help): each addresses the stack GITHUB_REPO (and ENV, an environment's) or STACK_NAME names, checked
by scripts/stack.sh before any AWS call as the template would check them; a production stack's targets say
it has no pipeline. A stand-in `aws` records the calls (fake_aws.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from deploying import GOOD, PARAMETERS, make
from support import REPO
from test_make_deploy import PROMOTED, STAGING_VERSIONS


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


def test_stack_sh_checks_the_repository_and_env_as_the_template_does(tmp_path: Path) -> None:
    """stack.sh's patterns, which every script (status, run-remote, versions...) checks GITHUB_REPO and ENV
    with before settings.py reads anything, take exactly the values the template's parameters take."""
    tried = {
        "GITHUB_REPO": ("GitHubRepository", [
            "hotel-profiling/usp-model", "a/b", "o/" + "n" * 100, "o" * 39 + "/u.s_p-1", "a/b/c", "-o/n",
            "o/" + "n" * 101, "o" * 40 + "/n", "o/n m", "o_x/n",
        ]),
        "ENV": ("EnvironmentName", ["staging", "e" * 16, "Staging", "1prod", "e" * 17, "pro-d", "staging/x"]),
    }  # fmt: skip
    script = f"source {REPO}/scripts/stack.sh; PROGRAM=t; REPO_HINT=; STACK_NAME=s\n"
    for variable, (_, values) in tried.items():
        call = "load_repository" if variable == "GITHUB_REPO" else "load_stack_name"
        script += "".join(
            f"( {variable}={v!r}; {call} 2>/dev/null ) && echo yes || echo no\n" for v in values
        )
    said = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()

    expected = [
        "yes" if re.fullmatch(PARAMETERS[name]["AllowedPattern"], value) else "no"
        for name, values in tried.values()
        for value in values
    ]
    assert said == expected


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
        "deploy", "deploy-plan", "status", "runs", "versions", "rollback", "promote", "approve", "reject",
        "run-remote", "backfill", "pause", "resume", "delete",
    ]  # fmt: skip
