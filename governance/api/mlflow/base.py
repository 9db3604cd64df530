"""What every endpoint of Steward's MLflow REST API shares (issue 9): authentication, request
parsing, the JSON error body, and the ``ENDPOINT_NOT_FOUND`` answer.

An endpoint is a plain function ``view(request, params) -> dict`` wrapped by ``mlflow_endpoint``:

    @mlflow_endpoint("GET")
    def get_registered_model(request, params):
        model = lookup(request.user, require(params, "name"))
        return {"registered_model": ...}

No DRF per request (the MLflow API is benchmarked against MLflow's own server): one query
authenticates a token, the view's own queries follow, ``JsonResponse`` answers.

Authentication (``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME/PASSWORD`` on the client):
``Authorization: Bearer <Steward API token>`` or ``Basic <username:password>``. Basic goes through
Django's ``authenticate()``, so a failed password counts towards django-axes' login lockout like the
login page's. A session cookie does not authenticate here (so CSRF cannot apply: the views are
CSRF-exempt). A read-only token is refused on an endpoint that writes (403 PERMISSION_DENIED).
A code run's job token (issue 17) reaches only endpoints marked ``for_job_token``, which keep to
its scope (``governance.job_scope``; ``job_scope(request)``), and is 401 once its run stopped.

Errors (MLflow's ``{"error_code", "message"}`` body, ``mlflow/exceptions.py`` statuses): Django's
ValidationError -> 400 INVALID_PARAMETER_VALUE naming the field; PermissionDenied -> 403
PERMISSION_DENIED; ObjectDoesNotExist -> 404 RESOURCE_DOES_NOT_EXIST; no or bad credentials -> 401
UNAUTHENTICATED; an unknown path or method -> 404 ENDPOINT_NOT_FOUND (the client falls back between
routes on that code only). A bug is still a JSON 500 INTERNAL_ERROR, never Django's HTML page.

Artifact URIs: ``model-versions/get-download-uri`` answers
``mlflow-artifacts:/steward/model-versions/<ModelVersion pk>``, which the client resolves against the
tracking URI to ``/api/2.0/mlflow-artifacts/artifacts/steward/model-versions/<pk>/<path>`` (files)
and ``/api/2.0/mlflow-artifacts/artifacts?path=steward/model-versions/<pk>/...`` (listing), both
served by the artifact proxy in ``runners.api.mlflow``. ``models:/`` URIs are not used as download
URIs (they would send the client back to the registry in a loop).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django.contrib.auth import authenticate
from django.core.exceptions import (
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    ValidationError,
)
from django.db import DataError, IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from governance.api.authentication import InvalidToken, authenticate_secret, record_use
from governance.errors import CONFLICT, DETAIL, error_answer
from governance.job_scope import JobScope, load_job_scope
from governance.models import TokenScope
from governance.storage import ArtifactUnreadable
from governance.storage.envelope import KeyringError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Params = dict[str, Any]
View = Callable[[HttpRequest, Params], dict]

# MLflow's error codes and their HTTP statuses (mlflow/exceptions.py ERROR_CODE_TO_HTTP_STATUS).
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
PERMISSION_DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
RESOURCE_CONFLICT = "RESOURCE_CONFLICT"
INTERNAL_ERROR = "INTERNAL_ERROR"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"

NUL_REFUSED = "The request holds a NUL character, which no field accepts."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CREDENTIALS_NEEDED = (
    "Authentication required: set MLFLOW_TRACKING_TOKEN to a Steward API token "
    "(or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)."
)


class MlflowError(Exception):
    """An answer in MLflow's error shape: ``{"error_code": error_code, "message": message}``."""

    def __init__(self, error_code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status


class InvalidParameterValue(MlflowError):
    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMETER_VALUE, message, 400)


class ResourceDoesNotExist(MlflowError):
    def __init__(self, message: str) -> None:
        super().__init__(RESOURCE_DOES_NOT_EXIST, message, 404)


class ResourceAlreadyExists(MlflowError):
    # 400, not 409: MLflow's mapping, which ``mlflow.register_model`` relies on to tolerate it.
    def __init__(self, message: str) -> None:
        super().__init__(RESOURCE_ALREADY_EXISTS, message, 400)


class Unauthenticated(MlflowError):
    def __init__(self, message: str = CREDENTIALS_NEEDED) -> None:
        super().__init__(UNAUTHENTICATED, message, 401)


def error_response(error_code: str, message: str, status: int) -> JsonResponse:
    """MLflow's error body; 401 also names the schemes in ``WWW-Authenticate``."""
    response = JsonResponse({"error_code": error_code, "message": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="mlflow", Basic realm="mlflow"'
    return response


@csrf_exempt
def endpoint_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The answer to any path or method of the MLflow API that Steward does not serve."""
    return error_response(
        ENDPOINT_NOT_FOUND,
        f"Steward's MLflow API has no endpoint {request.method} {request.path}.",
        404,
    )


def job_scope(request: HttpRequest) -> JobScope | None:
    """The scope of the job token the request authenticated with; None for any other credential."""
    return getattr(request, "job_scope", None)


def actor(request: HttpRequest) -> User:
    """The user ``mlflow_endpoint`` authenticated (never anonymous inside an endpoint)."""
    return cast("User", request.user)


MLFLOW_PREFIX = "/api/2.0/mlflow"


def bad_request(request: HttpRequest, exception: Exception, **kwargs: Any) -> HttpResponse:
    """Django's ``handler400`` (a bad Host header, a malformed request caught before any view):
    MLflow's JSON under the MLflow prefixes, Django's own answer elsewhere."""
    if request.path.startswith(MLFLOW_PREFIX):
        return error_response(INVALID_PARAMETER_VALUE, "Bad request.", 400)
    return defaults.bad_request(request, exception, **kwargs)


def server_error(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Django's ``handler500`` (a failure outside an endpoint, in a middleware): MLflow's JSON under
    the MLflow prefixes, Django's own page elsewhere."""
    if request.path.startswith(MLFLOW_PREFIX):
        return error_response(INTERNAL_ERROR, "Internal error; the server log has the details.", 500)
    return defaults.server_error(request, **kwargs)


def ms(moment: datetime.datetime | None) -> int | None:
    """``moment`` as integer milliseconds since the Unix epoch (MLflow's timestamps), None stays None."""
    if moment is None:
        return None
    return int(moment.timestamp() * 1000)


def require(params: Params, name: str) -> str:
    """The non-empty string parameter ``name``; InvalidParameterValue naming it otherwise."""
    value = params.get(name)
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if value is None or value == "":
        raise InvalidParameterValue(f"Missing value for required parameter '{name}'.")
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A hand-written body may send ``"version": 1``; MLflow's client sends the string.
        return str(value)
    if not isinstance(value, str):
        raise InvalidParameterValue(f"Parameter '{name}' must be a string, got {type(value).__name__}.")
    return value


def optional_str(params: Params, name: str, default: str = "") -> str:
    """The string parameter ``name``, ``default`` when absent or null."""
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise InvalidParameterValue(f"Parameter '{name}' must be a string, got {type(value).__name__}.")
    return value


def param_list(params: Params, name: str) -> list[Any]:
    """A repeated parameter as a list: a GET query string gives a string for one value and a
    list for several, a JSON body a list (or nothing)."""
    value = params.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def int_param(params: Params, name: str, default: int) -> int:
    """An integer parameter (a string in a query string, a number in a body)."""
    value = params.get(name)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or value == "":
        return default
    refused = InvalidParameterValue(f"Parameter '{name}' must be a 64-bit integer, got {str(value)[:40]!r}.")
    # Not bool (an int subclass); strings of ASCII digits only (int() takes Arabic-Indic digits).
    if isinstance(value, bool) or (isinstance(value, str) and not value.isascii()):
        raise refused
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e400 is infinite
        raise refused from None
    if not -(2**63) <= number < 2**63:
        raise refused
    return number


def _parse(request: HttpRequest) -> Params:
    """The request's fields: the query string for GET (repeated keys become lists), the JSON
    object of the body otherwise (MLflow's client sends one on POST, PATCH and DELETE)."""
    if request.method in SAFE_METHODS or not request.body.strip():
        params: Params = {}
        for key, values in request.GET.lists():
            if any("\x00" in value for value in values):
                raise InvalidParameterValue(NUL_REFUSED)
            params[key] = values[0] if len(values) == 1 else values
        return params
    body = request.body
    # JSON writes a NUL as \u0000; no text column stores one (PostgreSQL refuses it outright).
    if b"\\u0000" in body:
        raise InvalidParameterValue(NUL_REFUSED)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameterValue(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidParameterValue("The request body must be a JSON object.")
    return data


def _authenticate(request: HttpRequest, *, writes: bool) -> Any:
    """The user the request's credentials name: Bearer token (one query) or Basic password.

    A job token also sets ``request.job_scope`` (``governance.job_scope``; one more query), and
    is Unauthenticated once its run is no longer running."""
    request.job_scope = None  # type: ignore[attr-defined]
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme in ("bearer", "token") and credentials:
        try:
            token = authenticate_secret(credentials)
        except InvalidToken as exc:
            raise Unauthenticated(str(exc)) from None
        if token.is_read_only and writes:
            raise PermissionDenied("this API token is read-only; use a read-write token to change anything")
        if token.scope == TokenScope.JOB:
            scope = load_job_scope(token.job_id)
            if scope is None or not scope.is_live:
                state = scope.state if scope is not None else "gone"
                raise Unauthenticated(f"This job token's run (job #{token.job_id}) is not running ({state}).")
            request.job_scope = scope  # type: ignore[attr-defined]
        if token.scope == TokenScope.PREDICT:  # issue 17: it predicts with its model, nothing else
            raise PermissionDenied("a prediction token may only call the predict endpoints of its model")
        record_use(token, timezone.now())
        return token.user
    if scheme == "basic" and credentials:
        try:
            username, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("Invalid Basic credentials: send base64 of 'username:password'.") from None
        # Django's authenticate(): django-axes counts a failure and refuses a locked-out pair; its
        # middleware then answers 429 (governance.lockout), as for the login page.
        user = authenticate(request, username=username, password=password)
        if user is None:
            raise Unauthenticated("Invalid username or password.")
        return user
    raise Unauthenticated()


def _answer_for(request: HttpRequest, exc: Exception) -> JsonResponse:
    if isinstance(exc, MlflowError):
        return error_response(exc.error_code, exc.message, exc.status)
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            message = "; ".join(
                f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
                for field, messages in exc.message_dict.items()
            )
        else:
            message = " ".join(exc.messages)
        return error_response(INVALID_PARAMETER_VALUE, message, 400)
    if isinstance(exc, PermissionDenied):
        return error_response(PERMISSION_DENIED, str(exc) or "Permission denied.", 403)
    if isinstance(exc, ObjectDoesNotExist):
        return error_response(RESOURCE_DOES_NOT_EXIST, str(exc) or "No such resource.", 404)
    if isinstance(exc, RequestDataTooBig):
        return error_response(INVALID_PARAMETER_VALUE, "The request body is too large.", 400)
    if isinstance(exc, SuspiciousOperation | RecursionError):
        return error_response(INVALID_PARAMETER_VALUE, "The request cannot be parsed.", 400)
    if isinstance(exc, IntegrityError):
        return error_response(RESOURCE_CONFLICT, CONFLICT, 409)
    if isinstance(exc, DataError):
        return error_response(INVALID_PARAMETER_VALUE, "A value in the request cannot be stored.", 400)
    if isinstance(exc, ArtifactUnreadable | KeyringError):
        # A stored artifact that cannot be given back (issue 12): the registry's own answer
        # (governance.errors: 409 tampered or missing, 410 erased, 503 store or keys down), in
        # MLflow's shape, rather than an internal error.
        answer = error_answer(exc)
        if answer is not None:
            codes = {409: RESOURCE_CONFLICT, 410: RESOURCE_DOES_NOT_EXIST, 503: TEMPORARILY_UNAVAILABLE}
            return error_response(
                codes.get(answer.status, INTERNAL_ERROR), str(answer.body[DETAIL]), answer.status
            )
    # A bug. Still MLflow's JSON shape (the client shows the message); the traceback goes to the log.
    logger.exception("MLflow API %s %s failed", request.method, request.path, exc_info=exc)
    return error_response(INTERNAL_ERROR, "Internal error; the server log has the details.", 500)


def mlflow_endpoint(
    *methods: str, writes: bool | None = None, for_job_token: bool = False
) -> Callable[[View], Callable[..., HttpResponse]]:
    """Make ``view(request, params) -> dict`` an MLflow API endpoint answering ``methods``.

    ``writes``: whether the endpoint changes anything (a read-only token is refused); by default
    true unless every method is GET. Pass ``writes=False`` for reads MLflow sends as POST
    (``runs/search``, ``experiments/search``...). Another method gets ENDPOINT_NOT_FOUND, so one
    path may route several methods to several views (see ``by_method``).
    ``request.user`` is the authenticated user inside the view; its answer is sent as JSON (200).
    ``for_job_token``: a job token may call it (the view then keeps to ``job_scope(request)``);
    otherwise a job token gets 403 PERMISSION_DENIED naming the rule (``governance.job_scope``).
    """
    allowed = frozenset(method.upper() for method in methods)
    is_write = writes if writes is not None else not allowed <= SAFE_METHODS

    def decorate(view: View) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                return endpoint_not_found(request)
            try:
                request.user = _authenticate(request, writes=is_write)
                scope = job_scope(request)
                if scope is not None and not for_job_token:
                    raise scope.refuse(f"{request.method} {request.path[:200]} is not open to it")
                params = _parse(request)
                if kwargs:
                    params.update(kwargs)
                return JsonResponse(view(request, params))
            except Exception as exc:
                return _answer_for(request, exc)

        endpoint.mlflow_methods = allowed  # type: ignore[attr-defined]
        return endpoint

    return decorate


def by_method(*endpoints: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """One Django view for a path several ``mlflow_endpoint`` views share by method, e.g.
    ``registered-models/alias`` (POST sets, GET reads, DELETE removes)."""
    table = {method: endpoint for endpoint in endpoints for method in endpoint.mlflow_methods}  # type: ignore[attr-defined]

    @csrf_exempt
    def dispatch(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        endpoint = table.get(request.method or "")
        if endpoint is None:
            return endpoint_not_found(request)
        return endpoint(request, *args, **kwargs)

    return dispatch
