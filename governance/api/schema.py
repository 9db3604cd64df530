"""The OpenAPI schema's error answers (issue 13): every operation documents the 4xx it can give.

drf-spectacular documents the success code of each operation only. Steward's API answers errors
in two shapes (``governance.errors``, DRF's handler): ``{"detail": "..."}`` and, for invalid
input, ``{"<field>": ["message", ...]}``. ``StewardAutoSchema`` adds them where they apply:

- 401 on every operation that needs a login (not the token endpoint, the public key, the verifier);
- 403 on those too (a role or a read-only token that may not);
- 404 on every operation whose path names an object;
- 400 on every operation that takes a body or query parameters;
- what a view lists in its ``error_codes`` (the token endpoint's 429 of the login throttle).

A code an operation declares itself (``@extend_schema(responses=...)``) is kept as declared.
"""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers
from rest_framework.permissions import AllowAny

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        'What went wrong: {"detail": "message"}, or for invalid input each field\'s messages '
        '({"name": ["this field is required"]}; "detail" for the request as a whole).'
    ),
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "object"}]
    },
}
DESCRIPTIONS = {
    "400": "The request is invalid; the answer names each field and what is wrong with it.",
    "401": "No credentials, or a token that is unknown, expired or revoked.",
    "403": "Authenticated, but this user or token may not do this.",
    "404": "No such object, or one this user may not see.",
    "429": "Too many failed logins from this address or for this user: wait for the cool-off.",
}


class StewardAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema with Steward's 400/401/403/404 answers (module docstring), and
    optional URL and email fields documented as what they hold: a URL or address, or "" when
    none was given (a blank ``URLField`` answers "", which the plain ``format: uri`` refuses)."""

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            isinstance(field, serializers.URLField | serializers.EmailField)
            and _may_be_blank(field)
            and isinstance(schema, dict)
            and schema.get("format")
        ):
            described = {key: schema.pop(key) for key in ("description", "readOnly") if key in schema}
            return {"anyOf": [schema, {"type": "string", "enum": [""]}], **described}
        return schema

    def _get_response_bodies(self, direction: Literal["request", "response"] = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self._error_codes():
            responses.setdefault(code, self._error_response(code))
        return responses

    def _error_codes(self) -> list[str]:
        codes = []
        queried = any(parameter.get("in") == "query" for parameter in self._get_parameters())
        if self.method in ("POST", "PUT", "PATCH") or queried:
            codes.append("400")
        if not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            codes += ["401", "403"]
        if "{" in self.path:
            codes.append("404")
        # A view's own answers beyond these (the token endpoint's login throttle: 429).
        codes += getattr(self.view, "error_codes", ())
        return codes

    def _error_response(self, code: str) -> dict[str, Any]:
        component = ResolvedComponent(
            name=ERROR_COMPONENT, type=ResolvedComponent.SCHEMA, object=ERROR_COMPONENT, schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(component)
        return {
            "description": DESCRIPTIONS[code],
            "content": {"application/json": {"schema": component.ref}},
        }


def _may_be_blank(field: serializers.CharField) -> bool:
    """Whether ``field`` may hold "": it allows it, or it is a read-only copy of a model field
    with ``blank=True`` (DRF drops ``allow_blank`` from read-only fields it builds)."""
    if field.allow_blank:
        return True
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    if not field.read_only or model is None:
        return False
    try:
        return bool(model._meta.get_field(field.source).blank)
    except Exception:  # a source that is not a model field (a property, a dotted path)
        return False
