"""The answer to a locked-out login (django-axes' ``AXES_LOCKOUT_CALLABLE``).

429 Too Many Requests: JSON for the API's token endpoint, the login page with the reason for a
person. Axes calls it from its middleware after the login view ran.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return f"Too many failed logins: try again in {minutes} minutes."


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    status = settings.AXES_HTTP_RESPONSE_CODE
    if request.path.startswith("/api/2.0/mlflow"):
        # MLflow's error shape (Basic auth on the MLflow API, issue 9); 429 is its REQUEST_LIMIT_EXCEEDED.
        return JsonResponse(
            {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": lockout_message()}, status=status
        )
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": lockout_message()}, status=status)
    response = TemplateResponse(request, "registration/locked_out.html", {"message": lockout_message()})
    response.status_code = status
    return response.render()
