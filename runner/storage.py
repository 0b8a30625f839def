"""One interface for where a run keeps files: a local folder or an S3 prefix (storage.at(location)).

Each step lists, reads, writes and deletes through it, so a step has no branch per kind of storage. A folder
is read as the notebook's user may have left it: nothing is ever followed through a symbolic link, and what
is not a regular file is listed as such (regular=False), never opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.files import open_regular, replace_file
from runner.locations import Location, aws_client, delete_keys, list_objects

log = logging.getLogger("runner")

BLOCK = 1 << 20  # bytes read at a time
CONTENT_TYPES = {  # what S3 serves a stored file as (a browser opens the report's page as a page)
    ".html": "text/html",
    ".json": "application/json",
    ".ipynb": "application/x-ipynb+json",
    ".txt": "text/plain",
}


@dataclass(frozen=True)
class Entry:
    name: str  # relative to the storage's location, '/'-separated
    uri: str  # s3://bucket/key, or the file's absolute path
    size: int
    modified: dt.datetime
    regular: bool = True  # a folder's entry that is a link, a FIFO or a linked folder: False (never opened)


class Storage(Protocol):
    location: Location

    def files(self, *folders: str) -> Iterator[Entry]:
        """Every file below the location (or below each of its folders named), at any depth."""
        ...

    def open(self, entry: Entry) -> contextlib.AbstractContextManager[tuple[Iterable[bytes], str | None]]:
        """The entry's bytes, block by block, and its S3 version id (None for a folder's file)."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """name (relative) holds data: written anew, folders made as needed."""
        ...

    def delete(self, names: list[str]) -> None:
        """Each name (relative) removed; one that is already gone is not an error."""
        ...


class Folder:
    def __init__(self, location: Location) -> None:
        self.location = location
        self.root = location.path

    def files(self, *folders: str) -> Iterator[Entry]:
        for folder in folders or ("",):
            top = self.root / folder if folder else self.root
            if folder and top.is_symlink():
                log.warning("%s is a link: nothing under it is read", top)
                continue
            for here, dirs, names in os.walk(top):  # os.walk never descends into a linked folder
                dirs.sort()
                linked = [d for d in dirs if (Path(here) / d).is_symlink()]
                for name in sorted(names + linked):
                    try:
                        yield self.entry(Path(here) / name)
                    except FileNotFoundError:
                        continue  # removed meanwhile (a commit's old metadata file)

    def entry(self, path: Path) -> Entry:
        info = path.lstat()
        return Entry(
            path.relative_to(self.root).as_posix(), str(path), info.st_size,
            dt.datetime.fromtimestamp(info.st_mtime, dt.UTC), stat.S_ISREG(info.st_mode),
        )  # fmt: skip

    @contextlib.contextmanager
    def open(self, entry: Entry) -> Iterator[tuple[Iterable[bytes], str | None]]:
        with os.fdopen(open_regular(Path(entry.uri)), "rb") as source:  # never through a link
            yield iter(lambda: source.read(BLOCK), b""), None

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, data)

    def delete(self, names: list[str]) -> None:
        for name in names:
            (self.root / name).unlink(missing_ok=True)  # a link is removed, never what it points at


class Bucket:
    def __init__(self, location: Location) -> None:
        self.location = location

    @functools.cached_property
    def s3(self) -> Any:
        """The S3 client, made at the first call (one per storage): making one never fails at()."""
        return aws_client()

    def files(self, *folders: str) -> Iterator[Entry]:
        base = self.location.prefix()
        for folder in folders or ("",):
            for obj in list_objects(self.s3, self.location.bucket, base + (f"{folder}/" if folder else "")):
                key = obj["Key"]
                yield Entry(key[len(base) :], f"s3://{self.location.bucket}/{key}", obj["Size"],
                            obj["LastModified"])  # fmt: skip

    @contextlib.contextmanager
    def open(self, entry: Entry) -> Iterator[tuple[Iterable[bytes], str | None]]:
        reply = self.s3.get_object(Bucket=self.location.bucket, Key=self.key(entry.name))
        try:
            yield reply["Body"].iter_chunks(BLOCK), reply.get("VersionId")
        finally:
            reply["Body"].close()

    def put(self, name: str, data: bytes) -> None:
        kind = CONTENT_TYPES.get("." + name.rsplit(".", 1)[-1], "application/octet-stream")
        self.s3.upload_fileobj(io.BytesIO(data), self.location.bucket, self.key(name),
                               ExtraArgs={"ContentType": kind})  # fmt: skip

    def delete(self, names: list[str]) -> None:
        delete_keys(self.s3, self.location.bucket, [self.key(name) for name in names])

    def key(self, name: str) -> str:
        return self.location.prefix() + name


def at(location: Location) -> Storage:
    """The storage of a location: its S3 prefix, or its local folder."""
    return Bucket(location) if location.is_s3 else Folder(location)
