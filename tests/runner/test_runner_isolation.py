"""The runner out of the notebook's reach (issue 16), tried as an attacker would in a local run: two users in
one container, no process of the notebook's user left before a trusted step, the check reading exactly what
is published, the runner reading nothing the notebook wrote, and its record surviving a full disk."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    CONTAINER_UID,
    FARGATE_CAPS,
    NOTEBOOK_UID,
    READER_UID,
    SAMPLE_DATE,
    SAMPLE_LAKE,
    Run,
    day_rows,
    make_notebook,
    manifest,
    published,
    run_dirs,
)
from test_runner_failures import GOOD_ROWS, run_notebook

pytestmark = pytest.mark.docker

CAP_KILL, CAP_SETGID, CAP_SETUID = 1 << 5, 1 << 6, 1 << 7

# What the notebook's code can see of itself and of the runner (pid 1), and what it may do to them.
PROBE = """
import glob, json, os, signal
def status(pid):
    lines = open(f"/proc/{pid}/status").read().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    names = ("Uid", "Gid", "CapEff", "CapPrm", "CapAmb", "NoNewPrivs", "Groups")
    return {k: fields[k].split() for k in names}
def attempt(call):
    try:
        call()
        return "ALLOWED"
    except Exception as exc:
        return type(exc).__name__
work = os.path.dirname(os.environ["HOME"])
probe = {
    "kernel": status("self"), "runner": status(1), "home": os.environ["HOME"], "tmp": os.environ["TMPDIR"],
    "signal_runner": attempt(lambda: os.kill(1, signal.SIGTERM)),
    "runner_environ": attempt(lambda: open("/proc/1/environ", "rb").read()),
    "runner_memory": attempt(lambda: open("/proc/1/mem", "rb").read(1)),
    "list_work": attempt(lambda: os.listdir(work)),
    "list_private": attempt(lambda: os.listdir(f"{work}/private")),
    "write_private": attempt(lambda: open(f"{work}/private/x", "w").write("x")),
    "write_checked": attempt(lambda: open(f"{work}/checked/x", "w").write("x")),
    "write_kernel_folder": attempt(lambda: open(f"{work}/kernel/x", "w").write("x")),
    "write_runner_home": attempt(lambda: open("/home/runner/x", "w").write("x")),
    "write_app": attempt(lambda: open("/app/x", "w").write("x")),
    "write_output": attempt(lambda: open("/output/x", "w").write("x")),
    "write_home": attempt(lambda: open(os.path.join(os.environ["HOME"], "x"), "w").write("x")),
}
print("PROBE " + json.dumps(probe))
"""


def probed(run: Run) -> dict:
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("[runner] PROBE ")]
    return json.loads(line.split("PROBE ", 1)[1])


def test_the_notebook_runs_as_a_user_of_its_own_that_cannot_reach_the_runner(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "nb" / "probe.ipynb", PROBE, GOOD_ROWS)

    run = run_notebook(runner_image, out, tmp_path / "nb", "probe.ipynb")

    assert run.code == 0, run.stderr
    seen = probed(run)
    kernel, runner = seen["kernel"], seen["runner"]
    assert kernel["Uid"] == [str(NOTEBOOK_UID)] * 4 and kernel["Gid"] == [str(NOTEBOOK_UID)] * 4
    assert (kernel["CapEff"], kernel["CapPrm"], kernel["CapAmb"]) == (["0000000000000000"],) * 3
    assert kernel["NoNewPrivs"] == ["1"] and kernel["Groups"] == []
    assert runner["Uid"] == [str(CONTAINER_UID)] * 4 and runner["NoNewPrivs"] == ["1"]
    assert int(runner["CapEff"][0], 16) == CAP_KILL | CAP_SETGID | CAP_SETUID
    assert seen["home"] != "/home/runner" and seen["tmp"].startswith(seen["home"])
    refused = {name: value for name, value in seen.items() if isinstance(value, str) and name.startswith(
        ("signal", "runner_", "list_", "write_"))}  # fmt: skip
    assert refused == {
        "signal_runner": "PermissionError", "runner_environ": "PermissionError",
        "runner_memory": "PermissionError", "list_work": "PermissionError", "list_private": "PermissionError",
        "write_private": "PermissionError", "write_checked": "PermissionError",
        "write_kernel_folder": "PermissionError", "write_runner_home": "PermissionError",
        "write_app": "PermissionError", "write_output": "PermissionError", "write_home": "ALLOWED",
    }  # fmt: skip


def test_the_image_starts_as_root_only_to_drop_it_and_carries_no_setuid_file(runner_image: str) -> None:
    user = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Config.User}}", runner_image],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    found = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "/usr/bin/find", runner_image, "/", "-xdev", "-perm",
         "/6000", "-type", "f"], capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert user in ("", "0", "root")
    assert found.stdout == ""


def test_the_image_refuses_to_start_as_another_user_or_without_its_capabilities(
    runner_image: str, out: Path
) -> None:
    env = {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": SAMPLE_DATE}
    volumes = {SAMPLE_LAKE: "/data/lake:ro", out: "/output"}
    as_user = subprocess.run(
        ["docker", "run", "--rm", "--user", f"{CONTAINER_UID}", runner_image], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    no_caps = subprocess.run(
        ["docker", "run", "--rm", "--cap-drop", "ALL", runner_image], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    as_notebook, as_reader = (
        subprocess.run(
            ["docker", "run", "--rm", *FARGATE_CAPS, "-e", f"RUNNER_USER={uid}:{uid}", runner_image],
            capture_output=True, text=True, check=False,
        )
        for uid in (NOTEBOOK_UID, READER_UID)
    )  # fmt: skip
    zero_padded = subprocess.run(  # setpriv reads 010003 as the reader's group
        ["docker", "run", "--rm", *FARGATE_CAPS, "-e", f"RUNNER_USER=1000:0{READER_UID}", runner_image],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    ok = subprocess.run(  # docker's default capabilities: the runner drops them itself
        ["docker", "run", "--rm", *[f"-e{k}={v}" for k, v in env.items()],
         *[a for h, c in volumes.items() for a in ("-v", f"{h}:{c}")], runner_image],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert as_user.returncode == 2 and "the image must start as root" in as_user.stderr
    assert no_caps.returncode == 2 and "lacks SETUID, SETGID or KILL" in no_caps.stderr
    assert as_notebook.returncode == 2 and "is the notebook's user or group" in as_notebook.stderr
    assert as_reader.returncode == 2 and "is the reader's user or group" in as_reader.stderr
    assert zero_padded.returncode == 2 and "is not uid:gid" in zero_padded.stderr
    assert ok.returncode == 0, ok.stderr[-3000:]


# In the image, as the entrypoint starts the runner: it makes the run's folders, has the notebook's user
# make a folder of its own in its home (as IPython does, 0755), seals a checked copy, then removes the
# folders; prints whether the work folder is left.
AS_RUNNER = """
import json, subprocess, sys
from runner import processes, sandbox, staged
user = processes.NotebookUser.of_image()
work = sandbox.Workspace.create(user)
(work.checked / "date=2019-08-01").mkdir()
(work.checked / "date=2019-08-01" / "part-0.parquet").write_bytes(b"rows")
staged.seal(work.checked / "date=2019-08-01")
profile = work.home / ".ipython" / "profile"
code = f"import os; os.makedirs({str(profile)!r}, mode=0o755); open({str(profile / 'x')!r}, 'w').write('x')"
subprocess.run(user.command([sys.executable, "-I", "-S", "-c", code]), env={}, check=True)
work.remove(user)
print(json.dumps({"left": work.root.exists()}))
"""


def test_the_runs_folders_are_removed_whatever_the_notebook_left_in_them(runner_image: str) -> None:
    """Its home holds folders of the notebook's user, and the checked copy is sealed read-only: the run's
    folders still go when the run ends (the container's /tmp may outlive the run: make run's volume)."""
    caps = "-all,+setuid,+setgid,+kill"
    runner = ["/usr/bin/setpriv", f"--reuid={CONTAINER_UID}", f"--regid={CONTAINER_UID}",
              f"--groups={NOTEBOOK_UID}", f"--inh-caps={caps}", f"--ambient-caps={caps}", "--no-new-privs",
              "--", "/opt/notebook-runner/venv/bin/python", "-I", "-c",
              f"import sys; sys.path.insert(0, '/opt/notebook-runner'); exec({AS_RUNNER!r})"]  # fmt: skip

    done = subprocess.run(
        ["docker", "run", "--rm", *FARGATE_CAPS, "--entrypoint", runner[0], runner_image, *runner[1:]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"left": False}


# Plants configuration wherever the runner might read it: its old home (the work folder), the image's home,
# every folder of the run it can reach, and its own home. Each file would run code, or change what the runner
# does, if the runner read it: an nbconvert template (Jinja), an AWS config with credential_process, a
# PyIceberg configuration, a Python path configuration.
PLANT = """
import glob, json, os
here = os.environ["HOME"]
homes = {here, os.path.dirname(here), "/home/runner", "/tmp", os.getcwd()}
homes |= set(glob.glob("/tmp/notebook-run.*")) | set(glob.glob("/tmp/notebook-run.*/*"))
files = {
    ".local/share/jupyter/nbconvert/templates/lab/index.html.j2": "PLANTED-" + "TEMPLATE",
    ".local/share/jupyter/nbconvert/templates/lab/base.html.j2": "PLANTED-" + "TEMPLATE",
    ".local/share/jupyter/nbconvert/templates/lab/conf.json": '{"base_template": "base"}',
    ".aws/config": "[default]\\ncredential_process = /bin/echo PLANTED-CREDENTIALS\\n",
    ".pyiceberg.yaml": "catalog:\\n  local:\\n    uri: sqlite:////tmp/planted.db\\n",
    ".config/fsspec/conf.json": '{"file": {"auto_mkdir": true}}',
}
planted = {}
for home in sorted(homes):
    for name, text in files.items():
        path = os.path.join(home, name)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            planted[path] = "ALLOWED"
        except OSError as exc:
            planted[path] = type(exc).__name__
print("PLANTED " + json.dumps({"home": here, "planted": planted}))
"""


def test_configuration_the_notebook_plants_is_never_read_by_the_runner(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    """Run as Fargate does (read-only root: the old runner moved its HOME into its work folder there)."""
    make_notebook(tmp_path / "nb" / "plant.ipynb", PLANT, GOOD_ROWS)

    run = run_notebook(runner_image, out, tmp_path / "nb", "plant.ipynb", extra=("--read-only",))

    assert run.code == 0, run.stderr
    (line,) = [line for line in run.stderr.splitlines() if "PLANTED {" in line]
    seen = json.loads(line.split("PLANTED ", 1)[1])
    allowed = sorted(path for path, result in seen["planted"].items() if result == "ALLOWED")
    # its own home, and /tmp itself (world-writable, read by no one), are the only places it may write
    tmp = "/tmp/."  # noqa: S108 -- the container's /tmp, where every user may write
    assert allowed and all(p.startswith((seen["home"] + "/", tmp)) for p in allowed), allowed
    assert any(p.startswith(seen["home"] + "/") for p in allowed)
    page = (run_dirs(out)[0] / "plant.html").read_text()
    assert "PLANTED-TEMPLATE" not in page and "<html" in page
    assert day_rows(out).num_rows == 2


def test_templates_beside_the_notebook_are_never_the_reports(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    """A model's repository (here the notebook's folder, in the image /app) with an nbconvert template folder:
    nbconvert looks for templates in the folder it was started in, and papermill would have moved the runner
    there while the notebook ran. A Jinja template runs Python in the process that renders it."""
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "good.ipynb", GOOD_ROWS)
    (nb_dir / "lab").mkdir()
    (nb_dir / "lab" / "conf.json").write_text('{"base_template": "base", "mimetypes": {"text/html": true}}')
    (nb_dir / "lab" / "index.html.j2").write_text("TEMPLATE-OF-THE-MODEL {{ 6 * 7 }}")

    run = run_notebook(runner_image, out, nb_dir, "good.ipynb")

    assert run.code == 0, run.stderr[-3000:]
    page = (run_dirs(out)[0] / "good.html").read_text()
    assert "TEMPLATE-OF-THE-MODEL" not in page and "<html" in page


# Three processes that try to outlive the notebook, each appending to a heartbeat file in its home: a thread
# group whose leader exited (it shows as a zombie while its other thread runs), a daemon (double fork, its own
# session) and a process that ignores every signal it can.
SURVIVORS = r"""
import os, subprocess, sys, textwrap
beat = textwrap.dedent('''
    import os, sys, threading, time
    def beat(name):
        while True:
            with open(os.path.join(os.environ["HOME"], name), "a") as f:
                f.write("x")
            time.sleep(0.02)
''')
leader = beat + textwrap.dedent('''
    import ctypes
    threading.Thread(target=beat, args=("leader",)).start()
    time.sleep(0.2)
    ctypes.CDLL(None).pthread_exit(None)  # the main thread exits; the thread group lives on
''')
daemon = beat + textwrap.dedent('''
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    beat("daemon")
''')
stubborn = beat + textwrap.dedent('''
    import signal
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, signal.SIG_IGN)
    beat("stubborn")
''')
for code in (leader, daemon, stubborn):
    subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
import time
time.sleep(1)
print("survivors started:", sorted(os.listdir(os.environ["HOME"])))
"""
# The check (the notebook's user too): which heartbeats still grow, and which processes of its user are
# there besides itself.
SURVIVOR_CHECK = r"""
import json, os, sys, time
home = os.environ["HOME"]
names = ("leader", "daemon", "stubborn")
def size(name):
    path = os.path.join(home, name)
    return os.path.getsize(path) if os.path.exists(path) else -1
before = {n: size(n) for n in names}
time.sleep(1)
growing = [n for n in names if size(n) != before[n]]
me = os.getuid()
others = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
    except OSError:
        continue
    if int(fields["Uid"].split()[0]) == me and int(pid) != os.getpid():
        others.append(f"{pid} {fields['Name'].strip()} {fields['State'].strip()}")
print("SURVIVORS " + json.dumps({"before": before, "growing": growing, "others": others}))
sys.exit(1 if growing or others else 0)
"""


def test_no_process_of_the_notebooks_user_outlives_the_notebook_whatever_its_state(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "survivors.ipynb", SURVIVORS, GOOD_ROWS)
    (nb_dir / "survivor_check.py").write_text(SURVIVOR_CHECK)

    run = run_notebook(runner_image, out, nb_dir, "survivors.ipynb", CHECK_SCRIPT="/nb/survivor_check.py")

    (line,) = [line for line in run.stderr.splitlines() if line.startswith("SURVIVORS ")]
    seen = json.loads(line.split(" ", 1)[1])
    assert all(size > 0 for size in seen["before"].values()), seen  # each had started beating
    assert seen["growing"] == [] and seen["others"] == []
    assert run.code == 0, run.stderr[-3000:]
    assert re.search(r"killed [3-9] process\(es\) of the notebook's user left running after the notebook",
                     run.stderr)  # fmt: skip
    assert day_rows(out).num_rows == 2


# The check's own account of the rows it read, on its last lines: what is published must be exactly these.
# It rejects a row whose usp is 'unchecked'.
READING_CHECK = r"""
import argparse, json, sys, time
import pyarrow.parquet as pq
parser = argparse.ArgumentParser()
parser.add_argument("--date")
parser.add_argument("--output")
args = parser.parse_args()
rows = pq.read_table(f"{args.output}/date={args.date}").to_pylist()
print("CHECK-READ " + json.dumps(sorted(r["usp"] for r in rows)), flush=True)
time.sleep(1)  # the swap after the check's read lands while it still runs
sys.exit(1 if any(r["usp"] == "unchecked" for r in rows) else 0)
"""
SCHEMA = pa.schema([("accommodation_id", pa.int64()), ("accommodation_ns", pa.int64()), ("usp", pa.string()),
                    ("destination_id", pa.int64())])  # fmt: skip


def rows_file(*usps: str) -> bytes:
    table = pa.Table.from_pylist(
        [{"accommodation_id": i, "accommodation_ns": 100, "usp": u, "destination_id": None} for i, u in
         enumerate(usps)], schema=SCHEMA,
    )  # fmt: skip
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


BAD = rows_file("spa", "unchecked")  # what the notebook writes: the check must reject it
LATE = rows_file("spa", "sauna", "unchecked")  # what a writer puts there as the notebook ends: rejected too
GOOD = rows_file("spa", "pool", "gym")  # what a writer swaps in later: the check would pass it
# Each step's line in the run's log, and what a writer puts in staging on seeing it: after the notebook,
# after the copy (the pin), as the check starts, during the check (once it has read), after the check.
SWAPS = {
    "Ending Cell 2-": LATE, "copied the staged output": GOOD, "checking the output with": GOOD,
    "CHECK-READ ": BAD, "rejected the output": GOOD, "published ": GOOD,
}  # fmt: skip


def run_watching(args: list[str], on_line: Callable[[str], None]) -> Run:
    """docker run, each line of its stderr handed to on_line as it comes."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read() if proc.stdout else ""))
    reader.start()
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        on_line(line)
    reader.join()
    return Run(proc.wait(timeout=600), "".join(stdout), "".join(lines))


def swapping(write: Callable[[bytes], None]) -> Callable[[str], None]:
    """Rewrites the staged file at each step of the run (SWAPS)."""

    def on_line(line: str) -> None:
        for words, data in SWAPS.items():
            if words in line:
                write(data)

    return on_line


def check_read(run: Run) -> list[str]:
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("CHECK-READ ")]
    return json.loads(line.split(" ", 1)[1])


def assert_published_only_what_the_check_read(run: Run, read: list[str], published: list[str] | None) -> None:
    """Whatever staging held meanwhile: the rows the check passed, or nothing."""
    assert read in (["spa", "unchecked"], ["sauna", "spa", "unchecked"])  # a copy of what staging held
    assert run.code == 20, run.stderr[-3000:]  # both rejected: never the good rows swapped in later
    assert published is None  # never the rows it did not read, never the rows it rejected


def swap_model(nb_dir: Path, writes: str) -> Path:
    """The notebook folder of the swap tests: writes.ipynb stages BAD (its cell `writes` copies
    /nb/bad.parquet to the partition) and reading_check.py says what it read."""
    nb_dir.mkdir()
    (nb_dir / "bad.parquet").write_bytes(BAD)
    make_notebook(nb_dir / "writes.ipynb", writes)
    (nb_dir / "reading_check.py").write_text(READING_CHECK)
    for path in [nb_dir, *nb_dir.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return nb_dir


def test_what_is_published_is_exactly_what_the_check_read_whatever_staging_holds_meanwhile(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb_dir = swap_model(tmp_path / "nb", (
        "import os, shutil\n"
        "os.makedirs(f'{output_uri}/date={date}')\n"
        "shutil.copyfile('/nb/bad.parquet', f'{output_uri}/date={date}/part-0.parquet')"
    ))  # fmt: skip
    staged = out / "_runs" / f"date={SAMPLE_DATE}" / "swap" / "staging" / f"date={SAMPLE_DATE}"
    env = {"DATA_URI": "/data/lake", "OUTPUT_URI": "/output", "RUN_DATE": SAMPLE_DATE, "RUN_ID": "swap",
           "NOTEBOOK": "/nb/writes.ipynb", "CHECK_SCRIPT": "/nb/reading_check.py"}  # fmt: skip
    args = ["docker", "run", "--rm", *FARGATE_CAPS, "-v", f"{SAMPLE_LAKE}:/data/lake:ro",
            "-v", f"{out}:/output",
            "-v", f"{nb_dir}:/nb:ro", *[f"-e{k}={v}" for k, v in env.items()], runner_image]  # fmt: skip

    def write(data: bytes) -> None:
        if staged.is_dir():
            (staged / "part-0.parquet").write_bytes(data)

    run = run_watching(args, swapping(write))

    rows = day_rows(out)
    assert_published_only_what_the_check_read(
        run, check_read(run), sorted(rows.column("usp").to_pylist()) if rows is not None else None
    )
    assert manifest(out)["failed_step"] == "check"


# Fills the task's storage (the container's /tmp) from the check, after the output was copied, leaving too
# little room for the report's files: the run's record no longer needs that room.
FILLING_CHECK = r"""
import os, runpy, sys, tempfile
with open(os.path.join(tempfile.gettempdir(), "filler"), "wb") as f:
    try:
        while True:
            f.write(b"x" * (1 << 20))
    except OSError:
        pass
    f.flush()
runpy.run_path("/app/check.py", run_name="__main__")
"""


def test_a_full_task_storage_after_the_check_does_not_lose_the_runs_record(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "good.ipynb", GOOD_ROWS)
    (nb_dir / "filling_check.py").write_text(FILLING_CHECK)

    run = run_notebook(
        runner_image, out, nb_dir, "good.ipynb", CHECK_SCRIPT="/nb/filling_check.py",
        extra=("--tmpfs", "/tmp:rw,size=32m,mode=1777"),  # noqa: S108 -- the container's /tmp
    )  # fmt: skip

    assert run.code == 0, run.stderr[-3000:]
    assert "succeeded: published 2 rows" in run.last_line
    facts = manifest(out)
    assert facts["status"] == "succeeded" and facts["rows"] == 2
    assert {p.name for p in run_dirs(out)[0].iterdir()} >= {"good.html", "good.ipynb", "check.txt"}
    assert day_rows(out).num_rows == 2


def test_a_check_that_writes_into_the_copy_it_reads_is_refused_and_the_copy_is_published(
    runner_image: str, out: Path, tmp_path: Path
) -> None:
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "good.ipynb", GOOD_ROWS)
    (nb_dir / "rewriting_check.py").write_text(
        "import sys, pathlib\n"
        "part = pathlib.Path(sys.argv[sys.argv.index('--output') + 1]) / f\"date={sys.argv[2]}\"\n"
        "try:\n"
        "    (part / 'part-0.parquet').write_bytes(b'changed')\n"
        "    print('REWROTE')\n"
        "except OSError as exc:\n"
        "    print('REFUSED', type(exc).__name__)\n"
    )

    run = run_notebook(runner_image, out, nb_dir, "good.ipynb", CHECK_SCRIPT="/nb/rewriting_check.py")

    assert run.code == 0, run.stderr[-3000:]
    assert "REFUSED PermissionError" in run.stderr
    assert day_rows(out).num_rows == 2 and len(published(out)) == 1
