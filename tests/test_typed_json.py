"""JSON a person types (row filters, job specs) that the database could not store is a 400 naming
the field, in the UI and the API alike, and leaves no row and no audit event.

A hostile tester's run (issue 8) found NaN, a number beyond a float's range (``1e999`` parses to
infinity) and a NUL character passing validation: PostgreSQL's jsonb refused them as a 500, SQLite's
JSON check as a misleading 409.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from governance.models import AuditEvent
from monitoring.models import Monitor
from runners.models import Job
from tests.conftest import BIKE_FEATURES

NUL = "where: 'yr': text may not contain NUL characters"


@pytest.mark.parametrize(
    ("where", "message"),
    # Written as the client sends it: 1e999 is valid JSON that Python reads as infinity, which the
    # API's JSON field already refuses as not JSON it could write back.
    [
        ('{"yr": 1e999}', "Value must be valid JSON."),
        ('{"yr": "a\\u0000"}', NUL),
        ('{"yr": [0, "a\\u0000"]}', NUL),
    ],
)
def test_a_training_job_with_an_unstorable_row_filter_is_a_400(
    client_for, scientist, dataset_version, registered_model, training_spec, where, message
):
    events = AuditEvent.objects.count()
    body = json.dumps(
        {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": training_spec | {"where": "WHERE"},
        }
    ).replace('"WHERE"', where)

    response = client_for(scientist).post("/api/jobs/", body, content_type="application/json")

    assert (response.status_code, response.json()) == (400, {"spec": [message]})
    assert (Job.objects.count(), AuditEvent.objects.count()) == (0, events)


def test_an_inference_job_naming_its_output_with_a_nul_is_a_400(
    client_for, scientist, dataset_version, registered_version
):
    events = AuditEvent.objects.count()

    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "infer",
            "dataset_version": dataset_version.pk,
            "model_version": registered_version.pk,
            "spec": {"output_dataset": "predictions\x00"},
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"spec": ["output_dataset: text may not contain NUL characters"]}
    assert (Job.objects.count(), AuditEvent.objects.count()) == (0, events)


@pytest.mark.parametrize("field", ["reference_where", "retrain_where"])
def test_a_monitor_with_a_nul_in_a_row_filter_is_a_400(client_for, scientist, registered_version, field):
    events = AuditEvent.objects.count()

    response = client_for(scientist).post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "nightly",
            "retrain_on_drift": True,
            field: {"yr": "a\x00"},
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {field: [NUL]}
    assert (Monitor.objects.count(), AuditEvent.objects.count()) == (0, events)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ('{"yr": NaN}', "NaN is not a number JSON allows"),
        ('{"yr": -Infinity}', "-Infinity is not a number JSON allows"),
        ('{"yr": 1e999}', "inf is not a finite number"),
        ('{"yr": "a\\u0000"}', "text may not contain NUL characters"),
    ],
)
def test_the_monitor_form_refuses_what_cannot_be_stored_on_its_field(
    client, scientist, registered_version, typed, message
):
    client.force_login(scientist)
    form = {
        "name": "nightly",
        "source": "predictions",
        "window_versions": 1,
        "drift_share": 0.5,
        "min_sample_size": 2000,
        "performance_tolerance": 0.1,
        "severity": "warning",
        "auto_resolve_after": 2,
        "reopen_within_hours": 24,
        "reference_where": typed,
    }

    response = client.post(reverse("monitor_create", args=[registered_version.pk]), form)

    assert response.status_code == 400
    assert response.context["form"].errors["reference_where"] == [message]
    assert not Monitor.objects.exists()


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ('{"yr": 1e999}', "inf is not a finite number"),
        ('{"yr": "a\\u0000"}', "text may not contain NUL characters"),
    ],
)
def test_the_training_form_refuses_what_cannot_be_stored_on_its_field(
    client, scientist, dataset_version, registered_model, typed, message
):
    client.force_login(scientist)
    form = {
        "registered_model": registered_model.pk,
        "dataset_version": dataset_version.pk,
        "target": "cnt",
        "features": ", ".join(BIKE_FEATURES),
        "epochs": 3,
        "batch_size": 128,
        "learning_rate": 0.003,
        "seed": 7,
        "where": typed,
    }

    response = client.post(reverse("job_list"), form)

    assert response.status_code == 400
    assert response.context["form"].errors["where"] == [message]
    assert not Job.objects.exists()
