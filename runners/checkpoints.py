"""Where a training job's checkpoints live, and how a new attempt finds its latest (issue 12).

One rule, two modes of the artifact store (``governance.storage``):

- **direct**: the child writes ``epoch-NNNNN.pt`` under ``ARTIFACT_ROOT/checkpoints/job-<id>``
  (shared by the workers) and keeps only the latest; a new attempt resumes from that file.
- **managed** (every artifact on disk and in object storage is ciphertext): the child writes into
  the attempt's own scratch folder, never under ``ARTIFACT_ROOT``; on each ``checkpoint`` event the
  worker stores the file as ``checkpoints/job-<id>/epoch-NNNNN.pt`` (encrypted, recorded as a
  ``StoredObject``), then removes the plaintext and the job's older stored checkpoints. A new
  attempt, on any machine, resumes from the newest recorded one, read through ``local_path``
  (decrypted and verified: a tampered checkpoint fails to authenticate and the attempt starts
  from epoch 1, saying why).

Either way the checkpoints are deleted once the model version is registered, and kept after a
failure (a retry resumes from them; an operator can look).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from django.conf import settings

from governance import storage
from governance.models import StoredObject
from runners.launcher import CHECKPOINT_GLOB, latest_checkpoint

logger = logging.getLogger(__name__)


def checkpoint_folder(job_id: int) -> Path:
    """Where job ``job_id``'s training checkpoints live in direct mode (``ARTIFACT_ROOT``)."""
    return Path(settings.ARTIFACT_ROOT) / "checkpoints" / f"job-{job_id}"


def key_prefix(job_id: int) -> str:
    """The store's key prefix of job ``job_id``'s checkpoints (managed mode)."""
    return f"checkpoints/job-{job_id}/"


def is_stored() -> bool:
    """Whether checkpoints go through the store (managed mode) rather than sit under
    ``ARTIFACT_ROOT`` (direct mode). The child prunes older checkpoints itself only when they
    are not stored: in managed mode the worker takes each file away once stored, and a file the
    child pruned before the worker read its event would never be stored."""
    return not storage.is_direct()


def folder(job_id: int, workdir: Path) -> Path:
    """The folder the child writes job ``job_id``'s checkpoints to in an attempt whose working
    folder is ``workdir``: the shared one in direct mode; in managed mode ``workdir/checkpoints``
    (a local temporary folder, or a Ray run's folder that its nodes share), removed with it."""
    if not is_stored():
        return checkpoint_folder(job_id)
    return workdir / "checkpoints"


def resume(job_id: int, into: Path) -> tuple[Path | None, str | None]:
    """The checkpoint a new attempt of job ``job_id`` resumes from, and a log line when one was
    there but cannot be used: ``(path, None)``, ``(None, None)`` (none yet) or ``(None, why)``.

    Managed mode: the newest recorded checkpoint, decrypted and verified by ``local_path`` and
    moved into ``into`` (the child's folder: a Ray node reads it there, and no plaintext copy
    stays in the cache). One that fails its integrity check (counted and audited by the store)
    or that the store cannot give back is not used: training from epoch 1 is still right."""
    if not is_stored():
        return latest_checkpoint(into), None
    key = (
        StoredObject.objects.filter(key__startswith=key_prefix(job_id), shredded_at__isnull=True)
        .order_by("-key")
        .values_list("key", flat=True)
        .first()
    )
    if key is None:
        return None, None
    try:
        plain = storage.local_path(key)
    except storage.ArtifactUnreadable as exc:
        return None, f"checkpoint {key} unreadable ({exc.reason}); starting at epoch 1"
    into.mkdir(parents=True, exist_ok=True)
    target = into / Path(key).name
    shutil.move(plain, target)
    return target, None


def keep(job_id: int, epoch: int, path: Path) -> str:
    """Keep the checkpoint the child just wrote at ``path`` (epoch ``epoch``) and return the log
    line that says so. Direct mode: the file is where it belongs. Managed mode: stored under
    ``checkpoints/job-<id>/`` (a record of the same epoch from an earlier attempt is replaced:
    ``put_file`` leaves a stored key alone), the local plaintext removed, the job's older stored
    checkpoints deleted. A store that fails does not stop the training: the line says so, and
    the attempt goes on (a retry would resume from an older checkpoint, or from epoch 1)."""
    if not is_stored():
        return f"checkpoint saved at epoch {epoch}"
    prefix = key_prefix(job_id)
    key = prefix + path.name
    # Older local files have served (stored, or not storable): the child no longer prunes them.
    for older in path.parent.glob(CHECKPOINT_GLOB):
        if older.name < path.name:
            older.unlink(missing_ok=True)
    try:
        if StoredObject.objects.filter(key=key).exists():
            storage.delete(key)
        storage.put_file(path, key, storage.file_sha256(path))
    except (storage.ArtifactUnreadable, OSError) as exc:
        reason = exc.reason if isinstance(exc, storage.ArtifactUnreadable) else exc.strerror or exc
        return f"checkpoint at epoch {epoch} not stored: {reason}"
    path.unlink(missing_ok=True)
    stale = StoredObject.objects.filter(key__startswith=prefix).exclude(key=key).values_list("key", flat=True)
    for older_key in list(stale):
        with contextlib.suppress(storage.ArtifactUnreadable):
            # Left for the clean-up after registration when the store does not answer now.
            storage.delete(older_key)
    return f"checkpoint saved at epoch {epoch}"


def discard(job_id: int) -> None:
    """Delete job ``job_id``'s checkpoints once its model version is registered: the shared folder
    (direct) or the stored objects and records (managed). The job has succeeded by then, so a
    store that does not answer only leaves them behind (logged), it does not fail the job."""
    try:
        # Direct mode: the prefix is checkpoint_folder's place under ARTIFACT_ROOT.
        storage.delete_prefix(key_prefix(job_id))
    except storage.ArtifactUnreadable:
        logger.warning("job %s: its checkpoints were not deleted", job_id, exc_info=True)
