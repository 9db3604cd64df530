"""The OpenAPI schema builds, validates and raises no warning (``manage.py spectacular``)."""

from __future__ import annotations

import yaml
from django.core.management import call_command

ENDPOINTS = {
    "/api/alerts/",
    "/api/alerts/{id}/",
    "/api/alerts/{id}/acknowledge/",
    "/api/alerts/{id}/resolve/",
    "/api/audit-events/",
    "/api/audit-events/{id}/",
    "/api/auth/token/",
    "/api/dataset-versions/",
    "/api/dataset-versions/{id}/",
    "/api/dataset-versions/{id}/download/",
    "/api/datasets/",
    "/api/datasets/{id}/",
    "/api/drift-checks/",
    "/api/drift-checks/{id}/",
    "/api/drift-checks/{id}/report/",
    "/api/jobs/",
    "/api/jobs/{id}/",
    "/api/jobs/{id}/cancel/",
    "/api/lineage/",
    "/api/memberships/",
    "/api/memberships/{id}/",
    "/api/model-versions/",
    "/api/model-versions/{id}/",
    "/api/models/",
    "/api/models/{id}/",
    "/api/teams/",
    "/api/teams/{id}/",
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
