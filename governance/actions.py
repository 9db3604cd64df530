"""The one audited way to change registry, team and role state.

Each ``do_<verb>_<noun>`` runs in one transaction, re-checks the actor's permission inside it,
writes its audit event in the same transaction, and returns the changed object. ``actor=None``
means the system (a Celery task) acting ``on_behalf_of`` the user who started the work.
"""

from __future__ import annotations

import datetime
import hashlib
from importlib import import_module
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.text import slugify

from governance import artifacts, datafiles, tokens
from governance.audit import record_audit_event, snapshot
from governance.models import (
    ApiToken,
    Dataset,
    DatasetVersion,
    Membership,
    ModelAlias,
    ModelVersion,
    PlatformRole,
    PlatformRoleGrant,
    PromotionRequest,
    RegisteredModel,
    Team,
    TeamRole,
)
from governance.permissions import APPROVE, CHANGE, MANAGE, Action, can, platform_roles


def ensure_can(actor, action: Action, team_id: int | None) -> None:
    """Raise PermissionDenied unless ``actor`` (None = system) may ``action`` on ``team_id``'s objects."""
    if actor is not None and not can(actor, action, team_id, fresh=True):
        raise PermissionDenied(f"you may not {action} objects of this team")


def _ensure_admin(actor) -> None:
    if actor is not None and "admin" not in platform_roles(actor, fresh=True):
        raise PermissionDenied("only a platform admin may do this")


def do_create_user(*, username: str, email: str = "", password: str | None = None, actor):
    """Create a login (platform admins only); ``password=None`` leaves it unusable until set.

    ``username`` is stored NFKC-normalised, as Django's ``create_user`` and login form do, so
    ``aaron`` typed in fullwidth letters is ``aaron``. Usernames stay case-sensitive, as
    ``ModelBackend``'s login is. Raises ValidationError if the normalised name is taken or is no
    longer a valid username.
    """
    user_model = get_user_model()
    with transaction.atomic():
        _ensure_admin(actor)
        username = _valid_username(user_model, username)
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


def _valid_username(user_model, username: str) -> str:
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


def do_create_team(*, name: str, description: str = "", actor) -> Team:
    """Create a team (platform admins only). Raises ValidationError if the name or slug is taken."""
    slug = slugify(name)
    if not slug:
        raise ValidationError({"name": "a team name needs at least one letter or digit"})
    with transaction.atomic():
        _ensure_admin(actor)
        if Team.objects.filter(slug=slug).exists() or Team.objects.filter(name=name).exists():
            raise ValidationError({"name": f"a team named {name!r} already exists"})
        team = Team.objects.create(name=name, slug=slug, description=description)
        record_audit_event(actor=actor, action="team.create", obj=team, after=snapshot(team))
    return team


def _ensure_not_self(actor, user) -> None:
    # Nobody changes their own roles, admins included: a model owner cannot make themselves
    # anything else, an admin cannot step out of the last-admin rule by acting on themselves.
    if actor is not None and actor.pk == user.pk:
        raise PermissionDenied("you may not change your own roles; ask another admin or model owner")


def _ensure_active(user) -> None:
    # Read inside the transaction: the caller's user object may predate a deactivation.
    if not get_user_model().objects.filter(pk=user.pk, is_active=True).exists():
        raise ValidationError({"user": f"{user.get_username()} is deactivated"})


def do_set_membership(*, user, team: Team, role: str, actor) -> Membership:
    """Give ``user`` ``role`` in ``team`` (creating or changing the membership).

    Allowed for platform admins and the team's model owners; nobody may change their own role.
    Raises ValidationError for an unknown role or an inactive user.
    """
    if role not in TeamRole.values:
        raise ValidationError({"role": f"unknown role {role!r}; one of {', '.join(TeamRole.values)}"})
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        _ensure_not_self(actor, user)
        _ensure_active(user)
        membership = Membership.objects.select_for_update().filter(user=user, team=team).first()
        before = {"role": membership.role} if membership else None
        if membership is None:
            membership = Membership.objects.create(user=user, team=team, role=role)
        else:
            membership.role = role
            membership.save(update_fields=["role"])
        record_audit_event(
            actor=actor,
            action="membership.grant",
            obj=membership,
            object_repr=f"{user.get_username()} in {team.name}",
            before=before,
            after={"user": user.get_username(), "team": team.name, "role": role},
        )
    return membership


def do_grant_platform_role(*, user, role: str, actor) -> PlatformRoleGrant:
    """Grant a platform-wide role (admin or compliance officer); platform admins only, never to
    themselves. Granting a role the user holds changes nothing and writes no event."""
    if role not in PlatformRole.values:
        raise ValidationError({"role": f"unknown role {role!r}; one of {', '.join(PlatformRole.values)}"})
    with transaction.atomic():
        _ensure_admin(actor)
        _ensure_not_self(actor, user)
        _ensure_active(user)
        grant, created = PlatformRoleGrant.objects.get_or_create(user=user, role=role)
        if created:
            record_audit_event(
                actor=actor,
                action="platform_role.grant",
                obj=grant,
                object_repr=f"{user.get_username()} as {role}",
                after={"user": user.get_username(), "role": role},
            )
    return grant


def _lock_platform_admins() -> None:
    """Lock every row that makes someone a platform admin, in one order (no deadlocks).

    Two admins revoking each other at once would each see the other left; with these rows
    locked the second waits, and its count (a fresh statement, so it sees the first's commit
    under READ COMMITTED) finds one admin. SQLite's BEGIN IMMEDIATE already serialises writers.
    """
    list(PlatformRoleGrant.objects.select_for_update().filter(role=PlatformRole.ADMIN).order_by("pk"))
    list(get_user_model().objects.select_for_update().filter(is_superuser=True).order_by("pk"))


def active_platform_admins():
    """Active users who are platform admins: an admin grant, or Django's superuser flag
    (``manage.py createsuperuser``; no action sets it)."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(pk__in=PlatformRoleGrant.objects.filter(role=PlatformRole.ADMIN).values("user_id"))
        )
    )


def _ensure_an_admin_remains() -> None:
    # Checked after the change, inside its transaction: raising rolls back the change and its event.
    if not active_platform_admins().exists():
        raise PermissionDenied("the last platform admin cannot be removed or demoted")


def do_revoke_membership(*, membership: Membership, actor) -> None:
    """Remove ``membership`` (platform admins and the team's model owners; never one's own)."""
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update().select_related("user", "team").get(pk=membership.pk)
        )
        ensure_can(actor, MANAGE, membership.team_id)
        _ensure_not_self(actor, membership.user)
        user, team = membership.user, membership.team
        record_audit_event(
            actor=actor,
            action="membership.revoke",
            obj=membership,
            object_repr=f"{user.get_username()} in {team.name}",
            before={"user": user.get_username(), "team": team.name, "role": membership.role},
        )
        membership.delete()


def do_revoke_platform_role(*, grant: PlatformRoleGrant, actor) -> None:
    """Remove a platform role (platform admins only; never one's own, never the last admin's)."""
    with transaction.atomic():
        _ensure_admin(actor)
        _lock_platform_admins()
        grant = PlatformRoleGrant.objects.select_for_update().select_related("user").get(pk=grant.pk)
        _ensure_not_self(actor, grant.user)
        record_audit_event(
            actor=actor,
            action="platform_role.revoke",
            obj=grant,
            object_repr=f"{grant.user.get_username()} as {grant.role}",
            before={"user": grant.user.get_username(), "role": grant.role},
        )
        grant.delete()
        _ensure_an_admin_remains()


def do_deactivate_user(*, user, actor):
    """Stop ``user`` logging in, end their sessions and revoke their API tokens (platform admins
    only, not oneself).

    The user row, memberships and history stay; ``do_reactivate_user`` undoes it, without the
    sessions or the tokens.
    Raises ValidationError if already deactivated, PermissionDenied for the last platform admin.
    """
    user_model = get_user_model()
    with transaction.atomic():
        _ensure_admin(actor)
        _lock_platform_admins()
        user = user_model.objects.select_for_update().get(pk=user.pk)
        _ensure_not_self(actor, user)
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
        _ensure_an_admin_remains()
    return user


def _end_sessions(user) -> int:
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


def do_reactivate_user(*, user, actor):
    """Let a deactivated user log in again (platform admins only). Their old tokens stay revoked."""
    user_model = get_user_model()
    with transaction.atomic():
        _ensure_admin(actor)
        user = user_model.objects.select_for_update().get(pk=user.pk)
        _ensure_not_self(actor, user)
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


def do_create_dataset(*, team: Team, name: str, description: str = "", actor, on_behalf_of=None) -> Dataset:
    """Register a dataset name for ``team``. Raises ValidationError if the name is taken."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "a dataset needs a name"})
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        if Dataset.objects.filter(name=name).exists():
            raise ValidationError({"name": f"a dataset named {name!r} already exists"})
        dataset = Dataset.objects.create(
            team=team, name=name, description=description, created_by=actor or on_behalf_of
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="dataset.create",
            obj=dataset,
            after=snapshot(dataset),
        )
    return dataset


def _next_version(model, parent_field: str, parent) -> int:
    highest = model.objects.filter(**{parent_field: parent}).aggregate(Max("version"))["version__max"]
    return (highest or 0) + 1


def do_register_dataset_version(
    *,
    dataset: Dataset,
    file_path: Path,
    filename: str,
    source: str,
    description: str = "",
    actor,
    on_behalf_of=None,
) -> DatasetVersion:
    """Validate a CSV/Parquet file, store it by content hash and register it as the next version.

    ``file_path`` is a readable local file (an upload's temporary file, an allowed server path,
    or a job's output). Raises ``datafiles.DataFileError`` (nothing registered) when the file is
    not valid; PermissionDenied when the actor may not change the dataset's team.
    """
    ensure_can(actor, CHANGE, dataset.team_id)
    summary = datafiles.summarize(
        file_path,
        filename,
        max_bytes=settings.STEWARD_MAX_DATASET_BYTES,
        max_rows=settings.STEWARD_MAX_DATASET_ROWS,
    )
    stored = artifacts.store_file(file_path, summary.sha256, "datasets", f".{summary.format}")
    with transaction.atomic():
        # Lock the parent so two registrations racing for the same dataset get 1..n without gaps.
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        ensure_can(actor, CHANGE, dataset.team_id)
        version = DatasetVersion.objects.create(
            dataset=dataset,
            version=_next_version(DatasetVersion, "dataset", dataset),
            file=stored,
            original_filename=filename[:255],
            format=summary.format,
            sha256=summary.sha256,
            size_bytes=summary.size_bytes,
            row_count=summary.row_count,
            schema=summary.schema,
            source=source,
            description=description,
            created_by=actor or on_behalf_of,
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="dataset_version.register",
            obj=version,
            after=snapshot(version),
        )
    return version


def resolve_import_path(raw: str) -> Path:
    """The absolute path of a server-side file inside one of ``STEWARD_IMPORT_ROOTS``.

    Raises ValidationError for a path outside them (no reading arbitrary server files) or missing.
    """
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [root / path for root in settings.STEWARD_IMPORT_ROOTS]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            inside = any(resolved.is_relative_to(root) for root in settings.STEWARD_IMPORT_ROOTS)
            if inside and resolved.is_file():
                return resolved
        except (OSError, ValueError):
            # A name too long for the file system, or a NUL byte: simply not a file we can read.
            continue
    raise ValidationError({"path": f"{raw[:200]!r} is not a file under the server's import folders"})


def do_create_registered_model(
    *, team: Team, name: str, owner, description: str = "", actor
) -> RegisteredModel:
    """Register a model name for ``team`` owned by ``owner`` (who must belong to the team)."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "a model needs a name"})
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        if not Membership.objects.filter(user=owner, team=team).exists():
            raise ValidationError({"owner": f"{owner.get_username()} is not a member of team {team.name}"})
        if RegisteredModel.objects.filter(name=name).exists():
            raise ValidationError({"name": f"a model named {name!r} already exists"})
        model = RegisteredModel.objects.create(team=team, name=name, owner=owner, description=description)
        record_audit_event(actor=actor, action="registered_model.create", obj=model, after=snapshot(model))
    return model


def do_register_model_version(
    *,
    model: RegisteredModel,
    artifact_bytes: bytes,
    metrics: dict[str, Any],
    signature: dict[str, Any],
    training_spec: dict[str, Any],
    training_dataset_version: DatasetVersion | None,
    source_job_id: int | None,
    actor,
    on_behalf_of=None,
) -> ModelVersion:
    """Store a trained artifact and register it as the model's next version (1..n, no gaps).

    Runs in the caller's transaction when there is one, so a job can commit its success, the
    version, its lineage edges and their audit events together.
    """
    sha256 = hashlib.sha256(artifact_bytes).hexdigest()
    stored = artifacts.store_bytes(artifact_bytes, sha256, "models", ".pt")
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        ensure_can(actor, CHANGE, model.team_id)
        version = ModelVersion.objects.create(
            model=model,
            version=_next_version(ModelVersion, "model", model),
            artifact=stored,
            sha256=sha256,
            size_bytes=len(artifact_bytes),
            metrics=metrics,
            signature=signature,
            training_spec=training_spec,
            training_dataset_version=training_dataset_version,
            source_job_id=source_job_id,
            created_by=actor or on_behalf_of,
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="model_version.register",
            obj=version,
            after=snapshot(version),
        )
    return version


# API tokens ------------------------------------------------------------------------------------


def do_create_api_token(
    *,
    user,
    name: str,
    is_read_only: bool = True,
    expires_at: datetime.datetime | None = None,
    actor,
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
        _ensure_active(user)
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


def do_revoke_api_token(*, token: ApiToken, actor) -> ApiToken:
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


# Promotions (four eyes) ------------------------------------------------------------------------

PROMOTION_ALIASES = ("production", "staging")


def do_request_promotion(
    *, model_version: ModelVersion, alias: str = "production", reason: str = "", actor
) -> PromotionRequest:
    """Ask for ``model_version`` to hold ``alias``; the team's model owners and data scientists
    (and platform admins) may ask. An approver other than the requester must approve.

    Raises ValidationError for an unknown alias, an archived version, a version that already
    holds the alias, or a pending request for the same version and alias.
    """
    if alias not in PROMOTION_ALIASES:
        raise ValidationError({"alias": f"unknown alias {alias!r}; one of {', '.join(PROMOTION_ALIASES)}"})
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model_version.model_id)
        if actor is None or not can(actor, CHANGE, model.team_id, fresh=True):
            raise PermissionDenied("only the team's model owners and data scientists may request a promotion")
        version = ModelVersion.objects.select_related("model").get(pk=model_version.pk)
        if version.status != ModelVersion.Status.READY:
            raise ValidationError({"model_version": f"{version} is {version.status}, not ready"})
        if ModelAlias.objects.filter(model=model, name=alias, model_version=version).exists():
            raise ValidationError({"alias": f"{version} already holds {alias}"})
        pending = PromotionRequest.objects.filter(
            model_version=version, alias=alias, state=PromotionRequest.State.PENDING
        ).first()
        if pending is not None:
            raise ValidationError(
                {"alias": f"promotion request #{pending.pk} for {version} to {alias} is pending"}
            )
        request = PromotionRequest.objects.create(
            model_version=version, alias=alias, reason=reason.strip(), requested_by=actor
        )
        record_audit_event(
            actor=actor,
            action="promotion_request.create",
            obj=request,
            team_id=model.team_id,
            after=snapshot(request),
        )
    return request


def _lock_pending_request(promotion_request: PromotionRequest) -> tuple[PromotionRequest, RegisteredModel]:
    """Lock the request's model (the alias's parent), then the request; refuse one not pending."""
    model_id = ModelVersion.objects.filter(pk=promotion_request.model_version_id).values_list(
        "model_id", flat=True
    )[0]
    model = RegisteredModel.objects.select_for_update().get(pk=model_id)
    request = (
        PromotionRequest.objects.select_for_update()
        .select_related("model_version__model", "requested_by")
        .get(pk=promotion_request.pk)
    )
    return request, model


def _ensure_pending(request: PromotionRequest) -> None:
    if request.state != PromotionRequest.State.PENDING:
        raise ValidationError({"state": f"promotion request #{request.pk} is {request.state}, not pending"})


def _ensure_may_decide(actor, request: PromotionRequest, model: RegisteredModel) -> None:
    if actor is None or not can(actor, APPROVE, model.team_id, fresh=True):
        raise PermissionDenied(f"only an approver of team {model.team.name} may decide promotions")
    if actor.pk == request.requested_by_id:
        raise PermissionDenied("four eyes: the requester may not decide their own promotion request")


_DECISION_EVENTS = {
    PromotionRequest.State.APPROVED: "promotion_request.approve",
    PromotionRequest.State.REJECTED: "promotion_request.reject",
    PromotionRequest.State.CANCELLED: "promotion_request.cancel",
}


def _decide(request: PromotionRequest, state: str, decision_reason: str, actor, model) -> None:
    before = snapshot(request)
    request.state = state
    request.decided_by = actor
    request.decided_at = timezone.now()
    request.decision_reason = decision_reason.strip()
    request.save(update_fields=["state", "decided_by", "decided_at", "decision_reason"])
    record_audit_event(
        actor=actor,
        action=_DECISION_EVENTS[state],
        obj=request,
        team_id=model.team_id,
        before=before,
        after=snapshot(request),
    )


def do_approve_promotion(
    *, promotion_request: PromotionRequest, decision_reason: str = "", actor
) -> PromotionRequest:
    """Approve a pending request and move its alias to its version, atomically.

    The approver holds the approver role in the model's team and is not the requester. The
    model row is locked, so concurrent approvals of one alias apply one after the other, and the
    unique (model, alias) constraint keeps one version per alias whatever happens.
    """
    with transaction.atomic():
        request, model = _lock_pending_request(promotion_request)
        _ensure_may_decide(actor, request, model)
        _ensure_pending(request)
        version = request.model_version
        if version.status != ModelVersion.Status.READY:
            raise ValidationError({"model_version": f"{version} is {version.status}, not ready"})
        _decide(request, PromotionRequest.State.APPROVED, decision_reason, actor, model)
        _move_alias(model, request.alias, version, actor)
    return request


def _move_alias(model: RegisteredModel, name: str, version: ModelVersion, actor) -> ModelAlias:
    alias = ModelAlias.objects.select_for_update().filter(model=model, name=name).first()
    before = snapshot(alias)
    if alias is None:
        alias = ModelAlias.objects.create(model=model, name=name, model_version=version)
    else:
        alias.model_version = version
        alias.updated_at = timezone.now()
        alias.save(update_fields=["model_version", "updated_at"])
    record_audit_event(
        actor=actor,
        action="model_alias.move",
        obj=alias,
        object_repr=f"{model.name}@{name} -> v{version.version}",
        team_id=model.team_id,
        before=before,
        after=snapshot(alias),
    )
    return alias


def do_reject_promotion(
    *, promotion_request: PromotionRequest, decision_reason: str, actor
) -> PromotionRequest:
    """Reject a pending request with a reason (required); same deciders as approval."""
    if not decision_reason.strip():
        raise ValidationError({"decision_reason": "a rejection needs a reason"})
    with transaction.atomic():
        request, model = _lock_pending_request(promotion_request)
        _ensure_may_decide(actor, request, model)
        _ensure_pending(request)
        _decide(request, PromotionRequest.State.REJECTED, decision_reason, actor, model)
    return request


def do_cancel_promotion(*, promotion_request: PromotionRequest, actor) -> PromotionRequest:
    """Withdraw a pending request; only its requester may."""
    with transaction.atomic():
        request, model = _lock_pending_request(promotion_request)
        if actor is None or actor.pk != request.requested_by_id:
            raise PermissionDenied("only the requester may cancel a promotion request")
        _ensure_pending(request)
        _decide(request, PromotionRequest.State.CANCELLED, "", actor, model)
    return request
