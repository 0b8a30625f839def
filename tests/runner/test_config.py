"""The run's configuration in process, by the functions that check it: each bad variable, notebook, secret or
data location is refused with exit 2 (exits.CONFIG) before anything runs, in a message that names the
variable and the value it was given (its wording is the runner's to change). One run in the container
(tests/runner/test_runner_failures.py) shows such a refusal end to end: its last line, its manifest, no cell
run and nothing published."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from support import SAMPLE_DATE, make_notebook

from runner import config, execute, exits, redaction
from runner.errors import RunFailed
from runner.locations import Location


@pytest.fixture
def project(tmp_path: Path) -> dict[str, str]:
    """A run's environment every check accepts: a project folder with a notebook (its parameters cell
    tagged) and a check, a data folder and an output folder."""
    make_notebook(tmp_path / "app" / "usp.ipynb", "print('hello')")
    (tmp_path / "app" / "check.py").write_text("print('CHECK PASSED')\n")
    (tmp_path / "lake").mkdir()
    return {
        "PROJECT_DIR": str(tmp_path / "app"),
        "NOTEBOOK": "usp.ipynb",
        "DATA_URI": str(tmp_path / "lake"),
        "OUTPUT_URI": str(tmp_path / "out"),
        "RUN_DATE": SAMPLE_DATE,
    }


@pytest.fixture(autouse=True)
def active_redactor_restored() -> Iterator[None]:
    """redaction.load sets the process's redactor: each test leaves it as it found it."""
    saved = redaction.ACTIVE
    yield
    redaction.ACTIVE = saved


def refused(failed: pytest.ExceptionInfo[RunFailed], *named: str) -> str:
    """The refusal is a configuration error (exit 2) whose message names each of `named`."""
    message = str(failed.value)
    assert failed.value.exit is exits.CONFIG, (failed.value.exit, message)
    for name in named:
        assert name in message, (name, message)
    return message


def test_the_projects_environment_passes_every_check_before_the_notebook(project: dict[str, str]) -> None:
    """So each refusal below is the one variable's it changes."""
    redaction.load(project)
    loaded = config.load(project)
    redaction.check_params(loaded.params)
    execute.check_notebook(loaded.notebook)
    execute.check_location("DATA_URI", loaded.data, None, must_hold_data=True)
    execute.check_location("OUTPUT_URI", loaded.output, None, must_hold_data=False)

    assert (loaded.run_date, loaded.notebook.name, loaded.data.uri) == (
        SAMPLE_DATE,
        "usp.ipynb",
        project["DATA_URI"],
    )


# What the message must name: the variable and the value given (a value with no text of its own, the
# variable alone).
CONFIG_ERRORS = {
    "impossible date": ({"RUN_DATE": "2019-02-30"}, ("RUN_DATE", "2019-02-30")),
    "date in another format": ({"RUN_DATE": "01/08/2019"}, ("RUN_DATE", "01/08/2019")),
    "timeout not a number": ({"CELL_TIMEOUT": "10m"}, ("CELL_TIMEOUT", "10m")),
    "check timeout zero": ({"CHECK_TIMEOUT": "0"}, ("CHECK_TIMEOUT", "0")),
    "notify neither true nor false": ({"NOTIFY_ON_SUCCESS": "yes"}, ("NOTIFY_ON_SUCCESS", "yes")),
    "no data uri": ({"DATA_URI": ""}, ("DATA_URI",)),
    "no output uri": ({"OUTPUT_URI": ""}, ("OUTPUT_URI",)),
    "unsupported scheme": ({"DATA_URI": "hdfs://cluster/lake"}, ("DATA_URI", "hdfs://cluster/lake")),
    "malformed bucket": ({"OUTPUT_URI": "s3://Bad_Bucket/x"}, ("OUTPUT_URI", "s3://Bad_Bucket/x")),
    "notebook missing": ({"NOTEBOOK": "missing.ipynb"}, ("NOTEBOOK", "missing.ipynb")),
    "notebook not a notebook": ({"NOTEBOOK": "check.py"}, ("NOTEBOOK", "check.py")),
    "params not a mapping": ({"NOTEBOOK_PARAMS": "[1, 2]"}, ("NOTEBOOK_PARAMS",)),
    "params not yaml": ({"NOTEBOOK_PARAMS": "{a: [}"}, ("NOTEBOOK_PARAMS",)),
    "params set the date": ({"NOTEBOOK_PARAMS": '{"date": "2020-01-01"}'}, ("NOTEBOOK_PARAMS", "date")),
    "params name is code": (
        {"NOTEBOOK_PARAMS": json.dumps({"x = __import__('os').system('id') #": 1})},
        ("NOTEBOOK_PARAMS", "x = __import__('os').system('id') #"),
    ),
    "params name is a keyword": ({"NOTEBOOK_PARAMS": "{class: 1}"}, ("NOTEBOOK_PARAMS", "class")),
    "bad topic arn": ({"SNS_TOPIC_ARN": "my-topic"}, ("SNS_TOPIC_ARN", "my-topic")),
    "check missing": ({"CHECK_SCRIPT": "nope.py"}, ("CHECK_SCRIPT", "nope.py")),
    "run id escapes its folder": ({"RUN_ID": "../../escaped"}, ("RUN_ID", "../../escaped")),
    "run id with a space": ({"RUN_ID": "my run"}, ("RUN_ID", "my run")),
    "notebook role not a role": (
        {"NOTEBOOK_ROLE_ARN": "arn:aws:iam::123456789012:user/me"},
        ("NOTEBOOK_ROLE_ARN", "arn:aws:iam::123456789012:user/me"),
    ),
    "scheduled time not utc": (
        {"RUN_DATE": "", "SCHEDULED_TIME": "2019-08-02 06:00"},
        ("SCHEDULED_TIME", "2019-08-02 06:00"),
    ),
    "unknown time zone": (
        {"RUN_DATE": "", "SCHEDULED_TIME": "2019-08-02T06:00:00Z", "SCHEDULE_TIMEZONE": "Mars/Olympus"},
        ("SCHEDULE_TIMEZONE", "Mars/Olympus"),
    ),
    "table not database.table": ({"OUTPUT_TABLE": "usp"}, ("OUTPUT_TABLE", "usp")),
    "unknown catalog": ({"TABLE_CATALOG": "hive"}, ("TABLE_CATALOG", "hive")),
    "glue catalog for a folder": ({"TABLE_CATALOG": "glue"}, ("TABLE_CATALOG", "glue")),
    "snapshot days not a number": ({"KEEP_SNAPSHOT_DAYS": "0"}, ("KEEP_SNAPSHOT_DAYS", "0")),
    "event bus not a bus": ({"EVENT_BUS": "arn:aws:sqs:x"}, ("EVENT_BUS", "arn:aws:sqs:x")),
    "event source of aws": ({"EVENT_SOURCE": "aws.s3"}, ("EVENT_SOURCE", "aws.s3")),
    "changed share above one": (
        {"COMPARE_URI": "/production", "COMPARE_MAX_CHANGED_SHARE": "1.5"},
        ("COMPARE_MAX_CHANGED_SHARE", "1.5"),
    ),
}


@pytest.mark.parametrize(("env", "named"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_a_bad_variable_is_a_configuration_error_naming_it(
    project: dict[str, str], env: dict[str, str], named: tuple[str, ...]
) -> None:
    with pytest.raises(RunFailed) as failed:
        config.load({**project, **env})

    refused(failed, *named)


# Where a location is refused: in the table's own folders, or with characters its catalog reads as a URL's.
LOCATIONS = {
    "reports in the table's metadata": ("REPORT_URI", "{out}/metadata/reports"),
    "staging in the table's data": ("STAGING_URI", "{out}/data"),
    "output with a '#'": ("OUTPUT_URI", "{out}#1"),
}


@pytest.mark.parametrize(("setting", "value"), LOCATIONS.values(), ids=LOCATIONS.keys())
def test_a_location_the_table_would_misread_is_a_configuration_error(
    project: dict[str, str], setting: str, value: str
) -> None:
    value = value.format(out=project["OUTPUT_URI"])

    with pytest.raises(RunFailed) as failed:
        config.load({**project, setting: value})

    refused(failed, setting, value)


@pytest.mark.parametrize("run_id", ["../../escaped", "a/b", "..", ".", "x" * 129, "tab\there", "é"])
def test_a_run_id_that_is_not_a_plain_name_is_a_configuration_error(project: dict, run_id: str) -> None:
    with pytest.raises(RunFailed) as failed:
        config.load({**project, "RUN_ID": run_id})

    refused(failed, "RUN_ID", run_id)


@pytest.mark.parametrize("name", ["x = __import__('os') #", "1st", "class", "a-b", ""])
def test_a_parameter_name_that_is_not_a_python_name_is_refused(name: str) -> None:
    with pytest.raises(RunFailed) as failed:
        config.load_params(json.dumps({name: 1}))

    refused(failed, "NOTEBOOK_PARAMS", repr(name))


def test_a_scheduled_run_is_for_the_day_before_its_date_in_the_schedules_zone() -> None:
    assert config.default_run_date("2026-03-29T00:30:00Z", "Europe/Amsterdam") == "2026-03-28"
    assert config.default_run_date("2026-03-29T00:30:00Z", "America/Los_Angeles") == "2026-03-27"


def test_staging_is_the_run_folder_of_staging_uri_or_of_the_report(project: dict) -> None:
    out = project["OUTPUT_URI"]
    own = config.load({**project, "RUN_ID": "r1"})
    apart = config.load({**project, "RUN_ID": "r1", "STAGING_URI": "s3://stage/daily"})

    assert own.staging.uri == f"{out}/_runs/date=2019-08-01/r1/staging"
    assert apart.staging.uri == "s3://stage/daily/date=2019-08-01/r1"


# --- what is checked once the configuration is read: the notebook, the data location ---------------------


def test_a_notebook_without_a_parameters_cell_is_refused(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "untagged.ipynb", "print('hello')", tagged=False)

    with pytest.raises(RunFailed) as failed:
        execute.check_notebook(notebook)

    assert "parameters" in refused(failed, "untagged.ipynb")


def test_a_file_that_is_not_a_notebook_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.ipynb").write_text("{ this is not json")

    with pytest.raises(RunFailed) as failed:
        execute.check_notebook(tmp_path / "broken.ipynb")

    refused(failed, "broken.ipynb")


def test_a_data_folder_that_is_not_there_is_refused(project: dict[str, str]) -> None:
    loaded = config.load({**project, "DATA_URI": "/nowhere"})

    with pytest.raises(RunFailed) as failed:
        execute.check_location("DATA_URI", loaded.data, None, must_hold_data=True)

    refused(failed, "DATA_URI", "/nowhere")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """moto's S3 in this process (no server): a bucket `lake` holding one snapshot file."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        client.put_object(Bucket="lake", Key="snapshots/usp/date=2019-08-01/usp.json", Body=b"{}\n")
        yield client


@pytest.mark.parametrize(
    "uri", ["s3://lake/nothing-here", "s3://no-such-lake/snapshots"], ids=["empty prefix", "no such bucket"]
)
def test_an_s3_data_location_with_nothing_to_read_is_refused(s3: object, uri: str) -> None:
    with pytest.raises(RunFailed) as failed:
        execute.check_location("DATA_URI", Location(uri), None, must_hold_data=True)

    refused(failed, "DATA_URI", uri)


def test_an_s3_data_location_holding_data_is_accepted(s3: object) -> None:
    execute.check_location("DATA_URI", Location("s3://lake/snapshots"), None, must_hold_data=True)


# --- the notebook's secrets (NOTEBOOK_SECRETS) --------------------------------------------------------------

SECRET = 'hunter2-"s3cr3t"-<b>&amp;\\x41\nsecond-line-of-the-key'
SECRETS_ERRORS = {
    "missing": ({"NOTEBOOK_SECRETS": "HADOOP_PASSWORD"}, "HADOOP_PASSWORD"),
    "too short": ({"NOTEBOOK_SECRETS": "PIN", "PIN": "1234"}, "PIN"),
    "reserved name": (
        {"NOTEBOOK_SECRETS": "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY": "x" * 40},
        "AWS_SECRET_ACCESS_KEY",
    ),
    "not a variable name": ({"NOTEBOOK_SECRETS": "db-password", "db-password": SECRET}, "db-password"),
}


@pytest.mark.parametrize(("env", "name"), SECRETS_ERRORS.values(), ids=SECRETS_ERRORS.keys())
def test_a_secret_that_cannot_be_kept_out_of_the_report_is_refused_by_name_never_by_value(
    project: dict[str, str], env: dict[str, str], name: str
) -> None:
    with pytest.raises(RunFailed) as failed:
        redaction.load({**project, **env})

    message = refused(failed, "NOTEBOOK_SECRETS", name)
    assert not env.get(name) or env[name] not in message


def test_a_secret_passed_as_a_parameter_is_refused_by_the_parameters_name(project: dict[str, str]) -> None:
    environ = {
        **project,
        "NOTEBOOK_SECRETS": "HADOOP_PASSWORD",
        "HADOOP_PASSWORD": SECRET,
        "NOTEBOOK_PARAMS": json.dumps({"password": SECRET, "threshold": 3}),
    }
    redaction.load(environ)

    with pytest.raises(RunFailed) as failed:
        redaction.check_params(config.load(environ).params)

    message = refused(failed, "NOTEBOOK_PARAMS", "password")
    assert "threshold" not in message
    assert not [line for line in SECRET.splitlines() if line in message]


def test_every_variable_the_configuration_refuses_is_one_of_its_settings() -> None:
    """The cases above name the runner's own variables (a renamed one fails here, not silently)."""
    named = {n for _, names in CONFIG_ERRORS.values() for n in names if re.fullmatch(r"[A-Z_]+", n)}

    assert named <= config.SETTING_NAMES
    assert named >= {"RUN_DATE", "DATA_URI", "OUTPUT_URI", "NOTEBOOK", "NOTEBOOK_PARAMS", "CHECK_SCRIPT"}
