"""The artifact store (issue 12) under attack and fault: crafted objects, a broken keyring, a
read racing an erasure, leaked file descriptors, a rotation that meets a damaged record, a
switch from plain files to managed mode, and an erasure that tells one team about another's
data. Through the API, the registry's actions, ``governance.storage`` and ``manage.py``.
"""

from __future__ import annotations

import os
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from governance import storage
from governance.actions.datasets import (
    do_create_dataset,
    do_erase_dataset_version,
)
from governance.models import DatasetVersion, StoredObject, TeamRole
from governance.storage import envelope
from governance.storage.backends import FilesystemBackend
from governance.storage.envelope import CHUNK_BYTES, MAGIC, TAG_BYTES, Keyring
from tests.conftest import ADULT, BIKE_HOURLY
from tests.governance.storage_helpers import download as _download
from tests.governance.storage_helpers import forget_copies as _forget_copies
from tests.governance.storage_helpers import register_version as _register

# --- Crafted objects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "craft",
    [
        "huge chunk size",
        "a 64 MiB chunk size",
        "chunk size changed",
        "zero length",
        "trailing bytes",
        "chunks reordered",
        "last chunk dropped",
    ],
)
def test_a_crafted_object_is_refused_and_nothing_is_placed(
    keys, settings, client_for, dataset, scientist, craft
):
    version = _register(dataset, scientist)
    stored = Path(settings.ARTIFACT_ROOT) / version.file
    sealed = stored.read_bytes()
    header, body = sealed[:12], sealed[12:]
    record = CHUNK_BYTES + TAG_BYTES
    crafted = {
        "huge chunk size": header[:8] + (0xFFFFFFFF).to_bytes(4, "big") + body,
        # Refused from the header alone, before a 64 MiB buffer is read.
        "a 64 MiB chunk size": header[:8] + (64 * 1024 * 1024).to_bytes(4, "big") + body,
        "chunk size changed": header[:8] + (CHUNK_BYTES // 2).to_bytes(4, "big") + body,
        "zero length": b"",
        "trailing bytes": sealed + b"\0" * 17,
        "chunks reordered": header + body[record:] + body[:record],
        "last chunk dropped": header + body[:record],
    }[craft]
    stored.write_bytes(crafted)
    _forget_copies(settings)

    response = _download(client_for(scientist), version)

    assert response.status_code == 409
    assert version.file in response.json()["detail"]
    assert not (Path(settings.STEWARD_ARTIFACT_CACHE) / version.file).exists()


def test_an_empty_artifact_round_trips_and_an_appended_tag_is_refused(tmp_path):
    import io

    key, aad = envelope.new_data_key(), b"binding"
    sealed = io.BytesIO()
    envelope.encrypt_stream(io.BytesIO(b""), sealed, key, aad)
    out = io.BytesIO()
    assert envelope.decrypt_stream(io.BytesIO(sealed.getvalue()), out, key, aad) == 0
    with pytest.raises(envelope.EnvelopeError):
        envelope.decrypt_stream(
            io.BytesIO(sealed.getvalue() + sealed.getvalue()[12:]), io.BytesIO(), key, aad
        )


# --- A broken keyring: the web tier answers 503, never a 500, and never echoes key material ------


@pytest.mark.parametrize("broken", ["bad entry", "missing file", "short key"])
def test_a_broken_keyring_file_is_a_503_naming_no_key_material(
    keys, settings, tmp_path, client_for, dataset, scientist, broken
):
    version = _register(dataset, scientist)
    _forget_copies(settings)
    secret = keys.split(":", 1)[1]
    ring_file = tmp_path / "keyring"
    if broken == "bad entry":
        ring_file.write_text("k.1:" + secret + "\n")  # an id with a dot: refused by the parser
    elif broken == "short key":
        ring_file.write_text(secret + "\n")  # the id forgotten: the key alone
    settings.STEWARD_ARTIFACT_KEYS = ""
    settings.STEWARD_ARTIFACT_KEYS_FILE = str(ring_file)
    client = client_for(scientist)

    download = _download(client, version)
    with BIKE_HOURLY.open("rb") as handle:
        upload = client.post(
            "/api/dataset-versions/", {"dataset": dataset.pk, "file": handle}, format="multipart"
        )

    for response in (download, upload):
        assert response.status_code == 503, response.content[:300]
        detail = str(response.json())
        assert "key-encryption key" in detail
        assert secret[:8] not in detail
    ready = client.get("/health/ready/", HTTP_ACCEPT="application/json")
    assert ready.status_code == 503
    assert "key-encryption keys cannot be read" in ready.content.decode()


# --- Descriptors, races, rotation ----------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_reads_of_a_missing_object_leak_no_file_descriptor(keys, settings, client_for, dataset, scientist):
    version = _register(dataset, scientist)
    (Path(settings.ARTIFACT_ROOT) / version.file).unlink()  # deleted behind Steward's back
    _forget_copies(settings)
    client = client_for(scientist)
    assert _download(client, version).status_code == 409  # warm up: imports, connections
    before = _open_fds()

    for _ in range(25):
        assert _download(client, version).status_code == 409

    assert _open_fds() - before < 5


@pytest.mark.django_db(transaction=True)
def test_a_read_racing_an_erasure_leaves_no_plaintext_copy(
    keys, settings, monkeypatch, dataset, scientist, owner
):
    version = _register(dataset, scientist)
    _forget_copies(settings)
    opened, erased = threading.Event(), threading.Event()
    real_open = FilesystemBackend.open

    def open_then_wait(self, key):
        # The reader has the object open (and its record, with the data key) when the erasure commits.
        handle = real_open(self, key)
        opened.set()
        erased.wait(timeout=30)
        return handle

    monkeypatch.setattr(FilesystemBackend, "open", open_then_wait)
    outcome: list[object] = []

    def read() -> None:
        from django.db import connection

        try:
            outcome.append(storage.local_path(version.file))
        except storage.ArtifactUnreadable as exc:
            outcome.append(exc)
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    assert opened.wait(timeout=30)
    do_erase_dataset_version(dataset_version=version, reason="subject request", actor=owner)
    erased.set()
    reader.join(timeout=30)

    assert isinstance(outcome[0], storage.ArtifactErased)
    assert not (Path(settings.STEWARD_ARTIFACT_CACHE) / version.file).exists()


def test_another_machines_cached_copy_is_not_served_after_an_erasure(
    keys, settings, tmp_path, dataset, scientist, owner
):
    version = _register(dataset, scientist)
    settings.STEWARD_ARTIFACT_CACHE = tmp_path / "worker-cache"  # a worker read it first
    assert storage.local_path(version.file).read_bytes() == BIKE_HOURLY.read_bytes()
    settings.STEWARD_ARTIFACT_CACHE = tmp_path / "web-cache"  # the web tier erases it
    do_erase_dataset_version(dataset_version=version, reason="subject request", actor=owner)
    settings.STEWARD_ARTIFACT_CACHE = tmp_path / "worker-cache"

    with pytest.raises(storage.ArtifactErased):
        storage.local_path(version.file)
    assert not (tmp_path / "worker-cache" / version.file).exists()


def test_rotation_meeting_a_damaged_wrapped_key_says_which_and_rotates_the_rest(
    keys, settings, tmp_path, dataset, scientist
):
    first = _register(dataset, scientist)
    second = _register(dataset, scientist, ADULT, "adult.csv")
    damaged = StoredObject.objects.get(key=first.file)
    wrapped = bytearray(bytes(damaged.wrapped_key))
    wrapped[-1] ^= 0x01
    StoredObject.objects.filter(pk=damaged.pk).update(wrapped_key=bytes(wrapped))
    ring_file = tmp_path / "keyring"
    ring_file.write_text(Keyring.new_entry("k2") + "\n" + keys + "\n")
    settings.STEWARD_ARTIFACT_KEYS = ""
    settings.STEWARD_ARTIFACT_KEYS_FILE = str(ring_file)

    with pytest.raises(CommandError) as refused:
        call_command("rotate_artifact_keys", "--batch", "1")

    assert first.file in str(refused.value)
    assert StoredObject.objects.get(key=second.file).kek_id == "k2"
    assert StoredObject.objects.get(key=first.file).kek_id == "k1"


# --- Erasure: who may, what a queued job then does, the same bytes again ------------------------


def test_erasure_by_a_scientist_is_403_and_by_another_team_404_without_its_name(
    keys, client_for, dataset, scientist, outsider, admin, other_team
):
    from tests.conftest import _member

    version = _register(dataset, scientist)
    foreign_manager = _member(admin, other_team, "fiona", TeamRole.MODEL_OWNER)
    url = f"/api/dataset-versions/{version.pk}/erase/"

    assert client_for(scientist).post(url, {"reason": "x"}, format="json").status_code == 403
    for stranger in (outsider, foreign_manager):
        response = client_for(stranger).post(url, {"reason": "x"}, format="json")
        assert response.status_code == 404
        assert dataset.name not in response.content.decode()
        browser = Client()
        browser.force_login(stranger)
        ui = browser.post(f"/dataset-versions/{version.pk}/erase/", {"reason": "x"})
        assert ui.status_code == 404
    assert StoredObject.objects.get(key=version.file).shredded_at is None


def test_a_queued_job_on_an_erased_version_fails_naming_the_erasure(
    keys, settings, dataset, registered_model, scientist, owner
):
    from runners.actions import do_submit_job
    from runners.execute import execute_job
    from tests.conftest import small_training_spec

    version = _register(dataset, scientist)
    job = do_submit_job(
        kind="train",
        dataset_version=version,
        registered_model=registered_model,
        spec=small_training_spec(),
        actor=scientist,
    )
    do_erase_dataset_version(dataset_version=version, reason="subject request", actor=owner)

    assert execute_job(job.pk) == "failed"
    job.refresh_from_db()
    assert "erased" in job.error


def test_the_same_bytes_registered_after_an_erasure_are_a_new_copy_and_the_erased_version_stays_gone(
    keys, settings, client_for, dataset, scientist, owner
):
    erased = _register(dataset, scientist)
    do_erase_dataset_version(dataset_version=erased, reason="subject request", actor=owner)

    again = _register(dataset, scientist)

    assert again.file == erased.file
    client = client_for(scientist)
    assert b"".join(_download(client, again).streaming_content) == BIKE_HOURLY.read_bytes()
    assert _download(client, erased).status_code == 410


def test_an_erasure_refusal_tells_nothing_about_another_teams_data(
    keys, client_for, dataset, scientist, admin, other_team
):
    from tests.conftest import _member

    _register(dataset, scientist)  # the victim team's data
    prober = _member(admin, other_team, "fiona", TeamRole.MODEL_OWNER)
    guess = _register(do_create_dataset(team=other_team, name="guess", actor=prober), prober)

    response = client_for(prober).post(
        f"/api/dataset-versions/{guess.pk}/erase/", {"reason": "probe"}, format="json"
    )

    assert response.status_code == 200  # as it would be were the bytes nobody else's
    # Dataset bytes are content-addressed per team: the victim's copy is a separate object.
    victim = DatasetVersion.objects.get(dataset=dataset)
    assert victim.file != guess.file
    assert _download(client_for(scientist), victim).status_code == 200


def test_artifacts_stored_before_encryption_was_switched_on_are_imported_and_read(
    settings, tmp_path, client_for, team, owner, dataset, scientist
):
    from django.core.management import call_command

    from governance.actions.model_versions import do_register_model_version_from_artifact
    from governance.actions.registered_models import do_create_registered_model

    version = _register(dataset, scientist)  # direct mode: a plain file
    folder = tmp_path / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "data" / "weights.bin").write_bytes(b"w" * 5000)
    model = do_create_registered_model(team=team, name="before", owner=owner, actor=scientist)
    model_version = do_register_model_version_from_artifact(
        model=model, artifact_path=folder, source="test:before", actor=scientist
    )
    settings.STEWARD_ARTIFACT_KEYS = Keyring.new_entry("k1")

    refused = _download(client_for(scientist), version)
    assert refused.status_code == 409
    assert "run manage.py import_plain_artifacts" in refused.json()["detail"]

    out = StringIO()
    call_command("import_plain_artifacts", stdout=out)
    assert out.getvalue() == "imported 2, already recorded 0, failed 0\n"
    assert (Path(settings.ARTIFACT_ROOT) / version.file).read_bytes().startswith(MAGIC)  # in place
    assert b"".join(_download(client_for(scientist), version).streaming_content) == BIKE_HOURLY.read_bytes()
    assert (model_version.path / "data" / "weights.bin").read_bytes() == b"w" * 5000
    assert StoredObject.objects.get(key=model_version.artifact).is_directory
    again = StringIO()
    call_command("import_plain_artifacts", stdout=again)
    assert again.getvalue() == "imported 0, already recorded 2, failed 0\n"


# --- Concurrent writers, S3 faults --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_puts_of_the_same_key_leave_one_readable_object(keys, settings, tmp_path):
    from governance.storage.store import file_sha256

    key = "datasets/hostile/same.csv"
    sha = file_sha256(BIKE_HOURLY)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def put() -> None:
        from django.db import connection

        try:
            start.wait(timeout=30)
            storage.put_file(BIKE_HOURLY, key, sha)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    writers = [threading.Thread(target=put) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)

    assert errors == []
    assert StoredObject.objects.filter(key=key).count() == 1
    _forget_copies(settings)
    assert storage.local_path(key).read_bytes() == BIKE_HOURLY.read_bytes()


@pytest.mark.usefixtures("s3")
def test_a_missing_bucket_is_a_503_for_an_upload_and_a_read_and_registers_nothing(
    keys, settings, client_for, dataset, scientist
):
    stored = _register(dataset, scientist)
    _forget_copies(settings)
    settings.STEWARD_ARTIFACT_URL = "s3://no-such-bucket/artifacts"
    client = client_for(scientist)

    read = _download(client, stored)
    with ADULT.open("rb") as handle:
        upload = client.post(
            "/api/dataset-versions/", {"dataset": dataset.pk, "file": handle}, format="multipart"
        )

    assert read.status_code == 503, read.content[:300]
    assert upload.status_code == 503, upload.content[:300]
    assert "no-such-bucket" in upload.json()["detail"]
    assert DatasetVersion.objects.count() == 1
    assert StoredObject.objects.count() == 1


# --- Other readers of stored artifacts answer as the registry's API does ------------------------


def test_the_mlflow_artifact_api_answers_a_tampered_or_unavailable_model_file_without_a_500(
    keys, settings, tmp_path, client, registered_version, scientist
):
    import base64

    from tests.conftest import PASSWORD

    stored = Path(settings.ARTIFACT_ROOT) / registered_version.artifact
    sealed = bytearray(stored.read_bytes())
    sealed[40] ^= 0x01
    stored.write_bytes(bytes(sealed))
    _forget_copies(settings)
    url = (
        "/api/2.0/mlflow-artifacts/artifacts/steward/model-versions/"
        f"{registered_version.pk}/{Path(registered_version.artifact).name}"
    )
    basic = "Basic " + base64.b64encode(f"{scientist.username}:{PASSWORD}".encode()).decode()

    tampered = client.get(url, HTTP_AUTHORIZATION=basic)
    settings.STEWARD_ARTIFACT_KEYS_FILE = str(tmp_path / "no-keyring")
    no_keys = client.get(url, HTTP_AUTHORIZATION=basic)

    assert tampered.status_code == 409, tampered.content[:300]
    assert registered_version.artifact in tampered.json()["message"]
    assert no_keys.status_code == 503, no_keys.content[:300]


def test_web_pages_reading_a_tampered_or_unavailable_artifact_answer_409_or_503_not_500(
    keys, settings, tmp_path, team, scientist
):
    from tests.runners.code_fixtures import make_code_version

    version = make_code_version(team, scientist, {"train.py": "print('hello')\n"})
    stored = Path(settings.ARTIFACT_ROOT) / version.file
    sealed = bytearray(stored.read_bytes())
    sealed[40] ^= 0x01
    stored.write_bytes(bytes(sealed))
    _forget_copies(settings)
    browser = Client()
    browser.force_login(scientist)

    file_page = browser.get(f"/code-versions/{version.pk}/files/train.py")
    settings.STEWARD_ARTIFACT_KEYS_FILE = str(tmp_path / "no-keyring")
    keys_gone = browser.get(f"/code-versions/{version.pk}/files/train.py")

    assert file_page.status_code == 409, file_page.content[:300]
    assert version.file in file_page.content.decode()
    assert keys_gone.status_code == 503


# --- Directory artifacts with odd members; rotation stopped by a missing key ----------------------


def test_a_model_directory_with_odd_member_names_reads_back_exactly(
    keys, settings, tmp_path, team, owner, scientist
):
    from governance.actions.model_versions import do_register_model_version_from_artifact
    from governance.actions.registered_models import do_create_registered_model
    from governance.artifacts import open_version_file, version_files

    folder = tmp_path / "model"
    odd = {
        "MLmodel": b"flavors:\n  python_function: {}\n",
        "-leading dash.txt": b"dash",
        "sp ace/ünï cødé.bin": bytes(range(256)),
        "deep/" * 20 + "leaf": b"deep",
        "empty": b"",
        ".hidden": b"dot",
        "looks..like..dots": b"dots",
    }
    for name, data in odd.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "only-a-folder").mkdir()
    model = do_create_registered_model(team=team, name="odd-model", owner=owner, actor=scientist)
    version = do_register_model_version_from_artifact(
        model=model, artifact_path=folder, source="test:odd", actor=scientist
    )
    _forget_copies(settings)

    assert dict(version_files(version)) == {name: len(data) for name, data in odd.items()}
    for name, data in odd.items():
        with open_version_file(version, name) as handle:
            assert handle.read() == data
    cached = Path(settings.STEWARD_ARTIFACT_CACHE) / version.artifact
    assert all(item.resolve().is_relative_to(cached.resolve()) for item in cached.rglob("*"))


def test_a_rotation_stopped_by_a_missing_key_keeps_earlier_batches_and_changes_nothing_after(
    keys, settings, tmp_path, dataset, scientist
):
    first = _register(dataset, scientist)
    settings.STEWARD_ARTIFACT_KEYS = Keyring.new_entry("k0")
    second = _register(dataset, scientist, ADULT, "adult.csv")  # wrapped by k0
    ring_file = tmp_path / "keyring"
    ring_file.write_text(Keyring.new_entry("k2") + "\n" + keys + "\n")  # k0 forgotten
    settings.STEWARD_ARTIFACT_KEYS = ""
    settings.STEWARD_ARTIFACT_KEYS_FILE = str(ring_file)

    with pytest.raises(CommandError, match="no key 'k0'"):
        call_command("rotate_artifact_keys", "--batch", "1")

    assert StoredObject.objects.get(key=first.file).kek_id == "k2"
    assert StoredObject.objects.get(key=second.file).kek_id == "k0"
    _forget_copies(settings)
    assert storage.local_path(first.file).read_bytes() == BIKE_HOURLY.read_bytes()


def test_an_erasure_that_fails_to_commit_deletes_no_file_in_direct_mode(
    settings, monkeypatch, dataset, scientist, owner
):
    from django.db import DatabaseError

    import governance.actions.datasets as datasets_actions

    version = _register(dataset, scientist)  # direct mode: a plain file under ARTIFACT_ROOT
    stored = Path(settings.ARTIFACT_ROOT) / version.file

    def audit_fails(**kwargs):
        raise DatabaseError("the audit log's insert failed")

    monkeypatch.setattr(datasets_actions, "record_audit_event", audit_fails)
    with pytest.raises(DatabaseError):
        do_erase_dataset_version(dataset_version=version, reason="subject request", actor=owner)

    version.refresh_from_db()
    assert version.erased_at is None  # rolled back: not erased...
    assert stored.read_bytes() == BIKE_HOURLY.read_bytes()  # ...so its file is still there


def test_an_object_folder_that_cannot_be_written_or_read_is_a_503_and_registers_nothing(
    keys, settings, tmp_path, client_for, dataset, scientist
):
    stored = _register(dataset, scientist)
    _forget_copies(settings)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the object store's folder should be")
    settings.STEWARD_ARTIFACT_URL = f"file://{blocker}/objects"  # every path under it: ENOTDIR
    client = client_for(scientist)

    with ADULT.open("rb") as handle:
        upload = client.post(
            "/api/dataset-versions/", {"dataset": dataset.pk, "file": handle}, format="multipart"
        )
    read = _download(client, stored)

    assert upload.status_code == 503, upload.content[:300]
    assert read.status_code == 503, read.content[:300]
    assert DatasetVersion.objects.count() == 1


def test_a_cache_folder_that_cannot_be_written_is_a_503_not_a_500(
    keys, settings, tmp_path, client_for, dataset, scientist
):
    stored = _register(dataset, scientist)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the local copies' folder should be")
    settings.STEWARD_ARTIFACT_CACHE = blocker / "cache"

    read = _download(client_for(scientist), stored)

    assert read.status_code == 503, read.content[:300]
    assert "STEWARD_ARTIFACT_CACHE" in read.json()["detail"]


# --- Swapped records and objects ------------------------------------------------------------------


def test_wrapped_keys_swapped_between_records_are_refused_as_tampering(
    keys, settings, client_for, dataset, scientist
):
    hour = _register(dataset, scientist)
    adult = _register(dataset, scientist, ADULT, "adult.csv")
    a, b = StoredObject.objects.get(key=hour.file), StoredObject.objects.get(key=adult.file)
    StoredObject.objects.filter(pk=a.pk).update(wrapped_key=bytes(b.wrapped_key))
    StoredObject.objects.filter(pk=b.pk).update(wrapped_key=bytes(a.wrapped_key))
    _forget_copies(settings)
    client = client_for(scientist)

    for version in (hour, adult):
        response = _download(client, version)
        assert response.status_code == 409
        assert "wrapped data key does not authenticate" in response.json()["detail"]
    assert not any(Path(settings.STEWARD_ARTIFACT_CACHE).rglob("*.csv"))


def test_unencrypted_managed_objects_swapped_fail_their_sha256(
    settings, tmp_path, client_for, dataset, scientist
):
    settings.STEWARD_ARTIFACT_URL = f"file://{tmp_path / 'objects'}"  # managed, no keys: plain objects
    hour = _register(dataset, scientist)
    adult = _register(dataset, scientist, ADULT, "adult.csv")
    hour_object, adult_object = tmp_path / "objects" / hour.file, tmp_path / "objects" / adult.file
    hour_bytes = hour_object.read_bytes()
    hour_object.write_bytes(adult_object.read_bytes())
    adult_object.write_bytes(hour_bytes)
    _forget_copies(settings)

    response = _download(client_for(scientist), hour)

    assert response.status_code == 409
    assert "not the recorded" in response.json()["detail"]
