"""The run's folders, and the runner's own environment: the runner reads nothing the notebook could write.

The run's work folder (under TMPDIR, else /tmp) is the runner's; the notebook's user may pass through it
(0711) to the three folders made for it, never list it or write into it:

    private/  0700        the runner's alone: its working directory, its temporary files, the run-only catalog
    kernel/   0750 :nb    the kernel's connection file (0640), which the kernel must read
    checked/  0755        the copy of the staged output that the check reads and the runner publishes:
                          readable by the notebook's user, never writable (files 0444, folders 0555)
    home/     2770 :nb    the notebook's home (HOME) and its temporary files (home/tmp)

(:nb: the notebook's group, which the runner belongs to.) The runner's environment points every library
default that looks in a home or a working folder at the image's own read-only files or at nothing: its
HOME is the image's (root's, empty unless you mount your ~/.aws there), its working directory is private/,
and Jupyter, the AWS SDKs and PyIceberg are told where to look.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner.config import STAGING_FOLDER
from runner.processes import SYSTEM_PATH, NotebookUser

log = logging.getLogger("runner")

RUNNER_ACCOUNT = "runner"  # the image's runner user (Dockerfile), whose home is the image's own
NOTHING = "/opt/notebook-runner/no-user-configuration"  # a path that never exists: no configuration there
NOTEBOOK_ENV = "/opt/venv"  # the notebook's environment when VIRTUAL_ENV (the Dockerfile's) is not set


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def kernel(self) -> Path:
        return self.root / "kernel"

    @property
    def checked(self) -> Path:
        return self.root / "checked"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def notebook_tmp(self) -> Path:
        return self.home / "tmp"

    @classmethod
    def create(cls, user: NotebookUser) -> Workspace:
        """The run's folders, made now with their owners and modes."""
        root = Path(tempfile.mkdtemp(prefix="notebook-run.", dir=os.environ.get("TMPDIR") or "/tmp"))  # noqa: S108
        work = cls(root)
        root.chmod(0o711)
        for folder, mode, shared in (
            (work.private, 0o700, False), (work.kernel, 0o750, True), (work.checked, 0o755, False),
            (work.home, 0o2770, True), (work.notebook_tmp, 0o2770, True),
        ):  # fmt: skip
            folder.mkdir()
            if shared:
                os.chown(folder, -1, user.gid)
            folder.chmod(mode)
        return work

    def remove(self, user: NotebookUser) -> None:
        """The run's folders gone: what the notebook made in its home removed as its user, the sealed copy
        made writable to the runner again, the rest the runner's."""
        try:
            user.remove(self.home, [path.name for path in self.home.iterdir()])
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("could not remove the notebook's home %s (%s)", self.home, exc)
        for folder, dirs, _ in os.walk(self.checked):
            for name in [".", *dirs]:
                Path(folder, name).chmod(0o755)
        shutil.rmtree(self.root, ignore_errors=True)


def runner_home() -> str:
    """The image's home of the runner user: root's and empty (a missing account: nothing)."""
    try:
        return pwd.getpwnam(RUNNER_ACCOUNT).pw_dir
    except KeyError:
        return NOTHING


def confine_runner(work: Workspace) -> None:
    """This process's working directory and environment: no configuration from where the notebook writes.

    - HOME: the image's (its ~/.aws, ~/.config/fsspec, ~/.pyiceberg.yaml, ~/.netrc are the image's or yours,
      mounted read-only); AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE under it unless you set them.
    - Jupyter: no user configuration or data folder (nbconvert's templates come from the runner's own
      environment, and nbconvert also looks in the working directory: private/); connection files in kernel/.
    - PyIceberg: its configuration file only from the image (PYICEBERG_HOME; it also reads ~ and the working
      directory). TMPDIR: private/.
    """
    os.chdir(work.private)
    os.environ["PATH"] = SYSTEM_PATH  # the notebook's environment (/opt/venv/bin) is never searched
    home = runner_home()
    os.environ["HOME"] = home
    os.environ.setdefault("AWS_CONFIG_FILE", f"{home}/.aws/config")
    os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", f"{home}/.aws/credentials")
    os.environ["JUPYTER_CONFIG_DIR"] = os.environ["JUPYTER_DATA_DIR"] = NOTHING
    os.environ["JUPYTER_RUNTIME_DIR"] = str(work.kernel)
    for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_PLATFORM_DIRS", "XDG_CONFIG_HOME",
                 "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):  # fmt: skip
        os.environ.pop(name, None)
    os.environ["PYICEBERG_HOME"] = NOTHING
    os.environ["TMPDIR"] = str(work.private)
    tempfile.tempdir = None  # recomputed from TMPDIR


def notebook_environment(env: dict[str, str], work: Workspace) -> dict[str, str]:
    """The notebook's processes' environment: a home and temporary folder of their own, and its own
    environment's programs first on its PATH (the image's PATH holds none of them)."""
    venv = env.get("VIRTUAL_ENV") or NOTEBOOK_ENV
    return env | {
        "HOME": str(work.home), "TMPDIR": str(work.notebook_tmp), "USER": "notebook", "LOGNAME": "notebook",
        "PATH": f"{venv}/bin:{env.get('PATH') or SYSTEM_PATH}",
    }  # fmt: skip


def notebook_may_write(path: Path, user: NotebookUser) -> str:
    """Why the notebook's user may change path (its owner; group- or world-writable), '' if it may not."""
    st = path.lstat()
    if st.st_uid == user.uid:
        return f"owned by the notebook's user ({user.uid})"
    if st.st_mode & 0o002 or (st.st_gid == user.gid and st.st_mode & 0o020):
        who = "everyone" if st.st_mode & 0o002 else "the notebook's group"
        return f"writable by {who} (mode {st.st_mode & 0o7777:o})"
    return ""


def notebook_writable(root: Path, user: NotebookUser) -> tuple[Path, str] | None:
    """The first folder or file the notebook's user could change, in root's tree (the runs' staging folders
    aside: the notebook writes there) or among root's parents (a folder it may rename: no sticky bit)."""
    for parent in [*reversed(root.absolute().parents)]:
        why = notebook_may_write(parent, user) if parent.exists() else ""
        if why and not parent.stat().st_mode & 0o1000:
            return parent, why
    if not root.exists():
        return None
    for here, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != STAGING_FOLDER]  # a run's own staging folder is the notebook's
        for name in [*names, *dirs]:
            path = Path(here, name)
            why = notebook_may_write(path, user)
            if why:
                return path, why
    why = notebook_may_write(root, user)
    return (root, why) if why else None


def refuse_if_the_notebook_may_write(name: str, root: Path, user: NotebookUser) -> None:
    """A local OUTPUT_URI or REPORT_URI the notebook's user could change is refused before anything runs: it
    could change the published table, or the record of a run, after the check."""
    from runner.config import fail

    found = notebook_writable(root, user)
    if found is not None:
        path, why = found
        raise fail(
            f"{name} {root} is not the runner's alone: {path} is {why}, so the notebook could change what "
            f"is published there; make it the runner's (chown -R {os.getuid()} {root} && chmod -R go-w "
            f"{root}; make run does), or run with RUNNER_USER set to its owner"
        )
