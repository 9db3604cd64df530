"""Prometheus metrics of jobs, read from the database when scraped.

``monitoring.metrics.registry`` registers ``JobCollector`` beside monitoring's own collector, so
``/metrics`` reports job durations; the job rows belong to runners, so the query lives here
(issue 8: it used to be read through ``apps.get_model`` to hide the dependency). Four aggregate
queries per scrape, whatever the number of jobs: durations; accounting (issue 16: cost, CPU and
GPU seconds per team and resource class); budgets with their month-to-date spend; and delivery
(issue 16: a job queued too long, and how often tasks were sent, show here).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import current_app
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from runners.accounting import accounted_jobs, budget_lines
from runners.models import Job, Prediction

# Seconds; a training job on the demo takes tens of seconds, real ones hours.
JOB_DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
PREFIX = "steward"


class JobCollector(Collector):
    """``steward_job_duration_seconds``: wall time of finished jobs, a histogram by kind and state;
    ``steward_job_queued_oldest_age_seconds``: how long the oldest queued job has waited (0 when
    none is queued; a job waiting for its start window does not count until it opens);
    ``steward_job_waiting_for_window``: queued jobs whose window has not opened;
    ``steward_job_dispatches_total``: sends of job tasks to the broker;
    ``steward_job_cost_total``, ``steward_job_cpu_seconds_total``, ``steward_job_gpu_seconds_total``
    by team and resource class; ``steward_team_budget_limit`` and ``steward_team_budget_spent``
    (this month so far) by team, in ``STEWARD_CURRENCY``."""

    def collect(self) -> Iterator[HistogramMetricFamily | GaugeMetricFamily | CounterMetricFamily]:
        yield self._durations()
        yield from self._accounting()
        yield from self._budgets()
        now = timezone.now()
        # A job waiting for its start window is not waiting for a worker: it counts from the
        # window's opening (issue 16), so an off-peak job does not look like a stuck queue.
        due = Q(not_before__isnull=True) | Q(not_before__lte=now)
        waiting_since = Greatest("created_at", Coalesce("not_before", "created_at"))
        delivery = Job.objects.aggregate(
            oldest=Min(waiting_since, filter=Q(state="queued") & due),
            for_window=Count("id", filter=Q(state="queued", not_before__gt=now)),
            dispatches=Sum("dispatch_count"),
        )
        oldest = delivery["oldest"]
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            f"{PREFIX}_job_queued_oldest_age_seconds",
            "Seconds the oldest queued job has waited for a worker (from its start window's "
            "opening, if it asked for one); 0 when none is queued.",
            value=max(age, 0.0),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_job_waiting_for_window",
            "Queued jobs whose start window has not opened yet (not sent to a worker before).",
            value=delivery["for_window"],
        )
        yield CounterMetricFamily(
            f"{PREFIX}_job_dispatches",
            "Times job tasks were sent to the broker (first sends and re-sends by the sweeper).",
            value=delivery["dispatches"] or 0,
        )

    def _durations(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            f"{PREFIX}_job_duration_seconds",
            "Wall time of finished jobs, by kind and state.",
            labels=["kind", "state"],
        )
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        aggregates = {
            f"le_{bound}": Count("id", filter=Q(duration__lte=datetime.timedelta(seconds=bound)))
            for bound in JOB_DURATION_BUCKETS
        }
        rows = (
            Job.objects.filter(started_at__isnull=False, finished_at__isnull=False)
            .annotate(duration=duration)
            .order_by()
            .values("kind", "state")
            .annotate(total=Count("id"), seconds=Sum("duration"), **aggregates)
            .order_by("kind", "state")
        )
        for row in rows:
            buckets = [(str(float(bound)), row[f"le_{bound}"]) for bound in JOB_DURATION_BUCKETS]
            buckets.append(("+Inf", row["total"]))
            seconds = row["seconds"].total_seconds() if row["seconds"] is not None else 0.0
            family.add_metric([row["kind"], row["state"]], buckets, seconds)
        return family

    def _accounting(self) -> Iterator[CounterMetricFamily]:
        labels = ["team", "resource_class"]
        currency = settings.STEWARD_CURRENCY
        cost = CounterMetricFamily(
            f"{PREFIX}_job_cost",
            f"Cost of jobs' compute, {currency}, by team and resource class.",
            labels=labels,
        )
        cpu = CounterMetricFamily(
            f"{PREFIX}_job_cpu_seconds", "CPU seconds (user + system) jobs used.", labels=labels
        )
        gpu = CounterMetricFamily(f"{PREFIX}_job_gpu_seconds", "GPU seconds jobs used.", labels=labels)
        rows = (
            accounted_jobs()
            .values_list("team__slug", "resource_class")
            .annotate(cost=Sum("cost"), cpu=Sum("cpu_time_s"), gpu=Sum("gpu_time_s"))
            .order_by("team__slug", "resource_class")
        )
        for team, resource_class, spent, cpu_s, gpu_s in rows:
            cost.add_metric([team, resource_class], spent or 0.0)
            cpu.add_metric([team, resource_class], cpu_s or 0.0)
            gpu.add_metric([team, resource_class], gpu_s or 0.0)
        yield from (cost, cpu, gpu)

    def _budgets(self) -> Iterator[GaugeMetricFamily]:
        currency = settings.STEWARD_CURRENCY
        limit = GaugeMetricFamily(
            f"{PREFIX}_team_budget_limit", f"A team's monthly budget, {currency}.", labels=["team"]
        )
        spent = GaugeMetricFamily(
            f"{PREFIX}_team_budget_spent",
            f"A team's job cost this month so far, {currency} (jobs count in their submission month).",
            labels=["team"],
        )
        for line in budget_lines(None):
            limit.add_metric([line["team"].slug], float(line["limit"]))
            spent.add_metric([line["team"].slug], line["spent"])
        yield from (limit, spent)


class ServingCollector(Collector):
    """``steward_predictions_total``: prediction rows logged by online prediction (issue 17), by
    model, version and role (served, shadow); sampled requests only (``STEWARD_PREDICTION_LOG_SAMPLE``).
    One aggregate query per scrape."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            f"{PREFIX}_predictions",
            "Predictions logged by online prediction, by model, version and role.",
            labels=["model", "model_version", "role"],
        )
        rows = (
            Prediction.objects.order_by()
            .values_list("model_version__model__name", "model_version__version", "role")
            .annotate(n=Count("id"))
            .order_by("model_version__model__name", "model_version__version", "role")
        )
        for model, version, role, n in rows:
            family.add_metric([model, str(version), role], float(n))
        yield family


class BrokerCollector(Collector):
    """The broker and the workers, asked at each scrape (issue 13):

    - ``steward_queue_messages{queue}``: messages waiting in each job queue of
      ``STEWARD_RESOURCE_CLASSES`` (and Celery's default queue, where drift checks and housekeeping
      go), read with a passive queue declaration, which Redis, RabbitMQ and the filesystem
      transport all answer; a queue the broker does not know yet counts 0.
    - ``steward_workers``: Celery workers answering a ping within ``PING_TIMEOUT_S``.
    - ``steward_broker_up``: 1 when the broker took the connection, else 0 (and nothing else).
    """

    PING_TIMEOUT_S = 1.0
    BROKER_TIMEOUT_S = 5.0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(f"{PREFIX}_broker_up", "1 when the broker accepted this scrape's connection.")
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_messages", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        workers = GaugeMetricFamily(f"{PREFIX}_workers", "Celery workers answering a ping.")
        queues = sorted(
            {str(spec["queue"]) for spec in settings.STEWARD_RESOURCE_CLASSES.values()}
            | {current_app.conf.task_default_queue}
        )
        # In a thread the scrape does not wait for past BROKER_TIMEOUT_S: a broker that takes the
        # connection and never answers would otherwise hold /metrics (and its web thread).
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-broker")
        try:
            waiting, answers = pool.submit(_ask_broker, queues, self.PING_TIMEOUT_S).result(
                timeout=self.BROKER_TIMEOUT_S
            )
        except Exception:  # any transport's failure, or no answer in time: the broker is down
            up.add_metric([], 0.0)
            yield up
            return
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        up.add_metric([], 1.0)
        for queue, count in waiting.items():
            depth.add_metric([queue], float(count))
        workers.add_metric([], float(answers))
        yield from (up, depth, workers)


def _ask_broker(queues: list[str], ping_timeout_s: float) -> tuple[dict[str, int], int]:
    """({queue: messages waiting}, workers answering a ping). Raises the transport's errors.

    One connection of its own for everything, closed before returning: the ping on the app's
    pooled connections left them open in the web process, and a process it forks later (the
    audit verifier's workers) closed its copies of them at fork (Celery's after-fork clean-up),
    talking over the parent's sockets and hanging both."""
    with current_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        waiting = {queue: _waiting(connection, queue) for queue in queues}
        answers = current_app.control.ping(timeout=ping_timeout_s, connection=connection)
    return waiting, len(answers)


def _waiting(connection: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (0 for a queue the broker has not declared). A channel of
    its own: an AMQP broker closes the channel that asked passively for an unknown queue."""
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except connection.channel_errors:
        return 0
    finally:
        with contextlib.suppress(Exception):
            channel.close()
