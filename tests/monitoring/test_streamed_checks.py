"""Issue 11: a drift check streams its data in chunks (``STEWARD_DATA_CHUNK_ROWS``) and decides
as the in-memory engine does on the same rows, however the rows are chunked."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from governance import datafiles
from monitoring.actions.checks import do_request_drift_check
from monitoring.engine import CheckConfig, build_profile, run_check
from monitoring.execute import execute_drift_check
from monitoring.models import ReferenceProfile
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
