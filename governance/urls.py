from django.contrib.auth import views as auth_views
from django.urls import path

from governance import views

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
]
