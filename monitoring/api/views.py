"""Monitoring API: drift checks, monitors, alerts, notifications, channels, escalation policies.

Every viewset restricts its queryset through ``RestrictedViewSetMixin`` (another team's object is
a 404); writes go through ``monitoring.actions``, which re-check the right in their transaction.
"""

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.api.base import RestrictedCreateViewSet, RestrictedReadOnlyViewSet, RestrictedViewSetMixin
from monitoring.actions.alerts import do_acknowledge_alert, do_resolve_alert, do_snooze_alert
from monitoring.actions.channels import do_create_channel, do_rotate_channel_secret, do_update_channel
from monitoring.actions.checks import do_request_drift_check, do_run_monitor
from monitoring.actions.monitors import (
    do_create_monitor,
    do_delete_monitor,
    do_pause_monitor,
    do_resume_monitor,
    do_update_monitor,
)
from monitoring.actions.policies import (
    do_create_escalation_policy,
    do_delete_escalation_policy,
    do_update_escalation_policy,
)
from monitoring.api.serializers import (
    AlertEventSerializer,
    AlertSerializer,
    AlertSnoozeSerializer,
    ChannelSecretSerializer,
    ChannelSerializer,
    ChannelUpdateSerializer,
    ChannelWriteSerializer,
    DriftCheckGroupsSerializer,
    DriftCheckRequestSerializer,
    DriftCheckSerializer,
    DriftHistoryPointSerializer,
    DriftHistoryQuerySerializer,
    EscalationPolicySerializer,
    MonitorSerializer,
    NotificationSerializer,
)
from monitoring.filtersets import (
    AlertFilterSet,
    ChannelFilterSet,
    DriftCheckFilterSet,
    EscalationPolicyFilterSet,
    MonitorFilterSet,
    NotificationFilterSet,
)
from monitoring.models import Alert, Channel, DriftCheck, EscalationPolicy, Monitor, Notification
from monitoring.queries import drift_history, group_trend
from monitoring.report_http import report_response


class DriftCheckViewSet(RestrictedCreateViewSet):
    queryset = DriftCheck.objects.all()
    serializer_class = DriftCheckSerializer
    filterset_class = DriftCheckFilterSet

    action_serializers = {"create": DriftCheckRequestSerializer}

    @extend_schema(request=DriftCheckRequestSerializer, responses={201: DriftCheckSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(request)
        check = do_request_drift_check(actor=request.user, **data)
        check.refresh_from_db()
        return Response(DriftCheckSerializer(check).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "text/html"): OpenApiResponse(description="The evidently HTML report")})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        return report_response(self.get_object())

    @extend_schema(responses={200: DriftCheckGroupsSerializer})
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def windows(self, request, pk=None):
        """The check's verdicts per time window and segment, and the trend over windows."""
        return Response(DriftCheckGroupsSerializer(group_trend(self.get_object())).data)


class AlertViewSet(RestrictedReadOnlyViewSet):
    queryset = Alert.objects.select_related("owner", "acknowledged_by", "resolved_by", "snoozed_by")
    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet

    @extend_schema(request=None, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return Response(
            AlertSerializer(do_acknowledge_alert(alert=self.get_object(), actor=request.user)).data
        )

    @extend_schema(request=AlertSnoozeSerializer, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def snooze(self, request, pk=None):
        alert = self.get_object()
        data = self.validated(request, AlertSnoozeSerializer)
        alert = do_snooze_alert(alert=alert, until=data["until"], actor=request.user)
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=None, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return Response(AlertSerializer(do_resolve_alert(alert=self.get_object(), actor=request.user)).data)

    @extend_schema(responses={200: AlertEventSerializer(many=True)})
    # The whole history as one list (an alert has tens of events): no pages, and the schema says so.
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def events(self, request, pk=None):
        alert = self.get_object()
        return Response(AlertEventSerializer(alert.events.select_related("actor"), many=True).data)


class NotificationViewSet(RestrictedReadOnlyViewSet):
    """Each delivery of an escalation step, with its attempts, error and result."""

    queryset = Notification.objects.all()
    serializer_class = NotificationSerializer
    filterset_class = NotificationFilterSet


class MonitorViewSet(RestrictedViewSetMixin, viewsets.ModelViewSet):
    queryset = Monitor.objects.all()
    serializer_class = MonitorSerializer
    filterset_class = MonitorFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = do_create_monitor(
            model_version=data.pop("model_version"), name=data.pop("name"), actor=self.request.user, **data
        )

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        if "model_version" in data and data["model_version"] != serializer.instance.model_version:
            raise ValidationError({"model_version": "a monitor cannot move to another model version"})
        data.pop("model_version", None)
        serializer.instance = do_update_monitor(monitor=serializer.instance, actor=self.request.user, **data)

    def perform_destroy(self, instance):
        do_delete_monitor(monitor=instance, actor=self.request.user)

    @extend_schema(request=None, responses={201: DriftCheckSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        check = do_run_monitor(monitor=self.get_object(), actor=request.user)
        check.refresh_from_db()
        return Response(DriftCheckSerializer(check).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[DriftHistoryQuerySerializer], responses={200: DriftHistoryPointSerializer(many=True)}
    )
    @action(detail=True, methods=["get"], url_path="drift-history", pagination_class=None, filter_backends=[])
    def drift_history(self, request, pk=None):
        """The monitor's succeeded checks, oldest first (issue 11): per check the dataset verdict
        and each column's method, score, threshold and verdict; ``?column=`` keeps one column,
        ``?limit=`` the newest N (default 100, at most 1000). 400 naming a bad parameter."""
        monitor = self.get_object()
        query = DriftHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        points = drift_history(
            monitor, column=query.validated_data.get("column"), limit=query.validated_data["limit"]
        )
        return Response(DriftHistoryPointSerializer(points, many=True).data)

    @extend_schema(request=None, responses={200: MonitorSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return Response(
            MonitorSerializer(do_pause_monitor(monitor=self.get_object(), actor=request.user)).data
        )

    @extend_schema(request=None, responses={200: MonitorSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        monitor = do_resume_monitor(monitor=self.get_object(), actor=request.user)
        return Response(MonitorSerializer(monitor).data)


class ChannelViewSet(
    RestrictedViewSetMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Delivery channels. The webhook secret is answered once, on creation and on rotation."""

    queryset = Channel.objects.select_related("owner")
    serializer_class = ChannelSerializer
    filterset_class = ChannelFilterSet
    http_method_names = ["get", "post", "patch", "head", "options"]

    action_serializers = {"create": ChannelWriteSerializer, "partial_update": ChannelUpdateSerializer}

    @extend_schema(request=ChannelWriteSerializer, responses={201: ChannelSecretSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(request)
        channel = do_create_channel(actor=request.user, **data)
        return Response(ChannelSecretSerializer(channel).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ChannelUpdateSerializer, responses={200: ChannelSerializer})
    def partial_update(self, request, *args, **kwargs):
        channel = self.get_object()
        data = self.validated(request)
        channel = do_update_channel(channel=channel, actor=request.user, **data)
        return Response(ChannelSerializer(channel).data)

    @extend_schema(request=None, responses={200: ChannelSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        channel = do_rotate_channel_secret(channel=self.get_object(), actor=request.user)
        return Response(ChannelSecretSerializer(channel).data)


class EscalationPolicyViewSet(RestrictedViewSetMixin, viewsets.ModelViewSet):
    queryset = EscalationPolicy.objects.prefetch_related("levels__users", "levels__channels")
    serializer_class = EscalationPolicySerializer
    filterset_class = EscalationPolicyFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        policy = do_create_escalation_policy(
            team=data["team"],
            name=data["name"],
            description=data.get("description", ""),
            levels=data["levels"],
            actor=self.request.user,
        )
        serializer.instance = self.refetch(policy)

    def perform_update(self, serializer):
        data = serializer.validated_data
        if "team" in data and data["team"] != serializer.instance.team:
            raise ValidationError({"team": "a policy cannot move to another team"})
        policy = do_update_escalation_policy(
            policy=serializer.instance,
            actor=self.request.user,
            name=data.get("name"),
            description=data.get("description"),
            levels=data.get("levels"),
        )
        serializer.instance = self.refetch(policy)

    def perform_destroy(self, instance):
        do_delete_escalation_policy(policy=instance, actor=self.request.user)
