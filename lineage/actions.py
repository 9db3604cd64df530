"""Recording lineage edges, called by the actions that create the nodes (same transaction)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from lineage.models import LineageEdge
from lineage.nodes import NodeRef


def do_record_edges(edges: Iterable[tuple[NodeRef, NodeRef, str]]) -> list[LineageEdge]:
    """Record ``(source, target, relation)`` edges; recording one twice is a no-op.

    Edges are derived facts of an audited action (a job's inputs and outputs), so they carry
    no audit event of their own; the caller's transaction makes them commit with that action.
    """
    created = []
    with transaction.atomic():
        for source, target, relation in edges:
            edge, _ = LineageEdge.objects.get_or_create(
                source_type=source.type,
                source_id=source.id,
                target_type=target.type,
                target_id=target.id,
                relation=relation,
            )
            created.append(edge)
    return created
