"""Training checkpoints through the artifact store in managed mode (issue 12: every artifact on
disk and in object storage is ciphertext).

The jobs run for real (``execute_job``, its child process, torch); the ``keys`` fixture turns
envelope encryption on with the filesystem backend rooted at ``ARTIFACT_ROOT``, so the stored
objects' raw bytes are read where an attacker with the disk would read them.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from governance.models import AuditEvent, ModelVersion, StoredObject
from governance.storage.envelope import MAGIC
from runners.execute import execute_job
from runners.joblog import whole_log
from runners.models import Job, JobState
from tests.conftest import submit_training
from tests.runners.test_child_lost import ChildKiller

# The first bytes of a file torch.save writes (a zip archive).
TORCH_ZIP_MAGIC = b"PK"


def _objects(root: Path, job_id: int) -> list[Path]:
    """The job's checkpoint objects in the filesystem backend (rooted at ARTIFACT_ROOT)."""
    return sorted((root / "checkpoints" / f"job-{job_id}").glob("epoch-*.pt"))


class PlaintextWatch:
    """Reads every file under ``root`` every few milliseconds while a job runs, from a thread:
    ``plaintext`` names those that start like a torch file, ``objects`` the first bytes of each
    checkpoint object seen (a thread cannot see the test's uncommitted rows: files only)."""

    def __init__(self, root: Path, job_id: int):
        self.root, self.job_id = root, job_id
        self.plaintext: set[str] = set()
        self.objects: dict[str, bytes] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.stop.is_set():
            for path in self.root.rglob("*"):
                try:
                    with path.open("rb") as handle:
                        head = handle.read(8)
                except OSError:  # a folder, or deleted since it was listed
                    continue
                if head.startswith(TORCH_ZIP_MAGIC):
                    self.plaintext.add(str(path.relative_to(self.root)))
                if path in _objects(self.root, self.job_id):
                    self.objects[path.name] = head
            self.stop.wait(0.005)

    def __enter__(self) -> PlaintextWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_managed_checkpoints_are_stored_encrypted_and_deleted_after_success(
    keys, dataset_version, registered_model, scientist, training_spec, settings
):
    root = Path(settings.ARTIFACT_ROOT)
    spec = training_spec | {"epochs": 3, "checkpoint_every": 1}
    job = submit_training(dataset_version, registered_model, scientist, spec)

    with PlaintextWatch(root, job.pk) as watch:
        assert execute_job(job.pk) == JobState.SUCCEEDED

    job.refresh_from_db()
    lines = job.log_tail.splitlines()
    assert [line for line in lines if line.startswith("checkpoint")] == [
        "checkpoint saved at epoch 1",
        "checkpoint saved at epoch 2",
    ]
    # Stored as ciphertext where the direct mode's plaintext folder was; never a torch file there.
    assert watch.objects, "no checkpoint object was seen while the job ran"
    assert set(watch.objects) <= {"epoch-00001.pt", "epoch-00002.pt"}
    assert all(head == MAGIC for head in watch.objects.values()), watch.objects
    assert watch.plaintext == set()
    # The version is registered: the checkpoints' objects, records and cached copies are gone.
    assert _objects(root, job.pk) == []
    assert not StoredObject.objects.filter(key__startswith=f"checkpoints/job-{job.pk}/").exists()
    assert list((Path(settings.STEWARD_ARTIFACT_CACHE) / "checkpoints").rglob("*.pt")) == []
    assert ModelVersion.objects.get().source_job_id == job.pk


def _first_attempt_killed_after_a_stored_checkpoint(job: Job, root: Path) -> None:
    """Run the job's first attempt and kill its child once a checkpoint object exists."""
    with ChildKiller(job.pk, lambda: bool(_objects(root, job.pk)), times=1) as killer:
        assert execute_job(job.pk) == JobState.QUEUED
    assert killer.kills == 1


@pytest.fixture
def resumable_spec(training_spec) -> dict:
    # As test_child_lost's: the killer has ~25 epochs between the first checkpoint and the end.
    return training_spec | {"epochs": 30, "batch_size": 128, "checkpoint_every": 5}


def test_a_new_attempt_resumes_from_the_encrypted_stored_checkpoint_on_a_machine_without_a_cache(
    keys, dataset_version, registered_model, scientist, resumable_spec, settings
):
    root = Path(settings.ARTIFACT_ROOT)
    job = submit_training(dataset_version, registered_model, scientist, resumable_spec)
    _first_attempt_killed_after_a_stored_checkpoint(job, root)

    # One recorded checkpoint (older ones deleted as newer ones are stored), ciphertext, its data
    # key wrapped by k1; no plaintext of it anywhere under ARTIFACT_ROOT.
    record = StoredObject.objects.get(key__startswith=f"checkpoints/job-{job.pk}/")
    epoch = int(record.key.rsplit("-", 1)[1].removesuffix(".pt"))
    assert epoch % 5 == 0
    assert (record.kek_id, bool(record.wrapped_key)) == ("k1", True)
    raw = (root / record.key).read_bytes()
    assert raw.startswith(MAGIC)
    assert not raw.startswith(TORCH_ZIP_MAGIC)
    assert [
        path for path in root.rglob("*") if path.is_file() and path.read_bytes()[:2] == TORCH_ZIP_MAGIC
    ] == []
    # The next delivery may be another machine: nothing in this one's cache helps it.
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)

    assert execute_job(job.pk) == JobState.SUCCEEDED

    job.refresh_from_db()
    log = "".join(whole_log(job.pk))
    assert f"resuming from epoch {epoch} (its checkpoint" in log
    second = log.split(f"resuming from epoch {epoch}", 1)[1]
    assert f"epoch {epoch}/30 " not in second
    assert f"epoch {epoch + 1}/30 " in second
    assert [r["epoch"] for r in job.history] == list(range(1, 31))
    assert not StoredObject.objects.filter(key__startswith=f"checkpoints/job-{job.pk}/").exists()
    assert _objects(root, job.pk) == []


def test_a_tampered_stored_checkpoint_is_refused_and_the_attempt_starts_from_epoch_1(
    keys, dataset_version, registered_model, scientist, resumable_spec, settings
):
    root = Path(settings.ARTIFACT_ROOT)
    job = submit_training(dataset_version, registered_model, scientist, resumable_spec)
    _first_attempt_killed_after_a_stored_checkpoint(job, root)
    record = StoredObject.objects.get(key__startswith=f"checkpoints/job-{job.pk}/")
    stored = root / record.key
    raw = bytearray(stored.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit in the ciphertext
    stored.write_bytes(bytes(raw))
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)

    assert execute_job(job.pk) == JobState.SUCCEEDED

    job.refresh_from_db()
    log = "".join(whole_log(job.pk))
    assert f"checkpoint {record.key} unreadable (its stored bytes fail their integrity check: " in log, log
    assert "; starting at epoch 1" in log
    assert "resuming from epoch" not in log
    assert "epoch 1/30 " in log.split("starting at epoch 1", 1)[1]
    assert [r["epoch"] for r in job.history] == list(range(1, 31))
    failure = AuditEvent.objects.get(action="artifact.integrity_failure")
    assert failure.object_repr == record.key
    assert ModelVersion.objects.get().source_job_id == job.pk
    assert not StoredObject.objects.filter(key__startswith=f"checkpoints/job-{job.pk}/").exists()


def test_a_checkpoint_the_store_does_not_take_is_logged_and_the_training_goes_on(
    keys, dataset_version, registered_model, scientist, training_spec, settings
):
    root = Path(settings.ARTIFACT_ROOT)
    # The filesystem backend cannot make its checkpoints/ folder: a file has that name.
    (root / "checkpoints").write_bytes(b"not a folder")
    job = submit_training(dataset_version, registered_model, scientist, training_spec | {"epochs": 2})

    assert execute_job(job.pk) == JobState.SUCCEEDED

    job.refresh_from_db()
    line = next(line for line in job.log_tail.splitlines() if line.startswith("checkpoint"))
    assert line.startswith(
        f"checkpoint at epoch 1 not stored: the artifact store file://{root} did not take it"
    )
    assert not StoredObject.objects.filter(key__startswith="checkpoints/").exists()
    assert ModelVersion.objects.get().source_job_id == job.pk
