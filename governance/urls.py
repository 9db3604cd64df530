from django.contrib.auth import views as auth_views
from django.urls import path

from governance import oidc
from governance.views import account, audit, compare, evaluations, people, promotions, registry, tokens

urlpatterns = [
    path("login/", oidc.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/authenticate/", oidc.authenticate_view, name="oidc_authentication_init"),
    path("oidc/callback/", oidc.callback_view, name="oidc_authentication_callback"),
    path("datasets/", registry.dataset_list, name="dataset_list"),
    path("datasets/<int:pk>/", registry.dataset_detail, name="dataset_detail"),
    path("dataset-versions/<int:pk>/", registry.dataset_version_detail, name="dataset_version_detail"),
    path("dataset-versions/<int:pk>/erase/", registry.dataset_version_erase, name="dataset_version_erase"),
    path("models/", registry.model_list, name="model_list"),
    path("models/<int:pk>/", registry.model_detail, name="model_detail"),
    path("models/<int:pk>/archive/", registry.model_archive, name="model_archive"),
    path("models/<int:pk>/delete/", registry.model_delete, name="model_delete"),
    path("model-versions/compare/", compare.model_version_compare, name="model_version_compare"),
    path("model-versions/<int:pk>/card/", registry.model_version_card, name="model_version_card"),
    path("evaluations/<int:pk>/", evaluations.evaluation_detail, name="evaluation_detail"),
    path("gate-policies/", evaluations.gate_policy_list, name="gate_policy_list"),
    path("gate-policies/<int:pk>/", evaluations.gate_policy_detail, name="gate_policy_detail"),
    path("audit/", audit.audit_event_list, name="audit_event_list"),
    path("audit/<int:pk>/", audit.audit_event_detail, name="audit_event_detail"),
    path("audit/<int:pk>/proof.json", audit.audit_event_proof, name="audit_event_proof"),
    # People and roles (admin pages), the user's API tokens, four-eyes promotion.
    path("people/", people.people, name="people"),
    path("people/users/", people.user_list, name="user_list"),
    path("people/users/<int:pk>/", people.user_detail, name="user_detail"),
    path("people/users/<int:pk>/password/", people.user_password, name="user_password"),
    path("people/users/<int:pk>/deactivate/", people.user_deactivate, name="user_deactivate"),
    path("account/password/", account.password_change, name="password_change"),
    path(
        "account/reset/<uidb64>/<token>/",
        account.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("people/users/<int:pk>/reactivate/", people.user_reactivate, name="user_reactivate"),
    path("people/teams/", people.team_list, name="team_list"),
    path("people/teams/<int:pk>/", people.team_detail, name="team_detail"),
    path("people/teams/<int:pk>/pii-policy/", people.team_pii_policy, name="team_pii_policy"),
    path("people/memberships/<int:pk>/revoke/", people.membership_revoke, name="membership_revoke"),
    path(
        "people/platform-roles/<int:pk>/revoke/",
        people.platform_role_revoke,
        name="platform_role_revoke",
    ),
    path("account/tokens/", tokens.api_token_list, name="api_token_list"),
    path("account/tokens/<int:pk>/revoke/", tokens.api_token_revoke, name="api_token_revoke"),
    path("promotions/", promotions.promotion_list, name="promotion_list"),
    path("promotions/<int:pk>/", promotions.promotion_detail, name="promotion_detail"),
    path("promotions/<int:pk>/approve/", promotions.promotion_approve, name="promotion_approve"),
    path("promotions/<int:pk>/reject/", promotions.promotion_reject, name="promotion_reject"),
    path("promotions/<int:pk>/cancel/", promotions.promotion_cancel, name="promotion_cancel"),
    path(
        "model-versions/<int:pk>/promote/",
        promotions.promotion_request_create,
        name="promotion_request_create",
    ),
]
