"""Issue 11: a drift check streams its data in chunks (``STEWARD_DATA_CHUNK_ROWS``) and decides
as the in-memory engine does on the same rows, however the rows are chunked."""

from __future__ import annotations

import time
from collections import Counter

import pandas as pd
import pytest
from celery.contrib.testing.worker import start_worker

import config.celery
from governance import datafiles
from governance.actions.datasets import do_register_dataset_version
from governance.models import DatasetVersion
from monitoring import profiles, tasks
from monitoring.actions.checks import do_request_drift_check
from monitoring.engine import CheckConfig, build_profile, run_check
from monitoring.execute import execute_drift_check
from monitoring.models import ProfileState, ReferenceProfile
from tests.conftest import DRIFT_COLUMNS


def _approx(results: list[dict]) -> list[dict]:
    """Results with floats to 1e-9: sums over chunks add in another order (the last digits)."""
    return [
        {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for k, v in result.items()}
        for result in results
    ]


def _counting_chunks(monkeypatch) -> Counter:
    """Count the chunks ``datafiles.iter_frames`` yields, per file name (the real reader runs)."""
    counts: Counter = Counter()
    real = datafiles.iter_frames

    def counted(path, fmt, filename=None, **kwargs):
        for chunk in real(path, fmt, filename, **kwargs):
            counts[filename] += 1
            yield chunk

    monkeypatch.setattr(datafiles, "iter_frames", counted)
    return counts


def test_a_check_read_in_small_chunks_decides_as_the_in_memory_engine(
    registered_version, current_dataset_version, scientist, bike_frame, settings, monkeypatch
):
    settings.STEWARD_DATA_CHUNK_ROWS = 1_000
    counts = _counting_chunks(monkeypatch)
    small = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )

    assert execute_drift_check(small.pk, make_report=False) == "succeeded"

    # The reference (all 17,379 rows, filtered to 2011 chunk by chunk) and the 8,645-row window
    # were each read in chunks of at most 1,000 rows.
    reference = registered_version.training_dataset_version
    assert counts[reference.original_filename] == 18
    assert counts[current_dataset_version.original_filename] == 9
    small.refresh_from_db()
    expected = run_check(
        build_profile(bike_frame[bike_frame["yr"] == 0]),
        bike_frame[bike_frame["yr"] == 1],
        CheckConfig(columns=tuple(DRIFT_COLUMNS)),
    )
    assert small.results == _approx([column.to_dict() for column in expected.columns])
    assert (small.drifted_count, small.is_dataset_drift) == (
        expected.number_of_drifted_columns,
        expected.is_dataset_drift,
    )

    # One chunk (the profile built anew too) gives the same verdicts and scores.
    ReferenceProfile.objects.all().delete()
    settings.STEWARD_DATA_CHUNK_ROWS = 1_000_000
    whole = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    assert execute_drift_check(whole.pk, make_report=False) == "succeeded"
    whole.refresh_from_db()
    assert whole.results == _approx(small.results)
    assert counts[current_dataset_version.original_filename] == 10


def test_multivariate_and_raw_row_samples_do_not_depend_on_the_chunking(
    registered_version, current_dataset_version, scientist, settings
):
    results = []
    for chunk_rows in (700, 1_000_000):
        settings.STEWARD_DATA_CHUNK_ROWS = chunk_rows
        ReferenceProfile.objects.all().delete()
        check = do_request_drift_check(
            model_version=registered_version,
            current_dataset_version=current_dataset_version,
            actor=scientist,
            multivariate=["pca"],
            multivariate_max_rows=2_000,
        )
        assert execute_drift_check(check.pk, make_report=False) == "succeeded"
        check.refresh_from_db()
        (test,) = check.multivariate
        results.append((check.results, {k: v for k, v in test.items() if k != "seconds"}))

    assert results[0][0] == _approx(results[1][0])
    assert results[0][1] == _approx([results[1][1]])[0]
    # Both sides were sampled while streaming, to the check's bound (uniform, seeded).
    assert (results[0][1]["reference_rows"], results[0][1]["current_rows"]) == (2_000, 2_000)


def test_row_sampler_is_uniform_and_independent_of_chunking():
    frame = pd.DataFrame({"a": range(1_000)})
    one, rows = datafiles.sample_frames([frame], 50, seed=3)
    many, _ = datafiles.sample_frames([frame.iloc[i : i + 37] for i in range(0, 1_000, 37)], 50, seed=3)

    assert rows == 1_000
    assert list(one["a"]) == list(many["a"]) == sorted(one["a"])
    assert len(one) == 50
    # Fewer rows than the sample's size: every row, in order.
    everything, _ = datafiles.sample_frames([frame.iloc[:500], frame.iloc[500:]], 5_000, seed=1)
    pd.testing.assert_frame_equal(everything, frame)
    # Each row is kept with probability 50 / 1000 (over 400 seeds: 20 expected, a few off at most).
    kept: Counter = Counter()
    for seed in range(400):
        kept.update(datafiles.sample_frames([frame.iloc[:300], frame.iloc[300:]], 50, seed=seed)[0]["a"])
    first, last = sum(kept[i] for i in range(100)), sum(kept[i] for i in range(900, 1_000))
    assert abs(first - 2_000) < 300
    assert abs(last - 2_000) < 300


# Profiles in parts (STEWARD_PROFILE_FANOUT_ROWS) -------------------------------------------------
FANOUT_QUEUE = "steward-tests-profile-fanout"


def _close(actual, expected, path: str = "") -> None:
    """``actual`` equals ``expected``, floats to 1e-9 (moments merged in another order)."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), path
        for key in expected:
            _close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12), path
    else:
        assert actual == expected, path


def _parquet_bike(dataset, bike_frame, tmp_path, actor) -> DatasetVersion:
    path = tmp_path / "hour.parquet"
    bike_frame.to_parquet(path, index=False, row_group_size=1_000)
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename=path.name, source=DatasetVersion.Source.UPLOAD, actor=actor
    )


def test_a_reference_profiled_in_parts_equals_the_single_pass_profile(
    dataset, scientist, bike_frame, tmp_path
):
    version = _parquet_bike(dataset, bike_frame, tmp_path, scientist)

    parts = profiles.profile_parts(version, 5_000)
    merged = profiles.merged_profile(profiles.build_profile_part(version, {"yr": 0}, part) for part in parts)

    assert parts == [list(range(i, min(i + 5, 18))) for i in range(0, 18, 5)]
    assert profiles.profile_parts(version, 0) == profiles.profile_parts(version, 20_000) == []
    _close(merged.to_dict(), build_profile(bike_frame[bike_frame["yr"] == 0]).to_dict())


@pytest.fixture
def fanout_worker():
    """A real Celery worker (solo pool, in a thread) on the configured broker, a queue of its own."""
    app = config.celery.app
    saved = app.conf.task_routes
    app.conf.update(task_routes={"*": {"queue": FANOUT_QUEUE}})
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_declare(FANOUT_QUEUE)
            conn.default_channel.queue_purge(FANOUT_QUEUE)
        with start_worker(
            app, pool="solo", perform_ping_check=False, queues=[FANOUT_QUEUE], shutdown_timeout=60
        ):
            yield
    finally:
        app.conf.update(task_routes=saved)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_chord_on_a_real_worker_profiles_the_parts_and_stores_the_merge(
    fanout_worker, dataset, scientist, bike_frame, tmp_path
):
    version = _parquet_bike(dataset, bike_frame, tmp_path, scientist)
    row = profiles.profile_row(version, {"yr": 0})
    assert profiles.claim_build(row)

    tasks.fan_out_profile(row, profiles.profile_parts(version, 5_000))

    deadline = time.monotonic() + 300
    while ReferenceProfile.objects.get(pk=row.pk).state != ProfileState.READY:
        assert time.monotonic() < deadline, "the merged profile was not stored within 300 s"
        time.sleep(0.2)
    row.refresh_from_db()
    assert row.rows == 8_645
    _close(row.profile, build_profile(bike_frame[bike_frame["yr"] == 0]).to_dict())
