"""The runner's modules on their own, on this machine's Python (no container): the exit table against the
README, the credential boundary, pinning and the local guard, the verdict's cut, and the process reaper (the
configuration's rules are test_config.py's)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO

from runner import exits, processes, publish, sandbox, staged
from runner.checking import VERDICT_LIMIT, verdict
from runner.credentials import CredentialServer, NotebookIdentity
from runner.errors import RunFailed
from runner.locations import Location
from runner.sandbox import Workspace

WORK = Workspace(Path("/tmp/notebook-run.test"))  # noqa: S108 -- a name only: env() makes no folder

# --- exits.py ----------------------------------------------------------------------------------------


def readme_exit_table() -> dict[int, str]:
    section = (REPO / "README.md").read_text().split("### Exit codes and the last line", 1)[1]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", section.split("\n\n###", 1)[0], flags=re.MULTILINE)
    return {int(code): meaning.strip() for code, meaning in rows}


def test_the_readme_exit_table_says_what_the_runners_table_says() -> None:
    table = readme_exit_table()

    assert set(table) == set(exits.EXITS) | {exits.KILLED.code}
    for code, meaning in table.items():
        expected = exits.EXITS[code].meaning if code in exits.EXITS else exits.KILLED.meaning
        assert meaning.lower().startswith(expected.lower()), (code, meaning, expected)


# --- credentials.py ------------------------------------------------------------------------------------

TASK = {
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x", "AWS_ACCESS_KEY_ID": "AKIATASK",
    "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t", "AWS_PROFILE": "p",
    "ECS_CONTAINER_METADATA_URI_V4": "m",
    "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "OUTPUT_URI": "s3://out/daily",
    "SNS_TOPIC_ARN": "arn", "PATH": "/usr/bin", "MY_SETTING": "kept",
}  # fmt: skip


class FakeRole:
    role_arn = "arn:aws:iam::123456789012:role/notebook"

    def __init__(self) -> None:
        import datetime as dt

        self.served = {
            "AccessKeyId": "ASIANOTEBOOK", "SecretAccessKey": "n", "SessionToken": "nt",
            "Expiration": dt.datetime(2099, 1, 1, tzinfo=dt.UTC),
        }  # fmt: skip

    def get(self) -> dict:
        return self.served


def test_a_task_without_a_notebook_role_hands_the_notebook_no_credentials_and_no_settings() -> None:
    env = NotebookIdentity(TASK, None, WORK).env()

    assert sorted(env) == [
        "AWS_EC2_METADATA_DISABLED",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "HOME",
        "LOGNAME",
        "MY_SETTING",
        "PATH",
        "TMPDIR",
        "USER",
    ]
    assert (env["HOME"], env["TMPDIR"]) == (
        str(WORK.home),
        str(WORK.notebook_tmp),
    )  # its own, not the runner's


def test_on_a_laptop_the_users_own_keys_reach_the_notebook() -> None:
    laptop = {k: v for k, v in TASK.items() if not k.startswith(("AWS_CONTAINER", "ECS_"))}

    env = NotebookIdentity(laptop, None, WORK).env()

    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_PROFILE"]) == ("AKIATASK", "p")
    assert "OUTPUT_URI" not in env


def test_the_credential_server_serves_the_notebook_role_on_loopback_to_its_token_only() -> None:
    with NotebookIdentity(TASK, FakeRole(), WORK) as identity:  # type: ignore[arg-type]
        env = identity.env()
        url, token = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        ok = urllib.request.Request(url, headers={"Authorization": token})  # noqa: S310 -- our own loopback server
        with urllib.request.urlopen(ok, timeout=5) as reply:  # noqa: S310 -- our own loopback server
            served = json.load(reply)
        with pytest.raises(urllib.error.HTTPError) as refused:
            guess = urllib.request.Request(url, headers={"Authorization": "guess"})  # noqa: S310
            urllib.request.urlopen(guess, timeout=5)  # noqa: S310 -- our own loopback server

    assert url.startswith("http://127.0.0.1:")
    assert served["AccessKeyId"] == "ASIANOTEBOOK" and served["Expiration"] == "2099-01-01T00:00:00Z"
    assert refused.value.code == 403
    assert "AKIATASK" not in json.dumps(env) and "/v2/credentials/x" not in json.dumps(env)


def test_the_server_token_is_fresh_for_each_run() -> None:
    assert CredentialServer(FakeRole()).token != CredentialServer(FakeRole()).token  # type: ignore[arg-type]


# --- publish.py ------------------------------------------------------------------------------------------


def test_only_names_no_part_of_which_is_hidden_are_data() -> None:
    names = [
        "part-0.parquet",
        "x=1/part.parquet",
        "_SUCCESS",
        ".hidden.csv",
        "_temporary/0/p.parquet",
        "a/.b/c",
        "a//b",
    ]

    assert [n for n in names if staged.is_data(n)] == ["part-0.parquet", "x=1/part.parquet"]


def test_the_checked_copy_is_the_staged_bytes_read_only_whatever_staging_becomes(tmp_path: Path) -> None:
    part = tmp_path / "staging" / "date=2019-08-01"
    (part / "x=1").mkdir(parents=True)
    (part / "part-0.parquet").write_bytes(b"checked")
    (part / "x=1" / "part-1.parquet").write_bytes(b"also checked")
    (part / "_extra").write_bytes(b"not data")
    copy = tmp_path / "checked" / "date=2019-08-01"

    inventory = staged.copy_staged(Location(str(part)), Location(str(tmp_path / "staging")), copy)
    (part / "part-0.parquet").write_bytes(b"rewritten after the copy")

    assert [(f.name, f.size) for f in inventory.files] == [("part-0.parquet", 7), ("x=1/part-1.parquet", 12)]
    assert inventory.files[0].digest == "sha256:" + __import__("hashlib").sha256(b"checked").hexdigest()
    assert (copy / "part-0.parquet").read_bytes() == b"checked"
    assert inventory.left_out == ["_extra"] and not (copy / "_extra").exists()
    modes = {p.relative_to(copy).as_posix(): p.stat().st_mode & 0o777 for p in [copy, *copy.rglob("*")]}
    assert modes == {".": 0o555, "part-0.parquet": 0o444, "x=1": 0o555, "x=1/part-1.parquet": 0o444}


def test_nothing_staged_makes_no_copy_of_the_partition(tmp_path: Path) -> None:
    (tmp_path / "staging").mkdir()
    copy = tmp_path / "checked" / "date=2019-08-01"

    inventory = staged.copy_staged(
        Location(str(tmp_path / "staging" / "date=2019-08-01")), Location(str(tmp_path / "staging")), copy
    )

    assert inventory.files == [] and not copy.exists()  # the check says 'no partition', as for a folder


def test_a_staged_partition_linked_out_of_staging_is_refused_and_linked_files_are_left_out(
    tmp_path: Path,
) -> None:
    staging, elsewhere = tmp_path / "staging", tmp_path / "published" / "date=2019-07-31"
    elsewhere.mkdir(parents=True)
    (elsewhere / "part-0.parquet").write_bytes(b"another day")
    staging.mkdir()
    (staging / "date=2019-08-01").symlink_to(elsewhere)
    part = Location(str(staging / "date=2019-08-01"))

    with pytest.raises(RunFailed, match="is a link out of the run's staging location"):
        staged.copy_staged(part, Location(str(staging)), tmp_path / "c1" / "date=2019-08-01")

    (staging / "date=2019-08-01").unlink()
    (staging / "date=2019-08-01").mkdir()
    (staging / "date=2019-08-01" / "part-0.parquet").symlink_to(elsewhere / "part-0.parquet")
    (staging / "date=2019-08-01" / "sub").symlink_to(elsewhere)
    (staging / "date=2019-08-01" / "fifo.parquet").parent.mkdir(exist_ok=True)
    os.mkfifo(staging / "date=2019-08-01" / "fifo.parquet")
    inventory = staged.copy_staged(part, Location(str(staging)), tmp_path / "c2" / "date=2019-08-01")
    assert (inventory.files, sorted(inventory.left_out)) == ([], ["fifo.parquet", "part-0.parquet", "sub"])


# --- checking.py -----------------------------------------------------------------------------------------


def test_a_long_verdict_is_cut_and_says_where_the_rest_is() -> None:
    said = verdict("ok\n" + "x" * 300_000 + "\n\n")

    assert len(said) < VERDICT_LIMIT + 100
    assert said.endswith(f"(cut at {VERDICT_LIMIT} of 300,000 characters: see check.txt)")


# --- processes.py ------------------------------------------------------------------------------------------


# Processes of a user of their own (a uid nobody else on this machine has) that try to outlive a notebook:
# a thread group whose leader exited (it shows as a zombie while its other thread runs), a daemon (double
# fork, its own session), a process that ignores every signal it can, and one that keeps forking.
SURVIVORS = r"""
import ctypes, os, signal, sys, threading, time
kind = sys.argv[1]
def work():
    while True:
        time.sleep(0.01)
if kind == "leader":
    threading.Thread(target=work).start()
    time.sleep(0.1)
    ctypes.CDLL(None).pthread_exit(None)
elif kind == "daemon":
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    work()
elif kind == "stubborn":
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)
    work()
elif kind == "forking":
    while True:
        if os.fork() == 0:
            time.sleep(0.05)
            os._exit(0)
        time.sleep(0.01)
"""
NOBODY_UID = 47_113  # a user no process of this machine runs as


@pytest.fixture
def notebook_user() -> Iterator[processes.NotebookUser]:
    user = processes.NotebookUser(NOBODY_UID, NOBODY_UID)
    if os.geteuid() != 0:
        pytest.fail("the reaper's tests start processes as another user: run them as root (make test does)")
    yield user
    user.stop_all("after the test")


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_no_process_of_the_notebooks_user_is_left_whatever_its_state_or_parentage(
    notebook_user: processes.NotebookUser,
) -> None:
    processes.harden()  # a child subreaper, as the runner makes itself
    for kind in ("leader", "daemon", "stubborn", "forking"):
        subprocess.Popen(notebook_user.command([sys.executable, "-S", "-c", SURVIVORS, kind]))

    def leader_gone_threads_on() -> bool:  # a zombie thread group leader whose other thread still runs
        for pid in notebook_user.processes():
            with contextlib.suppress(OSError):
                if state(pid) == "Z" and len(list(Path(f"/proc/{pid}/task").iterdir())) > 1:
                    return True
        return False

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not leader_gone_threads_on():
        time.sleep(0.05)
    assert leader_gone_threads_on()

    killed = notebook_user.stop_all("in the test")

    assert killed >= 4
    assert notebook_user.processes() == []


def test_a_notebook_process_runs_with_no_capability_and_no_new_privileges(
    notebook_user: processes.NotebookUser,
) -> None:
    done = subprocess.run(
        notebook_user.command(["/bin/grep", "-E", "^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Amb)|NoNewPrivs):",
                               "/proc/self/status"]),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines())

    assert fields["Uid"].split() == [str(NOBODY_UID)] * 4 and fields["Groups"].strip() == ""
    assert {fields[c].strip() for c in ("CapInh", "CapPrm", "CapEff", "CapAmb")} == {"0000000000000000"}
    assert fields["NoNewPrivs"].strip() == "1"


def test_the_runners_helpers_as_the_notebooks_user_never_carry_the_runners_environment(
    notebook_user: processes.NotebookUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper and the remover run as the notebook's user: a process of that user reads their
    /proc/<pid>/environ while they live. The runner's own holds the task's credentials' URI and token."""
    marker = "task-token-MARKER"
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", marker)
    seen: list[str] = []
    done = threading.Event()

    def observe() -> None:  # what any process of the notebook's user could read, as fast as it can
        while not done.is_set():
            for pid in notebook_user.processes():
                with contextlib.suppress(OSError):
                    if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                        seen.append(str(pid))

    watcher = threading.Thread(target=observe)
    watcher.start()
    try:
        for _ in range(20):  # each round: a process to stop, and a file of its to remove
            subprocess.Popen(notebook_user.command(["/bin/sleep", "30"]), env={})
            notebook_user.stop_all("in the test")
            notebook_user.remove(tmp_path, ["nothing-there"])
    finally:
        done.set()
        watcher.join()

    assert seen == []


@pytest.fixture
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder another user may read (pytest's own are root's alone)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="runner-units-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_the_checked_files_are_read_as_the_notebooks_user_and_must_be_parquet_of_one_schema(
    notebook_user: processes.NotebookUser, shared: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def inventory(*names: str) -> staged.Inventory:
        files = [staged.Pinned(name, 0, "") for name in names]
        return staged.Inventory(Location("/staging"), shared, files)

    pq.write_table(pa.table({"a": [1, 2]}), shared / "one.parquet")
    pq.write_table(pa.table({"a": [3]}), shared / "two.parquet")
    (shared / "rows.csv").write_text("a\n1\n")
    for path in shared.iterdir():
        path.chmod(0o444)

    rows = publish.read_checked(inventory("one.parquet", "two.parquet"), notebook_user)
    assert rows.to_pylist() == [{"a": 1}, {"a": 2}, {"a": 3}]

    with pytest.raises(RunFailed, match=r"^rows.csv: .*the table takes Parquet files only") as caught:
        publish.read_checked(inventory("one.parquet", "rows.csv"), notebook_user)
    assert caught.value.exit is exits.CHECK

    # A column more in one file, or another type: a reader of the folder would see one or the other
    for name, other in (("three", {"a": [3], "b": ["x"]}), ("four", {"a": ["text"]})):
        pq.write_table(pa.table(other), shared / f"{name}.parquet")
        with pytest.raises(RunFailed, match="do not share one schema") as caught:
            publish.read_checked(inventory("one.parquet", f"{name}.parquet"), notebook_user)
        assert caught.value.exit is exits.CHECK
    assert notebook_user.processes() == []


# --- sandbox.py: the runner's folders, never the notebook's ------------------------------------------------


@pytest.mark.parametrize(
    ("where", "mode", "owner", "said"),
    [
        ("", 0o777, 0, "out is writable by everyone (mode 777)"),
        ("", 0o775, "group", "out is writable by the notebook's group (mode 775)"),
        ("data", 0o755, "notebook", "out/data is owned by the notebook's user"),
        ("metadata/v1.metadata.json", 0o666, 0, "v1.metadata.json is writable by everyone"),
        ("_catalog", 0o777, 0, "out/_catalog is writable by everyone"),
    ],
)
def test_an_output_folder_the_notebooks_user_could_change_is_refused(
    tmp_path: Path, where: str, mode: int, owner: object, said: str
) -> None:
    """It could change the table after the check (make its data/ its own before the first commit, rename
    the runner's folders): refused before anything runs, naming the path and the fix."""
    user = processes.NotebookUser(NOBODY_UID, NOBODY_UID)
    out = tmp_path / "out"
    for folder in ("data/date=2019-08-01", "metadata", "_catalog", "_runs/date=2019-08-01/r1/staging"):
        (out / folder).mkdir(parents=True)
    (out / "metadata" / "v1.metadata.json").write_text("{}")
    (out / "_runs/date=2019-08-01/r1/staging").chmod(0o2770)  # a run's staging folder: the notebook's
    os.chown(out / "_runs/date=2019-08-01/r1/staging", -1, NOBODY_UID)
    assert sandbox.notebook_writable(out, user) is None

    path = out / where if where else out
    path.chmod(mode)
    if owner in ("notebook", "group"):
        os.chown(path, NOBODY_UID if owner == "notebook" else -1, NOBODY_UID)
    with pytest.raises(RunFailed, match="is not the runner's alone") as caught:
        sandbox.refuse_if_the_notebook_may_write("OUTPUT_URI", out, user)

    assert caught.value.exit is exits.CONFIG
    assert said in str(caught.value) and "chmod -R go-w" in str(caught.value)


def test_a_parent_the_notebooks_user_may_rename_things_in_is_refused_unless_sticky(tmp_path: Path) -> None:
    user = processes.NotebookUser(NOBODY_UID, NOBODY_UID)
    parent = tmp_path / "shared"
    (parent / "out").mkdir(parents=True)
    parent.chmod(0o777)

    assert sandbox.notebook_writable(parent / "out", user) == (parent, "writable by everyone (mode 777)")
    parent.chmod(0o1777)  # as /tmp: another user's folder cannot be renamed there
    assert sandbox.notebook_writable(parent / "out", user) is None
