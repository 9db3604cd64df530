"""Recording lineage edges, called by the actions that create the nodes (same transaction)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.utils import timezone

from lineage.models import LineageEdge
from lineage.nodes import NodeRef


def do_record_edges(edges: Iterable[tuple[NodeRef, NodeRef, str]]) -> None:
    """Record ``(source, target, relation)`` edges; recording one twice is a no-op.

    Edges are derived facts of an audited action (a job's inputs and outputs), so they carry
    no audit event of their own; the caller's transaction makes them commit with that action.
    One statement for all of them, so OpenLineage ingest (issue 10) pays one per event, not two
    per edge: ``INSERT ... SELECT`` of the rows not already there, ``ON CONFLICT DO NOTHING`` for
    a racing insert of the same edge. Skipping the existing rows before the insert (rather than
    leaving it all to ``ON CONFLICT``) draws no id for a duplicate, so ids stay dense and
    ``lineage.graph.EdgeIndex`` has few gaps to re-read.
    """
    unique = list(dict.fromkeys((s.type, s.id, t.type, t.id, relation) for s, t, relation in edges))
    if not unique:
        return
    now = timezone.now()
    table = LineageEdge._meta.db_table
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(unique))
    params = [value for row in unique for value in (*row, now)]
    # VALUES' columns are column1..column6 in PostgreSQL and SQLite alike.
    sql = (
        f"INSERT INTO {table} (source_type, source_id, target_type, target_id, relation, created_at) "  # noqa: S608
        "SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 "
        f"FROM (VALUES {values}) AS v "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE e.source_type = v.column1 "
        "AND e.source_id = v.column2 AND e.target_type = v.column3 AND e.target_id = v.column4 "
        "AND e.relation = v.column5) ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
