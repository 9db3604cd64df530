"""Exports of the audit trail: CSV for spreadsheets, a JSON bundle for offline verification.

Both stream: rows are read with ``.iterator()`` and written as they come, so a filtered range
of a million events never sits in memory. Callers pass querysets already restricted with
``AuditEvent.objects.restrict(user)`` and filtered.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from governance import merkle
from governance.audit.keys import signing_key
from governance.audit.leaf import iso_timestamp, leaf_for, personal_details
from governance.audit.proofs import checkpoint_json, read_nodes
from governance.keyset import older_than
from governance.models import AuditCheckpoint, AuditEvent

CSV_COLUMNS = [
    "id",
    "timestamp",
    "actor",
    "on_behalf_of",
    "action",
    "object_type",
    "object_id",
    "object",
    "team",
    "request_id",
    "task_id",
    "before",
    "after",
    "leaf_index",
]
# A cell starting with one of these is a formula to Excel, LibreOffice or Sheets (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 500
BUNDLE_FORMAT = "steward-audit-bundle/1"
VERIFIER_PATH = Path(merkle.__file__)


def neutralise(cell: str) -> str:
    """``cell`` with a leading ``'`` when a spreadsheet would run it as a formula (it starts
    with ``= + - @``, a tab or a carriage return); any other text unchanged."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _json_text(value: Any) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def csv_lines(events: QuerySet[AuditEvent], *, with_leaf_index: bool) -> Iterator[str]:
    """The header and one CSV line per event (``CSV_COLUMNS``), newest first, formulas neutralised.

    ``leaf_index`` (empty until sequenced) is a column only ``with_leaf_index``: leaf indexes count
    every team's events, so they are for auditors (``audit.proofs.may_audit``) alone. ``events``
    should select ``team``, and ``leaf`` when ``with_leaf_index``. The first ``CHUNK`` events are
    read before this returns, so a query the database refuses raises here, not mid-stream.
    """
    columns = CSV_COLUMNS if with_leaf_index else [c for c in CSV_COLUMNS if c != "leaf_index"]
    events = events.order_by("-timestamp", "-id")
    first = list(events[:CHUNK])
    rest = older_than(events, first[-1].timestamp, first[-1].pk) if len(first) == CHUNK else None
    return _csv_stream(_first_then_rest(first, rest), columns)


def _first_then_rest(first: list[AuditEvent], rest: QuerySet[AuditEvent] | None) -> Iterator[AuditEvent]:
    # A streaming response has sent "200" and its headers before its first chunk is produced: an
    # error there (a value the adapter cannot convert) used to end a 200 after the header row. So
    # the first chunk is a plain query run by the caller before it builds the response; the rest
    # continues after its last row (no server-side cursor is left open if nobody reads on).
    yield from first
    if rest is not None:
        yield from rest.iterator(chunk_size=2_000)


def _csv_stream(events: Iterator[AuditEvent], columns: list[str]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[Any]) -> str:
        writer.writerow([neutralise(cell) if isinstance(cell, str) else cell for cell in cells])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    with_leaf_index = "leaf_index" in columns
    yield line(columns)
    for event in events:
        cells = [
            event.pk,
            iso_timestamp(event.timestamp),
            event.actor_label,
            event.on_behalf_of_label,
            event.action,
            event.object_type,
            event.object_id,
            event.object_repr,
            event.team.name if event.team is not None else "",
            event.request_id,
            event.task_id,
            _json_text(event.before),
            _json_text(event.after),
        ]
        if with_leaf_index:
            leaf = getattr(event, "leaf", None)
            cells.append("" if leaf is None else leaf.leaf_index)
        yield line(cells)


def verifier_sha256() -> str:
    """Hex SHA-256 of the verifier script served at ``/api/audit/verifier.py``."""
    return hashlib.sha256(VERIFIER_PATH.read_bytes()).hexdigest()


def bundle_chunks(
    events: QuerySet[AuditEvent],
    checkpoint: AuditCheckpoint,
    *,
    filters: Mapping[str, str],
    verifier_url: str,
    public_key_url: str,
    unsequenced: int,
) -> Iterator[str]:
    """A JSON bundle of ``events`` with their inclusion proofs against ``checkpoint``, in pieces.

    Shape (what ``merkle.py verify`` reads): ``{"format", "exported_at", "filters",
    "how_to_verify", "verifier": {"url", "sha256"}, "public_key_pem", "checkpoint":
    {tree_size, root_hash, timestamp, signature, key_id}, "events": [{"leaf_index", "leaf",
    "proof" (hex, leaf level first), "personal" (the committed details, null once erased),
    "salt" (hex or null), "event_id"}, ...], "unsequenced_events_not_included"}``. Events come
    in leaf-index order; pass only those with a leaf below the checkpoint's tree size. One node
    query per ``CHUNK`` events. The first ``CHUNK`` events are read and the signing key loaded
    before this returns, so their errors raise here, not mid-stream.
    """
    key = signing_key()
    header = {
        "format": BUNDLE_FORMAT,
        "exported_at": iso_timestamp(timezone.now()),
        "filters": dict(filters),
        "how_to_verify": (
            f"Download the verifier from {verifier_url} (check its sha256 below) and the public key "
            f"from {public_key_url} (or better, from the operator through another channel) as "
            "steward.pem, save this file as bundle.json and run: python3 merkle.py verify "
            "--public-key steward.pem bundle.json (add --complete to require a bundle of the whole "
            "log; Python 3.10+ with the 'cryptography' package; nothing else, no network). It "
            "checks the checkpoint's Ed25519 signature with that key, each event's leaf and "
            "personal details, each RFC 9162 inclusion proof, and for a bundle exported without "
            "filters that no leaf is missing."
        ),
        "verifier": {"url": verifier_url, "sha256": verifier_sha256()},
        "public_key_pem": key.public_key_pem,
        "checkpoint": checkpoint_json(checkpoint),
    }
    events = events.order_by("leaf__leaf_index")
    first = list(events[:CHUNK])
    rest = events.filter(leaf__leaf_index__gt=first[-1].leaf.leaf_index) if len(first) == CHUNK else None
    return _bundle_stream(header, _first_then_rest(first, rest), checkpoint, unsequenced)


def _bundle_stream(
    header: dict[str, Any], events: Iterator[AuditEvent], checkpoint: AuditCheckpoint, unsequenced: int
) -> Iterator[str]:
    opening = json.dumps(header, ensure_ascii=False, indent=1)
    yield opening[: opening.rindex("}")].rstrip() + ',\n "events": [\n'
    first = True
    chunk: list[AuditEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == CHUNK:
            yield _event_items(chunk, checkpoint.tree_size, first)
            first, chunk = False, []
    if chunk:
        yield _event_items(chunk, checkpoint.tree_size, first)
    yield f'\n ],\n "unsequenced_events_not_included": {unsequenced}\n}}\n'


def _event_items(events: list[AuditEvent], tree_size: int, first: bool) -> str:
    plans = {event.pk: merkle.inclusion_plan(event.leaf.leaf_index, tree_size) for event in events}
    nodes = read_nodes(node for plan in plans.values() for node in merkle.plan_nodes(plan))
    items = []
    for event in events:
        personal = getattr(event, "personal_data", None)
        salt = bytes.fromhex(personal.salt) if personal is not None else None
        item = {
            "leaf_index": event.leaf.leaf_index,
            "leaf": leaf_for(event, salt, commitment=event.leaf.personal_commitment),
            "proof": [
                step.hex() for step in merkle.proof_from_plan(plans[event.pk], lambda lv, i: nodes[(lv, i)])
            ],
            "personal": personal_details(event) if salt is not None else None,
            "salt": salt.hex() if salt is not None else None,
            "event_id": event.pk,
        }
        items.append("  " + json.dumps(item, ensure_ascii=False, sort_keys=True))
    return ("" if first else ",\n") + ",\n".join(items)
