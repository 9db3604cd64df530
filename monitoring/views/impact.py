"""The impact page of a lineage node and its CSV/JSON exports (issue 10).

Here rather than in lineage: the report reaches monitors and alerts, and the CSV export shares
the audit export's formula neutralising (governance), which lineage may not import.
"""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.audit_export import neutralise
from lineage.forms import GraphQueryForm
from lineage.impact import EXPORT_COLUMNS, impact, impact_rows
from lineage.layout import layout
from lineage.queries import MAX_DEPTH


def _report(request: HttpRequest) -> tuple[dict | None, GraphQueryForm, int]:
    """The impact report the query asks for (``node``, ``depth`` up to ``MAX_DEPTH``, default the
    maximum), or None with the status of the refusal: 400 naming the field, 404 for a node the
    user may not view."""
    data = request.GET.copy()
    data.setdefault("depth", str(MAX_DEPTH))
    form = GraphQueryForm(data)
    if not form.is_valid():
        return None, form, 400
    try:
        return impact(request.user, form.cleaned_data["node"], form.cleaned_data["depth"]), form, 200
    except LookupError as exc:
        form.add_error("node", str(exc))
        return None, form, 404


@login_required
def lineage_impact(request: HttpRequest) -> HttpResponse:
    """Everything downstream of a dataset version, code version or external dataset: runs,
    model versions, aliases, monitors, open alerts and derived datasets, with distance."""
    report, form, status = _report(request)
    context = {"section": "lineage", "form": form, "report": report}
    if report is not None:
        root = report["nodes"][0]
        context.update(
            root=root,
            drawing=layout(report["root"], report["nodes"], report["edges"]),
            export_query=urlencode({"node": root["id"], "depth": form.cleaned_data["depth"]}),
        )
    return render(request, "lineage/impact.html", context, status=status)


@login_required
def lineage_impact_export(request: HttpRequest, fmt: str) -> HttpResponse:
    """The impact report as ``impact.csv`` (one row a node, ``EXPORT_COLUMNS``) or ``impact.json``
    (``lineage.impact.impact``'s answer); refusals as on the page, in plain text."""
    report, form, status = _report(request)
    if report is None:
        return HttpResponse(form.errors.as_text(), status=status, content_type="text/plain")
    name = report["root"].replace(":", "-")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for row in impact_rows(report):
            writer.writerow([neutralise(value) if isinstance(value, str) else value for value in row])
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(report, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="impact-{name}.{fmt}"'
    return response
