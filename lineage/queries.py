"""Walking the lineage graph upstream or downstream, restricted to what the user may see.

The edges come from this process's in-memory index (``lineage.graph``: synced with the table
before each walk); which nodes the user may see comes from the database, one query per node type
(``visible_nodes``: each type's ``restrict(user)``). Another team's node is neither shown nor
walked through. Why not a per-hop SQL walk, a recursive CTE or a closure table:
``docs/architecture.md`` (lineage).
"""

from __future__ import annotations

from typing import Literal

from django.db.models import QuerySet

from lineage.graph import edge_index
from lineage.models import LineageEdge, Relation
from lineage.nodes import NodeRef, visible_nodes

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
    ValueError for a depth outside 1..``MAX_DEPTH``.

    How: the nodes within ``depth`` hops whatever their team are found in memory; one query per
    node type among them keeps those the user may view (with their labels); the walk is then
    repeated through those only. Queries: 2 (the index's sync) + 1 per node type reached.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH}")
    index = edge_index()
    sides = ("upstream", "downstream") if direction == "both" else (direction,)
    candidates: set[int] = set()
    for side in sides:
        candidates.update(index.reach((root.type, root.id), side, depth)[0])
    ref_of = {code: NodeRef(*index.node_of(code)) for code in candidates}
    described = visible_nodes(user, set(ref_of.values()) | {root})
    if root not in described:
        raise LookupError(f"no lineage node {root.key}")
    allowed = {code for code, ref in ref_of.items() if ref in described}
    key_of = {code: ref_of[code].key for code in allowed}
    distance: dict[NodeRef, int] = {}
    edges: dict[tuple[str, str, str], dict] = {}
    for side in sides:
        reached, found = index.reach((root.type, root.id), side, depth, allowed)
        for code, hops in reached.items():
            ref = ref_of[code]
            distance[ref] = min(hops, distance.get(ref, hops))
        for source, target, relation in found:
            name = index.relation_of(relation)
            edge = {"source": key_of[source], "target": key_of[target], "relation": name}
            edges[(edge["source"], edge["target"], name)] = edge
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


def runs_writing(target: NodeRef, *, run_type: str = "job") -> QuerySet:
    """Ids of the ``run_type`` nodes that wrote ``target`` (``run -[output]-> target``): the
    training runs of a model version. A lazy values queryset of ``source_id``, for ``pk__in=``."""
    return LineageEdge.objects.filter(
        source_type=run_type, target_type=target.type, target_id=target.id, relation=Relation.OUTPUT
    ).values("source_id")
