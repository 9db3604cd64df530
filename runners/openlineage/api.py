"""The OpenLineage HTTP contract (spec/OpenLineage.yml): ``POST /api/v1/lineage`` (one event)
and ``POST /api/v1/lineage/batch`` (an array), plus read endpoints for the external objects.

Authenticated like the rest of the API: the client's ``api_key`` auth sends the Steward token
as ``Authorization: Bearer``. Bodies may be gzipped, with or without ``Content-Encoding``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lineage.api.views import MarquezLineageView
from lineage.openlineage.events import BodyTooLarge, EventError, decode_body, load_json, parse_event
from runners.openlineage.actions import TEAM_HEADER, IngestRefused, do_ingest_events, ingest_team
from runners.openlineage.models import (
    OpenLineageDataset,
    OpenLineageDatasetUse,
    OpenLineageJob,
    OpenLineageRun,
)

TEAM_PARAMETERS = [
    OpenApiParameter(
        TEAM_HEADER,
        str,
        location=OpenApiParameter.HEADER,
        required=False,
        description="The team (name or id) the events land in; needed when you may write to several.",
    ),
    OpenApiParameter("team", str, required=False, description=f"Same as the {TEAM_HEADER} header."),
]


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


def _refused(exc: IngestRefused) -> exceptions.APIException:
    if exc.status == 403:
        return exceptions.PermissionDenied({exc.field: [str(exc).split(": ", 1)[1]]})
    return exceptions.ValidationError({exc.field: [str(exc).split(": ", 1)[1]]})


class IngestView(APIView):
    """What both ingest endpoints share: the team, the bounded (maybe gzipped) JSON body."""

    # The body is read here, bounded, not by DRF's parsers (which know neither gzip nor limits).
    parser_classes: list = []

    def _team(self, request: Request):
        requested = request.headers.get(TEAM_HEADER) or request.query_params.get("team", "")
        try:
            return ingest_team(request.user, requested.strip())  # type: ignore[arg-type]
        except IngestRefused as exc:
            raise _refused(exc) from exc

    def _json(self, request: Request) -> Any:
        limit = settings.STEWARD_OPENLINEAGE_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
        raw = request._request.read(limit + 1)
        try:
            data = decode_body(
                raw, content_encoding=request.headers.get("Content-Encoding", ""), max_bytes=limit
            )
            return load_json(data)
        except BodyTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        except EventError as exc:
            raise exceptions.ValidationError({exc.field: [str(exc).split(": ", 1)[1]]}) from exc
        except ValueError as exc:
            raise exceptions.ValidationError({"body": [str(exc)]}) from exc

    def _ingest(self, events: list, team, request: Request):
        try:
            return do_ingest_events(events, team=team, actor=request.user)  # type: ignore[arg-type]
        except IngestRefused as exc:
            raise _refused(exc) from exc


class LineageEventView(IngestView):
    """``POST /api/v1/lineage``: one RunEvent, JobEvent or DatasetEvent. ``GET`` on the same path
    is Marquez's read of the graph around a node (``lineage.api.views.MarquezLineageView``).

    200 ``{"status": "applied" | "duplicate"}``; 400 naming the bad field; 409 when the runId
    belongs to another job (flagged on the run, not merged); 413 past the size limit.
    """

    @extend_schema(
        request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT}, parameters=TEAM_PARAMETERS
    )
    def post(self, request: Request) -> Response:
        team = self._team(request)
        body = self._json(request)
        try:
            parsed = parse_event(body)
        except EventError as exc:
            raise exceptions.ValidationError({exc.field: [str(exc).split(": ", 1)[1]]}) from exc
        try:
            [result] = self._ingest([(parsed, body)], team, request)
        except DatabaseError as exc:
            # A deadlock or lost connection: the client's retry (it retries 5xx) is the cure.
            return Response({"detail": f"try again: {type(exc).__name__}"}, status=503)
        if result.outcome == "conflict":
            return Response({"run.runId": [result.reason]}, status=status.HTTP_409_CONFLICT)
        return Response({"status": result.outcome})

    get = MarquezLineageView.get


class LineageBatchView(IngestView):
    """``POST /api/v1/lineage/batch``: an array of events, each applied or refused on its own.

    200 with the spec's summary: ``{status: success | partial_success, summary: {received,
    successful, failed, retriable, non_retriable}, failed_events: [{index, reason, retriable}]}``.
    """

    @extend_schema(
        request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT}, parameters=TEAM_PARAMETERS
    )
    def post(self, request: Request) -> Response:
        team = self._team(request)
        body = self._json(request)
        if not isinstance(body, list):
            raise exceptions.ValidationError({"body": ["must be a JSON array of events"]})
        limit = settings.STEWARD_OPENLINEAGE_MAX_BATCH
        if len(body) > limit:
            raise PayloadTooLarge(f"a batch holds at most {limit} events, got {len(body)}")
        failed: list[dict[str, Any]] = []
        valid: list[tuple[int, Any]] = []
        for index, item in enumerate(body):
            try:
                valid.append((index, parse_event(item)))
            except EventError as exc:
                failed.append({"index": index, "reason": str(exc), "retriable": False})
        successful = 0
        for index, parsed in valid:
            try:
                [result] = self._ingest([(parsed, body[index])], team, request)
            except DatabaseError as exc:
                failed.append(
                    {"index": index, "reason": f"try again: {type(exc).__name__}", "retriable": True}
                )
                continue
            if result.outcome == "conflict":
                failed.append({"index": index, "reason": f"run.runId: {result.reason}", "retriable": False})
            else:
                successful += 1
        failed.sort(key=lambda f: f["index"])
        retriable = sum(1 for f in failed if f["retriable"])
        return Response(
            {
                "status": "partial_success" if failed else "success",
                "summary": {
                    "received": len(body),
                    "successful": successful,
                    "failed": len(failed),
                    "retriable": retriable,
                    "non_retriable": len(failed) - retriable,
                },
                "failed_events": failed,
            }
        )


def dataset_use(use: OpenLineageDatasetUse) -> dict[str, Any]:
    """One input or output of a run or job, as the read endpoints show it."""
    return {
        "role": use.role,
        "namespace": use.namespace,
        "name": use.name,
        "node": f"dataset_version:{use.dataset_version_id}"
        if use.dataset_version_id
        else f"openlineage_dataset:{use.dataset_id}",
        "facets": use.facets,
        "columnLineage": use.column_lineage,
    }


class OpenLineageRunView(APIView):
    """``GET /api/openlineage/runs/<id>/``: a run's state, facets, and its inputs and outputs
    with their facets (the column-lineage facet of each output included)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(OpenLineageRun.objects.restrict(request.user).select_related("job"), pk=pk)
        return Response(
            {
                "id": run.pk,
                "runId": str(run.run_id),
                "job": {"id": run.job_id, "namespace": run.job.namespace, "name": run.job.name},
                "state": run.state,
                "stateAt": run.state_at,
                "startedAt": run.started_at,
                "endedAt": run.ended_at,
                "facets": run.facets,
                "reusedBy": run.reused_by,
                "datasets": [dataset_use(use) for use in run.datasets.all()],
            }
        )


class OpenLineageDatasetView(APIView):
    """``GET /api/openlineage/datasets/<id>/``: an external dataset's latest facets, its
    column lineage, and the runs that read or wrote it."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        dataset = get_object_or_404(OpenLineageDataset.objects.restrict(request.user), pk=pk)
        uses = OpenLineageDatasetUse.objects.restrict(request.user).filter(dataset=dataset, run__isnull=False)
        return Response(
            {
                "id": dataset.pk,
                "namespace": dataset.namespace,
                "name": dataset.name,
                "facets": dataset.facets,
                "columnLineage": dataset.column_lineage,
                "runs": [{"id": use.run_id, "role": use.role} for use in uses.order_by("run_id", "role")],
            }
        )


class OpenLineageJobView(APIView):
    """``GET /api/openlineage/jobs/<id>/``: an external job, its facets, static lineage, runs."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(OpenLineageJob.objects.restrict(request.user), pk=pk)
        return Response(
            {
                "id": job.pk,
                "namespace": job.namespace,
                "name": job.name,
                "facets": job.facets,
                "datasets": [dataset_use(use) for use in job.static_datasets.all()],
                "runs": [
                    {"id": run.pk, "runId": str(run.run_id), "state": run.state}
                    for run in job.runs.order_by("-created_at", "-id")[:100]
                ],
            }
        )
