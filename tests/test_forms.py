"""The server-rendered UI's forms: each form's happy path, its refusals shown on the field, and the
personas it refuses (nothing created on refusal). Pages for every persona: test_pages.py."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from governance.models import AuditEvent, Dataset, DatasetVersion, RegisteredModel
from monitoring.models import Alert, AlertState, DriftCheck
from runners.actions import do_submit_job
from runners.models import Job, JobKind, JobState
from tests.conftest import BIKE_FEATURES

# Forms: datasets ------------------------------------------------------------------------------


def test_new_dataset_form_creates_it(client, team, scientist):
    client.force_login(scientist)
    response = client.post(reverse("dataset_list"), {"team": team.pk, "name": "trips", "description": "raw"})
    dataset = Dataset.objects.get(name="trips")
    assert response.status_code == 302
    assert response["Location"] == dataset.get_absolute_url()
    assert AuditEvent.objects.filter(action="dataset.create", object_id=str(dataset.pk)).count() == 1


def test_new_dataset_form_shows_a_taken_name(client, dataset, scientist):
    client.force_login(scientist)
    response = client.post(reverse("dataset_list"), {"team": dataset.team_id, "name": "bike-sharing-hourly"})
    assert response.status_code == 400
    assert "already has a dataset named &#x27;bike-sharing-hourly&#x27;" in response.content.decode()
    assert Dataset.objects.count() == 1


def test_viewer_cannot_create_a_dataset(client, team, viewer):
    client.force_login(viewer)
    assert "New dataset" not in client.get(reverse("dataset_list")).content.decode()
    response = client.post(reverse("dataset_list"), {"team": team.pk, "name": "trips"})
    assert response.status_code == 403
    assert "you may not change objects of this team" in response.content.decode()
    assert not Dataset.objects.exists()


def test_outsider_cannot_name_another_teams_team(client, team, outsider):
    client.force_login(outsider)
    response = client.post(reverse("dataset_list"), {"team": team.pk, "name": "trips"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Dataset.objects.exists()


def test_upload_registers_the_next_version(client, dataset_version, scientist):
    client.force_login(scientist)
    upload = SimpleUploadedFile("small.csv", b"a,b\n1,x\n2,y\n3,z\n", content_type="text/csv")
    response = client.post(
        dataset_version.dataset.get_absolute_url(), {"file": upload, "description": "tiny"}
    )
    version = DatasetVersion.objects.get(dataset=dataset_version.dataset, version=2)
    assert response.status_code == 302
    assert response["Location"] == version.get_absolute_url()
    assert (version.row_count, version.column_names, version.source) == (3, ["a", "b"], "upload")
    page = client.get(version.get_absolute_url()).content.decode()
    assert "Registered bike-sharing-hourly v2 (3 rows)." in page


def test_upload_of_a_non_csv_file_shows_why_and_registers_nothing(client, dataset_version, scientist):
    client.force_login(scientist)
    upload = SimpleUploadedFile("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", content_type="image/png")
    response = client.post(dataset_version.dataset.get_absolute_url(), {"file": upload})
    assert response.status_code == 400
    assert "photo.png: not a CSV or Parquet file (binary content)" in response.content.decode()
    assert DatasetVersion.objects.count() == 1


def test_viewer_cannot_upload(client, dataset_version, viewer):
    client.force_login(viewer)
    page = client.get(dataset_version.dataset.get_absolute_url()).content.decode()
    assert "Upload a new version" not in page
    upload = SimpleUploadedFile("small.csv", b"a\n1\n", content_type="text/csv")
    response = client.post(dataset_version.dataset.get_absolute_url(), {"file": upload})
    assert response.status_code == 403
    assert DatasetVersion.objects.count() == 1


# Forms: models --------------------------------------------------------------------------------


def test_new_model_form_registers_it_with_a_team_member_as_owner(client, team, owner, scientist):
    client.force_login(scientist)
    response = client.post(reverse("model_list"), {"team": team.pk, "name": "rides", "owner": owner.pk})
    model = RegisteredModel.objects.get(name="rides")
    assert response.status_code == 302
    assert response["Location"] == model.get_absolute_url()
    assert model.owner == owner


def test_new_model_form_refuses_an_owner_outside_the_team(client, team, admin, outsider):
    client.force_login(admin)
    response = client.post(reverse("model_list"), {"team": team.pk, "name": "rides", "owner": outsider.pk})
    assert response.status_code == 400
    assert "oscar is not a member of team Mobility" in response.content.decode()
    assert not RegisteredModel.objects.exists()


# Forms: jobs ----------------------------------------------------------------------------------


def _training_form(dataset_version, registered_model, **overrides) -> dict:
    form = {
        "registered_model": registered_model.pk,
        "dataset_version": dataset_version.pk,
        "target": "cnt",
        "features": ", ".join(BIKE_FEATURES),
        "categorical": "season, weathersit",
        "epochs": 3,
        "batch_size": 128,
        "learning_rate": 0.003,
        "seed": 7,
        "where": '{"yr": 0}',
    }
    return form | overrides


def test_training_form_submits_a_job(client, dataset_version, registered_model, scientist):
    client.force_login(scientist)
    response = client.post(reverse("job_list"), _training_form(dataset_version, registered_model))
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == job.get_absolute_url()
    assert (job.kind, job.state, job.created_by) == (JobKind.TRAIN, JobState.QUEUED, scientist)
    assert job.spec["features"] == BIKE_FEATURES
    assert job.spec["categorical"] == ["season", "weathersit"]
    assert (job.spec["epochs"], job.spec["batch_size"], job.spec["learning_rate"], job.spec["seed"]) == (
        3,
        128,
        0.003,
        7,
    )
    assert job.spec["where"] == {"yr": 0}
    assert (job.resource_class, job.gpus) == ("cpu", 0)


def test_training_form_asks_for_a_resource_class_and_says_which_queue_the_job_waits_for(
    client, dataset_version, registered_model, scientist
):
    client.force_login(scientist)
    response = client.post(
        reverse("job_list"),
        _training_form(dataset_version, registered_model, resource_class="gpu"),
        follow=True,
    )
    job = Job.objects.get()
    assert (job.resource_class, job.gpus, job.spec["resources"]) == ("gpu", 1, {"class": "gpu", "gpus": 1})
    assert (
        f"Submitted {job}: waits for a worker of resource class &#x27;gpu&#x27; "
        "(Celery queue &#x27;gpu&#x27;: celery -A config worker -Q gpu)."
    ) in response.content.decode()


def test_training_form_names_the_missing_column_on_its_field(
    client, dataset_version, registered_model, scientist
):
    client.force_login(scientist)
    response = client.post(
        reverse("job_list"), _training_form(dataset_version, registered_model, features="temp, rainfall")
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["features"] == ["features: column(s) 'rainfall' not in the dataset"]
    assert not Job.objects.exists()


def test_training_form_rejects_a_where_that_is_not_json(client, dataset_version, registered_model, scientist):
    client.force_login(scientist)
    response = client.post(
        reverse("job_list"), _training_form(dataset_version, registered_model, where="yr=0")
    )
    assert response.status_code == 400
    assert response.context["form"].errors["where"] == ["not valid JSON: Expecting value (line 1, column 1)"]
    assert not Job.objects.exists()


def test_viewer_cannot_submit_a_job(client, dataset_version, registered_model, viewer):
    client.force_login(viewer)
    assert "Train a model" not in client.get(reverse("job_list")).content.decode()
    response = client.post(reverse("job_list"), _training_form(dataset_version, registered_model))
    assert response.status_code == 403
    assert "you may not change objects of this team" in response.content.decode()
    assert not Job.objects.exists()


def test_cancel_button_cancels_a_queued_job_once(
    client, dataset_version, registered_model, scientist, viewer
):
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec={"target": "cnt", "features": ["temp"]},
        actor=scientist,
    )
    client.force_login(viewer)
    refused = client.post(reverse("job_cancel", args=[job.pk]))
    assert refused.status_code == 403
    assert "you may not change objects of this team" in refused.content.decode()
    job.refresh_from_db()
    assert job.state == JobState.QUEUED

    client.force_login(scientist)
    response = client.post(reverse("job_cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    again = client.post(reverse("job_cancel", args=[job.pk]))
    assert again.status_code == 400
    assert f"job #{job.pk} already cancelled; nothing to cancel" in again.content.decode()
    assert AuditEvent.objects.filter(action="job.cancel").count() == 1


def test_inference_form_submits_a_job(client, registered_version, dataset_version, scientist):
    client.force_login(scientist)
    url = reverse("model_version_infer", args=[registered_version.pk])
    response = client.post(url, {"dataset_version": dataset_version.pk, "where": '{"yr": 1}'})
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == job.get_absolute_url()
    assert (job.kind, job.model_version, job.spec) == (
        JobKind.INFER,
        registered_version,
        {"where": {"yr": 1}, "resources": {"class": "cpu", "gpus": 0}},
    )


def test_inference_form_shows_a_where_on_a_missing_column(
    client, registered_version, dataset_version, scientist
):
    client.force_login(scientist)
    url = reverse("model_version_infer", args=[registered_version.pk])
    response = client.post(url, {"dataset_version": dataset_version.pk, "where": '{"year": 2012}'})
    assert response.status_code == 400
    assert response.context["form"].errors["where"] == ["where: column 'year' is not in the dataset"]
    assert not Job.objects.exists()


# Forms: drift checks and alerts ---------------------------------------------------------------


def test_drift_check_form_requests_a_check(client, registered_version, current_dataset_version, scientist):
    client.force_login(scientist)
    url = reverse("drift_check_request", args=[registered_version.pk])
    response = client.post(url, {"current_dataset_version": current_dataset_version.pk, "drift_share": 0.3})
    check = DriftCheck.objects.get()
    assert response.status_code == 302
    assert response["Location"] == check.get_absolute_url()
    assert (check.model_version, check.current_dataset_version, check.drift_share) == (
        registered_version,
        current_dataset_version,
        0.3,
    )
    assert check.columns == [*BIKE_FEATURES, "cnt"]
    page = client.get(check.get_absolute_url()).content.decode()
    assert 'hx-trigger="every 2s"' in page  # queued: the verdict section polls


def test_drift_check_form_names_an_unknown_column(
    client, registered_version, current_dataset_version, scientist
):
    client.force_login(scientist)
    url = reverse("drift_check_request", args=[registered_version.pk])
    response = client.post(
        url,
        {"current_dataset_version": current_dataset_version.pk, "columns": "temp, rain", "drift_share": 0.5},
    )
    assert response.status_code == 400
    assert response.context["form"].errors["columns"] == [
        "'rain' not in the reference dataset version bike-sharing-hourly v1"
    ]
    assert not DriftCheck.objects.exists()


def test_viewer_cannot_request_a_drift_check(client, registered_version, current_dataset_version, viewer):
    client.force_login(viewer)
    url = reverse("drift_check_request", args=[registered_version.pk])
    response = client.post(url, {"current_dataset_version": current_dataset_version.pk, "drift_share": 0.5})
    assert response.status_code == 403
    assert not DriftCheck.objects.exists()


def test_owner_acknowledges_then_resolves_an_alert(client, drifted_check, owner):
    alert = Alert.objects.get(drift_check=drifted_check)
    client.force_login(owner)
    page = client.get(alert.get_absolute_url()).content.decode()
    assert "Acknowledge</button>" in page
    assert '<tr class="drifted"><td><code>cnt</code></td>' in page

    response = client.post(reverse("alert_acknowledge", args=[alert.pk]))
    assert response.status_code == 302
    assert response["Location"] == alert.get_absolute_url()
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == (AlertState.ACKNOWLEDGED, owner)
    page = client.get(alert.get_absolute_url()).content.decode()
    assert f"Alert #{alert.pk} acknowledged." in page
    assert "Acknowledge</button>" not in page

    again = client.post(reverse("alert_acknowledge", args=[alert.pk]))
    assert again.status_code == 400
    assert f"alert #{alert.pk} is acknowledged, not open" in again.content.decode()

    assert client.post(reverse("alert_resolve", args=[alert.pk])).status_code == 302
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by) == (AlertState.RESOLVED, owner)


def test_viewer_cannot_acknowledge_an_alert(client, drifted_check, viewer):
    alert = Alert.objects.get(drift_check=drifted_check)
    client.force_login(viewer)
    assert "Acknowledge</button>" not in client.get(alert.get_absolute_url()).content.decode()
    response = client.post(reverse("alert_acknowledge", args=[alert.pk]))
    assert response.status_code == 403
    assert "only the model&#x27;s owner or the team&#x27;s model owners and data scientists" in (
        response.content.decode()
    )
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN


def test_outsider_cannot_act_on_another_teams_alert(client, drifted_check, outsider):
    alert = Alert.objects.get(drift_check=drifted_check)
    client.force_login(outsider)
    assert client.post(reverse("alert_resolve", args=[alert.pk])).status_code == 404
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN


def test_forms_need_csrf(dataset_version, scientist):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(scientist)
    response = client.post(
        reverse("dataset_list"), {"team": dataset_version.dataset.team_id, "name": "trips"}
    )
    assert response.status_code == 403
    assert not Dataset.objects.filter(name="trips").exists()
    page = client.get(dataset_version.dataset.get_absolute_url()).content.decode()
    assert page.count('name="csrfmiddlewaretoken"') == 2  # upload form and logout


def test_owner_choices_are_the_members_of_visible_teams(client, team, owner, scientist, outsider):
    client.force_login(scientist)
    form = client.get(reverse("model_list")).context["form"]
    assert [user.username for user in form.fields["owner"].queryset] == ["dana", "olivia"]
