"""Single sign-on (issue 13) against a real OpenID Connect provider: django-oauth-toolkit's, run
by a second Django process (tests/oidc_provider), never a mock of the protocol.

Steward runs as pytest-django's live server; a ``requests`` session plays the browser through
the authorization-code flow (Steward's redirect, the provider's login form, the provider's
redirect back with a code), and Steward's web process exchanges the code, verifies the ID token
against the provider's keys and reads UserInfo over HTTP. The provider is on 127.0.0.1 and
Steward on localhost, so their cookies stay apart as they would on two hosts.
"""

from __future__ import annotations

import html
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from governance.actions.teams import do_create_team, do_set_membership
from governance.actions.users import do_deactivate_user
from tests.conftest import PASSWORD, free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "steward-web"
CLIENT_SECRET = "a-client-secret-for-the-test-provider"
# Who the provider knows, with the groups it sends in the "groups" claim.
PEOPLE = {
    "alice": ["fraud-owners", "fraud-readers", "auditors", "unmapped"],
    "bob": ["fraud-readers"],
    "carol": ["fraud-owners", "mobility-scientists"],
    "dave": ["fraud-readers"],
    "admin": ["fraud-owners"],  # clashes with Steward's local break-glass admin
}
ROLE_MAP = {
    "fraud-owners": "team:fraud:model_owner",
    "fraud-readers": "team:fraud:viewer",
    "mobility-scientists": ["team:mobility:data_scientist"],
    "auditors": "platform:compliance_officer",
}


class Provider:
    def __init__(self, process: subprocess.Popen, base: str, state: Path):
        self.process, self.base, self.state = process, base, state

    @property
    def issuer(self) -> str:
        return f"{self.base}/o"

    def set_groups(self, username: str, groups: list[str]) -> None:
        """Change a person's groups at the provider, as its administrator would."""
        with sqlite3.connect(self.state / "provider.sqlite3") as db:
            (user_id,) = db.execute("SELECT id FROM auth_user WHERE username = ?", (username,)).fetchone()
            db.execute("DELETE FROM auth_user_groups WHERE user_id = ?", (user_id,))
            for name in groups:
                db.execute("INSERT OR IGNORE INTO auth_group (name) VALUES (?)", (name,))
                (group_id,) = db.execute("SELECT id FROM auth_group WHERE name = ?", (name,)).fetchone()
                db.execute(
                    "INSERT INTO auth_user_groups (user_id, group_id) VALUES (?, ?)", (user_id, group_id)
                )


@pytest.fixture
def provider(live_server, tmp_path):
    port = free_port()
    spec = {
        "port": port,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": f"{live_server.url}/oidc/callback/",
        "users": [
            {"username": name, "password": PASSWORD, "email": f"{name}@idp.example", "groups": groups}
            for name, groups in PEOPLE.items()
        ],
    }
    env = {**os.environ, "OIDC_PROVIDER_STATE": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tests.oidc_provider.serve", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "provider.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/o/.well-known/openid-configuration", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError((tmp_path / "provider.log").read_text())
        time.sleep(0.2)
    yield Provider(process, base, tmp_path)
    process.kill()
    process.wait()


@pytest.fixture
def sso(settings, provider):
    """Single sign-on on, as the environment of docs/operations.md sets it."""
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.STEWARD_OIDC_ENABLED = True
    settings.STEWARD_OIDC_ISSUER = provider.issuer
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{provider.issuer}/authorize/"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{provider.issuer}/token/"
    settings.OIDC_OP_USER_ENDPOINT = f"{provider.issuer}/userinfo/"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{provider.issuer}/.well-known/jwks.json"
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.STEWARD_OIDC_ROLE_MAP = json.dumps(ROLE_MAP)
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "governance.oidc.StewardOIDCBackend",
    ]
    return provider


def _form_field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field in:\n{page[:2000]}"
    return html.unescape(match.group(1))


def _to_callback(steward: str, username: str, *, next_page: str = "/models/") -> tuple[requests.Session, str]:
    """Start sign-on at Steward and log in at the provider; returns the browser session and the
    callback URL (with the code) the provider sent it back to, not yet followed."""
    browser = requests.Session()
    login_page = browser.get(f"{steward}/oidc/authenticate/", params={"next": next_page}, timeout=30)
    assert login_page.status_code == 200, login_page.url
    assert "Test identity provider" in login_page.text, login_page.url
    answer = browser.post(
        login_page.url,
        data={
            "csrfmiddlewaretoken": _form_field(login_page.text, "csrfmiddlewaretoken"),
            "username": username,
            "password": PASSWORD,
            "next": _form_field(login_page.text, "next"),
        },
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, answer.text[:2000]
    authorize = browser.get(
        urljoin(login_page.url, answer.headers["Location"]), allow_redirects=False, timeout=30
    )
    assert authorize.status_code == 302, authorize.text[:2000]
    callback = authorize.headers["Location"]
    assert callback.startswith(f"{steward}/oidc/callback/?")
    assert "code=" in callback
    return browser, callback


def _sign_on(
    steward: str, username: str, *, next_page: str = "/models/"
) -> tuple[requests.Session, requests.Response]:
    browser, callback = _to_callback(steward, username, next_page=next_page)
    return browser, browser.get(callback, timeout=30)


def _whoami(steward: str, browser: requests.Session) -> str | None:
    """The username Steward's pages show for this browser (None: not logged in)."""
    page = browser.get(f"{steward}/models/", allow_redirects=False, timeout=30)
    if page.status_code != 200:
        return None
    match = re.search(r'<span class="username">([^<]+)</span>', page.text)
    assert match, "the page header names no user"
    return html.unescape(match.group(1))


def _roles(admin_client, username: str) -> dict[str, str]:
    rows = admin_client.get("/api/memberships/", {"page_size": 100}).json()["results"]
    return {row["team_name"]: row["role"] for row in rows if row["username"] == username}


def _platform_roles(admin_client, username: str) -> set[str]:
    rows = admin_client.get("/api/platform-roles/", {"page_size": 100}).json()["results"]
    return {row["role"] for row in rows if row["username"] == username}


def _oidc_events(admin_client, username: str) -> list[dict]:
    rows = admin_client.get("/api/audit-events/", {"page_size": 200}).json()["results"]
    return [
        row
        for row in rows
        if row["on_behalf_of_label"] == username and row["after"] and row["after"].get("source") == "oidc"
    ]


@pytest.mark.django_db(transaction=True)
def test_first_sign_on_creates_the_login_with_the_roles_its_groups_map_to(
    sso, live_server, admin, team, other_team, client_for
):
    browser, landed = _sign_on(live_server.url, "alice")

    assert landed.status_code == 200
    assert landed.url == f"{live_server.url}/models/"
    assert _whoami(live_server.url, browser) == "alice"
    alice = get_user_model().objects.get(username="alice")
    assert alice.email == "alice@idp.example"
    assert not alice.has_usable_password()
    admin_client = client_for(admin)
    # Two groups give Fraud roles: the higher wins. "unmapped" gives nothing; Mobility is untouched.
    assert _roles(admin_client, "alice") == {"Fraud": "model_owner"}
    assert _platform_roles(admin_client, "alice") == {"compliance_officer"}
    events = {
        (row["action"], tuple(row["after"].get("groups", []))) for row in _oidc_events(admin_client, "alice")
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
            "csrfmiddlewaretoken": _form_field(form.text, "csrfmiddlewaretoken"),
            "username": "admin",
            "password": PASSWORD,
        },
        timeout=30,
    )
    assert _whoami(live_server.url, local) == "admin"


@pytest.mark.django_db(transaction=True)
def test_each_sign_on_follows_the_groups_and_leaves_what_the_map_does_not_name(
    sso, live_server, admin, team, other_team, client_for
):
    admin_client = client_for(admin)
    _sign_on(live_server.url, "carol")
    assert _roles(admin_client, "carol") == {"Fraud": "model_owner", "Mobility": "data_scientist"}
    carol = get_user_model().objects.get(username="carol")
    # A team the map does not name is managed in Steward, and a sign-on leaves it alone.
    governed = do_create_team(name="Pricing", actor=admin)
    do_set_membership(user=carol, team=governed, role="approver", actor=admin)

    sso.set_groups("carol", ["fraud-readers"])
    browser, _landed = _sign_on(live_server.url, "carol")

    assert _whoami(live_server.url, browser) == "carol"
    assert _roles(admin_client, "carol") == {"Fraud": "viewer", "Pricing": "approver"}
    changes = [
        (row["action"], row["before"], tuple(row["after"]["groups"]))
        for row in _oidc_events(admin_client, "carol")
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
    browser, landed = _sign_on(live_server.url, "admin")

    assert landed.url.startswith(f"{live_server.url}/login/")
    assert "already a Steward login that is not linked to this identity" in landed.text
    assert _whoami(live_server.url, browser) is None
    assert _roles(client_for(admin), "admin") == {}  # fraud-owners gave the local admin nothing


@pytest.mark.django_db(transaction=True)
def test_a_deactivated_login_cannot_sign_on_again(sso, live_server, admin, other_team):
    first, _ = _sign_on(live_server.url, "dave")
    assert _whoami(live_server.url, first) == "dave"
    do_deactivate_user(user=get_user_model().objects.get(username="dave"), actor=admin)

    assert _whoami(live_server.url, first) is None  # the session ended with the deactivation
    second, landed = _sign_on(live_server.url, "dave")
    assert "dave is deactivated in Steward" in landed.text
    assert _whoami(live_server.url, second) is None


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_provider_is_a_message_not_a_500(sso, live_server, other_team):
    browser, callback = _to_callback(live_server.url, "bob")
    sso.process.kill()  # the provider goes down between its redirect and Steward's code exchange
    sso.process.wait()

    landed = browser.get(callback, timeout=30)

    assert landed.status_code == 200
    assert landed.url.startswith(f"{live_server.url}/login/")
    assert "Single sign-on failed: the identity provider could not be reached" in landed.text
    assert not get_user_model().objects.filter(username="bob").exists()


@pytest.mark.django_db(transaction=True)
def test_a_token_from_another_issuer_is_refused(sso, settings, live_server, other_team):
    settings.STEWARD_OIDC_ISSUER = "https://login.elsewhere.example/o"

    browser, landed = _sign_on(live_server.url, "bob")

    assert "Single sign-on failed: the token&#x27;s issuer" in landed.text
    assert _whoami(live_server.url, browser) is None
    assert not get_user_model().objects.filter(username="bob").exists()


@pytest.mark.django_db(transaction=True)
def test_a_replayed_callback_is_refused(sso, live_server, other_team):
    """A callback URL seen once (its code and state) signs nobody in elsewhere: not in another
    browser that is itself midway through a sign-on of its own."""
    first, callback = _to_callback(live_server.url, "bob")
    assert first.get(callback, timeout=30).url == f"{live_server.url}/models/"
    other = requests.Session()
    assert (
        other.get(f"{live_server.url}/oidc/authenticate/", allow_redirects=False, timeout=30).status_code
        == 302
    )

    replay = other.get(callback, allow_redirects=False, timeout=30)

    assert replay.status_code == 400
    assert _whoami(live_server.url, other) is None


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
