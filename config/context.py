"""Template context for every page."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import HttpRequest


def demo_loading(request: HttpRequest) -> dict[str, bool]:
    """``demo_loading``: ``manage.py load_demo`` is running (its marker file exists), so base.html
    says the demo workspace is on its way instead of letting its logins fail (issue 14). One
    stat() a page."""
    return {"demo_loading": Path(settings.STEWARD_DEMO_LOADING_MARKER).exists()}
