"""Helpers shared by the tests: running the runner image, writing notebooks, reading what a run left."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "challenge"
SAMPLE_LAKE = REPO / "sample" / "lake"
# The real AWS CLI the make targets call in the tests: make test's venv of it (AWS_CLI), else that venv.
AWS_CLI = os.environ.get("AWS_CLI") or str(REPO / ".venv-awscli" / "bin" / "aws")
SAMPLE_DATE = "2019-08-01"
# Set in the fast lane (pytest --fast, tests/conftest.py): no server of serving() starts in it.
FAST_LANE = "TESTS_FAST_LANE"
CONTAINER_UID = 10001  # the image's runner user
NOTEBOOK_UID = 10002  # the image's notebook user
READER_UID = 10003  # the image's reader of the checked files
sys.path.insert(0, str(REPO / "tests" / "pipeline"))
from cfn import docker_capability_options  # noqa: E402 -- the template's own list, read from it

# The container as Fargate runs it: the daily run's task definition's capabilities (it drops all Docker
# gives a root container but SETUID, SETGID and KILL).
FARGATE_CAPS = tuple(docker_capability_options("TaskDefinition"))
PARAMETERS = 'date = "2019-08-01"\ndata_uri = ""\noutput_uri = ""'
OUTPUT_COLUMNS = ["accommodation_id", "accommodation_ns", "usp", "destination_id"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def docker_run(
    image: str,
    env: dict[str, str],
    volumes: dict[Path, str] | None = None,
    *,
    network_host: bool = False,
    extra: tuple[str, ...] = (),
    timeout: int = 900,
    args: tuple[str, ...] = (),
) -> Run:
    """docker run --rm IMAGE [ARGS] with -e and -v options; returns the exit code and both streams."""
    cmd = ["docker", "run", "--rm", *FARGATE_CAPS, *extra]
    if network_host:
        cmd += ["--network", "host"]
    for host, container in (volumes or {}).items():
        cmd += ["-v", f"{host}:{container}"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    done = subprocess.run([*cmd, image, *args], capture_output=True, text=True, timeout=timeout, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


def build_runner(tag: str, base: str, *options: str, root: Path = REPO) -> str:
    """The runner image of the platform checkout at `root`, as make runner builds it (scripts/build.sh
    runner); options are docker build's own."""
    command = [str(root / "scripts" / "build.sh"), "runner", tag, *options]
    env = {**os.environ, "BASE_IMAGE": base}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"the runner's build failed:\n{done.stderr[-4000:]}"
    return tag


def build_model(context: Path, tag: str, runner: str, *build_args: str, options: tuple[str, ...] = ()) -> str:
    """A model image from `context` with the runner's recipe, as make build builds it (scripts/build.sh
    model); build_args NAME=VALUE are its NOTEBOOK, GIT_COMMIT and IMAGE_NAME, options docker build's own."""
    settings = dict(arg.split("=", 1) for arg in build_args)
    assert set(settings) <= {"NOTEBOOK", "GIT_COMMIT", "IMAGE_NAME"}, settings
    command = [str(REPO / "scripts" / "build.sh"), "model", runner, str(context), tag, *options]
    done = subprocess.run(
        command, env={**os.environ, **settings}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"the model build of {context} failed:\n{done.stderr[-4000:]}"
    return tag


def model_repository(project: Path, dest: Path, *leave_out: str) -> Path:
    """Another model's repository: its own files (less leave_out), and nothing of the platform's."""
    shutil.copytree(project, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*leave_out))
    return dest


def copy_repository(dest: Path) -> Path:
    """The repository's tracked and untracked-but-not-ignored files: what a fresh clone (or CodePipeline's
    source artifact) holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    for name in listed:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def writable_dir(path: Path) -> Path:
    """A folder the runner's user owns, as make run gives it: the notebook's user cannot write it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, CONTAINER_UID, CONTAINER_UID)
    path.chmod(0o755)
    return path


def world_writable_dir(path: Path) -> Path:
    """A folder every user may write into (a careless mount): the runner's guard still keeps it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def make_notebook(path: Path, *sources: str, kernel: str = "some-conda-env", tagged: bool = True) -> Path:
    """A notebook with a parameters cell and the given code cells, saved with a foreign kernel name."""
    nb = nbformat.v4.new_notebook()
    meta = {"tags": ["parameters"]} if tagged else {}
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata=meta)]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata = {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_rows_cell(rows: str = "[(1, 100, 'spa', 7), (2, 100, 'spa', None)]", types: str = "") -> str:
    """A notebook cell writing usp-shaped rows (tuples in OUTPUT_COLUMNS order) to output_uri/date=D/,
    on S3 or in a folder."""
    return f"""
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
rows = {rows}
schema = pa.schema([("accommodation_id", pa.int64()), ("accommodation_ns", pa.int64()),
                    ("usp", pa.string()), ("destination_id", {types or "pa.int64()"})])
table = pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=schema)
fs, root = pafs.FileSystem.from_uri(output_uri if "://" in output_uri else "file://" + output_uri)
fs.create_dir(f"{{root}}/date={{date}}")
pq.write_table(table, f"{{root}}/date={{date}}/part-0.parquet", filesystem=fs)
print(f"wrote {{table.num_rows}} rows")
"""


def run_dirs(out: Path, date: str = SAMPLE_DATE) -> list[Path]:
    return sorted((out / "_runs" / f"date={date}").glob("*"))


def manifest(out: Path, date: str = SAMPLE_DATE) -> dict:
    """The manifest of the only run under a local OUTPUT_URI."""
    (run,) = run_dirs(out, date)
    return json.loads((run / "manifest.json").read_text())


def output_table(out: Path, mounted_at: str = "/output") -> Any:
    """The Iceberg table a run published under a local OUTPUT_URI (the container's mounted_at), read from
    here: its files name the container's folder, so MovedFileIO reads them under out. None: no table yet."""
    from pyiceberg.table import StaticTable

    db = out / "_catalog" / "iceberg.db"
    if not db.exists():
        return None
    with closing(sqlite3.connect(db)) as catalog:
        found = catalog.execute("SELECT metadata_location FROM iceberg_tables").fetchall()
    if not found:
        return None
    ((location,),) = found
    moved = {"py-io-impl": "support.MovedFileIO", "moved.from": mounted_at, "moved.to": str(out)}
    return StaticTable.from_metadata(location, properties=moved)


def published(out: Path, date: str = SAMPLE_DATE, mounted_at: str = "/output") -> list[Path]:
    """The data files of date in the table's current snapshot, as paths here ([] with no table)."""
    from pyiceberg.expressions import EqualTo

    table = output_table(out, mounted_at)
    if table is None or table.current_snapshot() is None:
        return []
    tasks = table.scan(row_filter=EqualTo("date", date)).plan_files()
    return sorted(Path(moved_path(t.file.file_path, mounted_at, str(out))) for t in tasks)


def day_rows(out: Path, date: str = SAMPLE_DATE, mounted_at: str = "/output") -> Any:
    """The rows of date the table holds now (a pyarrow Table), without the date column; None: no table."""
    from pyiceberg.expressions import EqualTo

    table = output_table(out, mounted_at)
    if table is None:
        return None
    return table.scan(row_filter=EqualTo("date", date)).to_arrow().drop_columns(["date"])


def moved_path(location: str, old: str, new: str) -> str:
    """location (a path or file:// URI) under the folder old, as the same path under new."""
    path = location.removeprefix("file://").removeprefix("file:")
    return new + path[len(old) :] if path == old or path.startswith(old.rstrip("/") + "/") else path


def _moved_file_io() -> type:
    from pyiceberg.io.pyarrow import PyArrowFileIO

    class Moved(PyArrowFileIO):
        """PyArrowFileIO for a table written in a container: its paths under moved.from are read under
        moved.to."""

        def _moved(self, location: str) -> str:
            return moved_path(location, self.properties["moved.from"], self.properties["moved.to"])

        def new_input(self, location: str) -> Any:
            return super().new_input(self._moved(location))

        def new_output(self, location: str) -> Any:
            return super().new_output(self._moved(location))

        def delete(self, location: Any) -> None:
            super().delete(self._moved(location if isinstance(location, str) else location.location))

    return Moved


def __getattr__(name: str) -> Any:  # MovedFileIO is made on first use: pyiceberg loads only where needed
    if name == "MovedFileIO":
        return _moved_file_io()
    raise AttributeError(name)


def env_with(**overrides: str) -> dict[str, str]:
    """This process's environment plus overrides, for subprocesses that need PATH and friends."""
    return {**os.environ, **overrides}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SETTINGS_SCRIPT = REPO / "scripts" / "settings.py"


def settings_script() -> ModuleType:
    """scripts/settings.py as a module (a script, not a package), loaded once for every test that reads it."""
    if "settings" not in sys.modules:
        spec = importlib.util.spec_from_file_location("settings", SETTINGS_SCRIPT)
        assert spec and spec.loader
        sys.modules["settings"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["settings"]


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """The handler served on 127.0.0.1 by a thread of the test's own process; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


@contextmanager
def proxy(upstream: str, handle: Callable[[Any, bytes, Callable[[bytes], Reply]], Reply]) -> Iterator[str]:
    """An HTTP proxy on 127.0.0.1 in front of upstream (moto's endpoint): each request, its body read whole
    (chunked or not), goes to handle(request, body, forward), whose reply the client gets; forward(body)
    sends the request on. Yields the proxy's endpoint. The IAM proxy and the AWS shims are made of it."""
    host, port = urllib.parse.urlsplit(upstream).netloc.split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

        def _handle(self) -> None:
            status, headers, reply = handle(self, self._body(), self._forward)
            self.send_response(status)
            length = headers.get("Content-Length", "0") if self.command == "HEAD" else str(len(reply))
            for name, value in headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)

        def _forward(self, body: bytes, extra: dict[str, str] | None = None) -> Reply:
            connection = http.client.HTTPConnection(host, int(port), timeout=120)
            replaced = {k.lower() for k in extra or {}}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | replaced}
            headers |= extra or {}
            headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            reply = response.read()
            connection.close()
            return response.status, dict(response.getheaders()), reply

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http_server(Handler) as own:
        yield f"http://127.0.0.1:{own}"


@contextmanager
def serving(cmd: list[str], ready_url: str, name: str, log: Path | None = None) -> Iterator[None]:
    """Run a loopback server for the duration of the block, once ready_url answers; its output goes to log."""
    if os.environ.get(FAST_LANE):
        raise RuntimeError(
            f"{name} is not started in the fast lane (pytest --fast): the test starting it needs the aws or "
            "docker marker, which tests/conftest.py gives from the fixtures and functions a test uses"
        )
    sink = log.open("w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=1)  # noqa: S310 -- our own loopback server
                break
            except OSError as exc:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{name} did not start: {ready_url} does not answer") from exc
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if log:
            sink.close()


@contextmanager
def moto_server(log: Path | None = None) -> Iterator[str]:
    """moto on 127.0.0.1, standing in for S3, SNS, SQS and SSM over real HTTP; yields its endpoint. Its
    request log (one line per request: method, path and query) goes to log, if given."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    server = Path(sys.executable).with_name("moto_server")
    with serving(
        [str(server), "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
        f"{endpoint}/moto-api/",
        "moto",
        log,
    ):
        yield endpoint


@contextmanager
def local_registry(root: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1, standing in for ECR; yields host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed: run `make test`, which installs it")
    address = f"127.0.0.1:{free_port()}"
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'registry'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: {address}}}\n"
    )
    with serving([binary, "serve", str(config)], f"http://{address}/v2/", "docker-registry"):
        yield address


# Looks for the task's credentials, their URIs and the runner's settings in its environment and in every
# /proc file it can read; prints what it found as JSON.
SEARCH = """
import glob, json, os
markers = {markers!r}
found = sorted({{(k, m) for k, v in os.environ.items() for m in markers if m in k + "=" + v}})
patterns = ("[0-9]*/environ", "[0-9]*/cmdline", "[0-9]*/task/*/environ")
paths = [p for pattern in patterns for p in glob.glob("/proc/" + pattern)]
for path in paths:
    try:
        data = open(path, "rb").read().decode(errors="replace")
    except OSError:
        continue
    found += [(path, m) for m in markers if m in data]
for path in ("/proc/1/mem", "/proc/1/environ"):
    try:
        open(path, "rb").read(1)
        found.append((path, "readable"))
    except OSError:
        pass
print("SEARCH " + json.dumps({{"found": found, "names": sorted(os.environ)}}))
"""


def searched(run: Run) -> dict:
    (line,) = [line for line in run.stderr.splitlines() if "SEARCH {" in line]
    return json.loads(line.split("SEARCH ", 1)[1])
