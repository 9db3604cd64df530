"""Logins: create, deactivate (ending sessions and tokens), reactivate; platform admins only."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import (
    ensure_admin,
    ensure_an_admin_remains,
    ensure_not_self,
    lock_platform_admins,
)
from governance.audit import record_audit_event
from governance.models import ApiToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def do_create_user(*, username: str, email: str = "", password: str | None = None, actor: User | None):
    """Create a login (platform admins only); ``password=None`` leaves it unusable until set.

    ``username`` is stored NFKC-normalised, as Django's ``create_user`` and login form do, so
    ``aaron`` typed in fullwidth letters is ``aaron``. Usernames stay case-sensitive, as
    ``ModelBackend``'s login is. Raises ValidationError if the normalised name is taken or is no
    longer a valid username.
    """
    user_model = get_user_model()
    with transaction.atomic():
        ensure_admin(actor)
        username = valid_username(user_model, username)
        # The normalised name: the raw one would miss "aaron" and end on the unique constraint.
        if user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).exists():
            raise ValidationError({"username": f"user {username!r} already exists"})
        user = user_model.objects.create_user(username=username, email=email, password=password)
        record_audit_event(
            actor=actor,
            action="user.create",
            obj=user,
            object_type="user",
            after={"username": username, "email": email},
        )
    return user


def valid_username(user_model, username: str) -> str:
    """``username`` NFKC-normalised, then re-validated (ValidationError on ``username``).

    Normalising can lengthen a name (one ligature becomes several letters) or yield characters
    the username rule refuses (``½`` becomes ``1``, U+2044 fraction slash, ``2``).
    """
    username = user_model.normalize_username(username)
    if not username:
        raise ValidationError({"username": "a username may not be empty"})
    try:
        user_model._meta.get_field(user_model.USERNAME_FIELD).run_validators(username)
    except ValidationError as exc:
        raise ValidationError({"username": exc.messages}) from exc
    return username


def do_deactivate_user(*, user: User, actor: User | None):
    """Stop ``user`` logging in, end their sessions and revoke their API tokens (platform admins
    only, not oneself).

    The user row, memberships and history stay; ``do_reactivate_user`` undoes it, without the
    sessions or the tokens.
    Raises ValidationError if already deactivated, PermissionDenied for the last platform admin.
    """
    user_model = get_user_model()
    with transaction.atomic():
        ensure_admin(actor)
        lock_platform_admins()
        user = user_model.objects.select_for_update().get(pk=user.pk)
        ensure_not_self(actor, user)
        if not user.is_active:
            raise ValidationError({"user": f"{user.get_username()} is already deactivated"})
        now = timezone.now()
        revoked = list(
            ApiToken.objects.select_for_update()
            .filter(user=user, revoked_at=None)
            .values_list("prefix", flat=True)
        )
        ApiToken.objects.filter(user=user, revoked_at=None).update(revoked_at=now)
        user.is_active = False
        user.save(update_fields=["is_active"])
        _end_sessions(user)
        record_audit_event(
            actor=actor,
            action="user.deactivate",
            obj=user,
            object_type="user",
            before={"is_active": True},
            after={"is_active": False, "revoked_tokens": sorted(revoked)},
        )
        ensure_an_admin_remains()
    return user


def _end_sessions(user: User) -> int:
    """Delete every unexpired session of ``user``; returns how many.

    An inactive user's session is merely refused (``ModelBackend.get_user``), so without this
    reactivation would bring every old session cookie back. Sessions are not indexed by user:
    this decodes each live session, fine for the number a Steward installation holds. Inside
    the caller's transaction, so a refused deactivation keeps them. Raises ImproperlyConfigured
    for a session engine without a database table (cache, file, signed cookies): their sessions
    cannot be found by user, and deactivating must not silently leave them working.
    """
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store_class, "get_model_class"):
        raise ImproperlyConfigured(
            f"SESSION_ENGINE {settings.SESSION_ENGINE!r} keeps no session table; deactivating a "
            "user needs one (django.contrib.sessions.backends.db or cached_db)"
        )
    decoder = store_class()
    user_id = str(user.pk)
    live = store_class.get_model_class().objects.filter(expire_date__gt=timezone.now())
    keys = [
        row.session_key
        for row in live.only("session_key", "session_data").iterator()
        if decoder.decode(row.session_data).get(SESSION_KEY) == user_id
    ]
    for key in keys:
        # The store's own delete: the cached_db engine must drop its cached copy as well.
        store_class(session_key=key).delete()
    return len(keys)


def do_reactivate_user(*, user: User, actor: User | None):
    """Let a deactivated user log in again (platform admins only). Their old tokens stay revoked."""
    user_model = get_user_model()
    with transaction.atomic():
        ensure_admin(actor)
        user = user_model.objects.select_for_update().get(pk=user.pk)
        ensure_not_self(actor, user)
        if user.is_active:
            raise ValidationError({"user": f"{user.get_username()} is already active"})
        user.is_active = True
        user.save(update_fields=["is_active"])
        record_audit_event(
            actor=actor,
            action="user.reactivate",
            obj=user,
            object_type="user",
            before={"is_active": False},
            after={"is_active": True},
        )
    return user
