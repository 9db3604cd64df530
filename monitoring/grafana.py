"""Provisioning Grafana for Steward's metrics: a Prometheus datasource and one dashboard.

Both are idempotent upserts keyed by fixed uids (``DATASOURCE_UID``, ``DASHBOARD_UID``), so
``manage.py grafana_sync`` may run on every deploy. Uses grafana-client (Grafana's HTTP API:
``/api/datasources``, ``/api/dashboards/db``).
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

DATASOURCE_UID = "steward-prometheus"
DATASOURCE_NAME = "Steward Prometheus"
DASHBOARD_UID = "steward-monitoring"
DASHBOARD_TITLE = "Steward: drift, alerts and jobs"


@dataclass(frozen=True)
class SyncResult:
    datasource: str  # "created" or "updated"
    dashboard_url: str
    dashboard_version: int | None


def datasource_spec(prometheus_url: str) -> dict:
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "prometheus",
        "access": "proxy",
        "url": prometheus_url,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "30s"},
    }


def _panel(panel_id: int, title: str, kind: str, expr: str, legend: str, x: int, y: int, w: int = 12) -> dict:
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
        "gridPos": {"x": x, "y": y, "w": w, "h": 8},
        "targets": [
            {
                "refId": "A",
                "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                "expr": expr,
                "legendFormat": legend,
            }
        ],
    }


def _panels() -> list[dict]:
    """The dashboard's six panels, laid out on Grafana's 24-column grid."""
    return [
        _panel(
            1,
            "Drift score by column (newest check)",
            "timeseries",
            'steward_drift_score{model=~"$model"}',
            "{{model}} v{{model_version}} {{column}} ({{method}})",
            0,
            0,
        ),
        _panel(
            2,
            "Drifted columns",
            "timeseries",
            'sum by (model, model_version) (steward_drift_column_drifted{model=~"$model"})',
            "{{model}} v{{model_version}}",
            12,
            0,
        ),
        _panel(
            3,
            "Open alerts by severity",
            "stat",
            "sum by (severity) (steward_open_alerts)",
            "{{severity}}",
            0,
            8,
            8,
        ),
        _panel(
            4,
            "Drift checks per hour",
            "timeseries",
            "sum by (outcome) (increase(steward_drift_checks_finished_total[1h]))",
            "{{outcome}}",
            8,
            8,
            8,
        ),
        _panel(
            5,
            "Failed notifications per hour",
            "timeseries",
            'sum by (kind) (increase(steward_notifications_total{state="failed"}[1h]))',
            "{{kind}}",
            16,
            8,
            8,
        ),
        _panel(
            6,
            "Job duration p95 (s)",
            "timeseries",
            "histogram_quantile(0.95, sum by (le, kind) (rate(steward_job_duration_seconds_bucket[1h])))",
            "{{kind}}",
            0,
            16,
            24,
        ),
    ]


def dashboard_spec() -> dict:
    """The dashboard JSON (Grafana's dashboard model, schemaVersion 39)."""
    return {
        "uid": DASHBOARD_UID,
        "title": DASHBOARD_TITLE,
        "tags": ["steward"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "model",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                    "query": "label_values(steward_drift_score, model)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                }
            ]
        },
        "panels": _panels(),
    }


def sync(grafana_url: str, token: str, prometheus_url: str, timeout_s: float = 10.0) -> SyncResult:
    """Create or update the datasource, then create or overwrite the dashboard.

    Raises ``grafana_client.client.GrafanaException`` (or a connection error) when Grafana refuses.
    """
    api = GrafanaApi.from_url(grafana_url, credential=token or None, timeout=timeout_s)
    spec = datasource_spec(prometheus_url)
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.datasource.create_datasource(spec)
        datasource = "created"
    else:
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, spec)
        datasource = "updated"
    answer = api.dashboard.update_dashboard(
        {"dashboard": dashboard_spec(), "overwrite": True, "message": "manage.py grafana_sync"}
    )
    return SyncResult(datasource, answer.get("url", ""), answer.get("version"))
