"""Provisioning Grafana for Steward's metrics: a Prometheus datasource and one dashboard.

Both are idempotent upserts keyed by fixed uids (``DATASOURCE_UID``, ``DASHBOARD_UID``), so
``manage.py grafana_sync`` may run on every deploy. Uses grafana-client (Grafana's HTTP API:
``/api/datasources``, ``/api/dashboards/db``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

DATASOURCE_UID = "steward-prometheus"
DATASOURCE_NAME = "Steward Prometheus"
DASHBOARD_UID = "steward-monitoring"
DASHBOARD_TITLE = "Steward: drift, alerts and jobs"
DASHBOARD_FILE = Path(__file__).resolve().parent / "dashboards" / "steward.json"


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


def dashboard_spec() -> dict:
    """The dashboard JSON (Grafana's dashboard model, schemaVersion 39) shipped in
    ``monitoring/dashboards/steward.json``: edit it there, or export it from Grafana after changing
    it there; ``grafana_sync`` provisions it as it is. Raises ValueError when its uid is not
    ``DASHBOARD_UID`` (a second dashboard would be created beside the first)."""
    spec = json.loads(DASHBOARD_FILE.read_text())
    if spec.get("uid") != DASHBOARD_UID:
        raise ValueError(f"{DASHBOARD_FILE}: the dashboard's uid must be {DASHBOARD_UID!r}")
    return dict(spec)


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
