from django.core.exceptions import ValidationError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.api.base import RestrictedCreateViewSet, RestrictedViewSetMixin
from runners import actions, schedules
from runners.api.serializers import JobScheduleSerializer, JobSerializer, JobSubmitSerializer
from runners.filtersets import JobFilterSet, JobScheduleFilterSet
from runners.models import Job, JobSchedule


class JobViewSet(RestrictedCreateViewSet):
    """Submit training and inference jobs, follow their progress, cancel them."""

    queryset = Job.objects.select_related("created_by")
    serializer_class = JobSerializer
    filterset_class = JobFilterSet

    action_serializers = {"create": JobSubmitSerializer}

    @extend_schema(request=JobSubmitSerializer, responses={201: JobSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(request)
        job = actions.do_submit_job(actor=request.user, **data)
        job.refresh_from_db()
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = actions.do_cancel_job(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(
        responses={
            (200, "application/yaml"): OpenApiResponse(description="A batch/v1 Job or kubeflow PyTorchJob")
        }
    )
    @action(detail=True, methods=["get"], url_path="kubernetes-manifest")
    def kubernetes_manifest(self, request, pk=None):
        """The job as a Kubernetes manifest to apply (``kubectl apply -f``); Steward does not submit it."""
        manifest = actions.kubernetes_manifest(self.get_object())
        return HttpResponse(manifest, content_type="application/yaml")


class JobScheduleViewSet(RestrictedViewSetMixin, viewsets.ModelViewSet):
    """Recurring jobs: each cron time submits a job on the dataset's latest version."""

    queryset = JobSchedule.objects.select_related("created_by")
    serializer_class = JobScheduleSerializer
    filterset_class = JobScheduleFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = schedules.do_create_job_schedule(actor=self.request.user, **data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        if "kind" in data and data.pop("kind") != serializer.instance.kind:
            raise ValidationError({"kind": "a schedule keeps its kind; create another schedule"})
        serializer.instance = schedules.do_update_job_schedule(
            schedule=serializer.instance, actor=self.request.user, **data
        )

    def perform_destroy(self, instance):
        schedules.do_delete_job_schedule(schedule=instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: JobScheduleSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        schedule = schedules.do_pause_job_schedule(schedule=self.get_object(), actor=request.user)
        return Response(JobScheduleSerializer(schedule).data)

    @extend_schema(request=None, responses={200: JobScheduleSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        schedule = schedules.do_resume_job_schedule(schedule=self.get_object(), actor=request.user)
        return Response(JobScheduleSerializer(schedule).data)
