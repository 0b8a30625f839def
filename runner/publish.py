"""Publish exactly what was checked (exit 30 when it cannot be).

Before the check runs, the staged partition's data files are pinned: their names, sizes and content (a
SHA-256 locally, the ETag on S3). Data files are the ones the check can read: pyarrow datasets (and Spark,
Hive, Athena) skip names starting with '_' or '.', so those are never published; they stay in staging and
the report lists them. Publishing copies exactly the pinned files and refuses any whose content changed
since (CopySourceIfMatch on S3), then replaces the day's partition.

Locally the notebook runs as the same user as the runner, so nothing stops it from writing into OUTPUT_URI
itself; the runner takes a fingerprint of OUTPUT_URI before the notebook starts and compares it after the
check: a run whose notebook or check changed it fails, and what they changed is removed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from runner import exits, redaction
from runner.errors import RunFailed
from runner.locations import Location, aws_client, aws_problem, delete_keys, list_objects

log = logging.getLogger("runner")

HIDDEN = ("_", ".")
COPY_OBJECT_LIMIT = 5 * 1024**3  # CopyObject copies up to 5 GiB in one call


def is_data(relative: str) -> bool:
    """Whether a file under the partition is data a dataset reader sees: no part of its path is hidden."""
    return not any(part.startswith(HIDDEN) for part in relative.split("/"))


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


# Reads the Parquet footers of the files named on stdin (JSON), under the root in argv; prints the rows.
COUNT_ROWS = """
import json, sys
import pyarrow.fs as pafs, pyarrow.parquet as pq
root, names = sys.argv[1], json.load(sys.stdin)
fs, base = pafs.FileSystem.from_uri(root) if root.startswith("s3://") else (pafs.LocalFileSystem(), root)
print(sum(pq.ParquetFile(fs.open_input_file(f"{base}/{n}")).metadata.num_rows for n in names))
"""


def count_rows(inventory: Inventory, env: dict[str, str], python: str) -> int | None:
    """Rows in the pinned Parquet files, from their footers; None if they are not all Parquet or cannot be
    read. Counted by the notebook's Python with the notebook's identity: the runner never parses what the
    notebook wrote (nor imports the notebook's pyarrow)."""
    if not inventory.files or not all(f.name.endswith(".parquet") for f in inventory.files):
        return None
    names = json.dumps([f.name for f in inventory.files])
    try:
        done = subprocess.run(
            [python, "-I", "-c", COUNT_ROWS, inventory.staged.uri], input=names, env=env, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip
        lines = done.stdout.strip().splitlines()
        if done.returncode == 0 and lines and lines[-1].isdigit():
            return int(lines[-1])
        said = redaction.text(done.stderr).strip().splitlines() or ["no output"]  # redacted before the cut
        log.info("rows not counted (%s)", said[-1][:300])
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("rows not counted (%s)", exc)
    return None


def changed(name: str) -> RunFailed:
    return RunFailed(
        exits.PUBLISH,
        f"{name} changed in staging after it was checked: nothing was published; a process of the notebook "
        "or the check rewrote it, rerun the day",
        "publish",
    )


def publish(inventory: Inventory, target: Location, run_id: str) -> None:
    """Replace the target partition with exactly the pinned files (RunFailed exit 30 otherwise)."""
    if not inventory.files:
        raise nothing_written(inventory.staged)
    if target.is_s3:
        publish_s3(inventory, target)
    else:
        publish_local(inventory, target.path, run_id)
    log.info("published %d file(s) of %s/ to %s/", len(inventory.files), inventory.staged, target)


def publish_local(inventory: Inventory, target: Path, run_id: str) -> None:
    """Copy the pinned files, re-hashed as they are copied, into a new private folder beside the partition,
    then swap it in with two renames on one file system; restore the old partition on failure."""
    previous = target.with_name(f".{target.name}.replaced-{run_id}")
    incoming: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        incoming = Path(tempfile.mkdtemp(prefix=f".{target.name}.incoming-", dir=target.parent))
        for f in inventory.files:
            dest = incoming / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if sha256(inventory.staged.path / f.name, copy_to=dest) != f.digest:
                raise changed(f.name)
        found = sorted(p.relative_to(incoming).as_posix() for p in incoming.rglob("*") if not p.is_dir())
        if found != sorted(f.name for f in inventory.files):
            raise changed(", ".join(sorted(set(found) ^ {f.name for f in inventory.files})))
        incoming.chmod(0o755)
        if target.exists() or target.is_symlink():
            target.rename(previous)
        try:
            incoming.rename(target)
            incoming = None
        except OSError:
            if previous.exists():
                previous.rename(target)
            raise
    except OSError as exc:
        raise RunFailed(
            exits.PUBLISH,
            f"could not move the checked output into {target} ({exc.strerror}: {exc.filename}): make "
            "OUTPUT_URI writable by the container user; the previous partition is unchanged",
            "publish",
        ) from exc
    finally:
        if incoming is not None:
            shutil.rmtree(incoming, ignore_errors=True)
    remove(previous)


def publish_s3(inventory: Inventory, target: Location) -> None:
    """Copy each pinned object (its pinned version, if still its pinned ETag), then delete the partition's
    other keys. A failure after the first copy says the partition may be mixed: S3 has no multi-key commit."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = aws_client()
    staged = inventory.staged
    written: set[str] = set()
    try:
        for f in inventory.files:  # all still as checked, before anything is copied
            head = s3.head_object(Bucket=staged.bucket, Key=staged.prefix() + f.name, **version(f))
            if (head["ETag"], head["ContentLength"]) != (f.digest, f.size):
                raise changed(f.name)
        old = {o["Key"] for o in list_objects(s3, target.bucket, target.prefix())}
        for f in inventory.files:
            dest = target.prefix() + f.name
            copy_pinned(s3, staged.bucket, staged.prefix() + f.name, target.bucket, dest, f)
            written.add(dest)
        delete_keys(s3, target.bucket, sorted(old - written))
    except (BotoCoreError, ClientError, OSError) as exc:
        state = (
            f"{len(written)} of its {len(inventory.files)} new files were copied in, so {target}/ may now "
            "mix old and new files: rerun the day"
            if written
            else "the previous partition is unchanged"
        )
        raise RunFailed(
            exits.PUBLISH,
            f"could not publish to {target}/ ({aws_problem(exc)}): check the role's "
            f"s3:PutObject/DeleteObject on the output prefix; {state}",
            "publish",
        ) from exc


def version(pinned: Pinned) -> dict[str, str]:
    return {"VersionId": pinned.version} if pinned.version else {}


def copy_pinned(s3: Any, bucket: str, key: str, dest_bucket: str, dest: str, pinned: Pinned) -> None:
    """Copy one object if, and only if, it still has the pinned ETag (S3 checks CopySourceIfMatch). A copy
    of a single-part object has its source's ETag: the runner checks that too (some emulators ignore the
    condition)."""
    from botocore.exceptions import ClientError

    source = {"Bucket": bucket, "Key": key, **version(pinned)}
    try:
        if pinned.size <= COPY_OBJECT_LIMIT:
            etag = s3.copy_object(
                CopySource=source, Bucket=dest_bucket, Key=dest, CopySourceIfMatch=pinned.digest
            )["CopyObjectResult"]["ETag"]
        else:  # a multipart copy, each part under the same condition
            s3.copy(source, dest_bucket, dest, ExtraArgs={"CopySourceIfMatch": pinned.digest})
            etag = pinned.digest
    except ClientError as exc:
        if aws_problem(exc).startswith(("PreconditionFailed", "412")):
            raise changed(pinned.name) from exc
        raise
    if "-" not in pinned.digest and etag != pinned.digest:
        s3.delete_object(Bucket=dest_bucket, Key=dest)
        raise changed(pinned.name)


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


def fingerprint(output: Location, *apart: Location) -> Fingerprint | None:
    """Every file, link and folder under a local OUTPUT_URI, outside the locations set apart (the reports,
    the staging location); None for S3, where the notebook's role cannot write the published keys."""
    if output.is_s3:
        return None
    files: dict[str, tuple[int, ...]] = {}
    folders: set[str] = set()
    skip = {loc.path for loc in apart if not loc.is_s3 and output.contains(loc)}
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
    """Undo what the notebook or its check wrote under OUTPUT_URI: files they added go, and so does every
    published partition they changed or deleted from (consumers must never read unchecked data). Returns
    the failure to report, or None when OUTPUT_URI is as it was."""
    added = sorted(set(after.files) - set(before.files))
    touched = sorted(n for n, seen in before.files.items() if after.files.get(n) != seen)
    new_folders = sorted(after.folders - before.folders, key=lambda n: n.count("/"), reverse=True)
    if not added and not touched and not new_folders:
        return None
    damaged = sorted({n.split("/", 1)[0] for n in touched})
    for top in damaged:
        remove(output.path / top)
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
    undone = "removed what it added" + (
        f" and the partition(s) it damaged, {some(damaged)}" if damaged else ""
    )
    return RunFailed(
        exits.NOTEBOOK,
        f"the notebook (or its check) wrote into OUTPUT_URI {output} itself ({what}); the runner {undone}: "
        "write only to the output_uri parameter, the run's staging location, and the runner publishes "
        "what passes the check",
        "notebook",
    )
