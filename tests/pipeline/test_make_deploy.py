"""`make deploy` and friends end to end: the checks before any AWS call, and the exact aws calls they make
(a stand-in `aws` on PATH records its arguments). Which values a deploy takes and passes is
scripts/settings.py's, tried in process (test_settings*.py); here its wiring: the parameter file it writes is
the one the cloudformation deploy call reads, a refusal stops with exit 2 before any AWS call, ENV picks the
environment's stack, and a model's checkout (MODEL_DIR) is read, never run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fake_aws
import pytest
import yaml
from deploying import (
    ALWAYS,
    CONNECTION,
    GOOD,
    PARAMETERS,
    deploy_call,
    make,
    merged,
    passed,
    platform_file,
    without_settings,
)
from support import AWS_CLI, REPO

REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/notebook-pipeline-usp-model"
DIGEST = "sha256:" + "0123456789abcdef" * 4
PROMOTED = f"{REPOSITORY}@{DIGEST}"  # what the validation writes into /<stack>/validated-image


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
        "--parameter-overrides", f"file://{tmp_path / 'parameters.json'}",
    ]  # fmt: skip
    assert passed(calls) == {
        **ALWAYS, "Subnets": "subnet-0a1b2c3d,subnet-4e5f6a7b", "SecurityGroups": "sg-0a1b2c3d",
        "AssignPublicIp": "ENABLED", "OutputDatabase": "notebook_pipeline_usp_model",
    }  # fmt: skip
    assert calls[5][:2] == ["cloudformation", "describe-stacks"]
    assert "runs start in the default VPC vpc-0a1b2c3d" in done.stderr
    assert "authorize the GitHub connection" in done.stderr


def test_the_parameter_file_holds_what_settings_py_merges_and_a_temporary_one_is_removed(
    tmp_path: Path,
) -> None:
    """An existing stack, nothing looked up: the file holds settings.py's merge, exactly; without
    PARAMETER_FILE, it is a temporary file, gone when make deploy ends."""
    variables = {**GOOD, **without_settings(tmp_path), "TASK_MEMORY": "4096", "SCHEDULE": ""}
    kept, calls = make(tmp_path, "deploy", **variables)
    temporary, temporary_calls = make(tmp_path / "temporary", "deploy", **variables, PARAMETER_FILE="")

    assert (kept.returncode, temporary.returncode) == (0, 0), kept.stderr + temporary.stderr
    expected = {**ALWAYS, "TaskMemory": "4096", "ScheduleExpression": ""}
    assert passed(calls) == merged(tmp_path, **variables) == expected
    (named,) = [a for a in deploy_call(temporary_calls) if a.startswith("file://")]
    assert not Path(named.removeprefix("file://")).exists()


def test_the_aws_cli_reads_the_parameter_file_and_cloudformation_gets_each_value_as_written(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """settings.py write, as pipeline.sh runs it, then the real AWS CLI (AWS_CLI) deploying with the file as
    make deploy-plan passes it: CloudFormation (moto's) gets every value as the file holds it (commas,
    spaces, parentheses, '*', empty ones). The template: pipeline.yaml's parameters around one resource."""
    template = tmp_path / "parameters-only.yaml"
    resources = {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}
    template.write_text(yaml.safe_dump({"Parameters": PARAMETERS, "Resources": resources}))
    file = tmp_path / "parameters.json"
    found = [
        "Subnets=subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroups=sg-0a1b2c3d",
        "AssignPublicIp=ENABLED",
    ]
    variables = {"GITHUB_REPO": "o/r", "NOTIFICATION_EMAILS": "a@x.io,b@y.io", "COMPARE_KEYS": ""}
    write = [sys.executable, "-I", str(REPO / "scripts" / "settings.py"), "write", str(REPO), str(file)]
    subprocess.run([*write, *found], env={"PATH": os.environ["PATH"], **variables}, check=True)
    aws = {
        "PATH": os.environ["PATH"], "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1",
    }  # fmt: skip

    def cloudformation(*args: str) -> str:
        return subprocess.run(
            [AWS_CLI, "cloudformation", *args], env=aws, check=True, capture_output=True, text=True
        ).stdout

    stack = ["--stack-name", "parameters-only"]
    deploy = [
        "--template-file",
        str(template),
        "--parameter-overrides",
        f"file://{file}",
        "--no-execute-changeset",
    ]
    cloudformation("deploy", *stack, *deploy)
    (change_set,) = json.loads(cloudformation("list-change-sets", *stack))["Summaries"]
    described = json.loads(
        cloudformation("describe-change-set", *stack, "--change-set-name", change_set["ChangeSetId"])
    )

    written = dict(item.split("=", 1) for item in json.loads(file.read_text()))
    got = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert {"ScheduleExpression", "Subnets", "NotificationEmails", "CompareKeyColumns"} <= set(written)
    assert got == written


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
    assert passed(calls) == ALWAYS  # nothing of the network or the run: CloudFormation keeps them


def test_a_new_stack_given_subnets_runs_in_them_without_looking_up_the_default_vpc(tmp_path: Path) -> None:
    done, calls = make(
        tmp_path, "deploy", **GOOD, SUBNETS="subnet-0a1b2c3d4e5f60718", SECURITY_GROUPS="sg-0a1b2c3d",
        FAKE_STACK_EXISTS="no",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ec2"]
    assert {"Subnets": "subnet-0a1b2c3d4e5f60718", "SecurityGroups": "sg-0a1b2c3d"}.items() <= passed(
        calls
    ).items()


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

    assert done.returncode == 0, done.stderr
    assert re.fullmatch(PARAMETERS["ValidatedImage"]["AllowedPattern"], image)  # the template takes it
    assert calls[1] == [
        "ssm", "get-parameter", "--region", "eu-west-1",
        "--name", "/notebook-pipeline-usp-model/validated-image",
        "--query", "Parameter.Value", "--output", "text",
    ]  # fmt: skip
    assert passed(calls)["ValidatedImage"] == image


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
    assert "ValidatedImage" not in passed(calls)
    (said,) = [line for line in done.stderr.splitlines() if "validated-image" in line]
    assert "the runs keep the stack's image until the first validation promotes one" in said


def test_creating_a_stack_passes_no_validated_image(tmp_path: Path) -> None:
    done, calls = make(tmp_path, "deploy", **GOOD, FAKE_STACK_EXISTS="no", FAKE_VALIDATED_IMAGE=PROMOTED)

    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if c[0] == "ssm"]  # a new stack's parameter holds none
    assert "ValidatedImage" not in passed(calls)


def test_bare_repository_name_takes_the_owner_from_github_owner(tmp_path: Path) -> None:
    variables = {**GOOD, "GITHUB_REPO": "usp-model", "GITHUB_OWNER": "hotel-profiling"}
    done, calls = make(tmp_path, "deploy", **variables, CONNECTION_ARN=CONNECTION, GITHUB_BRANCH="release/1")

    assert done.returncode == 0, done.stderr
    assert passed(calls)["GitHubRepository"] == "hotel-profiling/usp-model"
    assert passed(calls)["GitHubBranch"] == "release/1"
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


# The checks of the shell (the repository, the stack's name and the region, which every script checks, with
# stack.sh) and one of settings.py's: each stops make deploy before any AWS call, exit 2. settings.py's
# refusals are tried one by one in process (test_settings*.py).
BAD = {
    "no repository": ({"GITHUB_REPO": ""}, "GITHUB_REPO is not set"),
    "no owner": ({"GITHUB_REPO": "usp-model"}, "GITHUB_REPO=usp-model has no owner"),
    "malformed repository": ({"GITHUB_REPO": "a/b/c"}, "GITHUB_REPO=a/b/c is not valid: use owner/name"),
    "malformed region": ({"AWS_REGION": "Europe"}, "AWS_REGION=Europe is not valid"),
    "malformed stack": ({"STACK_NAME": "1stack"}, "STACK_NAME=1stack is not valid"),
    "stack name too long for the mail subjects": (
        {"STACK_NAME": "s" * 65},
        f"STACK_NAME={'s' * 65} is not valid",
    ),
    "memory out of range (settings.py)": (
        {"TASK_MEMORY": "100"},
        "TASK_MEMORY='100' is not valid: it must be a whole number of MiB from 512 to 122880",
    ),
}


@pytest.mark.parametrize("override, message", BAD.values(), ids=BAD.keys())
def test_bad_variables_stop_with_exit_2_before_any_aws_call(
    tmp_path: Path, override: dict[str, str], message: str
) -> None:
    done, calls = make(tmp_path, "deploy", **{**GOOD, **override})

    assert (done.returncode, calls) == (2, [])
    assert done.stderr.splitlines()[0].startswith(f"pipeline: {message}")
    assert not (tmp_path / "parameters.json").exists()


def test_the_shell_holds_no_copy_of_the_templates_constraints() -> None:
    """pipeline.sh passes only settings.py's parameter file, and checks no value with a pattern of its own:
    none of the template's AllowedPatterns is in it (the ValidatedImage pattern its look-up needs comes
    from settings.py check)."""
    code = (REPO / "scripts" / "pipeline.sh").read_text()
    patterns = {p["AllowedPattern"].removeprefix("^$|") for p in PARAMETERS.values() if "AllowedPattern" in p}

    assert [p for p in patterns if p in code] == []
    (overrides,) = re.findall(r"--parameter-overrides (.*)", code)
    assert overrides.strip() == '"file://${PARAMETERS}"'


def test_a_new_stack_names_its_table_database_after_itself_and_an_update_never_renames_it(
    tmp_path: Path,
) -> None:
    """Replacing the Glue database would drop the table's registration: only creation gets the default."""
    done, calls = make(tmp_path / "new", "deploy", **GOOD, STACK_NAME="Usp-Model-ci", FAKE_STACK_EXISTS="no")
    assert done.returncode == 0, done.stderr
    assert passed(calls)["OutputDatabase"] == "usp_model_ci"

    done, calls = make(
        tmp_path / "update", "deploy", **GOOD, STACK_NAME="Usp-Model-ci", FAKE_STACK_EXISTS="yes"
    )
    assert done.returncode == 0, done.stderr
    assert "OutputDatabase" not in passed(calls)


# --- a model's checkout (MODEL_DIR): its settings.yml is read as data, nothing in it runs -------------------

MODEL_SETTINGS = (
    "notebook: models/adr.ipynb\nrunner: {major: 2}\ndata_lake: {bucket: adr-lake, prefix: raw}\n"
    "output: {bucket: adr-out, prefix: adr/daily}\n"
)
# What the deploy passes of the model's settings.yml.
FROM_MODEL = {
    "NotebookPath": "models/adr.ipynb", "DataLakeBucket": "adr-lake", "DataLakePrefix": "raw",
    "OutputBucket": "adr-out", "OutputPrefix": "adr/daily", "RunnerMajorVersion": "2",
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
    "settings.py": PYTHON_MARK, "settings_file.py": PYTHON_MARK, "constraints.py": PYTHON_MARK,
    "environments.py": PYTHON_MARK, "scripts/settings_file.py": PYTHON_MARK,
    "scripts/constraints.py": PYTHON_MARK,
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
    assert FROM_MODEL.items() <= passed(calls).items()
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
         "MODEL_DIR=.", f"PLATFORM_FILE={platform_file(tmp_path)}", "PARAMETER_FILE=parameters.json"],
        cwd=checkout, env=env, capture_output=True, text=True,
    )  # fmt: skip

    assert not log.exists(), f"the model's files ran: {log.read_text()}"
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert FROM_MODEL.items() <= passed(calls).items()


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
        "EnvironmentName": "staging", "ReleasesFromRepository": "", "ReleasesFromVersionsBucket": "",
        "ReleaseAccountIds": "222222222222", "OutputPrefix": "usp/staging",
        "ScheduleExpression": "cron(0 5 * * ? *)", "NotificationEmails": "data-eng@example.com",
    }.items() <= passed(calls).items()  # fmt: skip
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
        "EnvironmentName": "production", "ReleasesFromRepository": STAGING_REPOSITORY,
        "ReleasesFromVersionsBucket": STAGING_VERSIONS, "ReleaseAccountIds": "", "OutputPrefix": "usp/daily",
        "NotificationEmails": "oncall@example.com",
    }.items() <= passed(calls).items()  # fmt: skip
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
