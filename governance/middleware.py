"""Request middleware: a server-generated id that audit events carry; the host of probes."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from governance.audit import request_id_var


class RequestIDMiddleware:
    """Sets ``request.request_id`` (32 hex digits) for the audit events and answers it in
    ``X-Request-ID``.

    A client's own ``X-Request-ID`` is ignored: stored on audit events it would let a user make
    their events claim another request's id.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request.request_id
        return response


# Paths a kubelet or a Prometheus pod scrape reaches by the pod's IP address.
PROBE_PATHS = ("/health/", "/metrics")


class ProbeHostMiddleware:
    """Lets probes and scrapes that address a pod by its IP reach ``/health/...`` and
    ``/metrics``: Prometheus' pod scrapes and kubelets send ``Host: <pod IP>:<port>``, which no
    ``ALLOWED_HOSTS`` can list (pod IPs change), so Django answered 400. For those paths only, a
    Host that is an IP address is replaced by the first allowed host. They build no link from the
    host, which is what the check protects (a reset mail or redirect to an attacker's host)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        allowed = settings.ALLOWED_HOSTS
        if request.path.startswith(PROBE_PATHS) and allowed and "*" not in allowed:
            host = request.META.get("HTTP_HOST", "")
            bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            try:
                ipaddress.ip_address(bare.strip("[]"))
            except ValueError:
                pass
            else:
                request.META["HTTP_HOST"] = allowed[0].lstrip(".")
        return self.get_response(request)


class ArtifactErrorMiddleware:
    """Pages that read a stored artifact (a code version's files, a drift report, a model's
    files) answer a fault of the artifact store (issue 12, ``governance.storage``) as the API
    does (``governance.errors``: 409 tampered or missing, 410 erased, 503 store or keys down),
    with the message, instead of a 500. The API and the MLflow API answer them themselves."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """The answer for a storage fault; None (Django's own handling) for anything else."""
        from governance.errors import DETAIL, error_answer
        from governance.storage import ArtifactUnreadable
        from governance.storage.envelope import KeyringError

        if not isinstance(exception, ArtifactUnreadable | KeyringError):
            return None
        answer = error_answer(exception)
        if answer is None:
            return None
        # Plain text: the message names the artifact's storage key; nothing to render as HTML.
        return HttpResponse(
            str(answer.body[DETAIL]), status=answer.status, content_type="text/plain; charset=utf-8"
        )
