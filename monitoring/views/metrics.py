"""``/metrics``: the Prometheus exposition, for a scraper with the token or a platform-wide person."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitoring import metrics
from monitoring.permissions import may_read_every_team


def _may_scrape(request: HttpRequest) -> bool:
    """A Prometheus scraper with the configured bearer token, or a person who may view every team.

    The numbers name models and columns of every team, so the endpoint is not public: a team
    member would otherwise learn of other teams' models (STYLE: never reveal another team's objects).
    """
    token = settings.STEWARD_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    return may_read_every_team(request.user)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of drift scores, checks, open alerts, notifications and job durations."""
    if not _may_scrape(request):
        response = HttpResponse("a bearer token or a platform-wide role is needed\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="steward-metrics"'
        return response
    try:
        exposition = generate_latest(metrics.registry())
    except DatabaseError:
        # Most values are read from the database: without it there is no honest number to give.
        return HttpResponse("the database does not answer; see /health/ready/\n", status=503)
    return HttpResponse(exposition, content_type=CONTENT_TYPE_LATEST)
