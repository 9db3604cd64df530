"""Content-addressed artifact storage under ``settings.ARTIFACT_ROOT``.

Files are written to a temporary name and renamed into place, so a reader never sees half a
file; the name is the SHA-256, so writing the same content twice is harmless (an interrupted
registration leaves at most an unreferenced file, never a row pointing at a missing one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings


def store_file(source: Path, sha256: str, kind: str, suffix: str) -> str:
    """Copy ``source`` into the store; returns the path relative to ARTIFACT_ROOT."""
    relative = Path(kind) / sha256[:2] / f"{sha256}{suffix}"
    target = settings.ARTIFACT_ROOT / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return relative.as_posix()


def store_bytes(data: bytes, sha256: str, kind: str, suffix: str) -> str:
    """Like ``store_file`` for in-memory content."""
    with tempfile.NamedTemporaryFile(delete=False) as handle:
        handle.write(data)
    try:
        return store_file(Path(handle.name), sha256, kind, suffix)
    finally:
        os.unlink(handle.name)


def resolve(relative: str) -> Path:
    """Absolute path of a stored artifact."""
    return settings.ARTIFACT_ROOT / relative


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
