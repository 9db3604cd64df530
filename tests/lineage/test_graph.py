"""The graph API (recursive CTE walk), Marquez's read shape, and the graph pages."""

from __future__ import annotations

import pytest

from lineage.actions import do_record_edges
from lineage.layout import layout
from lineage.nodes import NODE_MODELS
from tests.lineage.conftest import chain


def _ids(graph: dict) -> dict[str, int]:
    return {node["id"]: node["distance"] for node in graph["nodes"]}


@pytest.fixture
def crossing(tiny_versions, team, other_team, scientist, outsider):
    """Mobility's a -> Fraud's x -> Mobility's b (an OpenLineage job can link teams' data)."""
    (a, b) = tiny_versions(team, 2, scientist)
    (x,) = tiny_versions(other_team, 1, outsider)
    do_record_edges([(a, x, "output"), (x, b, "output")])
    return a, x, b


def test_hidden_nodes_are_left_out_and_not_walked_through(client_for, viewer, compliance_officer, crossing):
    a, x, b = crossing

    seen_by_viewer = client_for(viewer).get("/api/lineage/", {"node": a.key, "direction": "downstream"})
    seen_by_officer = client_for(compliance_officer).get(
        "/api/lineage/", {"node": a.key, "direction": "downstream"}
    )

    assert seen_by_viewer.status_code == 200
    assert _ids(seen_by_viewer.json()) == {a.key: 0}
    assert seen_by_viewer.json()["edges"] == []
    assert _ids(seen_by_officer.json()) == {a.key: 0, x.key: 1, b.key: 2}
    assert {(e["source"], e["target"]) for e in seen_by_officer.json()["edges"]} == {
        (a.key, x.key),
        (x.key, b.key),
    }


def test_upstream_through_a_hidden_node_stops_there(client_for, viewer, crossing):
    _a, _x, b = crossing

    graph = (
        client_for(viewer).get("/api/lineage/", {"node": b.key, "direction": "upstream", "depth": 20}).json()
    )

    assert _ids(graph) == {b.key: 0}


def test_depth_twenty_reaches_the_twentieth_hop_and_no_further(
    client_for, viewer, tiny_versions, team, scientist
):
    refs = tiny_versions(team, 22, scientist)
    chain(refs)

    deep = client_for(viewer).get(
        "/api/lineage/", {"node": refs[0].key, "direction": "downstream", "depth": 20}
    )
    up = client_for(viewer).get("/api/lineage/", {"node": refs[21].key, "direction": "upstream", "depth": 3})

    assert _ids(deep.json()) == {ref.key: i for i, ref in enumerate(refs[:21])}
    assert len(deep.json()["edges"]) == 20
    assert _ids(up.json()) == {refs[21].key: 0, refs[20].key: 1, refs[19].key: 2, refs[18].key: 3}


def test_a_diamond_keeps_the_fewest_hops_and_every_edge(client_for, viewer, tiny_versions, team, scientist):
    a, b, c, d = tiny_versions(team, 4, scientist)
    do_record_edges([(a, b, "output"), (b, c, "output"), (c, d, "output"), (a, d, "output")])

    graph = (
        client_for(viewer).get("/api/lineage/", {"node": a.key, "direction": "downstream", "depth": 5}).json()
    )

    assert _ids(graph) == {a.key: 0, b.key: 1, d.key: 1, c.key: 2}
    assert len(graph["edges"]) == 4


def test_types_filter_keeps_the_root_and_the_named_types(client_for, compliance_officer, crossing):
    a, _x, _b = crossing

    graph = client_for(compliance_officer).get(
        "/api/lineage/", {"node": a.key, "direction": "downstream", "types": "model_version"}
    )
    bad = client_for(compliance_officer).get(
        "/api/lineage/", {"node": a.key, "types": "dataset_version,pipeline"}
    )

    assert _ids(graph.json()) == {a.key: 0}
    assert bad.status_code == 400
    assert bad.json()["types"] == [f"unknown node type 'pipeline'; one of {', '.join(NODE_MODELS)}"]


def test_marquez_shape_maps_ids_and_edges(client_for, compliance_officer, crossing):
    a, x, b = crossing

    response = client_for(compliance_officer).get("/api/v1/lineage", {"nodeId": f"dataset:steward:{x.key}"})

    assert response.status_code == 200
    graph = {entry["id"]: entry for entry in response.json()["graph"]}
    ma, mx, mb = (f"dataset:steward:{ref.key}" for ref in (a, x, b))
    assert list(graph) == [mx, ma, mb] or list(graph) == [mx, mb, ma]
    assert graph[mx]["type"] == "DATASET"
    assert graph[mx]["inEdges"] == [{"origin": ma, "destination": mx}]
    assert graph[mx]["outEdges"] == [{"origin": mx, "destination": mb}]
    assert graph[ma]["inEdges"] == []
    assert graph[mx]["data"]["id"] == {"namespace": "steward", "name": x.key}
    assert graph[mx]["data"]["distance"] == 0


@pytest.mark.parametrize(
    ("node_id", "status", "answer"),
    [
        (None, 400, {"nodeId": ["This field is required."]}),
        (
            "dataset:warehouse:public.trips",
            400,
            {"nodeId": ["namespace must be 'steward' (Steward's nodes), got 'warehouse'"]},
        ),
        (
            "job:steward:dataset_version:1",
            400,
            {"nodeId": ["a dataset_version is a dataset node, not a job"]},
        ),
        ("dataset:steward:pipeline:1", 400, None),
        (
            "dataset:steward:dataset_version:999999999",
            404,
            {"detail": "no lineage node dataset_version:999999999"},
        ),
    ],
)
def test_bad_marquez_queries_name_the_field(client_for, viewer, node_id, status, answer):
    response = client_for(viewer).get("/api/v1/lineage", {} if node_id is None else {"nodeId": node_id})

    assert response.status_code == status
    if answer is not None:
        assert response.json() == answer
    else:
        assert list(response.json()) == ["nodeId"]


def test_marquez_read_hides_other_teams_roots(client_for, viewer, crossing):
    _a, x, _b = crossing

    response = client_for(viewer).get("/api/v1/lineage", {"nodeId": f"dataset:steward:{x.key}", "depth": 2})

    assert (response.status_code, response.json()) == (404, {"detail": f"no lineage node {x.key}"})


def test_layout_flows_left_to_right_with_paths_to_the_root():
    nodes = [
        {"id": f"dataset_version:{i}", "type": "dataset_version", "label": f"v{i}", "url": "/", "distance": d}
        for i, d in [(1, 0), (2, 1), (3, 2), (4, 1)]
    ] + [{"id": "pipeline_run:9", "type": "pipeline_run", "label": "r", "url": "/", "distance": 2}]
    edges = [
        {"source": "dataset_version:1", "target": "dataset_version:2", "relation": "output"},
        {"source": "dataset_version:2", "target": "dataset_version:3", "relation": "output"},
        {"source": "dataset_version:1", "target": "dataset_version:4", "relation": "output"},
        {"source": "dataset_version:4", "target": "pipeline_run:9", "relation": "input"},
    ]

    drawing = layout("dataset_version:1", nodes, edges)
    small = layout("dataset_version:1", nodes, edges, max_drawn=2)

    x = {node["id"]: node["x"] for node in drawing["nodes"]}
    assert x["dataset_version:1"] < x["dataset_version:2"] == x["dataset_version:4"] < x["dataset_version:3"]
    paths = {node["id"]: node["path"] for node in drawing["nodes"]}
    assert paths["dataset_version:1"] == ""
    assert paths["dataset_version:3"] == "1 0"
    assert paths["pipeline_run:9"] == "3 2"
    shapes = {node["id"]: node["shape"] for node in drawing["nodes"]}
    assert (shapes["dataset_version:1"], shapes["pipeline_run:9"]) == ("data", "run")
    assert (len(small["nodes"]), small["hidden"]) == (2, 3)


def test_explorer_draws_the_graph_and_the_fragment_expands(client, viewer, tiny_versions, team, scientist):
    refs = tiny_versions(team, 4, scientist)
    chain(refs)
    client.force_login(viewer)

    empty = client.get("/lineage/")
    page = client.get("/lineage/", {"node": refs[1].key, "direction": "downstream", "depth": 1})
    fragment = client.get(
        "/lineage/graph/", {"node": refs[1].key, "direction": "downstream", "depth": 1, "expand": refs[2].key}
    )
    bad = client.get("/lineage/", {"node": "dataset_version:x"})

    assert empty.status_code == 200
    assert f'href="/lineage/?node=dataset_version%3A{refs[0].id}"' in empty.content.decode()
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count('class="lineage-node ') == 2
    assert f'data-node="{refs[1].key}"' in html
    assert f'data-node="{refs[2].key}"' in html
    assert f'hx-get="/lineage/graph/?node=dataset_version%3A{refs[1].id}' in html
    drawn = fragment.content.decode()
    assert fragment.status_code == 200
    assert drawn.count('class="lineage-node ') == 3
    assert f'data-node="{refs[3].key}"' in drawn
    assert bad.status_code == 400
    assert "node id must be an integer" in bad.content.decode()


def test_outsider_cannot_explore_or_expand_into_another_team(client, outsider, crossing):
    a, x, _b = crossing
    client.force_login(outsider)

    page = client.get("/lineage/", {"node": a.key})
    fragment = client.get(
        "/lineage/graph/", {"node": x.key, "direction": "both", "depth": 1, "expand": a.key}
    )

    assert page.status_code == 404
    assert fragment.status_code == 200
    assert fragment.content.decode().count('class="lineage-node ') == 1
