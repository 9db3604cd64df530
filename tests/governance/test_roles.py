"""Granting and revoking roles, users' lifecycle, and the rules around them (issue 3, RBAC)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from rest_framework.test import APIClient

from governance.actions.checks import active_platform_admins
from governance.actions.teams import do_grant_platform_role, do_revoke_platform_role, do_set_membership
from governance.actions.tokens import do_create_api_token
from governance.actions.users import do_deactivate_user
from governance.models import AuditEvent, Membership, PlatformRole, PlatformRoleGrant, TeamRole
from tests.conftest import PASSWORD

SELF = "you may not change your own roles; ask another admin or model owner"
LAST_ADMIN = "the last platform admin cannot be removed or demoted"
ONLY_ADMIN = "only a platform admin may do this"


def _user(username: str):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)


@pytest.fixture
def nina(db):
    """A user in no team."""
    return _user("nina")


@pytest.fixture
def root(admin):
    """A second platform admin, by grant (``admin`` is one by the superuser flag)."""
    user = _user("root")
    do_grant_platform_role(user=user, role=PlatformRole.ADMIN, actor=admin)
    return user


def _events(last_id: int) -> list[tuple]:
    return list(
        AuditEvent.objects.filter(id__gt=last_id)
        .order_by("id")
        .values_list("action", "actor_label", "object_repr", "before", "after")
    )


def _last_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _state() -> dict:
    return {
        "memberships": list(
            Membership.objects.order_by("pk").values_list("user__username", "team__name", "role")
        ),
        "grants": list(PlatformRoleGrant.objects.order_by("pk").values_list("user__username", "role")),
        "active": list(get_user_model().objects.order_by("pk").values_list("username", "is_active")),
        "events": AuditEvent.objects.count(),
    }


# Team roles through the API.


def test_admin_grants_changes_and_revokes_a_team_role_and_each_is_audited(client_for, admin, team, nina):
    client = client_for(admin)
    last = _last_id()

    granted = client.post(
        "/api/memberships/", {"username": "nina", "team": team.pk, "role": "viewer"}, format="json"
    )
    membership = Membership.objects.get(user=nina)
    changed = client.patch(f"/api/memberships/{membership.pk}/", {"role": "approver"}, format="json")
    revoked = client.delete(f"/api/memberships/{membership.pk}/")

    assert granted.status_code == 201
    assert granted.json() == {
        "id": membership.pk,
        "user": nina.pk,
        "username": "nina",
        "team": team.pk,
        "team_name": "Mobility",
        "role": "viewer",
        "created_at": granted.json()["created_at"],
    }
    assert (changed.status_code, changed.json()["role"]) == (200, "approver")
    assert revoked.status_code == 204
    assert not Membership.objects.filter(user=nina).exists()
    whom = {"user": "nina", "team": "Mobility"}
    assert _events(last) == [
        ("membership.grant", "admin", "nina in Mobility", None, {**whom, "role": "viewer"}),
        ("membership.grant", "admin", "nina in Mobility", {"role": "viewer"}, {**whom, "role": "approver"}),
        ("membership.revoke", "admin", "nina in Mobility", {**whom, "role": "approver"}, None),
    ]
    revoke = AuditEvent.objects.get(action="membership.revoke")
    assert (revoke.team_id, revoke.object_type, revoke.object_id) == (
        team.pk,
        "membership",
        str(membership.pk),
    )


def test_model_owner_manages_the_roles_of_their_own_team_only(
    client_for, owner, viewer, team, other_team, nina
):
    client = client_for(owner)
    before = _state()

    elsewhere = client.post(
        "/api/memberships/", {"username": "nina", "team": other_team.pk, "role": "viewer"}, format="json"
    )

    assert (elsewhere.status_code, elsewhere.json()) == (
        400,
        {"team": [f'Invalid pk "{other_team.pk}" - object does not exist.']},
    )
    assert _state() == before
    granted = client.post(
        "/api/memberships/", {"username": "nina", "team": team.pk, "role": "viewer"}, format="json"
    )
    assert granted.status_code == 201
    assert AuditEvent.objects.filter(action="membership.grant").latest("id").actor_label == "olivia"


@pytest.mark.parametrize("persona", ["scientist", "approver", "viewer", "compliance_officer"])
def test_only_admins_and_model_owners_grant_team_roles(request, client_for, team, viewer, nina, persona):
    client = client_for(request.getfixturevalue(persona))
    membership = Membership.objects.get(user=viewer)
    before = _state()

    answers = [
        client.post(
            "/api/memberships/", {"username": "nina", "team": team.pk, "role": "viewer"}, format="json"
        ),
        client.patch(f"/api/memberships/{membership.pk}/", {"role": "model_owner"}, format="json"),
        client.delete(f"/api/memberships/{membership.pk}/"),
    ]

    expected = "you may not manage objects of this team"
    assert [(a.status_code, a.json()) for a in answers] == [(403, {"detail": expected})] * 3
    assert _state() == before


def test_membership_put_is_not_offered_and_patch_cannot_move_it_to_another_user_or_team(
    client_for, admin, viewer, team, other_team, nina
):
    client = client_for(admin)
    membership = Membership.objects.get(user=viewer)

    put = client.put(f"/api/memberships/{membership.pk}/", {"role": "approver"}, format="json")
    patched = client.patch(
        f"/api/memberships/{membership.pk}/",
        {
            "role": "approver",
            "team": other_team.pk,
            "username": "nina",
            "user": nina.pk,
            "created_at": "2001-01-01",
        },
        format="json",
    )

    membership.refresh_from_db()
    assert put.status_code == 405
    assert patched.status_code == 200
    assert (membership.user, membership.team, membership.role) == (viewer, team, TeamRole.APPROVER)
    assert membership.created_at.year > 2001


def test_granting_a_role_to_a_deactivated_user_is_refused(client_for, admin, team, nina):
    do_deactivate_user(user=nina, actor=admin)
    before = _state()

    response = client_for(admin).post(
        "/api/memberships/", {"username": "nina", "team": team.pk, "role": "viewer"}, format="json"
    )

    assert (response.status_code, response.json()) == (
        400,
        {"username": ["Object with username=nina does not exist."]},
    )
    with pytest.raises(ValidationError, match="nina is deactivated"):
        do_set_membership(user=nina, team=team, role=TeamRole.VIEWER, actor=admin)
    assert _state() == before


# Nobody raises their own role.


def test_model_owner_cannot_make_themselves_approver_or_admin(client_for, owner, team):
    """A model owner manages the team's roles, but not their own: no approving their own models."""
    client = client_for(owner)
    membership = Membership.objects.get(user=owner)
    before = _state()

    answers = [
        client.patch(f"/api/memberships/{membership.pk}/", {"role": "approver"}, format="json"),
        client.post(
            "/api/memberships/", {"username": "olivia", "team": team.pk, "role": "approver"}, format="json"
        ),
        client.delete(f"/api/memberships/{membership.pk}/"),
        client.post("/api/platform-roles/", {"username": "olivia", "role": "admin"}, format="json"),
    ]

    assert [(a.status_code, a.json()["detail"]) for a in answers] == [
        (403, SELF),
        (403, SELF),
        (403, SELF),
        (403, ONLY_ADMIN),
    ]
    assert _state() == before


def test_model_owner_of_one_team_cannot_raise_their_role_in_another(client_for, admin, owner, other_team):
    do_set_membership(user=owner, team=other_team, role=TeamRole.VIEWER, actor=admin)
    fraud = Membership.objects.get(user=owner, team=other_team)
    before = _state()

    response = client_for(owner).patch(
        f"/api/memberships/{fraud.pk}/", {"role": "model_owner"}, format="json"
    )

    assert (response.status_code, response.json()) == (
        403,
        {"detail": "you may not manage objects of this team"},
    )
    assert _state() == before


def test_admins_cannot_grant_or_revoke_their_own_roles(client_for, root, team):
    client = client_for(root)
    own_grant = PlatformRoleGrant.objects.get(user=root)
    before = _state()

    answers = [
        client.post(
            "/api/memberships/", {"username": "root", "team": team.pk, "role": "approver"}, format="json"
        ),
        client.post(
            "/api/platform-roles/", {"username": "root", "role": "compliance_officer"}, format="json"
        ),
        client.delete(f"/api/platform-roles/{own_grant.pk}/"),
        client.post(f"/api/users/{root.pk}/deactivate/"),
    ]

    assert [(a.status_code, a.json()["detail"]) for a in answers] == [(403, SELF)] * 4
    assert _state() == before


# The last platform admin.


def test_an_admin_can_be_revoked_while_another_remains(client_for, admin, root):
    grant = PlatformRoleGrant.objects.get(user=root)
    last = _last_id()

    response = client_for(admin).delete(f"/api/platform-roles/{grant.pk}/")

    assert response.status_code == 204
    assert not PlatformRoleGrant.objects.filter(user=root).exists()
    assert _events(last) == [
        ("platform_role.revoke", "admin", "root as admin", {"user": "root", "role": "admin"}, None)
    ]
    assert list(active_platform_admins().values_list("username", flat=True)) == ["admin"]


def test_the_last_admin_cannot_be_revoked_or_deactivated(admin, root):
    """root is the only admin once the superuser is deactivated; even the system cannot remove them."""
    do_deactivate_user(user=admin, actor=root)
    grant = PlatformRoleGrant.objects.get(user=root)
    before = _state()

    with pytest.raises(PermissionDenied, match=LAST_ADMIN):
        do_revoke_platform_role(grant=grant, actor=None)
    with pytest.raises(PermissionDenied, match=LAST_ADMIN):
        do_deactivate_user(user=root, actor=None)

    assert _state() == before
    assert list(active_platform_admins().values_list("username", flat=True)) == ["root"]


def test_the_last_admin_cannot_revoke_themselves_either(client_for, admin, root):
    """Through the API an admin acts on another admin, who is then not the last: self is refused."""
    do_deactivate_user(user=admin, actor=root)
    before = _state()
    grant = PlatformRoleGrant.objects.get(user=root)

    response = client_for(root).delete(f"/api/platform-roles/{grant.pk}/")

    assert (response.status_code, response.json()) == (403, {"detail": SELF})
    assert _state() == before


@pytest.mark.django_db(transaction=True)
def test_two_admins_revoking_each_other_at_once_leave_one_admin():
    """The row lock: both transactions cannot each see the other admin left."""
    user_model = get_user_model()
    system_admin = user_model.objects.create_superuser("boot", "boot@example.com", PASSWORD)
    first, second = _user("first"), _user("second")
    for user in (first, second):
        do_grant_platform_role(user=user, role=PlatformRole.ADMIN, actor=system_admin)
    do_deactivate_user(user=system_admin, actor=first)
    grants = {user.username: PlatformRoleGrant.objects.get(user=user) for user in (first, second)}
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def revoke(actor_name: str, target_name: str) -> None:
        try:
            actor = user_model.objects.get(username=actor_name)
            barrier.wait(timeout=10)
            do_revoke_platform_role(grant=grants[target_name], actor=actor)
            outcomes[actor_name] = "revoked"
        except PermissionDenied as exc:
            outcomes[actor_name] = str(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=revoke, args=("first", "second")),
        threading.Thread(target=revoke, args=("second", "first")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Serialised either way: the second finds its actor no longer admin (SQLite's BEGIN
    # IMMEDIATE), or passes that check, waits on the lock and finds no admin would remain.
    assert sorted(outcomes) == ["first", "second"]
    assert sorted(outcomes.values()) in ([ONLY_ADMIN, "revoked"], ["revoked", LAST_ADMIN])
    assert active_platform_admins().count() == 1
    assert AuditEvent.objects.filter(action="platform_role.revoke").count() == 1


# Platform roles through the API.


def test_admin_grants_a_platform_role_idempotently_and_compliance_officers_read_them(
    client_for, admin, owner, compliance_officer
):
    last = _last_id()

    first = client_for(admin).post(
        "/api/platform-roles/", {"username": "olivia", "role": "compliance_officer"}, format="json"
    )
    again = client_for(admin).post(
        "/api/platform-roles/", {"username": "olivia", "role": "compliance_officer"}, format="json"
    )
    listed = client_for(compliance_officer).get("/api/platform-roles/")
    own = client_for(owner).get("/api/platform-roles/")

    grant = PlatformRoleGrant.objects.get(user=owner)
    assert first.status_code == again.status_code == 201
    assert first.json() == {
        "id": grant.pk,
        "user": owner.pk,
        "username": "olivia",
        "role": "compliance_officer",
        "created_at": first.json()["created_at"],
    }
    assert _events(last) == [
        (
            "platform_role.grant",
            "admin",
            "olivia as compliance_officer",
            None,
            {"user": "olivia", "role": "compliance_officer"},
        )
    ]
    assert [(row["username"], row["role"]) for row in listed.json()["results"]] == [
        ("carl", "compliance_officer"),
        ("olivia", "compliance_officer"),
    ]
    # olivia now sees all grants too: she is a compliance officer.
    assert len(own.json()["results"]) == 2


def test_platform_role_must_be_a_known_one(client_for, admin, owner):
    before = _state()

    response = client_for(admin).post(
        "/api/platform-roles/", {"username": "olivia", "role": "superuser"}, format="json"
    )

    assert (response.status_code, response.json()) == (400, {"role": ['"superuser" is not a valid choice.']})
    assert _state() == before


def test_a_member_sees_only_their_own_platform_roles(client_for, scientist, compliance_officer):
    assert client_for(scientist).get("/api/platform-roles/").json()["results"] == []


# Users.


def test_admin_creates_a_user_and_the_body_cannot_make_them_staff_or_admin(client_for, admin):
    last = _last_id()

    response = client_for(admin).post(
        "/api/users/",
        {
            "username": "nina",
            "email": "nina@example.com",
            "password": "a-long-unusual-passphrase",
            "is_staff": True,
            "is_superuser": True,
            "is_active": False,
            "platform_roles": ["admin"],
            "memberships": [{"team": 1, "role": "model_owner"}],
        },
        format="json",
    )

    nina = get_user_model().objects.get(username="nina")
    assert response.status_code == 201
    assert response.json() == {
        "id": nina.pk,
        "username": "nina",
        "email": "nina@example.com",
        "is_active": True,
        "date_joined": response.json()["date_joined"],
        "last_login": None,
        "platform_roles": [],
        "memberships": [],
    }
    assert (nina.is_staff, nina.is_superuser, nina.check_password("a-long-unusual-passphrase")) == (
        False,
        False,
        True,
    )
    assert not PlatformRoleGrant.objects.filter(user=nina).exists()
    assert _events(last) == [
        ("user.create", "admin", "nina", None, {"username": "nina", "email": "nina@example.com"})
    ]


def test_a_weak_password_is_refused(client_for, admin):
    response = client_for(admin).post(
        "/api/users/", {"username": "nina", "password": "password"}, format="json"
    )

    assert (response.status_code, response.json()) == (
        400,
        {"password": ["This password is too common."]},
    )
    assert not get_user_model().objects.filter(username="nina").exists()


@pytest.mark.parametrize(
    ("persona", "usernames"),
    [
        ("admin", ["aaron", "admin", "carl", "dana", "nina", "olivia", "oscar", "vera"]),
        ("compliance_officer", ["aaron", "admin", "carl", "dana", "nina", "olivia", "oscar", "vera"]),
        ("viewer", ["aaron", "dana", "olivia", "vera"]),
        ("outsider", ["oscar"]),
    ],
)
def test_users_list_shows_the_people_of_ones_teams(
    request,
    client_for,
    admin,
    owner,
    scientist,
    approver,
    viewer,
    outsider,
    compliance_officer,
    nina,
    persona,
    usernames,
):
    response = client_for(request.getfixturevalue(persona)).get("/api/users/")

    assert [row["username"] for row in response.json()["results"]] == usernames


def test_a_user_shows_only_the_memberships_the_viewer_may_see(
    client_for, admin, scientist, other_team, outsider
):
    do_set_membership(user=scientist, team=other_team, role=TeamRole.VIEWER, actor=admin)

    seen_by_outsider = client_for(outsider).get(f"/api/users/{scientist.pk}/").json()
    seen_by_admin = client_for(admin).get(f"/api/users/{scientist.pk}/").json()

    assert [(m["team_name"], m["role"]) for m in seen_by_outsider["memberships"]] == [("Fraud", "viewer")]
    assert [(m["team_name"], m["role"]) for m in seen_by_admin["memberships"]] == [
        ("Fraud", "viewer"),
        ("Mobility", "data_scientist"),
    ]


def test_deactivation_stops_sessions_and_tokens_and_reactivation_not_the_tokens(
    client, client_for, admin, scientist
):
    _, secret = do_create_api_token(user=scientist, name="ci", actor=scientist)
    token = scientist.api_tokens.get()
    client.force_login(scientist)
    last = _last_id()

    deactivated = client_for(admin).post(f"/api/users/{scientist.pk}/deactivate/")
    with_token = APIClient().get("/api/datasets/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    page = client.get("/")
    again = client_for(admin).post(f"/api/users/{scientist.pk}/deactivate/")
    reactivated = client_for(admin).post(f"/api/users/{scientist.pk}/reactivate/")
    token_after = APIClient().get("/api/datasets/", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert (deactivated.status_code, deactivated.json()["is_active"]) == (200, False)
    assert (with_token.status_code, with_token.json()) == (401, {"detail": "This token was revoked."})
    assert (page.status_code, page["Location"]) == (302, "/login/?next=/")
    assert (again.status_code, again.json()) == (400, {"user": ["dana is already deactivated"]})
    assert (reactivated.status_code, reactivated.json()["is_active"]) == (200, True)
    assert (token_after.status_code, token_after.json()) == (401, {"detail": "This token was revoked."})
    assert _events(last) == [
        (
            "user.deactivate",
            "admin",
            "dana",
            {"is_active": True},
            {"is_active": False, "revoked_tokens": [token.prefix]},
        ),
        ("user.reactivate", "admin", "dana", {"is_active": False}, {"is_active": True}),
    ]


@pytest.mark.parametrize("persona", ["owner", "scientist", "approver", "compliance_officer"])
def test_only_admins_create_deactivate_or_reactivate_users(request, client_for, viewer, persona):
    client = client_for(request.getfixturevalue(persona))
    before = _state()

    answers = [
        client.post("/api/users/", {"username": "nina"}, format="json"),
        client.post(f"/api/users/{viewer.pk}/deactivate/"),
        client.post(f"/api/users/{viewer.pk}/reactivate/"),
    ]

    assert [(a.status_code, a.json()) for a in answers] == [(403, {"detail": ONLY_ADMIN})] * 3
    assert _state() == before


def test_users_cannot_be_changed_or_deleted_through_the_api(client_for, admin, viewer):
    client = client_for(admin)
    before = _state()

    answers = [
        client.patch(f"/api/users/{viewer.pk}/", {"is_superuser": True}, format="json"),
        client.put(f"/api/users/{viewer.pk}/", {"username": "vera", "is_staff": True}, format="json"),
        client.delete(f"/api/users/{viewer.pk}/"),
    ]

    assert [a.status_code for a in answers] == [405, 405, 405]
    assert _state() == before
