"""Login throttling on django-axes: who is locked out, and the answer they get.

- ``SprayAwareHandler`` (``AXES_HANDLER``): axes locks a (username, address) pair after
  ``AXES_FAILURE_LIMIT`` failures; password spraying (one password tried across many usernames
  from one address) stays under that for every pair, so an address is also locked once its
  failures across all usernames reach ``STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT`` (issue 13).
- ``lockout_response`` (``AXES_LOCKOUT_CALLABLE``): 429 Too Many Requests, JSON for the API's
  token endpoint, the login page with the reason for a person. Axes calls it from its middleware
  after the login view ran.

The address is the client's as ``STEWARD_PROXY_COUNT`` says (settings): behind a proxy that is not
counted, every client shares the proxy's address, and one sprayer would lock everyone out.
"""

from __future__ import annotations

import ipaddress

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse


def client_address(request: HttpRequest) -> str | None:
    """The login's client address (``AXES_CLIENT_IP_CALLABLE``): with ``STEWARD_PROXY_COUNT`` = N
    proxies in front, the N-th address from the right of ``X-Forwarded-For`` (each proxy appends
    the address it was reached from, so the right-most N are written by proxies we run, and
    anything left of them by whoever sent the request); else, or when the header holds fewer
    than N, ``REMOTE_ADDR``. (django-ipware counts the proxies inside the header instead, so one
    nginx, which sends only the client, reads as no client at all.)"""
    hops = settings.STEWARD_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if hops > 0 and len(forwarded) >= hops:
        try:
            return str(ipaddress.ip_address(forwarded[-hops]))
        except ValueError:  # not an address: the proxy's header is wrong, use the connection's
            pass
    remote = request.META.get("REMOTE_ADDR")
    return str(remote) if remote else None


class SprayAwareHandler(AxesDatabaseHandler):
    """Axes' database handler, counting an address's failures across every username too."""

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        """Count failed password logins only. A failed single sign-on (``authenticate`` called
        with the callback's nonce and code verifier, no username) guessed no password; counted,
        every sign-on from one address would share one (no username, address) pair, and five
        failures of anyone's would lock everyone there out of single sign-on."""
        if "username" not in (credentials or {}):
            return
        super().user_login_failed(sender, credentials, request, **kwargs)

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """The failure count axes compares with ``AXES_FAILURE_LIMIT``: the pair's own, or the
        address's total scaled so that it reaches the limit exactly when the total reaches
        ``STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT`` (axes has one limit for every count it keeps)."""
        pair = int(super().get_failures(request, credentials))
        address = getattr(request, "axes_ip_address", None)
        if not address:
            return pair
        # The pairs' failures within the cool-off, as axes reads each pair's.
        recent = AccessAttempt.objects.filter(
            ip_address=address, attempt_time__gte=get_cool_off_threshold(request)
        )
        total = recent.aggregate(n=Sum("failures_since_start"))["n"] or 0
        per_pair, per_address = settings.AXES_FAILURE_LIMIT, settings.STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT
        return max(pair, total * per_pair // per_address)


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return f"Too many failed logins: try again in {minutes} minutes."


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    status = settings.AXES_HTTP_RESPONSE_CODE
    if request.path.startswith("/api/2.0/mlflow"):
        # MLflow's error shape (Basic auth on the MLflow API, issue 9); 429 is its REQUEST_LIMIT_EXCEEDED.
        return JsonResponse(
            {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": lockout_message()}, status=status
        )
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": lockout_message()}, status=status)
    response = TemplateResponse(request, "registration/locked_out.html", {"message": lockout_message()})
    response.status_code = status
    return response.render()
