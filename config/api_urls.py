from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from governance.api import access, audit, compare, evaluations, promotions
from governance.api import views as governance
from lineage.api.views import ImpactView, LineageView
from monitoring.api import views as monitoring
from monitoring.api.evidence import EvidencePackView
from monitoring.api.labels import LabelView
from runners.api import code as code
from runners.api import serving
from runners.api import views as runners
from runners.openlineage import api as openlineage

# The hash of the one <style> element Swagger UI (drf-spectacular-sidecar's copy) adds to its page.
SWAGGER_UI_STYLE = "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='"

router = DefaultRouter()
router.register("teams", governance.TeamViewSet)
router.register("users", access.UserViewSet)
router.register("memberships", access.MembershipViewSet)
router.register("platform-roles", access.PlatformRoleGrantViewSet)
router.register("tokens", access.ApiTokenViewSet)
router.register("datasets", governance.DatasetViewSet)
router.register("dataset-versions", governance.DatasetVersionViewSet)
router.register("models", governance.RegisteredModelViewSet)
router.register("model-versions", governance.ModelVersionViewSet)
router.register("promotion-requests", promotions.PromotionRequestViewSet)
router.register("evaluations", evaluations.EvaluationViewSet)
router.register("gate-policies", evaluations.GatePolicyViewSet)
router.register("audit-events", audit.AuditEventViewSet)
router.register("audit/checkpoints", audit.AuditCheckpointViewSet)
router.register("jobs", runners.JobViewSet)
router.register("job-schedules", runners.JobScheduleViewSet)
router.register("budgets", runners.BudgetViewSet)
router.register("code-projects", code.CodeProjectViewSet)
router.register("code-versions", code.CodeVersionViewSet)
router.register("serving-policies", serving.ServingPolicyViewSet)
router.register("drift-checks", monitoring.DriftCheckViewSet)
router.register("alerts", monitoring.AlertViewSet)
router.register("monitors", monitoring.MonitorViewSet)
router.register("notifications", monitoring.NotificationViewSet)
router.register("channels", monitoring.ChannelViewSet)
router.register("escalation-policies", monitoring.EscalationPolicyViewSet)

urlpatterns = [
    # File-like names without the router's trailing slash.
    path("audit-events/export.csv", audit.export_csv_view, name="auditevent-export-csv"),
    path("audit-events/export.json", audit.export_json_view, name="auditevent-export-json"),
    path("jobs/<int:pk>/log.txt", runners.JobViewSet.as_view({"get": "log_text"}), name="job-log-text"),
    path("audit/consistency/", audit.AuditConsistencyView.as_view(), name="audit_consistency"),
    path("audit/public-key/", audit.AuditPublicKeyView.as_view(), name="audit_public_key"),
    path("audit/verifier.py", audit.AuditVerifierView.as_view(), name="audit_verifier"),
    # Before the router, whose detail route would read "compare" as a version id.
    path("model-versions/compare/", compare.ModelVersionCompareView.as_view(), name="modelversion-compare"),
    path("code-versions/compare/", code.CodeVersionCompareView.as_view(), name="codeversion-compare"),
    path("model-versions/<int:pk>/evidence/", EvidencePackView.as_view(), name="modelversion-evidence"),
    path(
        "code-versions/<int:pk>/files/<path:path>",
        code.CodeVersionViewSet.as_view({"get": "file"}),
        name="codeversion-file",
    ),
    path("code-templates/", code.CodeTemplateListView.as_view(), name="code-templates"),
    # Online prediction (issue 17): by the model's name, as MLflow's clients name models.
    path(
        "models/<str:name>/aliases/<str:alias>/predict",
        serving.PredictByAliasView.as_view(),
        name="predict_by_alias",
    ),
    path(
        "models/<str:name>/versions/<int:version>/predict",
        serving.PredictByVersionView.as_view(),
        name="predict_by_version",
    ),
    path(
        "models/<int:pk>/prediction-tokens/", serving.PredictionTokenView.as_view(), name="prediction_tokens"
    ),
    # Late labels (issue 11), by the model's id like its prediction tokens.
    path("models/<int:pk>/labels/", LabelView.as_view(), name="model_labels"),
    path("", include(router.urls)),
    path("lineage/", LineageView.as_view(), name="lineage"),
    path("lineage/impact/", ImpactView.as_view(), name="lineage-impact"),
    # OpenLineage (issue 10): the spec's paths, so a client's OPENLINEAGE_URL is the site root;
    # GET on v1/lineage is Marquez's read of the graph, POST the ingest.
    path("v1/lineage", openlineage.LineageEventView.as_view(), name="openlineage_ingest"),
    path("v1/lineage/batch", openlineage.LineageBatchView.as_view(), name="openlineage_ingest_batch"),
    path("openlineage/jobs/<int:pk>/", openlineage.OpenLineageJobView.as_view(), name="openlineage-job"),
    path("openlineage/runs/<int:pk>/", openlineage.OpenLineageRunView.as_view(), name="openlineage-run"),
    path(
        "openlineage/datasets/<int:pk>/",
        openlineage.OpenLineageDatasetView.as_view(),
        name="openlineage-dataset",
    ),
    path("usage/", runners.UsageView.as_view(), name="usage-api"),
    path("usage/storage/", runners.StorageUsageView.as_view(), name="usage-storage-api"),
    path("auth/token/", access.ObtainApiTokenView.as_view(), name="api_token"),
    path("auth/password/", access.OwnPasswordView.as_view(), name="api_own_password"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script from a URL, not inline (the site's CSP);
    # Swagger UI adds one <style> element of its own, allowed by its hash alone (a new Swagger UI
    # with another one fails tests/test_csp_browser.py, which names the new hash).
    path(
        "docs/",
        csp_update({"style-src": [SWAGGER_UI_STYLE]})(SpectacularSwaggerSplitView.as_view(url_name="schema")),
        name="swagger_ui",
    ),
]
