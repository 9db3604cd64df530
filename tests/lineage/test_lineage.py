"""Lineage after a real training and inference run, through /api/lineage/."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.teams import do_set_membership
from governance.actions.users import do_create_user
from governance.models import DatasetVersion, TeamRole
from lineage.models import LineageEdge
from runners.actions import do_submit_job
from runners.execute import execute_job
from runners.models import Job, JobKind


@pytest.fixture
def flow(model_version, dataset_version, scientist):
    """dataset version -> training job -> model version -> inference job -> predictions."""
    inference = do_submit_job(
        kind=JobKind.INFER,
        dataset_version=dataset_version,
        model_version=model_version,
        spec={"where": {"yr": 1}},
        actor=scientist,
    )
    assert execute_job(inference.pk) == "succeeded"
    inference.refresh_from_db()
    training = Job.objects.get(pk=model_version.source_job_id)
    return SimpleNamespace(
        data=f"dataset_version:{dataset_version.pk}",
        training=f"job:{training.pk}",
        model=f"model_version:{model_version.pk}",
        inference=f"job:{inference.pk}",
        predictions=f"dataset_version:{inference.output_dataset_version_id}",
        objects={
            f"dataset_version:{dataset_version.pk}": dataset_version,
            f"job:{training.pk}": training,
            f"model_version:{model_version.pk}": model_version,
            f"job:{inference.pk}": inference,
            f"dataset_version:{inference.output_dataset_version_id}": inference.output_dataset_version,
        },
    )


def _graph(client, node: str, direction: str, depth: int) -> dict:
    response = client.get("/api/lineage/", {"node": node, "direction": direction, "depth": depth})
    assert response.status_code == 200, response.json()
    return response.json()


def _nodes(graph: dict) -> dict[str, int]:
    return {node["id"]: node["distance"] for node in graph["nodes"]}


def _edges(graph: dict) -> set[tuple[str, str, str]]:
    return {(edge["source"], edge["target"], edge["relation"]) for edge in graph["edges"]}


def test_upstream_of_a_model_version_is_its_run_and_data(client_for, viewer, flow):
    graph = _graph(client_for(viewer), flow.model, "upstream", 3)

    assert graph["root"] == flow.model
    assert _nodes(graph) == {flow.model: 0, flow.training: 1, flow.data: 2}
    assert _edges(graph) == {(flow.data, flow.training, "input"), (flow.training, flow.model, "output")}
    assert [node["distance"] for node in graph["nodes"]] == [0, 1, 2]


def test_depth_limits_the_walk(client_for, viewer, flow):
    graph = _graph(client_for(viewer), flow.model, "upstream", 1)

    assert _nodes(graph) == {flow.model: 0, flow.training: 1}
    assert _edges(graph) == {(flow.training, flow.model, "output")}


def test_downstream_of_a_model_version_is_its_predictions(client_for, viewer, flow):
    graph = _graph(client_for(viewer), flow.model, "downstream", 3)

    assert _nodes(graph) == {flow.model: 0, flow.inference: 1, flow.predictions: 2}
    assert _edges(graph) == {
        (flow.model, flow.inference, "input"),
        (flow.inference, flow.predictions, "output"),
    }


def test_both_directions_join_the_two_walks(client_for, viewer, flow):
    """The inference job's other input (the data) is a sibling, not an ancestor: left out."""
    graph = _graph(client_for(viewer), flow.model, "both", 3)

    assert _nodes(graph) == {
        flow.model: 0,
        flow.training: 1,
        flow.inference: 1,
        flow.data: 2,
        flow.predictions: 2,
    }
    assert _edges(graph) == {
        (flow.data, flow.training, "input"),
        (flow.training, flow.model, "output"),
        (flow.model, flow.inference, "input"),
        (flow.inference, flow.predictions, "output"),
    }


def test_downstream_of_the_data_reaches_every_product(client_for, viewer, flow):
    graph = _graph(client_for(viewer), flow.data, "downstream", 2)

    assert _nodes(graph) == {
        flow.data: 0,
        flow.training: 1,
        flow.inference: 1,
        flow.model: 2,
        flow.predictions: 2,
    }
    assert _edges(graph) == {
        (flow.data, flow.training, "input"),
        (flow.data, flow.inference, "input"),
        (flow.training, flow.model, "output"),
        (flow.inference, flow.predictions, "output"),
    }


def test_upstream_of_predictions_names_both_inputs(client_for, viewer, flow):
    graph = _graph(client_for(viewer), flow.predictions, "upstream", 2)

    assert _nodes(graph) == {flow.predictions: 0, flow.inference: 1, flow.model: 2, flow.data: 2}
    assert _edges(graph) == {
        (flow.inference, flow.predictions, "output"),
        (flow.model, flow.inference, "input"),
        (flow.data, flow.inference, "input"),
    }


def test_nodes_are_labelled_and_linked(client_for, viewer, flow):
    graph = _graph(client_for(viewer), flow.model, "both", 3)

    assert {node["id"]: (node["type"], node["label"], node["url"]) for node in graph["nodes"]} == {
        key: (key.split(":")[0], str(obj), obj.get_absolute_url()) for key, obj in flow.objects.items()
    }
    assert {node["label"] for node in graph["nodes"]} == {
        "bike-sharing-hourly v1",
        f"Training job #{flow.training.split(':')[1]}",
        "bike-demand v1",
        f"Inference job #{flow.inference.split(':')[1]}",
        "bike-demand-predictions v1",
    }


def test_outsider_gets_404_for_another_teams_node(client_for, outsider, flow):
    client = client_for(outsider)

    hidden = client.get("/api/lineage/", {"node": flow.model})
    missing = client.get("/api/lineage/", {"node": "model_version:999999"})

    assert (hidden.status_code, hidden.json()) == (404, {"detail": f"no lineage node {flow.model}"})
    assert (missing.status_code, missing.json()) == (404, {"detail": "no lineage node model_version:999999"})


def test_compliance_officer_sees_the_whole_graph(client_for, compliance_officer, flow):
    graph = _graph(client_for(compliance_officer), flow.model, "both", 3)

    assert set(_nodes(graph)) == set(flow.objects)


def test_a_job_cannot_join_two_teams_graphs(model_version, admin, team, other_team, outsider, bike_2012_csv):
    """Bridget, in both teams, tries to predict with Mobility's model on Fraud's copy of the data.

    Refused: a job's inputs and outputs stay in one team, so no lineage edge ever links two
    teams' objects (and no page of one team names the other's data).
    """
    bridget = do_create_user(username="bridget", actor=admin)
    for each in (team, other_team):
        do_set_membership(user=bridget, team=each, role=TeamRole.DATA_SCIENTIST, actor=admin)
    fraud_copy = do_register_dataset_version(
        dataset=do_create_dataset(team=other_team, name="fraud-copy", actor=outsider),
        file_path=bike_2012_csv,
        filename="hour-2012.csv",
        source=DatasetVersion.Source.PATH,
        actor=outsider,
    )
    jobs, edges = Job.objects.count(), LineageEdge.objects.count()

    with pytest.raises(ValidationError) as refused:
        do_submit_job(
            kind=JobKind.INFER,
            dataset_version=fraud_copy,
            model_version=model_version,
            spec={},
            actor=bridget,
        )

    assert refused.value.message_dict == {
        "dataset_version": ["the dataset version belongs to another team than the model"]
    }
    assert (Job.objects.count(), LineageEdge.objects.count()) == (jobs, edges)


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({}, {"node": ["This field is required."]}),
        (
            {"node": "pipeline:1"},
            {
                "node": [
                    "unknown node type 'pipeline'; "
                    "one of dataset_version, model_version, job, external_dataset, code_version, "
                    "openlineage_job, openlineage_run, openlineage_dataset, evaluation"
                ]
            },
        ),
        (
            {"node": "model_version:abc"},
            {"node": ["node id must be an integer from 0 to 9223372036854775807, got 'abc'"]},
        ),
        (
            {"node": "model_version"},
            {"node": ["node id must be an integer from 0 to 9223372036854775807, got ''"]},
        ),
        (
            {"node": "job:99999999999999999999"},
            {
                "node": [
                    "node id must be an integer from 0 to 9223372036854775807, got '99999999999999999999'"
                ]
            },
        ),
        ({"node": "job:²"}, {"node": ["node id must be an integer from 0 to 9223372036854775807, got '²'"]}),
        (
            {"node": "model_version:-3"},
            {"node": ["node id must be an integer from 0 to 9223372036854775807, got '-3'"]},
        ),
        (
            {"node": "model_version:1", "direction": "sideways"},
            {"direction": ['"sideways" is not a valid choice.']},
        ),
        (
            {"node": "model_version:1", "depth": 0},
            {"depth": ["Ensure this value is greater than or equal to 1."]},
        ),
        (
            {"node": "model_version:1", "depth": 21},
            {"depth": ["Ensure this value is less than or equal to 20."]},
        ),
        ({"node": "model_version:1", "depth": "deep"}, {"depth": ["A valid integer is required."]}),
    ],
)
def test_bad_lineage_queries_are_400(client_for, viewer, params, errors):
    response = client_for(viewer).get("/api/lineage/", params)

    assert response.status_code == 400
    assert response.json() == errors
