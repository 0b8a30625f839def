"""template/pipeline.yaml, read as CloudFormation would: lint-clean, stages in order, each CodeBuild
project given exactly the variables its buildspec reads, roles granting what the buildspecs' commands
call, and parameter patterns that accept good values and refuse bad ones."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from cfn import PROJECTS, actions, buildspec_text, granted, load, statements

TEMPLATE_DOC = load()
RESOURCES = TEMPLATE_DOC["Resources"]
# What CodeBuild itself sets in every build; buildspecs may read these without the project setting them.
CODEBUILD_SETS = {
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "CODEBUILD_BUILD_NUMBER",
    "CODEBUILD_INITIATOR",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
}
# What the promote project's decision (its Python) prints into decision.env, which the next command sources.
DECIDED = {"VERSION", "IMAGE", "COMMIT", "RUNNER", "SUBJECT", "WHEN"}
# The IAM actions each kind of command in a buildspec needs.
COMMAND_ACTIONS = {
    "aws ecr get-login-password": {"ecr:GetAuthorizationToken"},
    "docker pull": {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"},
    "docker push": {
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
    },
    "aws ecr batch-get-image": {"ecr:BatchGetImage"},
    "aws ecr put-image": {"ecr:PutImage"},
    "aws ssm put-parameter": {"ssm:PutParameter"},
    "aws ssm get-parameter": {"ssm:GetParameter"},
    # the validation's layer check, in Python: aws ecr with these arguments
    '"batch-get-image"': {"ecr:BatchGetImage"},
    '"get-download-url-for-layer"': {"ecr:GetDownloadUrlForLayer"},
    "aws ecs describe-task-definition": {"ecs:DescribeTaskDefinition"},
    # the registered revision names the run's roles: registering it passes them
    "aws ecs register-task-definition": {"ecs:RegisterTaskDefinition", "iam:PassRole"},
    "aws ecs run-task": {"ecs:RunTask", "iam:PassRole"},
    "aws ecs describe-tasks": {"ecs:DescribeTasks"},
    "aws sts assume-role": {"sts:AssumeRole"},
}
ROLE_OF = {"BuildProject": "BuildRole", "ValidateProject": "ValidateRole", "PromoteProject": "PromoteRole"}


def commands(project: str) -> list[str]:
    spec = yaml.safe_load(buildspec_text(project))
    return [c for phase in spec["phases"].values() for c in phase.get("commands", [])]


def variables_read(project: str) -> set[str]:
    """Upper-case variables the buildspec reads ($X, ${X...}, os.environ in its Python, or the names it
    checks in a `for name in` loop), less those it assigns itself at the start of a command."""
    text = "\n".join(commands(project))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    read |= set(re.findall(r"os\.environ(?:\.get\(|\[)\"([A-Z][A-Z0-9_]*)\"", text))
    for names in re.findall(r"for name in ([A-Z0-9_ ]+);", text):
        read |= set(names.split())
    assigned = set(re.findall(r"^\s*(?:export )?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    if "source decision.env" in text:
        assigned |= DECIDED
    for names in re.findall(r"read -r ([A-Z0-9_ ]+)", text):
        assigned |= set(names.split())
    return read - assigned


def project_variables(project: str) -> set[str]:
    env = RESOURCES[project]["Properties"]["Environment"]["EnvironmentVariables"]
    return {v["Name"] for v in env}


def stages(requires_approval: bool = True) -> list[dict[str, Any]]:
    """The pipeline's stages, the Approve stage with ReleaseApproval required, without it otherwise."""
    found = []
    for stage in RESOURCES["Pipeline"]["Properties"]["Stages"]:
        if "Fn::If" in stage:
            condition, when_true, when_false = stage["Fn::If"]
            assert condition == "RequiresApproval"
            stage = when_true if requires_approval else when_false
        if stage != {"Ref": "AWS::NoValue"}:
            found.append(stage)
    return found


def action_variables(project: str) -> set[str]:
    for stage in stages():
        for action in stage["Actions"]:
            if action["Configuration"].get("ProjectName") == {"Ref": project}:
                return {v["name"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])}
    raise AssertionError(f"no pipeline action runs {project}")


def test_pipeline_is_v2_queued_and_runs_source_build_validate_in_order() -> None:
    pipeline = RESOURCES["Pipeline"]["Properties"]

    assert pipeline["PipelineType"] == "V2"
    assert pipeline["ExecutionMode"] == "QUEUED"
    assert [s["Name"] for s in stages(False)] == ["Source", "Build", "Validate", "Promote"]
    assert [s["Name"] for s in stages(True)] == ["Source", "Build", "Validate", "Approve", "Promote"]
    (approval,) = stages(True)[3]["Actions"]
    assert approval["ActionTypeId"] == {
        "Category": "Approval",
        "Owner": "AWS",
        "Provider": "Manual",
        "Version": "1",
    }
    source = pipeline["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["FullRepositoryId"] == {"Ref": "GitHubRepository"}
    (trigger,) = pipeline["Triggers"]
    assert trigger["GitConfiguration"]["SourceActionName"] == source["Name"]
    assert trigger["GitConfiguration"]["Push"] == [{"Branches": {"Includes": [{"Ref": "GitHubBranch"}]}}]
    projects = [s["Actions"][0]["Configuration"]["ProjectName"] for s in stages(False)[1:]]
    assert projects == [{"Ref": "BuildProject"}, {"Ref": "ValidateProject"}, {"Ref": "PromoteProject"}]


@pytest.mark.parametrize("project", PROJECTS)
def test_each_project_sets_exactly_what_its_buildspec_reads(project: str) -> None:
    given = project_variables(project) | action_variables(project)

    assert variables_read(project) - CODEBUILD_SETS - {"CANDIDATE", "POLL_SECONDS"} == given


def test_the_validation_never_runs_python_that_could_import_from_the_repository() -> None:
    validate = "\n".join(commands("ValidateProject"))

    assert commands("ValidateProject")[0] == 'cd "$(mktemp -d)"'
    assert re.findall(r"python3(?! -I )", validate) == []


def test_what_builds_and_promotes_is_the_templates_and_nobody_may_override_it() -> None:
    deny = statements(RESOURCES, "PipelineRole")["NeverOverrideWhatPromotes"]

    for project in PROJECTS:  # inline, never a file of the model's repository
        assert RESOURCES[project]["Properties"]["Source"]["BuildSpec"].startswith("version: 0.2\n"), project
    for project in (
        "ValidateProject",
        "PromoteProject",
    ):  # they build and run nothing themselves (CodeBuild.5)
        assert RESOURCES[project]["Properties"]["Environment"]["PrivilegedMode"] is False
    assert (deny["Effect"], deny["Action"], deny["Resource"]) == (
        "Deny", "codebuild:StartBuild",
        [{"Fn::GetAtt": ["ValidateProject", "Arn"]}, {"Fn::GetAtt": ["PromoteProject", "Arn"]}],
    )  # fmt: skip
    assert deny["Condition"] == {"Null": {"codebuild:source.buildspec": "false"}}


def test_the_build_cannot_register_revisions_write_the_parameter_or_pass_roles() -> None:
    build = granted(RESOURCES, "BuildRole")
    reads = statements(RESOURCES, "BuildRole")["ReadTheRunnerVersion"]

    assert not {a for a in build if a.startswith(("ecs:", "iam:", "sts:"))}
    assert {a for a in build if a.startswith("ssm:")} == {"ssm:GetParameter"}  # the runner's version, only
    assert reads["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                                 "parameter/${PlatformStackName}/runner/v${RunnerMajorVersion}"}  # fmt: skip


def test_the_candidates_runner_may_pass_only_the_validations_roles_and_only_promotion_the_runs() -> None:
    validate, promote = statements(RESOURCES, "ValidateRole"), statements(RESOURCES, "PromoteRole")
    passes = [s["Resource"] for s in validate.values() if "iam:PassRole" in actions(s)]
    (trust,) = RESOURCES["PromoteRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    roles = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::IAM::Role"]
    pass_run_roles = [
        role for role in roles for s in statements(RESOURCES, role).values()
        if "iam:PassRole" in actions(s) and {"Fn::GetAtt": ["TaskRole", "Arn"]} in s["Resource"]
    ]  # fmt: skip

    assert passes == [
        [{"Fn::GetAtt": ["ValidationTaskRole", "Arn"]}, {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}]
    ]
    assert validate["RunTheCandidate"]["Resource"]["Fn::Sub"].endswith(
        ":task-definition/${AWS::StackName}-validate:*"
    )
    assert validate["RunTheCandidate"]["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["ValidationCluster", "Arn"]}}
    }
    assert not {a for a in granted(RESOURCES, "ValidateRole") if a.startswith(("sts:", "ssm:Put"))}
    # the schedule starts runs; only promotion pins them
    assert sorted(pass_run_roles) == ["PromoteRole", "SchedulerRole"]
    assert {
        a for a in granted(RESOURCES, "PromoteRole") if a.startswith(("ecs:", "iam:", "sts:", "ecr:"))
    } == {
        "ecs:DescribeTaskDefinition",
        "ecs:RegisterTaskDefinition",
        "iam:PassRole",
    }
    assert promote["PassRunRoles"]["Resource"] == [
        {"Fn::GetAtt": ["TaskRole", "Arn"]},
        {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]},
    ]
    assert trust["Principal"] == {"Service": "codebuild.amazonaws.com"}  # the promote project's, alone
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


@pytest.mark.parametrize("project", PROJECTS)
def test_each_role_grants_the_ecr_ssm_and_ecs_actions_its_buildspec_calls_and_no_more(project: str) -> None:
    text = "\n".join(commands(project))
    needed = set().union(*(actions for command, actions in COMMAND_ACTIONS.items() if command in text))

    role = granted(RESOURCES, ROLE_OF[project])

    assert {a for a in role if a.startswith(("ecr:", "ssm:", "ecs:", "iam:", "sts:"))} == needed


def test_the_validation_run_writes_only_under_the_validation_prefix_and_its_project_nowhere() -> None:
    writes = [
        s
        for s in statements(RESOURCES, "ValidationTaskRole").values()
        if {"s3:PutObject", "s3:DeleteObject"} & actions(s)
    ]

    assert [(s["Resource"], s["Action"]) for s in writes] == [
        (
            {"Fn::Sub": "arn:${AWS::Partition}:s3:::${OutputBucket}/${ValidationPrefix}/*"},
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        ),
        (
            {"Fn::Sub": "${StagingBucket.Arn}/validation/*"},
            ["s3:GetObject", "s3:DeleteObject"],
        ),
    ]
    validate_puts = [
        s["Resource"] for s in statements(RESOURCES, "ValidateRole").values() if "s3:PutObject" in actions(s)
    ]
    assert validate_puts == [{"Fn::Sub": "${VersionsBucket.Arn}/versions/*"}]  # its version record, only


def test_build_exports_the_digest_the_validation_runs() -> None:
    spec = yaml.safe_load(buildspec_text("BuildProject"))
    validate = "\n".join(commands("ValidateProject"))

    assert spec["env"]["exported-variables"] == ["IMAGE_DIGEST", "RUNNER_IMAGE"]
    assert {"IMAGE_DIGEST", "RUNNER_IMAGE"} <= set(action_variables("ValidateProject"))
    assert 'container["image"] = sys.argv[1]' in validate and 'python3 -I - "$2"' in validate
    assert 'CANDIDATE=$(pin "$VALIDATION_TASK_DEFINITION" "$IMAGE_DIGEST")' in validate
    assert '"taskDefinition": os.environ["CANDIDATE"]' in validate


PATTERNS: dict[str, tuple[list[str], list[str]]] = {
    "GitHubRepository": (
        ["hotel-profiling/usp-model", "a/b", "Owner1/repo.name_2"],
        ["usp-model", "-owner/repo", "owner/repo/extra", "owner/", "own er/repo"],
    ),
    "GitHubBranch": (["main", "release/2024.1", "feature_x"], ["", "-x", "/main", "has space"]),
    "ConnectionArn": (
        [
            "",
            "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
        ],
        ["arn:aws:s3:::bucket", "arn:aws:codeconnections:eu-west-1:1234:connection/x", "my-connection"],
    ),
    "DataLakeBucket": (["hotel-data-lake", "a.b-c"], ["Hotel_Data", "ab", "-bucket", "bucket-"]),
    "OutputBucket": (["hotel-output"], ["s3://hotel-output", "UPPER"]),
    "DataLakePrefix": (["snapshots", "a/b/c"], ["/snapshots", "snapshots/", "a//b"]),
    "ValidationDate": (["2019-08-01", "2024-12-31"], ["2019-13-01", "2019-8-1", "20190801"]),
    "NotebookPath": (["usp.ipynb", "models/usp.ipynb"], ["usp.py", "/abs/usp.ipynb", "../up.ipynb"]),
    "NotificationEmails": (
        ["", "data-eng@example.com", "a@x.io,b@y.io", "a@x.io,b@y.io,c@z.io"],
        ["data-eng", "a@b", "a b@example.com", "a@x.io, b@y.io", "a@x.io,", "a@x.io,b@y.io,c@z.io,d@w.io"],
    ),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_parameter_patterns_accept_good_values_and_refuse_bad_ones(name: str) -> None:
    parameter: dict[str, Any] = TEMPLATE_DOC["Parameters"][name]
    good, bad = PATTERNS[name]

    assert parameter["ConstraintDescription"]
    for value in good:
        assert re.fullmatch(parameter["AllowedPattern"], value), f"{name} refused {value!r}"
    for value in bad:
        assert not re.fullmatch(parameter["AllowedPattern"], value), f"{name} accepted {value!r}"


def test_every_parameter_is_described_grouped_and_constrained() -> None:
    interface = TEMPLATE_DOC["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = {p for group in interface["ParameterGroups"] for p in group["Parameters"]}

    for name, parameter in TEMPLATE_DOC["Parameters"].items():
        assert parameter["Description"], name
        typed = parameter["Type"].startswith("List<AWS::EC2::")  # CloudFormation checks the ids exist
        assert typed or {"AllowedPattern", "AllowedValues", "MinValue"} & set(parameter), name
        assert parameter["ConstraintDescription"], name
        assert name in interface["ParameterLabels"], name
    assert grouped == set(TEMPLATE_DOC["Parameters"])


def test_outputs_are_exported_under_the_stack_name() -> None:
    outputs = TEMPLATE_DOC["Outputs"]

    assert {"PipelineConsoleUrl", "ImageRepositoryUri", "ConnectionArn", "ConnectionStatus"} <= set(outputs)
    for name, output in outputs.items():
        if "Export" in output:
            assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}


def test_alert_topic_is_encrypted_with_a_key_eventbridge_and_cloudwatch_may_use() -> None:
    key_policy = RESOURCES["AlertKey"]["Properties"]["KeyPolicy"]["Statement"]
    topic_policy = RESOURCES["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    services = ["events.amazonaws.com", "cloudwatch.amazonaws.com"]

    assert RESOURCES["AlertTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlertKey"}
    (for_services,) = [s for s in key_policy if "Service" in s["Principal"]]
    assert for_services["Principal"]["Service"] == services
    assert set(for_services["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    (publish,) = topic_policy
    assert (publish["Principal"]["Service"], publish["Action"]) == (services, "sns:Publish")
    assert publish["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def pin_function(project: str) -> str:
    (command,) = [c for c in commands(project) if c.lstrip().startswith("pin() {")]
    return command


def test_validation_and_promotion_pin_a_revision_with_one_function() -> None:
    """The candidate's revision (validation) and the daily runs' (promotion) are registered by the same
    `pin`, written in both inline buildspecs: the two copies are held equal here."""
    promote = "\n".join(commands("PromoteProject"))

    assert pin_function("ValidateProject") == pin_function("PromoteProject")
    assert 'REVISION=$(pin "$RUN_TASK_DEFINITION" "$IMAGE")' in promote
