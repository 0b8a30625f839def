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

import os
import pwd
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner.processes import NotebookUser

RUNNER_ACCOUNT = "runner"  # the image's runner user (Dockerfile), whose home is the image's own
NOTHING = "/opt/notebook-runner/no-user-configuration"  # a path that never exists: no configuration there
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # the image's own programs (run_notebook.sh's PATH too)


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
    """The notebook's processes' environment: a home and temporary folder of their own."""
    return env | {
        "HOME": str(work.home), "TMPDIR": str(work.notebook_tmp), "USER": "notebook", "LOGNAME": "notebook",
    }  # fmt: skip
