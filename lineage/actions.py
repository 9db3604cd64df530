"""Recording lineage edges, called by the actions that create the nodes (same transaction)."""

from __future__ import annotations

from collections.abc import Iterable

from lineage.models import LineageEdge
from lineage.nodes import NodeRef


def do_record_edges(edges: Iterable[tuple[NodeRef, NodeRef, str]]) -> None:
    """Record ``(source, target, relation)`` edges; recording one twice is a no-op.

    Edges are derived facts of an audited action (a job's inputs and outputs), so they carry
    no audit event of their own; the caller's transaction makes them commit with that action.
    One INSERT ... ON CONFLICT DO NOTHING for all of them (the unique constraint decides), so
    OpenLineage ingest (issue 10) pays one statement per event, not two per edge.
    """
    rows = [
        LineageEdge(
            source_type=source.type,
            source_id=source.id,
            target_type=target.type,
            target_id=target.id,
            relation=relation,
        )
        for source, target, relation in edges
    ]
    if rows:
        LineageEdge.objects.bulk_create(rows, ignore_conflicts=True)
