"""Passwords (issue 14): an admin sets one or emails a reset link, a user changes their own.

One rule for every way in: the new password passes ``AUTH_PASSWORD_VALIDATORS``; a login that
signs in through single sign-on has no Steward password (its identity provider's is the one);
every change is an audit event that never holds the password. A new password ends the user's
other sessions (Django ties a session to the password's hash); API tokens are unaffected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from governance.actions.checks import ensure_active, ensure_admin
from governance.audit import record_audit_event
from governance.models import ExternalIdentity

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def do_set_password(*, user: User, password: str, actor: User | None) -> User:
    """A platform admin sets ``user``'s password (not their own: that needs the old one).

    Raises PermissionDenied for anyone else or oneself; ValidationError (on ``password``) when
    the password fails the validators, for a deactivated user or one who signs in through
    single sign-on.
    """
    with transaction.atomic():
        ensure_admin(actor)
        user = _locked(user)
        if actor is not None and actor.pk == user.pk:
            raise PermissionDenied("change your own password on your account page: it needs the current one")
        _store(user, password, actor=actor, how="set by an admin")
    return user


def do_change_own_password(*, user: User, old_password: str, new_password: str) -> User:
    """``user`` changes their own password, proving the old one.

    Raises ValidationError on ``old_password`` when it is wrong, on ``new_password`` when the new
    one fails the validators or the user signs in through single sign-on.
    """
    with transaction.atomic():
        user = _locked(user)
        if not user.check_password(old_password):
            raise ValidationError({"old_password": "the current password is not right"})
        _store(user, new_password, actor=user, how="changed by the user", field="new_password")
    return user


def do_send_password_reset(*, user: User, actor: User | None) -> str:
    """A platform admin emails ``user`` a link to set a new password (also for a login created
    without one); returns the address it went to.

    The link holds Django's password-reset token: valid for ``PASSWORD_RESET_TIMEOUT`` seconds
    and spent once the password changes. Raises PermissionDenied for anyone but a platform admin;
    ValidationError when the user has no email address, is deactivated or signs in through single
    sign-on, or the mail cannot be handed to the mail server (nothing is recorded then).
    """
    with transaction.atomic():
        ensure_admin(actor)
        # Read, not locked: the mail server is waited on below (up to EMAIL_TIMEOUT), and a lock
        # on the user's row would hold up their logins (last_login) for that long.
        user = get_user_model().objects.get(pk=user.pk)
        _ensure_local(user, field="user")
        if not user.email:
            raise ValidationError({"user": f"{user.get_username()} has no email address to send a link to"})
        path = reverse(
            "password_reset_confirm",
            kwargs={
                "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                "token": default_token_generator.make_token(user),
            },
        )
        hours = settings.PASSWORD_RESET_TIMEOUT // 3600
        try:
            send_mail(
                subject="Set your Steward password",
                message=(
                    f"A Steward admin sent you a link to set the password of your login "
                    f"{user.get_username()!r}:\n\n{settings.STEWARD_BASE_URL.rstrip('/')}{path}\n\n"
                    f"It works once, for {hours} hours. If you did not expect it, tell your admin."
                ),
                from_email=None,
                recipient_list=[user.email],
            )
        except OSError as exc:  # SMTP errors are OSErrors: refused, unreachable, timed out
            raise ValidationError({"user": f"the mail could not be sent: {exc}"}) from exc
        record_audit_event(
            actor=actor,
            action="user.password_reset_sent",
            obj=user,
            object_type="user",
            after={"sent_to": user.email},
        )
    return user.email


def do_reset_password(*, user: User, password: str) -> User:
    """Set the password through a reset link; the caller (the link's page) has checked its token.

    Raises ValidationError on ``new_password1`` as ``do_set_password`` does.
    """
    with transaction.atomic():
        user = _locked(user)
        _store(user, password, actor=None, how="set through a reset link", field="new_password1")
    return user


def _locked(user: User) -> User:
    return get_user_model().objects.select_for_update().get(pk=user.pk)


def _ensure_local(user: User, *, field: str) -> None:
    if ExternalIdentity.objects.filter(user=user).exists():
        raise ValidationError(
            {field: f"{user.get_username()} signs in through single sign-on and has no Steward password"}
        )
    try:
        ensure_active(user)
    except ValidationError as exc:
        raise ValidationError({field: exc.messages}) from exc


def _store(user: User, password: str, *, actor: User | None, how: str, field: str = "password") -> None:
    """Validate, set and record the password (inside the caller's transaction)."""
    _ensure_local(user, field=field)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({field: exc.messages}) from exc
    had_one = user.has_usable_password()
    user.set_password(password)
    user.save(update_fields=["password"])
    record_audit_event(
        actor=actor,
        action="user.password_change",
        obj=user,
        object_type="user",
        before={"had_password": had_one},
        after={"had_password": True, "how": how},
        on_behalf_of=user if actor is None else None,
    )
