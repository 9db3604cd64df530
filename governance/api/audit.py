"""The audit trail's API: events (read-only, cursor-paginated), proofs, checkpoints, exports.

Events come through ``RestrictedViewSetMixin`` like every object. The tree itself (proofs,
checkpoints, consistency proofs, JSON bundles) is for platform admins and compliance officers
(``audit.proofs.may_audit``): tree sizes and leaf indexes count every team's events. The public
key and the verifier script are public: an auditor fetches and pins them without an account.
"""

from __future__ import annotations

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import audit_export
from governance.api.base import KnownQueryParamsMixin, RestrictedReadOnlyViewSet
from governance.api.pagination import KeysetCursorPagination
from governance.api.serializers import AuditEventSerializer
from governance.audit.keys import signing_key
from governance.audit.proofs import (
    AuditTreeError,
    checkpoint_json,
    latest_checkpoint,
    may_audit,
    stored_consistency_proof,
)
from governance.audit.verify import verify_event
from governance.filtersets import AuditEventFilterSet
from governance.keyset import MAX_BIGINT
from governance.models import AuditCheckpoint, AuditEvent


class IsAuditor(BasePermission):
    """Platform admins and compliance officers (``audit.proofs.may_audit``)."""

    message = "only compliance officers and platform admins may read the audit tree"

    def has_permission(self, request, view) -> bool:
        return may_audit(request.user)


class CheckpointPagination(KeysetCursorPagination):
    page_size = 100


class EventVerificationSerializer(serializers.Serializer):
    """``audit.verify.verify_event``: the leaf recomputed from the event as stored now, checked
    against the latest checkpoint's signature and root."""

    status = serializers.ChoiceField(choices=["verified", "failed"])
    detail = serializers.CharField(help_text="Why it failed, or a note (personal details erased).")


class CheckpointSerializer(serializers.Serializer):
    """A signed checkpoint: the signature covers ``merkle.checkpoint_body(tree_size, root_hash,
    timestamp)`` exactly as written here."""

    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField(help_text="Hex SHA-256 Merkle tree hash (RFC 9162 section 2.1.1).")
    timestamp = serializers.CharField(help_text="The signed ISO 8601 time, UTC, microseconds.")
    signature = serializers.CharField(help_text="Base64 Ed25519 signature (RFC 8032).")
    key_id = serializers.CharField(help_text="Hex SHA-256 of the public key PEM.")

    def to_representation(self, instance: AuditCheckpoint) -> dict:
        return checkpoint_json(instance)


class EventProofSerializer(serializers.Serializer):
    leaf_index = serializers.IntegerField()
    leaf = serializers.DictField(help_text="The object whose canonical JSON the leaf hashes.")
    leaf_hash = serializers.CharField(help_text="Hex SHA-256(0x00 || canonical JSON of the leaf).")
    proof = serializers.ListField(child=serializers.CharField(), help_text="Hex hashes, leaf level first.")
    checkpoint = CheckpointSerializer()
    personal_data_erased = serializers.BooleanField()
    verification = EventVerificationSerializer()


class ConsistencyProofSerializer(serializers.Serializer):
    first = CheckpointSerializer()
    second = CheckpointSerializer()
    proof = serializers.ListField(child=serializers.CharField(), help_text="Hex hashes (RFC 9162 2.1.4.1).")


class ConsistencyQuerySerializer(serializers.Serializer):
    first = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)
    second = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)

    def validate(self, attrs: dict) -> dict:
        if attrs["first"] > attrs["second"]:
            raise serializers.ValidationError("first must not be larger than second")
        return attrs


def _tree_problem(reason: object) -> Response:
    return Response(
        {"detail": f"the stored audit tree is inconsistent ({reason}); run manage.py audit_verify"},
        status=status.HTTP_409_CONFLICT,
    )


class AuditEventViewSet(RestrictedReadOnlyViewSet):
    """Read-only: audit events are written by actions alone, never through the API."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    # Newest first; keyset pages cost the same at any depth, no COUNT over the whole log.
    ordering = ("-timestamp", "-id")

    def filter_restricted(self, queryset):
        if self.action == "proof":
            return queryset.select_related("leaf", "personal_data")
        if self.action == "export_csv" and may_audit(self.request.user):
            return queryset.select_related("team", "leaf")
        if self.action == "export_csv":
            return queryset.select_related("team")
        if self.action == "export_json":
            return queryset.select_related("leaf", "personal_data")
        return queryset

    def get_permissions(self):
        if self.action in {"proof", "export_json"}:
            return [IsAuthenticated(), IsAuditor()]
        return super().get_permissions()

    @extend_schema(
        responses={
            200: EventProofSerializer,
            409: OpenApiResponse(description="Not sequenced yet, or the stored tree is inconsistent"),
        }
    )
    @action(detail=True, methods=["get"])
    def proof(self, request: Request, pk: str | None = None) -> Response:
        """The event's leaf, its inclusion proof against the latest signed checkpoint, and
        whether they verify: a row altered in the database still gets its proof (the auditor
        needs it as evidence), marked ``"verification": {"status": "failed", "detail": ...}``."""
        event = self.get_object()
        verification = verify_event(event)
        if verification.status == "unsequenced":
            return Response(
                {"detail": "this event is not sequenced yet; the sequencer gives it a leaf within seconds"},
                status=status.HTTP_409_CONFLICT,
            )
        if verification.proof is None:  # no proof could be built from the stored tree
            return _tree_problem(verification.detail)
        body = verification.proof.as_json()
        body["verification"] = {"status": verification.status, "detail": verification.detail}
        return Response(body)

    @extend_schema(
        operation_id="audit_events_export_csv", filters=True, responses={(200, "text/csv"): OpenApiTypes.STR}
    )
    def export_csv(self, request: Request) -> StreamingHttpResponse:
        """The filtered audit events as CSV, newest first; cells that would be spreadsheet
        formulas start with a quote. The ``leaf_index`` column is for compliance officers and
        platform admins only. Bad filters are a 400 before anything streams."""
        events = self.filter_queryset(self.get_queryset())
        lines = audit_export.csv_lines(events, with_leaf_index=may_audit(request.user))
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="audit-{_stamp()}.csv"'
        return response

    @extend_schema(
        operation_id="audit_events_export_json",
        filters=True,
        responses={
            (200, "application/json"): OpenApiResponse(
                description="A bundle for `python3 merkle.py verify bundle.json`"
            ),
            409: OpenApiResponse(description="Nothing sequenced yet"),
        },
    )
    def export_json(self, request: Request) -> StreamingHttpResponse | Response:
        """The filtered, sequenced events with their leaves and inclusion proofs, the latest
        checkpoint and the public key: everything an auditor needs to verify offline."""
        filtered = self.filter_queryset(self.get_queryset())  # bad filters: a 400 before anything else
        checkpoint = latest_checkpoint()
        if checkpoint is None:
            return Response({"detail": "nothing is sequenced yet"}, status=status.HTTP_409_CONFLICT)
        chunks = audit_export.bundle_chunks(
            filtered.filter(leaf__leaf_index__lt=checkpoint.tree_size),
            checkpoint,
            filters={key: value for key, value in request.query_params.items() if value},
            verifier_url=request.build_absolute_uri("/api/audit/verifier.py"),
            public_key_url=request.build_absolute_uri("/api/audit/public-key/"),
            unsequenced=filtered.filter(leaf__isnull=True).count(),
        )
        response = StreamingHttpResponse(chunks, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="audit-bundle-{_stamp()}.json"'
        return response


def _stamp() -> str:
    return timezone.now().strftime("%Y%m%dT%H%M%SZ")


class AuditCheckpointViewSet(KnownQueryParamsMixin, viewsets.ReadOnlyModelViewSet):
    """Every signed checkpoint, largest tree first; ``/api/audit/checkpoints/{tree_size}/``."""

    queryset = AuditCheckpoint.objects.all()
    serializer_class = CheckpointSerializer
    pagination_class = CheckpointPagination
    permission_classes = [IsAuthenticated, IsAuditor]
    lookup_field = "tree_size"
    lookup_value_regex = "[0-9]+"


class AuditConsistencyView(APIView):
    """``?first=<tree size>&second=<tree size>``: proof that the first checkpoint's tree is a
    prefix of the second's (RFC 9162 section 2.1.4), from O(log n) stored nodes in one query."""

    permission_classes = [IsAuthenticated, IsAuditor]

    @extend_schema(
        parameters=[ConsistencyQuerySerializer],
        responses={200: ConsistencyProofSerializer, 404: OpenApiResponse(description="No such checkpoint")},
    )
    def get(self, request: Request) -> Response:
        query = ConsistencyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        first, second = query.validated_data["first"], query.validated_data["second"]
        found = {c.tree_size: c for c in AuditCheckpoint.objects.filter(tree_size__in=[first, second])}
        for size in (first, second):
            if size not in found:
                return Response(
                    {"detail": f"no checkpoint at tree size {size}"}, status=status.HTTP_404_NOT_FOUND
                )
        try:
            proof = stored_consistency_proof(first, second)
        except AuditTreeError as exc:
            return _tree_problem(exc)
        return Response(
            {
                "first": checkpoint_json(found[first]),
                "second": checkpoint_json(found[second]),
                "proof": [step.hex() for step in proof],
            }
        )


class AuditPublicKeyView(APIView):
    """The checkpoint signing key's public half (PEM). Public on purpose: auditors fetch it
    without an account and pin it, then compare it with the key inside every bundle."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "application/x-pem-file"): OpenApiTypes.STR})
    def get(self, request: Request) -> HttpResponse:
        key = signing_key()
        response = HttpResponse(key.public_key_pem, content_type="application/x-pem-file")
        response["X-Audit-Key-Id"] = key.key_id
        # Saved as the name docs/operations.md's verify command uses (a browser said "download").
        response["Content-Disposition"] = 'attachment; filename="steward.pem"'
        return response


class AuditVerifierView(APIView):
    """The offline verifier (``governance/merkle.py``, stdlib + ``cryptography``), as a download.
    Public like the key: it holds no secret, and an auditor should read it before running it."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "text/x-python"): OpenApiTypes.BINARY})
    def get(self, request: Request) -> FileResponse:
        response = FileResponse(
            audit_export.VERIFIER_PATH.open("rb"),
            as_attachment=True,
            filename="merkle.py",
            content_type="text/x-python",
        )
        response["X-Verifier-SHA256"] = audit_export.verifier_sha256()
        return response


export_csv_view = AuditEventViewSet.as_view({"get": "export_csv"})
export_json_view = AuditEventViewSet.as_view({"get": "export_json"})
