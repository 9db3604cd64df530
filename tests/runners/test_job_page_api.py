"""Issue 17, the job page's data: ``GET /api/jobs/<id>/metrics/`` (step series of logged metrics
and per-epoch history, bounded, polled with ``next``) and the log API the page streams from
(``GET /api/jobs/<id>/log/?after=``), through the Django client; and the page without JavaScript."""

from __future__ import annotations

import html
import itertools
import math

import pytest
from django.contrib.staticfiles import finders

from runners.actions import JOBS, do_submit_job
from runners.models import Job, JobKind, JobLogChunk, JobState
from runners.queries import SERIES_MAX, SERIES_POINTS_MAX
from runners.tracking import do_create_experiment, do_log_batch, do_start_run, do_update_run

pytestmark = pytest.mark.django_db


def metric(key: str, value: float, step: int, timestamp_ms: int = 1_700_000_000_000) -> dict:
    """One metric as the MLflow client sends it (log-batch)."""
    return {"key": key, "value": value, "step": step, "timestamp": timestamp_ms}


@pytest.fixture
def run(scientist):
    """A running tracked run of ``scientist``'s team (what the MLflow client starts)."""
    experiment = do_create_experiment(name="bike-demand", actor=scientist)
    return do_start_run(experiment=experiment, run_name="sweep", actor=scientist)


@pytest.fixture
def running_job(dataset_version, registered_model, scientist):
    """A built-in training job a worker has claimed (running, attempt 1), nothing computed yet."""
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec={"target": "cnt", "features": ["temp", "hum"], "epochs": 3},
        actor=scientist,
    )
    attempt = JOBS.begin(job.pk)
    assert attempt == 1
    job.refresh_from_db()
    return job


def metrics_of(client, job, **query):
    response = client.get(f"/api/jobs/{job.pk}/metrics/", query)
    assert response.status_code == 200, response.content
    return response.json()


def test_logged_points_come_by_step_nan_and_infinity_as_null(client_for, run, scientist):
    points = [metric("loss", 1.0 / (step + 1), step, 1_700_000_000_000 + step) for step in (2, 0, 1)]
    points += [metric("loss", math.nan, 3), metric("acc", math.inf, 0), metric("acc", 0.75, 1)]
    do_log_batch(job=run, metrics=points, actor=scientist)

    answer = metrics_of(client_for(scientist), run)

    assert answer["series"] == {
        "acc": [
            {"step": 0, "value": None, "timestamp_ms": 1_700_000_000_000},
            {"step": 1, "value": 0.75, "timestamp_ms": 1_700_000_000_000},
        ],
        "loss": [
            {"step": 0, "value": 1.0, "timestamp_ms": 1_700_000_000_000},
            {"step": 1, "value": 0.5, "timestamp_ms": 1_700_000_000_001},
            {"step": 2, "value": 1.0 / 3, "timestamp_ms": 1_700_000_000_002},
            {"step": 3, "value": None, "timestamp_ms": 1_700_000_000_000},
        ],
    }
    assert answer["state"] == JobState.RUNNING
    assert answer["finished"] is False
    assert answer["reset"] is False
    assert answer["series_left_out"] == 0


def test_polling_with_next_brings_only_new_points_then_says_finished(client_for, run, scientist):
    client = client_for(scientist)
    do_log_batch(job=run, metrics=[metric("loss", 0.9, 0), metric("loss", 0.8, 1)], actor=scientist)
    first = metrics_of(client, run)
    assert [p["step"] for p in first["series"]["loss"]] == [0, 1]

    assert metrics_of(client, run, **first["next"])["series"] == {}

    do_log_batch(job=run, metrics=[metric("loss", 0.7, 2), metric("rmse", 41.5, 2)], actor=scientist)
    do_update_run(job=run, status="FINISHED", actor=scientist)
    second = metrics_of(client, run, **first["next"])
    assert second["series"] == {
        "loss": [{"step": 2, "value": 0.7, "timestamp_ms": 1_700_000_000_000}],
        "rmse": [{"step": 2, "value": 41.5, "timestamp_ms": 1_700_000_000_000}],
    }
    assert second["finished"] is True
    assert second["state"] == JobState.SUCCEEDED
    assert second["next"]["after"] > first["next"]["after"]


def test_a_long_series_is_thinned_evenly_keeping_its_first_and_last_points(client_for, run, scientist):
    total = 2 * SERIES_POINTS_MAX + 500
    for start in range(0, total, 1000):  # MLflow's log-batch takes 1,000 metrics at most
        batch = [metric("loss", 1.0 / (step + 1), step) for step in range(start, min(start + 1000, total))]
        do_log_batch(job=run, metrics=batch, actor=scientist)
    client = client_for(scientist)

    answer = metrics_of(client, run)

    steps = [point["step"] for point in answer["series"]["loss"]]
    assert len(steps) == SERIES_POINTS_MAX
    assert steps[0] == 0
    assert steps[-1] == total - 1
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert gaps == {total // SERIES_POINTS_MAX, total // SERIES_POINTS_MAX + 1}  # evenly spread
    assert all(point["value"] == 1.0 / (point["step"] + 1) for point in answer["series"]["loss"])
    # The cursor passed every point, kept or not: the next poll brings nothing again.
    assert metrics_of(client, run, **answer["next"])["series"] == {}


def test_at_most_a_hundred_series_the_rest_counted(client_for, run, scientist):
    keys = [f"m{index:03d}" for index in range(SERIES_MAX + 2)]
    do_log_batch(job=run, metrics=[metric(key, 1.0, 0) for key in keys], actor=scientist)

    answer = metrics_of(client_for(scientist), run)

    assert sorted(answer["series"]) == keys[:SERIES_MAX]
    assert answer["series_left_out"] == 2


def test_per_epoch_history_is_one_series_per_field_polled_by_epoch(client_for, running_job, scientist):
    client = client_for(scientist)
    records = [
        {"epoch": 1, "train_loss": 0.92, "val_loss": 0.97, "val_rmse": 181.2},
        {"epoch": 2, "train_loss": 0.61, "val_loss": None, "val_rmse": 160.4},
    ]
    JOBS.record_progress(running_job.pk, running_job.attempt, history=records[:1])
    first = metrics_of(client, running_job)
    assert first["series"] == {
        "train_loss": [{"step": 1, "value": 0.92, "timestamp_ms": None}],
        "val_loss": [{"step": 1, "value": 0.97, "timestamp_ms": None}],
        "val_rmse": [{"step": 1, "value": 181.2, "timestamp_ms": None}],
    }
    assert first["next"]["after_epoch"] == 1
    assert first["next"]["attempt"] == 1

    JOBS.record_progress(running_job.pk, running_job.attempt, history=records)
    second = metrics_of(client, running_job, **first["next"])
    assert second["series"] == {
        "train_loss": [{"step": 2, "value": 0.61, "timestamp_ms": None}],
        "val_loss": [{"step": 2, "value": None, "timestamp_ms": None}],
        "val_rmse": [{"step": 2, "value": 160.4, "timestamp_ms": None}],
    }
    assert second["reset"] is False


def test_a_cursor_of_another_attempt_starts_over(client_for, running_job, scientist):
    history = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.4}]
    JOBS.record_progress(running_job.pk, running_job.attempt, history=history)

    answer = metrics_of(client_for(scientist), running_job, after=0, after_epoch=2, attempt=0)

    assert answer["reset"] is True
    assert [point["step"] for point in answer["series"]["train_loss"]] == [1, 2]
    assert answer["next"] == {"after": 0, "after_epoch": 2, "attempt": running_job.attempt}


def test_a_trained_jobs_metrics_are_its_epochs(client_for, model_version, scientist):
    job = Job.objects.get(pk=model_version.source_job_id)

    answer = metrics_of(client_for(scientist), job)

    assert answer["finished"] is True
    assert [point["value"] for point in answer["series"]["train_loss"]] == [
        record["train_loss"] for record in job.history
    ]
    assert [point["step"] for point in answer["series"]["val_loss"]] == [1, 2, 3]


def test_metrics_of_a_job_out_of_sight_are_a_404_and_the_query_is_checked(
    client_for, run, scientist, outsider, viewer, compliance_officer
):
    do_log_batch(job=run, metrics=[metric("loss", 0.5, 0)], actor=scientist)
    assert client_for(outsider).get(f"/api/jobs/{run.pk}/metrics/").status_code == 404
    assert client_for(outsider).get(f"/api/jobs/{run.pk}/metrics/?after=x").status_code == 404
    for reader in (viewer, compliance_officer):
        assert list(metrics_of(client_for(reader), run)["series"]) == ["loss"]
    client = client_for(scientist)
    for query, field in (
        ("after=-1", "after"),
        ("after_epoch=1.5", "after_epoch"),
        ("attempt=\u0663", "attempt"),
    ):
        response = client.get(f"/api/jobs/{run.pk}/metrics/?{query}")
        assert response.status_code == 400
        assert list(response.json()) == [field]
    response = client.get(f"/api/jobs/{run.pk}/metrics/?since=3")
    assert response.status_code == 400
    assert (
        response.json()["detail"] == "unknown query parameter(s): since; known: after, after_epoch, attempt"
    )


def test_metrics_answer_in_a_fixed_number_of_queries(client_for, run, scientist, django_assert_num_queries):
    client = client_for(scientist)
    do_log_batch(
        job=run, metrics=[metric(f"k{i}", 0.1, step) for i in range(5) for step in range(40)], actor=scientist
    )
    # A force-authenticated client: the job (restricted to the user's teams in a subquery), the
    # cursor's last id, the thinned points: however many points and series.
    with django_assert_num_queries(3):
        answer = metrics_of(client, run)
    assert sum(len(points) for points in answer["series"].values()) == 200


def test_the_log_pages_with_after_until_the_job_is_finished(client_for, running_job, scientist, outsider):
    for seq, (stream, text) in enumerate(
        [("steward", "attempt 1 on worker w1\n"), ("stdout", "epoch 1/3\n"), ("stderr", "warning: slow\n")],
        start=1,
    ):
        JobLogChunk.objects.create(job=running_job, seq=seq, attempt=1, stream=stream, text=text)
    client = client_for(scientist)
    url = f"/api/jobs/{running_job.pk}/log/"

    answer = client.get(url).json()
    assert [(c["seq"], c["stream"], c["text"]) for c in answer["chunks"]] == [
        (1, "steward", "attempt 1 on worker w1\n"),
        (2, "stdout", "epoch 1/3\n"),
        (3, "stderr", "warning: slow\n"),
    ]
    assert (answer["next"], answer["state"], answer["finished"]) == (3, "running", False)
    later = client.get(url, {"after": 2}).json()
    assert [c["seq"] for c in later["chunks"]] == [3]
    assert client.get(url, {"after": 3}).json()["chunks"] == []
    assert client.get(url, {"after": 3}).json()["next"] == 3

    JOBS.fail(running_job.pk, "stopped")
    assert client.get(url, {"after": 3}).json()["finished"] is True
    assert client_for(outsider).get(url).status_code == 404


def test_the_page_without_javascript_shows_the_tail_and_points_the_scripts_at_the_apis(
    client, running_job, scientist
):
    tail = 'epoch 1/3 train_loss=0.9\n<script>alert("x")</script>\n'
    Job.objects.filter(pk=running_job.pk).update(log_tail=tail)
    client.force_login(scientist)

    page = client.get(running_job.get_absolute_url()).content.decode()

    assert f'<pre class="log" data-log-text>{html.escape(tail)}</pre>' in page
    assert '<script>alert("x")' not in page
    assert f'data-source="/api/jobs/{running_job.pk}/log/"' in page
    assert f'href="/api/jobs/{running_job.pk}/log.txt" download' in page
    assert f'data-source="/api/jobs/{running_job.pk}/metrics/"' in page
    assert f'data-max-points="{SERIES_POINTS_MAX}"' in page
    for path in ("vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css", "steward/charts.js"):
        assert f'src="/static/{path}"' in page or f'href="/static/{path}"' in page
        assert finders.find(path) is not None
    assert finders.find("vendor/uplot/LICENSE") is not None


def test_a_tracked_run_page_has_charts_and_no_log(client, run, scientist):
    client.force_login(scientist)
    page = client.get(run.get_absolute_url()).content.decode()
    assert f'data-source="/api/jobs/{run.pk}/metrics/"' in page
    assert "data-job-log" not in page
