"""Impact analysis: from the bike data to its runs, model version, alias, monitor and open alerts."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest

from governance.actions.aliases import do_set_alias
from lineage.actions import do_record_edges
from lineage.nodes import NodeRef
from monitoring.actions.alerts import do_resolve_alert
from monitoring.actions.monitors import do_create_monitor
from monitoring.models import Alert, CurrentSource
from runners.actions import do_submit_job
from runners.models import JobKind
from tests.monitoring.conftest import BREACH, T0, finish_check


@pytest.fixture
def demo(
    dataset_version,
    registered_model,
    registered_version,
    current_dataset_version,
    drifted_check,
    tiny_versions,
    team,
    scientist,
    owner,
):
    """hour.csv -input-> training job -output-> bike-demand v1 -input-> inference job -output->
    predictions; v1 holds alias "champion", has monitor "hourly" with an open alert and an open
    alert of an on-request drift check."""
    training = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec={"target": "cnt", "features": ["temp", "hum"], "epochs": 1},
        actor=scientist,
    )
    inference = do_submit_job(
        kind=JobKind.INFER,
        dataset_version=dataset_version,
        model_version=registered_version,
        spec={},
        actor=scientist,
    )
    (predictions,) = tiny_versions(team, 1, scientist)
    data, model = NodeRef.of(dataset_version), NodeRef.of(registered_version)
    train_ref, infer_ref = NodeRef.of(training), NodeRef.of(inference)
    do_record_edges(
        [
            (data, train_ref, "input"),
            (train_ref, model, "output"),
            (model, infer_ref, "input"),
            (data, infer_ref, "input"),
            (infer_ref, predictions, "output"),
        ]
    )
    alias = do_set_alias(model=registered_model, alias="champion", version=registered_version, actor=owner)
    monitor = do_create_monitor(
        model_version=registered_version,
        name="hourly",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        actor=scientist,
    )
    finish_check(monitor, BREACH, T0, scientist)
    return SimpleNamespace(
        data=data.key,
        training=train_ref.key,
        inference=infer_ref.key,
        model=model.key,
        predictions=predictions.key,
        alias=f"model_alias:{alias.pk}",
        monitor=f"monitor:{monitor.pk}",
        monitor_alert=f"alert:{Alert.objects.get(monitor=monitor).pk}",
        check_alert=f"alert:{Alert.objects.get(drift_check=drifted_check).pk}",
        check_alert_row=Alert.objects.get(drift_check=drifted_check),
    )


def _distances(report: dict) -> dict[str, int]:
    return {node["id"]: node["distance"] for node in report["nodes"]}


def test_impact_of_the_data_reaches_alias_monitor_and_open_alerts(client_for, viewer, demo):
    response = client_for(viewer).get("/api/lineage/impact/", {"node": demo.data})

    assert response.status_code == 200
    report = response.json()
    assert _distances(report) == {
        demo.data: 0,
        demo.training: 1,
        demo.inference: 1,
        demo.model: 2,
        demo.predictions: 2,
        demo.alias: 3,
        demo.monitor: 3,
        demo.check_alert: 3,
        demo.monitor_alert: 4,
    }
    assert report["counts"] == {
        "job": 2,
        "model_version": 1,
        "model_alias": 1,
        "monitor": 1,
        "alert": 2,
        "dataset_version": 1,
    }
    labels = {node["id"]: node["label"] for node in report["nodes"]}
    assert labels[demo.alias] == "bike-demand@champion"
    assert labels[demo.monitor] == "Monitor hourly of bike-demand v1"
    edges = {(e["source"], e["target"], e["relation"]) for e in report["edges"]}
    assert {
        (demo.model, demo.alias, "alias"),
        (demo.model, demo.monitor, "monitored_by"),
        (demo.monitor, demo.monitor_alert, "alerted"),
        (demo.model, demo.check_alert, "alerted"),
    } <= edges


def test_resolved_alerts_are_not_impact(client_for, viewer, owner, demo):
    do_resolve_alert(alert=demo.check_alert_row, actor=owner)

    report = client_for(viewer).get("/api/lineage/impact/", {"node": demo.data}).json()

    assert demo.check_alert not in _distances(report)
    assert report["counts"]["alert"] == 1


def test_outsider_gets_404_and_bad_queries_400(client_for, outsider, viewer, demo):
    hidden = client_for(outsider).get("/api/lineage/impact/", {"node": demo.data})
    bad = client_for(viewer).get("/api/lineage/impact/", {"node": demo.data, "depth": 21})

    assert (hidden.status_code, hidden.json()) == (404, {"detail": f"no lineage node {demo.data}"})
    assert (bad.status_code, bad.json()) == (
        400,
        {"depth": ["Ensure this value is less than or equal to 20."]},
    )


def test_impact_page_draws_the_graph_and_exports_csv_and_json(client, client_for, viewer, demo):
    client.force_login(viewer)

    page = client.get("/lineage/impact/", {"node": demo.data})
    as_csv = client.get("/lineage/impact.csv", {"node": demo.data})
    as_json = client.get("/lineage/impact.json", {"node": demo.data})

    html = page.content.decode()
    assert page.status_code == 200
    assert html.count('class="lineage-node ') == 9
    assert f'data-node="{demo.monitor_alert}"' in html
    assert "<strong>2</strong> alerts" in html
    assert f'href="/lineage/impact.csv?node={demo.data.replace(":", "%3A")}&amp;depth=20"' in html
    rows = list(csv.reader(io.StringIO(as_csv.content.decode())))
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert rows[0] == ["distance", "type", "id", "label", "url"]
    assert {(row[2], row[0]) for row in rows[1:]} == {
        (node, str(dist))
        for node, dist in _distances(
            client_for(viewer).get("/api/lineage/impact/", {"node": demo.data}).json()
        ).items()
        if dist
    }
    assert as_json.json() == client_for(viewer).get("/api/lineage/impact/", {"node": demo.data}).json()


def test_impact_page_refusals(client, outsider, viewer, demo):
    client.force_login(outsider)
    hidden = client.get("/lineage/impact/", {"node": demo.data})
    hidden_csv = client.get("/lineage/impact.csv", {"node": demo.data})
    client.force_login(viewer)
    bad = client.get("/lineage/impact/", {"node": "dataset_version:-1"})

    assert hidden.status_code == 404
    assert demo.model not in hidden.content.decode()
    assert hidden_csv.status_code == 404
    assert bad.status_code == 400
    assert "node id must be an integer" in bad.content.decode()


def test_the_data_and_model_pages_draw_lineage_and_link_the_impact_page(client, viewer, demo):
    client.force_login(viewer)

    data_page = client.get(f"/dataset-versions/{demo.data.split(':')[1]}/")
    model_page = client.get(f"/model-versions/{demo.model.split(':')[1]}/")

    for page in (data_page, model_page):
        html = page.content.decode()
        assert page.status_code == 200
        assert "data-lineage-graph" in html
        assert f'data-node="{demo.training}"' in html
    assert (
        f'href="/lineage/impact/?node=dataset_version%3A{demo.data.split(":")[1]}"'
        in data_page.content.decode()
    )
