"""What the notebook staged, and the one copy of it the check reads and the runner publishes.

Once the notebook's user has no process left, the runner copies the staged partition's data files into a
folder of its own (the workspace's checked/date=D/), which the notebook's user may read and never write:
locally from the very bytes it hashes, on S3 each object's current version (its VersionId recorded). The
check runs on that copy, and the runner publishes that copy: whatever is written to staging afterwards (a
process that somehow survived, or anyone holding the notebook's credentials, valid up to an hour) is never
what is checked or published.

Data files are the ones a dataset reader sees: pyarrow datasets (and Spark, Hive, Athena) skip names
starting with '_' or '.', so those are never copied; they stay in staging and the report lists them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner import exits, storage
from runner.errors import RunFailed
from runner.files import create_new, inside
from runner.locations import Location, aws_client, aws_problem, delete_keys, list_objects
from runner.processes import NotebookUser

log = logging.getLogger("runner")

HIDDEN = ("_", ".")


def is_data(relative: str) -> bool:
    """Whether a file under the partition is data a dataset reader sees: no part of its path is hidden, and
    none is empty (an S3 key with '//' would otherwise name a path outside the run's folder when copied)."""
    return not any(part.startswith(HIDDEN) or not part for part in relative.split("/"))


@dataclass(frozen=True)
class Pinned:
    name: str  # relative to the partition, '/'-separated
    size: int
    digest: str  # sha256:<hex> of the bytes copied
    version: str | None = None  # on S3: the object version copied (where the bucket keeps versions)


@dataclass
class Inventory:
    """The staged partition as it was copied: the check read these files and the runner publishes them."""

    staged: Location
    copy: Path  # checked/date=D: the copy's partition folder
    files: list[Pinned] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # hidden names: not data, never published

    def paths(self) -> list[Path]:
        return [self.copy / f.name for f in self.files]


def could_not_copy(staged: Location, exc: BaseException) -> RunFailed:
    return RunFailed(
        exits.PUBLISH,
        f"could not copy the staged output of {staged}/ for its check ({aws_problem(exc)}): check the run "
        "role's s3:GetObject on the staging location and the task's free storage; nothing was checked",
        "publish",
    )


def copy_staged(staged: Location, staging: Location, dest: Path) -> Inventory:
    """The staged partition's data files copied into dest (a new folder), each with its size and the SHA-256
    of the bytes copied; hidden names, and locally anything that is not a regular file, set apart. The copy
    ends read-only (files 0444, folders 0555). Nothing is followed out of staging."""
    from botocore.exceptions import BotoCoreError, ClientError

    inventory = Inventory(staged, dest)
    if not staged.is_s3 and not inside(staged.path, staging.path):
        raise RunFailed(
            exits.CHECK,
            f"{staged} is a link out of the run's staging location: write the output itself under "
            "output_uri/date=YYYY-MM-DD/, not a link to it",
            "check",
        )
    try:
        if not staged.is_s3 and staged.path.is_dir():
            dest.mkdir(parents=True)  # the partition exists: so does its copy, even empty
        copy_files(inventory, storage.at(staged))
    except (BotoCoreError, ClientError, OSError) as exc:
        raise could_not_copy(staged, exc) from exc
    finally:
        if dest.exists():
            seal(dest)
    if inventory.left_out:
        log.warning("not data, so not published (kept in staging): %s", ", ".join(inventory.left_out[:20]))
    log.info("copied the staged output for its check: %d file(s), %d bytes", len(inventory.files),
             sum(f.size for f in inventory.files))  # fmt: skip
    return inventory


def copy_files(inventory: Inventory, files: storage.Storage) -> None:
    """Each data file of the partition copied and hashed; the rest named in left_out."""
    for entry in files.files():
        inventory.copy.mkdir(parents=True, exist_ok=True)  # the partition exists: so does its copy
        if not entry.name or entry.name.endswith("/"):
            continue  # the empty "folder" objects some S3 writers leave
        if not (is_data(entry.name) and entry.regular):
            inventory.left_out.append(entry.name)
            continue
        target = inventory.copy / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with files.open(entry) as (blocks, version):
                digest = copy_hashed(blocks, target)
        except PermissionError as exc:
            raise RunFailed(
                exits.CHECK,
                f"{entry.name} in staging cannot be read by the runner ({exc.strerror}): leave the output "
                "readable (write it with the default permissions)",
                "check",
            ) from exc
        inventory.files.append(Pinned(entry.name, target.stat().st_size, digest, version))


def copy_hashed(blocks: Iterable[bytes], target: Path) -> str:
    """The blocks written to target (a new file, never through a link), and their SHA-256: what is copied
    is exactly what was hashed, read once."""
    digest = hashlib.sha256()
    with create_new(target) as sink:
        for block in blocks:
            digest.update(block)
            sink.write(block)
    return f"sha256:{digest.hexdigest()}"


def seal(folder: Path) -> None:
    """The copy read-only: files 0444, folders 0555 (the runner owns them; the notebook's user reads)."""
    for root, dirs, names in os.walk(folder, topdown=False):
        for name in names:
            Path(root, name).chmod(0o444)
        for name in dirs:
            Path(root, name).chmod(0o555)
    folder.chmod(0o555)


def remove_published_from_staging(inventory: Inventory, staging: Location, user: NotebookUser) -> None:
    """The published files leave staging, with the folders (and S3's folder markers) they leave empty;
    what was not published stays there, as the report says. Locally the files are the notebook's: its user
    removes them (the runner never deletes through a folder the notebook could have linked elsewhere)."""
    try:
        if staging.is_s3:
            s3 = aws_client()
            markers = [
                o["Key"] for o in list_objects(s3, staging.bucket, staging.prefix()) if o["Key"].endswith("/")
            ]
            published = [inventory.staged.prefix() + f.name for f in inventory.files]
            delete_keys(s3, staging.bucket, published + ([] if inventory.left_out else markers))
        else:
            partition = inventory.staged.path.relative_to(staging.path)
            user.remove(staging.path, [str(partition / f.name) for f in inventory.files], prune=True)
            if staging.path.is_dir() and not any(staging.path.iterdir()):
                staging.path.rmdir()
    except Exception as exc:  # noqa: BLE001 -- the data is published; leftovers only cost storage
        log.warning("could not remove the published files from staging %s (%s)", staging, aws_problem(exc))
