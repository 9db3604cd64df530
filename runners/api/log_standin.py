"""STAND-IN, to delete at merge: ``GET /api/jobs/<id>/log/`` as the coderun slice of issue 17
defines it, so the job page (jobpage slice) can be built and tested before that slice lands.

The coderun slice owns the log API (an action on ``JobViewSet``, whose route comes first in
``config/api_urls.py`` and so shadows this one once merged). Delete this module and its line in
``config/api_urls.py`` when merging.
"""

from django.conf import settings
from django.db.models import Sum
from django.db.models.functions import Length
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.permissions import VIEW, restrict
from runners.api.serializers import CursorField
from runners.api.views import refuse_unknown_query_params
from runners.models import Job, JobLogChunk

CHUNKS_MAX = 1000


class LogQuerySerializer(serializers.Serializer):
    after = CursorField(default=0, help_text="The last chunk's seq already held.")


class JobLogStandInView(APIView):
    """A job's log chunks after ``after`` (at most 1,000), its state and whether it is finished."""

    @extend_schema(exclude=True)  # the coderun slice documents the real one
    def get(self, request, pk: int):
        job = restrict(Job.objects.all(), request.user, VIEW).filter(pk=pk).first()
        if job is None:
            raise Http404
        refuse_unknown_query_params(request, LogQuerySerializer)
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]
        chunks = list(
            JobLogChunk.objects.filter(job=job, seq__gt=after)
            .order_by("seq")
            .values("seq", "attempt", "stream", "text", "created_at")[:CHUNKS_MAX]
        )
        size = JobLogChunk.objects.filter(job=job).aggregate(size=Sum(Length("text")))["size"] or 0
        return Response(
            {
                "chunks": chunks,
                "next": chunks[-1]["seq"] if chunks else after,
                "state": job.state,
                "finished": job.is_finished,
                "truncated": size >= settings.STEWARD_JOB_LOG_MAX_BYTES,
            }
        )
