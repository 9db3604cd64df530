from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.api.base import RestrictedCreateViewSet
from runners import actions
from runners.api.serializers import JobSerializer, JobSubmitSerializer
from runners.filtersets import JobFilterSet
from runners.models import Job


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
