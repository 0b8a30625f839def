"""The run's configuration: the environment variables the image takes, checked before anything runs.

Every variable is declared once in SETTINGS (name, default, help); `run_notebook.sh --help` prints them,
and none of them reaches the notebook's kernel (credentials.py strips them from its environment).
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import logging
import math
import os
import re
import urllib.request
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import exits
from runner.catalog import FOLDERS, LOCAL_CATALOG, REPORTS, TableConfig
from runner.compare import Settings as CompareSettings
from runner.errors import RunFailed
from runner.locations import Location

log = logging.getLogger("runner")

CATALOGS = ("sqlite", "glue", "none")  # TABLE_CATALOG: catalog.py opens each
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")  # a Glue (and Athena) database or table name
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
S3_URI_PATTERN = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\x00-\x1f\x7f]*)?$")
TOPIC_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$")
ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
SCHEDULED_TIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
RESERVED_PARAMS = ("date", "data_uri", "output_uri")
STAGING_FOLDER = "staging"  # without STAGING_URI, the notebook writes in this folder of its run's report


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS = (
    Setting("DATA_URI", "", "where the notebook reads: s3://bucket/prefix or a folder (required)"),
    Setting("OUTPUT_URI", "", "where the checked output is published: s3://bucket/prefix or a folder "
            "(required)"),
    Setting("RUN_DATE", "", "YYYY-MM-DD partition to produce (default: yesterday, UTC, or the day before "
            "SCHEDULED_TIME's date in SCHEDULE_TIMEZONE when a schedule starts the run)"),
    Setting("SCHEDULED_TIME", "", "the schedule's time, YYYY-MM-DDTHH:MM:SSZ (EventBridge Scheduler sets "
            "it)"),
    Setting("SCHEDULE_TIMEZONE", "UTC", "the IANA time zone SCHEDULED_TIME's date is read in"),
    Setting("NOTEBOOK", "usp.ipynb", "notebook to run, relative to PROJECT_DIR or absolute"),
    Setting("NOTEBOOK_PARAMS", "", "extra notebook parameters, a JSON or YAML mapping of Python names"),
    Setting("CELL_TIMEOUT", "3600", "seconds one cell may run"),
    Setting("CHECK_SCRIPT", "check.py", "check to run on the output, relative to PROJECT_DIR or absolute"),
    Setting("CHECK_TIMEOUT", "3600", "seconds the check may run"),
    Setting("PROJECT_DIR", "", "the notebook project's folder (default: the working directory, /app)"),
    Setting("OUTPUT_TABLE", "", "the Iceberg table OUTPUT_URI holds, database.table in lower case (default: "
            "notebooks.<the notebook's name>)"),
    Setting("TABLE_CATALOG", "", "where the table is registered: sqlite (a local OUTPUT_URI: OUTPUT_URI/"
            "_catalog/iceberg.db), glue (the Glue Data Catalog) or none (nowhere: the validation's run); "
            "default: sqlite for a folder, glue for s3://"),
    Setting("KEEP_SNAPSHOT_DAYS", "30", "days of the table's history kept; older snapshots are expired and "
            "the files only they used are removed"),
    Setting("EVENT_BUS", "", "EventBridge bus (name or ARN) told of each published day (optional)"),
    Setting("EVENT_SOURCE", "notebook-pipeline", "that event's source (in AWS: notebook-pipeline.<stack>, "
            "the only one the stack's role may put)"),
    Setting("REPORT_URI", "", "where run reports go (default: OUTPUT_URI/_runs)"),
    Setting("STAGING_URI", "", "where the notebook writes before the check, a run per folder DATE/RUN_ID "
            "(default: the run's report folder, REPORT_URI/date=D/RUN_ID/staging)"),
    Setting("RUN_ID", "", "this run's id, letters, digits, '.', '_' and '-' (default: time and random)"),
    Setting("NOTEBOOK_SECRETS", "", "comma-separated names of the environment variables holding the "
            "notebook's secrets; their values are redacted from all the runner writes (in AWS: SecretNames)"),
    Setting("NOTEBOOK_ROLE_ARN", "", "IAM role the notebook and the check run under (in AWS: the stack's "
            "NotebookRole); the runner serves its credentials to them alone"),
    Setting("SNS_TOPIC_ARN", "", "topic told of failures (optional)"),
    Setting("NOTIFY_ON_SUCCESS", "false", "true: tell SNS_TOPIC_ARN of successes too"),
    Setting("METRICS_NAMESPACE", "", "CloudWatch namespace of Runs (every run) and SuccessfulRuns"),
    Setting("METRICS_JOB", "", "the Job dimension of those metrics (default: the notebook's name)"),
    Setting("COMPARE_URI", "", "production's table to compare the checked output with before publishing "
            "(a candidate's validation): s3://bucket/prefix (Glue catalog) or a folder (its "
            "_catalog/iceberg.db); only ever read; the figures go to the report's comparison.json and the "
            "manifest (default: empty, no comparison)"),
    Setting("COMPARE_TABLE", "", "production's table at COMPARE_URI, database.table (default: OUTPUT_TABLE, "
            "or its default)"),
    Setting("COMPARE_KEYS", "", "comma-separated key columns that match the candidate's rows with "
            "production's, e.g. accommodation_id,usp (default: none: rows are compared whole)"),
    Setting("COMPARE_MAX_CHANGED_SHARE", "", "the share of production's rows, 0 to 1, the candidate may add, "
            "remove or change; beyond it (or with production's columns removed or retyped) the comparison's "
            "`crossed` names it (default: empty, no threshold)"),
    Setting("RUNNER_USER", "", "uid:gid the runner runs as, which run_notebook.sh switches to from root "
            "(make run passes yours, so that you own what a local run writes); never root's or the "
            "notebook's (default: the image's runner user, 10001)"),
)  # fmt: skip
SETTING_NAMES = frozenset(s.name for s in SETTINGS)
DEFAULTS = {s.name: s.default for s in SETTINGS}


def usage() -> str:
    width = max(len(s.name) for s in SETTINGS) + 2
    lines = ["Usage: docker run [-e VAR=value ...] IMAGE     (or: run_notebook.sh, with the same variables)"]
    for s in SETTINGS:
        default = f" (default: {s.default})" if s.default and "default:" not in s.help else ""
        lines.append(f"  {s.name:<{width}}{s.help}{default}")
    return "\n".join(lines)


@dataclass
class Config:
    run_id: str
    run_date: str
    data: Location
    output: Location
    reports: Location
    staging_root: Location | None
    project_dir: Path
    notebook: Path
    check_script: Path
    params: dict[str, Any]
    cell_timeout: int
    check_timeout: int = 3600
    notebook_role_arn: str = ""
    topic_arn: str = ""
    notify_on_success: bool = False
    metrics_namespace: str = ""
    metrics_job: str = ""
    image: str = "unknown"
    commit: str = "unknown"
    table: TableConfig | None = None
    compare: CompareSettings | None = None  # COMPARE_URI's table, when the run compares with it

    @property
    def notebook_name(self) -> str:
        return self.notebook.stem

    @property
    def run_reports(self) -> Location:
        """REPORT_URI/date=D/RUN_ID: the run's report, and its staging location."""
        return self.reports.child(f"date={self.run_date}", self.run_id)

    @property
    def staging(self) -> Location:
        """Where the notebook writes (its output_uri): the checked partition is published from here."""
        if self.staging_root is not None:
            return self.staging_root.child(f"date={self.run_date}", self.run_id)
        return self.run_reports.child(STAGING_FOLDER)

    @property
    def staging_area(self) -> Location:
        """STAGING_URI, or the run's own staging location when there is none: never OUTPUT_URI's."""
        return self.staging_root or self.staging

    @property
    def partition(self) -> str:
        return f"date={self.run_date}"


def fail(message: str) -> RunFailed:
    return RunFailed(exits.CONFIG, message, "config")


def new_run_id() -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{os.urandom(3).hex()}"


def check_run_id(value: str) -> str:
    if not RUN_ID_PATTERN.match(value) or value in (".", ".."):
        raise fail(
            f"RUN_ID={value} may hold only letters, digits, '.', '_' and '-' (at most 128, not '.' or '..'): "
            "it names the run's folder; e.g. RUN_ID=backfill-2019-08-01"
        )
    return value


def check_date(value: str) -> str:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise fail(f"RUN_DATE={value} is not a calendar date: use YYYY-MM-DD, e.g. RUN_DATE=2019-08-01")


def default_run_date(scheduled: str, zone_name: str) -> str:
    """The day before the schedule's own date (SCHEDULED_TIME read in SCHEDULE_TIMEZONE), so that a late or
    retried start keeps its day; without a schedule, yesterday in UTC."""
    if not scheduled:
        return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    try:
        if not re.fullmatch(r"[A-Za-z0-9_+/-]+", zone_name):
            raise ValueError(zone_name)
        zone = zoneinfo.ZoneInfo(zone_name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise fail(
            f"SCHEDULE_TIMEZONE={zone_name} is not a time zone: use an IANA name such as Europe/Amsterdam "
            "or UTC"
        ) from exc
    try:
        if not SCHEDULED_TIME_PATTERN.match(scheduled):
            raise ValueError(scheduled)
        when = dt.datetime.fromisoformat(scheduled.replace("Z", "+00:00"))
    except ValueError as exc:
        raise fail(
            f"SCHEDULED_TIME={scheduled} is not a UTC time: use YYYY-MM-DDTHH:MM:SSZ, or set RUN_DATE"
        ) from exc
    return (when.astimezone(zone).date() - dt.timedelta(days=1)).isoformat()


def location(name: str, value: str) -> Location:
    """A validated location: s3:// URIs keep their form (no trailing slash), folders become absolute."""
    value = value.removeprefix("file://")
    if value.startswith("s3://"):
        if not S3_URI_PATTERN.match(value):
            raise fail(f"{name}={value} is not a valid S3 URI: use s3://bucket-name/optional/prefix")
        return Location(value.rstrip("/"))
    if "://" in value:
        raise fail(f"{name}={value} uses an unsupported scheme: use s3://bucket/prefix or a local folder")
    return Location(str(Path(value).absolute()))


def default_table(notebook: str) -> str:
    """notebooks.<the notebook's name>, lower case, other characters as '_'."""
    stem = re.sub(r"[^a-z0-9_]", "_", Path(notebook).stem.lower()) or "output"
    return f"notebooks.{stem if NAME_PATTERN.match(stem) else '_' + stem}"[:255]


def table_name(variable: str, value: str) -> str:
    """database.table, in lower case (Glue keeps names so)."""
    name = value.lower()
    parts = name.split(".")
    if len(parts) != 2 or not all(NAME_PATTERN.match(part) for part in parts):
        raise fail(
            f"{variable}={name} is not database.table: use lower-case letters, digits and '_' in each "
            f"part (Glue's and Athena's names), e.g. {variable}=notebooks.usp"
        )
    return name


def url_safe(variable: str, where: Location) -> None:
    if not where.is_s3 and re.search(r"[#?%]", where.uri):
        raise fail(f"{variable}={where} has '#', '?' or '%', which the table's catalog reads as part of a "
                   "URL: use a folder without them")  # fmt: skip


def compare_settings(environ: Mapping[str, str], output_table: str) -> CompareSettings | None:
    """COMPARE_*: production's table (glue for s3://, sqlite for a folder), the keys and the threshold;
    None without COMPARE_URI."""

    def get(name: str) -> str:
        return (environ.get(name) or DEFAULTS[name]).strip()

    share = changed_share(get("COMPARE_MAX_CHANGED_SHARE"))
    if not get("COMPARE_URI"):
        return None
    where = location("COMPARE_URI", get("COMPARE_URI"))
    url_safe("COMPARE_URI", where)
    name = table_name("COMPARE_TABLE", get("COMPARE_TABLE") or output_table)
    keys = tuple(dict.fromkeys(key.strip() for key in get("COMPARE_KEYS").split(",") if key.strip()))
    production = TableConfig("glue" if where.is_s3 else "sqlite", name, where, keep_days=1)
    return CompareSettings(production, keys, share)


def changed_share(value: str) -> float | None:
    """COMPARE_MAX_CHANGED_SHARE: a share from 0 to 1, or None (no threshold) for an empty value."""
    if not value:
        return None
    try:
        share = float(value)
    except ValueError:
        share = math.nan
    if not 0 <= share <= 1:  # also NaN
        raise fail(
            f"COMPARE_MAX_CHANGED_SHARE={value} is not a share from 0 to 1: e.g. "
            "COMPARE_MAX_CHANGED_SHARE=0.1 (the candidate may add, remove or change 10% of production's "
            "rows), or leave it empty for no threshold"
        )
    return share


def table_config(environ: Mapping[str, str], output: Location, scratch: Path | None = None) -> TableConfig:
    """The table OUTPUT_URI holds: OUTPUT_TABLE, TABLE_CATALOG, KEEP_SNAPSHOT_DAYS and EVENT_BUS checked."""

    def get(name: str) -> str:
        return environ.get(name) or DEFAULTS[name]

    name = table_name("OUTPUT_TABLE", get("OUTPUT_TABLE") or default_table(get("NOTEBOOK")))
    url_safe("OUTPUT_URI", output)
    catalog = get("TABLE_CATALOG") or ("glue" if output.is_s3 else "sqlite")
    if catalog not in CATALOGS:
        raise fail(
            f"TABLE_CATALOG={catalog} is not one of {', '.join(CATALOGS)}: leave it empty for the default"
        )
    if catalog == "sqlite" and output.is_s3:
        raise fail(
            f"TABLE_CATALOG=sqlite keeps the catalog in a local OUTPUT_URI, not in {output}: use "
            "TABLE_CATALOG=glue for a table on S3, or a folder for OUTPUT_URI"
        )
    if catalog == "glue" and not output.is_s3:
        raise fail(f"TABLE_CATALOG=glue needs an s3:// OUTPUT_URI, not {output}: leave it empty for a folder")
    keep = get("KEEP_SNAPSHOT_DAYS")
    if not re.fullmatch(r"[1-9][0-9]{0,3}", keep):
        raise fail(f"KEEP_SNAPSHOT_DAYS={keep} is not a whole number of days from 1 to 9999: e.g. 30")
    bus = get("EVENT_BUS")
    if bus and not re.fullmatch(
        r"[A-Za-z0-9._/\-]{1,256}|arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/"
        r"[A-Za-z0-9._/\-]{1,256}",
        bus,
    ):
        raise fail(f"EVENT_BUS={bus} is not an event bus name or ARN: e.g. default, or leave it empty")
    source = get("EVENT_SOURCE")
    if not re.fullmatch(r"(?!aws\.)[A-Za-z0-9._/-]{1,256}", source):
        raise fail(f"EVENT_SOURCE={source} is not an event source: letters, digits and '._/-', not starting "
                   "with 'aws.', e.g. notebook-pipeline")  # fmt: skip
    return TableConfig(catalog, name, output, int(keep), bus, scratch, source)


def load_params(text: str) -> dict[str, Any]:
    """NOTEBOOK_PARAMS: a JSON or YAML mapping of Python names to values (JSON is YAML)."""
    import yaml

    if not text.strip():
        return {}
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise fail(
            f"NOTEBOOK_PARAMS is not valid JSON or YAML ({exc.__class__.__name__}): "
            "pass a mapping such as '{\"threshold\": 3}'"
        ) from exc
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise fail(
            "NOTEBOOK_PARAMS must be a mapping of names to values, "
            f"not {type(params).__name__}: pass e.g. '{{\"threshold\": 3}}'"
        )
    # papermill writes `name = value` lines into the notebook: a name must be a plain Python identifier.
    bad = sorted(k for k in params if not k.isidentifier() or keyword.iskeyword(k))
    if bad:
        raise fail(
            f"NOTEBOOK_PARAMS names {', '.join(repr(k)[:60] for k in bad)}, which are not Python variable "
            "names: use letters, digits and '_', not starting with a digit, e.g. min_count"
        )
    clash = sorted(set(params) & set(RESERVED_PARAMS))
    if clash:
        raise fail(
            f"NOTEBOOK_PARAMS sets {', '.join(clash)}, which the runner sets: "
            "use RUN_DATE, DATA_URI and OUTPUT_URI instead"
        )
    return params


def readable(path: Path) -> bool:
    """Whether the path is missing (said elsewhere) or a file this user can read."""
    try:
        return not path.exists() or os.access(path, os.R_OK)
    except OSError:
        return False


def load(environ: Mapping[str, str], scratch: Path | None = None) -> Config:
    """The configuration from the environment; RunFailed(exit 2) names the first bad variable and the fix.
    scratch: the runner's private folder, where TABLE_CATALOG=none keeps its catalog file."""

    def get(name: str) -> str:
        return environ.get(name) or DEFAULTS[name]

    run_id = check_run_id(get("RUN_ID")) if get("RUN_ID") else new_run_id()
    project_dir = Path(get("PROJECT_DIR") or Path.cwd()).absolute()
    notebook, check_script = project_files(project_dir, get("NOTEBOOK"), get("CHECK_SCRIPT"))
    run_date = get("RUN_DATE") or default_run_date(get("SCHEDULED_TIME"), get("SCHEDULE_TIMEZONE"))
    notify = get("NOTIFY_ON_SUCCESS").lower()
    if notify not in ("true", "false"):
        raise fail(f"NOTIFY_ON_SUCCESS={get('NOTIFY_ON_SUCCESS')} must be true or false")
    topic, role = arns(get("SNS_TOPIC_ARN"), get("NOTEBOOK_ROLE_ARN"))
    params = load_params(get("NOTEBOOK_PARAMS"))
    output, reports, staging_root = places(get)
    table = table_config(environ, output, scratch)
    return Config(
        run_id=run_id,
        run_date=check_date(run_date),
        data=location("DATA_URI", get("DATA_URI")),
        output=output,
        reports=reports,
        staging_root=staging_root,
        project_dir=project_dir,
        notebook=notebook,
        check_script=check_script,
        params=params,
        cell_timeout=seconds("CELL_TIMEOUT", get("CELL_TIMEOUT")),
        check_timeout=seconds("CHECK_TIMEOUT", get("CHECK_TIMEOUT")),
        notebook_role_arn=role,
        topic_arn=topic,
        notify_on_success=notify == "true",
        metrics_namespace=get("METRICS_NAMESPACE"),
        metrics_job=get("METRICS_JOB") or notebook.stem,
        image=image_of(environ),
        commit=environ.get("RUNNER_COMMIT") or "unknown",
        table=table,
        compare=compare_settings(environ, table.name),
    )


def seconds(name: str, value: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]{0,8}", value):
        raise fail(f"{name}={value} is not a whole number of seconds: use e.g. {name}=600")
    return int(value)


def project_files(project_dir: Path, notebook_name: str, check_name: str) -> tuple[Path, Path]:
    """NOTEBOOK and CHECK_SCRIPT under PROJECT_DIR (an absolute one stays as it is): readable files."""
    notebook, check_script = project_dir / notebook_name, project_dir / check_name
    if notebook.suffix == ".ipynb" and not readable(notebook):
        raise fail(
            f"NOTEBOOK={notebook} cannot be read by the container user ({os.getuid()}): make it and its "
            "folders readable (chmod a+rX), or bake it into the image"
        )
    if not (notebook.is_file() and notebook.suffix == ".ipynb"):
        raise fail(
            f"NOTEBOOK={notebook} is not a notebook file: give a .ipynb path relative to {project_dir} or "
            "absolute"
        )
    if not readable(check_script) and check_script.parent.exists():
        raise fail(
            f"CHECK_SCRIPT={check_script} cannot be read by the container user ({os.getuid()}): make it "
            "readable (chmod a+rX), or bake it into the image"
        )
    if not check_script.is_file():
        raise fail(
            f"CHECK_SCRIPT={check_script} does not exist: every notebook ships a check (see README), "
            "or set CHECK_SCRIPT"
        )
    return notebook, check_script


def topic_of(environ: Mapping[str, str]) -> str:
    """SNS_TOPIC_ARN as given, when it is a topic's ARN ('' otherwise): where a run whose configuration was
    refused is mailed."""
    topic = environ.get("SNS_TOPIC_ARN", "")
    return topic if TOPIC_ARN_PATTERN.match(topic) else ""


def arns(topic: str, role: str) -> tuple[str, str]:
    """SNS_TOPIC_ARN and NOTEBOOK_ROLE_ARN: each empty or an ARN of its kind."""
    if topic and not TOPIC_ARN_PATTERN.match(topic):
        raise fail(
            f"SNS_TOPIC_ARN={topic} is not an SNS topic ARN: use arn:aws:sns:REGION:ACCOUNT:NAME or leave "
            "it empty"
        )
    if role and not ROLE_ARN_PATTERN.match(role):
        raise fail(
            f"NOTEBOOK_ROLE_ARN={role} is not an IAM role ARN: use arn:aws:iam::ACCOUNT:role/NAME "
            "(the stack's NotebookRoleArn output) or leave it empty"
        )
    return topic, role


def places(get: Callable[[str], str]) -> tuple[Location, Location, Location | None]:
    """OUTPUT_URI, REPORT_URI (default: OUTPUT_URI's REPORTS folder) and STAGING_URI (None: the report's)."""
    if not get("DATA_URI"):
        raise fail("DATA_URI is not set: pass -e DATA_URI=s3://bucket/snapshots or a mounted folder")
    if not get("OUTPUT_URI"):
        raise fail("OUTPUT_URI is not set: pass -e OUTPUT_URI=s3://bucket/prefix or a mounted folder")
    output = location("OUTPUT_URI", get("OUTPUT_URI"))
    reports = location("REPORT_URI", get("REPORT_URI") or output.child(REPORTS).uri)
    staging_root = location("STAGING_URI", get("STAGING_URI")) if get("STAGING_URI") else None
    table_folders = (*FOLDERS, LOCAL_CATALOG.split("/")[0])
    for name, where in (("REPORT_URI", reports), ("STAGING_URI", staging_root)):
        if where is not None and any(output.child(f).contains(where) for f in table_folders):
            raise fail(f"{name}={where} lies in the table's own folders under OUTPUT_URI: use the default "
                       f"(OUTPUT_URI/{REPORTS}) or a location of its own")  # fmt: skip
    return output, reports, staging_root


def image_of(environ: Mapping[str, str]) -> str:
    """The image the run runs: its digest from ECS's task metadata where there is one, else RUNNER_IMAGE."""
    fallback = environ.get("RUNNER_IMAGE", "unknown")
    url = environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not url.startswith("http://"):
        return fallback
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:  # noqa: S310 -- ECS's own http endpoint
            meta = json.load(reply)
    except (OSError, ValueError) as exc:
        log.info("the image's digest was not read from ECS's metadata (%s)", exc)
        return fallback
    image, digest = str(meta.get("Image", "")), str(meta.get("ImageID", ""))
    if "@sha256:" in image:
        return image
    return f"{image or fallback}@{digest}" if digest.startswith("sha256:") else fallback
