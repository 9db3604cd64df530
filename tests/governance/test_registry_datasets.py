"""Dataset versions whose schema changes: flagged, and refused when the dataset is schema-locked (issue 9)."""

from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import AuditEvent, DatasetVersion


def _upload(client, dataset, content: bytes, name: str = "data.csv"):
    return client.post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile(name, content)},
        format="multipart",
    )


def test_a_new_version_with_other_columns_is_flagged(client_for, scientist, dataset):
    client = client_for(scientist)

    first = _upload(client, dataset, b"hr,cnt,temp\n0,16,0.2\n1,40,0.3\n")
    same = _upload(client, dataset, b"hr,cnt,temp\n2,20,0.1\n")
    changed = _upload(client, dataset, b"hr,cnt,hum\n0,1.5,0.8\n")

    assert first.json()["schema_change"] == {}
    assert same.json()["schema_change"] == {}
    assert changed.status_code == 201
    assert changed.json()["schema_change"] == {
        "added": ["hum"],
        "removed": ["temp"],
        "retyped": [{"name": "cnt", "from": "int64", "to": "float64"}],
    }


def test_a_schema_locked_dataset_refuses_other_columns(client_for, scientist, viewer, dataset):
    client = client_for(scientist)
    _upload(client, dataset, b"hr,cnt\n0,16\n")

    by_viewer = client_for(viewer).patch(
        f"/api/datasets/{dataset.pk}/", {"is_schema_locked": True}, format="json"
    )
    locked = client.patch(
        f"/api/datasets/{dataset.pk}/",
        {"is_schema_locked": True, "description": "hourly rentals"},
        format="json",
    )
    refused = _upload(client, dataset, b"hr,cnt,extra\n0,16,x\n")
    same_columns = _upload(client, dataset, b"hr,cnt\n1,18\n")

    assert by_viewer.status_code == 403
    assert (locked.json()["is_schema_locked"], locked.json()["description"]) == (True, "hourly rentals")
    assert refused.status_code == 400
    assert refused.json() == {
        "schema": [
            "dataset bike-sharing-hourly is schema-locked and this file's columns differ from version 1's: "
            "added extra"
        ]
    }
    assert same_columns.status_code == 201
    assert list(DatasetVersion.objects.order_by("version").values_list("version", flat=True)) == [1, 2]
    assert AuditEvent.objects.filter(action="dataset.update").count() == 1
