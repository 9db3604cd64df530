"""The hostile test of issue 12's run artifacts in the artifact store: a live Steward, the real
``mlflow`` client and raw HTTP against ``/api/2.0/mlflow-artifacts/``. Over-long, unicode and
percent-encoded paths, files against folders (also racing), a logged model finalized while an
upload is under way, outsiders, viewers and other runs' job tokens, registrations naming the
whole run or nothing, a tampered object among many, the object store killed mid-use. Never a
500, never a row without its object, never a temporary copy or plaintext left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from governance.models import ModelVersion
from runners import run_artifacts
from runners.models import Job, LoggedModel, LoggedModelStatus, RunArtifact
from tests.mlflow.artifact_helpers import run_file, run_path
from tests.mlflow.test_job_tokens import job_token, make_code_run

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def call(steward_server, token: str, method: str, endpoint: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{steward_server.url}{endpoint}",
        headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
        timeout=60,
        **kwargs,
    )


@pytest.fixture
def token(mlflow_env) -> str:
    return mlflow_env["MLFLOW_TRACKING_TOKEN"]


@pytest.fixture
def run(mlflow_client):
    experiment_id = mlflow_client.create_experiment("hostile-store")
    return mlflow_client.create_run(experiment_id, run_name="hostile-store")


def root_of(run) -> str:
    return f"experiments/{run.info.experiment_id}/{run.info.run_id}/artifacts"


def leftovers(settings) -> list[Path]:
    """Temporary files and folders (uploads, scratch, gathered copies) left on this machine."""
    found: list[Path] = []
    for root in (Path(settings.ARTIFACT_ROOT), Path(settings.STEWARD_ARTIFACT_CACHE)):
        if root.exists():
            found += [
                p for p in root.rglob("*") if p.name.startswith((".incoming-", ".scratch-", ".gathered-"))
            ]
    return found


def test_a_path_over_the_limit_is_refused_and_names_nothing(steward_server, token, run, settings):
    job = Job.objects.get(pk=int(run.info.run_id))
    root = root_of(run)
    long_name = "x" * (run_artifacts.PATH_MAX - len(root))  # the full path is one character over
    upload = call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{long_name}", data=b"abc")
    assert upload.status_code == 400, upload.text
    assert f"at most {run_artifacts.PATH_MAX} characters" in upload.json()["message"]
    # Exactly at the limit it is stored.
    fits = long_name[:-1]
    assert call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{fits}", data=b"fits").status_code == 200
    assert run_file(job, fits) == b"fits"
    # Deep as well as long (kept under the OS's path length: the test server's media handler
    # looks at the filesystem first, which no deployment does).
    huge = "y/" * 1200 + "z"
    assert call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{huge}", data=b"abc").status_code == 400
    assert call(steward_server, token, "GET", f"{ARTIFACTS}/{root}/{huge}").status_code == 404
    listed = call(steward_server, token, "GET", ARTIFACTS, params={"path": f"{root}/{huge}"})
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"files": []}
    assert RunArtifact.objects.filter(path__startswith=f"{root}/").count() == 1
    assert leftovers(settings) == []


def test_unicode_and_percent_encoded_paths(steward_server, token, run, mlflow_client, tmp_path):
    job = Job.objects.get(pk=int(run.info.run_id))
    root = root_of(run)
    name = "données/naïve 100% é\r.txt"
    body = "ünïcode".encode()
    upload = call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{quote(name)}", data=body)
    assert upload.status_code == 200, upload.text
    assert run_file(job, name) == body
    assert [f.path for f in mlflow_client.list_artifacts(run.info.run_id)] == ["données"]
    listed = call(steward_server, token, "GET", ARTIFACTS, params={"path": f"{root}/données"})
    assert listed.json()["files"] == [{"path": "naïve 100% é\r.txt", "is_dir": False, "file_size": len(body)}]
    download = call(steward_server, token, "GET", f"{ARTIFACTS}/{root}/{quote(name)}")
    assert download.status_code == 200, download.text
    assert download.content == body
    # An encoded slash is a slash; encoded dots and NUL are still refused.
    slashed = call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/a%2Fb.txt", data=b"ab")
    assert slashed.status_code == 200, slashed.text
    assert run_file(job, "a/b.txt") == b"ab"
    for hostile in ("%2e%2e/%2e%2e/escape.txt", "a/%2E/b", "nul%00byte", "back%5Cslash"):
        answer = call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{hostile}", data=b"x")
        assert answer.status_code == 400, (hostile, answer.text)
        listed = call(steward_server, token, "GET", ARTIFACTS, params={"path": f"{root}/{hostile}"})
        assert listed.status_code in (400, 200), (hostile, listed.text)
    assert sorted(RunArtifact.objects.filter(path__startswith=f"{root}/").values_list("path", flat=True)) == [
        run_path(job, "a/b.txt"),
        run_path(job, name),
    ]


def test_a_folder_cannot_be_overwritten_by_a_file(steward_server, token, run):
    job = Job.objects.get(pk=int(run.info.run_id))
    root = root_of(run)
    assert (
        call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/d/inner.txt", data=b"in").status_code == 200
    )
    answer = call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/d", data=b"flat")
    assert answer.status_code == 400, answer.text
    assert "'d' is a directory" in answer.json()["message"]
    # The run's root itself is not a file name either.
    assert call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}", data=b"root").status_code == 400
    assert run_file(job, "d") is None
    assert run_file(job, "d/inner.txt") == b"in"


def test_racing_uploads_of_a_file_and_a_folder_of_the_same_name_leave_one(
    steward_server, token, run, monkeypatch
):
    """Both uploads pass the checks before either writes its row (a barrier holds them there):
    one is stored, the other refused, never a path that is both a file and a folder."""
    job = Job.objects.get(pk=int(run.info.run_id))
    root = root_of(run)
    original = run_artifacts.refuse_conflicts
    barrier = threading.Barrier(2, timeout=3)

    def held(prefix: str, relative: str) -> None:
        original(prefix, relative)
        from django.db import connection

        if connection.in_atomic_block:  # the check under the write
            # Broken: the other upload waits on a lock, so it can no longer race this one.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    monkeypatch.setattr(run_artifacts, "refuse_conflicts", held)
    answers: dict[str, int] = {}

    def upload(relative: str) -> None:
        answers[relative] = call(
            steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{relative}", data=relative.encode()
        ).status_code

    threads = [threading.Thread(target=upload, args=(name,)) for name in ("a", "a/b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers.values()) == [200, 400], answers
    stored = [run_file(job, "a"), run_file(job, "a/b")]
    assert stored.count(None) == 1, stored
    listed = call(steward_server, token, "GET", ARTIFACTS, params={"path": root}).json()["files"]
    assert len(listed) == 1


def _partial_put(steward_server, token: str, path: str, first: bytes, total: int) -> socket.socket:
    """Start a PUT of ``total`` bytes, sending only ``first``; the caller sends the rest."""
    url = urlsplit(steward_server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    head = [
        f"PUT {path} HTTP/1.1",
        f"Host: {url.netloc}",
        f"Authorization: Bearer {token}",
        f"Content-Length: {total}",
        "Connection: close",
    ]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + first)
    return sock


def _finish(sock: socket.socket, rest: bytes) -> int:
    sock.sendall(rest)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("closing", ["finalized", "deleted"])
def test_a_logged_model_finalized_or_deleted_during_an_upload_keeps_its_files(
    closing, steward_server, token, mlflow_client, run, settings
):
    from mlflow.entities import LoggedModelStatus as ClientStatus

    model = mlflow_client.create_logged_model(
        run.info.experiment_id, name="racing", source_run_id=run.info.run_id
    )
    location = model.artifact_location.removeprefix("mlflow-artifacts:/")
    url = f"{ARTIFACTS}/{location}/MLmodel"
    assert call(steward_server, token, "PUT", url, data=b"flavors: {}").status_code == 200
    body = b"tampered after finalizing"
    sock = _partial_put(steward_server, token, url, body[:5], len(body))
    try:
        # The upload has passed its checks once it receives the body into its scratch file.
        deadline = time.monotonic() + 10
        while not list(Path(settings.STEWARD_ARTIFACT_CACHE).glob(".incoming-*")):
            assert time.monotonic() < deadline, "the upload never started its scratch file"
            time.sleep(0.05)
        if closing == "finalized":
            mlflow_client.finalize_logged_model(model.model_id, ClientStatus.READY)
            assert LoggedModel.objects.get(pk=model.model_id).status == LoggedModelStatus.READY
        else:
            mlflow_client.delete_logged_model(model.model_id)
            assert LoggedModel.objects.get(pk=model.model_id).deleted_at is not None
        status = _finish(sock, body[5:])
    finally:
        sock.close()
    assert status == (400 if closing == "finalized" else 404)
    stored = RunArtifact.objects.get(path=f"{location}/MLmodel")
    assert run_artifacts.open_file(stored.path).read() == b"flavors: {}"


def test_outsiders_viewers_and_other_runs_job_tokens(
    steward_server, token, run, api_token, viewer, outsider, other_team, scientist, team
):
    from runners.tracking import do_create_experiment

    root = root_of(run)
    assert call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/secret.txt", data=b"s").status_code == 200
    file_url = f"{ARTIFACTS}/{root}/secret.txt"

    seeing = api_token(viewer)
    assert call(steward_server, seeing, "GET", file_url).content == b"s"
    assert call(steward_server, seeing, "GET", ARTIFACTS, params={"path": root}).status_code == 200
    refused = call(steward_server, seeing, "PUT", f"{ARTIFACTS}/{root}/viewer.txt", data=b"v")
    assert refused.status_code == 403, refused.text

    read_only = api_token(scientist, read_only=True)
    assert call(steward_server, read_only, "PUT", f"{ARTIFACTS}/{root}/ro.txt", data=b"r").status_code == 403

    stranger = api_token(outsider)
    for method, url, kwargs in (
        ("GET", file_url, {}),
        ("GET", ARTIFACTS, {"params": {"path": root}}),
        ("PUT", f"{ARTIFACTS}/{root}/outsider.txt", {"data": b"o"}),
        ("PUT", file_url, {"data": b"overwritten"}),
    ):
        answer = call(steward_server, stranger, method, url, **kwargs)
        assert answer.status_code == 404, (method, url, answer.text)
        assert "secret" not in answer.text or url == file_url

    # Another team's code run's job token (and one of this team's other run) reach nothing here.
    others = [
        make_code_run(other_team, outsider, experiment=do_create_experiment(name="theirs", actor=outsider)),
        make_code_run(team, scientist, experiment=do_create_experiment(name="ours", actor=scientist)),
    ]
    for other in others:
        foreign = job_token(other)
        for method, url, kwargs in (
            ("GET", file_url, {}),
            ("GET", ARTIFACTS, {"params": {"path": root}}),
            ("PUT", f"{ARTIFACTS}/{root}/job.txt", {"data": b"j"}),
        ):
            answer = call(steward_server, foreign, method, url, **kwargs)
            assert answer.status_code in (403, 404), (method, url, answer.text)
    job = Job.objects.get(pk=int(run.info.run_id))
    for name in ("viewer.txt", "ro.txt", "outsider.txt", "job.txt"):
        assert run_file(job, name) is None
    assert run_file(job, "secret.txt") == b"s"


def test_registering_the_whole_run_or_a_path_naming_nothing(
    steward_server, token, run, mlflow_client, settings
):
    root = root_of(run)
    for relative, body in (("MLmodel", b"flavors: {}\n"), ("data/weights.bin", b"\x00\x01\x02")):
        assert (
            call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{relative}", data=body).status_code == 200
        )
    mlflow_client.create_registered_model("whole-run")
    create = "/api/2.0/mlflow/model-versions/create"
    run_id = run.info.run_id
    for source in (
        f"runs:/{run_id}/nothing-here",
        f"runs:/{run_id}/data/weights.bin/below",
        f"runs:/{run_id}/../{run_id}/MLmodel",
        f"runs:/{run_id}/da",  # a prefix of a folder's name is not the folder
        f"mlflow-artifacts:/{root}/nothing-here",
        "models:/m-\x00",
        f"runs:/{run_id}\x00/MLmodel",
    ):
        answer = call(
            steward_server,
            token,
            "POST",
            create,
            json={"name": "whole-run", "source": source, "run_id": run_id},
        )
        assert answer.status_code in (400, 404), (source, answer.text)
    assert not ModelVersion.objects.filter(model__name="whole-run").exists()

    whole = call(
        steward_server,
        token,
        "POST",
        create,
        json={"name": "whole-run", "source": f"runs:/{run_id}/", "run_id": run_id},
    )
    assert whole.status_code == 200, whole.text
    version = ModelVersion.objects.get(model__name="whole-run")
    listed = call(
        steward_server, token, "GET", ARTIFACTS, params={"path": f"steward/model-versions/{version.pk}/data"}
    )
    assert listed.json()["files"] == [{"path": "weights.bin", "is_dir": False, "file_size": 3}]
    assert leftovers(settings) == []


def test_a_tampered_object_among_many_registers_nothing_and_leaves_no_copy(
    keys, steward_server, token, run, mlflow_client, settings
):
    job = Job.objects.get(pk=int(run.info.run_id))
    root = root_of(run)
    for index in range(30):
        relative = f"model/part-{index:02d}.bin"
        assert (
            call(
                steward_server, token, "PUT", f"{ARTIFACTS}/{root}/{relative}", data=f"{index}".encode() * 50
            )
        ).status_code == 200
    tampered = RunArtifact.objects.get(path=run_path(job, "model/part-17.bin"))
    stored = Path(settings.ARTIFACT_ROOT) / tampered.key
    data = bytearray(stored.read_bytes())
    data[-3] ^= 0x40
    stored.write_bytes(bytes(data))
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)

    mlflow_client.create_registered_model("many-parts")
    answer = call(
        steward_server,
        token,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={"name": "many-parts", "source": f"runs:/{run.info.run_id}/model", "run_id": run.info.run_id},
    )
    assert answer.status_code == 409, answer.text
    assert tampered.key in answer.json()["message"]
    assert not ModelVersion.objects.filter(model__name="many-parts").exists()
    assert leftovers(settings) == []
    # No plaintext of the parts before the tampered one sits under ARTIFACT_ROOT.
    for item in Path(settings.ARTIFACT_ROOT).rglob("*"):
        if item.is_file():
            assert b"3" * 50 not in item.read_bytes()


def test_the_store_down_answers_503_and_records_nothing(
    keys, s3, steward_server, token, run, mlflow_client, settings
):
    job = Job.objects.get(pk=int(run.info.run_id))
    root = root_of(run)
    assert call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/kept.txt", data=b"kept").status_code == 200
    mlflow_client.create_registered_model("store-down")
    s3.kill()
    s3.wait(10)
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)

    upload = call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/lost.txt", data=b"lost")
    assert upload.status_code == 503, upload.text
    assert upload.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert run_artifacts.find(run_path(job, "lost.txt")) is None
    # Overwriting an existing file: the old row stays, pointing at its own (existing) object.
    before = RunArtifact.objects.get(path=run_path(job, "kept.txt"))
    overwrite = call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/kept.txt", data=b"new bytes")
    assert overwrite.status_code == 503, overwrite.text
    after = RunArtifact.objects.get(path=run_path(job, "kept.txt"))
    assert (after.key, after.sha256, after.size_bytes) == (before.key, before.sha256, before.size_bytes)

    download = call(steward_server, token, "GET", f"{ARTIFACTS}/{root}/kept.txt")
    assert download.status_code == 503, download.text
    listed = call(steward_server, token, "GET", ARTIFACTS, params={"path": root})
    assert listed.json()["files"] == [{"path": "kept.txt", "is_dir": False, "file_size": 4}]
    register = call(
        steward_server,
        token,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={"name": "store-down", "source": f"runs:/{run.info.run_id}/kept.txt", "run_id": run.info.run_id},
    )
    assert register.status_code == 503, register.text
    assert not ModelVersion.objects.filter(model__name="store-down").exists()
    assert leftovers(settings) == []
    assert not [
        p for p in Path(settings.ARTIFACT_ROOT).rglob("*") if p.is_file() and b"lost" in p.read_bytes()
    ]


def test_a_huge_listing_answers_every_entry_once(steward_server, token, run):
    """Thousands of files under one folder list as their direct entries, each once."""
    job = Job.objects.get(pk=int(run.info.run_id))
    root = root_of(run)
    assert (
        call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/big/seed.txt", data=b"seed").status_code
        == 200
    )
    seed = RunArtifact.objects.get(path=run_path(job, "big/seed.txt"))
    RunArtifact.objects.bulk_create(
        RunArtifact(
            path=run_path(job, f"big/{index % 40:02d}/{index:05d}.txt"),
            team_id=job.team_id,
            key=seed.key,
            sha256=seed.sha256,
            size_bytes=seed.size_bytes,
        )
        for index in range(5000)
    )
    listed = call(steward_server, token, "GET", ARTIFACTS, params={"path": f"{root}/big"})
    assert listed.status_code == 200, listed.text
    files = listed.json()["files"]
    assert len(files) == 41
    assert files[-1] == {"path": "seed.txt", "is_dir": False, "file_size": 4}
    assert all(entry["is_dir"] for entry in files[:-1])
    inner = call(steward_server, token, "GET", ARTIFACTS, params={"path": f"{root}/big/07"}).json()["files"]
    assert len(inner) == 125


def test_the_daily_sweep_during_a_live_upload_leaves_it_whole(keys, steward_server, token, run, settings):
    """The sweep runs while an upload streams into its scratch file: the fresh file is left
    alone, the upload completes and stores its bytes, and a day-old leftover beside it goes."""
    from governance.storage import sweep_leftovers

    job = Job.objects.get(pk=int(run.info.run_id))
    cache = Path(settings.STEWARD_ARTIFACT_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    killed = cache / ".incoming-killed-yesterday"
    killed.write_bytes(b"plaintext of a killed upload")
    stamp = time.time() - 2 * 86400
    os.utime(killed, (stamp, stamp))
    body = b"live upload " * 1000
    url = f"{ARTIFACTS}/{root_of(run)}/live.bin"
    sock = _partial_put(steward_server, token, url, body[:4000], len(body))
    try:
        deadline = time.monotonic() + 10
        while not [p for p in cache.glob(".incoming-*") if p != killed]:
            assert time.monotonic() < deadline, "the upload never started its scratch file"
            time.sleep(0.05)
        assert sweep_leftovers() == 1
        status = _finish(sock, body[4000:])
    finally:
        sock.close()
    assert status == 200
    assert not killed.exists()
    assert run_file(job, "live.bin") == body
    assert leftovers(settings) == []


def test_registering_with_the_local_copies_folder_unwritable_is_503(
    steward_server, token, run, mlflow_client, settings, tmp_path
):
    """Direct mode reads the stored files in place, but gathering a registration's files needs
    the local copies' folder: a folder that cannot be made is the deployment's fault (503), not
    an internal error."""
    root = root_of(run)
    assert (
        call(steward_server, token, "PUT", f"{ARTIFACTS}/{root}/MLmodel", data=b"flavors: {}\n").status_code
        == 200
    )
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    settings.STEWARD_ARTIFACT_CACHE = blocker / "cache"
    mlflow_client.create_registered_model("no-scratch")
    answer = call(
        steward_server,
        token,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={"name": "no-scratch", "source": f"runs:/{run.info.run_id}/MLmodel", "run_id": run.info.run_id},
    )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "STEWARD_ARTIFACT_CACHE" in answer.json()["message"]
    assert str(tmp_path) not in answer.text
    assert not ModelVersion.objects.filter(model__name="no-scratch").exists()


def test_an_odd_legacy_tree_is_adopted_around_what_is_no_artifact(keys, settings, mlflow_client):
    """Migration runners/0013 on a tree with a stray file outside artifacts/, a path over the
    limit and a file recorded where the tree has a folder: those stay where they are, the rest is
    adopted, and the migration does not fail (which would block the upgrade)."""
    experiment_id = mlflow_client.create_experiment("odd-legacy")
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    job = Job.objects.get(pk=int(run_id))
    legacy = Path(settings.ARTIFACT_ROOT) / "mlflow"
    base = legacy / f"experiments/{experiment_id}/{run_id}"
    good = base / "artifacts/metrics/loss.csv"
    stray = base / "meta.yaml"
    too_long = base / "artifacts" / "/".join(["d" * 200] * 5) / "f.txt"
    under_file = base / "artifacts/model/MLmodel"
    for item in (good, stray, too_long, under_file):
        item.parent.mkdir(parents=True, exist_ok=True)
        item.write_bytes(b"legacy " + item.name.encode())
    # "model" is already recorded as a file (an upload after the tree was left behind).
    with run_artifacts.received_file() as (handle, received):
        handle.write(b"a file named model")
        handle.flush()
        run_artifacts.do_store_file(
            prefix=run_path(job, "").rstrip("/"), relative="model", team_id=job.team_id, source=received
        )

    assert run_artifacts.adopt_legacy_tree(legacy) == 1

    assert run_file(job, "metrics/loss.csv") == b"legacy loss.csv"
    assert not good.exists()
    for left in (stray, too_long, under_file):
        assert left.exists(), left
    assert run_file(job, "model") == b"a file named model"


def test_odd_requests_are_answered_never_with_an_internal_error(steward_server, token, run):
    root = root_of(run)
    experiment = run.info.experiment_id
    odd_paths = [
        f"experiments/{experiment}/99999999999999999999999999/artifacts/x",
        f"experiments/{'9' * 40}/{run.info.run_id}/artifacts/x",
        f"experiments/{experiment}/%F0%9F%92%A9/artifacts/x",
        f"experiments/{experiment}/models/m-{'z' * 2000}/artifacts/x",
        f"experiments/{experiment}/models/%00/artifacts/x",
        f"experiments/{experiment}/models",
        "experiments",
        "steward/model-versions/99999999999999999999999/x",
        "steward/model-versions/-1/x",
        f"{root}/{'%C3%A9' * 1000}",
    ]
    for path in odd_paths:
        for method, url, kwargs in (
            ("GET", f"{ARTIFACTS}/{path}", {}),
            ("PUT", f"{ARTIFACTS}/{path}", {"data": b"x"}),
            ("GET", ARTIFACTS, {"params": {"path": requests.utils.unquote(path)}}),
        ):
            answer = call(steward_server, token, method, url, **kwargs)
            assert answer.status_code in (200, 400, 403, 404), (
                method,
                path[:80],
                answer.status_code,
                answer.text,
            )
            assert answer.headers["Content-Type"].startswith("application/json"), (method, path[:80])
    for length in ("-1", "1e3", "+1", "0x1", "1,1", "99999999999999999999999999999"):
        answer = raw_status(steward_server, token, f"{ARTIFACTS}/{root}/cl.bin", length, b"x")
        assert answer in (400, 411, 413), (length, answer)
    assert call(steward_server, token, "GET", ARTIFACTS, params={"path": root}).json() == {"files": []}


def raw_status(steward_server, token: str, path: str, length: str, body: bytes) -> int:
    """A PUT with the given Content-Length header sent as it is; the answer's status."""
    url = urlsplit(steward_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        head = [
            f"PUT {path} HTTP/1.1",
            f"Host: {url.netloc}",
            f"Authorization: Bearer {token}",
            f"Content-Length: {length}",
            "Connection: close",
        ]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])
