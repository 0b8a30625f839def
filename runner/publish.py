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

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import exits
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


@dataclass
class Inventory:
    """The staged partition as the check saw it."""

    staged: Location
    files: list[Pinned] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # hidden names: not data, never published

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def nothing_written(staged: Location) -> RunFailed:
    return RunFailed(
        exits.PUBLISH,
        f"the notebook wrote nothing under {staged}/: write the output partitioned by date "
        "(output_uri/date=YYYY-MM-DD/)",
        "publish",
    )


def pin(staged: Location) -> Inventory:
    """The staged partition's files, each with its size and content digest; hidden names set apart."""
    inventory = Inventory(staged)
    if staged.is_s3:
        s3 = aws_client()
        for obj in list_objects(s3, staged.bucket, staged.prefix()):
            name = obj["Key"][len(staged.prefix()) :]
            if not name or name.endswith("/"):
                continue  # the empty "folder" objects some writers leave
            if is_data(name):
                inventory.files.append(Pinned(name, obj["Size"], obj["ETag"]))
            else:
                inventory.left_out.append(name)
    elif staged.path.is_dir():
        for path in sorted(p for p in staged.path.rglob("*") if not p.is_dir()):
            name = path.relative_to(staged.path).as_posix()
            if is_data(name) and path.is_file() and not path.is_symlink():
                inventory.files.append(Pinned(name, path.stat().st_size, sha256(path)))
            else:
                inventory.left_out.append(name)
    if inventory.left_out:
        log.warning("not data, so not published (kept in staging): %s", ", ".join(inventory.left_out[:20]))
    return inventory


def count_rows(inventory: Inventory) -> int | None:
    """Rows in the pinned Parquet files, read from their footers; None if they are not all Parquet."""
    if not inventory.files or not all(f.name.endswith(".parquet") for f in inventory.files):
        return None
    try:
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq
    except ImportError:
        return None
    staged = inventory.staged
    try:
        if staged.is_s3:
            fs, root = pafs.FileSystem.from_uri(staged.uri)
        else:
            fs, root = pafs.LocalFileSystem(), str(staged.path)
        return sum(
            pq.ParquetFile(fs.open_input_file(f"{root}/{f.name}")).metadata.num_rows for f in inventory.files
        )
    except Exception as exc:  # noqa: BLE001 -- the count is informative only
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
    """Copy the pinned files (verified) beside the partition, then swap it in with two renames."""
    incoming = target.with_name(f".{target.name}.incoming-{run_id}")
    previous = target.with_name(f".{target.name}.replaced-{run_id}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for f in inventory.files:
            dest = incoming / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(inventory.staged.path / f.name, dest)
            if dest.stat().st_size != f.size or sha256(dest) != f.digest:
                raise changed(f.name)
        if target.exists():
            target.rename(previous)
        try:
            incoming.rename(target)
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
        shutil.rmtree(incoming, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def publish_s3(inventory: Inventory, target: Location) -> None:
    """Copy each pinned object if its ETag is still the pinned one, then delete the partition's other keys."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = aws_client()
    staged = inventory.staged
    try:
        for f in inventory.files:  # all still as checked, before anything is copied
            head = s3.head_object(Bucket=staged.bucket, Key=staged.prefix() + f.name)
            if (head["ETag"], head["ContentLength"]) != (f.digest, f.size):
                raise changed(f.name)
        old = {o["Key"] for o in list_objects(s3, target.bucket, target.prefix())}
        written = set()
        for f in inventory.files:
            dest = target.prefix() + f.name
            copy_pinned(s3, staged.bucket, staged.prefix() + f.name, target.bucket, dest, f)
            written.add(dest)
        delete_keys(s3, target.bucket, sorted(old - written))
    except (BotoCoreError, ClientError, OSError) as exc:
        raise RunFailed(
            exits.PUBLISH,
            f"could not publish to {target}/ ({aws_problem(exc)}): check the role's "
            "s3:PutObject/DeleteObject "
            "on the output prefix, then rerun the day",
            "publish",
        ) from exc


def copy_pinned(s3: Any, bucket: str, key: str, dest_bucket: str, dest: str, pinned: Pinned) -> None:
    """Copy one object if, and only if, it still has the pinned ETag (S3 checks CopySourceIfMatch). A copy
    of a single-part object has its source's ETag: the runner checks that too (some emulators ignore the
    condition)."""
    from botocore.exceptions import ClientError

    source = {"Bucket": bucket, "Key": key}
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
                (inventory.staged.path / f.name).unlink(missing_ok=True)
            folders = [p for p in staging.path.rglob("*") if p.is_dir()] + [staging.path]
            for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
                if not any(folder.iterdir()):
                    folder.rmdir()
    except Exception as exc:  # noqa: BLE001 -- the data is published; leftovers only cost storage
        log.warning("could not remove the published files from staging %s (%s)", staging, aws_problem(exc))


# --- the local guard: OUTPUT_URI is the runner's to write -------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    files: dict[str, tuple[int, int, int]]  # relative path: size, mtime, inode
    folders: frozenset[str]


def fingerprint(output: Location, *apart: Location) -> Fingerprint | None:
    """Every file and folder under a local OUTPUT_URI, outside the locations set apart (the reports, the
    staging location) and the runner's own hidden work folders; None for S3, where the notebook's role
    cannot write the published keys."""
    if output.is_s3:
        return None
    files: dict[str, tuple[int, int, int]] = {}
    folders: set[str] = set()
    skip = {loc.path for loc in apart if not loc.is_s3 and output.contains(loc)}
    for root, dirs, names in os.walk(output.path):
        here = Path(root)
        dirs[:] = [
            d for d in dirs if here / d not in skip and not (here == output.path and d.startswith("."))
        ]
        folders.update((here / d).relative_to(output.path).as_posix() for d in dirs)
        for name in names:
            path = here / name
            try:
                st = path.lstat()
            except OSError:
                continue
            files[path.relative_to(output.path).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return Fingerprint(files, frozenset(folders))


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def undo_writes(output: Location, before: Fingerprint, after: Fingerprint) -> RunFailed | None:
    """Undo what the notebook or its check wrote under OUTPUT_URI: files they added go, and so does every
    published partition they changed or deleted from (consumers must never read unchecked data). Returns
    the failure to report, or None when OUTPUT_URI is as it was."""
    added = sorted(set(after.files) - set(before.files))
    touched = sorted(n for n, stat in before.files.items() if after.files.get(n) != stat)
    new_folders = sorted(after.folders - before.folders, key=lambda n: n.count("/"), reverse=True)
    if not added and not touched and not new_folders:
        return None
    damaged = sorted({n.split("/", 1)[0] for n in touched})
    for top in damaged:
        remove(output.path / top)
    for name in added:
        (output.path / name).unlink(missing_ok=True)
    for name in new_folders:
        shutil.rmtree(output.path / name, ignore_errors=True)

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
