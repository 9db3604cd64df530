"""Steward's lineage in Marquez's read shape (``GET /api/v1/lineage?nodeId=&depth=``).

Marquez (the OpenLineage reference server) answers ``{"graph": [{id, type, data, inEdges,
outEdges}]}`` with ids ``dataset:<namespace>:<name>`` and ``job:<namespace>:<name>``. Steward's
nodes are versions and runs, not Marquez's named datasets and jobs, so each node keeps its own
identity inside namespace ``steward``: node ``dataset_version:12`` is
``dataset:steward:dataset_version:12``, ``job:7`` is ``job:steward:job:7``. A node type is a
Marquez JOB when it is a run (``job``, or a type named ``*_job``/``*_run``), else a DATASET (model
versions and code versions included: artifacts a run reads or writes). ``nodeId`` also takes a
plain Steward key (``dataset_version:12``).
"""

from __future__ import annotations

from lineage.nodes import NodeRef
from lineage.queries import walk

NAMESPACE = "steward"


def marquez_kind(node_type: str) -> str:
    """``"job"`` or ``"dataset"``: the Marquez node kind of a Steward node type."""
    if node_type == "job" or node_type.endswith(("_job", "_run")):
        return "job"
    return "dataset"


def marquez_id(key: str) -> str:
    """The Marquez id of the Steward node ``key`` (``"<type>:<id>"``)."""
    return f"{marquez_kind(key.split(':', 1)[0])}:{NAMESPACE}:{key}"


def parse_node_id(node_id: str) -> NodeRef:
    """The Steward node a Marquez ``nodeId`` names; raises ValueError saying what is wrong."""
    kind, _, rest = node_id.partition(":")
    if kind in ("dataset", "job"):
        namespace, _, key = rest.partition(":")
        if namespace != NAMESPACE:
            raise ValueError(f"namespace must be {NAMESPACE!r} (Steward's nodes), got {namespace[:60]!r}")
        ref = NodeRef.parse(key)
        if marquez_kind(ref.type) != kind:
            raise ValueError(f"a {ref.type} is a {marquez_kind(ref.type)} node, not a {kind}")
        return ref
    return NodeRef.parse(node_id)


def marquez_graph(user, root: NodeRef, depth: int) -> dict:
    """``{"graph": [...]}`` of the nodes within ``depth`` hops of ``root`` both ways that ``user``
    may view (``walk``'s RBAC), one entry each, nearest first: ``{"id", "type": "DATASET"|"JOB",
    "data": {type, id: {namespace, name}, namespace, name, stewardId, label, url, distance},
    "inEdges": [{origin, destination}], "outEdges": [...]}``. Raises as ``walk``."""
    graph = walk(user, root, "both", depth)
    ins: dict[str, list[dict]] = {}
    outs: dict[str, list[dict]] = {}
    for edge in graph["edges"]:
        link = {"origin": marquez_id(edge["source"]), "destination": marquez_id(edge["target"])}
        outs.setdefault(edge["source"], []).append(link)
        ins.setdefault(edge["target"], []).append(link)
    entries = []
    for node in graph["nodes"]:
        kind = marquez_kind(node["type"]).upper()
        entries.append(
            {
                "id": marquez_id(node["id"]),
                "type": kind,
                "data": {
                    "type": "BATCH" if kind == "JOB" else "DB_TABLE",
                    "id": {"namespace": NAMESPACE, "name": node["id"]},
                    "namespace": NAMESPACE,
                    "name": node["id"],
                    "stewardId": node["id"],
                    "stewardType": node["type"],
                    "label": node["label"],
                    "url": node["url"],
                    "distance": node["distance"],
                },
                "inEdges": ins.get(node["id"], []),
                "outEdges": outs.get(node["id"], []),
            }
        )
    return {"graph": entries}
