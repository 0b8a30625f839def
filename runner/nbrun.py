"""The runner's Python steps, called by run_notebook.sh (one subcommand per step).

    nbrun.py execute    -- checks the notebook, its parameters and the data/output locations (exit 2),
                           then runs the notebook with papermill (exit 10, 11, 143)
    nbrun.py report     -- renders the executed notebook as HTML, counts the staged rows (beside the check)
    nbrun.py publish    -- moves the checked partition from staging to the output location (exit 30)
    nbrun.py finish     -- writes the manifest, stores the report files, notifies SNS (never changes the exit)

A step that fails writes one sentence (what failed and what to do) to --message-file; run_notebook.sh
puts it on the run's last line, in the manifest and in the notification.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

EXIT_CONFIG = 2
EXIT_REPORT_LOST = (
    3  # finish only: the run's exit code is unchanged, its last line says where the report is not
)
EXIT_NOTEBOOK = 10
EXIT_TIMEOUT = 11
EXIT_CHECK = 20
EXIT_PUBLISH = 30
EXIT_STOPPED = 143
RESERVED_PARAMS = ("date", "data_uri", "output_uri")
KERNEL_NAME = "python3"  # the image's own ipykernel, whatever kernel the notebook was saved with

log = logging.getLogger("runner")


class StepFailed(Exception):
    """A step failed for a reason the user can act on; str(self) says what and how."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived: stop, shut the kernel down, publish nothing."""


# --- locations: s3://bucket/prefix or a local folder ---------------------------------------------


@dataclass(frozen=True)
class Location:
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def bucket(self) -> str:
        return self.uri[5:].split("/", 1)[0]

    @property
    def key(self) -> str:
        """The prefix inside the bucket, without a trailing slash ('' for the bucket root)."""
        parts = self.uri[5:].split("/", 1)
        return parts[1].strip("/") if len(parts) > 1 else ""

    @property
    def path(self) -> Path:
        return Path(self.uri)

    def child(self, *names: str) -> Location:
        return Location("/".join([self.uri.rstrip("/"), *names]))

    def prefix(self) -> str:
        return f"{self.key}/" if self.key else ""


def aws_client(service: str = "s3", region: str | None = None) -> Any:
    """A boto3 client that honours AWS_ENDPOINT_URL and retries, but never hangs a run."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client(service, region_name=region, config=config)


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def aws_problem(exc: Exception) -> str:
    """A short reason for a boto3 failure: the error code and message, or the exception itself."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


# --- preflight -----------------------------------------------------------------------------------


def load_params(text: str) -> dict[str, Any]:
    """NOTEBOOK_PARAMS: a JSON or YAML mapping of extra parameters (JSON is YAML)."""
    import yaml

    if not text.strip():
        return {}
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StepFailed(
            EXIT_CONFIG,
            f"NOTEBOOK_PARAMS is not valid JSON or YAML ({exc.__class__.__name__}): "
            "pass a mapping such as '{\"threshold\": 3}'",
        ) from exc
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise StepFailed(
            EXIT_CONFIG,
            "NOTEBOOK_PARAMS must be a mapping of names to values, "
            f"not {type(params).__name__}: pass e.g. '{{\"threshold\": 3}}'",
        )
    clash = sorted(set(params) & set(RESERVED_PARAMS))
    if clash:
        raise StepFailed(
            EXIT_CONFIG,
            f"NOTEBOOK_PARAMS sets {', '.join(clash)}, which the runner sets: "
            "use RUN_DATE, DATA_URI and OUTPUT_URI instead",
        )
    return params


def check_notebook(notebook: Path) -> None:
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # nbformat raises several types for a file that is not a notebook
        raise StepFailed(
            EXIT_CONFIG, f"{notebook} is not a readable Jupyter notebook ({exc}): save it again from Jupyter"
        ) from exc
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise StepFailed(
            EXIT_CONFIG,
            f"{notebook.name} has no cell tagged 'parameters', so the run's date, "
            "data_uri and output_uri would be overridden by the notebook's defaults: "
            "tag the cell that defines them (JupyterLab: Property Inspector > Cell Tags; "
            "classic Notebook: View > Cell Toolbar > Tags)",
        )


def check_location(name: str, loc: Location, must_hold_data: bool) -> None:
    if not loc.is_s3:
        if must_hold_data and not loc.path.is_dir():
            raise StepFailed(
                EXIT_CONFIG,
                f"{name} {loc.uri} is not a folder: mount the data lake "
                "(docker run -v /host/lake:/data/lake:ro -e DATA_URI=/data/lake) or pass s3://…",
            )
        return
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = aws_client()
    try:
        # A listing of the prefix itself: it needs no more than a role scoped to that prefix.
        found = s3.list_objects_v2(Bucket=loc.bucket, Prefix=loc.prefix(), MaxKeys=1).get("KeyCount", 0)
        if must_hold_data and not found:
            raise StepFailed(EXIT_CONFIG, f"{name} {loc.uri} holds no objects: check the bucket and prefix")
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(
            EXIT_CONFIG,
            f"cannot reach {name} {loc.uri} ({aws_problem(exc)}): check the "
            "bucket name, the AWS credentials and region, and the role's S3 permissions",
        ) from exc


def preflight(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be found wrong before the notebook runs (exit 2); returns its parameters."""
    check_notebook(args.notebook)
    params = load_params(os.environ.get("NOTEBOOK_PARAMS", ""))
    check_location("DATA_URI", Location(args.data_uri), must_hold_data=True)
    check_location("OUTPUT_URI", Location(args.output_uri), must_hold_data=False)
    return {**params, "date": args.date, "data_uri": args.data_uri, "output_uri": args.staging_uri}


# --- execute -------------------------------------------------------------------------------------


def failing_cell(executed: Path) -> str:
    """In the executed notebook, the cell that failed, or else the last one started (a timeout or a stop),
    named as the report shows it: cell [N] ('first line'); '' if there is no notebook or no cell started."""
    if not executed.exists():
        return ""
    import nbformat

    code_cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]

    def state(cell: Any) -> dict:
        return cell.get("metadata", {}).get("papermill", {})

    failed = [c for c in code_cells if state(c).get("status") == "failed" or state(c).get("exception")]
    started = [c for c in code_cells if state(c).get("start_time")]
    if failed:
        cell = failed[0]
    elif started:
        cell = started[-1]
    else:
        return ""
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"cell [{cell.get('execution_count') or code_cells.index(cell) + 1}] ({first[:80]!r})"


def start_kernel(cwd: Path) -> Any:
    """Start the image's kernel now, so that it boots while papermill is imported."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    km = AsyncKernelManager(kernel_name=KERNEL_NAME)
    run_sync(km.start_kernel)(cwd=str(cwd))
    return km


def stop_kernel(km: Any) -> None:
    """The notebook is done (or given up on): kill the kernel process at once and wait for it, which is
    what shutdown_kernel(now=True) does too, without its 0.1 s polling; then remove its connection file."""
    process = getattr(km.provisioner, "process", None)
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    km.cleanup_connection_file()


def cmd_execute(args: argparse.Namespace) -> None:
    def stop(signum: int, _frame: Any) -> NoReturn:
        raise Stopped(signal.Signals(signum).name)

    # SIGTERM/SIGINT (run_notebook.sh forwards them) raise Stopped wherever the run is; papermill saves
    # the notebook as far as it got and the finally below shuts the kernel down.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    outcome: StepFailed | None = None
    km = None
    try:
        # The kernel boots in its own process while the configuration is checked and papermill imported;
        # a bad configuration shuts it down before any cell runs.
        km = start_kernel(args.notebook.parent)
        params = preflight(args)
        import papermill as pm

        pm.execute_notebook(
            str(args.notebook),
            str(args.output_nb),
            parameters=params,
            kernel_name=KERNEL_NAME,
            km=km,
            cwd=str(args.notebook.parent),
            execution_timeout=args.timeout,
            log_output=True,
            progress_bar=False,
        )
    except StepFailed as exc:
        outcome = exc
    except Stopped as exc:
        where = failing_cell(args.output_nb)
        outcome = StepFailed(
            EXIT_STOPPED,
            f"stopped by {exc} while running {args.notebook.name}" + (f" in {where}" if where else ""),
        )
    except Exception as exc:  # noqa: BLE001 -- classified there; anything unforeseen is raised again
        outcome = notebook_failure(args, exc)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if km is not None:
            stop_kernel(km)
    if outcome is not None:
        raise outcome


def notebook_failure(args: argparse.Namespace, exc: Exception) -> StepFailed:
    """Classify what papermill raised: a cell's error, a cell timeout, a dead kernel."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    name = args.notebook.name
    if isinstance(exc, pm.PapermillExecutionError):
        reason = str(exc.evalue).strip()[:300]
        return StepFailed(EXIT_NOTEBOOK, f"{name} raised {exc.ename} in cell [{exc.exec_count}]: {reason}")
    if isinstance(exc, CellTimeoutError):
        where = failing_cell(args.output_nb) or "a cell"
        return StepFailed(
            EXIT_TIMEOUT,
            f"{where} of {name} ran longer than CELL_TIMEOUT={args.timeout} s: "
            "make it faster or raise CELL_TIMEOUT",
        )
    if isinstance(exc, DeadKernelError):
        return StepFailed(
            EXIT_NOTEBOOK,
            f"the kernel died while running {name} ({exc}): "
            "the notebook probably ran out of memory or called os._exit",
        )
    raise exc


# --- report ------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> None:
    """The run's report: the executed notebook as HTML, and the rows of the staged partition.

    Started beside the notebook, it imports its libraries while the notebook runs, then waits for
    run_notebook.sh to create --ready-file, and renders while the check runs: off the critical path.
    """
    import nbformat
    from nbconvert import HTMLExporter

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a stopped run still gets its report
    parent = os.getppid()
    while not args.ready_file.exists():
        if os.getppid() != parent:  # run_notebook.sh is gone: nobody will read the report
            return
        time.sleep(0.02)
    rows = count_rows(Location(args.staged_partition))
    args.rows_file.write_text("" if rows is None else str(rows))
    if args.executed.exists():
        body, _ = HTMLExporter().from_notebook_node(nbformat.read(args.executed, as_version=4))
        args.html.write_text(body, encoding="utf-8")


def count_rows(loc: Location) -> int | None:
    """Rows in the Parquet files of a partition, read from their footers; None if not Parquet."""
    try:
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs
    except ImportError:
        return None
    try:
        if loc.is_s3:
            fs, path = pafs.FileSystem.from_uri(loc.uri)
        else:
            fs, path = pafs.LocalFileSystem(), str(loc.path)
        return ds.dataset(path, filesystem=fs, format="parquet").count_rows()
    except Exception as exc:  # noqa: BLE001 -- the count is informative only
        log.info("rows not counted (%s)", exc)
        return None


# --- publish -------------------------------------------------------------------------------------


def publish_local(staged: Path, target: Path, run_id: str) -> None:
    """Swap the staged partition in with two renames on one file system; restore the old one on failure."""
    if not staged.is_dir() or not any(staged.iterdir()):
        raise StepFailed(
            EXIT_PUBLISH,
            f"the notebook wrote nothing under {staged}: write the output "
            "partitioned by date (output_uri/date=YYYY-MM-DD/)",
        )
    previous = target.with_name(f".{target.name}.replaced-{run_id}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rename(previous)
        try:
            staged.rename(target)
        except OSError:
            if previous.exists():
                previous.rename(target)
            raise
    except OSError as exc:
        raise StepFailed(
            EXIT_PUBLISH,
            f"could not move the checked output into {target} ({exc.strerror}: "
            f"{exc.filename}): make OUTPUT_URI writable by the container user; "
            "the previous partition is unchanged",
        ) from exc
    shutil.rmtree(previous, ignore_errors=True)


def publish_s3(staged: Location, target: Location) -> None:
    """Copy the new objects in, then delete the partition's objects that the new run did not write."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = aws_client()
    try:
        new = [k for k in list_keys(s3, staged.bucket, staged.prefix()) if not k.endswith("/")]
        if not new:
            raise StepFailed(
                EXIT_PUBLISH,
                f"the notebook wrote nothing under {staged.uri}/: write the output "
                "partitioned by date (output_uri/date=YYYY-MM-DD/)",
            )
        old = set(list_keys(s3, target.bucket, target.prefix()))
        written = set()
        for key in new:
            dest = target.prefix() + key[len(staged.prefix()) :]
            s3.copy({"Bucket": staged.bucket, "Key": key}, target.bucket, dest)
            written.add(dest)
        delete_keys(s3, target.bucket, sorted(old - written))
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(
            EXIT_PUBLISH,
            f"could not publish to {target.uri}/ ({aws_problem(exc)}): check the "
            "role's s3:PutObject/DeleteObject on the output prefix, then rerun the day",
        ) from exc


def delete_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def remove_staging(staging: Location) -> None:
    """Once published, the staging copy (and anything else the notebook left there) goes."""
    try:
        if staging.is_s3:
            s3 = aws_client()
            delete_keys(s3, staging.bucket, list(list_keys(s3, staging.bucket, staging.prefix())))
        else:
            shutil.rmtree(staging.path)
    except Exception as exc:  # noqa: BLE001 -- the data is published; leftovers only cost storage
        log.warning("could not remove the staging copy %s (%s)", staging.uri, aws_problem(exc))


def cmd_publish(args: argparse.Namespace) -> None:
    # Publishing is short and must not stop halfway: run_notebook.sh defers SIGTERM until it ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    partition = f"date={args.date}"
    staged, target = Location(args.staging).child(partition), Location(args.output).child(partition)
    if staged.is_s3:
        publish_s3(staged, target)
    else:
        publish_local(staged.path, target.path, args.run_id)
    remove_staging(Location(args.staging))
    log.info("published %s/ to %s/", staged.uri, target.uri)


# --- finish: manifest, report files, notification -------------------------------------------------


def store_reports(report_dir: Path, dest: Location) -> None:
    files = sorted(p for p in report_dir.iterdir() if p.is_file())
    if dest.is_s3:
        s3 = aws_client()
        types = {
            ".html": "text/html",
            ".json": "application/json",
            ".ipynb": "application/x-ipynb+json",
            ".txt": "text/plain",
        }
        for path in files:
            extra = {"ContentType": types.get(path.suffix, "application/octet-stream")}
            s3.upload_file(str(path), dest.bucket, dest.prefix() + path.name, ExtraArgs=extra)
    else:
        dest.path.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, dest.path / path.name)


def console_link(loc: Location) -> str:
    if not loc.is_s3:
        return loc.uri
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return f"https://s3.console.aws.amazon.com/s3/buckets/{loc.bucket}?region={region}&prefix={loc.prefix()}"


def notify(topic_arn: str, manifest: dict[str, Any]) -> None:
    status = manifest["status"].upper()
    subject = (
        f"[notebook-runner] {status}: {manifest['notebook']} for {manifest['date']} "
        f"(exit {manifest['exit_code']})"
    )
    lines = [
        (
            f"Run {manifest['run_id']} of {manifest['notebook']} for {manifest['date']} {manifest['status']}"
            f" with exit code {manifest['exit_code']} ({manifest['meaning']})."
        ),
        "",
        manifest["message"],
        "",
        f"Image:    {manifest['image']}",
        f"Step:     {manifest['failed_step'] or '-'}",
        f"Rows:     {manifest['rows'] if manifest['rows'] is not None else '-'}",
        f"Duration: {manifest['duration_seconds']} s",
        f"Output:   {manifest['output_uri'] if manifest['status'] == 'succeeded' else 'nothing published'}",
        f"Report:   {manifest['report']}",
        f"Browse:   {console_link(Location(manifest['report_uri']))}",
    ]
    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else None
    aws_client("sns", region=region).publish(
        TopicArn=topic_arn, Subject=subject[:100], Message="\n".join(lines)
    )


MEANINGS = {
    0: "success",
    1: "internal runner error",
    EXIT_CONFIG: "bad configuration or input",
    EXIT_NOTEBOOK: "the notebook failed",
    EXIT_TIMEOUT: "a cell timed out",
    EXIT_CHECK: "the check failed",
    EXIT_PUBLISH: "publishing failed",
    EXIT_STOPPED: "stopped by SIGTERM",
}


def put_success_metric(namespace: str, job: str, manifest: dict[str, Any]) -> None:
    """Only successful runs put SuccessfulRuns: a day without one is what the missed-run alarm sees."""
    dimensions = [{"Name": "Job", "Value": job}]
    data = [
        {"MetricName": "SuccessfulRuns", "Dimensions": dimensions, "Value": 1, "Unit": "Count"},
        {"MetricName": "RunSeconds", "Dimensions": dimensions, "Value": manifest["duration_seconds"],
         "Unit": "Seconds"},
    ]  # fmt: skip
    if manifest["rows"] is not None:
        data.append({"MetricName": "RowsPublished", "Dimensions": dimensions, "Value": manifest["rows"],
                     "Unit": "Count"})  # fmt: skip
    aws_client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data)


def cmd_finish(args: argparse.Namespace) -> None:
    report_dir: Path = args.report_dir
    rows = args.rows_file.read_text().strip() if args.rows_file and args.rows_file.exists() else ""
    manifest = {
        "run_id": args.run_id,
        "date": args.date,
        "image": os.environ.get("RUNNER_IMAGE", "unknown"),
        "notebook": args.notebook,
        "status": args.status,
        "exit_code": args.exit_code,
        "meaning": MEANINGS.get(args.exit_code, "unknown"),
        "failed_step": args.failed_step or None,
        "message": args.message,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.started)),
        "duration_seconds": round(time.time() - args.started, 2),
        "rows": int(rows) if rows else None,
        "output_uri": args.output_uri,
        "report_uri": args.report_uri,
        "report": args.report,
    }
    (report_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lost = ""
    if args.report_uri:
        try:
            store_reports(report_dir, Location(args.report_uri))
        except Exception as exc:  # noqa: BLE001 -- losing the report must not change the run's exit code
            lost = f"not stored: writing {args.report_uri} failed ({aws_problem(exc)})"
            log.warning("could not store the report in %s (%s)", args.report_uri, aws_problem(exc))
            manifest["report"] = lost  # what the notification says
    namespace, job = os.environ.get("METRICS_NAMESPACE", ""), os.environ.get("METRICS_JOB") or args.notebook
    if args.status == "succeeded" and namespace:
        try:
            put_success_metric(namespace, job, manifest)
            log.info("put SuccessfulRuns for job %s in %s", job, namespace)
        except Exception as exc:  # noqa: BLE001 -- the output is published: the run succeeded
            log.warning(
                "could not put the success metric in %s (%s): the missed-run alarm may fire; check the task "
                "role's cloudwatch:PutMetricData", namespace, aws_problem(exc),
            )  # fmt: skip
    topic = os.environ.get("SNS_TOPIC_ARN", "")
    wanted = args.status != "succeeded" or os.environ.get("NOTIFY_ON_SUCCESS", "false").lower() == "true"
    if topic and wanted:
        try:
            notify(topic, manifest)
            log.info("notified %s", topic)
        except Exception as exc:  # noqa: BLE001 -- a failed notification must not hide the run's exit code
            log.warning("could not notify %s (%s): check the role's sns:Publish", topic, aws_problem(exc))
    if lost:
        raise StepFailed(EXIT_REPORT_LOST, lost)  # run_notebook.sh says so on the last line


# --- command line --------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbrun", description=__doc__.splitlines()[0])
    p.add_argument("--message-file", type=Path, required=True, help="where a failing step writes its reason")
    sub = p.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("execute", help="check the configuration (exit 2), then run the notebook")
    for name in ("--date", "--data-uri", "--output-uri", "--staging-uri"):
        ex.add_argument(name, required=True)
    ex.add_argument("--notebook", type=Path, required=True)
    ex.add_argument("--output-nb", type=Path, required=True)
    ex.add_argument("--timeout", type=int, required=True)
    ex.set_defaults(func=cmd_execute)

    rep = sub.add_parser("report", help="render the executed notebook as HTML")
    rep.add_argument("--executed", type=Path, required=True)
    rep.add_argument("--html", type=Path, required=True)
    rep.add_argument("--ready-file", type=Path, required=True)
    rep.add_argument("--staged-partition", required=True)
    rep.add_argument("--rows-file", type=Path, required=True)
    rep.set_defaults(func=cmd_report)

    pub = sub.add_parser("publish")
    for name in ("--date", "--staging", "--output", "--run-id"):
        pub.add_argument(name, required=True)
    pub.set_defaults(func=cmd_publish)

    fin = sub.add_parser("finish")
    for name in (
        "--run-id",
        "--date",
        "--notebook",
        "--status",
        "--failed-step",
        "--message",
        "--output-uri",
        "--report-uri",
        "--report",
    ):
        fin.add_argument(name, default="")
    fin.add_argument("--exit-code", type=int, required=True)
    fin.add_argument("--started", type=float, required=True)
    fin.add_argument("--report-dir", type=Path, required=True)
    fin.add_argument("--rows-file", type=Path)
    fin.set_defaults(func=cmd_finish)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[runner] %(message)s", stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except StepFailed as exc:
        args.message_file.write_text(str(exc))
        return exc.code
    except Exception as exc:  # an unforeseen failure still gets a one-line reason on the run's last line
        log.exception("nbrun %s failed", args.command)
        args.message_file.write_text(f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
