"""Publish exactly what was checked (exit 30 when it cannot be).

Before the check runs, the staged partition's data files are pinned: their names, sizes and content (a
SHA-256 locally, the ETag on S3). Data files are the ones the check can read: pyarrow datasets (and Spark,
Hive, Athena) skip names starting with '_' or '.', so those are never published; they stay in staging and
the report lists them. Publishing copies exactly the pinned files into the run's own folder, refusing any
whose content changed since (IfMatch on S3), and commits their rows to the output table (table.py).

Locally the notebook runs as the same user as the runner, so nothing stops it from writing into OUTPUT_URI
itself; the runner takes a fingerprint of OUTPUT_URI before the notebook starts and compares it after the
check: a run whose notebook or check changed it fails, and what they added is removed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from runner import exits, table
from runner.config import Config
from runner.errors import RunFailed
from runner.locations import Location, aws_client, aws_problem, delete_keys, list_objects

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("runner")

HIDDEN = ("_", ".")


def is_data(relative: str) -> bool:
    """Whether a file under the partition is data a dataset reader sees: no part of its path is hidden, and
    none is empty (an S3 key with '//' would otherwise name a path outside the run's folder when fetched)."""
    return not any(part.startswith(HIDDEN) or not part for part in relative.split("/"))


@dataclass(frozen=True)
class Pinned:
    name: str  # relative to the partition, '/'-separated
    size: int
    digest: str  # sha256:<hex> locally, the ETag on S3
    version: str | None = None  # the S3 object version, where the bucket keeps versions


@dataclass
class Inventory:
    """The staged partition as the check saw it."""

    staged: Location
    files: list[Pinned] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # hidden names: not data, never published


def open_regular(path: Path) -> int:
    """A file descriptor for a regular file at path, never through a symlink and never blocking on a FIFO
    (the notebook, the same user as the runner, may have put either there)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def create_new(path: Path) -> BinaryIO:
    """A new file at path, opened for writing: never one that exists, never through a link."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "wb")


def sha256(path: Path, copy_to: Path | None = None) -> str:
    """The file's SHA-256, read once through open_regular; with copy_to, the same bytes copied there (a new
    file, never through a symlink), so what is copied is exactly what was hashed."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as f:
        sink = create_new(copy_to) if copy_to is not None else None
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                if sink:
                    sink.write(block)
        finally:
            if sink:
                sink.close()
    return f"sha256:{digest.hexdigest()}"


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


def nothing_written(staged: Location) -> RunFailed:
    return RunFailed(
        exits.PUBLISH,
        f"the notebook wrote nothing under {staged}/: write the output partitioned by date "
        "(output_uri/date=YYYY-MM-DD/)",
        "publish",
    )


def pin(staged: Location, staging: Location) -> Inventory:
    """The staged partition's files, each with its size and content digest (and S3 version); hidden names,
    and locally anything that is not a regular file, set apart. Nothing is followed out of staging."""
    inventory = Inventory(staged)
    if staged.is_s3:
        s3 = aws_client()
        for obj in list_objects(s3, staged.bucket, staged.prefix()):
            name = obj["Key"][len(staged.prefix()) :]
            if not name or name.endswith("/"):
                continue  # the empty "folder" objects some writers leave
            if not is_data(name):
                inventory.left_out.append(name)
                continue
            head = s3.head_object(Bucket=staged.bucket, Key=obj["Key"])
            inventory.files.append(Pinned(name, head["ContentLength"], head["ETag"], head.get("VersionId")))
    elif staged.path.is_dir() or staged.path.is_symlink():
        if not inside(staged.path, staging.path):
            raise RunFailed(
                exits.CHECK,
                f"{staged} is a link out of the run's staging location: write the output itself under "
                "output_uri/date=YYYY-MM-DD/, not a link to it",
                "check",
            )
        for root, dirs, names in os.walk(staged.path):  # never into a linked folder
            here = Path(root)
            for name in sorted(names + [d for d in dirs if (here / d).is_symlink()]):
                path = here / name
                relative = path.relative_to(staged.path).as_posix()
                if is_data(relative) and not path.is_symlink() and path.is_file():
                    inventory.files.append(Pinned(relative, path.lstat().st_size, sha256(path)))
                else:
                    inventory.left_out.append(relative)
    if inventory.left_out:
        log.warning("not data, so not published (kept in staging): %s", ", ".join(inventory.left_out[:20]))
    return inventory


def changed(name: str) -> RunFailed:
    return RunFailed(
        exits.PUBLISH,
        f"{name} changed in staging after it was checked: nothing was published; a process of the notebook "
        "or the check rewrote it, rerun the day",
        "publish",
    )


def version(pinned: Pinned) -> dict[str, str]:
    return {"VersionId": pinned.version} if pinned.version else {}


def publish(inventory: Inventory, config: Config, lineage: table.Lineage, work: Path) -> table.Committed:
    """Commit exactly the pinned files' rows as the day's rows of the output table (RunFailed otherwise)."""
    assert config.table is not None
    folder = Path(tempfile.mkdtemp(prefix="publish.", dir=work))
    try:
        data = read_checked(fetch(inventory, folder), folder)
        committed = table.commit(config.table, table.with_date(data, config.run_date), lineage)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log.info(
        "published %d file(s) of %s/ to %s: snapshot %d, %d rows", len(inventory.files), inventory.staged,
        committed.table, committed.snapshot_id, committed.rows,
    )  # fmt: skip
    return committed


def fetch(inventory: Inventory, dest: Path) -> list[Path]:
    """Each pinned file copied into dest, the run's own folder, and verified as it is copied: exactly the
    bytes the check read (its SHA-256 locally; on S3 its pinned version, if it still has its ETag)."""
    from botocore.exceptions import BotoCoreError, ClientError

    staged = inventory.staged
    if not inventory.files:
        raise nothing_written(staged)
    s3 = aws_client() if staged.is_s3 else None
    paths = []
    try:
        for f in inventory.files:
            target = dest / f.name
            if not is_data(f.name) or not target.resolve().is_relative_to(dest.resolve()):
                raise changed(f.name)  # never pinned so: a name that leads out of the run's folder
            target.parent.mkdir(parents=True, exist_ok=True)
            if s3 is None:
                if sha256(staged.path / f.name, copy_to=target) != f.digest:
                    raise changed(f.name)
            else:
                try:
                    reply = s3.get_object(
                        Bucket=staged.bucket, Key=staged.prefix() + f.name, IfMatch=f.digest, **version(f)
                    )
                except ClientError as exc:
                    if aws_problem(exc).startswith(("PreconditionFailed", "412")):
                        raise changed(f.name) from exc
                    raise
                with create_new(target) as sink:
                    for block in reply["Body"].iter_chunks(1 << 20):
                        sink.write(block)
                if reply.get("ETag") != f.digest or target.stat().st_size != f.size:
                    raise changed(f.name)
            paths.append(target)
    except (BotoCoreError, ClientError, OSError) as exc:
        raise RunFailed(
            exits.PUBLISH,
            f"could not read the checked output back from {staged}/ ({aws_problem(exc)}): check the run "
            "role's s3:GetObject on the staging location; the table is unchanged",
            "publish",
        ) from exc
    return paths


# Reads the Parquet files named in argv[2:] with the runner's own pyarrow and writes their rows, one table,
# as an Arrow IPC file at argv[1]; says what is wrong on its last line otherwise (exit 3).
READ_PARQUET = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
out, paths = sys.argv[1], sys.argv[2:]
tables = []
for path in paths:
    try:
        tables.append(pq.read_table(path))
    except Exception as exc:
        sys.exit(f"NOT PARQUET {path}: " + " ".join(str(exc).split())[:200])
try:
    table = pa.concat_tables(tables, promote_options="none")
except Exception as exc:
    sys.exit("SCHEMAS " + " ".join(str(exc).split())[:300])
with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
    writer.write_table(table)
"""


def read_checked(paths: list[Path], folder: Path) -> pa.Table:
    """The rows of the checked files; RunFailed exit 20 if they are not Parquet or do not share one schema
    (the table takes one). Parquet is parsed in a process of its own, the runner's Python and pinned pyarrow
    with no credential in its environment (the runner's own memory is closed to it, processes.harden): a
    file crafted to exploit the parser reaches nothing of the trusted step's powers. The runner then reads
    the rows as Arrow IPC, validated in full."""
    import pyarrow as pa

    rows = folder / ".checked.arrow"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", READ_PARQUET, str(rows), *map(str, paths)], cwd=folder, env=env,
            capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunFailed(exits.PUBLISH, f"could not read the checked files ({exc}): the table is unchanged",
                        "publish") from exc  # fmt: skip
    said = (done.stderr.strip().splitlines() or ["no output"])[-1].replace(f"{folder}/", "")
    if done.returncode != 0:
        if said.startswith("NOT PARQUET "):
            raise RunFailed(
                exits.CHECK,
                f"{said.removeprefix('NOT PARQUET ')[:300]}: the table takes Parquet files only; write the "
                "output with pyarrow.parquet.write_table or DataFrame.to_parquet under "
                "output_uri/date=YYYY-MM-DD/",
                "check",
            )
        if said.startswith("SCHEMAS "):
            raise RunFailed(
                exits.CHECK,
                f"the output's files do not share one schema ({said.removeprefix('SCHEMAS ')}): write every "
                "file of the day with the same columns and types",
                "check",
            )
        raise RunFailed(exits.PUBLISH, f"could not read the checked files ({said[:300]}): the table is "
                        "unchanged", "publish")  # fmt: skip
    try:
        with pa.OSFile(str(rows)) as source:
            table = pa.ipc.open_file(source).read_all()
        table.validate(full=True)
    except (pa.ArrowException, OSError) as exc:
        raise RunFailed(exits.PUBLISH, f"could not read the checked rows back ({exc}): the table is "
                        "unchanged", "publish") from exc  # fmt: skip
    finally:
        rows.unlink(missing_ok=True)
    return table


def remove_published_from_staging(inventory: Inventory, staging: Location) -> None:
    """The published files leave staging, with the folders (and S3's folder markers) they leave empty;
    what was not published stays there, as the report says."""
    try:
        if staging.is_s3:
            s3 = aws_client()
            markers = [
                o["Key"] for o in list_objects(s3, staging.bucket, staging.prefix()) if o["Key"].endswith("/")
            ]
            published = [inventory.staged.prefix() + f.name for f in inventory.files]
            delete_keys(s3, staging.bucket, published + ([] if inventory.left_out else markers))
        else:
            for f in inventory.files:
                path = inventory.staged.path / f.name
                if inside(path, staging.path):
                    path.unlink(missing_ok=True)
            folders = [p for p in staging.path.rglob("*") if p.is_dir() and not p.is_symlink()] + [
                staging.path
            ]
            for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
                if not any(folder.iterdir()):
                    folder.rmdir()
    except Exception as exc:  # noqa: BLE001 -- the data is published; leftovers only cost storage
        log.warning("could not remove the published files from staging %s (%s)", staging, aws_problem(exc))


# --- the local guard: OUTPUT_URI is the runner's to write -------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    # relative path: size, mtime, ctime (which no user can set), inode, links
    files: dict[str, tuple[int, ...]]
    folders: frozenset[str]


# The table's own folders: other runs of the table commit and expire there while this one runs, so the guard
# leaves them alone (locally the notebook runs as your user and could change them; in AWS it cannot).
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


def remove(path: Path) -> None:
    """A file, a link (never what it points to) or a folder, gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def undo_writes(output: Location, before: Fingerprint, after: Fingerprint) -> RunFailed | None:
    """Undo what the notebook or its check wrote under OUTPUT_URI (outside the table's folders): files and
    folders they added go; what they changed or deleted is named. Returns the failure to report, or None
    when OUTPUT_URI is as it was."""
    added = sorted(set(after.files) - set(before.files))
    touched = sorted(n for n, seen in before.files.items() if after.files.get(n) != seen)
    new_folders = sorted(after.folders - before.folders, key=lambda n: n.count("/"), reverse=True)
    if not added and not touched and not new_folders:
        return None
    for name in added:
        remove(output.path / name)
    for name in new_folders:
        remove(output.path / name)

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
