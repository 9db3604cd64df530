"""OpenID Connect sign-on through mozilla-django-oidc (issue 13), enabled by ``OIDC_RP_CLIENT_ID``.

The library runs the authorization-code flow (state, nonce, PKCE) and checks the ID token's
signature against the provider's keys; ``StewardOIDCBackend`` adds what it leaves out (the
token's issuer and audience, the UserInfo subject matching the ID token's) and hands the
verified claims to ``governance.actions.sso.do_sso_login``, where the rule lives. A refusal is a
message on the login page, never a 500: an unreachable provider, a bad token, a taken username.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from governance.actions.sso import do_sso_login

logger = logging.getLogger(__name__)


class StewardOIDCBackend(OIDCAuthenticationBackend):
    """Sign-on by OpenID Connect; identities are matched by (issuer, subject), never by email."""

    def authenticate(self, request: HttpRequest | None, **kwargs: Any):
        """The user the callback's code signs in as, or None (with the reason as a message)."""
        try:
            return super().authenticate(request, **kwargs)
        except PROVIDER_FAULTS as exc:
            # The provider unreachable or answering an error or garbage (the library indexes and
            # decodes its answers unchecked), a token that fails verification or has expired.
            logger.warning("single sign-on failed: %r", exc)
            if request is not None:
                messages.error(request, f"Single sign-on failed: {_reason(exc)}")
            return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The library's signature, expiry and nonce checks, then the issuer and audience (OIDC
        Core 3.1.3.7: ``aud`` names Steward, and ``azp`` does when there are several)."""
        payload = super().verify_token(token, **kwargs)
        if not isinstance(payload, dict) or payload.get("iss") != settings.STEWARD_OIDC_ISSUER:
            issuer = payload.get("iss") if isinstance(payload, dict) else None
            raise SuspiciousOperation(f"the token's issuer {issuer!r} is not the configured one")
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the token was not issued to Steward (audience)")
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation(
                "the token has several audiences and is not authorized for Steward (azp)"
            )
        return payload

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]):
        """The login for the verified ID token ``payload`` and its UserInfo claims, or None with
        the reason as a message (the library would swallow a refusal without one)."""
        try:
            claims = self.get_userinfo(access_token, id_token, payload)
            if not isinstance(claims, dict) or claims.get("sub") != payload.get("sub"):
                # OIDC Core 5.3.2: UserInfo's sub must be the ID token's, or it is not about this user.
                raise SuspiciousOperation("the UserInfo answer is not about the ID token's subject")
            return do_sso_login(issuer=payload["iss"], subject=str(payload["sub"]), claims=claims)
        except (ValidationError, PermissionDenied, *PROVIDER_FAULTS) as exc:
            logger.warning("single sign-on refused: %r", exc)
            messages.error(self.request, f"Single sign-on refused: {_reason(exc)}")
            return None

    def get_user(self, user_id: int):
        """As ``ModelBackend``: a deactivated user's session stops working (the library's
        ``get_user`` would keep returning them)."""
        return ModelBackend.get_user(self, user_id)


# What a provider that is down, misconfigured or hostile makes the library raise: HTTP errors,
# answers that are not the JSON objects it indexes, tokens that fail to decode or have expired.
PROVIDER_FAULTS = (
    requests.RequestException,
    SuspiciousOperation,
    jwt.PyJWTError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError | PermissionDenied):
        return "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    if isinstance(exc, requests.RequestException):
        return "the identity provider could not be reached or refused the request"
    if isinstance(exc, jwt.ExpiredSignatureError | jwt.ImmatureSignatureError):
        return "the identity provider's token is expired or not yet valid (are both clocks right?)"
    if isinstance(exc, SuspiciousOperation):
        return str(exc)
    return "the identity provider's answer could not be read"


def _only_when_enabled(view_class):
    view = view_class.as_view()

    def sso_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.STEWARD_OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        return view(request, *args, **kwargs)

    return sso_view


class CallbackView(OIDCAuthenticationCallbackView):
    """The library's callback, except that a provider's error answer logs nobody out: the
    library's does, so any page could end a user's session with a link to
    ``/oidc/callback/?error=x``. The error's state is spent and the reason shown."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not request.GET.get("error"):
            return super().get(request)
        states = request.session.get("oidc_states", {})
        if request.GET.get("state") in states:
            del states[request.GET["state"]]
            request.session.save()
            messages.error(
                request, f"Single sign-on refused by the identity provider: {request.GET['error'][:200]}"
            )
        return self.login_failure()


# The library's two views, answering 404 while single sign-on is off (their settings are unset).
authenticate_view = _only_when_enabled(OIDCAuthenticationRequestView)
callback_view = _only_when_enabled(CallbackView)


class LoginView(auth_views.LoginView):
    """Django's login page, with the single sign-on button while single sign-on is on."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["sso_label"] = settings.STEWARD_OIDC_LOGIN_LABEL if settings.STEWARD_OIDC_ENABLED else ""
        return context
