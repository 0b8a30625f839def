"""The daily run in template/pipeline.yaml: the schedule's target, role and input (a RunTask request that
botocore's validator accepts and moto's ECS runs), the task role against what the runner calls, the
missed-run alarm against the metric the runner puts, the failed-run rule against AWS's sample ECS event,
and the failed-run mailer executed on moto's Step Functions interpreter."""

from __future__ import annotations

import ast
import copy
import importlib.machinery
import importlib.util
import json
import re
import subprocess
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import cfn
import pytest
import stepfunctions
from botocore.validate import ParamValidator
from cfn import load
from eventbridge import pattern
from support import REPO

from runner import notify
from runner.config import SETTING_NAMES
from runner.exits import EXITS, KILLED
from runner.locations import Location
from runner.report import console_link

TEMPLATE = load()
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
STACK = "notebook-pipeline-usp"
CLUSTER_ARN = f"arn:aws:ecs:us-east-1:123456789012:cluster/{STACK}-runs"
# What CloudFormation would resolve the run's references to, for this stack.
VALUES = {
    "AWS::StackName": STACK, "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "RunCluster.Arn": CLUSTER_ARN, "AssignPublicIp": "DISABLED", "DataLakeBucket": "hotel-lake",
    "DataLakePrefix": "snapshots", "OutputBucket": "hotel-out", "OutputPrefix": "daily",
    "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"], "SecurityGroups": ["sg-0a1b2c3d"],
    "AlertTopic": "arn:aws:sns:us-east-1:123456789012:alerts", "ScheduleTimezone": "UTC",
    "ValidationPrefix": "validation",
    "StagingBucket": "hotel-staging", "StagingBucket.Arn": "arn:aws:s3:::hotel-staging",
    "TableDatabase": "notebook_pipeline_usp",
}  # fmt: skip
RUNNER = REPO / "runner"


def resolve(value: Any) -> Any:
    return cfn.resolve(value, VALUES)


def statements(role: str) -> dict[str, dict[str, Any]]:
    return cfn.statements(RESOURCES, role)


# --- the schedule --------------------------------------------------------------------------------


def schedule_input() -> dict[str, Any]:
    return json.loads(resolve(RESOURCES["DailyRunSchedule"]["Properties"]["Target"]["Input"]))


def to_api(shape: Any, value: Any) -> Any:
    """A universal target's PascalCase request as the API's own member names (Scheduler does this)."""
    if shape.type_name == "structure":
        members = {name.lower(): name for name in shape.members}
        unknown = [k for k in value if k.lower() not in members]
        assert not unknown, f"not members of {shape.name}: {unknown}"
        return {members[k.lower()]: to_api(shape.members[members[k.lower()]], v) for k, v in value.items()}
    if shape.type_name == "list":
        return [to_api(shape.member, item) for item in value]
    return value


def run_task_request() -> dict[str, Any]:
    operation = boto3.client("ecs", region_name="us-east-1").meta.service_model.operation_model("RunTask")
    request = to_api(operation.input_shape, schedule_input())
    report = ParamValidator().validate(request, operation.input_shape)
    assert not report.has_errors(), report.generate_report()
    return request


def test_schedule_calls_run_task_with_a_request_the_ecs_api_accepts() -> None:
    target = RESOURCES["DailyRunSchedule"]["Properties"]["Target"]
    request = run_task_request()

    assert target["Arn"] == {"Fn::Sub": "arn:${AWS::Partition}:scheduler:::aws-sdk:ecs:runTask"}
    assert request["cluster"] == CLUSTER_ARN
    assert request["taskDefinition"] == resolve(RESOURCES["TaskDefinition"]["Properties"]["Family"])
    assert request["launchType"] == "FARGATE"
    assert request["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"], "securityGroups": ["sg-0a1b2c3d"],
        "assignPublicIp": "DISABLED",
    }  # fmt: skip


def test_schedule_gives_the_run_its_scheduled_time_and_an_id_in_the_runners_container() -> None:
    (override,) = run_task_request()["overrides"]["containerOverrides"]
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]

    assert override["name"] == container["Name"]
    assert override["environment"] == [
        {"name": "SCHEDULED_TIME", "value": "<aws.scheduler.scheduled-time>"},
        {"name": "RUN_ID", "value": "schedule-<aws.scheduler.execution-id>"},
    ]
    assert {"SCHEDULED_TIME", "SCHEDULE_TIMEZONE", "RUN_ID"} <= SETTING_NAMES
    assert {"Name": "SCHEDULE_TIMEZONE", "Value": {"Ref": "ScheduleTimezone"}} in container["Environment"]


def test_moto_runs_the_scheduled_request_on_the_stacks_task_definition() -> None:
    """The request, sent to ECS (moto's) as Scheduler would, starts the family's latest revision."""
    request = run_task_request()
    with stepfunctions.executing_aws():
        ec2, ecs = boto3.client("ec2", region_name="us-east-1"), boto3.client("ecs", region_name="us-east-1")
        default = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][
            :2
        ]
        groups = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
        network = request["networkConfiguration"][
            "awsvpcConfiguration"
        ]  # the template's ids, as existing ones:
        network |= {"subnets": [s["SubnetId"] for s in default], "securityGroups": [groups[0]["GroupId"]]}
        ecs.create_cluster(clusterName=f"{STACK}-runs")
        for image in ("repo:validated", "repo@sha256:" + "a" * 64):  # the stack's revision, then a pinned one
            ecs.register_task_definition(
                family=request["taskDefinition"], requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                cpu="1024", memory="2048",
                # moto sums container memory to place the task: the real definition sets it per task
                containerDefinitions=[{"name": "runner", "image": image, "memory": 2048}],
            )  # fmt: skip
        (task,) = ecs.run_task(**request)["tasks"]

    assert task["taskDefinitionArn"].endswith(f"{request['taskDefinition']}:2")
    assert task["overrides"]["containerOverrides"][0]["environment"][0]["name"] == "SCHEDULED_TIME"


def test_scheduler_may_start_only_this_family_on_this_cluster_and_pass_only_the_run_roles() -> None:
    granted = statements("SchedulerRole")
    target = RESOURCES["DailyRunSchedule"]["Properties"]["Target"]

    assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert granted["RunTask"]["Action"] == "ecs:RunTask"
    assert resolve(granted["RunTask"]["Resource"]) == (
        f"arn:aws:ecs:us-east-1:123456789012:task-definition/{STACK}-run:*"
    )
    assert granted["RunTask"]["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["RunCluster", "Arn"]}}
    }
    assert granted["PassTaskRoles"]["Resource"] == [
        {"Fn::GetAtt": ["TaskRole", "Arn"]}, {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]},
    ]  # fmt: skip
    assert granted["PassTaskRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert granted["DeadLetters"]["Resource"] == {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_the_schedule_is_optional_and_pausable() -> None:
    only_with_a_schedule = {
        name for name, resource in RESOURCES.items() if resource.get("Condition") == "HasSchedule"
    }
    properties = RESOURCES["DailyRunSchedule"]["Properties"]

    assert TEMPLATE["Conditions"]["HasSchedule"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ScheduleExpression"}, ""]}]
    }
    assert only_with_a_schedule == {
        "DailyRunSchedule", "SchedulerRole", "ScheduleDeadLetterQueue", "MissedRunAlarm",
        "ScheduleDeadLettersAlarm",
    }  # fmt: skip
    assert properties["State"] == {"Ref": "ScheduleState"}
    assert PARAMETERS["ScheduleState"]["AllowedValues"] == ["ENABLED", "DISABLED"]
    assert properties["ScheduleExpressionTimezone"] == {"Ref": "ScheduleTimezone"}
    assert PARAMETERS["ScheduleExpression"]["Default"] == "cron(0 6 * * ? *)"  # once a day


PATTERNS = {
    "ScheduleExpression": (
        ["", "cron(0 6 * * ? *)", "cron(30 5 ? * MON-FRI *)", "cron(0 6 1 * ? 2027)", "rate(1 day)",
         "rate(12 hours)"],
        ["0 6 * * *", "cron(0 6 * * ?)", "cron(0 6 * * ? * *)", "rate(0 days)", "rate(1 week)",
         "at(2026-12-01T06:00:00)", "cron(0 6 * * ? *) ", "cron( 0 6 * * ? *)"],
    ),
    "ScheduleTimezone": (
        ["UTC", "Europe/Amsterdam", "America/Argentina/Buenos_Aires", "Etc/GMT+1", "America/Port-au-Prince"],
        ["", "Europe/", "/UTC", "../etc/passwd", "UTC;reboot", "Europe Amsterdam", "a/b/c/d"],
    ),
    "OutputPrefix": (
        ["daily", "usp/daily", "a/b/c/d/e/f"],
        ["/daily", "daily/", "a//b", "", "a/b/c/d/e/f/g"],  # six folders at most (test_validation_prefix.py)
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_run_parameters_accept_good_values_and_refuse_bad_ones(name: str) -> None:
    good, bad = PATTERNS[name]
    pattern = PARAMETERS[name]["AllowedPattern"]

    for value in good:
        assert re.fullmatch(pattern, value), f"{name} refused {value!r}"
    for value in bad:
        assert not re.fullmatch(pattern, value), f"{name} accepted {value!r}"


# --- the task --------------------------------------------------------------------------------------


def test_the_task_runs_the_validated_image_read_only_with_its_logs_kept() -> None:
    properties = RESOURCES["TaskDefinition"]["Properties"]
    (container,) = properties["ContainerDefinitions"]
    logs = container["LogConfiguration"]["Options"]

    assert properties["RequiresCompatibilities"] == ["FARGATE"]
    assert (properties["Cpu"], properties["Memory"]) == ({"Ref": "TaskCpu"}, {"Ref": "TaskMemory"})
    assert container["Image"]["Fn::If"][:2] == [
        "HasValidatedImage",
        {"Ref": "ValidatedImage"},
    ]  # a digest, never a tag
    assert "@${NoImage}" in container["Image"]["Fn::If"][2]["Fn::Sub"][0]
    assert container["ReadonlyRootFilesystem"] is True
    assert container["MountPoints"] == [{"SourceVolume": "scratch", "ContainerPath": "/tmp"}]  # noqa: S108
    assert logs["awslogs-group"] == {"Ref": "RunLogGroup"}
    assert RESOURCES["RunLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    environment = {e["Name"]: resolve(e["Value"]) for e in container["Environment"]}
    assert environment["DATA_URI"] == "s3://hotel-lake/snapshots"
    assert environment["OUTPUT_URI"] == "s3://hotel-out/daily"


def test_every_variable_the_task_sets_is_one_the_runner_reads() -> None:
    for definition in ("TaskDefinition", "ValidationTaskDefinition"):
        (container,) = RESOURCES[definition]["Properties"]["ContainerDefinitions"]
        names = {v["Name"] for v in container["Environment"]} - {"AWS_REGION"}  # the AWS SDK's

        assert names <= SETTING_NAMES, (
            f"{definition} sets what the runner does not read: {names - SETTING_NAMES}"
        )


# The IAM actions each AWS call of the runner's trusted steps needs (copy_object: GetObject on the source,
# PutObject on the copy; assume_role with session tags: AssumeRole and TagSession).
RUNNER_CALLS = {
    "list_objects_v2": {"s3:ListBucket"},
    "get_paginator": {"s3:ListBucket"},  # list_objects_v2, paginated
    "get_object": {"s3:GetObject"},  # each staged object, copied for the check and the commit
    "delete_objects": {"s3:DeleteObject"},
    "upload_fileobj": {"s3:PutObject"},  # the report's files, from memory
    "publish": {"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"},  # the topic is KMS-encrypted
    "put_metric_data": {"cloudwatch:PutMetricData"},
    "assume_role": {"sts:AssumeRole", "sts:TagSession"},
    "put_events": {"events:PutEvents"},  # the consumers' event
}
# What the table library calls for the runner, not through aws_client(): PyIceberg's GlueCatalog and
# PyArrowFileIO (writes the table's files under the output prefix), held request by request in
# test_run_identity.py.
TABLE_LIBRARY_ACTIONS = {
    "glue:GetTable",
    "glue:GetDatabase",
    "glue:CreateTable",
    "glue:UpdateTable",
    "s3:PutObject",
}


def runner_calls() -> set[str]:
    """The AWS client methods the runner's modules call on the clients aws_client() makes."""
    calls = set()
    for module in sorted(RUNNER.glob("*.py")):
        tree = ast.parse(module.read_text())
        clients = {"s3", "client"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
                made = isinstance(target, ast.Call) and getattr(target.func, "id", "") == "aws_client"
                named = getattr(target, "id", None) or getattr(target, "attr", None)  # s3, or self.s3
                if made or (isinstance(target, (ast.Name, ast.Attribute)) and named in clients):
                    calls.add(node.func.attr)
    return calls


def test_the_task_role_grants_what_the_runner_calls_and_nothing_else() -> None:
    calls = runner_calls()

    assert calls == set(RUNNER_CALLS), "a new AWS call in the runner: add its action here and to TaskRole"
    assert cfn.granted(RESOURCES, "TaskRole") == set().union(*RUNNER_CALLS.values(), TABLE_LIBRARY_ACTIONS)


def test_the_runner_never_reads_the_lake_and_the_notebook_writes_only_its_own_staging() -> None:
    task, notebook = statements("TaskRole"), statements("NotebookRole")
    writes = [s for s in notebook.values() if {"s3:PutObject", "s3:DeleteObject"} & cfn.actions(s)]

    assert not [s for s in task.values() if "hotel-lake" in str(resolve(s["Resource"]))]
    assert [resolve(s["Resource"]) for s in writes] == [
        "arn:aws:s3:::hotel-staging/daily/date=${aws:PrincipalTag/run-date}/${aws:PrincipalTag/run-id}/*",
        [  # the empty folder markers pyarrow puts above the run's folder: its parents, no other folder
            "arn:aws:s3:::hotel-staging/daily/",
            "arn:aws:s3:::hotel-staging/daily/date=${aws:PrincipalTag/run-date}/",
        ],
    ]
    assert not [s for s in notebook.values() if "hotel-out" in str(resolve(s["Resource"]))]
    assert resolve(notebook["ReadDataLake"]["Resource"]) == "arn:aws:s3:::hotel-lake/snapshots/*"
    assert cfn.granted(RESOURCES, "NotebookRole") == {
        "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"
    }  # fmt: skip
    assert task["AnnounceFailures"]["Resource"] == {"Ref": "AlertTopic"}


def run_environment(stack: str = STACK) -> dict[str, str]:
    """The daily run's container environment, resolved for a stack of this name."""
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    values = {**VALUES, "AWS::StackName": stack}
    return {e["Name"]: str(cfn.resolve(e["Value"], values)) for e in container["Environment"]}


@pytest.mark.parametrize("stack", [STACK, "other-model", "s" * 64])
def test_the_run_may_put_metrics_only_in_its_own_stacks_namespace_the_alarm_watches(stack: str) -> None:
    """One stack's run cannot put SuccessfulRuns for another (and silence its missed-run alarm): the run's
    METRICS_NAMESPACE, TaskRole's namespace condition and MissedRunAlarm's namespace are one, the stack's."""
    values = {**VALUES, "AWS::StackName": stack}
    condition = cfn.resolve(statements("TaskRole")["PutRunMetrics"]["Condition"], values)
    alarm = cfn.resolve(RESOURCES["MissedRunAlarm"]["Properties"], values)
    namespace = run_environment(stack)["METRICS_NAMESPACE"]

    assert namespace == f"NotebookPipeline/{stack}"
    assert condition == {"StringEquals": {"cloudwatch:namespace": namespace}}
    assert (alarm["Namespace"], alarm["Dimensions"]) == (namespace, [{"Name": "Job", "Value": stack}])
    assert run_environment(stack)["METRICS_JOB"] == stack
    assert namespace != run_environment(f"{stack}-x")["METRICS_NAMESPACE"]


# --- a day without a successful run ---------------------------------------------------------------


def test_missed_run_alarm_watches_the_metric_the_runner_puts_with_missing_data_breaching() -> None:
    alarm = RESOURCES["MissedRunAlarm"]["Properties"]
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    success = {"exit_code": 0, "duration_seconds": 61.5, "rows": 3000}
    (put,) = [d for d in notify.run_metrics("job", success) if d["MetricName"] == alarm["MetricName"]]

    assert alarm["Namespace"] == environment["METRICS_NAMESPACE"]  # the same expression (resolved: above)
    assert alarm["Dimensions"] == [{"Name": notify.JOB, "Value": environment["METRICS_JOB"]}]
    assert alarm["MetricName"] == notify.SUCCESSFUL_RUNS
    assert put["Dimensions"] == [
        {"Name": notify.JOB, "Value": "job"}
    ]  # what the runner puts, on success only
    assert not [d for c in EXITS if c for d in notify.run_metrics("job", {**success, "exit_code": c})
                if d["MetricName"] == notify.SUCCESSFUL_RUNS]  # fmt: skip
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "LessThanThreshold",
    )
    assert alarm["TreatMissingData"] == "breaching"  # no run at all is a missed run
    assert alarm["Period"] == 3600
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == {"Ref": "MissedRunAfterHours"}
    assert PARAMETERS["MissedRunAfterHours"]["Default"] == 26
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlertTopic"}]


# --- a run that failed -------------------------------------------------------------------------------


def stopped(exit_code: int | None, cluster: str = CLUSTER_ARN, status: str = "STOPPED") -> dict[str, Any]:
    """AWS's documented Fargate task event, as ECS sends it when the task stops."""
    event = json.loads((REPO / "tests" / "fixtures" / "events" / "ecs-task-state-change.json").read_text())
    event = copy.deepcopy(event)
    detail = event["detail"]
    detail.update(clusterArn=cluster, lastStatus=status, desiredStatus="STOPPED", group=f"family:{STACK}-run")
    detail["containers"][0].update(name="runner", lastStatus=status)
    if exit_code is None:
        detail.update(
            stopCode="TaskFailedToStart", stoppedReason="CannotPullContainerError: pull access denied"
        )
        del detail["containers"][0]["runtimeId"]
    else:
        detail["containers"][0]["exitCode"] = exit_code
        detail.update(stopCode="EssentialContainerExited", stoppedReason="Essential container in task exited")
    return event


def run_rule() -> Any:
    document = copy.deepcopy(RESOURCES["RunStoppedRule"]["Properties"]["EventPattern"])
    document["detail"]["clusterArn"] = [CLUSTER_ARN]
    return pattern(document)


@pytest.mark.parametrize("exit_code", [KILLED.code, 99, None])
def test_a_killed_run_an_unknown_exit_and_a_run_that_never_started_mail(exit_code: int | None) -> None:
    """The runner's own exit codes are its to mail (tests/pipeline/test_alerts.py holds the rule to them)."""
    assert run_rule().matches_event(stopped(exit_code))


def test_a_task_that_failed_to_start_without_containers_mails() -> None:
    event = stopped(None)
    event["detail"]["containers"] = []

    assert run_rule().matches_event(event)


@pytest.mark.parametrize(
    "event",
    [
        stopped(0),
        stopped(20),
        stopped(137, status="RUNNING"),
        stopped(137, cluster="arn:aws:ecs:us-east-1:123456789012:cluster/someone-elses"),
        json.loads((REPO / "tests" / "fixtures" / "events" / "ecs-task-state-change.json").read_text()),
    ],
    ids=["succeeded", "the runner's own failure", "still running", "other cluster", "documented sample"],
)
def test_successes_the_runners_own_failures_running_tasks_and_other_clusters_do_not_mail(
    event: dict[str, Any],
) -> None:
    assert not run_rule().matches_event(event)


@pytest.fixture
def inbox() -> Iterator[stepfunctions.Inbox]:
    with stepfunctions.executing_aws():
        yield stepfunctions.Inbox.create()


LOG_GROUP = f"/ecs/{STACK}-run"
TASK_ID = "c13b4cb40f1f4fe4a2971f76ae5a47ad"  # the documented event's task


def mail_failed_run(inbox: stepfunctions.Inbox, event: dict[str, Any]) -> tuple[str, str]:
    """RunMailer run on `event`, its DefinitionSubstitutions as the template resolves them for STACK."""
    mailer = RESOURCES["RunMailer"]["Properties"]
    values = {**VALUES, "AlertTopic": inbox.topic, "RunLogGroup": LOG_GROUP}
    substitutions = {
        name: str(cfn.resolve(value, values)) for name, value in mailer["DefinitionSubstitutions"].items()
    }
    assert substitutions["LogGroupInUrl"] == f"$252Fecs$252F{STACK}-run"  # the console's escaping of '/'
    execution = stepfunctions.run(mailer["Definition"], substitutions, event)
    assert execution["status"] == "SUCCEEDED", execution
    (mail,) = inbox.mails()
    return mail


def with_overrides(event: dict[str, Any], environment: list[dict[str, str]]) -> dict[str, Any]:
    """The event of a task started with these environment overrides of its container (ECS's camelCase)."""
    event["detail"]["overrides"] = {"containerOverrides": [{"name": "runner", "environment": environment}]}
    return event


def scheduled_overrides(run_id: str) -> list[dict[str, str]]:
    """What the schedule's RunTask input overrides, in its order, with the run id it would give."""
    (container,) = schedule_input()["Overrides"]["ContainerOverrides"]
    return [{"name": e["Name"], "value": run_id if e["Name"] == "RUN_ID" else "2019-08-02T06:00:00Z"}
            for e in container["Environment"]]  # fmt: skip


def remote_overrides(day: str, run_id: str) -> list[dict[str, str]]:
    """What make run-remote and make backfill override (scripts/runs.sh's printf), in its order."""
    line = next(
        line
        for line in (REPO / "scripts" / "runs.sh").read_text().splitlines()
        if "overrides=$(printf" in line
    )
    names = re.findall(r'\{"name":"([A-Z_]+)","value":"%s"\}', line)
    assert names == ["RUN_DATE", "RUN_ID"], line
    return [{"name": "RUN_DATE", "value": day}, {"name": "RUN_ID", "value": run_id}]


@pytest.mark.parametrize(
    "exit_code, meaning", [(137, KILLED.mail), (99, "an exit code the runner does not use")]
)
def test_exit_codes_from_outside_the_runner_are_named_too(
    inbox: stepfunctions.Inbox, exit_code: int, meaning: str
) -> None:
    _, message = mail_failed_run(inbox, stopped(exit_code))

    assert f"with exit code {exit_code}: {meaning}" in message


REPORTS = "s3://hotel-out/daily/_runs"  # OUTPUT_URI/_runs, the runs' REPORT_URI


@pytest.mark.parametrize(
    "environment, said",
    [
        (
            remote_overrides("2019-08-01", "backfill-2019-08-01"),
            f"{REPORTS}/date=2019-08-01/backfill-2019-08-01/ "
            + console_link(Location(f"{REPORTS}/date=2019-08-01/backfill-2019-08-01"), "us-east-1"),
        ),
        (
            scheduled_overrides("schedule-0a1b2c"),
            f"the folder date=(its day)/schedule-0a1b2c/ under {REPORTS}/ "
            + console_link(Location(REPORTS), "us-east-1"),
        ),
        (
            [],
            f"a folder date=(its day)/(its run id)/ under {REPORTS}/ "
            + console_link(Location(REPORTS), "us-east-1"),
        ),
    ],
    ids=["make run-remote or backfill", "the schedule", "no overrides"],
)
def test_the_failed_run_mail_links_its_report_folder_as_far_as_the_task_names_it(
    inbox: stepfunctions.Inbox, environment: list[dict[str, str]], said: str
) -> None:
    """The report's folder, REPORT_URI/date=D/RUN_ID/, in the S3 console (report.py's console_link): exact
    where the task's overrides name the day and the run, its run id where they name only that."""
    _, message = mail_failed_run(inbox, with_overrides(stopped(137), environment))

    assert message.endswith(f"Its report, if the runner stored one (its own mail then links it): {said}")


def test_a_run_that_never_started_its_container_mails_the_reason(inbox: stepfunctions.Inbox) -> None:
    event = stopped(None)
    event["detail"]["containers"] = []

    subject, message = mail_failed_run(inbox, event)

    assert subject == f"Run FAILED: family:{STACK}-run (exit none)"
    assert "with exit code none: the container never ran" in message
    assert "ECS says: CannotPullContainerError: pull access denied." in message


def test_the_run_mailer_may_only_publish_to_the_encrypted_topic_and_is_started_by_the_rule() -> None:
    (target,) = RESOURCES["RunStoppedRule"]["Properties"]["Targets"]

    cfn.mailer_role(RESOURCES, "RunMailer", "RunStoppedRule")
    assert target["RoleArn"] == {"Fn::GetAtt": ["RunMailerInvokeRole", "Arn"]}
    assert RESOURCES["RunMailer"]["Properties"]["RoleArn"] == {"Fn::GetAtt": ["RunMailerRole", "Arn"]}
    assert RESOURCES["RunStoppedRule"]["Properties"]["EventPattern"]["detail"]["clusterArn"] == [
        {"Fn::GetAtt": ["RunCluster", "Arn"]}
    ]


def test_mail_subjects_fit_snss_100_characters_for_the_longest_stack_name(inbox: stepfunctions.Inbox) -> None:
    """make deploy allows stack names of 64 characters (scripts/stack.sh); SNS refuses longer subjects."""
    longest = "s" * 64
    event = stopped(137)
    event["detail"]["group"] = f"family:{longest}-run"
    pipeline = RESOURCES["PipelineMailer"]["Properties"]
    outcome = {
        "pipeline": longest,
        "state": "SUPERSEDED",
        "execution": "e",
        "time": "t",
        "region": "us-east-1",
    }

    run_subject, _ = mail_failed_run(inbox, event)
    substitutions = {
        "TopicArn": inbox.topic, "Repository": "a/b", "OutputBucket": "o", "ValidationPrefix": "v"
    }  # fmt: skip
    stepfunctions.run(pipeline["Definition"], substitutions, outcome)
    ((pipeline_subject, _),) = inbox.mails()

    assert len(run_subject) <= 100 and len(pipeline_subject) <= 100
    assert (run_subject, pipeline_subject) == (
        f"Run FAILED: family:{longest}-run (exit 137)",
        f"Pipeline {longest} SUPERSEDED",
    )


@pytest.mark.parametrize("definition", ["TaskDefinition", "ValidationTaskDefinition"])
def test_the_runner_is_the_containers_only_holder_of_the_task_role(definition: str) -> None:
    """No init process (it would be PID 1 and keep the environment readable to the notebook), no ptrace
    capability, and the entrypoint hands over with exec, so no shell keeps the credentials' URI."""
    (container,) = RESOURCES[definition]["Properties"]["ContainerDefinitions"]
    linux = container.get("LinuxParameters", {})
    entrypoint = (REPO / "run_notebook.sh").read_text()

    assert not linux.get("InitProcessEnabled") and "SYS_PTRACE" not in str(linux.get("Capabilities", {}))
    assert container["ReadonlyRootFilesystem"] is True
    assert entrypoint.startswith(
        "#!/bin/bash\n"
    )  # never the first bash on PATH: /opt/venv/bin is the notebook's
    assert re.search(
        r'exec /usr/bin/env PATH="\$CONTAINER_PATH" /usr/bin/setpriv .*--no-new-privs -- "\$python" -I -S -c',
        entrypoint,
        flags=re.DOTALL,
    )


def test_the_capabilities_the_runner_keeps_are_one_fact_wherever_they_are_stated() -> None:
    """The template drops all but these; the entrypoint keeps exactly these (setpriv's inheritable, ambient
    and bounding sets, and its check of what the container gave it); the runner checks for them; make run
    and the bench run the container with them, and so does the smoke run of make publish-runner."""
    entrypoint = (REPO / "run_notebook.sh").read_text()
    names = {name.upper() for name in re.findall(r"\+(setuid|setgid|kill)\b", entrypoint)}
    mask = int(re.search(r"KEPT_CAPS=(0x[0-9a-f]+)", entrypoint).group(1), 16)  # type: ignore[union-attr]
    from runner import processes

    make = re.search(r"^FARGATE +:= (.*)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    added = set(re.findall(r"--cap-add (\w+)", make.group(1))) if make else set()  # type: ignore[union-attr]
    platform = (REPO / "scripts" / "platform.sh").read_text()
    publish = re.search(r"^readonly FARGATE=\((.*)\)$", platform, flags=re.MULTILINE)

    assert names == KEPT_CAPABILITIES
    assert mask == sum(1 << CAPABILITY_BITS.index(name) for name in KEPT_CAPABILITIES)
    assert {name.removeprefix("CAP_") for name in processes.KEPT} == KEPT_CAPABILITIES
    assert all(processes.KEPT[f"CAP_{name}"] == CAPABILITY_BITS.index(name) for name in KEPT_CAPABILITIES)
    assert "--cap-drop ALL" in make.group(1) and added == KEPT_CAPABILITIES  # type: ignore[union-attr]
    assert publish and publish.group(1) == make.group(1)  # type: ignore[union-attr] # the publish's smoke run


# --- the containers' capabilities ---------------------------------------------------------------------

# The capabilities Docker (moby's oci/caps/defaults.go) and containerd (oci/spec.go) give a container by
# default, the set ECS's KernelCapabilities drops from and Fargate starts its containers with; a test below
# (test_the_definitions_leave_a_root_container_exactly_setuid_setgid_and_kill) reads them off this Docker.
DOCKER_DEFAULT_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
# What the image keeps: it starts as root and drops at once to its runner user (setpriv), keeping these to
# start and stop the notebook under a uid of its own.
KEPT_CAPABILITIES = {"SETUID", "SETGID", "KILL"}
# capabilities(7): each capability's bit in /proc/<pid>/status's masks.
CAPABILITY_BITS = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
]  # fmt: skip


@pytest.mark.parametrize("definition", cfn.TASK_DEFINITIONS)
def test_both_task_definitions_drop_every_default_capability_but_setuid_setgid_and_kill(
    definition: str,
) -> None:
    dropped = cfn.dropped_capabilities(definition)

    assert set(cfn.capabilities(definition)) == {"Drop"}  # none added: Fargate would add SYS_PTRACE alone
    assert dropped == sorted(set(dropped))  # each once, in order
    assert set(dropped) == DOCKER_DEFAULT_CAPABILITIES - KEPT_CAPABILITIES
    assert cfn.docker_capability_options(definition) == [o for name in dropped for o in ("--cap-drop", name)]


def fargate_stand_in() -> ModuleType:
    """tests/pipeline/harness/aws, the buildspecs' AWS CLI and Fargate stand-in, as a module."""
    path = REPO / "tests" / "pipeline" / "harness" / "aws"
    loader = importlib.machinery.SourceFileLoader("harness_aws", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def capabilities_of_root(image: str, options: list[str]) -> dict[str, set[str]]:
    """The bounding and effective capabilities of a root process in a container of `image` run with
    `options`, read from /proc/self/status."""
    done = subprocess.run(
        ["docker", "run", "--rm", "--user", "0", "--entrypoint", "cat", *options, image, "/proc/self/status"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    masks = dict(line.split(":\t", 1) for line in done.stdout.splitlines() if line.startswith("Cap"))
    return {
        mask: {name for bit, name in enumerate(CAPABILITY_BITS) if int(masks[mask], 16) >> bit & 1}
        for mask in ("CapBnd", "CapEff")
    }


@pytest.mark.docker
@pytest.mark.parametrize("definition", cfn.TASK_DEFINITIONS)
def test_the_definitions_leave_a_root_container_exactly_setuid_setgid_and_kill(
    base_image: str, definition: str
) -> None:
    """As Fargate would start it, and as the harness's Fargate stand-in starts the validation's candidate
    (it applies the registered definition's linuxParameters: validation_stack.register copies the
    template's)."""
    registered = {"linuxParameters": {"capabilities": {
        key.lower(): names for key, names in cfn.capabilities(definition).items()
    }}}  # fmt: skip
    options = fargate_stand_in().capability_options(registered)

    default = capabilities_of_root(base_image, [])
    confined = capabilities_of_root(base_image, options)

    assert default == {"CapBnd": DOCKER_DEFAULT_CAPABILITIES, "CapEff": DOCKER_DEFAULT_CAPABILITIES}
    assert options == cfn.docker_capability_options(definition)
    assert confined == {"CapBnd": KEPT_CAPABILITIES, "CapEff": KEPT_CAPABILITIES}
