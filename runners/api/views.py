from django.core.exceptions import ValidationError
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api.base import RestrictedCreateViewSet, RestrictedViewSetMixin
from runners import actions, budgets, code_runs, joblog, schedules
from runners.accounting import storage_rows, usage_rows
from runners.api.serializers import (
    BudgetSerializer,
    CodeRunSubmitSerializer,
    JobLogSerializer,
    JobScheduleSerializer,
    JobSerializer,
    JobSubmitSerializer,
    MetricSeriesQuerySerializer,
    MetricSeriesSerializer,
    StorageQuerySerializer,
    StorageRowSerializer,
    UsageQuerySerializer,
    UsageRowSerializer,
)
from runners.filtersets import BudgetFilterSet, JobFilterSet, JobScheduleFilterSet
from runners.models import Budget, Job, JobKind, JobSchedule
from runners.queries import SeriesCursor, metric_series


def refuse_unknown_query_params(request, serializer_class) -> None:
    """A 400 naming the query parameters ``serializer_class`` does not read (a misspelt one would
    otherwise be ignored) and the ones it does."""
    known = list(serializer_class().fields)
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise ParseError(f"unknown query parameter(s): {', '.join(unknown)}; known: {', '.join(known)}")


class JobViewSet(RestrictedCreateViewSet):
    """Submit training, inference and evaluation jobs, follow their progress, cancel them."""

    queryset = Job.objects.select_related("created_by")
    serializer_class = JobSerializer
    filterset_class = JobFilterSet

    action_serializers = {"create": JobSubmitSerializer}

    @extend_schema(
        request={
            "application/json": PolymorphicProxySerializer(
                component_name="JobSubmission",
                serializers={
                    JobKind.TRAIN.value: JobSubmitSerializer,
                    JobKind.INFER.value: JobSubmitSerializer,
                    JobKind.EVALUATE.value: JobSubmitSerializer,
                    JobKind.CODE.value: CodeRunSubmitSerializer,
                },
                resource_type_field_name="kind",
            )
        },
        responses={201: JobSerializer},
    )
    def create(self, request, *args, **kwargs):
        if isinstance(request.data, dict) and request.data.get("kind") == JobKind.CODE:
            data = dict(self.validated(request, CodeRunSubmitSerializer))
            data.pop("kind")
            job = code_runs.do_submit_code_run(actor=request.user, **data)
        else:
            job = actions.do_submit_job(actor=request.user, **self.validated(request))
        job.refresh_from_db()
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="the last seq already read (0: from the start)")
        ],
        responses={200: JobLogSerializer},
    )
    @action(detail=True, methods=["get"])
    def log(self, request, pk=None):
        """The job's log after ``after``, at most 1,000 chunks; follow with ``next``."""
        unknown = sorted(set(request.query_params) - {"after"})
        if unknown:
            raise ParseError(f"unknown query parameter(s): {', '.join(unknown)}; known: after")
        raw = request.query_params.get("after", "0")
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
            raise ParseError(f"after: a chunk's seq, a whole number of 0 or more; got {raw!r}")
        after = int(raw)
        job = self.get_object()
        chunks = joblog.chunks_after(job.pk, after)
        body = {
            "chunks": chunks,
            "next": chunks[-1].seq if chunks else after,
            "state": job.state,
            "finished": job.is_finished,
            "truncated": joblog.log_state(job.pk).is_truncated,
        }
        return Response(JobLogSerializer(body).data)

    @extend_schema(responses={(200, "text/plain"): OpenApiResponse(description="The whole log as text")})
    def log_text(self, request, pk=None):
        """The job's whole stored log as plain text, streamed."""
        job = self.get_object()
        response = StreamingHttpResponse(joblog.whole_log(job.pk), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'inline; filename="job-{job.pk}.log"'
        return response

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

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Release a job its team's budget held (model owners and platform admins)."""
        job = actions.do_release_job(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(parameters=[MetricSeriesQuerySerializer], responses={200: MetricSeriesSerializer})
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        """The job's metric series for charts (issue 17): logged points by step and per-epoch
        history, at most 1,000 points per series per answer; poll with the answer's ``next``."""
        job = self.get_object()  # first: an invisible job is a 404 whatever the query
        refuse_unknown_query_params(request, MetricSeriesQuerySerializer)
        query = MetricSeriesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        answer = metric_series(job, SeriesCursor(**query.validated_data))
        return Response({**answer, "state": job.state, "finished": job.is_finished})


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


class UsageView(APIView):
    """Jobs' usage and cost rolled up by team, model and/or month, over the jobs you may view."""

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", str, description="team, model, month; comma-separated"),
            OpenApiParameter("month", str, description="YYYY-MM"),
            OpenApiParameter("team", str, description="a team's slug"),
        ],
        responses={200: UsageRowSerializer(many=True)},
    )
    def get(self, request):
        refuse_unknown_query_params(request, UsageQuerySerializer)
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        rows = usage_rows(
            request.user, group_by=params["group_by"], month=params.get("month"), team_slug=params.get("team")
        )
        return Response(rows)


class StorageUsageView(APIView):
    """What the stored artifacts of the teams you may view take and cost a month, per team and
    tier (issue 12): live dataset and model versions, cold ones compressed."""

    @extend_schema(
        parameters=[OpenApiParameter("team", str, description="a team's slug")],
        responses={200: StorageRowSerializer(many=True)},
    )
    def get(self, request):
        refuse_unknown_query_params(request, StorageQuerySerializer)
        query = StorageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(storage_rows(request.user, team_slug=query.validated_data.get("team")))


class BudgetViewSet(RestrictedViewSetMixin, viewsets.ModelViewSet):
    """Teams' monthly budgets: one per team, set by its model owners or a platform admin."""

    queryset = Budget.objects.select_related("created_by")
    serializer_class = BudgetSerializer
    filterset_class = BudgetFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        budget = budgets.do_create_budget(
            team=data["team"],
            monthly_limit=data["monthly_limit"],
            holds_jobs=data.get("holds_jobs", True),
            actor=self.request.user,
        )
        serializer.instance = self.refetch(budget)

    def perform_update(self, serializer):
        data = serializer.validated_data
        if "team" in data and data["team"] != serializer.instance.team:
            raise ValidationError({"team": "a budget cannot move to another team"})
        budget = budgets.do_update_budget(
            budget=serializer.instance,
            actor=self.request.user,
            monthly_limit=data.get("monthly_limit"),
            holds_jobs=data.get("holds_jobs"),
        )
        serializer.instance = self.refetch(budget)

    def perform_destroy(self, instance):
        budgets.do_delete_budget(budget=instance, actor=self.request.user)
