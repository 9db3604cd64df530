"""Image drift from the model's own embeddings (issue 11, "Beyond tables"): a drift check names a
Steward vision model's image (``column_kinds: {"digit": "image"}``) and compares the activations
of the model's penultimate layer on sampled reference and current images, computed in the model's
child process (the worker never loads its pickle), by MMD with a permutation test beside a domain
classifier's AUC. The vision template is trained by a real code run; checks go through the API
and a real worker; a model that is not a Steward vision model is refused naming the field."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pandas as pd
import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client

import config.celery
from governance.actions.datasets import do_create_dataset
from monitoring.engine import (
    CheckConfig,
    ConfigError,
    build_profile,
    compare_raw_columns,
    raw_data_columns,
    run_check,
)
from monitoring.engine.embedding import mmd_permutation_test
from monitoring.models import Alert, DriftCheck
from runners.execute import embed_in_child
from tests.monitoring.conftest import register_frame
from tests.monitoring.test_column_rules import _wait_for
from tests.runners.test_model_inputs import trained_vision_model

PIXELS = [f"p{i}" for i in range(64)]
QUEUE = "image-drift-worker"
IMAGE = {
    "column_kinds": {"digit": "image"},
    "columns": ["label"],
    "min_sample_size": 500,
    "make_report": False,
}


@contextlib.contextmanager
def drift_worker():
    """A real Celery worker (solo pool, in a thread) on the configured broker and a queue of its own,
    started after the code runs so it only ever sees the drift checks."""
    app = config.celery.app
    saved = app.conf.task_routes
    app.conf.update(task_routes={"*": {"queue": QUEUE}})
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_declare(QUEUE)
            conn.default_channel.queue_purge(QUEUE)
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[QUEUE], shutdown_timeout=60):
            yield
    finally:
        app.conf.update(task_routes=saved)


def rotated(frame: pd.DataFrame) -> pd.DataFrame:
    """The same digits turned a quarter (8x8 images, pixels p0..p63 row by row), labels kept."""
    images = frame[PIXELS].to_numpy().reshape(-1, 8, 8)
    turned = np.rot90(images, k=1, axes=(1, 2)).reshape(-1, 64)
    return frame.assign(**{column: turned[:, i] for i, column in enumerate(PIXELS)})


def _image(check: DriftCheck) -> dict:
    (result,) = [r for r in check.results if r["column"] == "digit"]
    return result


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_vision_models_images_drift_through_its_own_embeddings(
    team, scientist, live_server, settings, client_for, tmp_path
):
    settings.STEWARD_API_URL = live_server.url
    digits, version = trained_vision_model(team, scientist)
    assert version.training_dataset_version == digits
    frame = pd.read_csv(digits.path)
    shifted = register_frame(
        do_create_dataset(team=team, name="digits-rotated", actor=scientist),
        rotated(frame),
        tmp_path / "rotated.csv",
        scientist,
    )
    api = client_for(scientist)

    def request(current, **options):
        return api.post(
            "/api/drift-checks/",
            {"model_version": version.pk, "current_dataset_version": current.pk, **IMAGE, **options},
            format="json",
        )

    # Refused, naming the field: an image named like a column, two images, no pixels on a side.
    assert request(digits, column_kinds={"p0": "image"}).json() == {
        "column_kinds": [
            "'p0' is a column: name the image apart from the checked columns and its pixels (the model's "
            "input columns)"
        ]
    }
    assert request(digits, columns=["label"], column_kinds={"label": "image"}).status_code == 400
    assert request(digits, column_kinds={"a": "image", "b": "image"}).json() == {
        "column_kinds": ["'a', 'b': a vision model reads one image; name one"]
    }
    no_pixels = register_frame(
        do_create_dataset(team=team, name="labels-only", actor=scientist),
        frame[["label"]],
        tmp_path / "labels.csv",
        scientist,
    )
    assert request(no_pixels).json() == {
        "column_kinds": [
            "image 'digit': the model's input column(s) 'p0', 'p1', 'p2', 'p3', 'p4' ... are not in the "
            f"current dataset version {no_pixels}"
        ]
    }
    assert DriftCheck.objects.count() == 0

    # A monitor of the rotated batches names the image too.
    monitor = api.post(
        "/api/monitors/",
        {
            "model_version": version.pk,
            "name": "images",
            "source": "dataset",
            "current_dataset": shifted.dataset_id,
            **IMAGE,
        },
        format="json",
    )
    assert monitor.status_code == 201, monitor.json()
    assert monitor.json()["column_kinds"] == {"digit": "image"}

    with drift_worker():
        same = request(digits)
        turned = request(shifted)
        assert (same.status_code, turned.status_code) == (201, 201), (same.json(), turned.json())
        watched = api.post(f"/api/monitors/{monitor.json()['id']}/run/")
        ids = [same.json()["id"], turned.json()["id"], watched.json()["id"]]
        _wait_for(
            "finished",
            lambda: DriftCheck.objects.filter(pk__in=ids, state__in=["succeeded", "failed"]).count() == 3,
        )

    clean, drifted, monitored = (DriftCheck.objects.get(pk=pk) for pk in ids)
    assert monitored.config["engine"]["image_columns"] == {"digit": PIXELS}
    assert (monitored.state, _image(monitored)["status"], _image(monitored)["score"]) == (
        "succeeded",
        "drift",
        pytest.approx(1 / 201),
    )
    assert clean.config["engine"]["image_columns"] == {"digit": PIXELS}
    for check in (clean, drifted):
        assert (check.state, check.error) == ("succeeded", "")
        # 1,797 digits a side, sampled to 1,000; the model's 64 penultimate activations compared.
        image = _image(check)
        assert (image["kind"], image["method"], image["reference_count"], image["current_count"]) == (
            "image",
            "mmd",
            1000,
            1000,
        )
        assert image["threshold"] == 0.05
        assert image["message"].endswith("; the model's 64-dimensional embeddings of the images")
    print(
        f"image check on 1,000 + 1,000 digits: {(clean.finished_at - clean.started_at).total_seconds():.1f} s"
    )

    # The same digits: no drift, nothing raised.
    assert _image(clean)["status"] == "ok"
    assert _image(clean)["score"] > 0.05
    assert (clean.drifted_count, clean.is_breach, clean.results[0]["status"]) == (0, False, "ok")
    # Rotated digits: the labels are the same, the images are not; the image drifts (p = 1/201:
    # no permutation reached the observed MMD), which is 1 of the 2 columns: dataset drift.
    assert _image(drifted)["status"] == "drift"
    assert _image(drifted)["score"] == pytest.approx(1 / 201)
    assert "classifier AUC" in _image(drifted)["message"]
    assert (drifted.results[0]["status"], drifted.drifted_count, drifted.is_dataset_drift) == ("ok", 1, True)
    alert = Alert.objects.get(dedup_key=f"model_version:{version.pk}")
    assert (alert.drift_check_id, alert.title) == (drifted.pk, f"Dataset drift on {version}: 1 of 2 columns")
    assert Alert.objects.get(monitor_id=monitor.json()["id"]).drift_check_id == monitored.pk
    assert alert.summary.startswith("digit: mmd = 0.004975 (threshold 0.05)")

    browser = Client()
    browser.force_login(scientist)
    page = browser.get(drifted.get_absolute_url()).content.decode()
    assert "<td><code>digit</code></td>\n                <td>image</td>\n                <td>mmd</td>" in page
    assert "(1000 reference / 1000 current rows sampled)" in page

    # Calibration of the test on the model's embeddings: 20 random halves of the same digits.
    started = time.monotonic()
    vectors = embed_in_child(version, frame)
    print(f"the model's child embedded 1,797 digits in {time.monotonic() - started:.1f} s")
    assert vectors.shape == (1797, 64)
    alarms = 0
    for trial in range(20):
        order = np.random.default_rng(trial).permutation(len(vectors))
        _, p_value = mmd_permutation_test(vectors[order[:898]], vectors[order[898:]], 200, seed=trial)
        alarms += p_value < 0.05
    print(f"image MMD false alarms in 20 no-drift trials: {alarms}")
    assert alarms <= 4


@pytest.mark.django_db
def test_an_image_needs_a_steward_vision_model_400_naming_the_field(
    client_for, scientist, registered_version, current_dataset_version
):
    api = client_for(scientist)
    check = api.post(
        "/api/drift-checks/",
        {
            "model_version": registered_version.pk,
            "current_dataset_version": current_dataset_version.pk,
            "column_kinds": {"pixels": "image"},
        },
        format="json",
    )
    monitor = api.post(
        "/api/monitors/",
        {"model_version": registered_version.pk, "name": "images", "column_kinds": {"pixels": "image"}},
        format="json",
    )

    expected = {
        "column_kinds": [
            "'pixels' is an image, compared through the model's own embeddings (its penultimate layer): "
            "only a Steward vision model gives them (a version registered by a run of the vision template), "
            f"and {registered_version} is not one"
        ]
    }
    assert (check.status_code, check.json()) == (400, expected)
    assert (monitor.status_code, monitor.json()) == (400, expected)
    assert DriftCheck.objects.count() == 0


# The engine alone (no Django, no model): what an image's result says when the embedding fails. ----


def _digit_rows(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    values = np.random.default_rng(seed).normal(loc=shift, size=(rows, 4))
    return pd.DataFrame(values, columns=["q0", "q1", "q2", "q3"]).assign(label=1)


def _image_config() -> CheckConfig:
    return CheckConfig(
        columns=("label",),
        column_kinds={"img": "image"},
        image_columns={"img": ("q0", "q1", "q2", "q3")},
        min_sample_size=10,
    )


def test_an_images_rows_are_sampled_embedded_once_and_compared():
    calls: list[int] = []

    def embed(rows: pd.DataFrame) -> np.ndarray:
        calls.append(len(rows))
        return rows.to_numpy() * 2.0

    reference = _digit_rows(3000, 1)
    same, moved = _digit_rows(500, 4), _digit_rows(500, 3, shift=0.5)
    moved.loc[:9, "q0"] = np.nan  # rows with a missing pixel are left out

    config = _image_config()
    assert raw_data_columns(config) == ["q0", "q1", "q2", "q3"]
    (ok,) = compare_raw_columns(reference, same, config, embed=embed)
    (drift,) = compare_raw_columns(reference, moved, config, embed=embed)
    result = run_check(build_profile(reference), moved, config, raw_results=[drift])

    assert calls == [1500, 1490]  # one call per check: 1,000 reference rows + the current ones
    assert (ok.kind, ok.status.value, ok.method, ok.reference_count, ok.current_count) == (
        "image",
        "ok",
        "mmd",
        1000,
        500,
    )
    assert (drift.status.value, drift.current_count, drift.score) == ("drift", 490, pytest.approx(1 / 201))
    assert drift.message.endswith("; the model's 4-dimensional embeddings of the images")
    assert [(c.column, c.status.value) for c in result.columns] == [("label", "ok"), ("img", "drift")]
    assert (result.number_of_drifted_columns, result.is_dataset_drift) == (1, True)


@pytest.mark.parametrize(
    ("embed", "current", "status", "message"),
    [
        (None, _digit_rows(100, 2), "skipped", "no model runtime in this process to embed the images"),
        (
            lambda rows: (_ for _ in ()).throw(RuntimeError("the model's child stopped: no such column")),
            _digit_rows(100, 2),
            "error",
            "could not embed the images: the model's child stopped: no such column",
        ),
        (
            lambda rows: np.zeros((3, 2)),
            _digit_rows(100, 2),
            "error",
            "the model gave embeddings of shape (3, 2) for 1100 images",
        ),
        (lambda rows: rows.to_numpy(), _digit_rows(100, 2).drop(columns=["q2", "q3"]), "error", None),
        (
            lambda rows: rows.to_numpy(),
            _digit_rows(20, 2),
            "insufficient_data",
            "not enough complete images (rows with every pixel): 1000 reference and 20 current; "
            "each side needs at least 30",
        ),
    ],
)
def test_an_image_that_cannot_be_embedded_says_why_and_the_others_go_on(embed, current, status, message):
    (result,) = compare_raw_columns(_digit_rows(3000, 1), current, _image_config(), embed=embed)

    assert (result.column, result.kind, result.status.value) == ("img", "image", status)
    assert result.message == (message or "image 'img': column(s) 'q2', 'q3' missing from the current data")


def test_an_image_without_its_pixel_columns_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError) as raised:
        CheckConfig(column_kinds={"img": "image"})
    assert raised.value.field == "column_kinds"
    assert (
        str(raised.value) == "each image needs its pixel columns: images ['img'], pixel columns given for []"
    )
