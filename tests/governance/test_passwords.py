"""Passwords (issue 14): an admin sets one or emails a one-use link, a user changes their own;
validators apply on every path, single sign-on logins have none, every change is audited without
the password, and a new password ends the user's other sessions.

Mail goes through Django's test backend (``mail.outbox``), except where the mail server is
down: there a real SMTP connection to a port nobody listens on is refused.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from governance.actions.users import do_create_user
from governance.models import AuditEvent, ExternalIdentity
from tests.conftest import PASSWORD, free_port

NEW = "a-fresh-passphrase-for-steward"


def _logs_in(username: str, password: str) -> bool:
    """Through the login page, as a person does (a redirect means logged in)."""
    return Client().post("/login/", {"username": username, "password": password}).status_code == 302


def _password_events(user) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(object_type="user", object_id=str(user.pk)).order_by("pk"))


def test_an_admin_sets_a_password_that_then_logs_in_and_the_event_holds_no_secret(admin, owner, client_for):
    answer = client_for(admin).post(f"/api/users/{owner.pk}/set-password/", {"password": NEW}, format="json")

    assert answer.status_code == 200, answer.content
    assert _logs_in("olivia", NEW)
    assert not _logs_in("olivia", PASSWORD)
    event = _password_events(owner)[-1]
    assert (event.action, event.actor_id) == ("user.password_change", admin.pk)
    assert event.after == {"had_password": True, "how": "set by an admin"}
    assert NEW not in json.dumps([event.before, event.after])


def test_a_new_password_ends_the_users_other_sessions(admin, owner, client_for):
    browser = Client()
    browser.force_login(owner)
    assert browser.get("/models/").status_code == 200

    client_for(admin).post(f"/api/users/{owner.pk}/set-password/", {"password": NEW}, format="json")

    assert browser.get("/models/").status_code == 302  # back to the login page


@pytest.mark.parametrize(
    ("password", "message"),
    [("password", "too common"), ("x7#qZ", "too short"), ("83920174651", "entirely numeric")],
)
def test_the_validators_refuse_a_weak_password_on_every_path(admin, owner, client_for, password, message):
    api = client_for(admin).post(
        f"/api/users/{owner.pk}/set-password/", {"password": password}, format="json"
    )
    assert api.status_code == 400
    assert message in json.dumps(api.json())
    own = client_for(owner).post(
        "/api/auth/password/", {"old_password": PASSWORD, "new_password": password}, format="json"
    )
    assert own.status_code == 400
    assert message in json.dumps(own.json())
    assert _logs_in("olivia", PASSWORD)
    assert not [event for event in _password_events(owner) if event.action == "user.password_change"]


def test_only_platform_admins_set_passwords_and_not_their_own(admin, owner, scientist, client_for):
    refused = client_for(owner).post(
        f"/api/users/{scientist.pk}/set-password/", {"password": NEW}, format="json"
    )
    assert refused.status_code == 403
    own = client_for(admin).post(f"/api/users/{admin.pk}/set-password/", {"password": NEW}, format="json")
    assert own.status_code == 403
    assert "needs the current one" in own.json()["detail"]
    assert _logs_in("admin", PASSWORD)


def test_a_single_sign_on_login_has_no_steward_password(admin, owner, client_for):
    ExternalIdentity.objects.create(user=owner, issuer="https://idp.example", subject="olivia-1")

    answer = client_for(admin).post(f"/api/users/{owner.pk}/set-password/", {"password": NEW}, format="json")

    assert answer.status_code == 400
    assert "signs in through single sign-on" in json.dumps(answer.json())
    assert not _logs_in("olivia", NEW)


def test_a_user_changes_their_own_password_on_the_page_and_stays_logged_in(owner):
    browser = Client()
    browser.force_login(owner)
    wrong = browser.post(
        "/account/password/",
        {"old_password": "not-it", "new_password": NEW, "new_password_again": NEW},
    )
    assert wrong.status_code == 400
    assert "the current password is not right" in wrong.content.decode()
    differ = browser.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password": NEW, "new_password_again": NEW + "!"},
    )
    assert "the two passwords differ" in differ.content.decode()

    done = browser.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password": NEW, "new_password_again": NEW},
    )

    assert done.status_code == 302
    assert browser.get("/models/").status_code == 200  # this session was kept
    assert _logs_in("olivia", NEW)
    event = _password_events(owner)[-1]
    assert (event.action, event.actor_id, event.after["how"]) == (
        "user.password_change",
        owner.pk,
        "changed by the user",
    )


def test_a_login_made_without_a_password_gets_one_through_an_emailed_link(admin):
    newcomer = do_create_user(username="nadia", email="nadia@example.com", password=None, actor=admin)
    admin_browser = Client()
    admin_browser.force_login(admin)

    sent = admin_browser.post(f"/people/users/{newcomer.pk}/password/", {"send_reset": "1"})

    assert sent.status_code == 302
    assert [message.to for message in mail.outbox] == [["nadia@example.com"]]
    link = re.search(r"https?://\S+(/account/reset/\S+/)", mail.outbox[0].body).group(1)
    browser = Client()
    form_page = browser.get(link, follow=True)
    assert "Set your password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    done = browser.post(set_url, {"new_password1": NEW, "new_password2": NEW})
    assert done.status_code == 302
    assert done["Location"] == "/login/"
    assert _logs_in("nadia", NEW)
    # The link works once.
    again = Client().get(link, follow=True)
    assert "This link no longer works" in again.content.decode()
    actions = [(event.action, (event.after or {}).get("how")) for event in _password_events(newcomer)]
    assert actions[-2:] == [
        ("user.password_reset_sent", None),
        ("user.password_change", "set through a reset link"),
    ]


def test_a_mail_server_that_is_down_is_a_refusal_and_records_nothing(admin, owner, client_for, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 5

    answer = client_for(admin).post(f"/api/users/{owner.pk}/send-password-reset/")

    assert answer.status_code == 400
    assert "the mail could not be sent" in json.dumps(answer.json())
    assert not [event for event in _password_events(owner) if event.action == "user.password_reset_sent"]


def test_a_link_needs_an_address_and_an_admin(admin, owner, scientist, client_for):
    get_user_model().objects.filter(pk=owner.pk).update(email="")
    assert client_for(admin).post(f"/api/users/{owner.pk}/send-password-reset/").status_code == 400
    assert client_for(owner).post(f"/api/users/{scientist.pk}/send-password-reset/").status_code == 403
    assert mail.outbox == []


def test_the_users_page_offers_a_password_only_to_local_logins(client, admin, owner, scientist):
    ExternalIdentity.objects.create(user=owner, issuer="https://idp.example", subject="olivia-1")
    client.force_login(admin)
    page = client.get("/people/users/").content.decode()
    assert f'href="/people/users/{scientist.pk}/password/"' in page
    assert f'href="/people/users/{owner.pk}/password/"' not in page
    assert "single sign-on" in page
    form = client.get(f"/people/users/{scientist.pk}/password/").content.decode()
    assert form.count('autocomplete="new-password"') == 2  # never the admin's own saved password
