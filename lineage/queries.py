"""Walking the lineage graph upstream or downstream, restricted to what the user may see.

A walk is breadth first, one SQL statement per hop, and each statement only follows an edge into
a node the user may view, so another team's node is neither shown nor walked through. Why not a
recursive CTE (measured) or a closure table: ``docs/architecture.md`` (lineage).
"""

from __future__ import annotations

from typing import Literal

from django.apps import apps
from django.db import connection
from django.db.models import QuerySet

from lineage.models import LineageEdge, Relation
from lineage.nodes import NODE_MODELS, NodeRef, visible_nodes

Direction = Literal["upstream", "downstream", "both"]
MAX_DEPTH = 20


def walk(
    user,
    root: NodeRef,
    direction: Direction = "both",
    depth: int = 3,
    *,
    types: frozenset[str] | set[str] | None = None,
) -> dict:
    """Every node within ``depth`` hops of ``root`` the user may view, nearest first.

    Returns ``{"root": key, "nodes": [{id, type, label, url, distance}], "edges": [{source,
    target, relation}]}``; ``distance`` is the fewest hops from the root. Nodes the user may not
    view are left out and not walked through, so the graph never reveals another team's
    objects. ``"both"`` joins an upstream and a downstream walk (one mixed walk would also
    reach siblings: other outputs of the root's inputs). ``types``, when given, keeps only nodes
    of those types (and the root) in the answer and the edges between them; the walk itself
    still passes through every visible node. Raises LookupError if ``root`` is not visible and
    ValueError for a depth outside 1..``MAX_DEPTH``. Queries: 1 (the root) + 1 per hop and
    direction (edges and visibility in one statement) + 1 per node type reached (labels).
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH}")
    described = visible_nodes(user, {root})
    if root not in described:
        raise LookupError(f"no lineage node {root.key}")
    sides = ("upstream", "downstream") if direction == "both" else (direction,)
    distance: dict[NodeRef, int] = {}
    edges: dict[tuple[str, str, str], dict] = {}
    for side in sides:
        reached, found = _reach(user, root, side, depth)
        for ref, hops in reached.items():
            distance[ref] = min(hops, distance.get(ref, hops))
        for edge in found:
            edges[(edge["source"], edge["target"], edge["relation"])] = edge
    # The walk checked visibility with ids only; labels come from the same restricted querysets.
    described.update(visible_nodes(user, set(distance) - {root}))
    if types:
        kept = {ref for ref in distance if ref.type in types or ref == root}
        distance = {ref: hops for ref, hops in distance.items() if ref in kept}
        keys = {ref.key for ref in kept}
        edges = {k: e for k, e in edges.items() if e["source"] in keys and e["target"] in keys}
    nodes = [
        dict(described[ref], distance=hops)
        for ref, hops in sorted(distance.items(), key=lambda item: (item[1], item[0].type, item[0].id))
        if ref in described
    ]
    return {"root": root.key, "nodes": nodes, "edges": list(edges.values())}


def _visible_branches(user) -> list[tuple[str, str, list]]:
    """Per node type: ``(type, SQL of the ids user may view or "", params)``; "" where the
    restriction keeps every row (platform admins, compliance officers)."""
    branches: list[tuple[str, str, list]] = []
    for node_type, label in NODE_MODELS.items():
        queryset = apps.get_model(label).objects.restrict(user)
        if not queryset.query.where:
            branches.append((node_type, "", []))
            continue
        sql, params = queryset.order_by().values("pk").query.get_compiler(connection=connection).as_sql()
        branches.append((node_type, sql, list(params)))
    return branches


def _reach(user, root: NodeRef, direction: str, depth: int) -> tuple[dict[NodeRef, int], list[dict]]:
    """The visible nodes within ``depth`` hops of ``root`` one way, with their fewest hops, and
    the edges walked (from a node nearer than ``depth`` to a visible node).

    Breadth first, one statement per hop: the frontier's edges whose far node the user may view
    (``_visible_branches``, checked in the same statement). Each node is expanded once, at its
    fewest hops; why not a recursive CTE: ``docs/architecture.md`` (lineage).
    """
    edge_table = LineageEdge._meta.db_table
    near, far = ("target", "source") if direction == "upstream" else ("source", "target")
    branches = _visible_branches(user)
    distance = {root: 0}
    edges: list[dict] = []
    frontier = {root}
    with connection.cursor() as cursor:
        for hop in range(1, depth + 1):
            if not frontier:
                break
            by_type: dict[str, list[int]] = {}
            for ref in frontier:
                by_type.setdefault(ref.type, []).append(ref.id)
            clauses, frontier_params = [], []
            for node_type, ids in by_type.items():
                clauses.append(f"(e.{near}_type = %s AND e.{near}_id IN ({', '.join(['%s'] * len(ids))}))")
                frontier_params.extend([node_type, *ids])
            # One branch per node type the far end may have: a plain IN (restricted ids) outside
            # any OR lets PostgreSQL look each candidate up by primary key (a semi-join).
            selects, params = [], []
            for node_type, visible_sql, visible_params in branches:
                where = f"({' OR '.join(clauses)}) AND e.{far}_type = %s"
                if visible_sql:
                    where += f" AND e.{far}_id IN ({visible_sql})"
                selects.append(
                    "SELECT e.source_type, e.source_id, e.target_type, e.target_id, e.relation "  # noqa: S608
                    f"FROM {edge_table} e WHERE {where}"
                )
                params.extend([*frontier_params, node_type, *visible_params])
            cursor.execute(" UNION ALL ".join(selects), params)
            frontier = set()
            for source_type, source_id, target_type, target_id, relation in cursor.fetchall():
                source, target = NodeRef(source_type, source_id), NodeRef(target_type, target_id)
                edges.append({"source": source.key, "target": target.key, "relation": relation})
                reached = target if direction == "downstream" else source
                if reached not in distance:
                    distance[reached] = hop
                    frontier.add(reached)
    return distance, edges


PANEL_DEPTH = 3


def lineage_of(user, obj) -> dict:
    """Visible nodes upstream and downstream of ``obj`` (a node row), nearest first, for the
    lineage panel (``includes/lineage.html``): ``{"root": key, "upstream": [node],
    "downstream": [node], "graph": {root, nodes, edges}}``, each listed node ``{id, type, label,
    url, distance, kind}``, ``PANEL_DEPTH`` hops at most; ``graph`` joins both sides for the
    drawing."""
    root = NodeRef.of(obj)
    sides: dict = {"root": root.key}
    nodes: dict[str, dict] = {}
    edges: dict[tuple, dict] = {}
    for direction in ("upstream", "downstream"):
        graph = walk(user, root, direction, PANEL_DEPTH)
        sides[direction] = [
            dict(node, kind=node["type"].replace("_", " ")) for node in graph["nodes"] if node["distance"]
        ]
        nodes.update({node["id"]: node for node in graph["nodes"]})
        edges.update({(e["source"], e["target"], e["relation"]): e for e in graph["edges"]})
    ordered = sorted(nodes.values(), key=lambda node: node["distance"])
    sides["graph"] = {"root": root.key, "nodes": ordered, "edges": list(edges.values())}
    return sides


# Unrestricted reads for other apps' system code (issue 8: monitoring used to query LineageEdge
# itself); callers restrict what they show people, this only follows edges.
def outputs_of_runs_reading(source: NodeRef, *, run_type: str, output_type: str) -> QuerySet:
    """Ids of the ``output_type`` nodes written by ``run_type`` nodes that read ``source``:
    ``source -[input]-> run -[output]-> output``.

    A lazy values queryset of ``target_id``, to use as a subquery (``pk__in=``): the whole walk is
    one SQL statement, with the runs as a nested subquery. Example: the dataset versions inference
    jobs wrote from a model version, ``outputs_of_runs_reading(NodeRef("model_version", 7),
    run_type="job", output_type="dataset_version")``.
    """
    runs = LineageEdge.objects.filter(
        source_type=source.type, source_id=source.id, target_type=run_type, relation=Relation.INPUT
    ).values("target_id")
    return LineageEdge.objects.filter(
        source_type=run_type, source_id__in=runs, target_type=output_type, relation=Relation.OUTPUT
    ).values("target_id")
