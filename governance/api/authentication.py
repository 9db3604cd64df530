"""API token authentication: ``Authorization: Bearer <secret>`` (or ``Token <secret>``).

Tokens are looked up by the SHA-256 of the secret (``governance.tokens``). A read-only token
is refused on every unsafe method here, in authentication, so no view, whatever its
``permission_classes``, can let one write.
"""

from __future__ import annotations

import datetime

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.permissions import SAFE_METHODS

from governance import tokens
from governance.job_scope import refusal
from governance.models import ApiToken, TokenScope

KEYWORDS = ("bearer", "token")
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


class ReadOnlyToken(exceptions.PermissionDenied):
    default_detail = "this API token is read-only; use a read-write token to change anything"


class JobTokenRefused(exceptions.PermissionDenied):
    """A job token on Steward's own API: it serves only its run's MLflow API (issue 17)."""


class PredictOnlyToken(exceptions.PermissionDenied):
    default_detail = "a prediction token may only call the predict endpoints of its model"


def accepts_prediction_tokens(request) -> bool:
    """Whether the view ``request`` resolved to takes prediction tokens (its class sets
    ``accepts_prediction_tokens``; issue 17): the predict endpoints only."""
    match = getattr(getattr(request, "_request", request), "resolver_match", None)
    view = getattr(getattr(match, "func", None), "cls", None)
    return bool(getattr(view, "accepts_prediction_tokens", False))


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates ``ApiToken`` secrets; ``request.auth`` is the ``ApiToken``.

    A missing header leaves the request to the next class (the session). A wrong, revoked or
    expired token, or one of a deactivated user, is 401 with the reason; a read-only token on
    POST/PUT/PATCH/DELETE is 403, and so is a job token on any endpoint (``governance.job_scope``:
    it may only use the MLflow API of its own run). As the first class it also names the scheme in
    ``WWW-Authenticate``, which makes DRF answer unauthenticated requests 401, not 403.
    """

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in KEYWORDS:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: send 'Bearer <token>'.")
        try:
            secret = header[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        try:
            token = authenticate_secret(secret)
        except InvalidToken as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        if token.scope == TokenScope.JOB:
            raise JobTokenRefused(refusal(token.job_id))
        if token.is_read_only and request.method not in SAFE_METHODS:
            raise ReadOnlyToken()
        if token.scope == TokenScope.PREDICT and not accepts_prediction_tokens(request):
            raise PredictOnlyToken()
        record_use(token, timezone.now())
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class InvalidToken(Exception):
    """A secret that authenticates nobody; the message says why (unknown, revoked, expired...)."""


def authenticate_secret(secret: str) -> ApiToken:
    """The live ``ApiToken`` (with its ``user``) whose secret is ``secret``, in one query.

    Shared by DRF's ``ApiTokenAuthentication`` and the MLflow API (``governance.api.mlflow.base``),
    so both doors accept and refuse the same tokens. Raises ``InvalidToken`` naming the reason.
    The read-only rule and ``record_use`` are the caller's: only the caller knows whether its
    endpoint writes, and a refused write is not a use.
    """
    token = ApiToken.objects.select_related("user").filter(key_hash=tokens.hash_secret(secret)).first()
    now = timezone.now()
    if token is None:
        raise InvalidToken("Invalid token.")
    if token.revoked_at is not None:
        raise InvalidToken("This token was revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise InvalidToken(f"This token expired at {token.expires_at.isoformat()}.")
    if not token.user.is_active:
        raise InvalidToken("This token's user is deactivated.")
    return token


def record_use(token: ApiToken, now: datetime.datetime) -> None:
    """Set ``last_used_at`` when it is unset or older than a minute: one conditional UPDATE.

    Not audited: it is usage telemetry, not a change anyone made; an event per request would
    drown the trail. The WHERE makes concurrent requests write at most once.
    """
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = ApiToken.objects.filter(pk=token.pk, revoked_at=None)
    if token.last_used_at is not None:
        stale = stale.filter(last_used_at__lte=now - LAST_USED_RESOLUTION)
    else:
        stale = stale.filter(last_used_at=None)
    if stale.update(last_used_at=now):
        token.last_used_at = now


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``ApiTokenAuthentication`` in the OpenAPI schema (HTTP bearer)."""

    target_class = "governance.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from POST /api/auth/token/ or the API tokens page.",
        }
