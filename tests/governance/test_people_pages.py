"""The admin pages of the web UI (people, users, teams, roles), API tokens and promotions pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from governance.actions.promotions import do_request_promotion
from governance.actions.tokens import do_create_api_token
from governance.models import (
    ApiToken,
    AuditEvent,
    Membership,
    PlatformRole,
    PlatformRoleGrant,
    Team,
    TeamRole,
)
from tests.conftest import wrong_page_answers
from tests.governance.conftest import PERSONAS

MOBILITY_SIDE = {"admin", "owner", "scientist", "approver", "viewer", "compliance_officer"}


@pytest.fixture
def pages(admin, owner, scientist, approver, viewer, outsider, compliance_officer, registered_version):
    """(url, the personas who get 200; everyone else 404) for every new page."""
    token, _ = do_create_api_token(user=admin, name="admin's", actor=admin)
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    membership = Membership.objects.get(user=viewer)
    grant = PlatformRoleGrant.objects.get(role=PlatformRole.COMPLIANCE_OFFICER)
    everyone = set(PERSONAS)
    return [
        (reverse("people"), everyone),
        (reverse("user_list"), everyone),
        (reverse("team_list"), everyone),
        (reverse("api_token_list"), everyone),
        (reverse("promotion_list"), everyone),
        (reverse("team_detail", args=[membership.team_id]), MOBILITY_SIDE),
        (reverse("membership_revoke", args=[membership.pk]), MOBILITY_SIDE),
        (reverse("user_deactivate", args=[viewer.pk]), MOBILITY_SIDE),
        (reverse("user_reactivate", args=[viewer.pk]), MOBILITY_SIDE),
        (reverse("promotion_detail", args=[promotion.pk]), MOBILITY_SIDE),
        (reverse("promotion_request_create", args=[registered_version.pk]), MOBILITY_SIDE),
        (reverse("platform_role_revoke", args=[grant.pk]), {"admin", "compliance_officer"}),
        (reverse("api_token_revoke", args=[token.pk]), {"admin"}),
    ]


def test_every_new_page_for_every_persona(client, request, pages):
    def expected(persona: str, allowed: set[str]) -> int:
        return 200 if persona in allowed else 404

    assert wrong_page_answers(client, request, pages, PERSONAS, expected) == []


def test_decision_urls_of_another_team_are_404_and_change_nothing(
    client, outsider, scientist, registered_version
):
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    client.force_login(outsider)
    events = AuditEvent.objects.count()

    statuses = [
        client.post(reverse(name, args=[promotion.pk]), {"reason": "x"}).status_code
        for name in ("promotion_approve", "promotion_reject", "promotion_cancel")
    ]

    assert statuses == [404, 404, 404]
    promotion.refresh_from_db()
    assert (promotion.state, AuditEvent.objects.count()) == ("pending", events)


def test_the_admin_pages_open_on_who_has_which_role(client, admin, owner, viewer, compliance_officer):
    client.force_login(admin)
    response = client.get(reverse("people"))
    page = response.content.decode()

    assert "<h1>Who has which role</h1>" in page
    assert [(g.user.username, g.role) for g in response.context["grants"]] == [("carl", "compliance_officer")]
    assert [(m.user.username, m.role) for m in response.context["memberships"]] == [
        ("olivia", "model_owner"),
        ("vera", "viewer"),
    ]
    assert "Grant a team role" in page
    assert "Grant a platform role" in page
    assert '<a href="/people/">People</a>' in client.get("/").content.decode()


def test_a_viewer_sees_the_roles_of_their_team_but_no_forms(client, viewer, owner, compliance_officer):
    client.force_login(viewer)
    response = client.get(reverse("people"))
    page = response.content.decode()

    assert list(response.context["grants"]) == []
    assert [m.user.username for m in response.context["memberships"]] == ["olivia", "vera"]
    assert "Grant a team role" not in page
    assert "Remove</a>" not in page


def test_a_model_owner_may_grant_in_their_team_only(client, owner, team, other_team):
    client.force_login(owner)
    form = client.get(reverse("people")).context["membership_form"]

    assert list(form.fields["team"].queryset) == [team]
    page = client.get(reverse("people")).content.decode()
    assert "Grant a team role" in page
    assert "Grant a platform role" not in page


def test_admin_grants_and_removes_a_team_role_in_the_ui(client, admin, team):
    get_user_model().objects.create_user("nina", "nina@example.com", "x-long-password")
    client.force_login(admin)

    granted = client.post(
        reverse("people"),
        {"grant": "membership", "username": "nina", "team": team.pk, "role": "approver"},
        follow=True,
    )
    membership = Membership.objects.get(user__username="nina")
    confirm = client.get(reverse("membership_revoke", args=[membership.pk])).content.decode()
    removed = client.post(reverse("membership_revoke", args=[membership.pk]))

    assert granted.redirect_chain == [("/people/", 302)]
    assert "nina is now Approver in Mobility." in granted.content.decode()
    assert "Remove nina from Mobility?" in confirm
    assert (removed.status_code, removed["Location"]) == (302, f"/people/teams/{team.pk}/")
    assert not Membership.objects.filter(user__username="nina").exists()
    assert list(
        AuditEvent.objects.filter(action__startswith="membership.", object_repr="nina in Mobility")
        .order_by("id")
        .values_list("action", "actor_label")
    ) == [("membership.grant", "admin"), ("membership.revoke", "admin")]


def test_granting_an_unknown_user_names_the_problem(client, admin, team):
    client.force_login(admin)

    response = client.post(
        reverse("people"), {"grant": "membership", "username": "ghost", "team": team.pk, "role": "viewer"}
    )

    assert response.status_code == 400
    assert response.context["membership_form"].errors == {"username": ["no active user named 'ghost'"]}


def test_a_model_owner_cannot_change_their_own_role_in_the_ui(client, owner, team):
    client.force_login(owner)
    events = AuditEvent.objects.count()

    response = client.post(
        reverse("team_detail", args=[team.pk]), {"username": "olivia", "team": team.pk, "role": "approver"}
    )

    assert response.status_code == 403
    assert "you may not change your own roles" in response.content.decode()
    assert Membership.objects.get(user__username="olivia").role == TeamRole.MODEL_OWNER
    assert AuditEvent.objects.count() == events


def test_a_non_admin_cannot_grant_a_platform_role_in_the_ui(client, owner, viewer):
    client.force_login(owner)

    response = client.post(
        reverse("people"), {"grant": "platform_role", "username": "vera", "role": "compliance_officer"}
    )

    assert response.status_code == 403
    assert "only a platform admin may do this" in response.content.decode()
    assert not PlatformRoleGrant.objects.filter(user=viewer).exists()


def test_admin_grants_and_revokes_a_platform_role_in_the_ui(client, admin, viewer):
    client.force_login(admin)

    granted = client.post(
        reverse("people"), {"grant": "platform_role", "username": "vera", "role": "compliance_officer"}
    )
    grant = PlatformRoleGrant.objects.get(user=viewer)
    revoked = client.post(reverse("platform_role_revoke", args=[grant.pk]))

    assert (granted.status_code, revoked.status_code) == (302, 302)
    assert not PlatformRoleGrant.objects.filter(user=viewer).exists()
    assert list(
        AuditEvent.objects.filter(
            action__startswith="platform_role.", object_repr="vera as compliance_officer"
        )
        .order_by("id")
        .values_list("action", "actor_label")
    ) == [("platform_role.grant", "admin"), ("platform_role.revoke", "admin")]


def test_admin_creates_and_deactivates_a_user_and_a_team_in_the_ui(client, admin):
    client.force_login(admin)

    created = client.post(
        reverse("user_list"), {"username": "nina", "email": "nina@example.com", "password": ""}
    )
    nina = get_user_model().objects.get(username="nina")
    deactivated = client.post(reverse("user_deactivate", args=[nina.pk]))
    team = client.post(reverse("team_list"), {"name": "Risk", "description": "Credit models"})
    listing = client.get(reverse("user_list")).content.decode()

    assert (created.status_code, created["Location"]) == (302, "/people/users/")
    assert nina.has_usable_password() is False
    assert (deactivated.status_code, deactivated["Location"]) == (302, "/people/users/")
    nina.refresh_from_db()
    assert nina.is_active is False
    assert (team.status_code, team["Location"]) == (302, f"/people/teams/{Team.objects.get(name='Risk').pk}/")
    assert f'<a href="/people/users/{nina.pk}/reactivate/">Reactivate</a>' in listing


def test_an_admin_cannot_deactivate_themselves_in_the_ui(client, admin):
    client.force_login(admin)

    response = client.post(reverse("user_deactivate", args=[admin.pk]))

    assert response.status_code == 403
    admin.refresh_from_db()
    assert admin.is_active is True


def test_a_viewer_cannot_create_users_or_teams_in_the_ui(client, viewer):
    client.force_login(viewer)

    user = client.post(reverse("user_list"), {"username": "nina", "email": "", "password": ""})
    team = client.post(reverse("team_list"), {"name": "Risk", "description": ""})

    assert (user.status_code, team.status_code) == (403, 403)
    assert not get_user_model().objects.filter(username="nina").exists()
    assert not Team.objects.filter(name="Risk").exists()


def test_the_token_page_shows_a_new_secret_once_and_revokes(client, scientist):
    client.force_login(scientist)

    created = client.post(reverse("api_token_list"), {"name": "cli", "expires_in_days": "30"})
    token = ApiToken.objects.get()
    secret = created.context["new_secret"]
    later = client.get(reverse("api_token_list")).content.decode()
    revoked = client.post(reverse("api_token_revoke", args=[token.pk]))

    assert created.status_code == 200
    assert created["Cache-Control"] == "no-store"
    assert f'<code id="new-token">{secret}</code>' in created.content.decode()
    assert token.is_read_only is False  # the unchecked box
    assert round((token.expires_at - token.created_at).total_seconds() / 86400) == 30
    assert secret not in later
    assert f"<code>{token.prefix}…</code>" in later
    assert (revoked.status_code, revoked["Location"]) == (302, "/account/tokens/")
    token.refresh_from_db()
    assert token.revoked_at is not None
