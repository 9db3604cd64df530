"""Registering data files, through the API and the dataset page: a bad file, a file over the
limits or a lost race is a 4xx naming the problem (``governance.errors``), and nothing is written."""

from __future__ import annotations

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import QuerySet
from django.urls import reverse

from governance.errors import CONFLICT
from governance.models import AuditEvent, Dataset, DatasetVersion

PARQUET_OF_TWO_ROWS = pd.DataFrame({"a": [1, 2]}).to_parquet(index=False)


def _upload(client, dataset, name: str, content: bytes):
    return client.post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile(name, content)},
        format="multipart",
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty.csv: the file is empty"),
        ("blank.csv", b"  \n\n", "blank.csv: line 1 has no column names"),
        ("header.csv", b"station,rentals\r\n", "header.csv: has a header but no data rows"),
        ("ragged.csv", b"a,b\n1,2\n3,4\n5,6,7\n8,9\n", "ragged.csv: line 4 has 3 fields, the header has 2"),
        ("gap.csv", b"a,b\n1,2\n\n3,4,5\n", "gap.csv: line 4 has 3 fields, the header has 2"),
        ("twice.csv", b"hr,temp,hr\n1,0.2,3\n", "twice.csv: line 1: column name 'hr' appears twice"),
        ("unnamed.csv", b"hr,,temp\n1,2,3\n", "unnamed.csv: line 1: column 2 has no name"),
        (
            "image.csv",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "image.csv: not a CSV or Parquet file (binary content)",
        ),
        (
            "fake.parquet",
            b"a,b\n1,2\n",
            "fake.parquet: named .parquet but does not start with Parquet's magic bytes",
        ),
        (
            "cut.parquet",
            PARQUET_OF_TWO_ROWS[: len(PARQUET_OF_TWO_ROWS) // 2],
            "cut.parquet: unreadable Parquet file (Parquet magic bytes not found in footer. "
            "Either the file is corrupted or this is not a parquet file.)",
        ),
        (
            "latin1.csv",
            b"name,city\nJos\xe9,S\xe3o Paulo\n",
            "latin1.csv: not UTF-8 text (byte 0xe9 at offset 13); upload CSV as UTF-8 or use Parquet",
        ),
        (
            "late-latin1.csv",
            b"a,b\n" + b"1,2\n" * 20_000 + b"Jos\xe9,3\n",
            "late-latin1.csv: not UTF-8 text (invalid continuation byte at byte 80007)",
        ),
        (
            "quote.csv",
            b'a,b\n1,"2\n3,4\n',
            "quote.csv: not valid CSV (Error tokenizing data. C error: EOF inside string starting at row 1)",
        ),
    ],
)
def test_bad_file_is_400_naming_the_problem_and_registers_nothing(
    client_for, scientist, dataset, settings, name, content, message
):
    events = AuditEvent.objects.count()

    response = _upload(client_for(scientist), dataset, name, content)

    assert response.status_code == 400
    assert response.json() == {"file": [message]}
    assert DatasetVersion.objects.count() == 0
    assert AuditEvent.objects.count() == events
    assert not (settings.ARTIFACT_ROOT / "datasets").exists()


def test_file_over_the_byte_limit_is_400(client_for, scientist, dataset, settings):
    settings.STEWARD_MAX_DATASET_BYTES = 10
    events = AuditEvent.objects.count()

    response = _upload(client_for(scientist), dataset, "big.csv", b"a,b\n1,2\n3,4\n")

    assert response.status_code == 400
    assert response.json() == {"file": ["big.csv: 12 bytes is more than the limit of 10 bytes"]}
    assert DatasetVersion.objects.count() == 0
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.csv", b"a\n1\n2\n3\n", "rows.csv: more than the limit of 2 rows"),
        ("rows.parquet", pd.DataFrame({"a": [1, 2, 3]}).to_parquet(index=False), None),
    ],
)
def test_file_over_the_row_limit_is_400(client_for, scientist, dataset, settings, name, content, message):
    settings.STEWARD_MAX_DATASET_ROWS = 2
    events = AuditEvent.objects.count()

    response = _upload(client_for(scientist), dataset, name, content)

    assert response.status_code == 400
    assert response.json() == {"file": [message or "rows.parquet: 3 rows is more than the limit of 2"]}
    assert DatasetVersion.objects.count() == 0
    assert AuditEvent.objects.count() == events


def test_registering_from_a_server_path_checks_the_file_too(
    client_for, scientist, dataset, settings, tmp_path
):
    (tmp_path / "ragged.csv").write_bytes(b"a,b\n1,2\n3\n4,5,6\n")
    settings.STEWARD_IMPORT_ROOTS = [tmp_path]

    response = client_for(scientist).post(
        "/api/dataset-versions/", {"dataset": dataset.pk, "path": "ragged.csv"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"file": ["ragged.csv: line 4 has 3 fields, the header has 2"]}
    assert DatasetVersion.objects.count() == 0


# The web UI answers the same statuses as the API: one mapping, governance.errors (issue 8).


def test_the_upload_page_answers_400_naming_a_bad_data_file(client, scientist, dataset, settings):
    client.force_login(scientist)
    events = AuditEvent.objects.count()

    response = client.post(
        reverse("dataset_detail", args=[dataset.pk]),
        {"file": SimpleUploadedFile("ragged.csv", b"a,b\n1,2\n3,4\n5,6,7\n8,9\n"), "description": ""},
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {"file": ["ragged.csv: line 4 has 3 fields, the header has 2"]}
    assert DatasetVersion.objects.count() == 0
    assert AuditEvent.objects.count() == events
    assert not (settings.ARTIFACT_ROOT / "datasets").exists()


def test_the_dataset_page_answers_409_when_a_concurrent_request_took_the_name(
    client, scientist, team, dataset, monkeypatch
):
    """The action checks the name is free, then inserts; a request that registered the same name
    in between leaves only the unique constraint to refuse it (IntegrityError), which is a 409."""
    client.force_login(scientist)
    events = AuditEvent.objects.count()
    real_exists = QuerySet.exists

    def exists_before_the_other_commit(queryset: QuerySet) -> bool:
        # The check ran before the concurrent registration of dataset.name committed.
        return False if queryset.model is Dataset else real_exists(queryset)

    monkeypatch.setattr(QuerySet, "exists", exists_before_the_other_commit)
    response = client.post(
        reverse("dataset_list"), {"team": team.pk, "name": dataset.name, "description": "a copy"}
    )

    assert response.status_code == 409
    assert response.context["form"].non_field_errors() == [CONFLICT]
    assert list(Dataset.objects.values_list("name", "description")) == [(dataset.name, dataset.description)]
    assert AuditEvent.objects.count() == events


# Issue 11: files are read in chunks of STEWARD_DATA_CHUNK_ROWS rows; what goes wrong past the
# first chunk is named as precisely, and the schema is the whole-file read's.


def _two_row_groups(tmp_path) -> bytes:
    path = tmp_path / "groups.parquet"
    pd.DataFrame({"a": range(1000), "b": [f"v{i}" for i in range(1000)]}).to_parquet(
        path, index=False, row_group_size=500, compression=None
    )
    return path.read_bytes()


def test_a_malformed_line_past_the_first_chunk_is_400_naming_it(client_for, scientist, dataset, settings):
    settings.STEWARD_DATA_CHUNK_ROWS = 3
    content = b"a,b\n" + b"1,2\n" * 10 + b"3,4,5\n" + b"6,7\n"

    response = _upload(client_for(scientist), dataset, "late.csv", content)

    assert response.status_code == 400
    assert response.json() == {"file": ["late.csv: line 12 has 3 fields, the header has 2"]}
    assert DatasetVersion.objects.count() == 0


def test_a_corrupt_page_in_a_later_row_group_is_400(client_for, scientist, dataset, settings, tmp_path):
    settings.STEWARD_DATA_CHUNK_ROWS = 100
    content = bytearray(_two_row_groups(tmp_path))
    # The footer is intact (it describes both groups); the second group's pages are garbage.
    start = content.index(b"v500")
    content[start - 64 : start + 4000] = b"\xff" * len(content[start - 64 : start + 4000])

    response = _upload(client_for(scientist), dataset, "corrupt.parquet", bytes(content))

    assert response.status_code == 400
    (message,) = response.json()["file"]
    assert message.startswith("corrupt.parquet: unreadable Parquet data (")
    assert DatasetVersion.objects.count() == 0


def test_chunk_dtypes_unify_to_the_whole_file_schema(client_for, scientist, dataset, settings, tmp_path):
    settings.STEWARD_DATA_CHUNK_ROWS = 2
    # Per two-row chunk: ints then floats (float64), ints then text (object), bools then a chunk
    # of missing values (object), ints throughout (int64).
    content = b"f,t,b,i\n1,1,True,1\n2,2,False,2\n3.5,x,,3\n4,y,,4\n"
    (tmp_path / "mixed.csv").write_bytes(content)
    whole = pd.read_csv(tmp_path / "mixed.csv", low_memory=False)

    response = _upload(client_for(scientist), dataset, "mixed.csv", content)

    assert response.status_code == 201
    version = DatasetVersion.objects.get()
    assert version.schema == [{"name": str(n), "dtype": str(d)} for n, d in whole.dtypes.items()]
    assert [c["dtype"] for c in version.schema] == ["float64", "object", "object", "int64"]
    assert version.row_count == 4
    # Streamed back, every chunk has the stored schema's dtypes and the whole-file values.
    chunks = list(version.iter_frames())
    assert len(chunks) == 2
    assert all(list(chunk.dtypes.astype(str)) == [c["dtype"] for c in version.schema] for chunk in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks), whole)


@pytest.mark.parametrize("name", ["adult/adult.csv", "bike-sharing/hour.csv"])
def test_streamed_summary_and_rows_equal_the_whole_file_read(name, settings):
    from governance import datafiles

    path = settings.BASE_DIR.parent / "shared" / "data" / name
    whole = datafiles.read_frame(path, "csv")

    summary = datafiles.summarize(path, path.name, 10**12, 10**12, chunk_rows=5_000)
    chunks = list(
        datafiles.iter_frames(path, "csv", chunk_rows=5_000, dtypes=datafiles.dtypes_of(summary.schema))
    )

    assert (summary.schema, summary.row_count) == (datafiles.schema_of(whole), len(whole))
    assert len(chunks) == -(-len(whole) // 5_000)
    pd.testing.assert_frame_equal(pd.concat(chunks), whole)
