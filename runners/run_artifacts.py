"""The files of tracked runs and logged models (issue 9), kept in the artifact store (issue 12).

An MLflow client uploads a run's or a logged model's artifacts file by file through the artifact
proxy (``runners.api.mlflow.artifacts``). Each file is stored content-addressed through
``governance.storage`` under ``runs/<team id>/ab/<sha256><suffix>``, so it is encrypted at rest
and kept in object storage when those are configured, like every other artifact, and recorded
as a ``RunArtifact`` row naming its MLflow path. Directories are the paths' prefixes, as in an
object store: listing a folder, telling a file from a folder and gathering a folder to register
it read the rows, never a local tree that only one machine would have.

Paths are MLflow's without the scheme: ``experiments/<id>/<run id>/artifacts/<file>`` and
``experiments/<id>/models/<m-...>/artifacts/<file>``. Who may reach a path is decided before,
by ``runners.mlflow_artifacts.locate``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.utils import timezone

from governance import storage
from governance.artifacts import content_key, safe_suffix, store_file
from governance.audit import record_audit_event
from governance.models import StoredObject
from runners.models import LoggedModel, LoggedModelStatus, RunArtifact

logger = logging.getLogger(__name__)

# A path longer than this cannot be recorded (the column's width): refused with a 400.
PATH_MAX = 1000
# The advisory lock space of the writes under an artifact root (``_lock_prefix``).
_LOCK_SPACE = "steward.run_artifacts"
_OBJECT_LOCK_SPACE = "steward.run_artifact_objects"
# An object no row refers to (the bytes of an overwritten file) is deleted once it is this old;
# younger ones may be an upload's between its storing and its row.
UNREFERENCED_GRACE = timedelta(days=1)


def artifact_prefix(location: str) -> str:
    """The path prefix of an ``mlflow-artifacts:/<path>`` location (``experiments/<id>/...``)."""
    return location.removeprefix("mlflow-artifacts:").strip("/")


def joined(prefix: str, relative: str) -> str:
    """``prefix/relative``, or ``prefix`` when ``relative`` is empty (the root itself)."""
    return f"{prefix}/{relative}" if relative else prefix


def find(path: str) -> RunArtifact | None:
    """The file recorded at ``path``, or None (a folder, or nothing)."""
    return RunArtifact.objects.filter(path=path).first()


def _under(path: str):
    return RunArtifact.objects.filter(path__startswith=f"{path}/")


def is_folder(path: str) -> bool:
    """Whether some file is recorded under ``path/``."""
    return _under(path).exists()


def refuse_conflicts(prefix: str, relative: str) -> None:
    """ValidationError when ``relative`` names no file (empty), is a folder, one of its parent
    folders is a file, or the whole path is longer than ``PATH_MAX``."""
    if not relative:
        raise ValidationError({"path": "name a file to upload under the run's or model's artifacts"})
    path = joined(prefix, relative)
    if len(path) > PATH_MAX:
        raise ValidationError({"path": f"an artifact path has at most {PATH_MAX} characters"})
    if is_folder(path):
        raise ValidationError({"path": f"{relative!r} is a directory"})
    parts = relative.split("/")
    parents = [joined(prefix, "/".join(parts[:depth])) for depth in range(1, len(parts))]
    clash = RunArtifact.objects.filter(path__in=parents).values_list("path", flat=True).first()
    if clash is not None:
        raise ValidationError(
            {"path": f"{relative!r}: {clash[len(prefix) + 1 :]!r} is a file, not a directory"}
        )


@contextlib.contextmanager
def received_file() -> Iterator[tuple[IO[bytes], Path]]:
    """A scratch file to receive an upload into, on the local copies' disk; removed after."""
    folder = Path(settings.STEWARD_ARTIFACT_CACHE)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    except OSError as exc:
        # This machine's scratch disk (full, read-only): the deployment's fault, a 503 that passes.
        raise storage.ArtifactStoreUnavailable(
            "upload", f"the local copies' folder (STEWARD_ARTIFACT_CACHE) cannot be written: {exc.strerror}"
        ) from None
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle, Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _advisory_lock(space: str, name: str) -> None:
    """Hold a PostgreSQL advisory lock on ``(space, name)`` until this transaction ends; SQLite
    (the embedded default) serialises its writers anyway."""
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Two int4 keys: a lock space apart from the single-bigint locks (the audit sequencer).
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", [space, name])


def _lock_prefix(prefix: str) -> None:
    """Serialise the writes under one run's or logged model's artifact root until this
    transaction ends: two uploads racing (``a`` and ``a/b``) each see the other's row when they
    check, so no path is ever both a file and a folder."""
    _advisory_lock(_LOCK_SPACE, prefix)


def _lock_object(key: str) -> None:
    """Serialise the uses of the stored object ``key`` until this transaction ends: an upload
    that stores (or finds) it and records a row, against ``do_collect_unreferenced`` deleting
    it, so no row is ever written for bytes just deleted."""
    _advisory_lock(_OBJECT_LOCK_SPACE, key)


def refuse_finalized(logged_model_id: str) -> None:
    """ValidationError when the logged model is finalized (READY): its artifacts are read-only;
    ObjectDoesNotExist when it was deleted. Locks its row until this transaction ends, so a
    finalization or a deletion waits for an upload being recorded, and an upload that was under
    way when the model was finalized or deleted is refused."""
    found = (
        LoggedModel.objects.select_for_update()
        .filter(pk=logged_model_id)
        .values_list("status", "deleted_at")
        .first()
    )
    if found is None or found[1] is not None:
        raise ObjectDoesNotExist(f"logged model {logged_model_id} was deleted")
    if found[0] == LoggedModelStatus.READY:
        raise ValidationError(
            {"path": f"logged model {logged_model_id} is finalized: its artifacts are read-only"}
        )


def do_store_file(
    *,
    prefix: str,
    relative: str,
    team_id: int,
    source: Path,
    logged_model_id: str | None = None,
    sha256: str | None = None,
) -> RunArtifact:
    """Store the local file ``source`` as ``relative`` under the artifact root ``prefix`` of a
    run or logged model of team ``team_id``; a file already there is replaced (MLflow's
    semantics: the last upload wins). The object is stored before the row is written, so a
    failure leaves at most an unreferenced object, never a row without bytes. With
    ``logged_model_id`` (the root is that logged model's), the model must still be unfinalized
    when the row is written (``refuse_finalized``): an upload takes time. ``sha256``: the
    file's, when the caller hashed it as it arrived (else it is read once more to hash it).

    ValidationError when ``relative`` is empty, a folder, under a file, the whole path is
    longer than ``PATH_MAX``, or the logged model was finalized; ArtifactStoreUnavailable when
    the store does not take it."""
    refuse_conflicts(prefix, relative)
    path = joined(prefix, relative)
    size = source.stat().st_size
    sha256 = sha256 or storage.file_sha256(source)
    key = content_key(sha256, f"runs/{team_id}", safe_suffix(Path(relative)))
    with transaction.atomic():
        # Stored inside the transaction that records it, under the object's lock: a collection
        # of unreferenced objects waits, or has finished and the object is stored afresh.
        _lock_object(key)
        store_file(source, sha256, f"runs/{team_id}", safe_suffix(Path(relative)))
        if logged_model_id is not None:
            refuse_finalized(logged_model_id)
        # Checked again under the write, with the root's other writes waiting: an upload of
        # ``a/b`` that raced one of ``a``.
        _lock_prefix(prefix)
        refuse_conflicts(prefix, relative)
        found, _ = RunArtifact.objects.select_for_update().update_or_create(
            path=path,
            defaults={
                "team_id": team_id,
                "key": key,
                "sha256": sha256,
                "size_bytes": size,
                "uploaded_at": timezone.now(),
            },
        )
    return found


def open_file(path: str) -> IO[bytes]:
    """The file at ``path``, opened for reading (a verified local copy of the stored object).
    ObjectDoesNotExist when no file is recorded there; the store's ArtifactUnreadable errors
    (tampered 409, store down 503) as they are."""
    found = find(path)
    if found is None:
        raise ObjectDoesNotExist(f"no artifact file {path[:200]!r}")
    return storage.local_path(found.key).open("rb")


def children(path: str) -> list[dict[str, Any]]:
    """MLflow's listing of the folder ``path``: ``{"path": name, "is_dir": True}`` or
    ``{"path": name, "is_dir": False, "file_size": bytes}`` for each entry directly under it,
    sorted by name; [] for a file or nothing."""
    entries: dict[str, dict[str, Any]] = {}
    start = len(path) + 1
    for full, size in _under(path).values_list("path", "size_bytes"):
        head, _, rest = full[start:].partition("/")
        entries[head] = (
            {"path": head, "is_dir": True} if rest else {"path": head, "is_dir": False, "file_size": size}
        )
    return [entries[name] for name in sorted(entries)]


def root_files(prefix: str) -> list[str]:
    """The names of the files directly under ``prefix`` (not in its folders), sorted."""
    return [entry["path"] for entry in children(prefix) if not entry["is_dir"]]


@contextlib.contextmanager
def gathered(path: str) -> Iterator[Path | None]:
    """A local copy of what ``path`` names, for registering it as a model version: the file
    under its own name, or a folder holding every file under it, each a verified copy of its
    stored object, in a temporary folder removed after; None when nothing is recorded there."""
    single = find(path)
    name = path.rsplit("/", 1)[-1]
    files = (
        [(name, single.key)]
        if single
        else [(full[len(path) + 1 :], key) for full, key in _under(path).values_list("path", "key")]
    )
    if not files:
        yield None
        return
    cache = Path(settings.STEWARD_ARTIFACT_CACHE)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=cache, prefix=".gathered-"))
    except OSError as exc:
        raise _scratch_unwritable(exc) from None
    try:
        for relative, key in files:
            target = folder / relative
            stored = storage.local_path(key)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    # Usually the same disk: a link costs nothing, and registration only reads it.
                    os.link(stored, target)
                except OSError:
                    shutil.copyfile(stored, target)
            except OSError as exc:
                # A full or failing scratch disk: the deployment's fault, a 503 that passes.
                raise _scratch_unwritable(exc) from None
        yield folder / name if single else folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _scratch_unwritable(exc: OSError) -> storage.ArtifactStoreUnavailable:
    # The setting's name and the OS's reason only: the message reaches clients, the path is the server's.
    return storage.ArtifactStoreUnavailable(
        "gather", f"the local copies' folder (STEWARD_ARTIFACT_CACHE) cannot be written: {exc.strerror}"
    )


def stored_rows(team_ids: Collection[int] | None) -> Iterator[tuple[int, str, int]]:
    """``(team id, key, size)`` of every recorded run file of ``team_ids`` (None: all teams):
    what the teams' runs hold in the store (``governance.queries.register_storage_holder``)."""
    files = RunArtifact.objects.all()
    if team_ids is not None:
        files = files.filter(team_id__in=team_ids)
    return files.values_list("team_id", "key", "size_bytes").iterator()


def _stored_run_objects(older_than: datetime) -> list[str]:
    """The keys of the stored run objects last written before ``older_than``: the records
    (managed mode) or the files under ``ARTIFACT_ROOT/runs`` (direct mode)."""
    if not storage.is_direct():
        return list(
            StoredObject.objects.filter(
                key__startswith="runs/", created_at__lt=older_than, shredded_at__isnull=True
            ).values_list("key", flat=True)
        )
    root = Path(settings.ARTIFACT_ROOT)
    cutoff = older_than.timestamp()
    return [
        item.relative_to(root).as_posix()
        for item in (root / "runs").rglob("*")
        if item.is_file() and not item.name.startswith(".") and item.stat().st_mtime < cutoff
    ]


def do_collect_unreferenced(*, now: datetime | None = None) -> int:
    """Delete the stored run objects no ``RunArtifact`` refers to any more (the bytes of files
    overwritten by a later upload) once they are ``UNREFERENCED_GRACE`` old; each one under its
    object lock, checked again there, so an upload reusing the same bytes either waits or finds
    them gone and stores them afresh. One ``run_artifacts.collect`` audit event when any was
    deleted. Returns how many. ArtifactStoreUnavailable when the store does not answer (those
    deleted before stay deleted). The daily beat task runs it."""
    cutoff = (now or timezone.now()) - UNREFERENCED_GRACE
    referenced = set(RunArtifact.objects.values_list("key", flat=True).distinct())
    deleted: list[str] = []
    for key in _stored_run_objects(cutoff):
        if key in referenced:
            continue
        with transaction.atomic():
            _lock_object(key)
            if RunArtifact.objects.filter(key=key).exists():
                continue
            if storage.delete(key):
                deleted.append(key)
    if deleted:
        with transaction.atomic():
            record_audit_event(
                actor=None,
                action="run_artifacts.collect",
                object_type="artifactstore",
                object_id="",
                object_repr="tracked runs' unreferenced files",
                after={"deleted": len(deleted), "keys": deleted[:100]},
            )
    return len(deleted)


def adopt_legacy_tree(root: Path) -> int:
    """Store and record the files an earlier Steward kept as a plain tree under ``root``
    (``ARTIFACT_ROOT/mlflow/experiments/...``), each under its team (its experiment's), then
    remove the tree's copy; a path already recorded is left to its record. Returns how many
    files were adopted. Run once by migration ``runners/0013``; files of unknown experiments,
    and those that are no artifact path ``do_store_file`` takes, stay where they are."""
    from runners.models import Experiment

    teams = dict(Experiment.objects.values_list("pk", "team_id"))
    adopted = 0
    for item in sorted((root / "experiments").rglob("*")) if (root / "experiments").is_dir() else ():
        if not item.is_file() or item.is_symlink() or item.name.startswith(".incoming-"):
            continue
        path = item.relative_to(root).as_posix()
        experiment = path.split("/")[1]
        team_id = teams.get(int(experiment)) if experiment.isdigit() else None
        if team_id is None or RunArtifact.objects.filter(path=path).exists():
            continue
        prefix, _, relative = path.partition("/artifacts/")
        try:
            do_store_file(prefix=f"{prefix}/artifacts", relative=relative, team_id=team_id, source=item)
        except ValidationError as exc:
            # Not an artifact path (outside an artifacts/ folder, too long, a file where a folder
            # was recorded): left where it is, like an unknown experiment's file, rather than
            # failing the migration and with it the upgrade.
            logger.warning("adopt_legacy_tree: %s left in place: %s", path[:200], "; ".join(exc.messages))
            continue
        item.unlink()
        adopted += 1
    return adopted
