from django.contrib.auth import views as auth_views
from django.urls import path

from governance import access_views, promotion_views, views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("datasets/", views.dataset_list, name="dataset_list"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset_detail"),
    path("dataset-versions/<int:pk>/", views.dataset_version_detail, name="dataset_version_detail"),
    path("models/", views.model_list, name="model_list"),
    path("models/<int:pk>/", views.model_detail, name="model_detail"),
    path("audit/", views.audit_event_list, name="audit_event_list"),
    path("audit/<int:pk>/", views.audit_event_detail, name="audit_event_detail"),
    # People and roles (admin pages), the user's API tokens, four-eyes promotion.
    path("people/", access_views.people, name="people"),
    path("people/users/", access_views.user_list, name="user_list"),
    path("people/users/<int:pk>/deactivate/", access_views.user_deactivate, name="user_deactivate"),
    path("people/users/<int:pk>/reactivate/", access_views.user_reactivate, name="user_reactivate"),
    path("people/teams/", access_views.team_list, name="team_list"),
    path("people/teams/<int:pk>/", access_views.team_detail, name="team_detail"),
    path("people/memberships/<int:pk>/revoke/", access_views.membership_revoke, name="membership_revoke"),
    path(
        "people/platform-roles/<int:pk>/revoke/",
        access_views.platform_role_revoke,
        name="platform_role_revoke",
    ),
    path("account/tokens/", access_views.api_token_list, name="api_token_list"),
    path("account/tokens/<int:pk>/revoke/", access_views.api_token_revoke, name="api_token_revoke"),
    path("promotions/", promotion_views.promotion_list, name="promotion_list"),
    path("promotions/<int:pk>/", promotion_views.promotion_detail, name="promotion_detail"),
    path("promotions/<int:pk>/approve/", promotion_views.promotion_approve, name="promotion_approve"),
    path("promotions/<int:pk>/reject/", promotion_views.promotion_reject, name="promotion_reject"),
    path("promotions/<int:pk>/cancel/", promotion_views.promotion_cancel, name="promotion_cancel"),
    path(
        "model-versions/<int:pk>/promote/",
        promotion_views.promotion_request_create,
        name="promotion_request_create",
    ),
]
