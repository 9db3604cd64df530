"""Security fixes around users: the Django admin changes nothing, deactivation ends sessions for
good, request ids are the server's, usernames are normalised before the duplicate check, and
granting a role does not reveal whether a username exists."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.test import Client
from django.urls import reverse

from governance.actions.users import do_deactivate_user, do_reactivate_user
from governance.models import AuditEvent, Membership, PlatformRoleGrant, TeamRole
from tests.conftest import PASSWORD

ONLY_ADMIN = "only a platform admin may do this"
MAY_NOT_MANAGE = "you may not manage objects of this team"


@pytest.fixture
def nina(db):
    """A user in no team."""
    return get_user_model().objects.create_user("nina", "nina@example.com", PASSWORD)


def _user_state() -> list[tuple]:
    return list(
        get_user_model()
        .objects.order_by("pk")
        .values_list("username", "password", "is_active", "is_staff", "is_superuser", "email")
    )


def fullwidth(ascii_name: str) -> str:
    """``ascii_name`` in fullwidth letters (U+FF41...), which NFKC maps back to ASCII."""
    return "".join(chr(ord(letter) + 0xFEE0) for letter in ascii_name)


def _sessions_of(user) -> int:
    return sum(1 for s in Session.objects.all() if s.get_decoded().get(SESSION_KEY) == str(user.pk))


# 1. The Django admin is read-only, users and groups included.


def test_a_superuser_cannot_change_a_user_or_their_password_in_the_django_admin(client, admin, approver):
    client.force_login(admin)
    group = Group.objects.create(name="auditors")
    before, events = _user_state(), AuditEvent.objects.count()
    change_url = f"/admin/auth/user/{approver.pk}/change/"
    password_url = f"/admin/auth/user/{approver.pk}/password/"

    viewed = client.get(change_url)
    changed = client.post(
        change_url,
        {
            "username": "aaron",
            "email": "aaron@example.com",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "date_joined_0": "2024-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    password_form = client.get(password_url)
    reset = client.post(
        password_url,
        {"password1": "a-new-secret-42!", "password2": "a-new-secret-42!", "usable_password": "true"},
    )
    answers = {
        "changed": changed.status_code,
        "password_form": password_form.status_code,
        "reset": reset.status_code,
        "added": client.post("/admin/auth/user/add/", {"username": "mallory"}).status_code,
        "deleted": client.post(f"/admin/auth/user/{approver.pk}/delete/", {"post": "yes"}).status_code,
        "group_changed": client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "x"}).status_code,
        "group_added": client.post("/admin/auth/group/add/", {"name": "admins"}).status_code,
    }
    bulk_delete = client.post(
        "/admin/auth/user/", {"action": "delete_selected", "_selected_action": [approver.pk], "post": "yes"}
    )

    assert viewed.status_code == 200
    assert answers == {key: 403 for key in answers}
    assert bulk_delete.status_code in (200, 302)
    assert _user_state() == before
    assert list(Group.objects.values_list("name", flat=True)) == ["auditors"]
    approver.refresh_from_db()
    assert approver.check_password(PASSWORD)
    assert AuditEvent.objects.count() == events


def test_the_django_admin_lists_users_and_groups_for_reading(client, admin, approver):
    client.force_login(admin)

    users = client.get("/admin/auth/user/")
    groups = client.get("/admin/auth/group/")

    assert (users.status_code, groups.status_code) == (200, 200)
    assert f'href="/admin/auth/user/{approver.pk}/change/"' in users.content.decode()
    assert 'href="/admin/auth/user/add/"' not in users.content.decode()


# 2. Deactivation deletes the user's sessions; reactivation does not bring them back.


@pytest.mark.parametrize(
    "engine", ["django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"]
)
def test_reactivation_does_not_revive_the_sessions_deactivation_ended(
    settings, client_for, admin, scientist, engine
):
    settings.SESSION_ENGINE = engine
    browser, second_browser, admin_browser = Client(), Client(), Client()
    browser.force_login(scientist)
    second_browser.force_login(scientist)
    admin_browser.force_login(admin)
    assert browser.get("/").status_code == 200
    assert _sessions_of(scientist) == 2

    deactivated = client_for(admin).post(f"/api/users/{scientist.pk}/deactivate/")
    sessions_left = _sessions_of(scientist)
    reactivated = client_for(admin).post(f"/api/users/{scientist.pk}/reactivate/")
    page = browser.get("/")
    api = browser.get("/api/datasets/")
    other_page = second_browser.get("/")

    assert (deactivated.status_code, reactivated.status_code) == (200, 200)
    assert sessions_left == 0
    assert (page.status_code, page["Location"]) == (302, "/login/?next=/")
    assert api.status_code == 401
    assert (other_page.status_code, other_page["Location"]) == (302, "/login/?next=/")
    # Only dana's sessions end: the admin's stays.
    assert _sessions_of(admin) == 1
    assert admin_browser.get("/").status_code == 200
    # She logs in again with her password like anyone else.
    login = browser.post(reverse("login"), {"username": "dana", "password": PASSWORD})
    assert (login.status_code, login["Location"]) == (302, "/")
    assert browser.get("/").status_code == 200


def test_deactivation_through_the_ui_ends_the_sessions_too(client, admin, viewer):
    browser = Client()
    browser.force_login(viewer)
    client.force_login(admin)

    response = client.post(reverse("user_deactivate", args=[viewer.pk]))
    do_reactivate_user(user=viewer, actor=admin)

    assert response.status_code == 302
    assert _sessions_of(viewer) == 0
    assert browser.get("/")["Location"] == "/login/?next=/"


def test_a_refused_deactivation_keeps_the_sessions(admin):
    """The system deactivating the only admin is refused (last-admin rule) and rolls back."""
    browser = Client()
    browser.force_login(admin)

    with pytest.raises(PermissionDenied, match="the last platform admin"):
        do_deactivate_user(user=admin, actor=None)

    assert _sessions_of(admin) == 1
    assert browser.get("/").status_code == 200


def test_deactivation_refuses_a_session_engine_it_cannot_search(settings, admin, viewer):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    events = AuditEvent.objects.count()

    with pytest.raises(ImproperlyConfigured, match="keeps no session table"):
        do_deactivate_user(user=viewer, actor=admin)

    viewer.refresh_from_db()
    assert viewer.is_active is True
    assert AuditEvent.objects.count() == events


# 3. The request id is always the server's.


def test_a_client_sent_request_id_is_not_stored_on_audit_events(client_for, scientist, team):
    client = client_for(scientist)

    first = client.post(
        "/api/datasets/", {"team": team.pk, "name": "trips"}, format="json", HTTP_X_REQUEST_ID="req-42.a_b"
    )
    second = client.post(
        "/api/datasets/", {"team": team.pk, "name": "stations"}, format="json", HTTP_X_REQUEST_ID="req-42.a_b"
    )

    assert (first.status_code, second.status_code) == (201, 201)
    ids = [first["X-Request-ID"], second["X-Request-ID"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    assert ids[0] != ids[1]
    stored = list(
        AuditEvent.objects.filter(action="dataset.create").order_by("id").values_list("request_id", flat=True)
    )
    assert stored == ids


# 4. Usernames are normalised (NFKC) before the duplicate check.


def test_a_fullwidth_username_is_a_duplicate_of_its_ascii_form(client_for, admin, approver):
    before, events = _user_state(), AuditEvent.objects.count()

    response = client_for(admin).post("/api/users/", {"username": fullwidth("aaron")}, format="json")

    assert (response.status_code, response.json()) == (400, {"username": ["user 'aaron' already exists"]})
    assert _user_state() == before
    assert AuditEvent.objects.count() == events


def test_a_new_fullwidth_username_is_stored_normalised(client_for, admin):
    response = client_for(admin).post("/api/users/", {"username": fullwidth("nina")}, format="json")

    assert (response.status_code, response.json()["username"]) == (201, "nina")
    assert get_user_model().objects.filter(username="nina").count() == 1
    assert AuditEvent.objects.get(action="user.create").after == {"username": "nina", "email": ""}


@pytest.mark.parametrize(
    ("username", "error"),
    [
        # "½" passes the \w rule but becomes "1", U+2044 FRACTION SLASH, "2", which does not.
        (
            "½",
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        ),
        # The ligature "ﬃ" is 3 letters once normalised: 60 of them pass the 150 limit.
        ("\ufb03" * 60, "Ensure this value has at most 150 characters (it has 180)."),
    ],
)
def test_a_username_invalid_once_normalised_is_refused(client_for, admin, username, error):
    before = _user_state()

    response = client_for(admin).post("/api/users/", {"username": username}, format="json")

    assert (response.status_code, response.json()) == (400, {"username": [error]})
    assert _user_state() == before


def test_the_ui_refuses_a_fullwidth_duplicate_with_the_reason(client, admin, approver):
    client.force_login(admin)
    before = _user_state()

    response = client.post(
        reverse("user_list"), {"username": fullwidth("aaron"), "email": "", "password": ""}
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {"username": ["user 'aaron' already exists"]}
    assert _user_state() == before


# 5. Granting a role does not tell an unauthorised caller whether a username exists.


def _grant_state() -> tuple:
    return (
        list(Membership.objects.order_by("pk").values_list("user_id", "team_id", "role")),
        PlatformRoleGrant.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("persona", ["scientist", "approver", "viewer", "compliance_officer"])
def test_a_team_member_who_may_not_grant_gets_403_whether_or_not_the_user_exists(
    request, client_for, team, nina, persona
):
    client = client_for(request.getfixturevalue(persona))
    before = _grant_state()

    answers = [
        client.post("/api/memberships/", {"username": name, "team": team.pk, "role": "viewer"}, format="json")
        for name in ("nina", "ghost")
    ]

    assert [(a.status_code, a.json()) for a in answers] == [(403, {"detail": MAY_NOT_MANAGE})] * 2
    assert _grant_state() == before


def test_an_outsider_gets_the_same_unknown_team_answer_whether_or_not_the_user_exists(
    client_for, team, outsider, nina
):
    client = client_for(outsider)
    before = _grant_state()

    answers = [
        client.post("/api/memberships/", {"username": name, "team": team.pk, "role": "viewer"}, format="json")
        for name in ("nina", "ghost")
    ]

    hidden = {"team": [f'Invalid pk "{team.pk}" - object does not exist.']}
    assert [(a.status_code, a.json()) for a in answers] == [(400, hidden)] * 2
    assert _grant_state() == before


def test_a_missing_team_is_refused_without_looking_at_the_username(client_for, viewer):
    answers = [
        client_for(viewer).post("/api/memberships/", {"username": name, "role": "viewer"}, format="json")
        for name in ("vera", "ghost")
    ]

    assert [(a.status_code, a.json()) for a in answers] == [(400, {"team": ["This field is required."]})] * 2


def test_a_model_owner_still_learns_that_a_username_is_unknown(client_for, owner, team):
    response = client_for(owner).post(
        "/api/memberships/", {"username": "ghost", "team": team.pk, "role": "viewer"}, format="json"
    )

    assert (response.status_code, response.json()) == (
        400,
        {"username": ["Object with username=ghost does not exist."]},
    )


@pytest.mark.parametrize("persona", ["owner", "viewer", "compliance_officer", "outsider"])
def test_a_non_admin_granting_a_platform_role_gets_403_whether_or_not_the_user_exists(
    request, client_for, nina, persona
):
    client = client_for(request.getfixturevalue(persona))
    before = _grant_state()

    answers = [
        client.post("/api/platform-roles/", {"username": name, "role": "compliance_officer"}, format="json")
        for name in ("nina", "ghost")
    ]

    assert [(a.status_code, a.json()) for a in answers] == [(403, {"detail": ONLY_ADMIN})] * 2
    assert _grant_state() == before


@pytest.mark.parametrize(
    ("persona", "body", "refusal"),
    [
        ("viewer", {"grant": "membership", "role": "viewer"}, "you may not manage the members of any team"),
        ("owner", {"grant": "platform_role", "role": "compliance_officer"}, ONLY_ADMIN),
    ],
)
def test_the_people_page_refuses_before_looking_the_username_up(
    request, client, team, nina, persona, body, refusal
):
    client.force_login(request.getfixturevalue(persona))
    before = _grant_state()

    answers = [
        client.post(reverse("people"), {**body, "team": team.pk, "username": name})
        for name in ("nina", "ghost")
    ]

    assert [a.status_code for a in answers] == [403, 403]
    for answer in answers:
        page = answer.content.decode()
        assert refusal in page
        assert "no active user" not in page
    assert _grant_state() == before


def test_a_team_page_grant_by_a_viewer_is_refused_the_same_either_way(client, team, viewer, nina):
    client.force_login(viewer)

    answers = [
        client.post(
            reverse("team_detail", args=[team.pk]), {"username": name, "team": team.pk, "role": "viewer"}
        )
        for name in ("nina", "ghost")
    ]

    assert [a.status_code for a in answers] == [403, 403]
    assert all("no active user" not in a.content.decode() for a in answers)


def test_a_model_owner_granting_in_another_team_hears_only_about_the_team(
    client, admin, owner, other_team, nina
):
    client.force_login(owner)

    answers = [
        client.post(
            reverse("people"),
            {"grant": "membership", "username": name, "team": other_team.pk, "role": "viewer"},
        )
        for name in ("nina", "ghost")
    ]

    invalid_team = {"team": ["Select a valid choice. That choice is not one of the available choices."]}
    assert [(a.status_code, a.context["membership_form"].errors) for a in answers] == [
        (400, invalid_team)
    ] * 2
    assert not Membership.objects.filter(user=nina).exists()


def test_the_ui_grant_form_accepts_a_fullwidth_username(client, admin, team, nina):
    client.force_login(admin)

    response = client.post(
        reverse("people"),
        {"grant": "membership", "username": fullwidth("nina"), "team": team.pk, "role": "viewer"},
    )

    assert response.status_code == 302
    assert Membership.objects.get(user=nina).role == TeamRole.VIEWER


def test_a_superuser_cannot_switch_off_the_audit_sequencer_in_the_django_admin(client, admin):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every_10_s = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="audit sequencer", task="governance.tasks.sequence_audit_events", interval=every_10_s
    )
    client.force_login(admin)

    page = client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")
    changed = client.post(
        f"/admin/django_celery_beat/periodictask/{task.pk}/change/", {"name": task.name, "enabled": ""}
    )
    deleted = client.post(f"/admin/django_celery_beat/periodictask/{task.pk}/delete/", {"post": "yes"})

    assert (page.status_code, changed.status_code, deleted.status_code) == (200, 403, 403)
    assert PeriodicTask.objects.get(pk=task.pk).enabled is True
