"""The user's own API tokens: create one (its secret shown once), revoke one."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from governance.actions.tokens import do_create_api_token, do_revoke_api_token
from governance.forms import ApiTokenForm
from governance.models import ApiToken
from governance.permissions import restrict
from governance.views.helpers import button_view, form_view, visible_or_404


@login_required
def api_token_list(request: HttpRequest) -> HttpResponse:
    """The user's own API tokens; POST creates one and shows its secret on this answer only."""

    def create(data: dict[str, Any]) -> tuple[ApiToken, str]:
        expires_at = None
        if data["expires_in_days"]:
            expires_at = timezone.now() + datetime.timedelta(days=data["expires_in_days"])
        return do_create_api_token(
            user=request.user,
            name=data["name"],
            is_read_only=data["is_read_only"],
            expires_at=expires_at,
            actor=request.user,
        )

    return form_view(
        request,
        ApiTokenForm(request.POST or None),
        create,
        # No redirect: the secret exists in this answer only, next to a fresh form.
        success=lambda created: _token_page(request, ApiTokenForm(), created, 200),
        render_page=lambda form, status: _token_page(request, form, None, status),
    )


def _token_page(
    request: HttpRequest, form: forms.Form, created: tuple[ApiToken, str] | None, status: int
) -> HttpResponse:
    context = {
        "section": "tokens",
        "tokens": restrict(ApiToken.objects.all(), request.user),
        "form": form,
        "new_token": created[0] if created else None,
        "new_secret": created[1] if created else None,
        "now": timezone.now(),
    }
    response = render(request, "governance/api_token_list.html", context, status=status)
    # The secret is in this page only: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@login_required
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST revokes one of the user's own tokens (others' are 404)."""
    token = visible_or_404(request, ApiToken.objects.all(), pk)
    return button_view(
        request,
        lambda: do_revoke_api_token(token=token, actor=request.user),
        section="tokens",
        question=f"Revoke the token {token.name} ({token.prefix}…)?",
        explanation="Requests with it are refused from now on. This cannot be undone.",
        label="Revoke",
        back=reverse("api_token_list"),
        success_message=f"Revoked the token {token.name}.",
        refused=lambda status: _token_page(request, ApiTokenForm(), None, status),
    )
