"""The artifact store (issue 12): envelope encryption at rest, tamper detection, key rotation,
crypto-shredding (GDPR Art. 17) and S3-compatible object storage, through the API, the
registry's actions, the worker's job function and ``manage.py``.

S3: no S3 service can be installed here, so those tests run moto's S3 emulator as a separate
server process (``moto_server``) and Steward talks to it over HTTP with boto3, as it would to
AWS S3 or MinIO. Everything else uses the real filesystem backend.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from governance import storage
from governance.actions.datasets import do_create_dataset
from governance.models import AuditEvent, DatasetVersion, StoredObject
from governance.storage.envelope import CHUNK_BYTES, MAGIC, TAG_BYTES, Keyring
from tests.conftest import ADULT, BIKE_HOURLY, free_port, small_training_spec
from tests.governance.storage_helpers import download as _download
from tests.governance.storage_helpers import forget_copies as _forget_copies
from tests.governance.storage_helpers import register_version as _register
from tests.governance.storage_helpers import stored_path as _stored

BIKE_HEADER = b"instant,dteday,season"


def test_dataset_is_encrypted_at_rest_and_reads_back_whole(keys, settings, client_for, dataset, scientist):
    version = _register(dataset, scientist)

    sealed = _stored(settings, version).read_bytes()
    plain = BIKE_HOURLY.read_bytes()
    assert sealed.startswith(MAGIC)
    assert BIKE_HEADER not in sealed
    assert plain[2000:2040] not in sealed
    record = StoredObject.objects.get(key=version.file)
    assert (record.kek_id, record.sha256, record.size_bytes) == ("k1", version.sha256, len(plain))
    assert record.wrapped_key is not None
    assert len(bytes(record.wrapped_key)) == 12 + 32 + 16
    # Two chunks of 1 MiB plaintext (hour.csv is 1.16 MB), each with its tag, after the header.
    assert len(sealed) == 12 + len(plain) + 2 * TAG_BYTES

    _forget_copies(settings)
    response = _download(client_for(scientist), version)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == plain


def test_a_training_job_reads_encrypted_data_and_its_model_is_encrypted_too(
    keys, settings, dataset, registered_model, scientist
):
    from tests.conftest import run_job

    version = _register(dataset, scientist)
    _forget_copies(settings)
    job = run_job(
        kind="train",
        dataset_version=version,
        registered_model=registered_model,
        spec=small_training_spec(),
        actor=scientist,
    )

    model_version = job.output_model_version
    record = StoredObject.objects.get(key=model_version.artifact)
    assert record.kek_id == "k1"
    assert record.sha256 == model_version.sha256
    assert (Path(settings.ARTIFACT_ROOT) / model_version.artifact).read_bytes().startswith(MAGIC)
    _forget_copies(settings)
    assert hashlib.sha256(model_version.path.read_bytes()).hexdigest() == model_version.sha256


def _scrape(client) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-0123456789")
    assert response.status_code == 200
    return response.content.decode()


def _failures_metric(text: str) -> float:
    line = next(
        row for row in text.splitlines() if row.startswith("steward_artifact_integrity_failures_total ")
    )
    return float(line.split()[1])


def test_a_flipped_byte_a_swap_and_a_truncation_each_fail_naming_the_artifact(
    keys, settings, client_for, dataset, scientist
):
    hour = _register(dataset, scientist)
    adult = _register(dataset, scientist, ADULT, "adult.csv")
    hour_path, adult_path = _stored(settings, hour), _stored(settings, adult)
    hour_bytes, adult_bytes = hour_path.read_bytes(), adult_path.read_bytes()
    client = client_for(scientist)
    settings.STEWARD_METRICS_TOKEN = "scrape-0123456789"
    assert _failures_metric(_scrape(Client())) == 0

    # A flipped byte in the second chunk.
    flipped = bytearray(hour_bytes)
    flipped[12 + CHUNK_BYTES + TAG_BYTES + 100] ^= 0x01
    hour_path.write_bytes(bytes(flipped))
    _forget_copies(settings)
    response = _download(client, hour)
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert hour.file in detail
    assert "chunk 1 does not authenticate" in detail

    # Two objects swapped: each is another artifact's ciphertext under its own data key.
    hour_path.write_bytes(adult_bytes)
    adult_path.write_bytes(hour_bytes)
    _forget_copies(settings)
    assert _download(client, hour).status_code == 409
    swapped = _download(client, adult)
    assert swapped.status_code == 409
    assert adult.file in swapped.json()["detail"]

    # Truncated at a chunk boundary: every remaining chunk authenticates, but the first was not
    # written as the last one.
    adult_path.write_bytes(adult_bytes)
    hour_path.write_bytes(hour_bytes[: 12 + CHUNK_BYTES + TAG_BYTES])
    _forget_copies(settings)
    truncated = _download(client, hour)
    assert truncated.status_code == 409
    assert "ends early (truncated)" in truncated.json()["detail"]

    assert _failures_metric(_scrape(Client())) == 4
    events = AuditEvent.objects.filter(action="artifact.integrity_failure").order_by("pk")
    assert [event.object_repr for event in events] == [hour.file, hour.file, adult.file, hour.file]
    assert StoredObject.objects.get(key=hour.file).integrity_failures == 3
    # Nothing unverified was left where readers look.
    assert not (Path(settings.STEWARD_ARTIFACT_CACHE) / hour.file).exists()

    # Restored from a good copy, it reads again.
    hour_path.write_bytes(hour_bytes)
    assert b"".join(_download(client, hour).streaming_content) == BIKE_HOURLY.read_bytes()


def test_a_job_on_a_tampered_version_fails_with_the_reason(
    keys, settings, dataset, registered_model, scientist
):
    from runners.actions import do_submit_job
    from runners.execute import execute_job

    version = _register(dataset, scientist)
    sealed = bytearray(_stored(settings, version).read_bytes())
    sealed[40] ^= 0x80
    _stored(settings, version).write_bytes(bytes(sealed))
    _forget_copies(settings)

    job = do_submit_job(
        kind="train",
        dataset_version=version,
        registered_model=registered_model,
        spec=small_training_spec(),
        actor=scientist,
    )
    assert execute_job(job.pk) == "failed"
    job.refresh_from_db()
    assert version.file in job.error
    assert "integrity check" in job.error


def test_rotation_rewraps_data_keys_without_touching_the_data(
    keys, settings, tmp_path, client_for, dataset, scientist
):
    first = _register(dataset, scientist)
    second = _register(dataset, scientist, ADULT, "adult.csv")
    ciphertexts = {
        v.file: hashlib.sha256(_stored(settings, v).read_bytes()).hexdigest() for v in (first, second)
    }
    ring_file = tmp_path / "keyring"
    ring_file.write_text(Keyring.new_entry("k2") + "\n" + keys + "\n")
    settings.STEWARD_ARTIFACT_KEYS = ""
    settings.STEWARD_ARTIFACT_KEYS_FILE = str(ring_file)

    out = _call("rotate_artifact_keys")
    assert out == "re-wrapped data keys under k2: 2 from k1\n"
    assert set(StoredObject.objects.values_list("kek_id", flat=True)) == {"k2"}
    assert {
        v.file: hashlib.sha256(_stored(settings, v).read_bytes()).hexdigest() for v in (first, second)
    } == ciphertexts
    event = AuditEvent.objects.get(action="artifact_keys.rewrap")
    assert event.after == {"rewrapped": 2, "from": {"k1": 2}, "to": "k2"}
    assert _call("rotate_artifact_keys") == "re-wrapped data keys under k2: none\n"

    # The old key retired: everything still reads.
    ring_file.write_text(ring_file.read_text().splitlines()[0] + "\n")
    os.utime(ring_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    _forget_copies(settings)
    client = client_for(scientist)
    assert b"".join(_download(client, first).streaming_content) == BIKE_HOURLY.read_bytes()
    assert b"".join(_download(client, second).streaming_content) == ADULT.read_bytes()


def test_a_keyring_without_the_wrapping_key_is_a_clear_refusal(
    keys, settings, client_for, dataset, scientist
):
    version = _register(dataset, scientist)
    settings.STEWARD_ARTIFACT_KEYS = Keyring.new_entry("k9")
    _forget_copies(settings)

    response = _download(client_for(scientist), version)

    assert response.status_code == 409
    assert "the keyring has no key 'k1'" in response.json()["detail"]


def _call(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_erasure_destroys_the_data_key_and_keeps_the_record(
    keys,
    settings,
    client_for,
    dataset,
    scientist,
    owner,
    registered_model,
    django_capture_on_commit_callbacks,
):
    version = _register(dataset, scientist)
    backup = _stored(settings, version).read_bytes()  # a copy made before the erasure (a backup)
    _download(client_for(scientist), version)  # leaves a decrypted copy in this machine's cache

    refused = client_for(scientist).post(
        f"/api/dataset-versions/{version.pk}/erase/", {"reason": "x"}, format="json"
    )
    assert refused.status_code == 403
    blank = client_for(owner).post(
        f"/api/dataset-versions/{version.pk}/erase/", {"reason": "  "}, format="json"
    )
    assert blank.status_code == 400
    assert "reason" in blank.json()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(
            f"/api/dataset-versions/{version.pk}/erase/", {"reason": "subject request #4411"}, format="json"
        )

    assert response.status_code == 200
    body = response.json()
    assert (body["erased_by"], body["erasure_reason"]) == (owner.username, "subject request #4411")
    record = StoredObject.objects.get(key=version.file)
    assert record.wrapped_key is None
    assert record.shredded_at is not None
    assert record.sha256 == version.sha256
    assert not _stored(settings, version).exists()
    assert not (Path(settings.STEWARD_ARTIFACT_CACHE) / version.file).exists()
    event = AuditEvent.objects.get(action="dataset_version.erase")
    assert event.actor_id == owner.pk
    assert event.object_id == str(version.pk)
    assert (event.after["erasure_reason"], event.after["crypto_shredded"]) == ("subject request #4411", True)

    # The backup put back in place is still unreadable: no data key exists for it any more.
    _stored(settings, version).write_bytes(backup)
    gone = _download(client_for(scientist), version)
    assert gone.status_code == 410
    assert "erased" in gone.json()["detail"]
    again = client_for(owner).post(
        f"/api/dataset-versions/{version.pk}/erase/", {"reason": "twice"}, format="json"
    )
    assert again.status_code == 400
    assert "already erased" in again.json()["detail"][0]
    job = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": version.pk,
            "registered_model": registered_model.pk,
            "spec": small_training_spec(),
        },
        format="json",
    )
    assert job.status_code == 400
    assert "was erased" in job.json()["dataset_version"][0]


def test_erasure_without_encryption_deletes_the_file(
    settings, client_for, dataset, scientist, owner, django_capture_on_commit_callbacks
):
    version = _register(dataset, scientist)
    assert _stored(settings, version).read_bytes() == BIKE_HOURLY.read_bytes()  # direct mode: plain

    with django_capture_on_commit_callbacks(execute=True):  # the file goes once the erasure commits
        response = client_for(owner).post(
            f"/api/dataset-versions/{version.pk}/erase/", {"reason": "Art. 17"}, format="json"
        )

    assert response.status_code == 200
    assert not _stored(settings, version).exists()
    assert _download(client_for(scientist), version).status_code == 410
    assert AuditEvent.objects.get(action="dataset_version.erase").after["crypto_shredded"] is False


def test_erasure_takes_the_team_versions_sharing_its_bytes_and_never_another_teams(
    keys, client_for, team, other_team, dataset, scientist, owner, outsider
):
    version = _register(dataset, scientist)
    twin = _register(do_create_dataset(team=team, name="bike-copy", actor=scientist), scientist)
    elsewhere = _register(do_create_dataset(team=other_team, name="bike-fraud", actor=outsider), outsider)
    # Identical bytes are one object within a team, and a separate object in another team.
    assert twin.file == version.file
    assert elsewhere.file != version.file

    done = client_for(owner).post(
        f"/api/dataset-versions/{version.pk}/erase/", {"reason": "Art. 17"}, format="json"
    )

    assert done.status_code == 200
    erased = AuditEvent.objects.filter(action="dataset_version.erase").order_by("object_id")
    assert [(int(e.object_id), e.after["requested_version"]) for e in erased] == [
        (version.pk, version.pk),
        (twin.pk, version.pk),
    ]
    assert DatasetVersion.objects.get(pk=twin.pk).erased_by == owner
    assert StoredObject.objects.get(key=version.file).wrapped_key is None
    assert _download(client_for(outsider), elsewhere).status_code == 200


# --- S3-compatible object storage, against moto's emulator run as a server -------------------


def test_s3_holds_encrypted_objects_uploaded_in_parts(
    s3, keys, settings, tmp_path, client_for, dataset, scientist
):
    import boto3

    # Twelve copies of the hourly rows: about 14 MB, so three parts of 5 MiB.
    body = BIKE_HOURLY.read_bytes()
    header, rows = body.split(b"\n", 1)
    big = tmp_path / "hour-x12.csv"
    big.write_bytes(header + b"\n" + rows * 12)

    version = _register(dataset, scientist, big, "hour-x12.csv")

    client = boto3.client("s3")
    name = f"artifacts/{version.file}"
    head = client.head_object(Bucket="steward-test", Key=name)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    sealed = client.get_object(Bucket="steward-test", Key=name)["Body"].read()
    assert sealed.startswith(MAGIC)
    assert BIKE_HEADER not in sealed
    assert not (Path(settings.ARTIFACT_ROOT) / version.file).exists()  # nothing on the local store
    assert StoredObject.objects.get(key=version.file).location == "s3://steward-test/artifacts"

    _forget_copies(settings)
    response = _download(client_for(scientist), version)
    assert response.status_code == 200
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == version.sha256


def test_s3_down_refuses_the_upload_and_the_read_and_loses_nothing(
    s3, keys, settings, client_for, dataset, scientist
):
    version = _register(dataset, scientist)
    s3.kill()
    s3.wait(timeout=10)
    _forget_copies(settings)

    read = _download(client_for(scientist), version)
    assert read.status_code == 503
    assert version.file in read.json()["detail"]
    assert "s3://steward-test/artifacts" in read.json()["detail"]
    upload = client_for(scientist).post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile("day.csv", b"a,b\n1,2\n3,4\n")},
        format="multipart",
    )
    assert upload.status_code == 503
    assert "did not" in upload.json()["detail"]
    assert list(DatasetVersion.objects.values_list("pk", flat=True)) == [version.pk]
    assert StoredObject.objects.count() == 1


def test_direct_mode_keeps_plain_files_and_no_records(settings, dataset, scientist):
    version = _register(dataset, scientist)

    assert storage.is_direct()
    assert version.path == Path(settings.ARTIFACT_ROOT) / version.file
    assert version.path.read_bytes() == BIKE_HOURLY.read_bytes()
    assert not StoredObject.objects.exists()


def test_the_version_page_shows_encryption_and_erasure_and_managers_erase_there(
    keys, settings, client, dataset, scientist, owner
):
    version = _register(dataset, scientist)
    page = f"/dataset-versions/{version.pk}/"
    client.force_login(scientist)
    shown = client.get(page).content.decode()
    assert "encrypted at rest (AES-256-GCM, data key wrapped by <code>k1</code>)" in shown
    assert "Erase…" not in shown
    assert client.post(f"{page}erase/", {"reason": "no"}).status_code == 403

    client.force_login(owner)
    assert "Erase…" in client.get(page).content.decode()
    assert client.post(f"{page}erase/", {"reason": ""}).status_code == 400
    done = client.post(f"{page}erase/", {"reason": "subject request #12"}, follow=True)

    assert done.status_code == 200
    text = done.content.decode()
    assert f"Erased {version}" in text
    assert "<strong>erased</strong>" in text
    assert "subject request #12" in text
    assert "Download</a>" not in text
    assert DatasetVersion.objects.get(pk=version.pk).erased_by == owner


def test_a_model_directory_is_one_encrypted_object_and_reads_back_file_by_file(
    keys, settings, tmp_path, team, owner, scientist
):
    from governance.actions.model_versions import do_register_model_version_from_artifact
    from governance.actions.registered_models import do_create_registered_model
    from governance.artifacts import open_version_file, version_files

    folder = tmp_path / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (folder / "data" / "weights.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    model = do_create_registered_model(team=team, name="folder-model", owner=owner, actor=scientist)

    version = do_register_model_version_from_artifact(
        model=model, artifact_path=folder, source="test:folder", actor=scientist
    )

    record = StoredObject.objects.get(key=version.artifact)
    assert record.is_directory
    assert record.kek_id == "k1"
    sealed = (Path(settings.ARTIFACT_ROOT) / version.artifact).read_bytes()
    assert sealed.startswith(MAGIC)
    assert b"python_function" not in sealed
    _forget_copies(settings)
    assert version_files(version) == [("MLmodel", 31), ("data/weights.bin", 2 * 1024 * 1024)]
    with open_version_file(version, "data/weights.bin") as handle:
        assert handle.read() == bytes(range(256)) * 8192


# --- Vault's transit engine as the key-encryption key (a stand-in server: see vault_standin) ----

VAULT_TOKEN = "steward-vault-token"


@pytest.fixture
def vault(settings, monkeypatch):
    """``tests/vault_standin.py`` as a server process (no Vault server can be installed here), a
    derived transit key ``steward-artifacts`` made through hvac, and Steward configured to wrap
    data keys with it. Yields ``(server process, hvac client)``."""
    import hvac
    import requests

    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our interpreter running the stand-in
        [sys.executable, str(Path(__file__).parent.parent / "vault_standin.py"), str(port), VAULT_TOKEN],
    )
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("VAULT_TOKEN", VAULT_TOKEN)
    client = hvac.Client(url=f"http://127.0.0.1:{port}", token=VAULT_TOKEN)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.secrets.transit.create_key(name="steward-artifacts", derived=True)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.1)
    settings.STEWARD_ARTIFACT_VAULT_KEY = "steward-artifacts"
    yield server, client
    server.kill()
    server.wait(timeout=10)


def test_vault_wraps_the_data_keys_and_rotates_them_without_the_data(
    vault, settings, client_for, dataset, scientist
):
    _server, vault_client = vault
    version = _register(dataset, scientist)
    record = StoredObject.objects.get(key=version.file)
    assert record.kek_id == "vault:steward-artifacts"
    assert bytes(record.wrapped_key).startswith(b"vault:v1:")
    sealed = _stored(settings, version).read_bytes()
    assert sealed.startswith(MAGIC)
    _forget_copies(settings)
    assert b"".join(_download(client_for(scientist), version).streaming_content) == BIKE_HOURLY.read_bytes()

    vault_client.secrets.transit.rotate_key(name="steward-artifacts")
    assert (
        _call("rotate_artifact_keys")
        == "re-wrapped data keys under vault:steward-artifacts: 1 from vault:steward-artifacts\n"
    )
    record.refresh_from_db()
    assert bytes(record.wrapped_key).startswith(b"vault:v2:")
    assert _stored(settings, version).read_bytes() == sealed
    assert _call("rotate_artifact_keys") == "re-wrapped data keys under vault:steward-artifacts: none\n"
    _forget_copies(settings)
    assert b"".join(_download(client_for(scientist), version).streaming_content) == BIKE_HOURLY.read_bytes()


def test_a_vault_wrapped_key_moved_to_another_artifact_does_not_unwrap(
    vault, settings, client_for, dataset, scientist
):
    hour = _register(dataset, scientist)
    adult = _register(dataset, scientist, ADULT, "adult.csv")
    StoredObject.objects.filter(key=adult.file).update(
        wrapped_key=StoredObject.objects.get(key=hour.file).wrapped_key
    )
    _forget_copies(settings)

    response = _download(client_for(scientist), adult)

    assert response.status_code == 409
    assert "does not unwrap in Vault" in response.json()["detail"]
    assert StoredObject.objects.get(key=adult.file).integrity_failures == 1


def test_vault_down_or_refusing_loses_nothing(vault, settings, client_for, dataset, scientist, monkeypatch):
    server, _client = vault
    version = _register(dataset, scientist)
    monkeypatch.setenv("VAULT_TOKEN", "a-wrong-token")
    _forget_copies(settings)
    refused = _download(client_for(scientist), version)
    assert refused.status_code == 503
    assert "Forbidden" in refused.json()["detail"]

    monkeypatch.setenv("VAULT_TOKEN", VAULT_TOKEN)
    server.kill()
    server.wait(timeout=10)
    down = _download(client_for(scientist), version)
    assert down.status_code == 503
    assert "did not answer transit/decrypt/steward-artifacts" in down.json()["detail"]
    upload = client_for(scientist).post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile("day.csv", b"a,b\n1,2\n3,4\n")},
        format="multipart",
    )
    assert upload.status_code == 503
    assert list(DatasetVersion.objects.values_list("pk", flat=True)) == [version.pk]
    assert StoredObject.objects.count() == 1


def test_the_model_version_page_says_how_its_artifact_is_kept(keys, client, team, owner, scientist, tmp_path):
    from governance.actions.model_versions import do_register_model_version_from_artifact
    from governance.actions.registered_models import do_create_registered_model

    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights" * 100)
    model = do_create_registered_model(team=team, name="kept", owner=owner, actor=scientist)
    version = do_register_model_version_from_artifact(
        model=model, artifact_path=artifact, source="test:kept", actor=scientist
    )
    client.force_login(scientist)

    page = client.get(f"/model-versions/{version.pk}/").content.decode()

    assert "encrypted at rest (AES-256-GCM, data key wrapped by <code>k1</code>)" in page
    assert "<dt>Tier</dt><dd>hot" in page
    assert "model versions have no retention period" in page


def test_delete_prefix_removes_a_folder_s_objects_records_and_cached_copies_and_nothing_else(
    db, keys, s3, settings, tmp_path
):
    import boto3

    source = tmp_path / "weights.bin"
    source.write_bytes(b"w" * 5000)
    sha = storage.file_sha256(source)
    taken = ["checkpoints/job-1/epoch-00001.pt", "checkpoints/job-1/epoch-00002.pt"]
    kept = "checkpoints/job-12/epoch-00001.pt"  # job-1/ is a folder: job-12's are not under it
    for key in [*taken, kept]:
        storage.put_file(source, key, sha)
    cached = storage.local_path(taken[1])
    assert cached.read_bytes() == source.read_bytes()

    assert storage.delete_prefix("checkpoints/job-1/") == 2

    assert list(StoredObject.objects.values_list("key", flat=True)) == [kept]
    assert not cached.exists()
    listed = boto3.client("s3").list_objects_v2(Bucket="steward-test")["Contents"]
    assert [item["Key"] for item in listed] == [f"artifacts/{kept}"]
    with pytest.raises(storage.ArtifactMissing):
        storage.local_path(taken[0])
    assert storage.local_path(kept).read_bytes() == source.read_bytes()
    assert storage.delete(taken[0]) is False  # already gone: nothing to delete, no error
    with pytest.raises(ValueError, match="ending with '/'"):
        storage.delete_prefix("checkpoints/job-1")


def test_delete_prefix_in_direct_mode_removes_the_folder_under_the_artifact_root(db, settings):
    folder = settings.ARTIFACT_ROOT / "checkpoints" / "job-3"
    folder.mkdir(parents=True)
    (folder / "epoch-00004.pt").write_bytes(b"plain")
    other = settings.ARTIFACT_ROOT / "checkpoints" / "job-30"
    other.mkdir()
    (other / "epoch-00001.pt").write_bytes(b"plain")

    assert storage.delete_prefix("checkpoints/job-3/") == 1

    assert not folder.exists()
    assert (other / "epoch-00001.pt").read_bytes() == b"plain"
    assert StoredObject.objects.count() == 0
