"""Map domain errors to 4xx answers with the precise message, never a 500."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from governance.datafiles import DataFileError


def exception_handler(exc, context):
    """DRF's handler, plus Django ValidationError/PermissionDenied, DataFileError and races."""
    if isinstance(exc, ValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DataFileError):
        return Response({"file": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, PermissionDenied):
        return Response({"detail": str(exc) or "permission denied"}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, RecursionError):
        return Response(
            {"detail": "the request body is nested too deeply"}, status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, IntegrityError):
        return Response(
            {"detail": "conflicts with a concurrent change; retry the request"},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)
