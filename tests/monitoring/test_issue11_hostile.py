"""Issue 11, hostile: malformed data files, label deliveries and window options are refused with a
precise 4xx (or a check that stands with the reason), never a 500 or a half-written row."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance import datafiles
from governance.models import AuditEvent, DatasetVersion
from monitoring import profiles, tasks
from monitoring.actions.checks import do_request_drift_check
from monitoring.engine import build_profile, run_check
from monitoring.engine import performance as perf
from monitoring.engine.profile import DatasetProfile
from monitoring.execute import execute_drift_check
from monitoring.models import Alert, DriftCheck, PredictionLabel, ProfileState, ReferenceProfile
from tests.monitoring.conftest import register_frame
from tests.monitoring.test_streamed_checks import _parquet_bike, fanout_worker  # noqa: F401 (a fixture)


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _upload(client, dataset, name: str, content: bytes):
    return client.post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile(name, content)},
        format="multipart",
    )


def test_a_parquet_file_naming_a_column_twice_is_400_and_nothing_is_registered(
    client_for, scientist, dataset
):
    table = pa.table([pa.array([1, 2]), pa.array([3, 4])], names=["a", "a"])

    response = _upload(client_for(scientist), dataset, "twice.parquet", _parquet(table))

    assert response.status_code == 400, response.content
    assert "column name 'a' appears twice" in str(response.json())
    assert DatasetVersion.objects.count() == 0
    assert not AuditEvent.objects.filter(action="dataset_version.register").exists()


def test_a_csv_header_with_a_byte_order_mark_is_read_without_it(client_for, scientist, dataset):
    client = client_for(scientist)

    twice = _upload(client, dataset, "bom-twice.csv", "\ufeffa,a\n1,2\n".encode())
    once = _upload(client, dataset, "bom.csv", "\ufeffa,b\n1,2\n".encode())

    assert twice.status_code == 400, twice.content
    assert "column name 'a' appears twice" in str(twice.json())
    assert once.status_code == 201, once.content
    assert DatasetVersion.objects.get().schema == [
        {"name": "a", "dtype": "int64"},
        {"name": "b", "dtype": "int64"},
    ]


@pytest.mark.parametrize(
    "label",
    [pa.array([[1, 2]]), pa.array([[]], pa.list_(pa.int64())), pa.array([{"x": 1}])],
    ids=["list", "empty-list", "struct"],
)
def test_a_parquet_label_that_is_not_a_scalar_is_400_naming_the_row(
    client_for, scientist, registered_version, label
):
    table = pa.table({"key": pa.array(["k1"]), "label": label})

    response = client_for(scientist).post(
        f"/api/models/{registered_version.model_id}/labels/",
        {"file": SimpleUploadedFile("labels.parquet", _parquet(table))},
        format="multipart",
    )

    assert response.status_code == 400, response.content
    assert "row 0: the label must be a number, a text or a boolean" in str(response.json())
    assert PredictionLabel.objects.count() == 0
    assert not AuditEvent.objects.filter(action="labels.receive").exists()


def test_a_column_that_turns_to_text_in_a_late_chunk_is_stored_as_text_and_checked(
    registered_version, current_dataset_version, scientist, bike_frame, settings, tmp_path
):
    settings.STEWARD_DATA_CHUNK_ROWS = 1_000
    rows = bike_frame[bike_frame["yr"] == 1].head(3000).astype({"temp": object}).reset_index(drop=True)
    rows.loc[2500:, "temp"] = "hot"  # numbers for two chunks and a half, then text
    version = register_frame(current_dataset_version.dataset, rows, tmp_path / "turns.csv", scientist)
    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=version, actor=scientist, make_report=False
    )

    assert version.row_count == 3000
    assert {item["name"]: item["dtype"] for item in version.schema}["temp"] == "object"
    assert execute_drift_check(check.pk, make_report=False) == "succeeded"
    check.refresh_from_db()
    # The column's own verdict says why it was not judged; the others are.
    temp = next(result for result in check.results if result["column"] == "temp")
    assert (temp["status"], temp["is_drifted"]) == ("error", False)
    assert 'Unable to parse string "hot"' in temp["message"]
    assert {result["status"] for result in check.results if result["column"] != "temp"} <= {"ok", "drift"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fanout_worker")
def test_a_part_that_fails_on_a_real_worker_marks_the_profile_failed_with_the_reason(
    dataset, scientist, bike_frame, tmp_path, monkeypatch
):
    version = _parquet_bike(dataset, bike_frame, tmp_path, scientist)
    row = profiles.profile_row(version, {"yr": 0})
    assert profiles.claim_build(row)
    real = profiles.build_profile_part

    def second_part_breaks(version, where, row_groups):
        if row_groups[0] != 0:
            raise datafiles.DataFileError("hour.parquet: unreadable Parquet data (a corrupt page)")
        return real(version, where, row_groups)

    monkeypatch.setattr(profiles, "build_profile_part", second_part_breaks)  # the worker is a thread

    tasks.fan_out_profile(row, profiles.profile_parts(version, 5_000))

    deadline = time.monotonic() + 60
    while ReferenceProfile.objects.get(pk=row.pk).state == ProfileState.BUILDING:
        assert time.monotonic() < deadline, "the failed build still says building after 60 s"
        time.sleep(0.2)
    row.refresh_from_db()
    assert row.state == ProfileState.FAILED
    assert "a corrupt page" in row.error
    # A later check claims the failed row again and builds it.
    assert profiles.claim_build(row)


def test_multivariate_tests_short_of_rows_raise_no_alert(
    registered_version, batch_version, scientist, client_for
):
    api = client_for(scientist)
    small = batch_version(60)

    response = api.post(
        "/api/drift-checks/",
        {
            "model_version": registered_version.pk,
            "current_dataset_version": small.pk,
            "make_report": False,
            "multivariate": ["domain_classifier", "pca"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert execute_drift_check(response.json()["id"], make_report=False) == "succeeded"

    check = DriftCheck.objects.get(pk=response.json()["id"])
    assert [(test["test"], test["status"]) for test in check.multivariate] == [
        ("domain_classifier", "insufficient_data"),
        ("pca", "insufficient_data"),
    ]
    assert check.drifted_count == 0
    assert (check.is_breach, Alert.objects.count()) == (False, 0)
    assert check.multivariate_verdict.status == "not-measured"


def test_values_near_the_float_limit_are_an_error_on_the_column_and_the_profile_stores(
    dataset_version, bike_frame
):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"big": rng.choice([1e308, -1e308, 0.0, 1.0], 3000), "x": rng.normal(size=3000)})
    profile = build_profile(reference)

    # The profile is storable (a reference profile row is jsonb): overflowed moments become null.
    stored = json.loads(json.dumps(profile.to_dict(), allow_nan=False))
    assert stored["columns"][0]["mean"] is None
    row = profiles.profile_row(dataset_version, {})
    profiles.ensure_profile(row, lambda: (profile, {}))
    row.refresh_from_db()
    assert row.state == ProfileState.READY

    # Halved values are drift that a NaN score would have passed as "ok".
    current = reference.assign(big=reference["big"] / 2, x=rng.normal(size=3000))
    result = run_check(DatasetProfile.from_dict(row.profile), current, {"min_sample_size": 10})
    big, x = result.columns
    assert (big.status.value, big.is_drifted) == ("error", False)
    assert "the score is not a finite number" in big.message
    assert x.status.value == "ok"


def test_a_target_column_with_missing_cells_scores_its_classes_as_the_predictions_do():
    # A batch's target column with empty cells (the rows whose labels come late) reads as floats;
    # the model predicts 1 and late labels are 1: all three are one class.
    truth = pd.Series([1.0, 0.0, np.nan, 1.0] * 50)
    joined = pd.Series([1, 0.0, None, True] * 50, dtype=object)  # late labels over the own column
    predicted = pd.Series([1, 0, 1, 1] * 50)

    metrics = perf.compute_metrics("classification", *perf.labelled(truth, predicted))
    compared = perf.bootstrap_compare(
        "classification", perf.labelled(truth, predicted), {"accuracy": (0.9, "validation")}
    )
    mixed = perf.compute_metrics("classification", *perf.labelled(joined, predicted.astype(str)))

    assert (metrics["accuracy"], metrics["f1"]) == (1.0, 1.0)
    assert (compared["accuracy"]["current"], compared["accuracy"]["is_degraded"]) == (1.0, False)
    assert mixed["accuracy"] == pytest.approx(2 / 3)  # True is a class of its own, not 1


def test_a_bad_csv_row_after_quoted_newlines_is_named_by_its_line_in_the_file(
    client_for, scientist, dataset, settings
):
    settings.STEWARD_DATA_CHUNK_ROWS = 3
    rows = "".join(f'{i},"first\nsecond"\n' for i in range(10))  # each record spans two lines
    content = f"id,note\n{rows}10,x,extra\n".encode()

    response = _upload(client_for(scientist), dataset, "notes.csv", content)

    assert response.status_code == 400, response.content
    assert "notes.csv: line 22 has 3 fields, the header has 2" in str(response.json())
    assert DatasetVersion.objects.count() == 0


def test_a_trailing_comma_on_every_data_row_keeps_the_values_in_their_columns(client_for, scientist, dataset):
    response = _upload(client_for(scientist), dataset, "trailing.csv", b"a,b\n1,2,\n3,4,\n")

    assert response.status_code == 201, response.content
    version = DatasetVersion.objects.get()
    assert version.schema == [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "int64"}]
    assert pd.concat(version.iter_frames()).to_dict("records") == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
