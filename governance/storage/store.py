"""The artifact store (issue 12): every app's artifacts go in and come out through here.

Two modes, chosen by the environment:

- **direct** (the embedded default: no ``STEWARD_ARTIFACT_URL``, no key-encryption keys):
  artifacts are plain files under ``ARTIFACT_ROOT``, read in place, as before.
- **managed** (an object store, ``STEWARD_ARTIFACT_URL=s3://bucket/prefix``, and/or envelope
  encryption, ``STEWARD_ARTIFACT_KEYS`` / ``STEWARD_ARTIFACT_KEYS_FILE``): each artifact is one
  object in the backend (a directory is one tar), encrypted with its own data key when a keyring
  is set, and recorded as a ``StoredObject`` (its sha256, size, the wrapped data key). Readers
  get a local plaintext copy (``local_path``): decrypted and verified against the record into
  ``STEWARD_ARTIFACT_CACHE`` on first use, so a job, the web tier or a model server reads a file
  as before. A copy that fails to authenticate or to match its sha256 is never placed: the read
  raises ArtifactCorrupt naming the artifact, the failure is counted on the record
  (``/metrics``) and audited.

Keys are content-addressed (``kind/ab/<sha256><suffix>``), so storing the same bytes twice is
one object; a record is written under a row lock, so two writers never leave an object encrypted
under one data key and recorded under another.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from governance.storage import envelope
from governance.storage.backends import Backend, FilesystemBackend, ObjectMissing, backend_for_url
from governance.storage.vault import VaultTransit

# Wraps and unwraps data keys: a local keyring or Vault's transit engine (same methods).
KekProvider = envelope.Keyring | VaultTransit

logger = logging.getLogger(__name__)

# Read and hashed in chunks of this size: nothing holds a whole artifact in memory.
_COPY_BYTES = 1024 * 1024


class ArtifactUnreadable(Exception):
    """A stored artifact that cannot be read; the message names it and says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"artifact {key}: {reason}")
        self.key = key
        self.reason = reason


class ArtifactCorrupt(ArtifactUnreadable):
    """Its bytes fail authentication or their sha256 (a flipped byte, a swapped or truncated file)."""


class ArtifactMissing(ArtifactUnreadable):
    """No record or no object (never stored here, or deleted behind Steward's back)."""


class ArtifactStoreUnavailable(ArtifactUnreadable):
    """The backend did not answer (object storage down or unreachable): try again later."""


class ArtifactErased(ArtifactUnreadable):
    """Erased (GDPR Art. 17): its data key is destroyed, its bytes unreadable everywhere."""


@functools.lru_cache(maxsize=8)
def _backend(url: str, root: str, threshold: int, endpoint: str) -> Backend:
    return backend_for_url(url, Path(root), threshold)


def backend() -> Backend:
    """The configured backend (one per configuration, S3 endpoint and process)."""
    return _backend(
        settings.STEWARD_ARTIFACT_URL,
        str(settings.ARTIFACT_ROOT),
        settings.STEWARD_S3_MULTIPART_BYTES,
        os.environ.get("AWS_ENDPOINT_URL", ""),
    )


@functools.lru_cache(maxsize=8)
def _keyring(text: str, path: str, stamp: int) -> envelope.Keyring | None:
    if path:
        text = Path(path).read_text()
    return envelope.Keyring.parse(text) if text.strip() else None


@functools.lru_cache(maxsize=8)
def _vault(key_name: str, mount_point: str, url: str, token: str) -> VaultTransit:
    return VaultTransit(key_name, mount_point, url, token)


def keyring() -> KekProvider | None:
    """The key-encryption key provider, or None when artifacts are not encrypted: Vault's transit
    key ``STEWARD_ARTIFACT_VAULT_KEY`` (at ``VAULT_ADDR`` with ``VAULT_TOKEN``) when set, else the
    local keyring (``STEWARD_ARTIFACT_KEYS_FILE`` wins over ``STEWARD_ARTIFACT_KEYS``).
    KeyringError names a malformed entry; a file that changes is read again (a rotation adds its
    new key there)."""
    if settings.STEWARD_ARTIFACT_VAULT_KEY:
        return _vault(
            settings.STEWARD_ARTIFACT_VAULT_KEY,
            settings.STEWARD_ARTIFACT_VAULT_MOUNT,
            os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200"),
            os.environ.get("VAULT_TOKEN", ""),
        )
    path = settings.STEWARD_ARTIFACT_KEYS_FILE
    try:
        stamp = Path(path).stat().st_mtime_ns if path else 0
        return _keyring(settings.STEWARD_ARTIFACT_KEYS, path, stamp)
    except OSError as exc:
        # A keyring file missing or unreadable (a secrets mount not there yet) is the same kind
        # of fault as a malformed one: one exception type for callers to answer (a 503), without
        # the file's path in the message.
        raise envelope.KeyringError(
            f"the keyring file (STEWARD_ARTIFACT_KEYS_FILE) cannot be read: {exc.strerror or exc}"
        ) from None


# An object in the cold tier is its stored bytes gzip-compressed, under its key plus this suffix.
COLD_SUFFIX = ".gz"


def cold_backend() -> Backend:
    """The cold tier's store (``STEWARD_ARTIFACT_COLD_URL``; empty: ``VAR_DIR/artifacts-cold``)."""
    return _backend(
        settings.STEWARD_ARTIFACT_COLD_URL,
        str(Path(settings.VAR_DIR) / "artifacts-cold"),
        settings.STEWARD_S3_MULTIPART_BYTES,
        os.environ.get("AWS_ENDPOINT_URL", ""),
    )


def is_direct() -> bool:
    """Plain files read in place under ARTIFACT_ROOT: no object store URL and no keyring."""
    return not settings.STEWARD_ARTIFACT_URL and keyring() is None


def cache_root() -> Path:
    return Path(settings.STEWARD_ARTIFACT_CACHE)


def _binding(key: str, sha256: str) -> bytes:
    return envelope.associated_data(key, sha256)


def put_file(source: Path, key: str, sha256: str, *, is_directory: bool = False) -> None:
    """Store the local file ``source`` (whose sha256 is ``sha256``) under ``key``.

    Direct mode: copied under ARTIFACT_ROOT unless already there. Managed: encrypted (when a
    keyring is set) into a temporary file beside the cache, put in the backend, recorded. A key
    already stored and readable is left alone; one that was erased is stored afresh under a new
    data key (the same bytes given again are a new copy, not the erased one restored)."""
    from governance.models import StoredObject

    if is_direct():
        target = Path(settings.ARTIFACT_ROOT) / key
        if not target.exists():
            FilesystemBackend(Path(settings.ARTIFACT_ROOT)).put(key, source)
        return
    store = backend()
    ring = keyring()
    with transaction.atomic():
        record, created = StoredObject.objects.select_for_update().get_or_create(
            key=key,
            defaults={"sha256": sha256, "size_bytes": source.stat().st_size, "is_directory": is_directory},
        )
        with _store_answers(key, "did not answer"):
            # A cold object is stored (its first read restores it): the same bytes again are no news.
            present = not created and record.shredded_at is None and (record.is_cold or store.exists(key))
        if present:
            return
        kek_id, wrapped = "", None
        with _store_answers(key, "did not take it"):
            if ring is None:
                store.put(key, source)
            else:
                data_key = envelope.new_data_key()
                # Wrapped first: a key service that refuses leaves nothing stored.
                kek_id, wrapped = ring.wrap(data_key, _binding(key, sha256))
                with _scratch_file() as scratch:
                    with source.open("rb") as plain, scratch.open("wb") as sealed:
                        envelope.encrypt_stream(plain, sealed, data_key, _binding(key, sha256))
                    store.put(key, scratch)
        record.sha256, record.size_bytes, record.is_directory = sha256, source.stat().st_size, is_directory
        record.kek_id, record.wrapped_key, record.location = kek_id, wrapped, store.location
        record.shredded_at = None
        record.save()


def put_directory(path: Path, key: str) -> None:
    """Store the directory ``path`` under ``key``: as it is in direct mode, as one tar object
    in managed mode (``local_path`` extracts it)."""
    if is_direct():
        raise RuntimeError("put_directory is for managed mode; direct mode copies the tree in place")
    with _scratch_file() as bundle:
        with tarfile.open(bundle, "w") as tar:
            for item in sorted(path.rglob("*")):
                if item.is_file():
                    tar.add(item, arcname=item.relative_to(path).as_posix(), recursive=False)
        put_file(bundle, key, file_sha256(bundle), is_directory=True)


# The content-addressed kinds under ARTIFACT_ROOT that direct mode wrote (runs: tracked runs'
# files, ``runners.run_artifacts``); the other folders (ray/, and direct mode's checkpoints/) are
# working areas, not stored objects. Managed mode's checkpoints/ objects are stored and recorded
# as they are written (runners.checkpoints).
STORED_KINDS = ("datasets", "models", "code", "reports", "runs")
_SHA256_HEX = frozenset("0123456789abcdef")


def plain_artifacts(root: Path) -> Iterator[tuple[str, Path, bool]]:
    """``(key, path, is_directory)`` of every artifact direct mode stored under ``root``: a file
    named ``<sha256><suffix>`` or a directory named ``<sha256>`` (a model directory), under the
    ``STORED_KINDS`` folders at any depth; temporary ``.incoming-``/``.scratch-`` names skipped."""
    for kind in STORED_KINDS:
        pending = [root / kind]
        while pending:
            folder = pending.pop()
            if not folder.is_dir():
                continue
            for item in sorted(folder.iterdir()):
                if item.name.startswith(".") or item.is_symlink():
                    continue
                is_sha = len(item.name) >= 64 and set(item.name[:64]) <= _SHA256_HEX
                if item.is_dir() and is_sha and len(item.name) == 64:
                    yield item.relative_to(root).as_posix(), item, True
                elif item.is_dir():
                    pending.append(item)
                elif is_sha:
                    yield item.relative_to(root).as_posix(), item, False


def import_plain_artifacts(*, remove_plain: bool = False) -> dict[str, int]:
    """Bring the artifacts direct mode stored under ``ARTIFACT_ROOT`` into the managed store
    (after keys or an object store are switched on): each one without a record is stored
    (encrypted when a keyring is set; a directory as its tar) and recorded. On a filesystem
    backend rooted at ``ARTIFACT_ROOT`` the plaintext is replaced by the stored object in place;
    elsewhere (S3) it stays unless ``remove_plain``. Audited once (``artifact.import``, counts).
    Returns ``{"imported", "already", "failed"}``. RuntimeError in direct mode."""
    from governance.audit import record_audit_event
    from governance.models import StoredObject

    if is_direct():
        raise RuntimeError(
            "artifacts are in direct mode: set STEWARD_ARTIFACT_KEYS(_FILE) or STEWARD_ARTIFACT_URL first"
        )
    root = Path(settings.ARTIFACT_ROOT)
    store = backend()
    in_place = isinstance(store, FilesystemBackend) and store.root == root
    counts = {"imported": 0, "already": 0, "failed": 0}
    for key, path, is_directory in list(plain_artifacts(root)):
        if StoredObject.objects.filter(key=key).exists():
            counts["already"] += 1
            continue
        try:
            if is_directory:
                # The object takes the directory's place on an in-place backend: move it aside.
                aside = path.with_name(f".import-{path.name}")
                os.replace(path, aside)
                put_directory(aside, key)
                shutil.rmtree(aside)
            else:
                put_file(path, key, file_sha256(path))
                if remove_plain and not in_place:
                    path.unlink()
        except (ArtifactUnreadable, OSError):
            logger.exception("import_plain_artifacts: %s was not imported", key)
            counts["failed"] += 1
            continue
        counts["imported"] += 1
    with transaction.atomic():
        record_audit_event(
            actor=None,
            action="artifact.import",
            object_type="artifactstore",
            object_id="",
            object_repr=f"artifact store {backend().location}",
            after={**counts, "encrypted": keyring() is not None, "location": backend().location},
        )
    return counts


def local_path(key: str) -> Path:
    """A local, plaintext, verified path of the artifact ``key``: in place (direct mode) or its
    copy in the cache, made on first use. ArtifactErased, ArtifactMissing or ArtifactCorrupt
    (counted and audited) when it cannot be read."""
    if is_direct():
        return Path(settings.ARTIFACT_ROOT) / key
    target = cache_root() / key
    if target.exists():
        # A copy made before an erasure (on this machine by a read that raced it, or on a machine
        # the erasure did not run on) must not outlive it: the record decides, not the cache.
        # One read of the record serves that and the read's note (the hot path: a cached copy).
        _refuse_if_erased(key, target, note_read=True)
        return target
    _note_read(key)
    placed = _materialize(key, target)
    # An erasure that committed while this copy was being made: its own clean-up may have run
    # before the copy was placed.
    _refuse_if_erased(key, placed)
    return placed


def _refuse_if_erased(key: str, copy: Path, *, note_read: bool = False) -> None:
    """ArtifactErased, after deleting the local ``copy``, when ``key``'s record is shredded;
    with ``note_read``, also records the read when the last note is over an hour old
    (``_note_read``'s rule, without its UPDATE when the note is fresh)."""
    from governance.models import StoredObject

    row = StoredObject.objects.filter(key=key).values_list("shredded_at", "last_read_at").first()
    shredded_at, last_read_at = row if row is not None else (None, None)
    stale = last_read_at is None or last_read_at < timezone.now() - timedelta(hours=1)
    if note_read and row is not None and shredded_at is None and stale:
        _note_read(key)
    if shredded_at is not None:
        _drop_copy(copy)
        raise ArtifactErased(
            key, f"it was erased on {shredded_at:%Y-%m-%d %H:%M} UTC; its data key is destroyed"
        )


def _drop_copy(copy: Path) -> None:
    """Delete a local plaintext copy (a file or an extracted directory), if any."""
    if copy.is_dir():
        shutil.rmtree(copy, ignore_errors=True)
    else:
        copy.unlink(missing_ok=True)


def _note_read(key: str) -> None:
    """Record that ``key`` was read (what a retention policy's ``cold_after_days`` counts from),
    to the hour: one indexed UPDATE that writes nothing when it was noted in the last hour."""
    from governance.models import StoredObject

    now = timezone.now()
    StoredObject.objects.filter(key=key).filter(
        Q(last_read_at__isnull=True) | Q(last_read_at__lt=now - timedelta(hours=1))
    ).update(last_read_at=now)


def _materialize(key: str, target: Path) -> Path:
    from governance.models import StoredObject

    record = StoredObject.objects.filter(key=key).first()
    if record is None:
        raise ArtifactMissing(
            key,
            "the store holds no record of it (stored before managed mode was switched on? "
            "run manage.py import_plain_artifacts)",
        )
    if record.shredded_at is not None:
        raise ArtifactErased(
            key, f"it was erased on {record.shredded_at:%Y-%m-%d %H:%M} UTC; its data key is destroyed"
        )
    if record.is_cold:
        record = _restore(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    except OSError as exc:
        # This machine's scratch disk (full, read-only, not mounted): a fault of the deployment
        # that passes, like a store that does not answer; the setting's name, not its path.
        raise ArtifactStoreUnavailable(
            key, f"the local copies' folder (STEWARD_ARTIFACT_CACHE) cannot be written: {exc.strerror}"
        ) from None
    digest = hashlib.sha256()
    tmp = Path(tmp_name)
    # Closed on every path: a read refused before the copy starts (no object, a store that does
    # not answer) must not leave the descriptor open, or a web process runs out of them.
    plain = os.fdopen(fd, "wb")
    try:
        with _store_answers(key, "did not give it back"):
            try:
                source = backend().open(key)
            except ObjectMissing:
                raise ArtifactMissing(key, f"no object at {record.location or backend().location}") from None
        with plain, source, _store_answers(key, "broke off while reading it"):
            if record.wrapped_key is not None:
                ring = keyring()
                if ring is None:
                    raise ArtifactUnreadable(key, "it is encrypted and no key-encryption key is configured")
                try:
                    data_key = ring.unwrap(
                        record.kek_id, bytes(record.wrapped_key), _binding(key, record.sha256)
                    )
                    envelope.decrypt_stream(
                        source, plain, data_key, _binding(key, record.sha256), digest.update
                    )
                except envelope.KeyringError as exc:
                    raise ArtifactUnreadable(key, str(exc)) from None
                except envelope.EnvelopeError as exc:
                    _integrity_failure(record, str(exc))
            else:
                for chunk in iter(lambda: source.read(_COPY_BYTES), b""):
                    plain.write(chunk)
                    digest.update(chunk)
        if digest.hexdigest() != record.sha256:
            _integrity_failure(
                record,
                f"its bytes hash to {digest.hexdigest()[:12]}..., not the recorded {record.sha256[:12]}...",
            )
        if record.is_directory:
            return _extract(tmp, target)
        os.replace(tmp, target)
        return target
    finally:
        plain.close()
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _store_answers(key: str, failed: str) -> Iterator[None]:
    """The backend's own errors (connection refused, timeouts, S3 errors other than a missing
    key, a filesystem's OSError) and the key service's as ArtifactStoreUnavailable naming the
    artifact and the store; Steward's pass through."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ArtifactUnreadable:
        raise
    except envelope.KeyServiceError as exc:
        raise ArtifactStoreUnavailable(key, str(exc)) from None
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise ArtifactStoreUnavailable(
            key, f"the artifact store {backend().location} {failed}: {exc}"
        ) from None
    except OSError as exc:
        # Connection and timeout errors, and a filesystem backend's own (a full disk, a folder
        # not writable or not there, a stale NFS handle): the store's fault, not the request's.
        # Its strerror only: the OS's message names the server's paths.
        raise ArtifactStoreUnavailable(
            key, f"the artifact store {backend().location} {failed}: {exc.strerror or type(exc).__name__}"
        ) from None


def _extract(bundle: Path, target: Path) -> Path:
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".incoming-"))
    try:
        with tarfile.open(bundle) as tar:
            # The "data" filter refuses links, absolute names and ".." (the tar is ours, and
            # authenticated, but the filter costs nothing).
            tar.extractall(staging, filter="data")
        try:
            os.replace(staging, target)
        except OSError:
            if not target.exists():  # another reader placed the same directory first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def audit_stored_object(
    record: Any,
    action: str,
    *,
    after: dict[str, Any],
    before: dict[str, Any] | None = None,
    team_id: int | None = None,
) -> None:
    """One audit event about the stored object ``record`` by the system, in the caller's
    transaction (integrity failures, restores, moves to the cold tier)."""
    from governance.audit import record_audit_event

    record_audit_event(
        actor=None,
        action=action,
        object_type="storedobject",
        object_id=record.pk,
        object_repr=record.key,
        team_id=team_id,
        before=before,
        after=after,
    )


def _integrity_failure(record, reason: str) -> None:
    """Count and audit a failed read of ``record``, then raise ArtifactCorrupt."""
    from governance.models import StoredObject

    message = f"its stored bytes fail their integrity check: {reason}"
    with transaction.atomic():
        StoredObject.objects.filter(pk=record.pk).update(
            integrity_failures=F("integrity_failures") + 1, last_integrity_failure=message[:500]
        )
        audit_stored_object(
            record,
            "artifact.integrity_failure",
            after={
                "key": record.key,
                "sha256": record.sha256,
                "location": record.location,
                "reason": reason[:500],
            },
        )
    raise ArtifactCorrupt(record.key, message)


def shred(key: str) -> bool:
    """Destroy ``key``'s data key and delete its object and this machine's cached copy.

    Managed mode: the record keeps its sha256 and size (the audit trail's proofs still name
    them) but no wrapped key, so any copy of the ciphertext (a replica, a backup, a cold tier)
    stays unreadable. Direct mode: the file is deleted once the caller's transaction commits.
    Returns whether anything was there. Runs inside the caller's transaction (the erasure's)."""
    from governance.models import StoredObject

    cached = cache_root() / key
    _drop_copy(cached)
    if is_direct():
        target = Path(settings.ARTIFACT_ROOT) / key
        existed = target.exists()
        # Deleted once the erasure commits: a plain file is the only copy, and an erasure that
        # rolls back (its audit event not written) must leave the version's bytes in place.
        transaction.on_commit(lambda: _drop_copy(target))
        return existed
    record = StoredObject.objects.select_for_update().filter(key=key).first()
    if record is None or record.shredded_at is not None:
        return False
    StoredObject.objects.filter(pk=record.pk).update(wrapped_key=None, kek_id="", shredded_at=timezone.now())
    # The key is gone once this commits; the object is deleted after, and a deletion that
    # fails leaves only ciphertext nobody can read.
    transaction.on_commit(lambda: _delete_quietly(key))
    # Again once committed: a read that raced this erasure may have placed a copy since (it then
    # also refuses itself, see local_path).
    transaction.on_commit(lambda: _drop_copy(cached))
    return True


def delete(key: str) -> bool:
    """Delete the artifact ``key`` for good: its object (hot and cold tier), its record and this
    machine's cached copy. For working artifacts nothing refers to once they have served (a
    training job's checkpoints, ``runners.checkpoints``); an artifact that evidence or an erasure
    names is shredded instead (``shred``: its record stays, as proof).

    Direct mode: the file (or directory) under ``ARTIFACT_ROOT``. Returns whether a record (or,
    direct, a file) was there. ArtifactStoreUnavailable when the backend does not answer: the
    record is kept, so a later call finds the object again."""
    from governance.models import StoredObject

    _drop_copy(cache_root() / key)
    if is_direct():
        target = Path(settings.ARTIFACT_ROOT) / key
        existed = target.exists()
        _drop_copy(target)
        return existed
    with transaction.atomic():
        record = StoredObject.objects.select_for_update().filter(key=key).first()
        with _store_answers(key, "did not delete it"):
            # The object first: a record deleted before its object would leave bytes no one lists.
            backend().delete(key)
            if record is not None and record.is_cold:
                cold_backend().delete(key + COLD_SUFFIX)
        if record is not None:
            record.delete()
    return record is not None


def delete_prefix(prefix: str) -> int:
    """``delete`` every artifact whose key starts with ``prefix``, a folder-like prefix ending
    with ``/`` (so ``checkpoints/job-1/`` never takes ``checkpoints/job-12/``'s). Managed mode:
    the recorded keys; direct mode: the files under ``ARTIFACT_ROOT/<prefix>``, then the folder.
    Returns how many were deleted. ValueError for a prefix without its ``/``;
    ArtifactStoreUnavailable as ``delete`` (those deleted before stay deleted)."""
    from governance.models import StoredObject

    if not prefix.endswith("/") or prefix.startswith("/") or ".." in prefix.split("/"):
        raise ValueError(f"a key prefix names a folder, relative and ending with '/': {prefix!r}")
    if is_direct():
        folder = Path(settings.ARTIFACT_ROOT) / prefix
        count = sum(1 for item in folder.rglob("*") if item.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        _drop_copy(cache_root() / prefix)
        return count
    keys = list(StoredObject.objects.filter(key__startswith=prefix).values_list("key", flat=True))
    return sum(delete(key) for key in keys)


def _delete_quietly(key: str) -> None:
    try:
        backend().delete(key)
        cold_backend().delete(key + COLD_SUFFIX)
    except Exception:
        # The data key is already destroyed: what stays is ciphertext nobody can read.
        logger.warning("artifact %s: shredded, but deleting its object failed", key, exc_info=True)


def move_to_cold(key: str):
    """Move ``key``'s object to the cold tier: its stored bytes (the ciphertext when encrypted:
    the data key and the record's binding stay as they are) gzip-compressed into the cold store
    (``cold_backend``); the hot object and this machine's cached copy are removed once the
    caller's transaction commits. Returns the updated ``StoredObject``, or None when there is
    nothing to move (direct mode, no record, erased, already cold). ArtifactMissing when the hot
    object is gone; ArtifactStoreUnavailable when a store does not answer (nothing changes).
    Runs inside the caller's transaction (the retention lifecycle's, with its audit event)."""
    from governance.models import StoredObject, Tier

    if is_direct():
        return None
    record = StoredObject.objects.select_for_update().filter(key=key).first()
    if record is None or record.shredded_at is not None or record.is_cold:
        return None
    with _scratch_file() as packed:
        with _store_answers(key, "did not give it back"):
            try:
                source = backend().open(key)
            except ObjectMissing:
                raise ArtifactMissing(key, f"no object at {backend().location}") from None
        with (
            source,
            gzip.open(packed, "wb", compresslevel=6) as sink,
            _store_answers(key, "broke off while reading it"),
        ):
            shutil.copyfileobj(source, sink, _COPY_BYTES)
        with _store_answers(key, "(the cold tier) did not take it"):
            cold_backend().put(key + COLD_SUFFIX, packed)
        record.cold_size_bytes = packed.stat().st_size
    record.tier, record.moved_to_cold_at = Tier.COLD, timezone.now()
    record.save(update_fields=["tier", "cold_size_bytes", "moved_to_cold_at"])
    transaction.on_commit(lambda: _evict_hot(key))
    return record


def _evict_hot(key: str) -> None:
    _drop_copy(cache_root() / key)
    try:
        backend().delete(key)
    except Exception:
        # The cold copy is the record's; a hot leftover only costs space until it is deleted.
        logger.warning(
            "artifact %s: moved to the cold tier, but deleting its hot object failed", key, exc_info=True
        )


def _restore(key: str):
    """Bring ``key`` back from the cold tier to the hot store (decompressed, as it was stored),
    mark it hot with how long that took, audit ``artifact.restore``; the cold copy is deleted
    once that commits. The row lock makes concurrent readers wait for one restore. Returns the
    updated record; ArtifactCorrupt when the cold copy does not decompress."""
    from governance.models import StoredObject

    started = time.monotonic()
    try:
        return _restore_locked(key, started)
    except _ColdCopyBroken as broken:
        # Counted and audited outside the restore's transaction, which rolled back.
        _integrity_failure(StoredObject.objects.get(key=key), f"its cold copy does not decompress: {broken}")
        raise


class _ColdCopyBroken(Exception):
    pass


def _restore_locked(key: str, started: float):
    from governance.models import StoredObject, Tier

    with transaction.atomic():
        record = StoredObject.objects.select_for_update().get(key=key)
        if not record.is_cold:  # another reader restored it while this one waited
            return record
        with _scratch_file() as plain:
            with _store_answers(key, "(the cold tier) did not give it back"):
                try:
                    source = cold_backend().open(key + COLD_SUFFIX)
                except ObjectMissing:
                    raise ArtifactMissing(
                        key, f"no object at {cold_backend().location} (cold tier)"
                    ) from None
            try:
                with (
                    source,
                    gzip.GzipFile(fileobj=source, mode="rb") as unpacked,
                    plain.open("wb") as sink,
                    _store_answers(key, "(the cold tier) broke off while reading it"),
                ):
                    shutil.copyfileobj(unpacked, sink, _COPY_BYTES)
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise _ColdCopyBroken(str(exc)) from None
            with _store_answers(key, "did not take it back from the cold tier"):
                backend().put(key, plain)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        record.tier, record.cold_size_bytes = Tier.HOT, None
        record.restored_at, record.last_restore_ms = timezone.now(), elapsed_ms
        record.save(update_fields=["tier", "cold_size_bytes", "restored_at", "last_restore_ms"])
        audit_stored_object(
            record,
            "artifact.restore",
            after={"key": record.key, "tier": Tier.HOT, "restore_ms": elapsed_ms},
        )
        transaction.on_commit(lambda: _delete_cold_quietly(key))
    return record


def _delete_cold_quietly(key: str) -> None:
    try:
        cold_backend().delete(key + COLD_SUFFIX)
    except Exception:
        logger.warning("artifact %s: restored, but deleting its cold copy failed", key, exc_info=True)


def rewrap_all(batch: int = 500) -> dict[str, int]:
    """Move every data key not under the active KEK (a local keyring's first key, or a Vault
    transit key's newest version) to it, without touching the data.

    Records in batches of ``batch``, each in its transaction with one audit event
    (``artifact_keys.rewrap``: how many, from which KEK ids, to which) when it moved any. Returns
    the counts by previous KEK id. ArtifactCorrupt naming the records whose wrapped key does not
    authenticate, after every other one is re-wrapped; KeyringError when the keyring lacks a
    KEK a record names;
    KeyServiceError when Vault refuses (that batch changes nothing); RuntimeError when no keys
    are configured."""
    from governance.audit import record_audit_event
    from governance.models import StoredObject

    ring = keyring()
    if ring is None:
        raise RuntimeError(
            "no key-encryption keys are configured "
            "(STEWARD_ARTIFACT_KEYS, STEWARD_ARTIFACT_KEYS_FILE or STEWARD_ARTIFACT_VAULT_KEY)"
        )
    counts: dict[str, int] = {}
    damaged: list[str] = []
    after_pk = 0
    while True:
        with transaction.atomic():
            records = list(
                StoredObject.objects.select_for_update()
                .filter(wrapped_key__isnull=False, shredded_at__isnull=True, pk__gt=after_pk)
                .order_by("pk")[:batch]
            )
            if not records:
                if damaged:
                    named = ", ".join(damaged[:10]) + (
                        f" and {len(damaged) - 10} more" if len(damaged) > 10 else ""
                    )
                    raise ArtifactCorrupt(
                        named,
                        "its wrapped data key does not authenticate, so it stays under its old "
                        "key-encryption key (every other data key was re-wrapped)",
                    )
                return counts
            after_pk = records[-1].pk
            moved: dict[str, int] = {}
            changed = []
            for record in records:
                wrapped = bytes(record.wrapped_key or b"")
                if not ring.needs_rewrap(record.kek_id, wrapped):
                    continue
                try:
                    new_kek, new_wrapped = ring.rewrap(
                        record.kek_id, wrapped, _binding(record.key, record.sha256)
                    )
                except envelope.EnvelopeError:
                    # One damaged record (its artifact is unreadable anyway) must not block the
                    # rotation of every other one: skipped, named once the rest is done.
                    damaged.append(record.key)
                    continue
                moved[record.kek_id] = moved.get(record.kek_id, 0) + 1
                record.kek_id, record.wrapped_key = new_kek, new_wrapped
                changed.append(record)
            if not changed:
                continue
            StoredObject.objects.bulk_update(changed, ["kek_id", "wrapped_key"])
            record_audit_event(
                actor=None,
                action="artifact_keys.rewrap",
                object_type="keyring",
                object_id=ring.active,
                object_repr=f"key-encryption key {ring.active}",
                after={"rewrapped": len(changed), "from": moved, "to": ring.active},
            )
            for kek_id, count in moved.items():
                counts[kek_id] = counts.get(kek_id, 0) + count


# The names a writer gives what it has not finished (a file being received, encrypted or
# gathered); a process killed mid-write leaves them behind.
LEFTOVER_PREFIXES = (".incoming-", ".scratch-", ".gathered-")


def sweep_leftovers(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete what writers killed mid-write left behind (``LEFTOVER_PREFIXES``: partial
    uploads, half-encrypted scratch files, gathered copies; plaintext, some of them) under
    ``ARTIFACT_ROOT``, the local copies' folder and a filesystem cold tier, when last modified
    more than ``older_than`` ago (a writer at work touches its file; a day is far beyond any
    write). Returns how many files and folders were deleted. The daily retention task runs it.

    Only where writers leave them: a root's top level (the local copies' scratch files) and the
    folders of the ``STORED_KINDS`` trees beside the stored objects, never inside a stored
    directory (a model's files, named by its sha256, or their extracted copy): those names are
    the user's, and a model may hold a file called ``.scratch-notes``. Working areas
    (checkpoints/, ray/, a legacy mlflow/ tree) hold users' files too and are not walked."""
    cutoff = time.time() - older_than.total_seconds()
    roots = {Path(settings.ARTIFACT_ROOT), cache_root()}
    for store in (backend(), cold_backend()):
        if isinstance(store, FilesystemBackend):
            roots.add(store.root)
    swept = 0
    for root in roots:
        swept += _sweep_folder(root, cutoff)
        for kind in STORED_KINDS:
            for folder, dirs, _files in os.walk(root / kind):
                swept += _sweep_folder(Path(folder), cutoff)
                # A leftover folder is gone; a stored directory is the user's: neither walked into.
                dirs[:] = [
                    name
                    for name in dirs
                    if not name.startswith(LEFTOVER_PREFIXES) and not _is_stored_directory(name)
                ]
    return swept


def _is_stored_directory(name: str) -> bool:
    """Whether a folder of a ``STORED_KINDS`` tree is a stored directory (named by its sha256)."""
    return len(name) == 64 and set(name) <= _SHA256_HEX


def _sweep_folder(folder: Path, cutoff: float) -> int:
    """Delete the leftovers directly in ``folder`` last modified before ``cutoff``; how many."""
    swept = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        if not entry.name.startswith(LEFTOVER_PREFIXES):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        _drop_copy(Path(entry.path))
        swept += 1
    return swept


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_COPY_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _scratch_file() -> Iterator[Path]:
    """A temporary file path in the cache's folder (the same disk as the copies), removed after."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=root, prefix=".scratch-")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
