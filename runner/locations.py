"""Where a run reads and writes: s3://bucket/prefix or a local folder, and the AWS clients that reach S3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Location:
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def bucket(self) -> str:
        return self.uri[5:].split("/", 1)[0]

    @property
    def key(self) -> str:
        """The prefix inside the bucket, without a trailing slash ('' for the bucket root)."""
        parts = self.uri[5:].split("/", 1)
        return parts[1].strip("/") if len(parts) > 1 else ""

    @property
    def path(self) -> Path:
        return Path(self.uri)

    def child(self, *names: str) -> Location:
        return Location("/".join([self.uri.rstrip("/"), *names]))

    def prefix(self) -> str:
        return f"{self.key}/" if self.key else ""

    def contains(self, other: Location) -> bool:
        """Whether other is this location or lies under it."""
        return other.uri == self.uri or other.uri.startswith(self.uri.rstrip("/") + "/")

    def __str__(self) -> str:
        return self.uri


def default_region() -> str | None:
    """The region the task or the user set: AWS_REGION (the template's), else AWS_DEFAULT_REGION."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def aws_client(service: str = "s3", region: str | None = None, session: Any = None) -> Any:
    """A boto3 client that honours AWS_ENDPOINT_URL and retries, but never hangs a run; session: whose
    credentials sign its requests (the runner's own when None)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"})
    region = region or default_region()
    return (session or boto3).client(service, region_name=region, config=config)


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """ListObjectsV2, every page: each object's Key, Size and ETag."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def delete_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    """DeleteObjects, 1,000 keys a call; a key S3 could not delete raises, naming it."""
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        errors = reply.get("Errors", [])
        if errors:
            first = errors[0]
            raise OSError(
                f"S3 did not delete {len(errors)} object(s), e.g. s3://{bucket}/{first.get('Key')} "
                f"({first.get('Code')}: {first.get('Message')})"
            )


def aws_problem(exc: BaseException) -> str:
    """A short reason for a boto3 failure: the error code and message, or the exception itself."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
