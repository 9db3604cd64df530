"""Impact analysis: everything downstream of a node, to the aliases, monitors and open alerts.

Runs, model versions and dataset versions are lineage nodes joined by edges. Aliases, monitors
and alerts are not: they hang off a model version (or a monitor) by a foreign key, and they move
(an alias is re-pointed by a promotion) or close (an alert is resolved), so the foreign key is
their truth and a copied edge would go stale. ``ATTACHMENTS`` names them by model label, as
``NODE_MODELS`` does, so lineage still imports no other app (issue 8 layering); each is read
through its model's ``objects.restrict(user)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps

from lineage.nodes import NodeRef, with_ids
from lineage.queries import MAX_DEPTH, walk


@dataclass(frozen=True)
class Attachment:
    """Rows of ``model`` (an ``app.Model`` label) whose ``parent_field`` points at a node of
    ``parent_type``, shown as nodes of ``node_type`` one hop beyond it, joined by ``relation``."""

    node_type: str
    model: str
    parent_type: str
    parent_field: str
    relation: str
    filters: dict[str, Any] = field(default_factory=dict)


# Alerts still needing someone (open or acknowledged: monitoring's UNRESOLVED states).
_UNRESOLVED = {"state__in": ["open", "acknowledged"]}

ATTACHMENTS: tuple[Attachment, ...] = (
    Attachment("model_alias", "governance.ModelAlias", "model_version", "model_version", "alias"),
    Attachment("monitor", "monitoring.Monitor", "model_version", "model_version", "monitored_by"),
    Attachment("alert", "monitoring.Alert", "monitor", "monitor", "alerted", _UNRESOLVED),
    # An alert of a check run on request (no monitor) hangs off the model version itself.
    Attachment(
        "alert",
        "monitoring.Alert",
        "model_version",
        "model_version",
        "alerted",
        {**_UNRESOLVED, "monitor": None},
    ),
)

# What an impact report lists, in this order; other node types follow, alphabetically.
IMPACT_ORDER = ("job", "model_version", "model_alias", "monitor", "alert", "dataset_version")


def impact(user, root: NodeRef, depth: int = MAX_DEPTH) -> dict:
    """Everything that depends on ``root``, within ``depth`` lineage hops, that ``user`` may view.

    Returns ``walk``'s shape, ``{"root", "nodes": [{id, type, label, url, distance}], "edges"}``,
    downstream only, plus the ``ATTACHMENTS`` of the nodes reached (aliases and monitors of each
    model version, unresolved alerts of each monitor or model version), each one hop beyond its
    parent; and ``"counts"``: ``{node type: how many}`` without the root. Raises LookupError if
    ``root`` is not visible, ValueError for a bad depth. Queries: ``walk``'s + 1 per attachment
    kind whose parents were reached.
    """
    graph = walk(user, root, "downstream", depth)
    nodes = {node["id"]: node for node in graph["nodes"]}
    edges = list(graph["edges"])
    frontier = list(nodes.values())
    while frontier:
        added = []
        for attachment in ATTACHMENTS:
            parents = {_row_id(n): n for n in frontier if n["type"] == attachment.parent_type}
            if not parents:
                continue
            restricted = apps.get_model(attachment.model).objects.restrict(user)
            rows = with_ids(restricted, list(parents), attachment.parent_field)
            rows = rows.filter(**attachment.filters).select_related().order_by()
            for row in rows:
                parent = parents[getattr(row, f"{attachment.parent_field}_id")]
                key = f"{attachment.node_type}:{row.pk}"
                edges.append({"source": parent["id"], "target": key, "relation": attachment.relation})
                if key in nodes:
                    continue
                url = row.get_absolute_url() if hasattr(row, "get_absolute_url") else parent["url"]
                node = {
                    "id": key,
                    "type": attachment.node_type,
                    "label": str(row),
                    "url": url,
                    "distance": parent["distance"] + 1,
                }
                nodes[key] = node
                added.append(node)
        frontier = added
    ordered = sorted(nodes.values(), key=lambda node: (node["distance"], _rank(node["type"]), node["id"]))
    counts: dict[str, int] = {}
    for node in ordered[1:]:
        counts[node["type"]] = counts.get(node["type"], 0) + 1
    counts = dict(sorted(counts.items(), key=lambda item: _rank(item[0])))
    return {"root": graph["root"], "nodes": ordered, "edges": edges, "counts": counts}


def _row_id(node: dict) -> int:
    return int(node["id"].rsplit(":", 1)[1])


def _rank(node_type: str) -> tuple[int, str]:
    return (IMPACT_ORDER.index(node_type) if node_type in IMPACT_ORDER else len(IMPACT_ORDER), node_type)


EXPORT_COLUMNS = ("distance", "type", "id", "label", "url")


def impact_rows(report: dict) -> list[list]:
    """``impact``'s nodes without the root, one list of ``EXPORT_COLUMNS`` values each, for
    exports (the CSV writer neutralises formula-like cells)."""
    return [[node[column] for column in EXPORT_COLUMNS] for node in report["nodes"][1:]]
