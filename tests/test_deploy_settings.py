"""Issue 13: health endpoints, HTTPS hardening read from the environment, and the site's
Content-Security-Policy.

The health checks run against the real database, broker and artifact folder of the test run;
the failures are real ones (a broker port nobody listens on, an artifact root that is a file, an
audit event the sequencer has not reached), never a mocked check.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from config.celery import app
from governance.actions.teams import do_create_team
from governance.tasks import sequence_audit_events
from tests.conftest import free_port

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


def test_liveness_answers_without_a_login_or_any_dependency(client):
    assert health(client, "/health/live/") == (200, {})


def test_readiness_checks_the_database_the_broker_and_the_artifact_store(client):
    status, answer = health(client, "/health/ready/")

    assert status == 200
    assert by_check(answer) == {"Database": "OK", "Broker": "OK", "ArtifactStore": "OK"}


def test_readiness_is_503_naming_an_unreachable_broker(client, monkeypatch):
    # A Redis URL on a port nobody listens on: the connection is refused for real. (Celery reads
    # CELERY_BROKER_URL from the environment before its configuration.)
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
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


class _SilentServer:
    """A TCP server that accepts connections and never answers a byte (a hung broker)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = int(self.socket.getsockname()[1])
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                self.held.append(connection)

    def close(self) -> None:
        for connection in self.held:
            connection.close()
        self.socket.close()


def test_a_broker_that_never_answers_is_reported_in_seconds_not_waited_for(
    client, monkeypatch, settings, scrape_settings
):
    silent = _SilentServer()
    try:
        nowhere = f"redis://127.0.0.1:{silent.port}/0"
        monkeypatch.setenv("CELERY_BROKER_URL", nowhere)
        monkeypatch.setattr(app.conf, "broker_url", nowhere)
        began = time.monotonic()
        status, answer = health(client, "/health/ready/")
        ready_s = time.monotonic() - began
        began = time.monotonic()
        scraped = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scrape_settings}")
        scrape_s = time.monotonic() - began
    finally:
        silent.close()

    assert status == 503
    assert "Timed out" in by_check(answer)["Broker"]
    assert ready_s < 30  # the check's own limit is 5 s; it used to hang for good
    assert scraped.status_code == 200
    assert "steward_broker_up 0.0" in scraped.content.decode()
    assert scrape_s < 30


@pytest.mark.parametrize("accept", ["garbage", "application/json;", 'text/html; charset="utf-8"'])
def test_any_accept_header_gets_an_answer_never_a_500(client, accept):
    response = client.get("/health/live/", HTTP_ACCEPT=accept)

    assert response.status_code == 200


def test_a_database_failure_is_named_without_its_host(client):
    from django.db import connections

    wrapper = connections["default"]
    if wrapper.vendor != "postgresql":
        pytest.skip("the host is PostgreSQL's (SQLite has none)")
    real = wrapper.settings_dict["HOST"]
    wrapper.settings_dict["HOST"] = "db-secret-host.invalid"
    try:
        # The check opens a connection of its own from these settings.
        from health_check.exceptions import ServiceUnavailable

        from config.health import Database

        with pytest.raises(ServiceUnavailable) as failed:
            Database().run()
    finally:
        wrapper.settings_dict["HOST"] = real

    assert str(failed.value) == "Unavailable: the database does not answer"
    assert "db-secret-host" not in str(failed.value)


@pytest.fixture
def scrape_settings(settings) -> str:
    settings.STEWARD_METRICS_TOKEN = "scrape-me-0123456789"
    return settings.STEWARD_METRICS_TOKEN


def test_probes_and_pod_scrapes_by_ip_address_are_answered_other_pages_are_not(
    client, settings, scrape_settings
):
    """Kubelets and Prometheus pod scrapes send Host: <pod IP>:<port>, which ALLOWED_HOSTS
    cannot list; /health/ and /metrics answer them, every other page still refuses that host."""
    settings.ALLOWED_HOSTS = ["steward.example.org"]
    pod = "10.244.1.7:8000"

    live = client.get("/health/live/", HTTP_HOST=pod, HTTP_ACCEPT="application/json")
    scrape = client.get("/metrics", HTTP_HOST=pod, HTTP_AUTHORIZATION=f"Bearer {scrape_settings}")
    login = client.get("/login/", HTTP_HOST=pod)
    spoofed = client.get("/health/live/", HTTP_HOST="evil.example", HTTP_ACCEPT="application/json")

    assert (live.status_code, scrape.status_code) == (200, 200)
    assert login.status_code == 400
    assert spoofed.status_code == 400  # only addresses are mapped, never another name


def test_the_health_page_for_people_keeps_the_site_policy(client):
    page = client.get("/health/ready/", HTTP_ACCEPT="text/html")

    assert page.status_code == 200
    assert "All checks pass" in page.content.decode()
    assert "<style" not in page.content.decode()  # the library's page had an inline style
    assert "'unsafe" not in page["Content-Security-Policy"]
