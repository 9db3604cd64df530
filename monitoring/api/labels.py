"""Late labels' API (issue 11): ``/api/models/<id>/labels/``. Thin: parse, call
``monitoring.actions.labels``, answer."""

from __future__ import annotations

import tempfile
from pathlib import Path

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.views.helpers import visible_model_or_404
from monitoring.actions import labels


class LabelRowSerializer(serializers.Serializer):
    prediction_id = serializers.UUIDField(required=False)
    key = serializers.CharField(required=False)
    label = serializers.JSONField()


class LabelRequestSerializer(serializers.Serializer):
    labels = LabelRowSerializer(many=True, required=False)
    file = serializers.FileField(
        required=False, help_text="A CSV or Parquet file: label + prediction_id or key."
    )


class LabelReceiptSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    unknown = serializers.IntegerField()
    unknown_prediction_ids = serializers.ListField(child=serializers.UUIDField())


class LabelSummarySerializer(serializers.Serializer):
    registered_model = serializers.IntegerField()
    labels = serializers.IntegerField()
    by_prediction_id = serializers.IntegerField()
    by_key = serializers.IntegerField()
    last_received_at = serializers.DateTimeField(allow_null=True)


class LabelView(APIView):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(responses={200: LabelSummarySerializer})
    def get(self, request, pk: int) -> Response:
        """How many late labels the model holds (by prediction id, by key) and the newest's time."""
        return Response(LabelSummarySerializer(labels.label_summary(visible_model_or_404(request, pk))).data)

    @extend_schema(request=LabelRequestSerializer, responses={200: LabelReceiptSerializer})
    def post(self, request, pk: int) -> Response:
        """Deliver labels: ``{"labels": [{"prediction_id": ..., "label": ...} or {"key": ..., "label":
        ...}]}``, or a multipart ``file``. Idempotent: a label delivered again is counted
        ``unchanged``; unknown prediction ids are reported, not stored."""
        model = visible_model_or_404(request, pk)
        upload = request.FILES.get("file")
        if upload is not None:
            with tempfile.TemporaryDirectory(prefix="steward-labels-") as folder:
                path = Path(folder) / "labels"
                with path.open("wb") as out:
                    for chunk in upload.chunks():
                        out.write(chunk)
                rows = labels.rows_of_file(path, upload.name or "labels")
            source = upload.name or "file"
        else:
            rows = request.data.get("labels") if isinstance(request.data, dict) else request.data
            source = "api"
        receipt = labels.do_receive_labels(
            registered_model=model, rows=rows, actor=request.user, source=source
        )
        return Response(receipt.as_json(), status=status.HTTP_200_OK)
