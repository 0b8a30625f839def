"""The users of a run and the runner's hold on the notebook's processes.

run_notebook.sh starts the runner as its own user (the image's `runner`, or RUNNER_USER) with SETUID, SETGID
and KILL only, and no_new_privs. Every process of the notebook's code (its kernel, what the kernel starts,
the check) runs as the image's `notebook` user, started through setpriv with no capability and
no_new_privs: it can neither read nor write the runner's folders, nor signal or trace the runner. The parser
of the checked Parquet files runs the same way as a third user, `reader`, while the check runs: the check
can neither signal nor trace it, so the rows it hands the runner are the checked copy's.

Before each trusted step, no process of the notebook's user is left, whatever its state or parentage: a
process of that user kills every process of that user at once (kill(-1, SIGKILL): the kernel delivers it to
each of them, and a fork under way fails), and the runner waits until /proc shows none, reaping what it
adopted (it is the container's init, and a child subreaper elsewhere).
"""

from __future__ import annotations

import ctypes
import grp
import logging
import os
import pwd
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("runner")

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
NOTEBOOK_ACCOUNT = "notebook"  # the image's user for the notebook's code (Dockerfile)
READER_ACCOUNT = "reader"  # the image's user for the parser of the checked files (Dockerfile)
SETPRIV = "/usr/bin/setpriv"
KEPT = {"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7}  # the runner's capabilities (run_notebook.sh)
STOP_SECONDS = 30  # the longest the runner waits for the notebook's user to have no process left
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # the image's own programs (run_notebook.sh's PATH too)
# The whole environment of the runner's own helpers that run as the notebook's user (the reaper, the parser
# of the checked files, the remover of staged files): never the runner's, which holds the task's credentials'
# URI and token, and which any process of that user could read in /proc while the helper lives.
HELPER_ENV = {"PATH": SYSTEM_PATH, "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def harden() -> None:
    """Make this process non-dumpable (its /proc/<pid>/environ, mem and fds become root's, and it cannot be
    ptraced) and a child subreaper (orphans of its children become its own, so none escapes its reaping)."""
    if not _prctl(PR_SET_DUMPABLE, 0):
        log.warning("could not make the runner non-dumpable: its memory is less protected")
    if not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        log.warning(
            "could not make the runner a child subreaper: an orphaned notebook process stays a zombie"
        )


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGTERM and SIGINT wait until the block ends: a stop never cuts a clean-up short."""
    held = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def status_field(pid: str, name: str) -> str | None:
    """The first value of a field of /proc/<pid>/status (Uid: its real uid); None if it or the process is
    gone."""
    try:
        for line in Path("/proc", pid, "status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return line.split()[1]
    except (OSError, IndexError):
        return None
    return None


def effective_capabilities() -> int:
    """This process's effective capability set (0 where there is none)."""
    return int(status_field("self", "CapEff") or "0", 16)


def reap(pids: list[int]) -> None:
    """Collect the exit status of each of these processes that finished and is the runner's child (an orphan
    it adopted included), so none stays a zombie; never another child's, whose owner waits for it (the
    parser, while the check's processes are stopped)."""
    for pid in pids:
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def running(pid: str) -> bool:
    """Whether a process runs: any state but a zombie's, or a zombie leader whose other threads run."""
    try:
        state = Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" or len(list(Path("/proc", pid, "task").iterdir())) > 1
    except (OSError, IndexError):
        return False


# Run as the notebook's user (the runner's Python, isolated): removes each named path under the folder
# argv[2] (a file or a link, never what it points to; a folder with what is in it), then, when argv[1] is
# "prune", the folders under argv[2] left empty.
REMOVE = """
import os, shutil, sys
prune, root, names = sys.argv[1] == "prune", sys.argv[2], sys.argv[3:]
real = os.path.realpath(root)
for name in names:
    path = os.path.join(root, name)
    if not os.path.realpath(os.path.dirname(path)).startswith(real):
        continue
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)
for here, dirs, files in os.walk(root, topdown=False) if prune else ():
    for d in dirs:
        try:
            os.rmdir(os.path.join(here, d))
        except OSError:
            pass
"""


@dataclass(frozen=True)
class NotebookUser:
    """The user the notebook's code runs as, and how to start and stop its processes."""

    uid: int
    gid: int

    @classmethod
    def of_image(cls, account: str = NOTEBOOK_ACCOUNT) -> NotebookUser:
        entry = pwd.getpwnam(account)
        return cls(entry.pw_uid, entry.pw_gid)

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv run as this user: no supplementary group, no capability (none inherited, none ambient, so
        none after exec), no_new_privs (a setuid file would give nothing)."""
        return [
            SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--inh-caps=-all",
            "--ambient-caps=-all", "--no-new-privs", "--", *argv,
        ]  # fmt: skip

    def processes(self) -> list[int]:
        """Every process of this user, whatever its state: a thread group whose leader exited (shown as a
        zombie while its other threads run) included; a true zombie stays listed until it is reaped."""
        uid = str(self.uid)
        return [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and status_field(p.name, "Uid") == uid
        ]

    def remove(self, root: Path, names: list[str], prune: bool = False) -> None:
        """Remove the notebook's own files under root, as the notebook's user: the runner never deletes
        through a folder the notebook could have made or linked, and needs no right on what it owns."""
        import subprocess

        argv = [sys.executable, "-I", "-S", "-c", REMOVE, "prune" if prune else "keep", str(root), *names]
        subprocess.run(self.command(argv), env=HELPER_ENV, check=True, capture_output=True, timeout=600)

    def stop_all(self, why: str) -> int:
        """SIGKILL every process of this user and wait until none is left (reaping what the runner adopted);
        returns how many there were. RunFailed if one outlives STOP_SECONDS."""
        import subprocess

        found = self.processes()
        count = sum(1 for pid in found if running(str(pid)))
        deadline = time.monotonic() + STOP_SECONDS
        while found:
            for pid in found:  # the runner's own CAP_KILL: a process that stops the helper below dies too
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            # kill(-1) from a process of the notebook's user reaches each of its processes at once (a fork
            # under way fails); bash's builtin kill makes it one exec.
            with suppress(subprocess.TimeoutExpired):
                subprocess.run(self.command(["/bin/bash", "-c", "kill -KILL -1 2>/dev/null; exit 0"]),
                               env=HELPER_ENV, check=False, timeout=5)  # fmt: skip
            time.sleep(0.005)
            reap(found)
            found = self.processes()
            if found and time.monotonic() > deadline:
                from runner import exits
                from runner.errors import RunFailed

                raise RunFailed(
                    exits.NOTEBOOK,
                    f"{len(found)} process(es) of the notebook's user were still there {STOP_SECONDS} s "
                    f"after SIGKILL {why} (pids {', '.join(map(str, found[:5]))}): nothing was checked or "
                    "published",
                    "notebook",
                )
        if count:
            log.info("killed %d process(es) of the notebook's user left running %s", count, why)
        return count


def runner_is_confined() -> str:
    """'' when this process runs as the image meant (not root, the notebook's user known, the capabilities to
    start and stop it), else what is wrong, for the configuration error."""
    if os.getuid() == 0 or os.geteuid() == 0:
        return "the runner runs as root: start the image through its entrypoint, which drops root"
    try:
        notebook = NotebookUser.of_image()
        grp.getgrgid(notebook.gid)
        NotebookUser.of_image(READER_ACCOUNT)
    except KeyError:
        return (
            f"the image has no '{NOTEBOOK_ACCOUNT}' or '{READER_ACCOUNT}' user: rebuild it from the "
            "platform's Dockerfile"
        )
    if os.getuid() in (notebook.uid, NotebookUser.of_image(READER_ACCOUNT).uid):
        return (
            "the runner runs as the notebook's or the reader's user: start the image through its entrypoint"
        )
    missing = [name for name, bit in KEPT.items() if not effective_capabilities() >> bit & 1]
    if missing:
        return (
            f"the runner lacks {', '.join(missing)}, which it needs to run the notebook as a user of its "
            "own: start the image through its entrypoint, as root, without dropping them"
        )
    if not Path(SETPRIV).is_file():
        return f"{SETPRIV} is missing (util-linux): rebuild the image on a Debian base"
    return ""
