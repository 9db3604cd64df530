"""The single sign-on tests' provider and browser (tests/governance/test_sso*.py): a real OpenID
Connect provider, django-oauth-toolkit's, in a second Django process (tests/oidc_provider), and
a ``requests`` session that plays the browser through the authorization-code flow."""

from __future__ import annotations

import html
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

from tests.conftest import PASSWORD, free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "steward-web"
CLIENT_SECRET = "a-client-secret-for-the-test-provider"
ROLE_MAP = {
    "fraud-owners": "team:fraud:model_owner",
    "fraud-readers": "team:fraud:viewer",
    "mobility-scientists": ["team:mobility:data_scientist"],
    "auditors": "platform:compliance_officer",
}


class Provider:
    """The provider process, its state folder, and what a test may change there (reset between
    tests: the process serves the whole module)."""

    def __init__(self, steward: str, state: Path, people: dict[str, list[str]]):
        self.steward, self.state, self.people = steward, state, people
        self.process: subprocess.Popen | None = None
        self.base = ""
        self.start()

    @property
    def issuer(self) -> str:
        return f"{self.base}/o"

    def start(self) -> None:
        state = Path(tempfile.mkdtemp(dir=self.state))
        port = free_port()
        spec = {
            "port": port,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": f"{self.steward}/oidc/callback/",
            "users": [
                {"username": name, "password": PASSWORD, "email": f"{name}@idp.example", "groups": groups}
                for name, groups in self.people.items()
            ],
        }
        env = {**os.environ, "OIDC_PROVIDER_STATE": str(state)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tests.oidc_provider.serve", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(state / "provider.log").open("w"),
        )
        self.base, self.database = f"http://127.0.0.1:{port}", state / "provider.sqlite3"
        self.overrides = state / "overrides.json"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.base}/o/.well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((state / "provider.log").read_text())
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def reset(self) -> None:
        """Every person's groups as at the start, no overrides; a stopped provider started again."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.overrides.unlink(missing_ok=True)
        for name, groups in self.people.items():
            self.set_groups(name, groups)

    def set_groups(self, username: str, groups: list[str]) -> None:
        """Change a person's groups at the provider, as its administrator would."""
        with sqlite3.connect(self.database) as db:
            (user_id,) = db.execute("SELECT id FROM auth_user WHERE username = ?", (username,)).fetchone()
            db.execute("DELETE FROM auth_user_groups WHERE user_id = ?", (user_id,))
            for name in groups:
                db.execute("INSERT OR IGNORE INTO auth_group (name) VALUES (?)", (name,))
                (group_id,) = db.execute("SELECT id FROM auth_group WHERE name = ?", (name,)).fetchone()
                db.execute(
                    "INSERT INTO auth_user_groups (user_id, group_id) VALUES (?, ?)", (user_id, group_id)
                )

    def override(self, username: str, **override) -> None:
        """Make the provider send other claims or tokens for ``username`` (tests/oidc_provider/
        validator.py says which)."""
        data = json.loads(self.overrides.read_text()) if self.overrides.exists() else {}
        data[username] = override
        self.overrides.write_text(json.dumps(data))


def form_field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field in:\n{page[:2000]}"
    return html.unescape(match.group(1))


def to_callback(steward: str, username: str, *, next_page: str = "/models/") -> tuple[requests.Session, str]:
    """Start sign-on at Steward and log in at the provider; returns the browser session and the
    callback URL (with the code) the provider sent it back to, not yet followed."""
    browser = requests.Session()
    login_page = browser.get(f"{steward}/oidc/authenticate/", params={"next": next_page}, timeout=30)
    assert login_page.status_code == 200, login_page.url
    assert "Test identity provider" in login_page.text, login_page.url
    answer = browser.post(
        login_page.url,
        data={
            "csrfmiddlewaretoken": form_field(login_page.text, "csrfmiddlewaretoken"),
            "username": username,
            "password": PASSWORD,
            "next": form_field(login_page.text, "next"),
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


def sign_on(
    steward: str, username: str, *, next_page: str = "/models/"
) -> tuple[requests.Session, requests.Response]:
    browser, callback = to_callback(steward, username, next_page=next_page)
    return browser, browser.get(callback, timeout=30)


def whoami(steward: str, browser: requests.Session) -> str | None:
    """The username Steward's pages show for this browser (None: not logged in)."""
    page = browser.get(f"{steward}/models/", allow_redirects=False, timeout=30)
    if page.status_code != 200:
        return None
    match = re.search(r'<span class="username">([^<]+)</span>', page.text)
    assert match, "the page header names no user"
    return html.unescape(match.group(1))


def roles(admin_client, username: str) -> dict[str, str]:
    rows = admin_client.get("/api/memberships/", {"page_size": 100}).json()["results"]
    return {row["team_name"]: row["role"] for row in rows if row["username"] == username}


def platform_roles(admin_client, username: str) -> set[str]:
    rows = admin_client.get("/api/platform-roles/", {"page_size": 100}).json()["results"]
    return {row["role"] for row in rows if row["username"] == username}


def oidc_events(admin_client, username: str) -> list[dict]:
    rows = admin_client.get("/api/audit-events/", {"page_size": 200}).json()["results"]
    return [
        row
        for row in rows
        if row["on_behalf_of_label"] == username and row["after"] and row["after"].get("source") == "oidc"
    ]
