"""DRF's exception handler, plus the domain errors of ``governance.errors`` (4xx, never a 500)."""

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from governance.errors import error_answer


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The answer ``governance.errors.error_answer`` gives, else DRF's own handling."""
    answer = error_answer(exc)
    if answer is not None:
        return Response(answer.body, status=answer.status)
    return drf_exception_handler(exc, context)
