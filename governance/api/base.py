"""The base API viewset: every queryset restricted to the requesting user, no way around it."""

from __future__ import annotations

from rest_framework import serializers, viewsets

from governance.permissions import VIEW, restrict


class RestrictedViewSetMixin:
    """Restricts ``queryset`` with ``permissions.restrict(..., "view")``; objects out of scope are 404.

    Subclasses may not override ``get_queryset`` (a class-creation error), so no endpoint can
    forget the restriction; they refine with ``filter_restricted`` instead. Writes are re-checked
    by the action functions inside their transaction.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides get_queryset; override filter_restricted instead")

    def get_queryset(self):
        return self.filter_restricted(restrict(super().get_queryset(), self.request.user, VIEW))

    def filter_restricted(self, queryset):
        return queryset


class RestrictedReadOnlyViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class RestrictedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related-object id that must be visible to the requesting user ("does not exist" otherwise)."""

    def get_queryset(self):
        request = self.context.get("request")
        return restrict(super().get_queryset(), request.user, VIEW)
