"""The stored evidently report served over HTTP, sandboxed (issue 13): one definition for the
drift check page's frame and the API. Light on purpose: web processes import it, and
``monitoring.reports`` (which builds reports) imports evidently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from django.http import Http404, StreamingHttpResponse

from governance import artifacts
from monitoring.models import DriftCheck

# The stored HTML embeds values from uploaded data, so it runs sandboxed wherever it is served
# (the page's frame and the API): its inline scripts may render it, but in an opaque origin, so
# it can read nothing of Steward's (not the parent page, not the API with the viewer's session),
# reach no network, and only Steward's own pages may frame it. django-csp keeps a header a view has
# set, so this replaces the site's policy here.
REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'self'"
)
# evidently's scripts read localStorage unguarded, which throws in an opaque origin and left the
# report blank: a memory-only stand-in, set before its scripts run (right after <head>).
STORAGE_SHIM = (
    b"<script>(function(){try{window.localStorage.length}catch(e){var m={};"
    b"Object.defineProperty(window,'localStorage',{value:{getItem:function(k){return k in m?m[k]:null},"
    b"setItem:function(k,v){m[k]=String(v)},removeItem:function(k){delete m[k]},"
    b"clear:function(){m={}},key:function(i){return Object.keys(m)[i]||null},"
    b"get length(){return Object.keys(m).length}}})}})();</script>"
)
HEAD_SEARCH_BYTES = 64 * 1024


def report_response(check: DriftCheck) -> StreamingHttpResponse:
    """The check's stored evidently HTML, streamed, with ``STORAGE_SHIM`` after its ``<head>``,
    carrying ``REPORT_CSP``. Raises Http404 when the check has no report (not asked for, still
    building, failed, or its file is gone)."""
    path = artifacts.resolve(check.report) if check.report else None
    if path is None or not path.is_file():
        raise Http404("this drift check has no report (yet)")

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as report:
            first = report.read(HEAD_SEARCH_BYTES)
            head = re.search(rb"<head[^>]*>", first, re.IGNORECASE)
            cut = head.end() if head else 0
            yield first[:cut] + STORAGE_SHIM + first[cut:]
            while block := report.read(HEAD_SEARCH_BYTES):
                yield block

    response = StreamingHttpResponse(chunks(), content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="drift-check-{check.pk}.html"'
    response["Content-Security-Policy"] = REPORT_CSP
    return response
