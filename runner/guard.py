"""The local guard: a local OUTPUT_URI is the runner's to write.

The notebook's user cannot write a folder the runner owns; a local OUTPUT_URI mounted writable for everyone
(or owned by the notebook's uid) is guarded too: the runner takes a fingerprint of OUTPUT_URI before the
notebook starts and compares it after the check. A run whose notebook or check changed it fails (exit 10),
what they added is removed and what they changed is named.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from runner import exits
from runner.errors import RunFailed
from runner.locations import Location


@dataclass(frozen=True)
class Fingerprint:
    # relative path: size, mtime, ctime (which no user can set), inode, links
    files: dict[str, tuple[int, ...]]
    folders: frozenset[str]


# The table's own folders: other runs of the table commit and expire there while this one runs, so the guard
# leaves them alone (the runner makes them, so the notebook's user cannot write them; in AWS NotebookRole has
# no right on the output bucket).
TABLE_FOLDERS = ("data", "metadata", "_catalog")


def fingerprint(output: Location, *apart: Location) -> Fingerprint | None:
    """Every file, link and folder under a local OUTPUT_URI, outside the locations set apart (the reports,
    the staging location) and the table's folders; None for S3, where the notebook's role cannot write the
    published keys."""
    if output.is_s3:
        return None
    files: dict[str, tuple[int, ...]] = {}
    folders: set[str] = set()
    skip = {loc.path for loc in apart if not loc.is_s3 and output.contains(loc)}
    skip |= {output.path / name for name in TABLE_FOLDERS}
    for root, dirs, names in os.walk(output.path):
        here = Path(root)
        dirs[:] = [d for d in dirs if here / d not in skip]
        links = [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in links]
        folders.update((here / d).relative_to(output.path).as_posix() for d in dirs)
        for name in names + links:
            path = here / name
            try:
                st = path.lstat()
            except OSError:
                continue
            files[path.relative_to(output.path).as_posix()] = (
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_nlink
            )  # fmt: skip
    return Fingerprint(files, frozenset(folders))


def remove(root: Path, names: list[str]) -> None:
    """Each file, link (never what it points to) or folder named under root, gone, where this process may."""
    for name in names:
        path = root / name
        with suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def undo_writes(
    output: Location,
    before: Fingerprint,
    after: Fingerprint,
    remover: Callable[[Path, list[str]], None] = remove,
) -> RunFailed | None:
    """Undo what the notebook or its check wrote under OUTPUT_URI (outside the table's folders): files and
    folders they added go; what they changed or deleted is named. Returns the failure to report, or None
    when OUTPUT_URI is as it was."""
    added = sorted(set(after.files) - set(before.files))
    touched = sorted(n for n, seen in before.files.items() if after.files.get(n) != seen)
    new_folders = sorted(after.folders - before.folders, key=lambda n: n.count("/"), reverse=True)
    if not added and not touched and not new_folders:
        return None
    remover(output.path, added + new_folders)

    def some(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    what = "; ".join(
        f"{verb} {some(names)}"
        for verb, names in (("added", added or new_folders), ("changed or deleted", touched))
        if names
    )
    undone = "removed what it added" + ("; what it changed or deleted cannot be put back" if touched else "")
    return RunFailed(
        exits.NOTEBOOK,
        f"the notebook (or its check) wrote into OUTPUT_URI {output} itself ({what}); the runner {undone}: "
        "write only to the output_uri parameter, the run's staging location, and the runner publishes "
        "what passes the check",
        "notebook",
    )
