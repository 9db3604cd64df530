"""The base API viewset: every queryset restricted to the requesting user, no way around it."""

from __future__ import annotations

from collections.abc import Mapping

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import ParseError

from governance.permissions import VIEW, restrict


class KnownQueryParamsMixin:
    """Refuses a list's query parameter that nothing reads (400 naming it and the known ones)."""

    # Actions whose query string is checked: a parameter nothing reads is a 400, not ignored (a
    # misspelt filter would otherwise list everything; issue 9).
    checked_query_actions: frozenset[str] = frozenset({"list"})

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action in self.checked_query_actions:
            unknown = sorted(set(request.query_params) - self.known_query_params())
            if unknown:
                known = ", ".join(sorted(self.known_query_params()))
                raise ParseError(f"unknown query parameter(s): {', '.join(unknown)}; known: {known}")

    def known_query_params(self) -> frozenset[str]:
        """What this list reads from the query string: its filters (each form field's names,
        suffixes included), its pagination's, and any filter backend's own (ordering, search).

        The same for every request to the view class, so worked out once per class: building the
        filter form on each request cost more than the page's query."""
        cls = type(self)
        known = cls.__dict__.get("_known_query_params")
        if known is None:
            known = frozenset(self._read_query_params())
            cls._known_query_params = known  # type: ignore[attr-defined]
        return known

    def _read_query_params(self) -> set[str]:
        known: set[str] = set()
        for backend in self.filter_backends:
            if issubclass(backend, DjangoFilterBackend):
                filterset_class = backend().get_filterset_class(self, self.get_queryset())
                for name, field in filterset_class().form.fields.items() if filterset_class else ():
                    suffixes = getattr(field.widget, "suffixes", None)
                    known |= (
                        {f"{name}_{suffix}" if suffix else name for suffix in suffixes}
                        if suffixes
                        else {name}
                    )
            known |= {
                getattr(backend, attribute)
                for attribute in ("ordering_param", "search_param")
                if hasattr(backend, attribute)
            }
        if self.paginator is not None:
            known |= self.paginator.query_params()
        return known


class RestrictedViewSetMixin(KnownQueryParamsMixin):
    """Restricts ``queryset`` with ``permissions.restrict(..., "view")``; objects out of scope are 404.

    Subclasses may not override ``get_queryset`` (a class-creation error), so no endpoint can
    forget the restriction; they refine with ``filter_restricted`` instead. Writes are re-checked
    by the action functions inside their transaction.
    """

    # Ids are ASCII digits: Python's int() also reads Arabic-Indic or full-width digits, which would make
    # several URLs name one object (and audit trails quote ids as the client wrote them).
    lookup_value_regex = "[0-9]+"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides get_queryset; override filter_restricted instead")

    # Serializers by action where the body differs from the answer (a create's input, say).
    action_serializers: dict[str, type[serializers.BaseSerializer]] = {}

    def get_queryset(self):
        return self.filter_restricted(restrict(super().get_queryset(), self.request.user, VIEW))

    def get_serializer_class(self):
        return self.action_serializers.get(self.action) or super().get_serializer_class()

    def validated(self, request, serializer_class=None):
        """The request body checked by ``serializer_class`` (default: this action's serializer);
        a 400 if invalid."""
        serializer_class = serializer_class or self.get_serializer_class()
        serializer = serializer_class(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def filter_restricted(self, queryset):
        return queryset

    def refetch(self, obj):
        """``obj`` as this viewset answers it after a write: re-read through the restricted
        queryset, with its annotations and prefetches (``DoesNotExist`` if now out of scope)."""
        return self.get_queryset().get(pk=obj.pk)


class RestrictedReadOnlyViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


# List, detail and create; the subclass's create or perform_create calls the action. (No
# docstring: drf-spectacular describes operations with the first docstring in the MRO, the mixin's.)
class RestrictedCreateViewSet(RestrictedViewSetMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    pass


class KnownFieldsMixin:
    """A serializer that refuses a body's field it does not read: a 400 naming each unknown field
    and the known ones. A misspelt optional field (``output`` for ``outputs``) was dropped, and the
    request succeeded without what it asked for."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            fields = self.fields  # type: ignore[attr-defined]
            unknown = sorted(set(data) - set(fields))
            if unknown:
                known = ", ".join(sorted(name for name, field in fields.items() if not field.read_only))
                raise serializers.ValidationError(
                    {name: [f"unknown field; known: {known}"] for name in unknown}
                )
        return super().to_internal_value(data)  # type: ignore[misc]


class UsernameField(serializers.SlugRelatedField):
    """A user, read-only, shown by username (who created, owns, decided or acknowledged); null
    when nobody did yet (an alert nobody acknowledged), and the API schema says so (issue 13)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(slug_field="username", read_only=True, **kwargs)


class RestrictedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related-object id that must be visible to the requesting user ("does not exist" otherwise)."""

    def get_queryset(self):
        request = self.context.get("request")
        return restrict(super().get_queryset(), request.user, VIEW)
