"""Issue 11: late labels (posted through the API, joined to served predictions by their id or to
batch outputs by a key column), performance drift by a bootstrap confidence interval, and the
estimated performance of a classifier from its confidence (CBPE), through the API, a worker's
check and the check page."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pandas as pd
import pytest

from governance.actions.aliases import do_set_alias
from governance.models import AuditEvent
from monitoring.engine import performance as perf
from monitoring.execute import execute_drift_check
from monitoring.models import CheckState, DriftCheck, PredictionLabel
from tests.conftest import BIKE_FEATURES, run_job
from tests.monitoring.test_column_rules import _wait_for, report_worker  # noqa: F401 (a fixture)

ALIAS_URL = "/api/models/bike-demand/aliases/staging/predict"


@pytest.fixture
def served(registered_version, scientist, client_for, bike_frame, settings):
    """600 rows of 2012 predicted through the API: (the rows, the answer's prediction ids)."""
    settings.STEWARD_PREDICT_MAX_ROWS = 1000
    do_set_alias(model=registered_version.model, alias="staging", version=registered_version, actor=scientist)
    rows = bike_frame[bike_frame["yr"] == 1].iloc[:600]
    records = rows[BIKE_FEATURES].to_dict("records")
    answer = client_for(scientist).post(ALIAS_URL, {"rows": records}, format="json")
    assert answer.status_code == 200, answer.content
    return rows.reset_index(drop=True), answer.json()["prediction_ids"]


def labels_url(version) -> str:
    return f"/api/models/{version.model_id}/labels/"


def test_labels_are_stored_once_and_unknown_ids_are_reported(
    registered_version, served, scientist, client_for
):
    rows, ids = served
    client = client_for(scientist)
    body = [{"prediction_id": ids[i], "label": int(rows["cnt"][i])} for i in range(400)]
    unknown = str(uuid.uuid4())

    first = client.post(
        labels_url(registered_version),
        {"labels": [*body, body[0], {"prediction_id": unknown, "label": 3}]},
        format="json",
    )
    again = client.post(labels_url(registered_version), {"labels": body[:10]}, format="json")
    corrected = client.post(
        labels_url(registered_version), {"labels": [{"prediction_id": ids[0], "label": 999}]}, format="json"
    )

    assert first.status_code == 200, first.content
    assert first.json() == {
        "received": 402,
        "created": 400,
        "updated": 0,
        "unchanged": 1,
        "unknown": 1,
        "unknown_prediction_ids": [unknown],
    }
    assert again.json() | {"unknown_prediction_ids": []} == {
        "received": 10,
        "created": 0,
        "updated": 0,
        "unchanged": 10,
        "unknown": 0,
        "unknown_prediction_ids": [],
    }
    assert corrected.json()["updated"] == 1
    assert PredictionLabel.objects.count() == 400
    assert PredictionLabel.objects.get(key=ids[0]).label == 999
    events = AuditEvent.objects.filter(action="labels.receive").order_by("id")
    assert [event.after["created"] for event in events] == [400, 0, 0]
    assert events[0].actor == scientist
    summary = client.get(labels_url(registered_version)).json()
    assert (summary["labels"], summary["by_prediction_id"], summary["by_key"]) == (400, 400, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"labels": []}, "expected a non-empty list"),
        ({"labels": [{"prediction_id": "nope", "label": 1}]}, "row 0: prediction_id is not a UUID"),
        ({"labels": [{"key": "7", "label": ""}]}, "row 0: the label is empty"),
        ({"labels": [{"key": "7", "label": None}]}, "row 0: the label is missing"),
        ({"labels": [{"key": "7"}]}, "row 0: the label is missing"),
        ({"labels": [{"key": "7", "prediction_id": str(uuid.uuid4()), "label": 1}]}, "exactly one of"),
        ({"labels": [{"key": "7", "label": [1, 2]}]}, "must be a number, a text or a boolean"),
        ({"labels": [{"key": "7", "label": "x" * 300}]}, "longer than 255"),
        (
            {"labels": [{"key": "7", "label": 1}, {"key": 7, "label": 2}]},
            "row 1: key 7 has two different labels",
        ),
        ({"labels": [{"key": "x", "label": 1}] * 11}, "11 rows is more than the limit of 10"),
        ({"labels": [{"key": "a\x00b", "label": 1}]}, "row 0: the key holds a NUL character"),
        ({"labels": [{"key": "7", "label": "a\x00"}]}, "row 0: the label holds a NUL character"),
        ({"labels": {"key": "7", "label": 1}}, "expected a non-empty list"),
    ],
)
def test_bad_deliveries_are_refused_with_the_row(
    body, message, registered_version, scientist, client_for, settings
):
    settings.STEWARD_LABELS_MAX_ROWS = 10

    answer = client_for(scientist).post(labels_url(registered_version), body, format="json")

    assert answer.status_code == 400, answer.content
    assert message in str(answer.json())
    assert PredictionLabel.objects.count() == 0


def test_nan_in_json_is_refused_and_a_viewer_may_not_post(
    registered_version, scientist, viewer, outsider, client_for
):
    raw = '{"labels": [{"key": "1", "label": NaN}]}'
    nan = client_for(scientist).post(labels_url(registered_version), raw, content_type="application/json")
    body = {"labels": [{"key": "1", "label": 1}]}

    assert nan.status_code == 400
    assert client_for(viewer).post(labels_url(registered_version), body, format="json").status_code == 403
    assert client_for(outsider).post(labels_url(registered_version), body, format="json").status_code == 404
    assert client_for(viewer).get(labels_url(registered_version)).status_code == 200
    assert PredictionLabel.objects.count() == 0


def test_a_served_monitor_joins_late_labels_and_tests_the_change_by_bootstrap(
    registered_version, served, scientist, client_for, client
):
    rows, ids = served
    api = client_for(scientist)
    body = [{"prediction_id": ids[i], "label": int(rows["cnt"][i])} for i in range(450)]
    assert api.post(labels_url(registered_version), {"labels": body}, format="json").status_code == 200
    created = api.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "online",
            "source": "served",
            "min_sample_size": 100,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["performance_test"] == "bootstrap"
    assert api.post(f"/api/monitors/{created.json()['id']}/run/").status_code in (200, 201, 202)
    check = DriftCheck.objects.get()

    assert execute_drift_check(check.pk, make_report=False) == CheckState.SUCCEEDED
    check.refresh_from_db()
    performance = check.performance
    assert performance["coverage"] == {
        "rows": 600,
        "labelled": 450,
        "share": 0.75,
        "late_labels": 450,
        "joined_on": "prediction_id",
    }
    assert (performance["rows"], performance["test"], performance["alpha"]) == (450, "bootstrap", 0.05)
    mae = performance["metrics"]["mae"]
    served_rows = check.current_dataset_version
    frame = pd.read_csv(served_rows.path).iloc[:450]
    expected = float(np.abs(frame["prediction"] - rows["cnt"][:450]).mean())
    assert mae["current"] == pytest.approx(expected)
    assert mae["ci_low"] < mae["difference"] < mae["ci_high"]
    assert mae["ci_level"] == pytest.approx(0.9)
    # 2012's demand is far above what a 2011 model predicts: a significant worsening.
    degraded = [name for name, values in performance["metrics"].items() if values["is_degraded"]]
    assert degraded
    assert check.is_performance_drift is True
    assert all(performance["metrics"][name]["ci_low"] > 0 for name in degraded)  # error metrics: worse is up
    assert api.get(f"/api/drift-checks/{check.pk}/").json()["performance"]["coverage"]["labelled"] == 450
    client.force_login(scientist)
    page = client.get(f"/drift-checks/{check.pk}/").content.decode()
    assert "Labels coverage: 450 of 600 rows in the window have a label (75%)" in page
    assert "bootstrap confidence interval" in page


def test_batch_outputs_join_labels_uploaded_as_a_file_by_a_key_column(
    registered_version, dataset_version, scientist, client_for
):
    outputs = run_job(
        kind="infer",
        dataset_version=dataset_version,
        model_version=registered_version,
        spec={"where": {"yr": 1}},
        actor=scientist,
    ).output_dataset_version
    frame = pd.read_csv(outputs.path)
    labels = pd.DataFrame({"key": frame["instant"].iloc[:3000], "label": frame["cnt"].iloc[:3000]})
    upload = io.BytesIO(labels.to_csv(index=False).encode())
    upload.name = "labels.csv"
    api = client_for(scientist)

    posted = api.post(labels_url(registered_version), {"file": upload}, format="multipart")

    assert posted.status_code == 200, posted.content
    assert posted.json()["created"] == 3000
    created = api.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "batch",
            "label_key": "instant",
            "performance_test": "tolerance",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    bad = api.post(
        "/api/monitors/",
        {"model_version": registered_version.pk, "name": "b2", "label_key": "nope"},
        format="json",
    )
    assert bad.status_code == 400
    assert "label_key" in bad.json()
    api.post(f"/api/monitors/{created.json()['id']}/run/")
    check = DriftCheck.objects.get()
    assert execute_drift_check(check.pk, make_report=False) == CheckState.SUCCEEDED
    check.refresh_from_db()
    # The outputs hold their own cnt too: every row is labelled, 3000 of them by late labels.
    assert check.performance["coverage"] | {"share": 1.0} == {
        "rows": len(frame),
        "labelled": len(frame),
        "share": 1.0,
        "late_labels": 3000,
        "joined_on": "instant",
    }
    assert check.performance["test"] == "tolerance"
    assert "ci_low" not in check.performance["metrics"]["mae"]


ADULT_FEATURES = [
    "age",
    "education-num",
    "hours-per-week",
    "capital-gain",
    "sex",
    "relationship",
    "occupation",
]


@pytest.fixture
def adult_classifier(adult_version, registered_model, scientist):
    """A classifier of the adult data's income label, trained on its White rows by a job."""
    spec = {
        "target": "label",
        "features": ADULT_FEATURES,
        "categorical": ["sex", "relationship", "occupation"],
        "epochs": 3,
        "batch_size": 256,
        "seed": 1,
        "where": {"race": " White"},
    }
    return run_job(
        kind="train",
        dataset_version=adult_version,
        registered_model=registered_model,
        spec=spec,
        actor=scientist,
    ).output_model_version


def test_the_estimated_accuracy_of_an_adult_classifier_is_close_to_the_realized_one(
    adult_classifier, adult_version, scientist, client_for, client
):
    version = adult_classifier
    outputs = run_job(
        kind="infer",
        dataset_version=adult_version,
        model_version=version,
        spec={"where": {"race": " Black"}},
        actor=scientist,
    ).output_dataset_version
    frame = pd.read_csv(outputs.path)
    assert frame["confidence"].between(0.5, 1).all()  # two classes: the top one is at least 1/2
    api = client_for(scientist)
    created = api.post("/api/monitors/", {"model_version": version.pk, "name": "adult"}, format="json")
    assert created.status_code == 201, created.content
    api.post(f"/api/monitors/{created.json()['id']}/run/")
    check = DriftCheck.objects.get()

    assert execute_drift_check(check.pk, make_report=False) == CheckState.SUCCEEDED
    check.refresh_from_db()
    estimated = check.performance["estimated"]
    realized = check.performance["metrics"]["accuracy"]["current"]
    assert (estimated["estimated"], estimated["method"], estimated["rows"]) == (True, "cbpe", len(frame))
    assert estimated["accuracy"] == pytest.approx(realized, abs=0.03)
    assert estimated["f1"] == pytest.approx(check.performance["metrics"]["f1"]["current"], abs=0.06)
    client.force_login(scientist)
    page = client.get(f"/drift-checks/{check.pk}/").content.decode()
    assert "Estimated without labels" in page
    assert "estimated</span>" in page


def test_bootstrap_flags_a_real_drop_and_not_the_same_distribution():
    rng = np.random.default_rng(3)
    truth = pd.Series(rng.choice(["a", "b"], size=4000))
    good = truth.where(rng.random(4000) < 0.85, truth.map({"a": "b", "b": "a"}))
    worse = truth.where(rng.random(4000) < 0.80, truth.map({"a": "b", "b": "a"}))
    base = {"accuracy": (0.85, "validation")}

    same = perf.bootstrap_compare(
        "classification", (truth[:2000], good[:2000]), base, reference=(truth[2000:], good[2000:])
    )
    drop = perf.bootstrap_compare(
        "classification", (truth[:2000], worse[:2000]), base, reference=(truth[2000:], good[2000:])
    )
    again = perf.bootstrap_compare(
        "classification", (truth[:2000], worse[:2000]), base, reference=(truth[2000:], good[2000:])
    )

    assert same["accuracy"]["is_degraded"] is False
    assert drop["accuracy"]["is_degraded"] is True
    assert drop == again  # seeded
    with pytest.raises(ValueError, match="alpha must be in"):
        perf.bootstrap_compare("classification", (truth, good), base, alpha=0.7)


def test_cbpe_expects_the_mean_confidence():
    predicted = pd.Series(["a", "b", "a", "b"])
    estimate = perf.estimate_classification(predicted, pd.Series([0.9, 0.6, 1.0, np.nan]))

    assert estimate["accuracy"] == pytest.approx((0.9 + 0.6 + 1.0) / 3)
    assert estimate["rows"] == 3
    # a: TP 1.9, FP 0.1, FN 0.4 (b's row wrongly b); b: TP 0.6, FP 0.4, FN 0.1.
    assert estimate["f1"] == pytest.approx((3.8 / (3.8 + 0.5) + 1.2 / (1.2 + 0.5)) / 2)


def test_served_classifier_rows_carry_their_confidence_and_get_an_estimate(
    adult_classifier, scientist, client_for, settings
):
    from tests.conftest import ADULT

    settings.STEWARD_PREDICT_MAX_ROWS = 1000
    do_set_alias(model=adult_classifier.model, alias="staging", version=adult_classifier, actor=scientist)
    adult = pd.read_csv(ADULT)
    rows = adult[adult["race"] == " Black"].iloc[:800].reset_index(drop=True)
    api = client_for(scientist)
    answer = api.post(ALIAS_URL, {"rows": rows[ADULT_FEATURES].to_dict("records")}, format="json")
    assert answer.status_code == 200, answer.content
    ids = answer.json()["prediction_ids"]
    body = [{"prediction_id": ids[i], "label": rows["label"][i]} for i in range(800)]
    assert api.post(labels_url(adult_classifier), {"labels": body}, format="json").json()["created"] == 800
    created = api.post(
        "/api/monitors/",
        {"model_version": adult_classifier.pk, "name": "online", "source": "served", "min_sample_size": 100},
        format="json",
    )
    assert created.status_code == 201, created.content
    api.post(f"/api/monitors/{created.json()['id']}/run/")
    check = DriftCheck.objects.get()

    assert execute_drift_check(check.pk, make_report=False) == CheckState.SUCCEEDED
    check.refresh_from_db()
    served = pd.read_csv(check.current_dataset_version.path)
    assert served["confidence"].between(0.5, 1).all()
    performance = check.performance
    realized = float((served["prediction"] == rows["label"]).mean())
    assert performance["coverage"]["late_labels"] == 800
    assert performance["metrics"]["accuracy"]["current"] == pytest.approx(realized)
    assert performance["estimated"]["accuracy"] == pytest.approx(realized, abs=0.05)
    assert api.get(f"/api/drift-checks/{check.pk}/").json()["performance"]["estimated"]["estimated"] is True


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_joins_late_labels_posted_after_the_predictions(
    report_worker,  # noqa: F811
    registered_version,
    served,
    scientist,
    client_for,
):
    rows, ids = served
    api = client_for(scientist)
    body = [{"prediction_id": ids[i], "label": int(rows["cnt"][i])} for i in range(300)]
    assert api.post(labels_url(registered_version), {"labels": body}, format="json").status_code == 200
    created = api.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "online",
            "source": "served",
            "min_sample_size": 100,
            "make_report": False,
        },
        format="json",
    )
    ran = api.post(f"/api/monitors/{created.json()['id']}/run/")
    check_id = ran.json()["id"]

    _wait_for("finished", lambda: DriftCheck.objects.get(pk=check_id).state in ("succeeded", "failed"))

    check = DriftCheck.objects.get(pk=check_id)
    assert (check.state, check.error) == ("succeeded", "")
    coverage = check.performance["coverage"]
    assert (coverage["rows"], coverage["labelled"], coverage["late_labels"]) == (600, 300, 300)
    assert check.performance["test"] == "bootstrap"
    assert {"ci_low", "ci_high"} <= set(check.performance["metrics"]["mae"])


def test_the_monitor_form_sets_the_performance_test_and_the_label_key(client, registered_version, scientist):
    from django.urls import reverse

    from monitoring.models import Monitor
    from tests.monitoring.test_ui import MONITOR_FORM

    client.force_login(scientist)
    form = MONITOR_FORM | {
        "check_performance": "on",
        "performance_test": "bootstrap",
        "performance_alpha": 0.01,
        "performance_min_effect": 0.05,
        "label_key": "instant",
    }

    created = client.post(reverse("monitor_create", args=[registered_version.pk]), form)
    refused = client.post(
        reverse("monitor_create", args=[registered_version.pk]),
        form | {"name": "n2", "performance_alpha": 0.7},
    )

    assert created.status_code == 302
    monitor = Monitor.objects.get()
    assert (monitor.performance_test, monitor.performance_alpha, monitor.performance_min_effect) == (
        "bootstrap",
        0.01,
        0.05,
    )
    assert monitor.label_key == "instant"
    assert refused.status_code == 400  # the form again, with the field's error
    assert "must be in (0, 0.5)" in refused.content.decode()
    page = client.get(monitor.get_absolute_url()).content.decode()
    assert "by a bootstrap test at alpha 0.01 (at least 5% worse)" in page
    assert "late labels joined on <code>instant</code>" in page
