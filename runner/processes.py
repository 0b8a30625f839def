"""The runner's hold on the processes it starts: it adopts every orphan (a child subreaper), and before a
trusted step begins, every process the notebook or the check started is gone, even one that left the
kernel's session (setsid) or daemonized."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("runner")

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def harden() -> None:
    """Make this process non-dumpable (its /proc/<pid>/environ, mem and fds become root's, so a process of
    the same user, such as the notebook's kernel, cannot read the task's credentials from it; nor can it
    ptrace it) and a child subreaper (orphans of its children become its own, so none escapes)."""
    if not _prctl(PR_SET_DUMPABLE, 0):
        log.warning("could not make the runner non-dumpable: the notebook could read its memory")
    if not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        log.warning(
            "could not make the runner a child subreaper: a daemonized notebook process may outlive it"
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


def descendants(root: int | None = None) -> list[int]:
    """Every live process below root (this process by default), from /proc."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        entry = proc.name
        if not entry.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z":  # a zombie is dead already: it only waits to be reaped
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def reap() -> None:
    """Collect the exit status of every finished child (orphans adopted included), so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(why: str) -> int:
    """SIGKILL every process below this one until none is left (a process forking meanwhile is caught on the
    next round); returns how many were killed."""
    killed: set[int] = set()
    for _ in range(100):
        pids = descendants()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
        reap()
    else:
        from runner import exits
        from runner.errors import RunFailed

        raise RunFailed(
            exits.NOTEBOOK,
            f"processes kept appearing {why}, faster than 100 rounds of SIGKILL removed them (a fork bomb?): "
            "nothing was checked or published",
            "notebook",
        )
    reap()
    if killed:
        log.info("killed %d process(es) left running %s", len(killed), why)
    return len(killed)
