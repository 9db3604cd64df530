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
        except (requests.RequestException, SuspiciousOperation, ValueError) as exc:
            # The provider unreachable or answering an error, a token that fails verification.
            logger.warning("single sign-on failed: %s", exc)
            if request is not None:
                messages.error(request, f"Single sign-on failed: {_reason(exc)}")
            return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The library's signature and nonce check, then issuer and audience (which it skips)."""
        payload = super().verify_token(token, **kwargs)
        if payload.get("iss") != settings.STEWARD_OIDC_ISSUER:
            raise SuspiciousOperation(f"the token's issuer {payload.get('iss')!r} is not the configured one")
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the token was not issued to Steward (audience)")
        return payload

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]):
        """The login for the verified ID token ``payload`` and its UserInfo claims."""
        claims = self.get_userinfo(access_token, id_token, payload)
        if claims.get("sub") != payload.get("sub"):
            # OIDC Core 5.3.2: UserInfo's sub must be the ID token's, or the answer is not for us.
            raise SuspiciousOperation("the UserInfo subject differs from the ID token's")
        try:
            return do_sso_login(issuer=payload["iss"], subject=str(payload["sub"]), claims=claims)
        except (ValidationError, PermissionDenied) as exc:
            messages.error(self.request, f"Single sign-on refused: {_reason(exc)}")
            return None

    def get_user(self, user_id: int):
        """As ``ModelBackend``: a deactivated user's session stops working (the library's
        ``get_user`` would keep returning them)."""
        return ModelBackend.get_user(self, user_id)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    if isinstance(exc, requests.RequestException):
        return "the identity provider could not be reached or refused the request"
    return str(exc)


def _only_when_enabled(view_class):
    view = view_class.as_view()

    def sso_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.STEWARD_OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        return view(request, *args, **kwargs)

    return sso_view


# The library's two views, answering 404 while single sign-on is off (their settings are unset).
authenticate_view = _only_when_enabled(OIDCAuthenticationRequestView)
callback_view = _only_when_enabled(OIDCAuthenticationCallbackView)


class LoginView(auth_views.LoginView):
    """Django's login page, with the single sign-on button while single sign-on is on."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["sso_label"] = settings.STEWARD_OIDC_LOGIN_LABEL if settings.STEWARD_OIDC_ENABLED else ""
        return context
