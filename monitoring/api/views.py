from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance import artifacts
from governance.api.base import RestrictedReadOnlyViewSet, RestrictedViewSetMixin
from monitoring import actions
from monitoring.api.serializers import AlertSerializer, DriftCheckRequestSerializer, DriftCheckSerializer
from monitoring.filtersets import AlertFilterSet, DriftCheckFilterSet
from monitoring.models import Alert, DriftCheck


class DriftCheckViewSet(RestrictedViewSetMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = DriftCheck.objects.all()
    serializer_class = DriftCheckSerializer
    filterset_class = DriftCheckFilterSet

    def get_serializer_class(self):
        return DriftCheckRequestSerializer if self.action == "create" else DriftCheckSerializer

    @extend_schema(request=DriftCheckRequestSerializer, responses={201: DriftCheckSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        check = actions.do_request_drift_check(actor=request.user, **serializer.validated_data)
        check.refresh_from_db()
        return Response(DriftCheckSerializer(check).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "text/html"): OpenApiResponse(description="The evidently HTML report")})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        check = self.get_object()
        if not check.report:
            raise Http404("this drift check has no report (yet)")
        return FileResponse(artifacts.resolve(check.report).open("rb"), content_type="text/html")


class AlertViewSet(RestrictedReadOnlyViewSet):
    queryset = Alert.objects.select_related("owner", "acknowledged_by", "resolved_by")
    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet

    @extend_schema(request=None, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return Response(
            AlertSerializer(actions.do_acknowledge_alert(alert=self.get_object(), actor=request.user)).data
        )

    @extend_schema(request=None, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return Response(
            AlertSerializer(actions.do_resolve_alert(alert=self.get_object(), actor=request.user)).data
        )
