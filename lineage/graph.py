"""The lineage graph's edges held in memory, one copy per process, for walks (issue 10).

Why in memory: an impact walk 20 hops deep from a busy dataset reaches thousands of edges; as
one SQL statement per hop it costs 20 round trips and plans (~170 ms on 100,000 nodes), and a
recursive CTE or a closure table is worse (``docs/architecture.md``, lineage). The edges
themselves are small and append-only (nothing deletes a ``LineageEdge``; the admin refuses), so
each process keeps an adjacency list of all of them and walks it in Python; what the user may
see is still decided by the database (``lineage.queries.walk`` asks each node type's
``restrict(user)`` for the nodes reached), so this index holds no permission.

Staying current. Before each walk, ``EdgeIndex.sync`` reads the edges with an id above the
highest it holds (its watermark): one indexed range scan, usually empty. Ids are handed out
when a row is inserted, not when it commits, so a transaction that inserted id 100 may commit
after another's id 101 was read: the ids skipped between two reads are *gaps*, re-read on every
sync until they show up or ``GAP_TTL_S`` passes (a gap is usually a rolled-back insert and never
fills). A table whose highest id fell below the watermark was emptied or rolled back (SQLite
reuses ids then): the index is rebuilt. Memory: about 130 bytes an edge (~40 MB at 300,000).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from django.db import connection

from lineage.models import LineageEdge

# An edge whose gap is older than this is taken for a rolled-back insert and no longer re-read.
# Edges are written by short transactions (an action, an ingest batch); one open longer than this
# between inserting an edge and committing would have it missed until the process restarts.
GAP_TTL_S = 600.0
# Gap ids tracked at most; a larger jump in ids (a huge rolled-back batch) is not tracked.
# ``lineage.actions.do_record_edges`` skips edges already there before an id is drawn, so gaps
# come from rolled-back transactions and racing inserts, not from every duplicate.
MAX_GAPS = 10_000
# On the first read, only missing ids this near the top can still be in-flight commits.
INITIAL_GAP_SPAN = 1_000
# Node keys are packed into one int, ``id * TYPE_SLOTS + type code``: a third of a tuple's memory
# and hashing, and the walk's sets stay sets of ints.
TYPE_SLOTS = 64
RELATION_SLOTS = 8


class EdgeIndex:
    """All lineage edges of the default database, as two adjacency maps (out and in).

    Thread safe: ``sync`` holds a lock while it reads and appends; a walk reads the maps without
    it (appending to a list is atomic in CPython; a walk that races an append sees the edge or
    not, as it would have in SQL a moment earlier or later).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The codes of node types and relations outlive a reset: a walk that began before one
        # still decodes the codes it holds.
        self._types: dict[str, int] = {}
        self._type_names: list[str] = []
        self._relations: dict[str, int] = {}
        self._relation_names: list[str] = []
        self._reset()

    def _reset(self) -> None:
        # node code -> [neighbour code * RELATION_SLOTS + relation code]
        self._downstream: dict[int, list[int]] = {}
        self._upstream: dict[int, list[int]] = {}
        self._watermark = 0
        self._gaps: dict[int, float] = {}  # edge id -> when it was first missed (monotonic s)
        self.edge_count = 0

    def clear(self) -> None:
        """Forget every edge; the next ``sync`` reads them all again."""
        with self._lock:
            self._reset()

    # Packing. A node type or relation is given a code the first time it is seen.
    def _code(self, node_type: str, node_id: int) -> int:
        return node_id * TYPE_SLOTS + _intern(self._types, self._type_names, node_type, TYPE_SLOTS)

    def _relation_code(self, relation: str) -> int:
        return _intern(self._relations, self._relation_names, relation, RELATION_SLOTS)

    def code_of(self, node_type: str, node_id: int) -> int | None:
        """The packed code of a node, or None for a type no edge has (then it has no edges)."""
        type_code = self._types.get(node_type)
        return None if type_code is None else node_id * TYPE_SLOTS + type_code

    def node_of(self, code: int) -> tuple[str, int]:
        """``(type, id)`` of a packed node code."""
        return self._type_names[code % TYPE_SLOTS], code // TYPE_SLOTS

    def relation_of(self, code: int) -> str:
        return self._relation_names[code]

    def sync(self) -> None:
        """Read the edges committed since the last sync (and the gaps' late commits).

        Two statements when nothing changed (the highest id, then nothing to read); the first
        call in a process reads every edge (~1 s at 300,000 on PostgreSQL).
        """
        table = LineageEdge._meta.db_table
        with self._lock, connection.cursor() as cursor:
            cursor.execute(f"SELECT MAX(id) FROM {table}")  # noqa: S608 (our table name)
            highest = cursor.fetchone()[0] or 0
            if highest < self._watermark:
                self._reset()
            now = time.monotonic()
            self._gaps = {i: seen for i, seen in self._gaps.items() if now - seen < GAP_TTL_S}
            if highest == self._watermark and not self._gaps:
                return
            columns = "id, source_type, source_id, target_type, target_id, relation"
            sql = f"SELECT {columns} FROM {table} WHERE id > %s"  # noqa: S608
            params: list = [self._watermark]
            if self._gaps:
                sql += f" OR id IN ({', '.join(['%s'] * len(self._gaps))})"
                params.extend(self._gaps)
            cursor.execute(sql, params)
            self._add(cursor.fetchall(), now)

    def _add(self, rows: Iterable[tuple], now: float) -> None:
        previous = self._watermark
        seen: set[int] = set()
        downstream, upstream = self._downstream, self._upstream
        for edge_id, source_type, source_id, target_type, target_id, relation in rows:
            if edge_id <= previous and edge_id not in self._gaps:
                continue  # already held (a gap re-read races nothing, but be exact)
            self._gaps.pop(edge_id, None)
            seen.add(edge_id)
            source = self._code(source_type, source_id)
            target = self._code(target_type, target_id)
            relation_code = self._relation_code(relation)
            downstream.setdefault(source, []).append(target * RELATION_SLOTS + relation_code)
            upstream.setdefault(target, []).append(source * RELATION_SLOTS + relation_code)
            self.edge_count += 1
        if not seen:
            return
        highest = max(seen)
        if highest > previous:
            lowest = previous + 1 if previous else max(1, highest - INITIAL_GAP_SPAN)
            missing = [i for i in range(lowest, highest) if i not in seen]
            if len(self._gaps) + len(missing) <= MAX_GAPS:
                self._gaps.update(dict.fromkeys(missing, now))
            self._watermark = highest

    def reach(
        self, root: tuple[str, int], direction: str, depth: int, allowed: set[int] | None = None
    ) -> tuple[dict[int, int], list[tuple[int, int, int]]]:
        """Breadth first from ``root`` one way (``"downstream"``: along edges; ``"upstream"``:
        against them), at most ``depth`` hops.

        Returns ``({node code: fewest hops}, [(source code, target code, relation code)])``:
        the nodes reached (the root at 0) and the edges walked, each from a node nearer than
        ``depth``. With ``allowed`` (node codes), only those nodes are entered, so a node outside
        it is neither reached nor walked through; an edge into an allowed node already reached
        is still listed (the graph shows it).
        """
        root_code = self.code_of(*root)
        if root_code is None:  # a type no edge has yet: give it a code, so node_of() reads it back
            with self._lock:
                return {self._code(*root): 0}, []
        adjacency = self._downstream if direction == "downstream" else self._upstream
        forward = direction == "downstream"
        distance = {root_code: 0}
        edges: list[tuple[int, int, int]] = []
        frontier = [root_code]
        for hop in range(1, depth + 1):
            following: list[int] = []
            for node in frontier:
                for packed in adjacency.get(node, ()):
                    far, relation = divmod(packed, RELATION_SLOTS)
                    if allowed is not None and far not in allowed:
                        continue
                    edges.append((node, far, relation) if forward else (far, node, relation))
                    if far not in distance:
                        distance[far] = hop
                        following.append(far)
            if not following:
                break
            frontier = following
        return distance, edges


def _intern(codes: dict[str, int], names: list[str], name: str, slots: int) -> int:
    """The code of ``name`` in ``codes`` (its position in ``names``), given the next one when new."""
    code = codes.get(name)
    if code is None:
        if len(names) >= slots:
            raise RuntimeError(f"more than {slots} lineage node types or relations")
        code = codes[name] = len(names)
        names.append(name)
    return code


_index = EdgeIndex()


def edge_index() -> EdgeIndex:
    """This process's index, synced: call it at the start of each walk."""
    _index.sync()
    return _index


def reset_edge_index() -> None:
    """Forget this process's edges; the next walk reads them all again (tests roll back, and
    the benchmark measures a first walk)."""
    _index.clear()
