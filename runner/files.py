"""Reading and writing files where the notebook's user may have put a link or a FIFO."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_regular(path: Path) -> int:
    """A file descriptor for a regular file at path, never through a symlink and never blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def create_new(path: Path) -> BinaryIO:
    """A new file at path, opened for writing: never one that exists, never through a link."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "wb")


def replace_file(path: Path, data: bytes) -> None:
    """path holds data: written anew (a file there is replaced, a link there is refused, never followed)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644), "wb") as f:
        f.write(data)


def inside(path: Path, root: Path) -> bool:
    """Whether path lies in root with no symlink on the way below root (path itself included)."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    here = root
    for part in relative.parts:
        here = here / part
        if here.is_symlink():
            return False
    return True
