"""API tokens: hashed at rest, shown once, read-only or read-write, expiring, revocable."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from governance.actions.tokens import do_create_api_token, do_revoke_api_token
from governance.actions.users import do_deactivate_user
from governance.models import ApiToken, AuditEvent, Dataset
from tests.conftest import PASSWORD

READ_ONLY = {"detail": "this API token is read-only; use a read-write token to change anything"}


def _bearer(secret: str, keyword: str = "Bearer") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {secret}")
    return client


@pytest.fixture
def read_write(scientist):
    token, secret = do_create_api_token(user=scientist, name="ci", is_read_only=False, actor=scientist)
    return token, secret


@pytest.fixture
def read_only(scientist):
    token, secret = do_create_api_token(user=scientist, name="dashboards", actor=scientist)
    return token, secret


def test_creating_a_token_shows_the_secret_once_and_stores_only_its_hash(client_for, scientist):
    client = client_for(scientist)

    created = client.post("/api/tokens/", {"name": "nightly", "is_read_only": False}, format="json")
    listed = client.get("/api/tokens/")

    secret = created.json()["token"]
    token = ApiToken.objects.get()
    assert created.status_code == 201
    assert created.json() == {
        "token": secret,
        "id": token.pk,
        "name": "nightly",
        "prefix": secret[:12],
        "is_read_only": False,
        "scope": "user",
        "registered_model": None,
        "state": "active",
        "expires_at": created.json()["expires_at"],
        "last_used_at": None,
        "revoked_at": None,
        "created_at": created.json()["created_at"],
    }
    # No expiry asked for: 90 days (STEWARD_API_TOKEN_DAYS), not never (issue 14).
    assert round((token.expires_at - token.created_at).total_seconds() / 86400) == 90
    assert secret.startswith("stw_")
    assert len(secret) == 47
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiToken.objects.values().get())
    assert "token" not in listed.json()["results"][0]
    event = AuditEvent.objects.get(action="api_token.create")
    assert event.after == {
        "user": "dana",
        "name": "nightly",
        "prefix": secret[:12],
        "is_read_only": False,
        "expires_at": token.expires_at.isoformat(),
    }
    assert secret not in str(event.after)
    never = client.post("/api/tokens/", {"name": "forever", "expires_at": None}, format="json")
    assert (never.status_code, never.json()["expires_at"]) == (201, None)
    assert token.key_hash not in str(event.after)


def test_the_body_cannot_choose_the_owner_hash_or_state_of_a_token(client_for, scientist, outsider):
    response = client_for(scientist).post(
        "/api/tokens/",
        {
            "name": "mine",
            "user": outsider.pk,
            "key_hash": "0" * 64,
            "prefix": "stw_chosen",
            "token": "stw_chosen-secret",
            "revoked_at": "2001-01-01T00:00:00Z",
            "last_used_at": "2001-01-01T00:00:00Z",
        },
        format="json",
    )

    token = ApiToken.objects.get()
    assert response.status_code == 201
    assert (token.user, token.revoked_at, token.last_used_at, token.is_read_only) == (
        scientist,
        None,
        None,
        True,
    )
    assert token.key_hash == hashlib.sha256(response.json()["token"].encode()).hexdigest()
    assert token.prefix == response.json()["token"][:12] != "stw_chosen"


@pytest.mark.parametrize("keyword", ["Bearer", "Token", "bearer"])
def test_bearer_and_token_keywords_authenticate(world, read_write, keyword):
    _, secret = read_write

    response = _bearer(secret, keyword).get("/api/datasets/")

    assert response.status_code == 200
    assert {row["name"] for row in response.json()["results"]} == {"bike-sharing-hourly", "bike-sharing-2012"}


def test_a_read_write_token_writes_as_its_user(world, read_write, scientist):
    _, secret = read_write

    response = _bearer(secret).post(
        "/api/datasets/", {"team": world.team.pk, "name": "by-token"}, format="json"
    )

    assert response.status_code == 201
    event = AuditEvent.objects.get(action="dataset.create", object_id=str(response.json()["id"]))
    assert event.actor == scientist


def test_a_read_only_token_reads_but_every_unsafe_method_is_403(world, read_only, scientist):
    _, secret = read_only
    client = _bearer(secret)
    datasets, events = Dataset.objects.count(), AuditEvent.objects.count()

    read = client.get("/api/datasets/")
    answers = [
        client.post("/api/datasets/", {"team": world.team.pk, "name": "planted"}, format="json"),
        client.post(f"/api/jobs/{world.job.pk}/cancel/"),
        client.post("/api/tokens/", {"name": "escalate", "is_read_only": False}, format="json"),
        client.patch(
            f"/api/memberships/{world.team.memberships.first().pk}/", {"role": "viewer"}, format="json"
        ),
        client.put(f"/api/datasets/{world.dataset.pk}/", {"name": "renamed"}, format="json"),
        client.delete(f"/api/datasets/{world.dataset.pk}/"),
    ]

    assert read.status_code == 200
    assert [(a.status_code, a.json()) for a in answers] == [(403, READ_ONLY)] * 6
    assert (Dataset.objects.count(), AuditEvent.objects.count()) == (datasets, events)
    assert ApiToken.objects.filter(user=scientist).count() == 1


def test_expired_revoked_and_unknown_tokens_are_401_with_the_reason(world, scientist):
    expires = timezone.now() + datetime.timedelta(days=1)
    expiring, expiring_secret = do_create_api_token(
        user=scientist, name="short", expires_at=expires, actor=scientist
    )
    revoked, revoked_secret = do_create_api_token(user=scientist, name="old", actor=scientist)
    do_revoke_api_token(token=revoked, actor=scientist)
    ApiToken.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    expiring.refresh_from_db()

    answers = [
        _bearer(expiring_secret).get("/api/datasets/"),
        _bearer(revoked_secret).get("/api/datasets/"),
        _bearer("stw_" + "x" * 43).get("/api/datasets/"),
        _bearer("").get("/api/datasets/"),
        _bearer("two words").get("/api/datasets/"),
    ]

    assert [(a.status_code, a.json()) for a in answers] == [
        (401, {"detail": f"This token expired at {expiring.expires_at.isoformat()}."}),
        (401, {"detail": "This token was revoked."}),
        (401, {"detail": "Invalid token."}),
        (401, {"detail": "Invalid token header: send 'Bearer <token>'."}),
        (401, {"detail": "Invalid token header: send 'Bearer <token>'."}),
    ]
    assert all(a["WWW-Authenticate"] == 'Bearer realm="api"' for a in answers)


def test_a_token_of_a_user_deactivated_out_of_band_is_401(world, read_write, scientist):
    """Deactivation revokes tokens; this covers a flag flipped outside the action (a shell)."""
    _, secret = read_write
    get_user_model().objects.filter(pk=scientist.pk).update(is_active=False)

    response = _bearer(secret).get("/api/datasets/")

    assert (response.status_code, response.json()) == (401, {"detail": "This token's user is deactivated."})


def test_last_used_is_written_at_most_once_a_minute(world, read_only):
    token, secret = read_only
    client = _bearer(secret)

    client.get("/api/teams/")
    token.refresh_from_db()
    first_use = token.last_used_at
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/teams/")
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - datetime.timedelta(seconds=61))
    client.get("/api/teams/")
    token.refresh_from_db()

    assert first_use is not None
    assert [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")] == []
    assert token.last_used_at > first_use
    assert AuditEvent.objects.filter(action__startswith="api_token.use").count() == 0


def test_revoking_ones_own_token_once_and_never_anothers(client_for, read_only, outsider, scientist):
    token, _ = read_only

    theirs = client_for(outsider).post(f"/api/tokens/{token.pk}/revoke/")
    mine = client_for(scientist).post(f"/api/tokens/{token.pk}/revoke/")
    again = client_for(scientist).post(f"/api/tokens/{token.pk}/revoke/")

    assert (theirs.status_code, theirs.json()) == (404, {"detail": "No ApiToken matches the given query."})
    assert (mine.status_code, mine.json()["state"]) == (200, "revoked")
    assert (again.status_code, again.json()) == (
        400,
        {"token": [f"token {token.prefix}… is already revoked"]},
    )
    assert list(
        AuditEvent.objects.filter(action="api_token.revoke").values_list("actor_label", flat=True)
    ) == ["dana"]


def test_an_expiry_in_the_past_is_refused(client_for, scientist):
    response = client_for(scientist).post(
        "/api/tokens/", {"name": "late", "expires_at": "2001-01-01T00:00:00Z"}, format="json"
    )

    assert (response.status_code, response.json()) == (
        400,
        {"expires_at": ["the expiry must be in the future"]},
    )
    assert not ApiToken.objects.exists()


def test_the_token_endpoint_issues_read_only_tokens_unless_asked_and_refuses_inactive_users(
    scientist, viewer, admin
):
    client = APIClient()
    expires = (timezone.now() + datetime.timedelta(days=30)).isoformat()

    default = client.post("/api/auth/token/", {"username": "dana", "password": PASSWORD}, format="json")
    expiring = client.post(
        "/api/auth/token/",
        {"username": "dana", "password": PASSWORD, "name": "monthly", "expires_at": expires},
        format="json",
    )
    do_deactivate_user(user=viewer, actor=admin)
    inactive = client.post("/api/auth/token/", {"username": "vera", "password": PASSWORD}, format="json")

    assert (default.status_code, default.json()["name"], default.json()["is_read_only"]) == (
        201,
        "script",
        True,
    )
    assert (expiring.status_code, expiring.json()["expires_at"] is not None) == (201, True)
    assert (inactive.status_code, inactive.json()) == (
        400,
        {"non_field_errors": ["Unable to log in with provided credentials."]},
    )
    assert list(ApiToken.objects.filter(user=viewer)) == []
    scientist.refresh_from_db()
    assert scientist.last_login is not None


def test_only_the_owner_creates_their_tokens(scientist, owner):
    events = AuditEvent.objects.count()

    with pytest.raises(PermissionDenied, match="API tokens are created by their own user"):
        do_create_api_token(user=scientist, name="planted", actor=owner)

    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.count() == events
