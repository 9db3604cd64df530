"""Health endpoints (issue 13), on django-health-check.

- ``/health/live/``: the process answers (no dependency checked): a liveness probe, which restarts
  a process that stopped answering, must not restart every web process when the database is down.
- ``/health/ready/``: the database, the broker and the artifact store answer: a readiness probe
  takes a process out of the load balancer while one of them does not.
- ``/health/``: all of that and the audit sequencer's lag (beat, or the worker that runs its task,
  gone): for monitoring and people, not for probes (a stalled sequencer must not take the site
  down; it delays checkpoints, it loses nothing).

Each answers 200 when every check passes and 503 naming the failing ones (the library's 500 would
read as a crash of Steward itself). The answers name a check and its failure, never a URL or a
credential. Anyone may call them: probes have no session or token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from health_check import checks
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView, MediaType

from config.celery import app
from governance.models import AuditEvent, AuditLeaf


@dataclasses.dataclass
class Database(checks.Database):
    """The library's ``SELECT 1``, answering without the driver's message (which names the
    database host: these answers are public)."""

    def run(self) -> None:  # type: ignore[override]  # the library runs a plain run() in a thread
        try:
            super().run()
        except ServiceUnavailable as exc:
            raise ServiceUnavailable("the database does not answer") from exc


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker (``CELERY_BROKER_URL``: Redis, RabbitMQ or the embedded filesystem
    transport) accepts a connection within ``CELERY_BROKER_CONNECTION_TIMEOUT`` seconds."""

    timeout = datetime.timedelta(seconds=5)

    def run(self) -> None:  # type: ignore[override]  # the library runs a plain run() in a thread
        try:
            with app.connection_for_write() as broker:
                broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        except Exception as exc:  # any transport's failure: kombu re-raises its own types
            name = type(exc).__name__
            raise ServiceUnavailable(f"the broker does not accept connections ({name})") from exc


@dataclasses.dataclass
class ArtifactStore(HealthCheck):
    """The artifact store takes a write: a file is created, read back and removed under
    ``STEWARD_ARTIFACT_ROOT`` (direct mode) or under the local copies' folder
    ``STEWARD_ARTIFACT_CACHE`` (managed mode, ``governance.storage``), and in managed mode the
    backend answers a lookup (S3: a HEAD request, so reachability and credentials)."""

    def run(self) -> None:  # type: ignore[override]  # the library runs a plain run() in a thread
        from governance import storage
        from governance.storage.envelope import KeyringError
        from governance.storage.store import backend

        try:
            direct = storage.is_direct()
        except KeyringError as exc:
            # No artifact can be read or written without the keyring: not ready.
            raise ServiceUnavailable("the artifact store's key-encryption keys cannot be read") from exc
        root = settings.ARTIFACT_ROOT if direct else settings.STEWARD_ARTIFACT_CACHE
        if not direct:
            try:
                backend().exists(".health-probe")
            except Exception as exc:  # any backend's failure: boto3, botocore or the OS
                name = type(exc).__name__
                raise ServiceUnavailable(f"the artifact store does not answer ({name})") from exc
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".health-", delete=True) as probe:
                probe.write(b"ok")
                probe.flush()
                os.fsync(probe.fileno())
                probe.seek(0)
                if probe.read() != b"ok":
                    raise ServiceUnavailable("the artifact store returned other bytes than written")
        except OSError as exc:
            raise ServiceUnavailable(f"the artifact store cannot be written ({exc.strerror})") from exc


@dataclasses.dataclass
class AuditSequencer(HealthCheck):
    """No committed audit event has waited longer than ``STEWARD_HEALTH_SEQUENCER_LAG_S`` seconds
    for its leaf (``governance.audit.sequencer``, run by beat every
    ``STEWARD_AUDIT_SEQUENCE_INTERVAL_S``)."""

    def run(self) -> None:  # type: ignore[override]  # the library runs a plain run() in a thread
        try:
            # Indexed reads only (an anti-join over the whole log grew with it): the oldest event
            # above the newest sequenced one. One committed late below it is not seen here; the
            # sequencer takes it all the same.
            newest = AuditLeaf.objects.aggregate(newest=Max("event_id"))["newest"] or 0
            oldest = (
                AuditEvent.objects.filter(id__gt=newest)
                .order_by("id")
                .values_list("timestamp", flat=True)
                .first()
            )
        except DatabaseError as exc:
            raise ServiceUnavailable(f"the audit log cannot be read ({type(exc).__name__})") from exc
        finally:
            # Checks run in the library's executor threads: no request ends to close this one.
            connection.close()
        if oldest is None:
            return
        waited = (timezone.now() - oldest).total_seconds()
        if waited > settings.STEWARD_HEALTH_SEQUENCER_LAG_S:
            limit = settings.STEWARD_HEALTH_SEQUENCER_LAG_S
            raise ServiceUnavailable(
                f"the audit sequencer is {waited:.0f} s behind (limit {limit:g} s): "
                "is beat running, and a worker for its queue?"
            )


class _Probe(HealthCheckView):
    """django-health-check's view answering 503, not 500, when a check fails; checks run in a
    pool of their own that the answer does not wait for, and any ``Accept`` header is taken."""

    async def get(  # type: ignore[override]  # the library's view is async
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        try:
            list(MediaType.parse_header(request.META.get("HTTP_ACCEPT", "*/*")))  # a generator
        except ValueError:
            # The library's parser refuses some legal headers (text/html; charset="utf-8") and
            # raises on malformed ones: a probe must never get a 500 for its Accept header.
            request.META["HTTP_ACCEPT"] = "application/json"
            request.__dict__.pop("headers", None)  # a cached view of META, read again
        response: HttpResponse = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response

    @contextlib.contextmanager
    def get_executor(self) -> Iterator[ThreadPoolExecutor]:
        """A pool per request, left without waiting: a dependency that accepts a connection and
        never answers keeps its check's thread blocked, but the check is reported as timed out
        (the library's timeout) and the answer goes out. With the event loop's default pool,
        closing the loop waited for that thread, so the request (and, after a few, the whole
        web process) hung with it."""
        pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-check")
        try:
            yield pool
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


class LivenessView(_Probe):
    """``/health/live/``: 200 while the process serves requests."""

    checks = ()


class ReadinessView(_Probe):
    """``/health/ready/``: the database, the broker and the artifact store."""

    checks = (Database, Broker, ArtifactStore)


class HealthView(_Probe):
    """``/health/``: readiness and the audit sequencer's lag."""

    checks = (Database, Broker, ArtifactStore, AuditSequencer)
