"""Issue 13: health endpoints, HTTPS hardening read from the environment, and the site's
Content-Security-Policy.

The health checks run against the real database, broker and artifact folder of the test run;
the failures are real ones (a broker port nobody listens on, an artifact root that is a file, an
audit event the sequencer has not reached), never a mocked check.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from config.celery import app
from governance.actions.teams import do_create_team
from governance.tasks import sequence_audit_events

ROOT = Path(django_settings.BASE_DIR)

# Health checks run in the library's threads: they see committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)


def health(client, path: str) -> tuple[int, dict[str, str]]:
    """(status, {check: "OK" or its failure}) of a health endpoint asked for JSON."""
    response = client.get(path, HTTP_ACCEPT="application/json")
    return response.status_code, response.json()


def by_check(answer: dict[str, str]) -> dict[str, str]:
    """The answer keyed by check class name (the library keys it by the check's repr)."""
    return {key.split("(")[0]: value for key, value in answer.items()}


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_liveness_answers_without_a_login_or_any_dependency(client):
    assert health(client, "/health/live/") == (200, {})


def test_readiness_checks_the_database_the_broker_and_the_artifact_store(client):
    status, answer = health(client, "/health/ready/")

    assert status == 200
    assert by_check(answer) == {"Database": "OK", "Broker": "OK", "ArtifactStore": "OK"}


def test_readiness_is_503_naming_an_unreachable_broker(client, monkeypatch):
    # A Redis URL on a port nobody listens on: the connection is refused for real. (Celery reads
    # CELERY_BROKER_URL from the environment before its configuration.)
    nowhere = f"redis://127.0.0.1:{closed_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", nowhere)
    monkeypatch.setattr(app.conf, "broker_url", nowhere)

    status, answer = health(client, "/health/ready/")

    assert status == 503
    checks = by_check(answer)
    assert "the broker does not accept connections (" in checks["Broker"]
    assert (checks["Database"], checks["ArtifactStore"]) == ("OK", "OK")
    assert "127.0.0.1" not in checks["Broker"]  # names the failure, not where the broker is


def test_readiness_is_503_when_the_artifact_store_cannot_be_written(client, settings, tmp_path):
    not_a_folder = tmp_path / "artifacts"
    not_a_folder.write_text("a file where the artifact folder should be")
    settings.ARTIFACT_ROOT = not_a_folder

    status, answer = health(client, "/health/ready/")

    assert status == 503
    assert "the artifact store cannot be written (File exists)" in by_check(answer)["ArtifactStore"]


def test_health_reports_an_audit_sequencer_that_fell_behind(client, settings, admin):
    settings.STEWARD_HEALTH_SEQUENCER_LAG_S = 0.0
    sequence_audit_events()
    assert health(client, "/health/")[0] == 200

    do_create_team(name="Late", actor=admin)  # an audit event the sequencer has not reached
    status, answer = health(client, "/health/")
    ready_status, _ = health(client, "/health/ready/")

    assert status == 503
    assert "the audit sequencer is" in by_check(answer)["AuditSequencer"]
    assert ready_status == 200  # a stalled sequencer takes no process out of the balancer

    sequence_audit_events()
    assert health(client, "/health/")[0] == 200


def _deploy_check(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SECURE_", "SESSION_"))}
    env |= {"SECRET_KEY": secrets.token_urlsafe(50), "DEBUG": "false"} | extra
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_deploy_check_passes_with_the_documented_production_environment():
    documented = {}
    for line in (ROOT / "config" / "production.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            documented[name] = value

    passed = _deploy_check(documented)
    plain = _deploy_check({})

    assert passed.returncode == 0, passed.stderr
    assert "no issues" in passed.stdout
    # Without it, the settings Django warns about are each named: the environment is what sets them.
    assert plain.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in plain.stderr


def test_https_settings_redirect_mark_cookies_secure_and_trust_the_proxy(client, settings, scientist):
    from tests.conftest import PASSWORD

    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600

    plain = client.get("/login/")
    probe = client.get("/health/live/", HTTP_ACCEPT="application/json")
    proxied = client.post(
        "/login/",
        {"username": scientist.username, "password": PASSWORD},
        HTTP_X_FORWARDED_PROTO="https",
    )

    assert (plain.status_code, plain["Location"]) == (301, "https://testserver/login/")
    assert probe.status_code == 200  # probes reach the plain-HTTP port inside the cluster
    assert proxied.status_code == 302
    assert proxied.cookies["sessionid"]["secure"] is True
    assert proxied["Strict-Transport-Security"] == "max-age=3600"


def test_every_page_carries_a_strict_content_security_policy(client, compliance_officer):
    def policy_of(path: str) -> dict[str, str]:
        response = client.get(path)
        assert response.status_code == 200, path
        header = response["Content-Security-Policy"]
        assert "unsafe" not in header, path
        return dict(directive.strip().split(" ", 1) for directive in header.split(";"))

    pages = ["/login/"]
    client.force_login(compliance_officer)
    pages += ["/", "/models/", "/audit/", "/lineage/", "/api/docs/"]
    policies = [policy_of(path) for path in pages[1:]]
    client.logout()
    policies.append(policy_of(pages[0]))

    for path, policy in zip(pages[1:] + pages[:1], policies, strict=True):
        assert policy["script-src"] == "'self'", path
        # The API docs add the hash of Swagger UI's one <style> element (config/api_urls.py).
        assert policy["style-src"].split()[0] == "'self'", path
        assert all(s.startswith("'sha256-") for s in policy["style-src"].split()[1:]), path
        assert policy["object-src"] == "'none'", path
        assert policy["base-uri"] == "'none'", path
        assert policy["frame-ancestors"] == "'none'", path
