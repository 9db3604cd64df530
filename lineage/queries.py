"""Walking the lineage graph upstream or downstream, restricted to what the user may see."""

from __future__ import annotations

from typing import Literal

from django.db.models import Q, QuerySet

from lineage.models import LineageEdge, Relation
from lineage.nodes import NodeRef, visible_nodes

Direction = Literal["upstream", "downstream", "both"]
MAX_DEPTH = 10


def walk(user, root: NodeRef, direction: Direction = "both", depth: int = 3) -> dict:
    """Breadth-first walk from ``root`` up to ``depth`` hops.

    Returns ``{"root": key, "nodes": [{id, type, label, url, distance}], "edges": [{source,
    target, relation}]}``. Nodes the user may not view are left out and not walked through, so
    the graph never reveals another team's objects. Raises LookupError if ``root`` is not
    visible. Queries: 2 per hop (edges, then one per node type present).
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH}")
    if direction == "both":
        # Two separate walks: one mixed walk would also reach siblings (other outputs of inputs).
        up, down = walk(user, root, "upstream", depth), walk(user, root, "downstream", depth)
        nodes = {node["id"]: node for node in down["nodes"]} | {node["id"]: node for node in up["nodes"]}
        both = {(e["source"], e["target"], e["relation"]): e for e in up["edges"] + down["edges"]}
        ordered = sorted(nodes.values(), key=lambda node: node["distance"])
        return {"root": root.key, "nodes": ordered, "edges": list(both.values())}
    seen = visible_nodes(user, {root})
    if root not in seen:
        raise LookupError(f"no lineage node {root.key}")
    distance = {root: 0}
    edges: dict[tuple, dict] = {}
    frontier = {root}
    for hop in range(1, depth + 1):
        if not frontier:
            break
        found = _edges_touching(frontier, direction)
        candidates: set[NodeRef] = set()
        for edge in found:
            source = NodeRef(edge.source_type, edge.source_id)
            target = NodeRef(edge.target_type, edge.target_id)
            candidates.update(ref for ref in (source, target) if ref not in seen)
        seen.update(visible_nodes(user, candidates))
        next_frontier = set()
        for edge in found:
            source = NodeRef(edge.source_type, edge.source_id)
            target = NodeRef(edge.target_type, edge.target_id)
            if source in seen and target in seen:
                edges[(source, target, edge.relation)] = {
                    "source": source.key,
                    "target": target.key,
                    "relation": edge.relation,
                }
                for ref in (source, target):
                    if ref not in distance:
                        distance[ref] = hop
                        next_frontier.add(ref)
        frontier = next_frontier
    reached = [dict(seen[ref], distance=dist) for ref, dist in sorted(distance.items(), key=lambda i: i[1])]
    return {"root": root.key, "nodes": reached, "edges": list(edges.values())}


def _edges_touching(frontier: set[NodeRef], direction: Direction) -> list[LineageEdge]:
    condition = Q()
    for ref in frontier:
        if direction == "upstream":
            condition |= Q(target_type=ref.type, target_id=ref.id)
        else:
            condition |= Q(source_type=ref.type, source_id=ref.id)
    return list(LineageEdge.objects.filter(condition))


PANEL_DEPTH = 3


def lineage_of(user, obj) -> dict[str, list[dict]]:
    """Visible nodes upstream and downstream of ``obj`` (a node row), nearest first, for the
    lineage panel (``includes/lineage.html``): ``{"upstream": [node], "downstream": [node]}``,
    each node ``{id, type, label, url, distance, kind}``, ``PANEL_DEPTH`` hops at most."""
    root = NodeRef.of(obj)
    sides = {}
    for direction in ("upstream", "downstream"):
        graph = walk(user, root, direction, PANEL_DEPTH)
        sides[direction] = [
            dict(node, kind=node["type"].replace("_", " ")) for node in graph["nodes"] if node["distance"]
        ]
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
