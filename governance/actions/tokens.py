"""API tokens: created and revoked by their own user only; the secret is never stored."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance import tokens
from governance.actions.checks import ensure_active, ensure_can
from governance.audit import record_audit_event
from governance.models import ApiToken, RegisteredModel, TokenScope
from governance.permissions import MANAGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _stored(secret: str, **fields: object) -> ApiToken:
    """A new ApiToken row for ``secret``: only its visible prefix and its SHA-256 are stored."""
    return ApiToken.objects.create(
        prefix=tokens.visible_prefix(secret), key_hash=tokens.hash_secret(secret), **fields
    )


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
        token = _stored(
            secret,
            user=user,
            name=name[:100],
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


def do_create_prediction_token(
    *,
    registered_model: RegisteredModel,
    name: str,
    expires_at: datetime.datetime | None = None,
    actor: User | None,
) -> tuple[ApiToken, str]:
    """A token that may only predict with ``registered_model`` (issue 17: ``TokenScope.PREDICT``),
    for an application that calls the predict endpoints; it belongs to ``actor`` and acts with
    their ``predict`` permission. Only the model's owners (``manage`` on its team: model owners,
    platform admins) create one. Returns it with its secret, which is never stored. Raises
    ValidationError for a blank name, a past expiry or a deleted model; PermissionDenied otherwise.
    """
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise ValidationError({"name": "a token needs a name"})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "the expiry must be in the future"})
    secret = tokens.new_secret()
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        if actor is None:
            raise PermissionDenied("a prediction token belongs to a user")
        ensure_can(actor, MANAGE, model.team_id)
        ensure_active(actor)
        if model.deleted_at is not None:
            raise ValidationError({"registered_model": f"model {model.name} was deleted"})
        token = _stored(
            secret,
            user=actor,
            name=name[:100],
            # It writes nothing: the authentication lets it POST to the predict endpoints only.
            is_read_only=False,
            expires_at=expires_at,
            scope=TokenScope.PREDICT,
            registered_model=model,
        )
        record_audit_event(
            actor=actor,
            action="api_token.create_prediction_token",
            obj=token,
            object_repr=f"prediction token {token.prefix}… of {model.name}",
            team_id=model.team_id,
            after={
                "user": actor.get_username(),
                "name": token.name,
                "prefix": token.prefix,
                "registered_model": model.pk,
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


def do_issue_job_token(
    *, job_id: int, user: User, expires_at: datetime.datetime, actor: User | None = None
) -> tuple[ApiToken, str]:
    """A read-write token scoped to code run ``job_id`` (issue 17), acting for ``user`` (who
    submitted the run), valid until ``expires_at`` (the run's hard wall time). Returns it with its
    secret, which goes only into the run's environment. Issued by the system (``actor`` None) when
    an attempt starts; what it may do is decided where it is used (``TokenScope.JOB``).
    """
    secret = tokens.new_secret()
    with transaction.atomic():
        token = _stored(
            secret,
            user=user,
            name=f"job {job_id}",
            is_read_only=False,
            expires_at=expires_at,
            scope=TokenScope.JOB,
            job_id=job_id,
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=user,
            action="api_token.issue_job_token",
            obj=token,
            object_repr=f"token {token.prefix}… of job #{job_id}",
            after={"job": job_id, "prefix": token.prefix, "expires_at": expires_at.isoformat()},
        )
    return token, secret


def do_revoke_job_tokens(*, job_id: int, actor: User | None = None) -> int:
    """Revoke every live token of code run ``job_id`` (its attempt ended, or a new attempt starts);
    returns how many. One audit event per token revoked."""
    revoked = 0
    with transaction.atomic():
        now = timezone.now()
        for token in ApiToken.objects.select_for_update().filter(
            scope=TokenScope.JOB, job_id=job_id, revoked_at__isnull=True
        ):
            token.revoked_at = now
            token.save(update_fields=["revoked_at"])
            record_audit_event(
                actor=actor,
                action="api_token.revoke",
                obj=token,
                object_repr=f"token {token.prefix}… of job #{job_id}",
                before={"revoked_at": None},
                after={"revoked_at": now.isoformat()},
            )
            revoked += 1
    return revoked
