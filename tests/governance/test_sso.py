"""Single sign-on (issue 13) against a real OpenID Connect provider: django-oauth-toolkit's, run
by a second Django process (tests/oidc_provider), never a mock of the protocol.

Steward runs as pytest-django's live server; a ``requests`` session plays the browser through
the authorization-code flow (Steward's redirect, the provider's login form, the provider's
redirect back with a code), and Steward's web process exchanges the code, verifies the ID token
against the provider's keys and reads UserInfo over HTTP. The provider is on 127.0.0.1 and
Steward on localhost, so their cookies stay apart as they would on two hosts.
"""

from __future__ import annotations

import re

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from governance.actions.teams import do_create_team, do_set_membership
from governance.actions.users import do_deactivate_user
from tests.conftest import PASSWORD
from tests.governance.sso_helpers import (
    Provider,
    form_field,
    oidc_events,
    platform_roles,
    roles,
    sign_on,
    to_callback,
    whoami,
)

# Who the provider knows, with the groups it sends in the "groups" claim.
PEOPLE = {
    "alice": ["fraud-owners", "fraud-readers", "auditors", "unmapped"],
    "bob": ["fraud-readers"],
    "carol": ["fraud-owners", "mobility-scientists"],
    "dave": ["fraud-readers"],
    "admin": ["fraud-owners"],  # clashes with Steward's local break-glass admin
}


@pytest.fixture(scope="module")
def provider_process(live_server, tmp_path_factory):
    """One provider for the module's tests: starting one takes seconds."""
    provider = Provider(live_server.url, tmp_path_factory.mktemp("oidc-provider"), PEOPLE)
    yield provider
    provider.stop()


@pytest.mark.django_db(transaction=True)
def test_first_sign_on_creates_the_login_with_the_roles_its_groups_map_to(
    sso, live_server, admin, team, other_team, client_for
):
    browser, landed = sign_on(live_server.url, "alice")

    assert landed.status_code == 200
    assert landed.url == f"{live_server.url}/models/"
    assert whoami(live_server.url, browser) == "alice"
    alice = get_user_model().objects.get(username="alice")
    assert alice.email == "alice@idp.example"
    assert not alice.has_usable_password()
    admin_client = client_for(admin)
    # Two groups give Fraud roles: the higher wins. "unmapped" gives nothing; Mobility is untouched.
    assert roles(admin_client, "alice") == {"Fraud": "model_owner"}
    assert platform_roles(admin_client, "alice") == {"compliance_officer"}
    events = {
        (row["action"], tuple(row["after"].get("groups", []))) for row in oidc_events(admin_client, "alice")
    }
    assert events == {
        ("user.create", ()),
        ("membership.grant", ("fraud-owners",)),
        ("platform_role.grant", ("auditors",)),
    }
    # The role works: a compliance officer reads every team's audit trail through the API.
    audit = browser.get(f"{live_server.url}/api/audit-events/", timeout=30)
    assert audit.status_code == 200
    assert {row["action"] for row in audit.json()["results"]} >= {"team.create", "user.create"}

    # The break-glass admin still logs in with a password beside single sign-on.
    local = requests.Session()
    form = local.get(f"{live_server.url}/login/", timeout=30)
    assert "Log in with single sign-on" in form.text
    local.post(
        f"{live_server.url}/login/",
        data={
            "csrfmiddlewaretoken": form_field(form.text, "csrfmiddlewaretoken"),
            "username": "admin",
            "password": PASSWORD,
        },
        timeout=30,
    )
    assert whoami(live_server.url, local) == "admin"


@pytest.mark.django_db(transaction=True)
def test_each_sign_on_follows_the_groups_and_leaves_what_the_map_does_not_name(
    sso, live_server, admin, team, other_team, client_for
):
    admin_client = client_for(admin)
    sign_on(live_server.url, "carol")
    assert roles(admin_client, "carol") == {"Fraud": "model_owner", "Mobility": "data_scientist"}
    carol = get_user_model().objects.get(username="carol")
    # A team the map does not name is managed in Steward, and a sign-on leaves it alone.
    governed = do_create_team(name="Pricing", actor=admin)
    do_set_membership(user=carol, team=governed, role="approver", actor=admin)

    sso.set_groups("carol", ["fraud-readers"])
    browser, _landed = sign_on(live_server.url, "carol")

    assert whoami(live_server.url, browser) == "carol"
    assert roles(admin_client, "carol") == {"Fraud": "viewer", "Pricing": "approver"}
    changes = [
        (row["action"], row["before"], tuple(row["after"]["groups"]))
        for row in oidc_events(admin_client, "carol")
        if row["action"].startswith("membership.")
    ]
    assert ("membership.grant", {"role": "model_owner"}, ("fraud-readers",)) in changes
    assert (
        "membership.revoke",
        {"user": "carol", "team": "Mobility", "role": "data_scientist"},
        (),
    ) in changes


@pytest.mark.django_db(transaction=True)
def test_a_provider_name_never_takes_over_a_local_login(sso, live_server, admin, other_team, client_for):
    browser, landed = sign_on(live_server.url, "admin")

    assert landed.url.startswith(f"{live_server.url}/login/")
    assert "already a Steward login that is not linked to this identity" in landed.text
    assert whoami(live_server.url, browser) is None
    assert roles(client_for(admin), "admin") == {}  # fraud-owners gave the local admin nothing


@pytest.mark.django_db(transaction=True)
def test_a_deactivated_login_cannot_sign_on_again(sso, live_server, admin, other_team):
    first, _ = sign_on(live_server.url, "dave")
    assert whoami(live_server.url, first) == "dave"
    do_deactivate_user(user=get_user_model().objects.get(username="dave"), actor=admin)

    assert whoami(live_server.url, first) is None  # the session ended with the deactivation
    second, landed = sign_on(live_server.url, "dave")
    assert "dave is deactivated in Steward" in landed.text
    assert whoami(live_server.url, second) is None


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_provider_is_a_message_not_a_500(sso, live_server, other_team):
    browser, callback = to_callback(live_server.url, "bob")
    sso.stop()  # the provider goes down between its redirect and Steward's code exchange

    landed = browser.get(callback, timeout=30)

    assert landed.status_code == 200
    assert landed.url.startswith(f"{live_server.url}/login/")
    assert "Single sign-on failed: the identity provider could not be reached" in landed.text
    assert not get_user_model().objects.filter(username="bob").exists()


@pytest.mark.django_db(transaction=True)
def test_a_token_from_another_issuer_is_refused(sso, settings, live_server, other_team):
    settings.STEWARD_OIDC_ISSUER = "https://login.elsewhere.example/o"

    browser, landed = sign_on(live_server.url, "bob")

    assert "Single sign-on failed: the token&#x27;s issuer" in landed.text
    assert whoami(live_server.url, browser) is None
    assert not get_user_model().objects.filter(username="bob").exists()


@pytest.mark.django_db(transaction=True)
def test_a_replayed_callback_is_refused(sso, live_server, other_team):
    """A callback URL seen once (its code and state) signs nobody in elsewhere: not in another
    browser that is itself midway through a sign-on of its own."""
    first, callback = to_callback(live_server.url, "bob")
    assert first.get(callback, timeout=30).url == f"{live_server.url}/models/"
    other = requests.Session()
    assert (
        other.get(f"{live_server.url}/oidc/authenticate/", allow_redirects=False, timeout=30).status_code
        == 302
    )

    replay = other.get(callback, allow_redirects=False, timeout=30)

    assert replay.status_code == 400
    assert whoami(live_server.url, other) is None


def test_single_sign_on_is_off_without_its_environment(client, settings):
    assert settings.STEWARD_OIDC_ENABLED is False
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "x", "state": "y"}).status_code == 404
    assert "single sign-on" not in client.get("/login/").content.decode()


@pytest.mark.parametrize(
    ("role_map", "message"),
    [
        ("{not json", "is not JSON"),
        ('["team:fraud:viewer"]', "must be a JSON object"),
        ('{"g": "team:fraud:boss"}', "needs a team slug and one of the team roles"),
        ('{"g": "platform:root"}', "neither 'team:<slug>:<role>' nor 'platform:<role>'"),
    ],
)
def test_a_malformed_role_map_fails_the_system_check(settings, role_map, message):
    settings.STEWARD_OIDC_ROLE_MAP = role_map
    with pytest.raises(SystemCheckError, match=re.escape(message)):
        call_command("check")
