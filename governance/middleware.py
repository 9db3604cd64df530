"""Gives every request a server-generated id that its audit events carry."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from governance.audit import request_id_var


class RequestIDMiddleware:
    """Sets ``request.request_id`` (32 hex digits) for the audit events and answers it in
    ``X-Request-ID``.

    A client's own ``X-Request-ID`` is ignored: stored on audit events it would let a user make
    their events claim another request's id.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request.request_id
        return response
