"""HTTP requests as Prometheus metrics (issue 13): counts by method, route and status, and
latency by method and route, for every view of the web tier.

The route is the URL pattern that matched (``api/models/<int:pk>/``), never the path, so the
number of series stays bounded; a request no pattern matched counts under ``<unmatched>``.

gunicorn runs several worker processes, each counting its own requests. With
``PROMETHEUS_MULTIPROC_DIR`` set before Python starts (``bin/up`` and the image's entry point set
it, emptied at start), prometheus-client's multiprocess mode keeps the values in files there and
``HttpCollector`` sums every process's; without it (the dev server, tests) they are this process's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# Seconds: registry reads take milliseconds, uploads and exports seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED = "<unmatched>"

# registry=None: not the process-global default registry; /metrics builds its own per scrape.
REQUESTS = Counter(
    "steward_http_requests",
    "HTTP requests answered, by method, URL pattern and status code.",
    ["method", "route", "status"],
    registry=None,
)
LATENCY = Histogram(
    "steward_http_request_duration_seconds",
    "Time to answer an HTTP request (the view and the middleware below this one), by method and URL pattern.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)


class HttpMetricsMiddleware:
    """Counts and times each request (placed first in ``MIDDLEWARE``, so it sees every answer,
    the security middleware's redirects and the login throttle's 429s included)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        began = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - began
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match is not None else UNMATCHED
        method = request.method if request.method in _METHODS else "other"
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        LATENCY.labels(method, route).observe(elapsed)
        return response


# Any other method (a client may send any token) counts as "other": bounded labels.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpCollector(Collector):
    """The HTTP metrics of every web process (multiprocess mode) or of this one."""

    def collect(self) -> Iterator:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            # Files of processes that ended still count: counters never go down across restarts.
            yield from MultiProcessCollector(None, path=folder).collect()
            return
        yield from REQUESTS.collect()
        yield from LATENCY.collect()
