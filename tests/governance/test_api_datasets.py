"""The registry API for datasets and their versions: create, upload (CSV, Parquet), register from a
server path inside the import roots only, download, and lists in constant queries."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.models import AuditEvent, Dataset, DatasetVersion
from tests.conftest import ADULT, BIKE_HOURLY
from tests.governance.conftest import result_ids

BIKE_SHA256 = "e03de4ee4ef4dc376ac6e04bf829673c6269e8eba5c60fa121640fa2f829504f"
BIKE_SCHEMA = [
    {"name": "instant", "dtype": "int64"},
    {"name": "dteday", "dtype": "object"},
    {"name": "season", "dtype": "int64"},
    {"name": "yr", "dtype": "int64"},
    {"name": "mnth", "dtype": "int64"},
    {"name": "hr", "dtype": "int64"},
    {"name": "holiday", "dtype": "int64"},
    {"name": "weekday", "dtype": "int64"},
    {"name": "workingday", "dtype": "int64"},
    {"name": "weathersit", "dtype": "int64"},
    {"name": "temp", "dtype": "float64"},
    {"name": "atemp", "dtype": "float64"},
    {"name": "hum", "dtype": "float64"},
    {"name": "windspeed", "dtype": "float64"},
    {"name": "casual", "dtype": "int64"},
    {"name": "registered", "dtype": "int64"},
    {"name": "cnt", "dtype": "int64"},
]


def test_scientist_creates_a_dataset(client_for, scientist, team):
    response = client_for(scientist).post(
        "/api/datasets/", {"team": team.pk, "name": "trips", "description": "Bike trips"}, format="json"
    )

    assert response.status_code == 201
    dataset = Dataset.objects.get()
    body = response.json()
    assert body == {
        "id": dataset.pk,
        "team": team.pk,
        "name": "trips",
        "description": "Bike trips",
        "is_schema_locked": False,
        "created_by": "dana",
        "created_at": body["created_at"],
        "latest_version": None,
    }
    event = AuditEvent.objects.get(action="dataset.create")
    assert (event.actor, event.object_id, event.team_id) == (scientist, str(dataset.pk), team.pk)
    assert event.after == {
        "name": "trips",
        "team_id": team.pk,
        "description": "Bike trips",
        "is_schema_locked": False,
    }


FULLWIDTH_NAME = "\uff22\uff29\uff2b\uff25-sharing-hourly"


def test_dataset_name_taken_is_400_and_nothing_created(client_for, scientist, dataset):
    events = AuditEvent.objects.count()

    # Fullwidth capitals (U+FF22...) collide with the name under NFKC case folding.
    response = client_for(scientist).post(
        "/api/datasets/", {"team": dataset.team_id, "name": FULLWIDTH_NAME}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "name": [
            f"team {dataset.team.name} already has a dataset named {FULLWIDTH_NAME!r} "
            "(names are compared ignoring case and character width: NFKC case folding)"
        ]
    }
    assert Dataset.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_list_datasets_shows_latest_version_in_constant_queries(
    client_for, fresh, scientist, team, dataset, dataset_version, django_assert_num_queries
):
    other = do_create_dataset(team=team, name="adult-income", actor=scientist)
    for name in ("a", "b", "c"):
        do_create_dataset(team=team, name=f"empty-{name}", actor=scientist)
    client = client_for(fresh(scientist))

    # 1 platform and team roles (one UNION), 2 the page (creator joined, max version annotated)
    with django_assert_num_queries(2):
        response = client.get("/api/datasets/")

    assert response.status_code == 200
    assert [
        (row["name"], row["latest_version"], row["created_by"]) for row in response.json()["results"]
    ] == [
        ("adult-income", None, "dana"),
        ("bike-sharing-hourly", 1, "dana"),
        ("empty-a", None, "dana"),
        ("empty-b", None, "dana"),
        ("empty-c", None, "dana"),
    ]
    assert result_ids(client.get("/api/datasets/", {"q": "ADULT"})) == [other.pk]


def test_upload_csv_registers_version_1_with_hash_schema_and_rows(client_for, scientist, dataset, settings):
    content = b"station,rentals,temp\nA,3,0.5\nB,4,0.25\nC,5,\n"

    response = client_for(scientist).post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile("stations.csv", content), "description": "March"},
        format="multipart",
    )

    assert response.status_code == 201
    version = DatasetVersion.objects.get()
    sha = hashlib.sha256(content).hexdigest()
    body = response.json()
    assert body == {
        "id": version.pk,
        "dataset": dataset.pk,
        "dataset_name": "bike-sharing-hourly",
        "version": 1,
        "format": "csv",
        "original_filename": "stations.csv",
        "sha256": sha,
        "size_bytes": len(content),
        "row_count": 3,
        "schema": [
            {"name": "station", "dtype": "object"},
            {"name": "rentals", "dtype": "int64"},
            {"name": "temp", "dtype": "float64"},
        ],
        "schema_change": {},
        "source": "upload",
        "description": "March",
        "created_by": "dana",
        "created_at": body["created_at"],
        "erased_at": None,
        "erased_by": None,
        "erasure_reason": "",
        "legal_hold_at": None,
        "legal_hold_reason": "",
    }
    assert version.file == f"datasets/{dataset.team_id}/{sha[:2]}/{sha}.csv"
    assert (settings.ARTIFACT_ROOT / version.file).read_bytes() == content
    event = AuditEvent.objects.get(action="dataset_version.register")
    assert event.after["sha256"] == sha
    assert event.after["row_count"] == 3


def test_upload_parquet_registers_its_schema(client_for, scientist, dataset):
    frame = pd.DataFrame(
        {"hr": [0, 1, 2, 3], "temp": [0.24, 0.22, 0.22, 0.24], "label": ["a", "b", "a", "b"]}
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    content = buffer.getvalue()

    response = client_for(scientist).post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile("hours.parquet", content)},
        format="multipart",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["format"], body["row_count"], body["size_bytes"]) == ("parquet", 4, len(content))
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["schema"] == [
        {"name": "hr", "dtype": "int64"},
        {"name": "temp", "dtype": "float64"},
        {"name": "label", "dtype": "object"},
    ]


def test_register_from_server_path_relative_then_absolute(client_for, scientist, dataset):
    client = client_for(scientist)

    first = client.post(
        "/api/dataset-versions/", {"dataset": dataset.pk, "path": "bike-sharing/hour.csv"}, format="json"
    )
    second = client.post(
        "/api/dataset-versions/", {"dataset": dataset.pk, "path": str(BIKE_HOURLY)}, format="json"
    )

    assert (first.status_code, second.status_code) == (201, 201)
    for body, number in ((first.json(), 1), (second.json(), 2)):
        assert body["version"] == number
        assert body["source"] == "path"
        assert body["original_filename"] == "hour.csv"
        assert body["sha256"] == BIKE_SHA256
        assert (body["row_count"], body["size_bytes"]) == (17379, 1156736)
        assert body["schema"] == BIKE_SCHEMA
    assert AuditEvent.objects.filter(action="dataset_version.register").count() == 2


def test_register_adult_data_keeps_every_row(client_for, scientist, dataset):
    """No final newline, values with leading spaces and '?' for missing: all 32,561 rows kept."""
    response = client_for(scientist).post(
        "/api/dataset-versions/", {"dataset": dataset.pk, "path": "adult/adult.csv"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["row_count"] == 32561
    assert [c["name"] for c in body["schema"]][-1] == "label"
    assert body["sha256"] == hashlib.sha256(ADULT.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../../../../etc/passwd",
        "bike-sharing/../../../../../etc/hostname",
        "bike-sharing/nope.csv",
    ],
)
def test_register_from_path_outside_import_roots_is_400(client_for, scientist, dataset, settings, path):
    events = AuditEvent.objects.count()

    response = client_for(scientist).post(
        "/api/dataset-versions/", {"dataset": dataset.pk, "path": path}, format="json"
    )

    assert response.status_code == 400
    # The server's folders are not named: a data scientist needs no map of the server's disk.
    assert response.json() == {"path": [f"{path!r} is not a file under the server's import folders"]}
    assert DatasetVersion.objects.count() == 0
    assert AuditEvent.objects.count() == events


def test_register_symlink_leaving_the_import_roots_is_400(client_for, scientist, dataset, settings, tmp_path):
    root = tmp_path / "imports"
    root.mkdir()
    (root / "escape.csv").symlink_to("/etc/passwd")
    settings.STEWARD_IMPORT_ROOTS = [root]

    response = client_for(scientist).post(
        "/api/dataset-versions/", {"dataset": dataset.pk, "path": "escape.csv"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"path": ["'escape.csv' is not a file under the server's import folders"]}
    assert DatasetVersion.objects.count() == 0


@pytest.mark.parametrize("send", ["both", "neither"])
def test_register_needs_exactly_one_of_file_or_path(client_for, scientist, dataset, send):
    data = {"dataset": dataset.pk}
    if send == "both":
        data |= {"path": "bike-sharing/hour.csv", "file": SimpleUploadedFile("a.csv", b"a\n1\n")}

    response = client_for(scientist).post("/api/dataset-versions/", data, format="multipart")

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["send exactly one of file (an upload) or path (a server file)"]
    }
    assert DatasetVersion.objects.count() == 0


def test_download_returns_the_registered_bytes(client_for, viewer, dataset_version):
    response = client_for(viewer).get(f"/api/dataset-versions/{dataset_version.pk}/download/")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="hour.csv"'
    assert b"".join(response.streaming_content) == BIKE_HOURLY.read_bytes()


def test_list_dataset_versions_in_constant_queries(
    client_for, fresh, scientist, dataset, dataset_version, django_assert_num_queries
):
    for _ in range(2):
        do_register_dataset_version(
            dataset=dataset, file_path=BIKE_HOURLY, filename="hour.csv", source="path", actor=scientist
        )
    client = client_for(fresh(scientist))

    # 1 platform and team roles (one UNION), 2 the page (dataset and creator joined)
    with django_assert_num_queries(2):
        response = client.get("/api/dataset-versions/")

    assert [(row["dataset_name"], row["version"]) for row in response.json()["results"]] == [
        ("bike-sharing-hourly", 3),
        ("bike-sharing-hourly", 2),
        ("bike-sharing-hourly", 1),
    ]
