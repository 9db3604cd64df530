"""Content-addressed artifacts: model files and directories, archives, uploads.

Stored through ``governance.storage`` (plain files under ``settings.ARTIFACT_ROOT`` by default;
an object store and encryption at rest when configured). Files are written to a temporary name
and renamed into place, so a reader never sees half a file; the key is the SHA-256, so writing
the same content twice is harmless (an interrupted registration leaves at most an unreferenced
object, never a row pointing at a missing one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError

from governance import storage

# One definition of a file's hash, the store's; re-exported for this module's callers.
from governance.storage.store import file_sha256 as file_sha256


def content_key(sha256: str, kind: str, suffix: str) -> str:
    """The store's key of content ``sha256`` of ``kind``: ``kind/ab/<sha256><suffix>``."""
    return (Path(kind) / sha256[:2] / f"{sha256}{suffix}").as_posix()


def store_file(source: Path, sha256: str, kind: str, suffix: str) -> str:
    """Store ``source`` (whose sha256 is ``sha256``) through ``governance.storage``; returns its
    key (``content_key``), the path relative to ARTIFACT_ROOT in direct mode."""
    relative = content_key(sha256, kind, suffix)
    storage.put_file(source, relative, sha256)
    return relative


def store_bytes(data: bytes, sha256: str, kind: str, suffix: str) -> str:
    """Like ``store_file`` for in-memory content."""
    with tempfile.NamedTemporaryFile(delete=False) as handle:
        handle.write(data)
    try:
        return store_file(Path(handle.name), sha256, kind, suffix)
    finally:
        os.unlink(handle.name)


def resolve(relative: str) -> Path:
    """A local, readable path of a stored artifact (``governance.storage.local_path``)."""
    return storage.local_path(relative)


@contextlib.contextmanager
def staged_upload(uploaded) -> Iterator[Path]:
    """A local path holding an uploaded file's bytes (Django keeps small uploads in memory)."""
    if hasattr(uploaded, "temporary_file_path"):
        yield Path(uploaded.temporary_file_path())
        return
    with tempfile.NamedTemporaryFile(suffix=Path(uploaded.name).suffix) as handle:
        for chunk in uploaded.chunks():
            handle.write(chunk)
        handle.flush()
        yield Path(handle.name)


# --- Model artifacts: files and directories (issue 9) ---------------------------------------

_CHUNK = 1024 * 1024
# An archive with more members than this is refused (a zip bomb of empty files costs inodes too).
MAX_ARCHIVE_MEMBERS = 10_000
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


class ArtifactRefused(ValidationError):
    """An upload or archive Steward will not store (too large, unsafe member); a 400 on ``artifact``."""

    def __init__(self, message: str):
        super().__init__({"artifact": message})


def safe_suffix(path: Path) -> str:
    """``path``'s last suffix if it is short and plain (``.pt``, ``.onnx``), else ""."""
    suffix = path.suffix.lower()
    return suffix if len(suffix) <= 10 and suffix[1:].isalnum() else ""


def directory_manifest(path: Path) -> list[tuple[str, str, int]]:
    """``[(relative posix path, file sha256, size)]`` of every file under ``path``, sorted by path.

    Raises ArtifactRefused for a symbolic link (its target is outside what was given) or
    anything that is neither a file nor a directory."""
    manifest = []
    for item in sorted(path.rglob("*")):
        if item.is_symlink():
            raise ArtifactRefused(f"{item.relative_to(path).as_posix()!r} is a link; links are not stored")
        if item.is_file():
            manifest.append((item.relative_to(path).as_posix(), file_sha256(item), item.stat().st_size))
        elif not item.is_dir():
            raise ArtifactRefused(f"{item.relative_to(path).as_posix()!r} is not a regular file")
    return sorted(manifest)


def manifest_sha256(manifest: list[tuple[str, str, int]]) -> str:
    """A directory's sha256: SHA-256 over its sorted ``relative path NUL file sha256 LF`` lines."""
    digest = hashlib.sha256()
    for relative, sha, _size in sorted(manifest):
        digest.update(f"{relative}\0{sha}\n".encode())
    return digest.hexdigest()


def store_directory(path: Path, kind: str) -> tuple[str, str, int]:
    """Copy the directory ``path`` into the store under its manifest's sha256.

    Returns ``(relative path of the stored directory, sha256, total size in bytes)``. Copied to a
    temporary directory and renamed into place, like ``store_file``. ArtifactRefused for links.
    """
    manifest = directory_manifest(path)
    sha256 = manifest_sha256(manifest)
    relative = Path(kind) / sha256[:2] / sha256
    target = settings.ARTIFACT_ROOT / relative
    if not storage.is_direct():
        storage.put_directory(path, relative.as_posix())
    elif not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".incoming-"))
        try:
            for rel, _sha, _size in manifest:
                destination = tmp / rel
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path / rel, destination)
            try:
                os.replace(tmp, target)
            except OSError:
                # Another registration stored the same content first: theirs is identical.
                if not target.exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return relative.as_posix(), sha256, sum(size for _rel, _sha, size in manifest)


def version_files(version) -> list[tuple[str, int]]:
    """``[(relative path, size in bytes)]`` of a model version's stored artifact, sorted: every
    file of a directory version, or the one file of a file version (under its stored name)."""
    root = version.path
    if version.is_directory:
        return [
            (item.relative_to(root).as_posix(), item.stat().st_size)
            for item in sorted(root.rglob("*"))
            if item.is_file() and not item.is_symlink()
        ]
    return [(root.name, root.stat().st_size)] if root.is_file() else []


def open_version_file(version, relative_path: str) -> BinaryIO:
    """The stored file ``relative_path`` of a model version, open for binary reading.

    ValidationError for an absolute path or one with ``..`` (or resolving outside the version);
    ``ObjectDoesNotExist`` when there is no such file."""
    pure = PurePosixPath(relative_path)
    if (
        relative_path.startswith(("/", "\\"))
        or pure.is_absolute()
        or ".." in pure.parts
        or "\\" in relative_path
    ):
        raise ValidationError({"path": f"{relative_path[:200]!r} is not a path inside the artifact"})
    root = version.path.resolve()
    if version.is_directory:
        candidate = (root / pure).resolve()
        if not candidate.is_relative_to(root):
            raise ValidationError({"path": f"{relative_path[:200]!r} is not a path inside the artifact"})
    else:
        candidate = root if pure.as_posix() in (root.name, "") else root / "missing"
    if not candidate.is_file():
        raise ObjectDoesNotExist(f"no file {relative_path[:200]!r} in {version}")
    return candidate.open("rb")


@dataclasses.dataclass(frozen=True)
class StagedModel:
    """An uploaded model on local disk: a file, or the directory an archive was extracted into;
    ``sha256`` and ``size_bytes`` of the upload as received (computed while streaming)."""

    path: Path
    sha256: str
    size_bytes: int


def is_archive_name(name: str) -> bool:
    """Whether an upload named ``name`` is a directory sent as an archive (.tar, .tar.gz, .tgz, .zip)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


@contextlib.contextmanager
def staged_model_upload(uploaded, *, max_bytes: int | None = None) -> Iterator[StagedModel]:
    """Stream an uploaded model to a temporary place, hashing and counting while writing; an
    archive (by its name) is extracted safely into a temporary directory (``extract_archive``).

    ArtifactRefused past ``max_bytes`` (default ``settings.STEWARD_MAX_MODEL_BYTES``) or for an
    unsafe archive. Everything temporary is removed on exit.
    """
    limit = settings.STEWARD_MAX_MODEL_BYTES if max_bytes is None else max_bytes
    name = Path(uploaded.name or "model").name
    with tempfile.TemporaryDirectory(prefix="steward-upload-") as work:
        received = Path(work) / (
            "upload" + (".zip" if name.lower().endswith(".zip") else safe_suffix(Path(name)))
        )
        digest = hashlib.sha256()
        size = 0
        with received.open("wb") as handle:
            for chunk in uploaded.chunks(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ArtifactRefused(f"the upload is larger than the limit of {limit} bytes")
                digest.update(chunk)
                handle.write(chunk)
        if is_archive_name(name):
            target = Path(work) / "extracted"
            extract_archive(received, name, target, max_bytes=limit)
            yield StagedModel(target, digest.hexdigest(), size)
        else:
            named = Path(work) / name
            received.rename(named)
            yield StagedModel(named, digest.hexdigest(), size)


def _member_refusal(name: str) -> str:
    pure = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return f"archive member {name[:200]!r} has an absolute path"
    if ".." in pure.parts:
        return f"archive member {name[:200]!r} leaves the archive's folder (..)"
    return ""


def extract_archive(archive: Path, name: str, target: Path, *, max_bytes: int) -> None:
    """Extract the .tar/.tar.gz/.tgz/.zip ``archive`` (``name`` says which) into ``target``.

    Every member is checked before anything is written: no absolute path, no ``..``, no link
    (symbolic or hard), no device or fifo, at most MAX_ARCHIVE_MEMBERS members and ``max_bytes``
    in all (zip sizes are also counted while writing), at least one file (an empty archive has
    nothing to register). ArtifactRefused otherwise.
    """
    target.mkdir(parents=True)
    if name.lower().endswith(".zip"):
        _extract_zip(archive, target, max_bytes)
    else:
        _extract_tar(archive, target, max_bytes)
    if not any(item.is_file() for item in target.rglob("*")):
        raise ArtifactRefused("the archive holds no file: nothing to register")


def _reason(exc: BaseException) -> str:
    # An OSError's text names the server's temporary path; its strerror alone says what failed.
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)[:200]


def _extract_tar(archive: Path, target: Path, max_bytes: int) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            if len(members) > MAX_ARCHIVE_MEMBERS:
                raise ArtifactRefused(f"the archive has more than {MAX_ARCHIVE_MEMBERS} members")
            total = 0
            for member in members:
                refusal = _member_refusal(member.name)
                if not refusal and (member.issym() or member.islnk()):
                    refusal = f"archive member {member.name[:200]!r} is a link; links are refused"
                if not refusal and not (member.isfile() or member.isdir()):
                    refusal = f"archive member {member.name[:200]!r} is not a file or folder"
                if refusal:
                    raise ArtifactRefused(refusal)
                total += member.size
                if total > max_bytes:
                    raise ArtifactRefused(
                        f"the archive's content is larger than the limit of {max_bytes} bytes"
                    )
            for member in members:
                if member.isdir():
                    (target / member.name).mkdir(parents=True, exist_ok=True)
                    continue
                destination = target / member.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise ArtifactRefused(f"archive member {member.name[:200]!r} cannot be read")
                with source, destination.open("wb") as handle:
                    shutil.copyfileobj(source, handle, _CHUNK)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArtifactRefused(f"not a readable tar archive ({_reason(exc)})") from exc


def _extract_zip(archive: Path, target: Path, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
            if len(infos) > MAX_ARCHIVE_MEMBERS:
                raise ArtifactRefused(f"the archive has more than {MAX_ARCHIVE_MEMBERS} members")
            for info in infos:
                refusal = _member_refusal(info.filename)
                # The Unix mode lives in the high 16 bits of external_attr: 0o120000 is a symlink.
                if not refusal and stat.S_ISLNK(info.external_attr >> 16):
                    refusal = f"archive member {info.filename[:200]!r} is a link; links are refused"
                if refusal:
                    raise ArtifactRefused(refusal)
            written = 0
            for info in infos:
                destination = target / info.filename
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                # Counted while writing: the sizes a zip declares are not to be trusted.
                with zipped.open(info) as source, destination.open("wb") as handle:
                    for chunk in iter(lambda: source.read(_CHUNK), b""):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ArtifactRefused(
                                f"the archive's content is larger than the limit of {max_bytes} bytes"
                            )
                        handle.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks.
        raise ArtifactRefused(f"not a readable zip archive ({_reason(exc)})") from exc
