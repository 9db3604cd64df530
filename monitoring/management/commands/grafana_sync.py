"""``manage.py grafana_sync``: provision Steward's Prometheus datasource and dashboard in Grafana."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from grafana_client.client import GrafanaException

from monitoring import grafana


class Command(BaseCommand):
    help = "Create or update the Prometheus datasource and the Steward dashboard in Grafana."

    def add_arguments(self, parser):
        parser.add_argument("--grafana-url", default=None, help="Default: STEWARD_GRAFANA_URL.")
        parser.add_argument("--prometheus-url", default=None, help="Default: STEWARD_PROMETHEUS_URL.")
        parser.add_argument(
            "--token", default=None, help="Grafana service account token. Default: STEWARD_GRAFANA_TOKEN."
        )

    def handle(self, *args, grafana_url, prometheus_url, token, **options):
        grafana_url = grafana_url or settings.STEWARD_GRAFANA_URL
        prometheus_url = prometheus_url or settings.STEWARD_PROMETHEUS_URL
        token = token if token is not None else settings.STEWARD_GRAFANA_TOKEN
        try:
            result = grafana.sync(grafana_url, token, prometheus_url)
        except GrafanaException as exc:
            raise CommandError(
                f"Grafana at {grafana_url} refused: HTTP {exc.status_code}: {exc.message}"
            ) from exc
        except OSError as exc:
            raise CommandError(f"could not reach Grafana at {grafana_url}: {exc}") from exc
        self.stdout.write(
            f"datasource {grafana.DATASOURCE_UID} {result.datasource} (Prometheus at {prometheus_url}); "
            f"dashboard {grafana.DASHBOARD_UID} at {grafana_url.rstrip('/')}{result.dashboard_url} "
            f"(version {result.dashboard_version})"
        )
