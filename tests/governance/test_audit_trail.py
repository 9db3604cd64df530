"""The compliance officer's audit trail pages: keyset pages, the "verified" mark, export links;
an invalid filter lists nothing and offers no export, ids beyond bigint are a 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.actions.datasets import do_create_dataset
from governance.actions.teams import do_set_membership
from governance.audit.erasure import do_erase_personal_data
from governance.audit.sequencer import sequence_audit_events
from governance.keyset import InvalidCursor, cursor_of, keyset_page, parse_cursor
from governance.models import AuditEvent
from tests.governance.audit_helpers import (
    BEYOND_BIGINT,
    EARLIEST_WITH_OFFSET,
    LATEST_WITH_OFFSET,
    OUT_OF_UTC,
    TOO_BIG,
    create_events_sharing_a_timestamp,
    raw_sql,
)


def _page(client, **params) -> str:
    response = client.get(reverse("audit_event_list"), params)
    assert response.status_code == 200
    return response.content.decode()


def test_older_newer_and_newest_links_walk_the_trail(client, admin, team, compliance_officer):
    for number in range(120):
        do_create_dataset(team=team, name=f"dataset-{number:03}", actor=admin)
    client.force_login(compliance_officer)
    newest_first = list(AuditEvent.objects.filter(action="dataset.create").order_by("-timestamp", "-id"))

    first = client.get(reverse("audit_event_list"), {"action": "dataset."}).context["page"]
    second = client.get(reverse("audit_event_list"), {"action": "dataset.", "before": first.older}).context[
        "page"
    ]
    third = client.get(reverse("audit_event_list"), {"action": "dataset.", "before": second.older}).context[
        "page"
    ]
    back = client.get(reverse("audit_event_list"), {"action": "dataset.", "after": third.newer}).context[
        "page"
    ]
    top = client.get(reverse("audit_event_list"), {"action": "dataset.", "after": back.newer}).context["page"]

    assert [len(p.rows) for p in (first, second, third)] == [50, 50, 20]
    assert first.rows + second.rows + third.rows == newest_first
    assert (first.is_first, first.newer, third.older) == (True, None, None)
    assert back.rows == second.rows
    assert (top.rows, top.newer, top.is_first) == (first.rows, None, True)
    html = _page(client, action="dataset.", before=first.older)
    assert f'href="?action=dataset.&amp;after={second.newer}"' in html
    assert 'href="?action=dataset."' in html  # Newest


def test_events_with_one_timestamp_are_not_lost_between_pages(admin, team):
    shared = create_events_sharing_a_timestamp()
    events = AuditEvent.objects.filter(action="dataset.touch")
    everything = list(events.order_by("-timestamp", "-id"))
    assert [e.timestamp == shared for e in everything] == [True, True, True, False, False, False, False]
    assert parse_cursor(cursor_of(everything[1])) == (shared, everything[1].pk)

    pages, cursor = [], None
    while True:
        page = keyset_page(events, before=cursor, size=2)
        pages.append(page.rows)
        if page.older is None:
            break
        cursor = page.older

    assert [row for rows in pages for row in rows] == everything
    assert [len(rows) for rows in pages] == [2, 2, 2, 1]
    with pytest.raises(InvalidCursor, match="not a page cursor: 'x-1'"):
        keyset_page(events, before="x-1")


def test_a_broken_cursor_is_a_400_with_the_newest_events(client, dataset, compliance_officer):
    client.force_login(compliance_officer)

    response = client.get(reverse("audit_event_list"), {"before": "yesterday"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "That page link is broken; here are the newest events." in page
    assert "<code>dataset.create</code>" in page


def test_export_links_carry_the_filters_and_the_bundle_is_for_auditors(
    client, dataset, compliance_officer, scientist
):
    client.force_login(compliance_officer)
    page = _page(client, action="dataset.", q="bike")

    assert 'href="/api/audit-events/export.csv?action=dataset.&amp;q=bike"' in page
    assert 'href="/api/audit-events/export.json?action=dataset.&amp;q=bike"' in page
    assert 'href="/api/audit/verifier.py"' in page
    client.force_login(scientist)
    page = _page(client, action="dataset.")
    assert 'href="/api/audit-events/export.csv?action=dataset."' in page
    assert "export.json" not in page


def _event_page(client, event: AuditEvent) -> str:
    response = client.get(reverse("audit_event_detail", args=[event.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_event_page_marks_a_sequenced_event_verified(
    client, dataset_version, compliance_officer, scientist
):
    event = AuditEvent.objects.get(action="dataset.create")
    client.force_login(compliance_officer)
    assert "Not yet sequenced" in _event_page(client, event)

    sequence_audit_events()

    page = _event_page(client, event)
    assert '<span class="badge badge-succeeded">Verified</span>' in page
    assert "(leaf index 2, counted from 0 as RFC 6962 does, in a tree of 5)" in page
    client.force_login(scientist)
    page = _event_page(client, event)
    assert '<span class="badge badge-succeeded">Verified</span>' in page
    assert "leaf index 2" not in page  # tree positions count every team's events


def test_the_event_page_shows_a_tampered_event_failing(client, dataset, compliance_officer):
    sequence_audit_events()
    event = AuditEvent.objects.get(action="dataset.create")
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET object_repr = 'renamed' WHERE id = %s", [event.pk])
    client.force_login(compliance_officer)

    page = _event_page(client, event)

    assert '<span class="badge badge-failed">Verification failed</span>' in page
    assert "the event no longer matches its leaf: the proof does not reach the signed root" in page


def test_the_event_page_of_an_erased_person_is_verified_with_a_note(client, admin, dataset, scientist):
    sequence_audit_events()
    do_erase_personal_data(scientist, actor=admin)
    client.force_login(admin)

    page = _event_page(client, AuditEvent.objects.get(action="dataset.create"))

    assert '<span class="badge badge-succeeded">Verified</span>' in page
    assert "personal details erased; the rest of the event is verified" in page
    assert "dana" not in page.split('<dl class="summary">')[1].split("</dl>")[0]


# The audit trail page --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "garbage"}, "since", "Enter a valid date/time."),
        ({"since": EARLIEST_WITH_OFFSET}, "since", OUT_OF_UTC),
        ({"until": LATEST_WITH_OFFSET, "action": "dataset."}, "until", OUT_OF_UTC),
        ({"team": BEYOND_BIGINT}, "team", TOO_BIG),
    ],
)
def test_the_page_with_an_invalid_filter_lists_nothing_and_offers_no_export(
    client, dataset, compliance_officer, params, field, message
):
    client.force_login(compliance_officer)

    response = client.get(reverse("audit_event_list"), params)

    assert response.status_code == 400
    assert response.context["filterset"].form.errors == {field: [message]}
    assert response.context["page"].rows == []
    page = response.content.decode()
    assert "No events listed: correct the filters." in page
    assert "<code>dataset.create</code>" not in page
    assert "export.csv" not in page
    assert "export.json" not in page
    assert 'href="/api/audit/verifier.py"' in page  # carries no filter


def test_the_htmx_table_with_an_invalid_filter_lists_nothing(client, dataset, viewer):
    client.force_login(viewer)

    response = client.get(reverse("audit_event_list"), {"since": "garbage"}, headers={"HX-Request": "true"})

    assert response.status_code == 400
    assert " ".join(response.content.decode().split()) == (
        '<div id="audit-table"> <p class="empty">No events listed: correct the filters.</p> '
        '<ul class="errorlist"><li>Since (UTC): Enter a valid date/time.</li></ul> </div> '
        '<nav id="audit-exports" class="presets exports" aria-label="Exports" hx-swap-oob="true"> </nav>'
    )


def test_the_htmx_table_brings_the_export_links_of_its_filters(client, dataset, compliance_officer):
    """Typing a filter swaps the table alone; the export links above it came with the page and
    kept its filters, so "Export JSON bundle" under a filtered table exported the whole log (issue
    14, found by the officer's browser journey). The htmx answer now swaps them out of band."""
    client.force_login(compliance_officer)

    response = client.get(
        reverse("audit_event_list"), {"action": "dataset.", "q": "bike"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    nav = response.content.decode().split("</div>")[-1]
    assert nav.strip().startswith(
        '<nav id="audit-exports" class="presets exports" aria-label="Exports" hx-swap-oob="true">'
    )
    assert 'href="/api/audit-events/export.csv?action=dataset.&amp;q=bike"' in nav
    assert 'href="/api/audit-events/export.json?action=dataset.&amp;q=bike"' in nav
    # The whole page has the same links in place, not out of band.
    page = _page(client, action="dataset.", q="bike")
    assert '<nav id="audit-exports" class="presets exports" aria-label="Exports">' in page
    assert "hx-swap-oob" not in page


def test_a_page_link_naming_an_id_beyond_bigint_is_broken(client, dataset, compliance_officer):
    client.force_login(compliance_officer)

    response = client.get(reverse("audit_event_list"), {"before": f"1-{BEYOND_BIGINT}"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "That page link is broken; here are the newest events." in page
    assert "<code>dataset.create</code>" in page


def test_an_event_page_beyond_bigint_is_a_404(client, dataset, compliance_officer):
    client.force_login(compliance_officer)

    assert client.get(f"/audit/{BEYOND_BIGINT}/").status_code == 404


def test_the_trail_links_objects_and_shows_a_role_change_as_one(
    client, admin, team, viewer, dataset, compliance_officer
):
    do_set_membership(user=viewer, team=team, role="approver", actor=admin)
    client.force_login(compliance_officer)

    listing = _page(client)

    assert f'<a href="{reverse("dataset_detail", args=[dataset.pk])}">{dataset.name}</a>' in listing
    assert "role viewer → approver" in listing
    change = AuditEvent.objects.filter(action="membership.grant").latest("pk")
    detail = client.get(change.get_absolute_url()).content.decode()
    assert "changed: viewer → approver" in detail
    first_grant = AuditEvent.objects.filter(action="membership.grant").earliest("pk")
    assert "changed:" not in client.get(first_grant.get_absolute_url()).content.decode()


def test_the_time_filters_are_utc_on_a_24_hour_clock(client, compliance_officer, dataset):
    client.force_login(compliance_officer)
    page = _page(client)
    assert "Since (UTC)" in page
    assert "Until (UTC)" in page
    assert 'type="datetime-local"' not in page
    event = AuditEvent.objects.latest("pk")
    stamp = event.timestamp.strftime("%Y-%m-%d %H:%M")
    assert stamp in page  # the trail's own clock, as typed into the filter
    assert event.get_absolute_url() in _page(client, since=stamp)
