"""The OpenAPI schema builds, validates and raises no warning (``manage.py spectacular``)."""

from __future__ import annotations

import yaml
from django.core.management import call_command

ENDPOINTS = {
    "/api/alerts/",
    "/api/alerts/{id}/",
    "/api/alerts/{id}/acknowledge/",
    "/api/alerts/{id}/events/",
    "/api/alerts/{id}/resolve/",
    "/api/alerts/{id}/snooze/",
    "/api/audit-events/",
    "/api/audit-events/export.csv",
    "/api/audit-events/export.json",
    "/api/audit-events/{id}/",
    "/api/audit-events/{id}/proof/",
    "/api/audit/checkpoints/",
    "/api/audit/checkpoints/{tree_size}/",
    "/api/audit/consistency/",
    "/api/audit/public-key/",
    "/api/audit/verifier.py",
    "/api/auth/password/",
    "/api/auth/token/",
    "/api/budgets/",
    "/api/budgets/{id}/",
    "/api/channels/",
    "/api/channels/{id}/",
    "/api/channels/{id}/rotate-secret/",
    "/api/code-projects/",
    "/api/code-projects/{id}/",
    "/api/code-templates/",
    "/api/code-versions/",
    "/api/code-versions/{id}/",
    "/api/code-versions/{id}/files/{path}",
    "/api/code-versions/compare/",
    "/api/dataset-versions/",
    "/api/dataset-versions/{id}/",
    "/api/dataset-versions/{id}/download/",
    "/api/dataset-versions/{id}/pii/",
    "/api/dataset-versions/{id}/erase/",
    "/api/dataset-versions/{id}/legal-hold/",
    "/api/datasets/",
    "/api/datasets/{id}/",
    "/api/drift-checks/",
    "/api/drift-checks/{id}/",
    "/api/drift-checks/{id}/report/",
    "/api/drift-checks/{id}/windows/",
    "/api/escalation-policies/",
    "/api/escalation-policies/{id}/",
    "/api/jobs/",
    "/api/jobs/{id}/",
    "/api/jobs/{id}/cancel/",
    "/api/jobs/{id}/kubernetes-manifest/",
    "/api/jobs/{id}/metrics/",
    "/api/jobs/{id}/log/",
    "/api/jobs/{id}/log.txt",
    "/api/job-schedules/",
    "/api/job-schedules/{id}/",
    "/api/job-schedules/{id}/pause/",
    "/api/job-schedules/{id}/resume/",
    "/api/jobs/{id}/release/",
    "/api/lineage/",
    # OpenLineage ingest (issue 10) and the external objects' reads.
    "/api/v1/lineage",
    "/api/v1/lineage/batch",
    "/api/openlineage/jobs/{id}/",
    "/api/openlineage/runs/{id}/",
    "/api/openlineage/datasets/{id}/",
    "/api/lineage/impact/",
    "/api/memberships/",
    "/api/memberships/{id}/",
    "/api/model-versions/",
    "/api/model-versions/{id}/",
    "/api/model-versions/{id}/archive/",
    "/api/model-versions/{id}/evidence/",
    "/api/model-versions/{id}/tags/{key}/",
    "/api/model-versions/{id}/unarchive/",
    "/api/model-versions/compare/",
    "/api/models/",
    "/api/models/{id}/",
    "/api/models/{id}/prediction-tokens/",
    "/api/models/{id}/labels/",
    "/api/models/{name}/aliases/{alias}/predict",
    "/api/models/{name}/versions/{version}/predict",
    "/api/serving-policies/",
    "/api/serving-policies/{id}/",
    "/api/models/{id}/aliases/{alias}/",
    "/api/models/{id}/archive/",
    "/api/models/{id}/tags/{key}/",
    "/api/models/{id}/unarchive/",
    "/api/monitors/",
    "/api/monitors/{id}/",
    "/api/monitors/{id}/drift-history/",
    "/api/monitors/{id}/pause/",
    "/api/monitors/{id}/resume/",
    "/api/monitors/{id}/run/",
    "/api/notifications/",
    "/api/notifications/{id}/",
    "/api/platform-roles/",
    "/api/platform-roles/{id}/",
    "/api/promotion-requests/",
    "/api/promotion-requests/{id}/",
    "/api/promotion-requests/{id}/approve/",
    "/api/promotion-requests/{id}/cancel/",
    "/api/promotion-requests/{id}/reject/",
    "/api/evaluations/",
    "/api/evaluations/{id}/",
    "/api/gate-policies/",
    "/api/gate-policies/{id}/",
    "/api/gate-policies/set/",
    "/api/teams/",
    "/api/teams/{id}/",
    "/api/teams/{id}/pii-policy/",
    "/api/teams/{id}/protected-aliases/",
    "/api/teams/{id}/records-of-processing/",
    "/api/teams/{id}/retention-policy/",
    "/api/tokens/",
    "/api/tokens/{id}/",
    "/api/tokens/{id}/revoke/",
    "/api/usage/",
    "/api/usage/storage/",
    "/api/users/",
    "/api/users/{id}/",
    "/api/users/{id}/deactivate/",
    "/api/users/{id}/reactivate/",
    "/api/users/{id}/send-password-reset/",
    "/api/users/{id}/set-password/",
}


def test_schema_builds_and_validates_without_warnings(tmp_path, capsys):
    path = tmp_path / "schema.yml"

    # --fail-on-warn turns any warning or error of the generator into a SchemaGenerationError.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))

    assert capsys.readouterr().err == ""
    schema = yaml.safe_load(path.read_text())
    assert schema["info"]["title"] == "Steward API"
    assert set(schema["paths"]) == ENDPOINTS
    assert set(schema["paths"]["/api/audit-events/"]) == {"get"}
    assert set(schema["paths"]["/api/audit-events/{id}/"]) == {"get"}
    assert set(schema["paths"]["/api/jobs/"]) == {"get", "post"}
    assert set(schema["paths"]["/api/memberships/{id}/"]) == {"get", "patch", "delete"}
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from POST /api/auth/token/ or the API tokens page.",
    }


def test_every_operation_documents_its_error_answers(tmp_path):
    """Issue 13: each operation lists the 4xx it can give, in the error shape; a schema that
    documents a success code only leaves clients guessing (and schemathesis flags each answer)."""
    path = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    operations = {
        (route, method): operation["responses"]
        for route, item in schema["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }

    public = {("/api/audit/public-key/", "get"), ("/api/audit/verifier.py", "get")}
    for (route, method), responses in operations.items():
        if (route, method) in public:
            continue
        if (route, method) not in {("/api/auth/token/", "post"), ("/api/v1/lineage", "get")}:
            assert {"401", "403"} <= set(responses), (route, method)
        if "{" in route:
            assert "404" in responses, (route, method)
        if method in ("post", "put", "patch"):
            assert "400" in responses, (route, method)
    assert "429" in operations[("/api/auth/token/", "post")]
    error = operations[("/api/models/{id}/", "get")]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    # An alert's history is one list, not pages; blank URLs and absent users are documented.
    events = operations[("/api/alerts/{id}/events/", "get")]["200"]["content"]["application/json"]
    assert events["schema"]["type"] == "array"
    alert = schema["components"]["schemas"]["Alert"]["properties"]
    assert {"type": "string", "enum": [""]} in alert["runbook_url"]["anyOf"]
    assert alert["acknowledged_by"]["nullable"] is True
