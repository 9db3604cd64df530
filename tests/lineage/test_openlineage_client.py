"""OpenLineage ingest through the REAL ``openlineage-python`` client (issue 10): its HttpTransport
with ``api_key`` auth against a live Steward (pytest-django's ``live_server``, transactional)."""

from __future__ import annotations

import datetime
import gzip
import json

import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    DatasetEvent,
    InputDataset,
    Job,
    JobEvent,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.generated import column_lineage_dataset as cl
from openlineage.client.generated import schema_dataset, symlinks_dataset
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid

from governance.actions.tokens import do_create_api_token
from governance.models import AuditEvent
from lineage.models import LineageEdge
from runners.models import OpenLineageDataset, OpenLineageJob, OpenLineageRun

pytestmark = pytest.mark.django_db(transaction=True)
NS = "airflow://etl"
T0 = datetime.datetime(2026, 12, 1, 8, 0, tzinfo=datetime.UTC)


def ol_client(server_url: str, user, *, compression: str | None = None) -> OpenLineageClient:
    """The client as a pipeline configures it: HttpTransport, api_key auth, no retries (a wrong
    answer fails the test at once)."""
    _, secret = do_create_api_token(user=user, name="ol", is_read_only=False, actor=user)
    config = HttpConfig(
        url=server_url,
        auth=ApiKeyTokenProvider({"apiKey": secret}),
        compression=compression,
        retry={"total": 0},
        timeout=30,
    )
    return OpenLineageClient(transport=HttpTransport(config))


def column_lineage() -> cl.ColumnLineageDatasetFacet:
    source = cl.InputField(
        namespace="postgres://db:5432",
        name="bikes.public.rides",
        field="cnt",
        transformations=[cl.Transformation(type="DIRECT", subtype="AGGREGATION")],
    )
    return cl.ColumnLineageDatasetFacet(fields={"daily_cnt": cl.Fields(inputFields=[source])})


def edges() -> set[tuple[str, str, str]]:
    """Every edge as ``(source label, relation, target label)``, ids replaced by names."""
    labels = {}
    for model, kind in (
        (OpenLineageJob, "openlineage_job"),
        (OpenLineageRun, "openlineage_run"),
        (OpenLineageDataset, "openlineage_dataset"),
    ):
        labels |= {(kind, obj.pk): f"{kind}:{obj}" for obj in model.objects.select_related()}
    return {
        (
            labels.get((e.source_type, e.source_id), f"{e.source_type}:{e.source_id}"),
            e.relation,
            labels.get((e.target_type, e.target_id), f"{e.target_type}:{e.target_id}"),
        )
        for e in LineageEdge.objects.all()
    }


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_start_and_complete_with_inputs_and_outputs_form_the_graph(live_server, scientist, compression):
    client = ol_client(live_server.url, scientist, compression=compression)
    run_id = str(generate_new_uuid())
    job = Job(namespace=NS, name="bikes.daily")
    rides = InputDataset(namespace="postgres://db:5432", name="bikes.public.rides")
    daily = OutputDataset(
        namespace="s3://lake", name="bikes/daily.parquet", facets={"columnLineage": column_lineage()}
    )
    client.emit(
        RunEvent(
            eventType=RunState.START, eventTime=T0.isoformat(), run=Run(runId=run_id), job=job, inputs=[rides]
        )
    )
    later = (T0 + datetime.timedelta(minutes=5)).isoformat()
    client.emit(
        RunEvent(
            eventType=RunState.COMPLETE, eventTime=later, run=Run(runId=run_id), job=job, outputs=[daily]
        )
    )

    run = OpenLineageRun.objects.get(run_id=run_id)
    assert (run.state, run.started_at, run.ended_at) == ("COMPLETE", T0, T0 + datetime.timedelta(minutes=5))
    assert run.team.name == "Mobility"
    run_label = f"openlineage_run:{run}"
    assert edges() == {
        ("openlineage_job:airflow://etl/bikes.daily", "input", run_label),
        ("openlineage_dataset:postgres://db:5432/bikes.public.rides", "input", run_label),
        (run_label, "output", "openlineage_dataset:s3://lake/bikes/daily.parquet"),
    }
    output = OpenLineageDataset.objects.get(name="bikes/daily.parquet")
    assert output.column_lineage["fields"]["daily_cnt"]["inputFields"][0]["field"] == "cnt"
    # Created: job, run (with START's state), two datasets, the output's facets; COMPLETE changed the run.
    actions = sorted(
        AuditEvent.objects.filter(action__startswith="openlineage").values_list("action", flat=True)
    )
    assert actions == [
        "openlineage_dataset.create",
        "openlineage_dataset.create",
        "openlineage_dataset.facets",
        "openlineage_job.create",
        "openlineage_run.create",
        "openlineage_run.update",
    ]
    # The read endpoint B's graph uses shows the column lineage of the run's output.
    _, secret = do_create_api_token(user=scientist, name="read", actor=scientist)
    answer = requests.get(
        f"{live_server.url}/api/openlineage/runs/{run.pk}/",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    ).json()
    [out] = [d for d in answer["datasets"] if d["role"] == "output"]
    assert out["columnLineage"]["fields"]["daily_cnt"]["inputFields"][0]["name"] == "bikes.public.rides"
    assert answer["state"] == "COMPLETE"


def test_a_dataset_named_as_steward_names_it_links_to_the_version(live_server, scientist, dataset_version):
    """Steward's emitted naming (``steward://<host>`` + ``<dataset>@v<n>``) or a symlink to it."""
    client = ol_client(live_server.url, scientist)
    run_id = str(generate_new_uuid())
    by_name = InputDataset(namespace="steward://steward.example", name=f"{dataset_version.dataset.name}@v1")
    symlinked = OutputDataset(
        namespace="s3://lake",
        name="copy.csv",
        facets={
            "symlinks": symlinks_dataset.SymlinksDatasetFacet(
                identifiers=[
                    symlinks_dataset.Identifier(
                        namespace="https://steward.example",
                        name=f"/dataset-versions/{dataset_version.pk}/",
                        type="STEWARD",
                    )
                ]
            )
        },
    )
    client.emit(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=T0.isoformat(),
            run=Run(runId=run_id),
            job=Job(namespace=NS, name="copy"),
            inputs=[by_name],
            outputs=[symlinked],
        )
    )
    run = OpenLineageRun.objects.get(run_id=run_id)
    assert not OpenLineageDataset.objects.exists()
    assert set(
        LineageEdge.objects.filter(source_type="dataset_version").values_list(
            "source_id", "target_type", "target_id"
        )
    ) == {(dataset_version.pk, "openlineage_run", run.pk)}
    assert (
        LineageEdge.objects.filter(
            source_type="openlineage_run", target_type="dataset_version", target_id=dataset_version.pk
        ).count()
        == 1
    )


def test_a_job_event_records_static_lineage_and_a_dataset_event_its_facets(live_server, scientist):
    client = ol_client(live_server.url, scientist)
    client.emit(
        JobEvent(
            eventTime=T0.isoformat(),
            job=Job(namespace=NS, name="dbt.model.daily"),
            inputs=[InputDataset(namespace="postgres://db:5432", name="raw.rides")],
            outputs=[OutputDataset(namespace="postgres://db:5432", name="mart.daily")],
        )
    )
    schema = schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name="cnt", type="int")]
    )
    client.emit(
        DatasetEvent(
            eventTime=T0.isoformat(),
            dataset=StaticDataset(
                namespace="postgres://db:5432", name="mart.daily", facets={"schema": schema}
            ),
        )
    )
    job = OpenLineageJob.objects.get(name="dbt.model.daily")
    assert not OpenLineageRun.objects.exists()
    assert sorted(job.static_datasets.values_list("role", "name")) == [
        ("input", "raw.rides"),
        ("output", "mart.daily"),
    ]
    assert edges() == {
        (
            "openlineage_dataset:postgres://db:5432/raw.rides",
            "input",
            "openlineage_job:airflow://etl/dbt.model.daily",
        ),
        (
            "openlineage_job:airflow://etl/dbt.model.daily",
            "output",
            "openlineage_dataset:postgres://db:5432/mart.daily",
        ),
    }
    mart = OpenLineageDataset.objects.get(name="mart.daily")
    assert [(f["name"], f["type"]) for f in mart.facets["schema"]["fields"]] == [("cnt", "int")]


def test_a_batch_of_client_serialised_events_with_one_bad(live_server, scientist):
    """The client sends no batches (neither the Python nor the Java one): its serialised events,
    gzipped without Content-Encoding as older Java clients do, posted to /batch."""
    from openlineage.client.serde import Serde

    _, secret = do_create_api_token(user=scientist, name="batch", is_read_only=False, actor=scientist)
    run_ids = [str(generate_new_uuid()) for _ in range(3)]
    events = [
        json.loads(
            Serde.to_json(
                RunEvent(
                    eventType=RunState.COMPLETE,
                    eventTime=T0.isoformat(),
                    run=Run(runId=r),
                    job=Job(namespace=NS, name=f"task{i}"),
                )
            )
        )
        for i, r in enumerate(run_ids)
    ]
    events.insert(1, {**events[0], "run": {"runId": "not-a-uuid"}})
    answer = requests.post(
        f"{live_server.url}/api/v1/lineage/batch",
        data=gzip.compress(json.dumps(events).encode()),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "partial_success",
        "summary": {"received": 4, "successful": 3, "failed": 1, "retriable": 0, "non_retriable": 1},
        "failed_events": [
            {"index": 1, "reason": "run.runId: must be a UUID, got 'not-a-uuid'", "retriable": False}
        ],
    }
    assert sorted(str(r) for r in OpenLineageRun.objects.values_list("run_id", flat=True)) == sorted(run_ids)
