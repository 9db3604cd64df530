"""Domain errors to HTTP answers, defined once for the API and the web UI (issue 8).

An action refuses with PermissionDenied (403) or ValidationError (400); a data file that is not
valid raises DataFileError (400); an erased artifact is gone (410) and one that fails its
integrity check conflicts with its record (409); a concurrent change that slips past the locks
ends on a unique constraint, IntegrityError (409). ``governance.api.exceptions`` sends the
answer's body as JSON, ``governance.views.helpers`` puts the same messages on the form or the
page. Anything else is a bug and stays a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DataError, IntegrityError

from governance.datafiles import DataFileError
from governance.storage import ArtifactErased, ArtifactStoreUnavailable, ArtifactUnreadable
from governance.storage.envelope import KeyringError

# The key for messages about the whole request rather than one field (DRF's convention).
DETAIL = "detail"
CONFLICT = "conflicts with a concurrent change; retry the request"


@dataclass(frozen=True)
class ErrorAnswer:
    """``status`` and ``body``: ``{"detail": message or [messages]}`` or ``{field: [messages]}``."""

    status: int
    body: Mapping[str, str | list[str]]

    def messages_by_field(self) -> dict[str, list[str]]:
        """The body with every value a list of messages, for forms and flash messages."""
        return {key: [value] if isinstance(value, str) else list(value) for key, value in self.body.items()}


def error_answer(exc: BaseException) -> ErrorAnswer | None:
    """The answer for a domain error, or None for any other exception (let it propagate)."""
    if isinstance(exc, ValidationError):
        body = exc.message_dict if hasattr(exc, "error_dict") else {DETAIL: exc.messages}
        return ErrorAnswer(400, body)
    if isinstance(exc, DataFileError):
        return ErrorAnswer(400, {"file": [str(exc)]})
    if isinstance(exc, PermissionDenied):
        return ErrorAnswer(403, {DETAIL: str(exc) or "permission denied"})
    if isinstance(exc, RecursionError):
        # A JSON body nested past Python's recursion limit (the parser or a validator gives up).
        return ErrorAnswer(400, {DETAIL: "the request body is nested too deeply"})
    if isinstance(exc, ArtifactErased):
        return ErrorAnswer(410, {DETAIL: str(exc)})
    if isinstance(exc, ArtifactStoreUnavailable):
        return ErrorAnswer(503, {DETAIL: f"{exc}; try again later"})
    if isinstance(exc, KeyringError):
        # The deployment's keyring is malformed or missing (every artifact read and write needs
        # it to choose the mode): the server's fault, not the request's, and one an operator
        # fixes; the message names the entry by position, never key material.
        return ErrorAnswer(
            503, {DETAIL: f"the artifact store's key-encryption keys cannot be used: {exc}; try again later"}
        )
    if isinstance(exc, ArtifactUnreadable):
        # The request was fine; the stored bytes are not what was registered (counted, audited).
        return ErrorAnswer(409, {DETAIL: str(exc)})
    if isinstance(exc, IntegrityError):
        return ErrorAnswer(409, {DETAIL: CONFLICT})
    if isinstance(exc, DataError):
        # The last line of defence: a value the database cannot store (a NUL in text, a number out
        # of a column's range) that validation let through is the client's input, not a 500.
        return ErrorAnswer(400, {DETAIL: "a value in the request cannot be stored"})
    return None
