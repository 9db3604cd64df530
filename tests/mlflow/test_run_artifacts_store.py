"""A tracked run's files go through the artifact store (issue 12): logged with the real ``mlflow``
client, they are ciphertext at rest on the filesystem and in S3 (moto's S3 emulator run as a
server process: no S3 service can be installed here), they list, download and register as
before, and a tampered one is refused naming the artifact. Files an earlier Steward kept as a
plain tree are adopted into the store."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
import requests
from django.utils import timezone

from governance.models import AuditEvent, ModelVersion, StoredObject
from governance.storage.envelope import Keyring
from runners import run_artifacts
from runners.models import Job, RunArtifact
from tests.mlflow.artifact_helpers import run_file, run_path

NOTES = b"trained on the first 400 hours; contains the marker steward-plaintext-canary\n"


def _log_run(mlflow_env, tmp_path: Path, sklearn_model_dir: Path) -> str:
    import mlflow

    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOTES)
    mlflow.set_experiment("stored-artifacts")
    with mlflow.start_run(run_name="stored") as run:
        mlflow.log_artifact(str(notes))
        mlflow.log_artifacts(str(sklearn_model_dir), artifact_path="model")
    return run.info.run_id


def _plain_files(root: Path) -> list[Path]:
    """The files under ``root`` whose bytes hold the canary or a model file's plaintext."""
    found = []
    for item in root.rglob("*"):
        if item.is_file() and b"steward-plaintext-canary" in item.read_bytes():
            found.append(item)
    return found


def test_a_runs_files_are_ciphertext_at_rest_and_read_back_register_and_list(
    keys, settings, mlflow_env, mlflow_client, tmp_path, sklearn_model_dir
):
    import mlflow

    run_id = _log_run(mlflow_env, tmp_path, sklearn_model_dir)
    job = Job.objects.get(pk=int(run_id))

    # Every file is one encrypted object; no plaintext sits under ARTIFACT_ROOT.
    notes = RunArtifact.objects.get(path=run_path(job, "notes.txt"))
    record = StoredObject.objects.get(key=notes.key)
    assert record.wrapped_key is not None
    assert record.kek_id == "k1"
    raw = (Path(settings.ARTIFACT_ROOT) / notes.key).read_bytes()
    assert NOTES not in raw
    assert len(raw) > len(NOTES)
    assert _plain_files(Path(settings.ARTIFACT_ROOT)) == []
    model_files = sorted(
        p.relative_to(sklearn_model_dir).as_posix() for p in sklearn_model_dir.rglob("*") if p.is_file()
    )
    stored = sorted(
        path.split("/artifacts/model/", 1)[1]
        for path in RunArtifact.objects.filter(path__contains="/artifacts/model/").values_list(
            "path", flat=True
        )
    )
    assert stored == model_files
    pickled = (sklearn_model_dir / "model.pkl").read_bytes()
    for key in RunArtifact.objects.values_list("key", flat=True):
        assert pickled not in (Path(settings.ARTIFACT_ROOT) / key).read_bytes()

    # Read back through the client, after this machine's copies are gone (another web node).
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)
    assert sorted(f.path for f in mlflow_client.list_artifacts(run_id)) == ["model", "notes.txt"]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="notes.txt", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_bytes() == NOTES

    # Registered from the run: the version holds the model's files, and loads.
    mlflow_client.create_registered_model("stored-model")
    made = mlflow_client.create_model_version("stored-model", f"runs:/{run_id}/model", run_id=run_id)
    version = ModelVersion.objects.get(model__name="stored-model", version=int(made.version))
    assert version.source_job_id == job.pk
    loaded = mlflow.pyfunc.load_model("models:/stored-model/1")
    assert [round(float(v), 6) for v in loaded.predict([[3.0]])] == [7.0]
    # The gathered copy used to register it is gone.
    assert not list(Path(settings.STEWARD_ARTIFACT_CACHE).glob(".gathered-*"))


def test_a_tampered_run_file_is_refused_naming_it_and_counted(
    keys, settings, mlflow_env, mlflow_client, steward_server, tmp_path, sklearn_model_dir
):
    run_id = _log_run(mlflow_env, tmp_path, sklearn_model_dir)
    job = Job.objects.get(pk=int(run_id))
    notes = RunArtifact.objects.get(path=run_path(job, "notes.txt"))
    stored = Path(settings.ARTIFACT_ROOT) / notes.key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)

    answer = requests.get(
        f"{steward_server.url}/api/2.0/mlflow-artifacts/artifacts/{run_path(job, 'notes.txt')}",
        headers={"Authorization": f"Bearer {mlflow_env['MLFLOW_TRACKING_TOKEN']}"},
        timeout=30,
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["error_code"] == "RESOURCE_CONFLICT"
    assert notes.key in answer.json()["message"]
    assert StoredObject.objects.get(key=notes.key).integrity_failures == 1
    # Registering a folder holding a tampered file is refused the same way, and registers nothing.
    model_file = RunArtifact.objects.get(path=run_path(job, "model/MLmodel"))
    target = Path(settings.ARTIFACT_ROOT) / model_file.key
    target.write_bytes(target.read_bytes()[:-5])
    mlflow_client.create_registered_model("tampered-model")
    created = requests.post(
        f"{steward_server.url}/api/2.0/mlflow/model-versions/create",
        headers={"Authorization": f"Bearer {mlflow_env['MLFLOW_TRACKING_TOKEN']}"},
        json={"name": "tampered-model", "source": f"runs:/{run_id}/model", "run_id": run_id},
        timeout=30,
    )
    assert created.status_code == 409, created.text
    assert model_file.key in created.json()["message"]
    assert not ModelVersion.objects.filter(model__name="tampered-model").exists()


def test_a_runs_files_go_to_s3_encrypted(
    keys, s3, settings, mlflow_env, mlflow_client, tmp_path, sklearn_model_dir
):
    import mlflow

    run_id = _log_run(mlflow_env, tmp_path, sklearn_model_dir)
    job = Job.objects.get(pk=int(run_id))
    notes = RunArtifact.objects.get(path=run_path(job, "notes.txt"))
    body = boto3.client("s3").get_object(Bucket="steward-test", Key=f"artifacts/{notes.key}")["Body"].read()
    assert NOTES not in body
    # Nothing of the run sits on this machine's ARTIFACT_ROOT: the bucket holds it.
    assert not (Path(settings.ARTIFACT_ROOT) / "runs").exists()
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="notes.txt", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_bytes() == NOTES
    assert run_file(job, "notes.txt") == NOTES


def test_an_earlier_plain_tree_is_adopted_into_the_store(keys, settings, mlflow_env, mlflow_client, tmp_path):
    """What migration runners/0013 does on an upgraded installation."""
    experiment_id = mlflow_client.create_experiment("legacy")
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    job = Job.objects.get(pk=int(run_id))
    legacy = Path(settings.ARTIFACT_ROOT) / "mlflow"
    old_file = legacy / run_path(job, "plots/loss.csv")
    old_file.parent.mkdir(parents=True)
    old_file.write_bytes(NOTES)
    stray = legacy / "experiments" / "999999" / "1" / "artifacts" / "orphan.txt"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"no such experiment")

    assert run_artifacts.adopt_legacy_tree(legacy) == 1

    assert not old_file.exists()
    assert stray.exists()  # an unknown experiment's file is left where it is
    assert [f.path for f in mlflow_client.list_artifacts(run_id, "plots")] == ["plots/loss.csv"]
    assert run_file(job, "plots/loss.csv") == NOTES
    assert _plain_files(Path(settings.ARTIFACT_ROOT) / "runs") == []
    # Run again (a migration re-applied): nothing twice.
    assert run_artifacts.adopt_legacy_tree(legacy) == 0


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_an_overwritten_files_old_bytes_are_collected_a_day_later_and_nothing_else(
    encrypted, settings, mlflow_env, mlflow_client, tmp_path
):
    if encrypted:
        settings.STEWARD_ARTIFACT_KEYS = Keyring.new_entry("k1")
    experiment_id = mlflow_client.create_experiment("overwrites")
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    job = Job.objects.get(pk=int(run_id))
    drafts = {}
    for name in ("first", "second", "third"):
        drafts[name] = tmp_path / name / "notes.txt"
        drafts[name].parent.mkdir()
        drafts[name].write_bytes(f"{name} draft\n".encode())

    def key_of(relative: str) -> str:
        return RunArtifact.objects.get(path=run_path(job, relative)).key

    mlflow_client.log_artifact(run_id, str(drafts["first"]))
    mlflow_client.log_artifact(run_id, str(drafts["first"]), "kept")  # the same bytes elsewhere
    first = key_of("notes.txt")
    mlflow_client.log_artifact(run_id, str(drafts["second"]))  # replaces notes.txt
    second = key_of("notes.txt")
    mlflow_client.log_artifact(run_id, str(drafts["third"]))  # replaces it again
    assert first != second != key_of("notes.txt")

    # Within a day nothing goes: an upload may be between storing its bytes and its row.
    assert run_artifacts.do_collect_unreferenced() == 0
    later = timezone.now() + timedelta(days=2)

    # The second draft's bytes are referenced no more; the first's still are (kept/).
    assert run_artifacts.do_collect_unreferenced(now=later) == 1

    assert not (Path(settings.ARTIFACT_ROOT) / second).exists()
    assert not StoredObject.objects.filter(key=second).exists()
    assert run_file(job, "notes.txt") == b"third draft\n"
    assert run_file(job, "kept/notes.txt") == b"first draft\n"
    assert AuditEvent.objects.get(action="run_artifacts.collect").after == {"deleted": 1, "keys": [second]}
    # The same bytes uploaded again are stored afresh, and kept while referenced.
    mlflow_client.log_artifact(run_id, str(drafts["second"]), "back")
    assert run_artifacts.do_collect_unreferenced(now=later) == 0
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)
    assert run_file(job, "back/notes.txt") == b"second draft\n"
