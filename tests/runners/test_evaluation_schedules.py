"""Scheduled evaluations (issue 15): a job schedule of kind ``evaluate`` evaluates a model version,
or whoever holds an alias of a model (``production``), on the newest labelled version of a dataset
(``governance.queries.newest_labelled_version``, the rule retraining on drift follows); both are
resolved at each firing, and a firing that cannot resolve them records why. Through the API, the
pages and the task beat calls; the job is run by the worker's function."""

from __future__ import annotations

import json

import pytest
from django_celery_beat.models import PeriodicTask

from governance.actions.aliases import do_delete_alias, do_set_alias
from governance.actions.datasets import do_register_dataset_version
from governance.actions.model_versions import do_register_model_version
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.models import AuditEvent, DatasetVersion, Evaluation
from runners import tasks
from runners.execute import execute_job
from runners.models import Job, JobKind, JobSchedule, JobState
from runners.specs import parse_spec
from tests.conftest import BIKE_FEATURES, small_training_spec

# Small resamples and one importance repeat: the engine's code, in test time.
SPEC = {
    "task": "regression",
    "target": "cnt",
    "slice_columns": ["season"],
    "where": {"yr": 1, "mnth": 12},
    "bootstrap_resamples": 20,
    "importance_repeats": 1,
    "importance_max_rows": 200,
}


def _register(model, dataset_version, scientist, result, **signature_changes):
    """Another version of ``model`` from the session's trained bike artifact (no job)."""
    return do_register_model_version(
        model=model,
        artifact_bytes=result.artifact,
        metrics=result.metrics,
        signature={**result.signature, **signature_changes},
        training_spec=parse_spec(small_training_spec(), dataset_version.column_names).as_dict(),
        training_dataset_version=dataset_version,
        source_job_id=None,
        actor=None,
        on_behalf_of=scientist,
    )


def _upload(dataset, scientist, frame, tmp_path, name: str) -> DatasetVersion:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename=name, source=DatasetVersion.Source.PATH, actor=scientist
    )


def _promote(version, scientist, approver) -> None:
    """Move the team's protected ``production`` alias to ``version`` (four eyes, no gates)."""
    request = do_request_promotion(model_version=version, actor=scientist)
    do_approve_promotion(promotion_request=request, actor=approver)


@pytest.fixture
def production(registered_version, scientist, approver):
    """Version 1 holds ``production``."""
    _promote(registered_version, scientist, approver)
    return registered_version


@pytest.fixture
def body(dataset, registered_model) -> dict:
    return {
        "name": "nightly evaluation of production",
        "kind": "evaluate",
        "dataset": dataset.pk,
        "registered_model": registered_model.pk,
        "model_alias": "production",
        "spec": SPEC,
        "cron": "0 6 * * *",
    }


@pytest.fixture
def schedule(client_for, scientist, production, body) -> JobSchedule:
    response = client_for(scientist).post("/api/job-schedules/", body, format="json")
    assert response.status_code == 201, response.json()
    return JobSchedule.objects.get(pk=response.json()["id"])


def _last_firing_event(schedule: JobSchedule) -> tuple[str, str, str]:
    event = AuditEvent.objects.filter(object_type="jobschedule", object_id=str(schedule.pk)).latest("id")
    return (event.action, event.actor_label, event.after["outcome"])


def test_an_evaluation_schedule_of_an_alias_is_created_audited_and_kept_in_beat(
    client_for, scientist, team, schedule, registered_model
):
    shown = client_for(scientist).get(f"/api/job-schedules/{schedule.pk}/").json()

    assert {
        key: shown[key]
        for key in ("team", "kind", "registered_model", "model_version", "model_alias", "spec", "created_by")
    } == {
        "team": team.pk,
        "kind": "evaluate",
        "registered_model": registered_model.pk,
        "model_version": None,
        "model_alias": "production",
        "spec": SPEC,
        "created_by": "dana",
    }
    task = PeriodicTask.objects.get()
    assert (task.task, json.loads(task.args), task.enabled) == (
        "runners.tasks.fire_job_schedule",
        [schedule.pk],
        True,
    )
    event = AuditEvent.objects.get(object_type="jobschedule", action="job_schedule.create")
    assert (event.actor, event.after["model_alias"], event.after["kind"]) == (
        scientist,
        "production",
        "evaluate",
    )


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"model_alias": "staging"}, {"model_alias": ["model bike-demand has no alias 'staging' now"]}),
        (
            {"model_alias": "v2"},
            {"model_alias": ["alias 'v2' is reserved: 'latest' and 'v<number>' name versions"]},
        ),
        (
            {"registered_model": None},
            {"registered_model": ["the alias 'production' needs the model whose alias it is"]},
        ),
        (
            {"model_alias": "", "registered_model": None},
            {"model_version": ["an evaluation job needs a model version"]},
        ),
        (
            {"kind": "train", "spec": small_training_spec()},
            {"model_alias": ["only an evaluation schedule follows an alias; this one names its model"]},
        ),
        (
            {"spec": SPEC | {"sensitive_attributes": ["sex"]}},
            {
                "spec": [
                    "sensitive_attributes: column 'sex' not in dataset version bike-sharing-hourly v1, "
                    "whose columns are 'instant', 'dteday', 'season', 'yr', 'mnth', 'hr', 'holiday', "
                    "'weekday', 'workingday', 'weathersit' ..."
                ]
            },
        ),
        (
            {"spec": SPEC | {"target": "riders"}},
            {
                "dataset": [
                    "no version of dataset bike-sharing-hourly holds the label and features of "
                    "bike-demand v1 (its newest, bike-sharing-hourly v1, lacks 'riders')"
                ]
            },
        ),
    ],
)
def test_a_bad_evaluation_schedule_is_a_400_naming_the_field(
    client_for, scientist, production, body, change, errors
):
    response = client_for(scientist).post("/api/job-schedules/", body | change, format="json")

    assert (response.status_code, response.json()) == (400, errors)
    assert (JobSchedule.objects.count(), PeriodicTask.objects.count()) == (0, 0)
    assert not AuditEvent.objects.filter(object_type="jobschedule").exists()


def test_a_version_and_an_alias_together_are_refused(client_for, scientist, production, body):
    response = client_for(scientist).post(
        "/api/job-schedules/", body | {"model_version": production.pk}, format="json"
    )

    assert (response.status_code, response.json()) == (
        400,
        {
            "model_version": [
                "an evaluation schedule names a model version or an alias of a model (model_alias), not both"
            ]
        },
    )


def test_each_firing_evaluates_the_alias_holder_on_the_newest_labelled_data(
    schedule,
    production,
    dataset,
    dataset_version,
    registered_model,
    scientist,
    approver,
    bike_frame,
    bike_training_result,
    tmp_path,
    django_capture_on_commit_callbacks,
):
    # A newer upload without the label: it cannot be evaluated on, so the firing passes it over.
    unlabelled = _upload(dataset, scientist, bike_frame.drop(columns=["cnt"]), tmp_path, "no-labels.csv")
    assert unlabelled.version == 2

    with django_capture_on_commit_callbacks(execute=True):
        first_id = tasks.fire_job_schedule(schedule.pk)

    first = Job.objects.get(pk=first_id)
    schedule.refresh_from_db()
    assert (first.kind, first.model_version, first.dataset_version, first.schedule, first.created_by) == (
        JobKind.EVALUATE,
        production,
        dataset_version,
        schedule,
        scientist,
    )
    assert first.dispatch_count == 1  # sent to the broker after commit, like any job
    outcome = f"submitted job #{first.pk} of bike-demand v1 on bike-sharing-hourly v1"
    assert schedule.last_outcome == outcome
    assert _last_firing_event(schedule) == ("job_schedule.fire", "system", outcome)
    # The worker's function runs it: an evaluation of version 1 on the labelled version.
    assert execute_job(first.pk) == JobState.SUCCEEDED
    evaluation = Evaluation.objects.get(job_id=first.pk)
    assert (evaluation.model_version, evaluation.dataset_version, evaluation.results["rows"]) == (
        production,
        dataset_version,
        int(((bike_frame["yr"] == 1) & (bike_frame["mnth"] == 12)).sum()),
    )

    # Production moves to version 2 and labelled data arrives: the next firing follows both.
    second_version = _register(registered_model, dataset_version, scientist, bike_training_result)
    _promote(second_version, scientist, approver)
    labelled = _upload(dataset, scientist, bike_frame[bike_frame["yr"] == 1], tmp_path, "2012.csv")

    second = Job.objects.get(pk=tasks.fire_job_schedule(schedule.pk))

    assert (second.model_version, second.dataset_version) == (second_version, labelled)
    schedule.refresh_from_db()
    assert schedule.last_outcome == f"submitted job #{second.pk} of bike-demand v2 on bike-sharing-hourly v3"


def test_a_firing_whose_alias_or_data_cannot_be_resolved_records_why(
    client_for,
    body,
    registered_version,
    registered_model,
    dataset_version,
    scientist,
    owner,
    bike_training_result,
):
    # An unprotected alias, which its team may delete.
    do_set_alias(model=registered_model, alias="staging", version=registered_version, actor=owner)
    created = client_for(scientist).post(
        "/api/job-schedules/", body | {"model_alias": "staging"}, format="json"
    )
    assert created.status_code == 201, created.json()
    schedule = JobSchedule.objects.get()
    do_delete_alias(model=registered_model, alias="staging", actor=owner)

    assert tasks.fire_job_schedule(schedule.pk) is None

    schedule.refresh_from_db()
    no_alias = "failed: model_alias: model bike-demand has no alias 'staging' now"
    assert (Job.objects.count(), schedule.last_outcome, schedule.last_job) == (0, no_alias, None)
    assert _last_firing_event(schedule) == ("job_schedule.fire_fail", "system", no_alias)

    # Staging goes to a version that reads a column no version of the dataset holds.
    reads_rain = _register(
        registered_model,
        dataset_version,
        scientist,
        bike_training_result,
        features=[*BIKE_FEATURES, "rain_mm"],
    )
    do_set_alias(model=registered_model, alias="staging", version=reads_rain, actor=owner)

    assert tasks.fire_job_schedule(schedule.pk) is None

    schedule.refresh_from_db()
    no_data = (
        "failed: dataset: no version of dataset bike-sharing-hourly holds the label and features of "
        "bike-demand v2 (its newest, bike-sharing-hourly v1, lacks 'rain_mm')"
    )
    assert (Job.objects.count(), schedule.last_outcome) == (0, no_data)
    assert _last_firing_event(schedule) == ("job_schedule.fire_fail", "system", no_data)


def test_an_evaluation_schedule_of_one_version_through_the_pages(
    client, scientist, viewer, dataset, production, dataset_version
):
    client.force_login(scientist)
    form = {
        "name": "weekly evaluation",
        "kind": "evaluate",
        "dataset": dataset.pk,
        "registered_model": "",
        "model_version": production.pk,
        "model_alias": "",
        "spec": json.dumps(SPEC),
        "cron": "0 3 * * 1",
        "cron_timezone": "UTC",
    }

    created = client.post("/jobs/schedules/", form)
    schedule = JobSchedule.objects.get()
    refused = client.post(
        "/jobs/schedules/", form | {"name": "bad", "model_version": "", "model_alias": "staging"}
    )
    followed = client.post(
        "/jobs/schedules/",
        form
        | {"name": "production", "model_version": "", "registered_model": production.model_id}
        | {"model_alias": "production"},
    )
    client.force_login(viewer)
    listed = client.get("/jobs/schedules/").content.decode()
    page = client.get(f"/jobs/schedules/{schedule.pk}/").content.decode()

    assert (created.status_code, created["Location"]) == (302, f"/jobs/schedules/{schedule.pk}/")
    assert (schedule.kind, schedule.model_version, schedule.model_alias) == ("evaluate", production, "")
    assert refused.status_code == 400
    assert "the alias &#x27;staging&#x27; needs the model whose alias it is" in refused.content.decode()
    assert followed.status_code == 302
    assert "Evaluation of bike-demand v1 on bike-sharing-hourly" in listed
    assert "Evaluation of bike-demand@production on bike-sharing-hourly" in listed
    assert (
        f'Evaluation of <a href="{production.get_absolute_url()}">bike-demand v1</a> on the newest '
        "labelled version (holding the target and the model's features) of"
    ) in page
