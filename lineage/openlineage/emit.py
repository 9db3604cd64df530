"""Steward's own runs as OpenLineage RunEvents (issue 10, "Emit"), sent by ``openlineage-python``.

Flow: an action that moves a job or a drift check (``runners.lifecycle``) calls ``announce`` in its
transaction with a function that describes the transition. Nothing happens unless the client is
configured (``is_enabled``: ``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG`` or
``OPENLINEAGE__TRANSPORT__TYPE`` set, ``OPENLINEAGE_DISABLED`` not true): no callback, no query.
After commit, the description (a ``RunTransition``, plain JSON) is sent to the Celery task
``lineage.openlineage.send_event`` (``lineage.openlineage.tasks``), which builds the event with
the client's generated classes and emits it through the client's configured transport, retried
with a doubling backoff; a send that still fails is logged and kept as an
``OpenLineageEmitFailure`` row, counted by ``steward_openlineage_emit_failures_total``. A job is
never blocked nor failed by any of this.

Naming (docs/architecture.md): job namespace ``STEWARD_OPENLINEAGE_NAMESPACE``; dataset namespace
``steward://<host[:port] of STEWARD_BASE_URL>``; a dataset version is named
``datasets/<team slug>/<dataset>@v<n>``, a model version ``models/<team slug>/<model>@v<n>``, each
with a ``symlinks`` facet to its Steward page (type ``STEWARD_URL``). The runId is a UUIDv5 of the
site and the row (``run_id``): the same job always has the same runId.

This module imports no other Steward app: callers describe their rows with ``DatasetRef``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

SEND_TASK = "lineage.openlineage.send_event"
# Steward's transitions; OpenLineage's RUNNING/OTHER are not sent.
EVENT_TYPES = ("START", "COMPLETE", "FAIL", "ABORT")
# A custom facet's key takes the producer's prefix (spec: "{prefix}_{name}").
STEWARD_RUN_FACET = "steward_run"
SYMLINK_TYPE = "STEWARD_URL"


def is_enabled() -> bool:
    """Whether the client has a configuration to send with (read from the environment each call,
    as the client reads it): ``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG`` or
    ``OPENLINEAGE__TRANSPORT__TYPE`` set, and ``OPENLINEAGE_DISABLED`` not ``true``.

    Without one the client would print events to the console; Steward sends nothing instead.
    """
    environ = os.environ
    if environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    return any(
        environ.get(name)
        for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE")
    )


def dataset_namespace() -> str:
    """``steward://<host[:port]>`` of ``STEWARD_BASE_URL``: where Steward's datasets live."""
    return f"steward://{urllib.parse.urlsplit(settings.STEWARD_BASE_URL).netloc}"


def absolute_url(path: str) -> str:
    """``path`` (a Steward page, e.g. ``/jobs/3/``) under ``STEWARD_BASE_URL``."""
    return settings.STEWARD_BASE_URL.rstrip("/") + path


def run_id(run_key: str) -> str:
    """The runId of Steward row ``run_key`` (``jobs/12``): a UUIDv5 of the site's base URL and the
    key, so every event of one job carries the same runId and two sites never share one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{settings.STEWARD_BASE_URL.rstrip('/')}/{run_key}"))


@dataclass(frozen=True)
class DatasetRef:
    """A Steward dataset or model version as an OpenLineage dataset.

    ``name``: ``datasets/<team>/<dataset>@v<n>`` or ``models/<team>/<model>@v<n>``; ``url``: its
    page's path; ``version``: its number as text; ``fields``: ``[name, type]`` pairs of its schema
    when known (a dataset version's columns, a model version's features), sent as a ``schema``
    facet.
    """

    name: str
    url: str
    version: str
    fields: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class RunTransition:
    """One run state change, as Steward describes it; the Celery message (``as_json``).

    ``event_type``: one of ``EVENT_TYPES``; ``event_time``: ISO 8601 with its offset;
    ``run_key``: the row (``jobs/<id>``, ``drift-checks/<id>``), hashed into the runId;
    ``job_name``: the recurring job (``<team>.train.<model>``); ``job_type``: TRAINING,
    INFERENCE, CODE or DRIFT_CHECK; ``url``: the row's page path; ``nominal_time``: when it was
    due (ISO 8601); ``error``: why it failed (FAIL only); ``attempt``: the claim it is.
    """

    event_type: str
    event_time: str
    run_key: str
    job_name: str
    job_type: str
    url: str
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)
    nominal_time: str | None = None
    error: str = ""
    attempt: int = 0

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunTransition:
        """The transition ``as_json`` wrote. Raises TypeError or KeyError on another shape."""
        values = dict(data)
        for side in ("inputs", "outputs"):
            values[side] = [DatasetRef(**item) for item in values.get(side) or []]
        return cls(**values)


def announce(describe: Callable[[], RunTransition | None]) -> None:
    """Send the transition ``describe()`` returns once the caller's transaction commits.

    Call it inside the transaction that makes the change (a rollback sends nothing). When
    emitting is off (``is_enabled``) this returns at once: ``describe`` never runs. After commit,
    ``describe`` runs in the committing process (a few reads) and the task is queued; an error
    there is logged (and a failed queueing counted), never raised into the caller.
    """
    if not is_enabled():
        return
    transaction.on_commit(lambda: _queue(describe), robust=True)


def _queue(describe: Callable[[], RunTransition | None]) -> None:
    try:
        transition = describe()
    except Exception:
        logger.exception("could not describe a run transition for OpenLineage; nothing sent")
        return
    if transition is None:
        return
    payload = transition.as_json()
    try:
        current_app.send_task(SEND_TASK, args=[payload], retry=True)
    except Exception as exc:
        record_failure(payload, f"could not reach the task broker to send it: {exc}")


def build_event(transition: RunTransition) -> Any:
    """The ``openlineage.client.event_v2.RunEvent`` of ``transition``, built with the client's
    generated classes (which check the runId is a UUID and the time ISO 8601).

    Facets: run ``nominalTime``, ``errorMessage`` (FAIL with an error), ``steward_run`` (page,
    attempt); job ``jobType`` (BATCH, integration STEWARD); datasets ``symlinks`` (the page),
    ``version`` and ``schema`` (when the fields are known). Raises ValueError (or the client's
    attrs errors) on a malformed transition.
    """
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import (
        error_message_run,
        job_type_job,
        nominal_time_run,
    )

    if transition.event_type not in EVENT_TYPES:
        raise ValueError(f"event_type must be one of {', '.join(EVENT_TYPES)}, got {transition.event_type!r}")
    run_facets: dict[str, Any] = {
        STEWARD_RUN_FACET: _steward_run_facet_class()(
            url=absolute_url(transition.url), attempt=transition.attempt
        )
    }
    if transition.nominal_time:
        run_facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=transition.nominal_time
        )
    if transition.event_type == "FAIL" and transition.error:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=transition.error, programmingLanguage="python"
        )
    job_facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="STEWARD", jobType=transition.job_type
        )
    }
    return RunEvent(
        eventType=RunState[transition.event_type],
        eventTime=transition.event_time,
        run=Run(runId=run_id(transition.run_key), facets=run_facets),
        job=Job(
            namespace=settings.STEWARD_OPENLINEAGE_NAMESPACE, name=transition.job_name, facets=job_facets
        ),
        inputs=[
            InputDataset(dataset_namespace(), ref.name, facets=_dataset_facets(ref))
            for ref in transition.inputs
        ],
        outputs=[
            OutputDataset(dataset_namespace(), ref.name, facets=_dataset_facets(ref))
            for ref in transition.outputs
        ],
        producer=settings.STEWARD_BASE_URL,
    )


def _dataset_facets(ref: DatasetRef) -> dict[str, Any]:
    from openlineage.client.facet_v2 import dataset_version_dataset, schema_dataset, symlinks_dataset

    base = settings.STEWARD_BASE_URL.rstrip("/")
    facets: dict[str, Any] = {
        "symlinks": symlinks_dataset.SymlinksDatasetFacet(
            identifiers=[symlinks_dataset.Identifier(namespace=base, name=ref.url, type=SYMLINK_TYPE)]
        ),
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=ref.version),
    }
    if ref.fields:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name=name, type=kind or None, ordinal_position=index)
                for index, (name, kind) in enumerate(ref.fields, start=1)
            ]
        )
    return facets


@functools.cache
def _steward_run_facet_class() -> type:
    """A custom run facet (``steward_run``: the run's Steward page and attempt), defined on first
    use: importing the client costs about half a second, which a process that never emits skips."""
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class StewardRunFacet(RunFacet):
        url: str
        attempt: int = 0

        @staticmethod
        def _get_schema() -> str:
            return f"{settings.STEWARD_BASE_URL.rstrip('/')}/openlineage/facets/StewardRunFacet.json"

    return StewardRunFacet


_clients: dict[tuple[tuple[str, str], ...], Any] = {}
_clients_lock = threading.Lock()


def _configuration() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OPENLINEAGE")))


def client() -> Any:
    """The process's ``OpenLineageClient`` for the current environment (one per configuration:
    its HTTP session and connections are reused between sends)."""
    from openlineage.client import OpenLineageClient

    with _clients_lock:
        asked = _configuration()
        found = _clients.get(asked)
        if found is None:
            found = OpenLineageClient()
            # The client adds aliases of OPENLINEAGE_URL to the environment when built: keep it
            # under both the configuration it was asked for and the one it leaves.
            _clients[asked] = _clients[_configuration()] = found
        return found


def send(payload: dict[str, Any]) -> None:
    """Build the event of ``payload`` (a ``RunTransition.as_json``) and emit it through the client.

    Raises ValueError/TypeError/KeyError for a malformed payload (permanent), and the transport's
    errors (``requests.RequestException``, ``OSError``: worth retrying) when the receiver does not
    take it (a non-2xx answer included).
    """
    event = build_event(RunTransition.from_json(payload))
    client().emit(event)


def record_failure(payload: dict[str, Any], reason: str) -> None:
    """Log an event that could not be delivered and keep it (``OpenLineageEmitFailure``)."""
    from lineage.models import OpenLineageEmitFailure

    logger.warning(
        "OpenLineage %s event of %s (%s) not delivered: %s",
        payload.get("event_type"),
        payload.get("run_key"),
        payload.get("job_name"),
        reason,
    )
    OpenLineageEmitFailure.objects.create(
        run_id=run_id(str(payload.get("run_key", ""))),
        event_type=str(payload.get("event_type", ""))[:16],
        job_name=str(payload.get("job_name", ""))[:500],
        payload=payload,
        error=reason[:4000],
    )


class EmitCollector(Collector):
    """``steward_openlineage_emit_failures_total``: OpenLineage events Steward could not deliver
    (after their retries), by event type; one aggregate query per scrape."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        from django.db.models import Count

        from lineage.models import OpenLineageEmitFailure

        family = CounterMetricFamily(
            "steward_openlineage_emit_failures",
            "OpenLineage events of Steward's runs not delivered after their retries, by event type.",
            labels=["event_type"],
        )
        counts = dict(
            OpenLineageEmitFailure.objects.values_list("event_type")
            .annotate(n=Count("id"))
            .values_list("event_type", "n")
        )
        for event_type in EVENT_TYPES:
            family.add_metric([event_type], counts.get(event_type, 0))
        yield family
