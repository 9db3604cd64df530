"""Every page links the icon, and /favicon.ico (asked for whatever a page links) answers with it."""

from django.test import Client


def test_the_favicon_is_linked_and_served(db):
    client = Client()
    page = client.get("/login/")
    link = '<link rel="icon" href="/static/steward/favicon.svg" type="image/svg+xml">'
    assert link in page.content.decode()

    answer = client.get("/favicon.ico")
    assert (answer.status_code, answer["Location"]) == (302, "/static/steward/favicon.svg")
    icon = client.get(answer["Location"])
    assert icon.status_code == 200
    assert b"<svg" in b"".join(icon.streaming_content)
