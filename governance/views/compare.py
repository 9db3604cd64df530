"""The UI page comparing two model versions (``governance.compare``, the API's function too)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.compare import compare_model_versions
from governance.keyset import MAX_BIGINT
from governance.models import ModelVersion
from governance.views.helpers import visible_or_404

SECTIONS = [
    ("metrics", "Metrics"),
    ("parameters", "Parameters (training spec)"),
    ("training_data", "Training data"),
    ("signature", "Signature"),
]


def _version_id(raw: str | None) -> int | None:
    """A model version id from the query string, or None when it is not one."""
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= MAX_BIGINT:
        return int(raw)
    return None


@login_required
def model_version_compare(request: HttpRequest) -> HttpResponse:
    """``?a=<id>&b=<id>``: two versions side by side, differing rows marked. Either invisible is a
    404; a missing or malformed id is a 400 page saying which."""
    ids = {side: _version_id(request.GET.get(side)) for side in ("a", "b")}
    bad = [side for side, pk in ids.items() if pk is None]
    if bad:
        return render(
            request,
            "governance/compare.html",
            {
                "section": "models",
                "error": f"Choose two model versions (missing or not an id: {', '.join(bad)}).",
            },
            status=400,
        )
    versions = ModelVersion.objects.select_related("model__team", "training_dataset_version__dataset")
    a = visible_or_404(request, versions, ids["a"])
    b = visible_or_404(request, versions, ids["b"])
    comparison = compare_model_versions(a, b)
    context = {
        "section": "models",
        "a": a,
        "b": b,
        "comparison": comparison,
        "sections": [(title, comparison[key]) for key, title in SECTIONS],
    }
    return render(request, "governance/compare.html", context)
