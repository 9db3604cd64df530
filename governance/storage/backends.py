"""Where stored objects' bytes live (issue 12): a local folder or S3-compatible object storage.

Both take whole local files and give back readable streams, so nothing holds an artifact in
memory: the filesystem writes to a temporary name and renames it into place; S3 goes through
boto3's managed transfer (multipart above ``multipart_threshold``, parts in parallel) and reads
the object's body as a stream. Chosen by ``STEWARD_ARTIFACT_URL`` (``backend_for_url``):
``file:///srv/steward/artifacts`` or ``s3://bucket/prefix``; S3's endpoint, region and
credentials come from the standard AWS variables (``AWS_ENDPOINT_URL`` for MinIO or Ceph).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit


class ObjectMissing(Exception):
    """No object under the key."""


class Backend(Protocol):
    """Put, read and delete whole objects by key (``kind/ab/sha256.suffix``)."""

    location: str

    def put(self, key: str, source: Path) -> None: ...

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


class FilesystemBackend:
    """Objects as files under ``root`` (a disk every worker shares when there are several)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = f"file://{self.root}"

    def path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


class S3Backend:
    """Objects in an S3 bucket under ``prefix`` (AWS S3, MinIO, Ceph's RGW)."""

    def __init__(self, bucket: str, prefix: str, multipart_threshold: int = 64 * 1024 * 1024) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}"
        # One client per backend: boto3 clients are thread-safe, sessions are not shared.
        self.client = boto3.session.Session().client("s3")
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 5 * 1024 * 1024),
        )

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, source: Path) -> None:
        # S3 writes are atomic: readers see the old object or the whole new one, never a part.
        self.client.upload_file(str(source), self.bucket, self._name(key), Config=self.transfer)

    def open(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissing(key) from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))


def backend_for_url(url: str, default_root: Path, multipart_threshold: int) -> Backend:
    """The backend ``url`` names: empty (``default_root``), ``file:///path`` or
    ``s3://bucket/prefix``. ValueError for any other scheme or an S3 URL without a bucket."""
    if not url:
        return FilesystemBackend(default_root)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FilesystemBackend(Path(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"STEWARD_ARTIFACT_URL {url!r} names no bucket (s3://bucket/prefix)")
        return S3Backend(parts.netloc, parts.path, multipart_threshold)
    raise ValueError(f"STEWARD_ARTIFACT_URL {url!r}: the scheme is file:// or s3://")
