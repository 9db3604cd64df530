"""Issue 14, first start: while ``manage.py load_demo`` runs, every page says the demo workspace
is loading, so a person who opens Steward early is not met by failing demo logins."""

from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.django_db

NOTICE = "The demo workspace is loading"


def test_pages_say_the_demo_is_loading_while_its_marker_exists(client, settings, tmp_path, owner):
    settings.STEWARD_DEMO_LOADING_MARKER = tmp_path / "demo-loading"
    login = client.get("/login/")
    assert (login.status_code, NOTICE in login.content.decode()) == (200, False)

    settings.STEWARD_DEMO_LOADING_MARKER.write_text("4242\n")
    assert NOTICE in client.get("/login/").content.decode()
    client.force_login(owner)
    assert NOTICE in client.get("/").content.decode()

    # A marker left by a load_demo killed outright, hours ago, is stale: no notice for ever.
    two_hours_ago = time.time() - 7200
    os.utime(settings.STEWARD_DEMO_LOADING_MARKER, (two_hours_ago, two_hours_ago))
    assert NOTICE not in client.get("/").content.decode()

    settings.STEWARD_DEMO_LOADING_MARKER.unlink()
    assert NOTICE not in client.get("/").content.decode()
