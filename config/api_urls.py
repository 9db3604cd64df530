from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from governance.api import views as governance
from lineage.api.views import LineageView
from monitoring.api import views as monitoring
from runners.api import views as runners

router = DefaultRouter()
router.register("teams", governance.TeamViewSet)
router.register("memberships", governance.MembershipViewSet)
router.register("datasets", governance.DatasetViewSet)
router.register("dataset-versions", governance.DatasetVersionViewSet)
router.register("models", governance.RegisteredModelViewSet)
router.register("model-versions", governance.ModelVersionViewSet)
router.register("audit-events", governance.AuditEventViewSet)
router.register("jobs", runners.JobViewSet)
router.register("drift-checks", monitoring.DriftCheckViewSet)
router.register("alerts", monitoring.AlertViewSet)

urlpatterns = [
    path("", include(router.urls)),
    path("lineage/", LineageView.as_view(), name="lineage"),
    path("auth/token/", obtain_auth_token, name="api_token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger_ui"),
]
