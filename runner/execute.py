"""Run the notebook: check it and its data location (exit 2) while its kernel boots, then execute it with
papermill, writing into the run's staging location (exit 10, 11), as the notebook's user and under the
notebook's own AWS identity."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
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
# The kernel's history in memory, as papermill's client asks when it starts a kernel itself (nbclient's
# ipython_hist_file): no database in the notebook's home.
KERNEL_OPTIONS = ("--HistoryManager.hist_file=:memory:",)
PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")  # a kernel's five channels


# papermill's I/O module imports the library of each notebook store it knows when it is installed: boto3
# for s3:// and pyarrow's for hdfs:// are (the runner's own), 0.1 s or more of the first cell's wait. The
# runner reads a local notebook and writes to memory:// only, so papermill is imported with those stores'
# modules taken as missing, as papermill takes a store whose library is absent; each imports normally after.
UNUSED_STORES = ("papermill.s3", "pyarrow")


def import_papermill() -> Any:
    """papermill, imported without the libraries of the notebook stores the runner never uses. Called before
    any thread of the runner imports (the report's and the commit's imports start with the first cell)."""
    hidden = [name for name in UNUSED_STORES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # importing it raises ImportError
    try:
        import papermill
    finally:
        for name in hidden:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]
    return papermill


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


def write_connection_file(path: Path, user: NotebookUser) -> None:
    """The kernel's connection file, as jupyter_client writes one (five free loopback ports, a new signing
    key), without importing it; readable by the notebook's group (the kernel must read it; the runner's
    other files stay closed)."""
    sockets = [socket.socket() for _ in PORTS]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        ports = {name: sock.getsockname()[1] for name, sock in zip(PORTS, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()
    info = {**ports, "ip": "127.0.0.1", "transport": "tcp", "key": secrets.token_hex(32),
            "signature_scheme": "hmac-sha256", "kernel_name": KERNEL_NAME}  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchown(fd, -1, user.gid)
    os.fchmod(fd, 0o640)
    with os.fdopen(fd, "w") as out:
        json.dump(info, out)


def start_kernel(cwd: Path, env: dict[str, str], user: NotebookUser, work: Workspace) -> Any:
    """Start the notebook's kernel now, as the notebook's user, so it boots while papermill loads: the
    notebook environment's ipykernel, through setpriv, started as jupyter_client's launcher starts one (a
    session of its own, JPY_PARENT_PID), before jupyter_client is even imported; its manager (manager())
    is made while it boots. What it, or a process it starts, writes to its own stdout and stderr reaches
    the container's output through the runner, redacted, never directly."""
    path = work.kernel / "kernel.json"
    write_connection_file(path, user)
    command = user.command([notebook_python(), "-m", "ipykernel_launcher", "-f", str(path), *KERNEL_OPTIONS])
    env = {name: value for name, value in env.items() if name != "PYTHONEXECUTABLE"}  # as jupyter_client
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            command, cwd=str(cwd), env=env | {"JPY_PARENT_PID": str(os.getpid())},
            stdin=subprocess.DEVNULL, stdout=write, stderr=write, start_new_session=True,
        )  # fmt: skip
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)  # the kernel and its children hold it now: the pipe ends when the last of them does
    # A daemon: a process the notebook left behind may hold the pipe open; stop_all ends it.
    threading.Thread(target=redaction.to_stderr, args=(os.fdopen(read, "rb"),), daemon=True).start()
    return manager(process, path, command)


def manager(process: subprocess.Popen[bytes], path: Path, command: list[str]) -> Any:
    """jupyter_client's manager of the kernel already started: its process and connection file, its spec
    the runner's own (never looked up in a folder), its clients ReadyClients."""
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner

    class ReadyClient(AsyncKernelClient):
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            """jupyter_client 8's wait, without its last step: the kernel has answered kernel_info and IOPub
            has delivered (so the cells' output will arrive), then jupyter_client waits 0.2 s more for
            IOPub to fall silent. What comes meanwhile answers kernel_info requests, which papermill's
            client ignores (it reads only the replies to its own requests)."""
            deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
            while True:
                self.kernel_info()
                try:
                    reply = await self.shell_channel.get_msg(timeout=1)
                    if reply["msg_type"] == "kernel_info_reply":
                        await self.iopub_channel.get_msg(timeout=0.2)  # else IOPub is not connected yet
                        self._handle_kernel_info_reply(reply)
                        return
                except Empty:
                    pass
                if not await self.is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    spec = KernelSpec(
        argv=command, display_name="Python 3 (notebook)", language="python", resource_dir=str(path.parent),
        metadata={"debugger": False}, kernel_protocol_version="5.5",
    )  # fmt: skip
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, connection_file=str(path), client_factory=ReadyClient)
    km.load_connection_file()
    km._kernel_spec = spec
    km.kernel_id = str(uuid.uuid4())
    km.provisioner = LocalProvisioner(kernel_id=km.kernel_id, kernel_spec=spec, parent=km)
    km.provisioner.process, km.provisioner.pid = process, process.pid
    km.provisioner.pgid = process.pid  # a session of its own: its process group is its pid
    return km


def stop_kernel(km: Any) -> None:
    """Kill the kernel at once and remove its connection file."""
    process = getattr(km.provisioner, "process", None)
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    Path(km.connection_file).unlink(missing_ok=True)


def execute(
    config: Config,
    identity: NotebookIdentity,
    user: NotebookUser,
    work: Workspace,
    meanwhile: Callable[[], Any],
) -> None:
    """Run the notebook into memory (executed_bytes); RunFailed says how it failed. meanwhile starts once the
    kernel has answered, as the first cell is sent (or as the notebook ends, if it never was): its imports
    (the report's) then overlap the cells instead of competing for the runner's Python with papermill's
    import and the preflight, which the first cell waits for. No process of the notebook's user is left
    when this returns, whatever happened."""
    name = config.notebook.name
    km = None
    started: list[bool] = []

    def notebook_started(**_: Any) -> None:  # nbclient's on_notebook_start hook, and the end's
        if not started:
            started.append(True)
            meanwhile()

    try:
        # The kernel starts in the notebook's folder; the runner stays in its own (no cwd for papermill,
        # which would chdir the runner there: the model's files are no configuration of the runner's).
        km = start_kernel(config.notebook.parent, identity.env(), user, work)
        pm = import_papermill()
        from papermill.iorw import papermill_io

        papermill_io.register(MEMORY, EXECUTED)
        params = preflight(config, identity)
        log.info(
            "running %s (cell timeout %d s) into %s", config.notebook, config.cell_timeout, config.staging
        )
        pm.execute_notebook(
            str(config.notebook), MEMORY + name, parameters=params, kernel_name=KERNEL_NAME, km=km,
            execution_timeout=config.cell_timeout, log_output=True, progress_bar=False,
            on_notebook_start=notebook_started,
        )  # fmt: skip
    except (RunFailed, Stopped):
        raise
    except Exception as exc:
        raise notebook_failure(name, config.cell_timeout, exc) from exc
    finally:
        notebook_started()
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
