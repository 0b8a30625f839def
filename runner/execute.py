"""Run the notebook: check it and its data location (exit 2) while its kernel boots, then execute it with
papermill, writing into the run's staging location (exit 10, 11), as the notebook's user and under the
notebook's own AWS identity."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner import exits, redaction
from runner.config import Config, fail
from runner.credentials import NotebookIdentity
from runner.errors import RunFailed, Stopped
from runner.locations import Location, aws_client, aws_problem
from runner.processes import NotebookUser, signals_held
from runner.sandbox import NOTEBOOK_ENV, Workspace

log = logging.getLogger("runner")

KERNEL_NAME = "python3"  # the image's own ipykernel, whatever kernel the notebook was saved with


def check_notebook(notebook: Path) -> None:
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:
        raise fail(
            f"{notebook} is not a readable Jupyter notebook ({exc}): save it again from Jupyter"
        ) from exc
    if not [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]:
        raise fail(
            f"{notebook.name} has no cell tagged 'parameters', so the run's date, "
            "data_uri and output_uri would be overridden by the notebook's defaults: "
            "tag the cell that defines them (JupyterLab: Property Inspector > Cell Tags; "
            "classic Notebook: View > Cell Toolbar > Tags)"
        )


def check_location(name: str, loc: Location, session: Any, must_hold_data: bool) -> None:
    """A local folder exists; an S3 prefix answers a one-key listing, signed as the step that will use it."""
    if not loc.is_s3:
        if must_hold_data and not loc.path.is_dir():
            raise fail(
                f"{name} {loc.uri} is not a folder: mount the data lake "
                "(docker run -v /host/lake:/data/lake:ro -e DATA_URI=/data/lake) or pass s3://…"
            )
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = aws_client("s3", session=session).list_objects_v2(
            Bucket=loc.bucket, Prefix=loc.prefix(), MaxKeys=1
        )
        if must_hold_data and not found.get("KeyCount", 0):
            raise fail(f"{name} {loc.uri} holds no objects: check the bucket and prefix")
    except (BotoCoreError, ClientError) as exc:
        raise fail(
            f"cannot reach {name} {loc.uri} ({aws_problem(exc)}): check the "
            "bucket name, the AWS credentials and region, and the role's S3 permissions"
        ) from exc


def preflight(config: Config, identity: NotebookIdentity) -> dict[str, Any]:
    """Everything that can be found wrong before the notebook runs (exit 2); returns its parameters."""
    check_notebook(config.notebook)
    if config.data.is_s3 and identity.mode == "none":
        raise fail(
            f"DATA_URI {config.data.uri} is on S3, but the notebook has no AWS credentials: the task's own "
            "are never handed to it; set NOTEBOOK_ROLE_ARN to the role it reads with (the stack's "
            "NotebookRole)"
        )
    check_location("DATA_URI", config.data, identity.session(), must_hold_data=True)
    check_location("OUTPUT_URI", config.output, None, must_hold_data=False)
    return {
        **config.params,
        "date": config.run_date,
        "data_uri": config.data.uri,
        "output_uri": config.staging.uri,
    }


def failing_code_cell(notebook: Any) -> Any:
    """The code cell that failed (papermill's metadata), or else the last one started (a timeout or a stop);
    None if no cell started."""
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]

    def state(cell: Any) -> dict:
        return cell.get("metadata", {}).get("papermill", {})

    failed = [c for c in code_cells if state(c).get("status") == "failed" or state(c).get("exception")]
    started = [c for c in code_cells if state(c).get("start_time")]
    return failed[0] if failed else started[-1] if started else None


def failing_cell(name: str) -> str:
    """In the executed notebook, the cell that failed, or else the last one started, named as the report shows
    it: cell [N] ('first line'); '' if there is no notebook or no cell started."""
    data = executed_bytes(name)
    if data is None:
        return ""
    import nbformat

    notebook = nbformat.reads(data.decode(), as_version=4)
    cell = failing_code_cell(notebook)
    if cell is None:
        return ""
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    first = redaction.text(next((line for line in cell.source.splitlines() if line.strip()), ""))
    return f"cell [{cell.get('execution_count') or code_cells.index(cell) + 1}] ({first[:80]!r})"


def notebook_python() -> str:
    """The notebook's Python: its own environment's (VIRTUAL_ENV, /opt/venv in the image), never the runner's.
    The kernel, the check and the reader of the checked files run there or as the notebook's user."""
    return str(Path(os.environ.get("VIRTUAL_ENV") or NOTEBOOK_ENV) / "bin" / "python")


class Executed:
    """Papermill's I/O handler for memory:// paths: the executed notebook is kept in the runner's memory, so
    no disk the notebook can fill stands between the run and its report."""

    def __init__(self) -> None:
        self.notebooks: dict[str, str] = {}

    def read(self, path: str) -> str:
        return self.notebooks[path]

    def write(self, buf: str, path: str) -> None:
        self.notebooks[path] = buf

    def listdir(self, path: str) -> list[str]:
        return sorted(self.notebooks)

    def pretty_path(self, path: str) -> str:
        return path


EXECUTED = Executed()
MEMORY = "memory://"


def executed_bytes(name: str) -> bytes | None:
    """The executed notebook papermill wrote last (after every cell), or None if none was written."""
    text = EXECUTED.notebooks.get(MEMORY + name)
    return text.encode() if text is not None else None


def start_kernel(cwd: Path, env: dict[str, str], user: NotebookUser, work: Workspace) -> Any:
    """Start the notebook's kernel now, as the notebook's user, so it boots while papermill loads. Its kernel
    spec is the runner's own (never looked up in a folder): the notebook environment's ipykernel, through
    setpriv. Its connection file is written in kernel/ and made readable by the notebook's group (the kernel
    must read it; the runner's other files stay closed). What it, or a process it starts, writes to its own
    stdout and stderr reaches the container's output through the runner, redacted, never directly."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    class NotebookKernelManager(AsyncKernelManager):
        def write_connection_file(self, **kwargs: Any) -> None:
            super().write_connection_file(**kwargs)  # 0600, the runner's: made readable by the kernel's group
            os.chown(self.connection_file, -1, user.gid)
            Path(self.connection_file).chmod(0o640)

    km = NotebookKernelManager(kernel_name=KERNEL_NAME, connection_file=str(work.kernel / "kernel.json"))
    km._kernel_spec = KernelSpec(
        argv=user.command(
            [notebook_python(), "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        ),
        display_name="Python 3 (notebook)", language="python", resource_dir=str(work.kernel),
        metadata={"debugger": True, "supported_encryption": ["curve"]}, kernel_protocol_version="5.5",
    )  # fmt: skip
    read, write = os.pipe()
    try:
        run_sync(km.start_kernel)(cwd=str(cwd), env=env, stdout=write, stderr=write)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)  # the kernel and its children hold it now: the pipe ends when the last of them does
    # A daemon: a process the notebook left behind may hold the pipe open; stop_all ends it.
    threading.Thread(target=redaction.to_stderr, args=(os.fdopen(read, "rb"),), daemon=True).start()
    return km


def stop_kernel(km: Any) -> None:
    """Kill the kernel at once and remove its connection file (shutdown_kernel(now=True), without polling)."""
    process = getattr(km.provisioner, "process", None)
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    km.cleanup_connection_file()


def execute(
    config: Config,
    identity: NotebookIdentity,
    user: NotebookUser,
    work: Workspace,
    meanwhile: Callable[[], Any],
) -> None:
    """Run the notebook into memory (executed_bytes); RunFailed says how it failed. meanwhile starts once the
    kernel is booting and papermill is imported (the report's own imports then never race them). No process
    of the notebook's user is left when this returns, whatever happened."""
    name = config.notebook.name
    km = None
    try:
        # The kernel starts in the notebook's folder; the runner stays in its own (no cwd for papermill,
        # which would chdir the runner there: the model's files are no configuration of the runner's).
        km = start_kernel(config.notebook.parent, identity.env(), user, work)
        import papermill as pm
        from papermill.iorw import papermill_io

        papermill_io.register(MEMORY, EXECUTED)
        meanwhile()
        params = preflight(config, identity)
        log.info(
            "running %s (cell timeout %d s) into %s", config.notebook, config.cell_timeout, config.staging
        )
        pm.execute_notebook(
            str(config.notebook), MEMORY + name, parameters=params, kernel_name=KERNEL_NAME, km=km,
            execution_timeout=config.cell_timeout, log_output=True, progress_bar=False,
        )  # fmt: skip
    except (RunFailed, Stopped):
        raise
    except Exception as exc:
        raise notebook_failure(name, config.cell_timeout, exc) from exc
    finally:
        with signals_held():
            if km is not None:
                stop_kernel(km)
            user.stop_all("after the notebook")


def notebook_failure(name: str, timeout: int, exc: Exception) -> RunFailed:
    """Classify what papermill raised: a cell's error, a cell timeout, a dead kernel."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if isinstance(exc, pm.PapermillExecutionError):
        reason = redaction.text(str(exc.evalue)).strip()[:300]  # redacted first: a cut secret is not one
        return RunFailed(
            exits.NOTEBOOK, f"{name} raised {exc.ename} in cell [{exc.exec_count}]: {reason}", "notebook"
        )
    if isinstance(exc, CellTimeoutError):
        where = failing_cell(name) or "a cell"
        return RunFailed(
            exits.TIMEOUT,
            f"{where} of {name} ran longer than CELL_TIMEOUT={timeout} s: make it faster or raise "
            "CELL_TIMEOUT",
            "notebook",
        )
    if isinstance(exc, DeadKernelError):
        return RunFailed(
            exits.NOTEBOOK,
            f"the kernel died while running {name} ({exc}): "
            "the notebook probably ran out of memory or called os._exit",
            "notebook",
        )
    raise exc
