"""The stack's CloudWatch dashboard (template/pipeline.yaml's Dashboard) against what the runner puts: its
DashboardBody (JSON, written in Fn::Join and Fn::Sub pieces) resolved as CloudFormation would for a stack
that builds (with and without a schedule) and for a production one, each widget's metric held to the
runner's own names (runner/notify.py: namespace, metric, dimensions) and exit codes (runner/exits.py), and
every resource it names present in that stack. In process: nothing is deployed."""

from __future__ import annotations

import json
import re
from typing import Any

import cfn
import pytest
from test_runs import RESOURCES, VALUES

from runner import notify
from runner.exits import EXITS

STACK = VALUES["AWS::StackName"]
REGION = VALUES["AWS::Region"]
ALARMS = sorted(name for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm")
PRODUCTION = {"ReleasesFromRepository": "arn:aws:ecr:us-east-1:111122223333:repository/usp"}
SCHEDULED = {"ScheduleExpression": "cron(0 6 * * ? *)"}
STACKS = {
    "staging, scheduled": SCHEDULED,
    "staging, no schedule": {"ScheduleExpression": ""},
    "production, scheduled": {**PRODUCTION, **SCHEDULED},
    "production, no schedule": {**PRODUCTION, "ScheduleExpression": ""},
}


def stack_values(parameters: dict[str, str]) -> dict[str, Any]:
    """What CloudFormation resolves the dashboard's references to, in a stack of these parameters."""
    values = {
        **cfn.defaults(), **VALUES, **parameters, "RunLogGroup": f"/ecs/{STACK}-run", "Pipeline": STACK,
        "RunStoppedRule": f"{STACK}-RunStoppedRule-1A2B3C", "Dashboard": f"{STACK}-{REGION}",
    }  # fmt: skip
    values["ValidateProject"] = cfn.resolve(RESOURCES["ValidateProject"]["Properties"]["Name"], values)
    for alarm in ALARMS:
        values[f"{alarm}.Arn"] = f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{STACK}-{alarm}"
    return values


def body(values: dict[str, Any]) -> dict[str, Any]:
    text = cfn.resolve(RESOURCES["Dashboard"]["Properties"]["DashboardBody"], values)
    assert not re.findall(r"\$\{[^}]*\}|<[A-Za-z0-9:.]+>", text), "a name nothing resolved"
    return json.loads(text)


def run_environment(values: dict[str, Any]) -> dict[str, str]:
    """The daily run's container environment: what its runner puts its metrics with."""
    (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {e["Name"]: str(cfn.resolve(e["Value"], values)) for e in container["Environment"]}


def metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """A metric widget's metrics: (namespace, name, dimensions, options), written out in full (no "...")."""
    found = []
    for row in widget["properties"].get("metrics", []):
        options = row[-1] if isinstance(row[-1], dict) else {}
        fields = row[:-1] if options else row
        assert "..." not in fields and len(fields) % 2 == 0, row
        namespace, name, *pairs = fields
        found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), options))
    return found


def alarm_metric(arn: str, values: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """The metric of the stack's alarm of this ARN, as the template writes it."""
    (name,) = [a for a in ALARMS if values[f"{a}.Arn"] == arn]
    alarm = cfn.resolve(RESOURCES[name]["Properties"], values)
    return alarm["Namespace"], alarm["MetricName"], {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def shown(values: dict[str, Any]) -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
    """Every metric the dashboard draws: its metric widgets' and those of the alarms drawn on them."""
    drawn = set()
    for widget in body(values)["widgets"]:
        for namespace, name, dimensions, _ in metrics(widget):
            drawn.add((namespace, name, frozenset(dimensions.items())))
        for arn in widget["properties"].get("annotations", {}).get("alarms", []):
            namespace, name, dimensions = alarm_metric(arn, values)
            drawn.add((namespace, name, frozenset(dimensions.items())))
    return drawn


@pytest.mark.parametrize("parameters", STACKS.values(), ids=STACKS.keys())
def test_each_widget_shows_a_metric_the_runner_puts_in_its_stacks_namespace_by_its_names(
    parameters: dict[str, str],
) -> None:
    values = stack_values(parameters)
    environment = run_environment(values)
    namespace, job = environment["METRICS_NAMESPACE"], environment["METRICS_JOB"]
    theirs = [
        m
        for widget in body(values)["widgets"]
        for m in metrics(widget)
        if m[0].startswith("NotebookPipeline")
    ]

    assert (namespace, job) == (f"NotebookPipeline/{STACK}", STACK)
    assert theirs and {m[0] for m in theirs} == {namespace}
    for _, name, dimensions, _ in theirs:
        assert name in notify.METRICS, f"the runner puts no {name}"
        assert set(dimensions) == set(notify.METRICS[name]), f"{name} is put with {notify.METRICS[name]}"
        assert dimensions[notify.JOB] == job


@pytest.mark.parametrize("parameters", STACKS.values(), ids=STACKS.keys())
def test_runs_are_counted_per_day_for_each_exit_code_the_runner_has_in_its_words(
    parameters: dict[str, str],
) -> None:
    (runs,) = [
        w
        for w in body(stack_values(parameters))["widgets"]
        if w["properties"].get("title", "").startswith("Runs per day")
    ]
    counted = {
        d[notify.EXIT_CODE]: options["label"] for _, name, d, options in metrics(runs) if name == notify.RUNS
    }

    assert counted == {str(code): f"{code} {e.meaning}" for code, e in EXITS.items()}
    assert len(metrics(runs)) == len(EXITS)
    assert (runs["properties"]["stat"], runs["properties"]["period"], runs["properties"]["stacked"]) == (
        "Sum",
        86400,
        True,
    )


@pytest.mark.parametrize("parameters", STACKS.values(), ids=STACKS.keys())
def test_every_metric_a_run_puts_is_on_the_dashboard_whatever_its_outcome(parameters: dict[str, str]) -> None:
    values = stack_values(parameters)
    environment = run_environment(values)
    drawn = shown(values)
    for code in EXITS:
        manifest = {"exit_code": code, "duration_seconds": 61.5, "rows": 3000 if code == 0 else None}
        for datum in notify.run_metrics(environment["METRICS_JOB"], manifest):
            dimensions = frozenset((d["Name"], d["Value"]) for d in datum["Dimensions"])
            assert (environment["METRICS_NAMESPACE"], datum["MetricName"], dimensions) in drawn, datum


@pytest.mark.parametrize("parameters", STACKS.values(), ids=STACKS.keys())
def test_the_dashboard_names_only_what_the_stack_has_and_shows_every_alarm_it_has(
    parameters: dict[str, str],
) -> None:
    """A production stack has no pipeline, validation or build: no widget names them (each piece that does
    is chosen by BuildsReleases); a stack without a schedule has no missed-run alarm."""
    values = stack_values(parameters)
    chosen = cfn.choose(RESOURCES["Dashboard"]["Properties"], values)
    names = {n for n in cfn.references(chosen) if not n.startswith("AWS::")}
    present = {name for name, r in RESOURCES.items() if cfn.exists(r, values)}
    alarms = [w for w in body(values)["widgets"] if w["type"] == "alarm"]

    assert names - set(cfn.load()["Parameters"]) <= present, names - present
    (status,) = alarms
    assert sorted(status["properties"]["alarms"]) == sorted(
        values[f"{a}.Arn"] for a in ALARMS if a in present
    )
    assert ("MissedRunAlarm" in present) == bool(parameters.get("ScheduleExpression"))


@pytest.mark.parametrize(
    "parameters", [SCHEDULED, {"ScheduleExpression": ""}], ids=["scheduled", "no schedule"]
)
def test_validations_are_shown_by_their_codebuild_metrics_outcome_and_duration(
    parameters: dict[str, str],
) -> None:
    values = stack_values(parameters)
    codebuild = [m for w in body(values)["widgets"] for m in metrics(w) if m[0] == "AWS/CodeBuild"]

    assert {(name, tuple(d.items())) for _, name, d, _ in codebuild} == {
        (name, (("ProjectName", f"{STACK}-validate"),))
        for name in ("SucceededBuilds", "FailedBuilds", "Duration")
    }
    assert not [
        m
        for w in body(stack_values({**parameters, **PRODUCTION}))["widgets"]
        for m in metrics(w)
        if m[0] == "AWS/CodeBuild"
    ]


def test_the_missed_run_alarm_is_drawn_over_the_metric_it_watches() -> None:
    values = stack_values(SCHEDULED)
    (drawn,) = [w for w in body(values)["widgets"] if "annotations" in w["properties"]]

    assert drawn["properties"]["annotations"] == {"alarms": [values["MissedRunAlarm.Arn"]]}
    assert "metrics" not in drawn["properties"]  # an alarm's widget draws the alarm's own metric
    assert alarm_metric(values["MissedRunAlarm.Arn"], values) == (
        f"NotebookPipeline/{STACK}",
        notify.SUCCESSFUL_RUNS,
        {notify.JOB: STACK},
    )


@pytest.mark.parametrize("parameters", STACKS.values(), ids=STACKS.keys())
def test_widgets_fit_the_grid_without_overlapping_each_in_the_stacks_region(
    parameters: dict[str, str],
) -> None:
    widgets = body(stack_values(parameters))["widgets"]
    cells = [(w["x"] + i, w["y"] + j) for w in widgets for i in range(w["width"]) for j in range(w["height"])]

    assert all(w["x"] + w["width"] <= 24 for w in widgets)
    assert len(cells) == len(set(cells))
    assert {w["properties"]["region"] for w in widgets if w["type"] == "metric"} == {REGION}


def test_the_dashboard_is_named_for_the_stack_and_region_and_linked_from_the_outputs() -> None:
    """Dashboards are the account's, not a region's: two regions' stacks of one name get one each."""
    values = stack_values({})
    name = cfn.resolve(RESOURCES["Dashboard"]["Properties"]["DashboardName"], values)
    output = cfn.load()["Outputs"]["DashboardUrl"]

    assert name == f"{STACK}-{REGION}" == values["Dashboard"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name)
    assert cfn.resolve(output["Value"], values) == (
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards/dashboard/{name}"
    )
    assert "Condition" not in output and "Condition" not in RESOURCES["Dashboard"]


def test_a_validation_never_puts_metrics_in_the_daily_runs_namespace() -> None:
    """Its task sets no METRICS_NAMESPACE (so its runner puts nothing) and its role may put no metric: a
    validation can neither fill the dashboard's runs nor silence the missed-run alarm."""
    (container,) = RESOURCES["ValidationTaskDefinition"]["Properties"]["ContainerDefinitions"]

    assert not {"METRICS_NAMESPACE", "METRICS_JOB"} & {e["Name"] for e in container["Environment"]}
    assert not [a for a in cfn.granted(RESOURCES, "ValidationTaskRole") if a.startswith("cloudwatch:")]
    assert cfn.statements(RESOURCES, "TaskRole")["PutRunMetrics"]["Action"] == "cloudwatch:PutMetricData"
