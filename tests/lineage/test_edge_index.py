"""The walk's in-memory edge index stays true to the table (lineage.graph): edges committed
after a walk are seen by the next, also when their id is below one already read (a transaction
that drew its id first and committed last), and recording an edge twice draws no id."""

from __future__ import annotations

import pytest
from django.db import connection

from lineage.actions import do_record_edges
from lineage.graph import edge_index
from lineage.models import LineageEdge
from tests.lineage.conftest import chain


def _downstream(client, node) -> set[str]:
    response = client.get("/api/lineage/", {"node": node.key, "direction": "downstream", "depth": 20})
    assert response.status_code == 200, response.json()
    return {n["id"] for n in response.json()["nodes"]}


def _insert_edge(edge_id: int, source, target) -> None:
    """An edge row with a chosen id, as a transaction that drew ``edge_id`` and committed later
    than higher ids would leave it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {LineageEdge._meta.db_table} "  # noqa: S608
            "(id, source_type, source_id, target_type, target_id, relation, created_at) "
            "VALUES (%s, %s, %s, %s, %s, 'output', CURRENT_TIMESTAMP)",
            [edge_id, source.type, source.id, target.type, target.id],
        )


def test_a_new_edge_shows_in_the_next_walk(client_for, viewer, scientist, team, tiny_versions):
    a, b, c = tiny_versions(team, 3, scientist)
    chain([a, b])
    client = client_for(viewer)
    assert _downstream(client, a) == {a.key, b.key}
    chain([b, c])
    assert _downstream(client, a) == {a.key, b.key, c.key}


def test_an_edge_committed_below_the_watermark_is_found(client_for, viewer, scientist, team, tiny_versions):
    a, b, c, d = tiny_versions(team, 4, scientist)
    chain([a, b])
    top = LineageEdge.objects.order_by("-id").values_list("id", flat=True).first()
    # Ids top+1 and top+2 are drawn; top+2 commits first and is read by a walk ...
    _insert_edge(top + 2, b, c)
    client = client_for(viewer)
    assert _downstream(client, a) == {a.key, b.key, c.key}
    # ... then top+1 commits: the next walk still finds it.
    _insert_edge(top + 1, c, d)
    assert _downstream(client, a) == {a.key, b.key, c.key, d.key}


def test_recording_an_edge_again_draws_no_id(scientist, team, tiny_versions):
    a, b, c = tiny_versions(team, 3, scientist)
    chain([a, b])
    first = LineageEdge.objects.get(source_id=a.id, target_id=b.id).pk
    do_record_edges([(a, b, "output"), (a, b, "output")])
    chain([b, c])
    assert LineageEdge.objects.filter(source_id=a.id, target_id=b.id).count() == 1
    assert LineageEdge.objects.get(source_id=b.id, target_id=c.id).pk == first + 1


@pytest.mark.django_db(transaction=True)
def test_an_emptied_table_is_read_again(admin, team, scientist, tiny_versions, client_for):
    a, b, c = tiny_versions(team, 3, scientist)
    chain([a, b])
    client = client_for(admin)
    assert _downstream(client, a) == {a.key, b.key}
    LineageEdge.objects.all().delete()  # what a restore of an older backup looks like to the index
    assert _downstream(client, a) == {a.key}
    chain([a, c])
    assert _downstream(client, a) == {a.key, c.key}
    assert edge_index().edge_count == 1  # the deleted edge is gone from memory too
