from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from config.health import HealthView, LivenessView, ReadinessView


class FaviconView(RedirectView):
    """/favicon.ico -> the static icon, resolved per request: with hashed static names
    (production's manifest) ``static()`` must not run when the URLs are imported."""

    permanent = False

    def get_redirect_url(self, *args, **kwargs) -> str:
        return static("steward/favicon.svg")


urlpatterns = [
    # Browsers and crawlers ask for /favicon.ico whatever the page links; one answer, not a 404.
    path("favicon.ico", FaviconView.as_view()),
    # Probes and monitoring (issue 13): no login; see config/health.py.
    path("health/", HealthView.as_view(), name="health"),
    path("health/live/", LivenessView.as_view(), name="health_live"),
    path("health/ready/", ReadinessView.as_view(), name="health_ready"),
    path("", include("config.mlflow_urls")),
    path("api/", include("config.api_urls")),
    path("admin/", admin.site.urls),
    path("", include("governance.urls")),
    path("", include("runners.urls")),
    path("", include("monitoring.urls")),
    path("", include("lineage.urls")),
]

# JSON in MLflow's shape for requests under /api/2.0/mlflow* that fail before reaching a view;
# Django's own answers everywhere else.
handler400 = "governance.api.mlflow.base.bad_request"
handler500 = "governance.api.mlflow.base.server_error"
