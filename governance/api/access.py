"""Who may do what, through the API: users, memberships, platform roles and API tokens.

Every write calls an action in ``governance.actions``, which re-checks the permission inside its
transaction and writes the audit event; these views only parse, look up (restricted) and render.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth import authenticate, get_user_model, user_logged_in
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import tokens
from governance.actions.checks import ensure_can
from governance.actions.passwords import do_change_own_password, do_send_password_reset, do_set_password
from governance.actions.teams import (
    do_grant_platform_role,
    do_revoke_membership,
    do_revoke_platform_role,
    do_set_membership,
)
from governance.actions.tokens import do_create_api_token, do_revoke_api_token
from governance.actions.users import do_create_user, do_deactivate_user, do_reactivate_user
from governance.api.base import (
    RestrictedCreateViewSet,
    RestrictedPrimaryKeyRelatedField,
    RestrictedViewSetMixin,
)
from governance.filtersets import RestrictedFilterSet
from governance.models import ApiToken, Membership, PlatformRole, PlatformRoleGrant, Team, TeamRole
from governance.permissions import MANAGE, grant_refusal, restrict

User = get_user_model()


def _active_users():
    return User.objects.filter(is_active=True)


# Users ----------------------------------------------------------------------------------------


class UserMembershipSerializer(serializers.ModelSerializer):
    team_name = serializers.CharField(source="team.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "team", "team_name", "role"]
        read_only_fields = fields


class UserSerializer(serializers.ModelSerializer):
    platform_roles = serializers.SerializerMethodField()
    memberships = UserMembershipSerializer(many=True, read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "is_active",
            "date_joined",
            "last_login",
            "platform_roles",
            "memberships",
        ]
        read_only_fields = fields

    def get_platform_roles(self, user) -> list[str]:
        return sorted(grant.role for grant in user.platform_roles.all())


class UserCreateSerializer(serializers.Serializer):
    """A new login. Without ``password`` it cannot log in until one is set (e.g. by a reset)."""

    username = serializers.RegexField(r"^[\w.@+-]{1,150}$", max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(required=False, write_only=True, style={"input_type": "password"})

    def validate(self, attrs):
        if attrs.get("password"):
            try:
                validate_password(attrs["password"], User(username=attrs["username"], email=attrs["email"]))
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": exc.messages}) from exc
        return attrs


class UserFilterSet(RestrictedFilterSet):
    q = filters.CharFilter(field_name="username", lookup_expr="icontains", label="Username")

    class Meta:
        model = User
        fields = ["is_active", "q"]


def _password_field() -> serializers.CharField:
    return serializers.CharField(write_only=True, style={"input_type": "password"}, trim_whitespace=False)


class SetPasswordSerializer(serializers.Serializer):
    password = _password_field()


class PasswordResetSentSerializer(serializers.Serializer):
    sent_to = serializers.EmailField(read_only=True)


class OwnPasswordSerializer(serializers.Serializer):
    old_password = _password_field()
    new_password = _password_field()


class OwnPasswordView(APIView):
    """Change one's own password (the current one proves it is you); ends one's sessions."""

    @extend_schema(request=OwnPasswordSerializer, responses={204: None})
    def post(self, request):
        serializer = OwnPasswordSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        do_change_own_password(
            user=request.user,
            old_password=serializer.validated_data["old_password"],
            new_password=serializer.validated_data["new_password"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserViewSet(RestrictedCreateViewSet):
    """Users the requester may see; platform admins create, deactivate and reactivate them."""

    queryset = User.objects.order_by("username")
    serializer_class = UserSerializer
    filterset_class = UserFilterSet

    def filter_restricted(self, queryset):
        user = self.request.user
        return queryset.prefetch_related(
            Prefetch(
                "memberships",
                queryset=Membership.objects.restrict(user).select_related("team").order_by("team__name"),
            ),
            Prefetch("platform_roles", queryset=restrict(PlatformRoleGrant.objects.all(), user)),
        )

    action_serializers = {"create": UserCreateSerializer}

    @extend_schema(request=UserCreateSerializer, responses={201: UserSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(request, UserCreateSerializer)
        user = do_create_user(
            username=data["username"],
            email=data["email"],
            password=data.get("password") or None,
            actor=request.user,
        )
        return Response(self._render(user), status=status.HTTP_201_CREATED)

    @extend_schema(request=SetPasswordSerializer, responses={200: UserSerializer})
    @action(detail=True, methods=["post"], url_path="set-password")
    def set_password(self, request, pk=None):
        """Set the user's password (platform admins; not their own: POST /api/auth/password/)."""
        data = self.validated(request, SetPasswordSerializer)
        user = do_set_password(user=self.get_object(), password=data["password"], actor=request.user)
        return Response(self._render(user))

    @extend_schema(request=None, responses={200: PasswordResetSentSerializer})
    @action(detail=True, methods=["post"], url_path="send-password-reset")
    def send_password_reset(self, request, pk=None):
        """Email the user a one-use link to set their password (platform admins)."""
        sent_to = do_send_password_reset(user=self.get_object(), actor=request.user)
        return Response({"sent_to": sent_to})

    @extend_schema(request=None, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        user = do_deactivate_user(user=self.get_object(), actor=request.user)
        return Response(self._render(user))

    @extend_schema(request=None, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def reactivate(self, request, pk=None):
        user = do_reactivate_user(user=self.get_object(), actor=request.user)
        return Response(self._render(user))

    def _render(self, user) -> dict:
        return UserSerializer(self.refetch(user), context=self.get_serializer_context()).data


# Memberships ----------------------------------------------------------------------------------


class MembershipSerializer(serializers.ModelSerializer):
    """``username`` and ``team`` name the membership when it is granted and are fixed after.

    Granting a role to a member of the team changes their role (``do_set_membership``), so the
    unique (user, team) validator is dropped: a grant is never a 400 for being a change.
    """

    username = serializers.SlugRelatedField(source="user", slug_field="username", queryset=_active_users())
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    team_name = serializers.CharField(source="team.name", read_only=True)
    role = serializers.ChoiceField(choices=TeamRole.choices)

    class Meta:
        model = Membership
        fields = ["id", "user", "username", "team", "team_name", "role", "created_at"]
        read_only_fields = ["user", "created_at"]
        validators = []


class MembershipRoleSerializer(serializers.Serializer):
    # Optional, as PATCH is partial: a PATCH without it changes nothing (issue 13).
    role = serializers.ChoiceField(choices=TeamRole.choices, required=False)


class MembershipFilterSet(RestrictedFilterSet):
    class Meta:
        model = Membership
        fields = ["team", "user", "role"]


class MembershipViewSet(
    RestrictedViewSetMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.ReadOnlyModelViewSet,
):
    """Team roles: admins and the team's model owners grant or change (POST; PATCH ``role``)
    and revoke (DELETE) them; nobody changes their own."""

    queryset = Membership.objects.select_related("user", "team")
    serializer_class = MembershipSerializer
    filterset_class = MembershipFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    action_serializers = {"partial_update": MembershipRoleSerializer}

    def create(self, request, *args, **kwargs):
        """Refuse a requester who may not manage the team before the username is looked up.

        Otherwise anyone logged in could learn which usernames exist: 403 for a real one, 400
        "does not exist" for a made-up one. A team out of sight is its own 400, also given alone.
        """
        if isinstance(request.data, Mapping):
            team_field = self.get_serializer().fields["team"]
            try:
                team = team_field.run_validation(request.data.get("team", serializers.empty))
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"team": exc.detail}) from exc
            ensure_can(request.user, MANAGE, team.pk)
        # Not a mapping: the serializer refuses the whole body without reading any field.
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer):
        data = serializer.validated_data
        membership = do_set_membership(
            user=data["user"], team=data["team"], role=data["role"], actor=self.request.user
        )
        serializer.instance = self.refetch(membership)

    @extend_schema(request=MembershipRoleSerializer, responses={200: MembershipSerializer})
    def partial_update(self, request, *args, **kwargs):
        membership = self.get_object()
        data = self.validated(request, MembershipRoleSerializer)
        if "role" in data:
            do_set_membership(
                user=membership.user, team=membership.team, role=data["role"], actor=request.user
            )
        else:
            # Nothing to change, but only those who could change it learn that it is there to change.
            ensure_can(request.user, MANAGE, membership.team_id)
        return Response(MembershipSerializer(self.refetch(membership)).data)

    def perform_destroy(self, instance):
        do_revoke_membership(membership=instance, actor=self.request.user)


# Platform roles -------------------------------------------------------------------------------


class PlatformRoleGrantSerializer(serializers.ModelSerializer):
    username = serializers.SlugRelatedField(source="user", slug_field="username", queryset=_active_users())
    role = serializers.ChoiceField(choices=PlatformRole.choices)

    class Meta:
        model = PlatformRoleGrant
        fields = ["id", "user", "username", "role", "created_at"]
        read_only_fields = ["user", "created_at"]
        validators = []  # granting a held role is a no-op (do_grant_platform_role), not a 400


class PlatformRoleGrantViewSet(
    RestrictedViewSetMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Platform admins and compliance officers see every grant, others their own; admins grant
    (POST, idempotent) and revoke (DELETE) them, never their own, never the last admin's."""

    queryset = PlatformRoleGrant.objects.select_related("user").order_by("role", "user__username")
    serializer_class = PlatformRoleGrantSerializer
    filterset_fields = ["role"]

    def create(self, request, *args, **kwargs):
        """Refuse a non-admin before the username is looked up (see ``MembershipViewSet.create``)."""
        refusal = grant_refusal(request.user, "platform_role")
        if refusal:
            raise PermissionDenied(refusal)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer):
        data = serializer.validated_data
        grant = do_grant_platform_role(user=data["user"], role=data["role"], actor=self.request.user)
        serializer.instance = self.refetch(grant)

    def perform_destroy(self, instance):
        do_revoke_platform_role(grant=instance, actor=self.request.user)


# API tokens -----------------------------------------------------------------------------------


class ApiTokenSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "is_read_only",
            "scope",
            "registered_model",
            "state",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_state(self, token) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return "expired"
        return "active"


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    is_read_only = serializers.BooleanField(default=True)
    # Left out: in STEWARD_API_TOKEN_DAYS (90) days; null: never.
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=tokens.default_expiry)


class NewApiTokenSerializer(ApiTokenSerializer):
    """A token as created: the only answer that carries its secret."""

    token = serializers.CharField(read_only=True, help_text="The secret; shown once, store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = ["token", *ApiTokenSerializer.Meta.fields]
        read_only_fields = fields


def _new_token_response(token: ApiToken, secret: str) -> Response:
    body = NewApiTokenSerializer(token).data
    body["token"] = secret
    return Response(body, status=status.HTTP_201_CREATED)


class ApiTokenViewSet(RestrictedCreateViewSet):
    """The requester's own API tokens: create (the secret is in that answer only), list, revoke."""

    queryset = ApiToken.objects.all()
    serializer_class = ApiTokenSerializer

    action_serializers = {"create": ApiTokenCreateSerializer}

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: NewApiTokenSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(request, ApiTokenCreateSerializer)
        token, secret = do_create_api_token(user=request.user, actor=request.user, **data)
        return _new_token_response(token, secret)

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = do_revoke_api_token(token=self.get_object(), actor=request.user)
        return Response(ApiTokenSerializer(token).data)


BAD_CREDENTIALS = "Unable to log in with provided credentials."


class ObtainApiTokenSerializer(ApiTokenCreateSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    name = serializers.CharField(max_length=100, default="script")


class ObtainApiTokenView(APIView):
    """Trade a username and password for a new named API token (for scripts).

    Read-only unless ``is_read_only`` is false. Failed attempts count towards the same login
    throttle as the login page (django-axes): past the limit the answer is 429.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    # The login throttle's answer (governance.api.schema documents it).
    error_codes = ("429",)

    @extend_schema(request=ObtainApiTokenSerializer, responses={201: NewApiTokenSerializer}, auth=[])
    def post(self, request):
        serializer = ObtainApiTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The Django request, not DRF's wrapper: axes marks it, and its middleware answers 429.
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            raise serializers.ValidationError({"non_field_errors": [BAD_CREDENTIALS]})
        user_logged_in.send(sender=user.__class__, request=request._request, user=user)
        token, secret = do_create_api_token(
            user=user,
            name=data["name"],
            is_read_only=data["is_read_only"],
            expires_at=data["expires_at"],
            actor=user,
        )
        return _new_token_response(token, secret)
