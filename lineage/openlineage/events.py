"""Reading OpenLineage events: body decoding, kind detection and the checks the spec makes strict.

A plain engine (no Django): ``parse_event`` turns one decoded JSON value into a ``ParsedEvent`` or
raises ``EventError`` naming the field. Tolerant where the spec is (``eventType`` optional,
``producer``/``schemaURL`` any string, unknown facets kept as sent), strict where it must be
(``run.runId`` a UUID, ``namespace`` and ``name`` of jobs and datasets present). The spec:
https://openlineage.io/spec/2-0-2/OpenLineage.json (RunEvent, JobEvent, DatasetEvent).
"""

from __future__ import annotations

import datetime
import gzip
import json
import math
import re
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["RunEvent", "JobEvent", "DatasetEvent"]
EVENT_TYPES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})
TERMINAL_EVENT_TYPES = frozenset({"COMPLETE", "ABORT", "FAIL"})
# Names and namespaces are index keys; a longer one is refused rather than truncated.
MAX_NAME_LENGTH = 1000
GZIP_MAGIC = b"\x1f\x8b"


class EventError(ValueError):
    """An event the spec does not allow; ``field`` is its JSON path (``run.runId``, ``inputs[2].name``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BodyTooLarge(ValueError):
    """The body, or what it decompresses to, is over the limit (HTTP 413)."""


@dataclass(frozen=True)
class ParsedDataset:
    namespace: str
    name: str
    facets: dict[str, Any] = field(default_factory=dict)
    input_facets: dict[str, Any] = field(default_factory=dict)
    output_facets: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedEvent:
    """One event as Steward stores it; ``event_time`` is timezone-aware (naive times read as UTC)."""

    kind: EventKind
    event_time: datetime.datetime
    event_type: str | None = None
    producer: str = ""
    schema_url: str = ""
    run_id: uuid.UUID | None = None
    run_facets: dict[str, Any] = field(default_factory=dict)
    job_namespace: str = ""
    job_name: str = ""
    job_facets: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[ParsedDataset, ...] = ()
    outputs: tuple[ParsedDataset, ...] = ()
    dataset: ParsedDataset | None = None


def decode_body(raw: bytes, *, content_encoding: str = "", max_bytes: int) -> bytes:
    """The JSON bytes of a request body, gunzipped when it is gzip (header or ``1f 8b`` magic:
    older Java clients gzip without the header), at most ``max_bytes`` after decompression.

    Raises BodyTooLarge past ``max_bytes`` (decompression stops there, so a gzip bomb costs no
    more memory than the limit) and ValueError for a body that claims gzip but is not.
    """
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"the body is over {max_bytes} bytes")
    encoding = content_encoding.strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise ValueError(f"Content-Encoding {content_encoding!r} is not supported; send gzip or none")
    if encoding in ("gzip", "x-gzip") or raw[:2] == GZIP_MAGIC:
        # wbits 16+MAX_WBITS: a gzip stream; max_length bounds the output, +1 tells us it is over.
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(raw, max_bytes + 1)
        except zlib.error as exc:
            raise ValueError(f"the body is not valid gzip: {exc}") from exc
        if len(data) > max_bytes or inflater.unconsumed_tail:
            raise BodyTooLarge(f"the body decompresses to over {max_bytes} bytes")
        return data
    return raw


def gzip_body(data: bytes) -> bytes:
    """``data`` gzipped the way the clients send it (for tests and benchmarks)."""
    return gzip.compress(data)


def load_json(data: bytes) -> Any:
    """The JSON value of ``data``; raises EventError("body", ...) for text that is not JSON, or
    that holds what no database column can store: a NUL character (PostgreSQL's jsonb and text
    cannot), NaN or an infinite number (JSON has none; Python's parser accepts them), an unpaired
    UTF-16 surrogate escape (not a character: it cannot be encoded to store or hash)."""
    if b"\\u0000" in data or b"\x00" in data:
        raise EventError("body", "must not contain NUL characters (\\u0000)")
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except EventError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("body", f"not valid JSON ({exc})") from exc
    if _SURROGATE_ESCAPE.search(data):  # rare: look closer only then
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise EventError("body", "must not contain unpaired surrogates (\\ud800-\\udfff)") from exc
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise EventError("body", f"{name} is not a JSON number (numbers must be finite)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise EventError("body", f"number {text[:40]} is out of range (numbers must be finite)")
    return number


def event_kind(event: dict[str, Any]) -> EventKind:
    """The kind by the ``schemaURL`` suffix (Marquez's rule), else by shape (DataHub's fallback):
    a non-null ``run`` is a RunEvent, a ``dataset`` a DatasetEvent, a ``job`` a JobEvent."""
    schema_url = event.get("schemaURL")
    if isinstance(schema_url, str):
        suffix = schema_url.rstrip("/").rsplit("/", 1)[-1]
        if suffix in ("RunEvent", "JobEvent", "DatasetEvent"):
            return suffix  # type: ignore[return-value]
    if event.get("run") is not None:
        return "RunEvent"
    if event.get("dataset") is not None:
        return "DatasetEvent"
    return "JobEvent" if event.get("job") is not None else "RunEvent"


def parse_event(event: Any) -> ParsedEvent:
    """Check one decoded event and return it parsed; raises EventError naming the first bad field."""
    if not isinstance(event, dict):
        raise EventError("event", "must be a JSON object")
    kind = event_kind(event)
    common: dict[str, Any] = {
        "kind": kind,
        "event_time": parse_event_time(event.get("eventTime")),
        "producer": _optional_text(event, "producer"),
        "schema_url": _optional_text(event, "schemaURL"),
    }
    if kind == "DatasetEvent":
        return ParsedEvent(**common, dataset=_dataset(event.get("dataset"), "dataset"))
    job = _object(event.get("job"), "job")
    common |= {
        "job_namespace": _name(job, "job", "namespace"),
        "job_name": _name(job, "job", "name"),
        "job_facets": _facets(job.get("facets"), "job.facets"),
        "inputs": _datasets(event.get("inputs"), "inputs"),
        "outputs": _datasets(event.get("outputs"), "outputs"),
    }
    if kind == "JobEvent":
        return ParsedEvent(**common)
    run = _object(event.get("run"), "run")
    event_type = event.get("eventType")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise EventError(
            "eventType", f"must be one of {', '.join(sorted(EVENT_TYPES))}, got {event_type!r:.40}"
        )
    return ParsedEvent(
        **common,
        event_type=event_type,
        run_id=_run_id(run.get("runId")),
        run_facets=_facets(run.get("facets"), "run.facets"),
    )


def parse_event_time(value: Any) -> datetime.datetime:
    """ISO 8601 ``eventTime``, timezone-aware; a naive time is UTC. Raises EventError."""
    if not isinstance(value, str) or not value:
        raise EventError("eventTime", "required, an ISO 8601 date-time")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError as exc:
        raise EventError("eventTime", f"not an ISO 8601 date-time: {value!r:.60}") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    try:  # stored and ordered in UTC: 0001-01-01T00:00+14:00 has no UTC date
        # In UTC: PostgreSQL takes offsets up to +-15:59 only (a +16:00 was a 503 "try again").
        return moment.astimezone(datetime.UTC)
    except OverflowError as exc:
        raise EventError("eventTime", f"out of range once converted to UTC: {value!r:.60}") from exc


def _run_id(value: Any) -> uuid.UUID:
    if not isinstance(value, str) or not value:
        raise EventError("run.runId", "required, a UUID")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise EventError("run.runId", f"must be a UUID, got {value!r:.60}") from exc


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(path, "required, a JSON object")
    return value


def _name(obj: dict[str, Any], path: str, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{path}.{key}", "required, a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise EventError(f"{path}.{key}", f"at most {MAX_NAME_LENGTH} characters")
    if "\x00" in value:
        raise EventError(f"{path}.{key}", "must not contain NUL characters")
    return value


def _optional_text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    return value[:2000] if isinstance(value, str) else ""


def _facets(value: Any, path: str) -> dict[str, Any]:
    """Facets as sent, unknown keys included; each must be an object (the spec's BaseFacet)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(path, "must be a JSON object of facets")
    for key, facet in value.items():
        if not isinstance(facet, dict):
            raise EventError(f"{path}.{key}", "a facet must be a JSON object")
    return value


def _dataset(value: Any, path: str) -> ParsedDataset:
    obj = _object(value, path)
    return ParsedDataset(
        namespace=_name(obj, path, "namespace"),
        name=_name(obj, path, "name"),
        facets=_facets(obj.get("facets"), f"{path}.facets"),
        input_facets=_facets(obj.get("inputFacets"), f"{path}.inputFacets"),
        output_facets=_facets(obj.get("outputFacets"), f"{path}.outputFacets"),
    )


def _datasets(value: Any, path: str) -> tuple[ParsedDataset, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EventError(path, "must be a JSON array of datasets")
    return tuple(_dataset(item, f"{path}[{index}]") for index, item in enumerate(value))


def merge_facets(
    current: dict[str, Any], times: dict[str, str], new: dict[str, Any], at: datetime.datetime
) -> bool:
    """Merge ``new`` facets sent at ``at`` into ``current`` in place; returns whether it changed.

    The spec: a facet sent again replaces the previous one entirely, and ``_deleted: true``
    removes it. Order is by event time, not arrival: a facet older than the one held (``times``,
    ISO strings per key) is ignored, so a late-arriving START cannot undo a COMPLETE's facets.
    """
    changed = False
    stamp = at.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    for key, facet in new.items():
        held_at = times.get(key)
        if held_at is not None and held_at > stamp:
            continue
        times[key] = stamp
        if facet.get("_deleted") is True:
            changed |= current.pop(key, None) is not None
        elif current.get(key) != facet:
            current[key] = facet
            changed = True
    return changed
