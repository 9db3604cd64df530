"""API tokens: created and revoked by their own user only; the secret is never stored."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance import tokens
from governance.actions.checks import ensure_active
from governance.audit import record_audit_event
from governance.models import ApiToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def do_create_api_token(
    *,
    user: User,
    name: str,
    is_read_only: bool = True,
    expires_at: datetime.datetime | None = None,
    actor: User | None,
) -> tuple[ApiToken, str]:
    """Create an API token for ``user`` and return it with its secret, which is never stored.

    Only the user creates their own tokens. Raises ValidationError for a blank name or an expiry
    in the past; PermissionDenied for anyone else or a deactivated user.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": "a token needs a name"})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "the expiry must be in the future"})
    secret = tokens.new_secret()
    with transaction.atomic():
        if actor is None or actor.pk != user.pk:
            raise PermissionDenied("API tokens are created by their own user")
        ensure_active(user)
        token = ApiToken.objects.create(
            user=user,
            name=name[:100],
            prefix=tokens.visible_prefix(secret),
            key_hash=tokens.hash_secret(secret),
            is_read_only=is_read_only,
            expires_at=expires_at,
        )
        record_audit_event(
            actor=actor,
            action="api_token.create",
            obj=token,
            object_repr=f"token {token.prefix}… of {user.get_username()}",
            after={
                "user": user.get_username(),
                "name": token.name,
                "prefix": token.prefix,
                "is_read_only": is_read_only,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return token, secret


def do_revoke_api_token(*, token: ApiToken, actor: User | None) -> ApiToken:
    """Revoke ``token`` now (its own user only). Raises ValidationError if already revoked."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if actor is None or actor.pk != token.user_id:
            raise PermissionDenied("API tokens are revoked by their own user")
        if token.revoked_at is not None:
            raise ValidationError({"token": f"token {token.prefix}… is already revoked"})
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_audit_event(
            actor=actor,
            action="api_token.revoke",
            obj=token,
            object_repr=f"token {token.prefix}… of {token.user.get_username()}",
            before={"revoked_at": None},
            after={"revoked_at": token.revoked_at.isoformat()},
        )
    return token
