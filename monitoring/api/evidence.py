"""``GET /api/model-versions/<id>/evidence/``: a model version's signed evidence pack (issue 12)."""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.models import ModelVersion
from monitoring.evidence import NothingSequenced, evidence_filename, evidence_pack, may_download_evidence


class EvidencePackView(APIView):
    """The version's model card, lineage graph and audit events with their proofs, signed: one
    JSON file ``merkle.py verify`` checks offline. A version the user may not view is a 404;
    viewing it without the audit tree's rights (compliance officers, platform admins) a 403."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            (200, "application/json"): OpenApiResponse(
                description="An evidence pack for `python3 merkle.py verify evidence.json`"
            ),
            403: OpenApiResponse(description="Only compliance officers and platform admins"),
            404: OpenApiResponse(description="No such model version in the user's teams"),
            409: OpenApiResponse(description="Nothing sequenced yet"),
        }
    )
    def get(self, request: Request, pk: int) -> HttpResponse | Response:
        version = get_object_or_404(
            ModelVersion.objects.restrict(request.user).select_related(
                "model__team", "model__owner", "created_by", "training_dataset_version__dataset"
            ),
            pk=pk,
        )
        if not may_download_evidence(request.user, version):
            raise PermissionDenied("only compliance officers and platform admins may download evidence packs")
        try:
            pack = evidence_pack(
                version,
                request.user,
                verifier_url=request.build_absolute_uri("/api/audit/verifier.py"),
                public_key_url=request.build_absolute_uri("/api/audit/public-key/"),
            )
        except NothingSequenced as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        response = HttpResponse(
            json.dumps(pack, ensure_ascii=False, indent=1), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{evidence_filename(version)}"'
        return response
