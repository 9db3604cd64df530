"""Template context for every page."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest

# A load_demo killed outright (SIGKILL, the OOM killer) leaves its marker: one older than any
# demo load takes is stale and ignored, so the pages do not say "loading" for ever.
STALE_AFTER_S = 3600


def demo_loading(request: HttpRequest) -> dict[str, bool]:
    """``demo_loading``: ``manage.py load_demo`` is running (its marker file exists and is less
    than an hour old), so base.html says the demo workspace is on its way instead of letting its
    logins fail (issue 14). One stat() a page."""
    try:
        written = Path(settings.STEWARD_DEMO_LOADING_MARKER).stat().st_mtime
    except OSError:  # no marker: nothing is loading
        return {"demo_loading": False}
    return {"demo_loading": time.time() - written < STALE_AFTER_S}
