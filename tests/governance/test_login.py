"""Login hardening: throttling (django-axes), session key rotation, CSRF on every form."""

from __future__ import annotations

import datetime
import re

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from governance.actions.promotions import do_request_promotion
from governance.actions.tokens import do_create_api_token
from governance.models import (
    ApiToken,
    AuditEvent,
    Membership,
    PlatformRole,
    PlatformRoleGrant,
    PromotionRequest,
    Team,
)
from tests.conftest import PASSWORD

LOCKED = "Too many failed logins: try again in 15 minutes."


def _login(client: Client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_five_failures_lock_the_username_and_address_for_fifteen_minutes(client, scientist):
    failures = [_login(client, "dana", f"guess-{n}").status_code for n in range(5)]
    locked = _login(client, "dana", PASSWORD)

    # The first four re-show the form (200); the fifth reaches the limit and is answered 429.
    assert failures == [200, 200, 200, 200, 429]
    assert locked.status_code == 429
    assert LOCKED in locked.content.decode()
    assert SESSION_KEY not in client.session
    # The attempt made while locked counts too, and restarts the cool-off.
    assert AccessAttempt.objects.get().failures_since_start == 6


def test_the_lock_holds_the_pair_only_and_lifts_after_the_cool_off(client, scientist, viewer):
    for n in range(5):
        _login(client, "dana", f"guess-{n}")

    other_address = _login(Client(), "dana", PASSWORD, address="10.0.0.7")
    other_user = _login(Client(), "vera", PASSWORD)
    AccessAttempt.objects.update(attempt_time=timezone.now() - datetime.timedelta(minutes=16))
    after_cool_off = _login(client, "dana", PASSWORD)

    assert (other_address.status_code, other_address["Location"]) == (302, "/")
    assert (other_user.status_code, other_user["Location"]) == (302, "/")
    assert (after_cool_off.status_code, after_cool_off["Location"]) == (302, "/")


def test_password_spraying_locks_the_address_across_usernames(client, scientist, settings):
    """Issue 13: one password tried on many usernames stays under every pair's limit; the
    address's total is limited too (STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT), for that address only."""
    settings.STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT = 12
    sprayer = Client()
    answers = [_login(sprayer, f"user-{n}", "Winter2026!", address="10.9.9.9").status_code for n in range(12)]
    right_password = _login(sprayer, "dana", PASSWORD, address="10.9.9.9")
    elsewhere = _login(Client(), "dana", PASSWORD, address="10.0.0.8")

    # Each username failed once (never 5 times); the twelfth failure from the address locks it.
    assert answers == [200] * 11 + [429]
    assert right_password.status_code == 429
    assert LOCKED in right_password.content.decode()
    assert (elsewhere.status_code, elsewhere["Location"]) == (302, "/")

    AccessAttempt.objects.update(attempt_time=timezone.now() - datetime.timedelta(minutes=16))
    after_cool_off = _login(Client(), "dana", PASSWORD, address="10.9.9.9")
    assert after_cool_off.status_code == 302, after_cool_off.content.decode()[-600:]
    assert after_cool_off["Location"] == "/"


def test_behind_a_counted_proxy_the_sprayer_alone_is_locked(client, scientist, settings):
    """With STEWARD_PROXY_COUNT=1 (one proxy appends the client to X-Forwarded-For), clients that
    share the proxy's REMOTE_ADDR are told apart: the sprayer's address is locked, not the proxy's."""
    settings.STEWARD_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    settings.STEWARD_PROXY_COUNT = 1

    def via_proxy(client_address: str, username: str, password: str):
        return Client().post(
            reverse("login"),
            {"username": username, "password": password},
            REMOTE_ADDR="10.0.0.1",
            # What one nginx sends: the address it was reached from, after whatever the client
            # claimed itself (a forged left part is not believed).
            HTTP_X_FORWARDED_FOR=f"192.0.2.250, {client_address}",
        )

    answers = [via_proxy("203.0.113.7", f"user-{n}", "Winter2026!").status_code for n in range(6)]
    sprayer = via_proxy("203.0.113.7", "dana", PASSWORD)
    colleague = via_proxy("198.51.100.4", "dana", PASSWORD)

    assert answers == [200] * 5 + [429]
    assert sprayer.status_code == 429
    assert (colleague.status_code, colleague["Location"]) == (302, "/")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}


def test_a_successful_login_resets_the_failures(client, scientist):
    for n in range(4):
        _login(client, "dana", f"guess-{n}")
    _login(client, "dana", PASSWORD)
    client.logout()

    answers = [_login(client, "dana", f"again-{n}").status_code for n in range(4)]

    assert answers == [200, 200, 200, 200]


def test_the_token_endpoint_shares_the_throttle_and_answers_429_in_json(scientist):
    client = APIClient()

    failures = [
        client.post(
            "/api/auth/token/", {"username": "dana", "password": f"guess-{n}"}, format="json"
        ).status_code
        for n in range(5)
    ]
    locked = client.post("/api/auth/token/", {"username": "dana", "password": PASSWORD}, format="json")

    assert failures == [400, 400, 400, 400, 429]
    assert (locked.status_code, locked.json()) == (429, {"detail": LOCKED})
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="api_token.create").exists()


def test_login_rotates_the_session_key(client, scientist):
    session = client.session
    session["seen_before_login"] = True
    session.save()
    before = session.session_key

    response = _login(client, "dana", PASSWORD)

    after = client.cookies["sessionid"].value
    assert response.status_code == 302
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()
    assert Session.objects.get(session_key=after).get_decoded()[SESSION_KEY] == str(scientist.pk)


def test_login_itself_needs_csrf(scientist):
    client = Client(enforce_csrf_checks=True)

    response = _login(client, "dana", PASSWORD)

    assert response.status_code == 403
    assert SESSION_KEY not in client.session


@pytest.fixture
def targets(admin, team, viewer, compliance_officer, scientist, registered_version):
    """The objects each form acts on, with a pending request and one of dana's tokens."""
    token, _ = do_create_api_token(user=admin, name="admin's", actor=admin)
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    return {
        "membership": Membership.objects.get(user=viewer),
        "grant": PlatformRoleGrant.objects.get(role=PlatformRole.COMPLIANCE_OFFICER),
        "token": token,
        "promotion": promotion,
        "version": registered_version,
    }


def _forms(targets, team, viewer) -> list[tuple[str, dict]]:
    """(URL, a valid POST body) for every form of the people, token and promotion pages."""
    return [
        (reverse("people"), {"grant": "membership", "username": "vera", "team": team.pk, "role": "approver"}),
        (reverse("people"), {"grant": "platform_role", "username": "vera", "role": "compliance_officer"}),
        (reverse("user_list"), {"username": "nina", "email": "", "password": ""}),
        (reverse("user_deactivate", args=[viewer.pk]), {}),
        (reverse("team_list"), {"name": "Risk", "description": ""}),
        (reverse("team_detail", args=[team.pk]), {"username": "vera", "team": team.pk, "role": "approver"}),
        (reverse("membership_revoke", args=[targets["membership"].pk]), {}),
        (reverse("platform_role_revoke", args=[targets["grant"].pk]), {}),
        (reverse("api_token_list"), {"name": "cli", "is_read_only": "on", "expires_in_days": ""}),
        (reverse("api_token_revoke", args=[targets["token"].pk]), {}),
        (
            reverse("promotion_request_create", args=[targets["version"].pk]),
            {"alias": "staging", "reason": ""},
        ),
        (reverse("promotion_approve", args=[targets["promotion"].pk]), {"reason": ""}),
        (reverse("promotion_reject", args=[targets["promotion"].pk]), {"reason": "no"}),
        (reverse("promotion_cancel", args=[targets["promotion"].pk]), {}),
    ]


def _state() -> dict:
    return {
        "memberships": list(Membership.objects.values_list("user_id", "team_id", "role").order_by("pk")),
        "grants": PlatformRoleGrant.objects.count(),
        "teams": Team.objects.count(),
        "tokens": list(ApiToken.objects.values_list("pk", "revoked_at").order_by("pk")),
        "promotions": list(PromotionRequest.objects.values_list("pk", "state").order_by("pk")),
        "events": AuditEvent.objects.count(),
    }


def test_every_form_refuses_a_post_without_the_csrf_token(admin, team, viewer, targets):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    before = _state()

    statuses = {url: client.post(url, body).status_code for url, body in _forms(targets, team, viewer)}

    assert set(statuses.values()) == {403}
    assert _state() == before


def test_every_post_form_on_the_new_pages_carries_the_csrf_token(client, admin, team, viewer, targets):
    client.force_login(admin)
    pages = [
        reverse("people"),
        reverse("user_list"),
        reverse("team_list"),
        reverse("team_detail", args=[team.pk]),
        reverse("api_token_list"),
        reverse("promotion_detail", args=[targets["promotion"].pk]),
        targets["version"].get_absolute_url(),
    ]

    for url in pages:
        html = client.get(url).content.decode()
        forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", html, flags=re.S)
        assert forms, url
        assert all('name="csrfmiddlewaretoken"' in form for form in forms), url
