"""Prometheus metrics, read from the database when scraped.

A custom collector (prometheus-client's ``Collector`` protocol) computes every value from the rows
on each scrape, so what it reports is the same whichever web process answers, with any number of
workers writing: no per-process counters, no multiprocess directory. Each scrape costs a handful
of aggregate queries (listed per metric below); scrape every 30-60 s.

Job durations are runners' (``runners.metrics.JobCollector``, registered beside this module's
collector): monitoring may import runners, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, OuterRef, Subquery
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from governance.http_metrics import HttpCollector
from governance.metrics import AuditCollector, StorageCollector
from lineage.openlineage.emit import EmitCollector
from monitoring.models import UNRESOLVED, Alert, CheckState, DriftCheck, Notification, Severity
from runners.metrics import PREFIX, BrokerCollector, JobCollector, ServingCollector


def _latest_checks() -> list[DriftCheck]:
    """The newest succeeded check of each model version (one query)."""
    newest = (
        DriftCheck.objects.filter(model_version=OuterRef("model_version"), state=CheckState.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .values("pk")[:1]
    )
    return list(
        DriftCheck.objects.filter(pk=Subquery(newest))
        .select_related("model_version__model")
        .only(
            "results",
            "prediction",
            "performance",
            "is_dataset_drift",
            "finished_at",
            "model_version__version",
            "model_version__model__name",
        )
    )


class StewardCollector(Collector):
    """Monitoring's metrics: drift scores of each version's newest check, checks, alerts, notifications."""

    def collect(self) -> Iterator:
        yield from self._drift()
        yield from self._checks()
        yield from self._alerts()
        yield from self._notifications()

    def _drift(self) -> Iterator:
        labels = ["model", "model_version", "column", "method"]
        score = GaugeMetricFamily(
            f"{PREFIX}_drift_score",
            "Drift score of a column in the newest check of a model version.",
            labels=labels,
        )
        threshold = GaugeMetricFamily(
            f"{PREFIX}_drift_threshold", "Threshold the drift score is compared with.", labels=labels
        )
        drifted = GaugeMetricFamily(
            f"{PREFIX}_drift_column_drifted", "1 when the column drifted in the newest check.", labels=labels
        )
        dataset = GaugeMetricFamily(
            f"{PREFIX}_drift_dataset_drifted",
            "1 when the newest check's share of drifted columns reached drift_share.",
            labels=["model", "model_version"],
        )
        performance = GaugeMetricFamily(
            f"{PREFIX}_model_performance",
            "A model quality metric on the newest check's labelled rows (rmse, mae, r2, accuracy...).",
            labels=["model", "model_version", "metric"],
        )
        degraded = GaugeMetricFamily(
            f"{PREFIX}_model_performance_degraded",
            "1 when the metric is worse than its baseline beyond the monitor's tolerance.",
            labels=["model", "model_version", "metric"],
        )
        for check in _latest_checks():
            version = check.model_version
            model, number = version.model.name, str(version.version)
            dataset.add_metric([model, number], float(bool(check.is_dataset_drift)))
            for metric, values in sorted(((check.performance or {}).get("metrics") or {}).items()):
                if values.get("current") is not None:
                    performance.add_metric([model, number, metric], float(values["current"]))
                    degraded.add_metric([model, number, metric], float(bool(values.get("is_degraded"))))
            for result in [*check.results, *([check.prediction] if check.prediction else [])]:
                if result.get("score") is None or result.get("method") is None:
                    continue
                values = [model, number, result["column"], result["method"]]
                score.add_metric(values, float(result["score"]))
                if result.get("threshold") is not None:
                    threshold.add_metric(values, float(result["threshold"]))
                drifted.add_metric(values, float(bool(result.get("is_drifted"))))
        yield from (score, threshold, drifted, dataset, performance, degraded)

    def _checks(self) -> Iterator:
        # Finished checks only ever grow (a counter); queued and running ones come and go (a
        # gauge). One family for both was a "counter" that went down (issue 13).
        finished = CounterMetricFamily(
            f"{PREFIX}_drift_checks_finished", "Drift checks finished, by outcome.", labels=["outcome"]
        )
        in_flight = GaugeMetricFamily(
            f"{PREFIX}_drift_checks_in_flight", "Drift checks queued or running.", labels=["state"]
        )
        counts = dict(DriftCheck.objects.order_by().values_list("state").annotate(n=Count("id")))
        for state in (CheckState.SUCCEEDED, CheckState.FAILED):
            finished.add_metric([state], float(counts.get(state, 0)))
        for state in (CheckState.QUEUED, CheckState.RUNNING):
            in_flight.add_metric([state], float(counts.get(state, 0)))
        yield from (finished, in_flight)

    def _alerts(self) -> Iterator:
        family = GaugeMetricFamily(
            f"{PREFIX}_open_alerts", "Unresolved alerts by severity and state.", labels=["severity", "state"]
        )
        rows = Alert.objects.filter(state__in=UNRESOLVED).order_by().values_list("severity", "state")
        counts = {(severity, state): n for severity, state, n in rows.annotate(n=Count("id"))}
        for severity in Severity.values:
            for state in UNRESOLVED:
                family.add_metric([severity, state], float(counts.get((severity, state), 0)))
        yield family

    def _notifications(self) -> Iterator:
        family = CounterMetricFamily(
            f"{PREFIX}_notifications",
            "Alert notifications by channel kind and state.",
            labels=["kind", "state"],
        )
        rows = (
            Notification.objects.order_by()
            .values_list("kind", "state")
            .annotate(n=Count("id"))
            .order_by("kind", "state")
        )
        for kind, state, n in rows:
            family.add_metric([kind, state], float(n))
        yield family


def registry() -> CollectorRegistry:
    """A registry holding only Steward's collectors (a fresh one per scrape: nothing process-global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StewardCollector())
    registry.register(JobCollector())
    registry.register(EmitCollector())
    registry.register(ServingCollector())
    registry.register(AuditCollector())
    registry.register(StorageCollector())
    registry.register(BrokerCollector())
    registry.register(HttpCollector())
    return registry
