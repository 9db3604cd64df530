"""The artifact proxy, ``/api/2.0/mlflow-artifacts/artifacts/<path>`` (issue 9): what MLflow's
``mlflow-artifacts:/`` repository calls (``mlflow/store/artifact/http_artifact_repo.py``).

* ``PUT artifacts/<path>``: the body is the file, streamed to a scratch file and stored
  (``runners.run_artifacts``) only when all ``Content-Length`` bytes came (never half a file); refused
  past ``STEWARD_MAX_MODEL_BYTES``, without a ``Content-Length`` (411), or when the body ends early.
* ``GET artifacts/<path>``: the file, streamed.
* ``GET artifacts?path=<dir>``: ``{"files": [{"path": name, "is_dir", "file_size"}]}`` directly
  under the directory (names relative to it, as MLflow's server answers).

Which paths exist and who may read or write them: ``runners.mlflow_artifacts.locate`` (RBAC: an
invisible owner is a 404; a path with ``..`` a 400). Authentication and the error body are the
MLflow API's (``governance.api.mlflow.base``); the body is not JSON, so these views authenticate
and answer errors themselves through the same functions. A job token reaches only its own run's
files (``locate``'s ``job_scope``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from governance.api.mlflow.base import MlflowError, _answer_for, _authenticate, endpoint_not_found, job_scope
from governance.artifacts import open_version_file, version_files
from runners import run_artifacts
from runners.mlflow_artifacts import ArtifactPlace, locate
from runners.tracking import decimal_pk

CHUNK = 1024 * 1024


def _artifact_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @csrf_exempt
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            request.user = _authenticate(request, writes=request.method not in ("GET", "HEAD"))
            return view(request, *args, **kwargs)
        except Exception as exc:
            return _answer_for(request, exc)

    return wrapped


def _upload(request: HttpRequest, path: str) -> HttpResponse:
    place = locate(path, request.user, writes=True, job_scope=job_scope(request))
    # Refused before the body is read; checked again when it is stored (a racing upload).
    run_artifacts.refuse_conflicts(place.prefix, place.relative)
    limit = settings.STEWARD_MAX_MODEL_BYTES
    # The length is required: without it (a chunked body) Django's WSGI request reads nothing, and
    # with it a body that ends early is told apart from a complete file.
    declared = decimal_pk(request.META.get("CONTENT_LENGTH") or "")
    if declared is None:
        raise MlflowError(
            "LENGTH_REQUIRED",
            "An artifact upload needs a Content-Length header (chunked bodies are not read).",
            411,
        )
    if declared > limit:
        raise ValidationError(
            {"path": f"an artifact file has at most {limit} bytes; this one has {declared}"}
        )
    with run_artifacts.received_file() as (handle, received):
        written = 0
        # Hashed as it arrives: the store needs the sha256, and a second read of a large file
        # would cost as much as receiving it.
        digest = hashlib.sha256()
        while chunk := request.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise ValidationError({"path": f"an artifact file has at most {limit} bytes"})
            handle.write(chunk)
            digest.update(chunk)
        handle.flush()
        if written != declared:
            # The client went away mid-upload: keep whatever file was there.
            raise ValidationError(
                {"path": f"the upload ended after {written} of {declared} bytes; nothing was stored"}
            )
        run_artifacts.do_store_file(
            prefix=place.prefix,
            relative=place.relative,
            team_id=place.team_id,
            source=received,
            logged_model_id=place.logged_model.pk if place.logged_model is not None else None,
            sha256=digest.hexdigest(),
        )
    return JsonResponse({})


def _download(request: HttpRequest, path: str) -> HttpResponse:
    place = locate(path, request.user, job_scope=job_scope(request))
    name = place.relative.rsplit("/", 1)[-1] or "artifact"
    if place.version is not None:
        handle = open_version_file(place.version, place.relative)
        return FileResponse(handle, as_attachment=True, filename=name)
    return FileResponse(run_artifacts.open_file(place.path), as_attachment=True, filename=name)


@_artifact_view
def artifact(request: HttpRequest, path: str) -> HttpResponse:
    """``PUT`` uploads, ``GET`` downloads one artifact file."""
    if request.method == "PUT":
        return _upload(request, path)
    if request.method == "GET":
        return _download(request, path)
    return endpoint_not_found(request)


def _children(place: ArtifactPlace) -> list[dict[str, Any]]:
    if place.version is not None:
        prefix = f"{place.relative}/" if place.relative else ""
        entries: dict[str, dict[str, Any]] = {}
        for relative, size in version_files(place.version):
            if not relative.startswith(prefix):
                continue
            head, _, rest = relative[len(prefix) :].partition("/")
            entries[head] = (
                {"path": head, "is_dir": True} if rest else {"path": head, "is_dir": False, "file_size": size}
            )
        return [entries[name] for name in sorted(entries)]
    return run_artifacts.children(place.path)


@_artifact_view
def list_artifacts(request: HttpRequest) -> HttpResponse:
    """``GET artifacts?path=<dir>``: the entries directly under ``dir``."""
    if request.method != "GET":
        return endpoint_not_found(request)
    return JsonResponse(
        {"files": _children(locate(request.GET.get("path", ""), request.user, job_scope=job_scope(request)))}
    )
