"""The audit trail pages: events filtered in keyset pages, one event with its changes, its
neighbours, its object's history and its verification, and its proof as a download."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse

from governance import audit_export
from governance.audit.proofs import latest_checkpoint, may_audit
from governance.audit.trail import event_changes, event_neighbours, object_history, object_history_url
from governance.audit.verify import verify_event
from governance.filtersets import AuditEventFilterSet
from governance.forms import style_audit_filters
from governance.keyset import InvalidCursor, KeysetPage, keyset_page
from governance.models import AuditEvent
from governance.views.helpers import PAGE_SIZE, visible_or_404


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
        # Set when the trail is "everything about this model version" (issue 12).
        "about_version": filterset.form.cleaned_data.get("model_version")
        if filterset.is_bound and is_filter_valid
        else None,
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


@login_required
def audit_event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One event: who on behalf of whom (linked where the viewer may see them), the object, one
    table of its changes (foreign keys named), the older and newer events, the other events on
    its object, and whether it verifies against the latest signed checkpoint (``verify_event``)."""
    event = visible_or_404(request, AuditEvent.objects.select_related("team", "leaf", "personal_data"), pk)
    older, newer = event_neighbours(event, request.user)
    history, is_history_cut = object_history(event, request.user)
    verification = verify_event(event)
    auditor = may_audit(request.user)
    context = {
        "section": "audit",
        "event": event,
        "object_url": event.object_url(),
        "changes": event_changes(event, request.user),
        "older": older,
        "newer": newer,
        "history": history,
        "is_history_cut": is_history_cut,
        "history_url": object_history_url(event),
        "verification": verification,
        # Leaf indexes, tree sizes and proofs count every team's events: auditors only.
        "may_audit": auditor,
        "may_download_proof": auditor and verification.proof is not None,
    }
    return render(request, "governance/audit_event_detail.html", context)


@login_required
def audit_event_proof(request: HttpRequest, pk: int) -> HttpResponse:
    """The event's leaf and inclusion proof with the latest signed checkpoint and the public key,
    as a one-event bundle (``audit_export.bundle_chunks``) that ``merkle.py verify`` checks
    offline; saved as ``audit-event-<id>-proof.json``. Auditors only, like the proof API (403);
    409 before the event is sequenced and covered by a checkpoint."""
    if not may_audit(request.user):
        raise PermissionDenied("only compliance officers and platform admins may read the audit tree")
    event = visible_or_404(request, AuditEvent.objects.select_related("leaf", "personal_data"), pk)
    checkpoint = latest_checkpoint()
    leaf = getattr(event, "leaf", None)
    if checkpoint is None or leaf is None or leaf.leaf_index >= checkpoint.tree_size:
        return HttpResponse(
            "This event is not sequenced yet; the sequencer gives it a leaf within seconds.\n",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    chunks = audit_export.bundle_chunks(
        AuditEvent.objects.filter(pk=event.pk).select_related("leaf", "personal_data"),
        checkpoint,
        # Not empty: the bundle does not claim the whole log (merkle.verify_bundle's completeness).
        filters={"event_id": str(event.pk)},
        verifier_url=request.build_absolute_uri(reverse("audit_verifier")),
        public_key_url=request.build_absolute_uri(reverse("audit_public_key")),
        unsequenced=0,
    )
    response = StreamingHttpResponse(chunks, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-event-{event.pk}-proof.json"'
    return response
