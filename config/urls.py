from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("config.mlflow_urls")),
    path("api/", include("config.api_urls")),
    path("admin/", admin.site.urls),
    path("", include("governance.urls")),
    path("", include("runners.urls")),
    path("", include("monitoring.urls")),
]
