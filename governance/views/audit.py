"""The audit trail pages: events filtered in keyset pages, one event with its verification."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.audit.proofs import may_audit
from governance.audit.verify import verify_event
from governance.filtersets import AuditEventFilterSet
from governance.forms import style_audit_filters
from governance.keyset import InvalidCursor, KeysetPage, keyset_page
from governance.models import AuditEvent
from governance.views.helpers import PAGE_SIZE, pretty_json, visible_or_404

# Audit object types that have a page of their own (``AuditEvent.object_type`` is the model name).


@login_required
def audit_event_list(request: HttpRequest) -> HttpResponse:
    """Audit events newest first, filtered, in keyset pages (``?before=`` / ``?after=`` cursors,
    constant cost at any depth); an htmx request gets only the table.

    Invalid filters are a 400 listing no events, with the form's errors and no export links.
    """
    filterset = AuditEventFilterSet(
        request.GET or None,
        queryset=AuditEvent.objects.restrict(request.user).select_related("team"),
        request=request,
    )
    style_audit_filters(filterset.form, request.user)
    status = 200
    is_filter_valid = not filterset.is_bound or filterset.is_valid()
    if not is_filter_valid:
        # django-filter's .qs skips invalid filters, i.e. would list every event unfiltered.
        page, status = KeysetPage(rows=[], newer=None, older=None, is_first=True), 400
    else:
        try:
            page = keyset_page(
                filterset.qs, before=request.GET.get("before"), after=request.GET.get("after"), size=PAGE_SIZE
            )
        except InvalidCursor:
            messages.error(request, "That page link is broken; here are the newest events.")
            page, status = keyset_page(filterset.qs, size=PAGE_SIZE), 400
    filters = request.GET.copy()
    for cursor in ("before", "after"):
        filters.pop(cursor, None)
    context = {
        "section": "audit",
        "filterset": filterset,
        "page": page,
        "is_filter_valid": is_filter_valid,
        "export_query": filters.urlencode(),
        "may_audit": may_audit(request.user),
        "presets": [
            ("Role changes", "?action=membership."),
            ("Platform roles", "?action=platform_role."),
            ("Data registered", "?action=dataset_version."),
            ("Model versions", "?action=model_version."),
            ("Jobs", "?action=job."),
            ("Alerts", "?action=alert."),
        ],
    }
    if request.htmx:
        return render(request, "htmx/audit_table.html", context, status=status)
    return render(request, "governance/audit_event_list.html", context, status=status)


def _changes(before: dict | None, after: dict | None) -> list[dict[str, str]]:
    """Keys whose value differs between ``before`` and ``after``: added, removed or changed."""
    before, after = before or {}, after or {}
    rows = []
    for key in sorted(set(before) | set(after)):
        if key in before and key in after and before[key] == after[key]:
            continue
        change = "changed" if key in before and key in after else ("added" if key in after else "removed")
        rows.append(
            {
                "key": key,
                "change": change,
                "before": json.dumps(before[key], default=str) if key in before else "",
                "after": json.dumps(after[key], default=str) if key in after else "",
            }
        )
    return rows


@login_required
def audit_event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One event: who on behalf of whom, the object, before/after side by side, the changed keys,
    and whether it verifies against the latest signed checkpoint (``verify_event``)."""
    event = visible_or_404(request, AuditEvent.objects.select_related("team", "leaf", "personal_data"), pk)
    context = {
        "section": "audit",
        "event": event,
        "object_url": event.object_url(),
        "before_json": pretty_json(event.before) if event.before is not None else "",
        "after_json": pretty_json(event.after) if event.after is not None else "",
        "changes": _changes(event.before, event.after),
        "verification": verify_event(event),
        # Leaf indexes and tree sizes count every team's events: auditors only.
        "may_audit": may_audit(request.user),
    }
    return render(request, "governance/audit_event_detail.html", context)
