"""Issue 14, charts: each chart's figures are in the page the server renders, as a table beside the
<figure> (for screen readers and readers without JavaScript), taken from real rows: a trained job's
epochs, a real drift check's columns, a monitor's checks, a model's versions, a month's job costs.
The browser test (tests/test_charts_browser.py) checks the same charts are drawn.
"""

from __future__ import annotations

import datetime
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from governance.charts import format_number
from monitoring.actions.checks import do_request_drift_check, do_run_monitor
from monitoring.actions.monitors import do_create_monitor
from monitoring.execute import execute_drift_check
from monitoring.models import CurrentSource, DriftCheck
from monitoring.queries import relative_score
from runners.models import Job

pytestmark = pytest.mark.django_db


class _Tables(HTMLParser):
    """The page's <figure>s (id -> caption) and its tables (caption -> rows of cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.figures: dict[str, str] = {}
        self._figure: str | None = None
        self._text: list[str] | None = None
        self._caption = ""
        self._rows: list[list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "figure":
            self._figure = found.get("id") or ""
        elif tag in ("figcaption", "caption", "th", "td"):
            self._text = []
        elif tag == "table":
            self._rows, self._caption = [], ""
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or []).strip()
        if tag == "figcaption" and self._figure is not None:
            self.figures[self._figure] = text
        elif tag == "caption":
            self._caption = text
        elif tag in ("th", "td") and self._rows:
            self._rows[-1].append(text)
        elif tag == "table" and self._rows is not None:
            self.tables[self._caption] = [row for row in self._rows if row]
            self._rows = None
        if tag in ("figcaption", "caption", "th", "td"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def page(client, user, path: str) -> _Tables:
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200
    parsed = _Tables()
    parsed.feed(response.content.decode())
    return parsed


def test_a_model_versions_page_tables_its_training_runs_epochs(client, model_version, scientist):
    job = Job.objects.get(pk=model_version.source_job_id)
    shown = page(client, scientist, model_version.get_absolute_url())

    table = shown.tables["Training and validation metrics by step"]
    keys = sorted(key for key in job.history[0] if key != "epoch")
    assert table[0] == ["step", *keys]
    # One row per epoch the worker recorded, each metric as its history says.
    assert table[1:] == [
        [str(record["epoch"]), *(format_number(record[key]) for key in keys)] for record in job.history
    ]
    assert len(table) == 1 + job.spec["epochs"]


def test_a_version_without_a_training_run_has_no_curves(client, registered_version, scientist):
    client.force_login(scientist)
    content = client.get(registered_version.get_absolute_url()).content.decode()
    assert "No training run recorded for this version, so no curves." in content
    assert "Training and validation metrics by step" not in content


def test_a_drift_checks_page_tables_each_columns_score_against_its_threshold(
    client, registered_version, current_dataset_version, scientist
):
    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    assert execute_drift_check(check.pk, make_report=False) == "succeeded"
    check.refresh_from_db()
    shown = page(client, scientist, check.get_absolute_url())

    assert shown.figures["drift-scores"] == "Drift score ÷ threshold per column"
    header, *rows = shown.tables["Drift score ÷ threshold per column"]
    assert header == ["column (method)", "score ÷ threshold", "threshold", "score", "its threshold"]
    tested = [r for r in check.results if r.get("method") and r.get("score") is not None]
    assert len(rows) == len(tested)
    expected = {
        f"{r['column']} ({r['method']})": [
            format_number(relative_score(r["method"], r["score"], r["threshold"])),
            "1",
            format_number(r["score"]),
            format_number(r["threshold"]),
        ]
        for r in tested
    }
    assert {row[0]: row[1:] for row in rows} == expected
    # Most drifted first: the drifted columns (at or past 1) lead the table.
    drifted = {f"{r['column']} ({r['method']})" for r in tested if r["is_drifted"]}
    assert drifted
    assert {row[0] for row in rows[: len(drifted)]} == drifted
    assert all(float(row[1]) >= 1 for row in rows[: len(drifted)])


def test_a_monitors_page_tables_drift_share_and_a_columns_score_over_its_checks(
    client, registered_version, current_dataset_version, scientist
):
    monitor = do_create_monitor(
        model_version=registered_version,
        name="hourly",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        actor=scientist,
    )
    shown = page(client, scientist, monitor.get_absolute_url())
    assert shown.figures["drift-share"].startswith("Share of drifted columns per check")
    assert "Share of drifted columns per check" not in " ".join(shown.tables)  # no checks: no table
    assert b"No data yet." in client.get(monitor.get_absolute_url()).content

    for _ in range(2):
        check = do_run_monitor(monitor=monitor, actor=scientist)
        assert execute_drift_check(check.pk, make_report=False) == "succeeded"
    checks = list(DriftCheck.objects.filter(monitor=monitor).order_by("created_at", "id"))
    shown = page(client, scientist, monitor.get_absolute_url())

    share = shown.tables[shown.figures["drift-share"]]
    assert share[0] == ["check", "drifted share", "drift share threshold"]
    assert [row[1:] for row in share[1:]] == [
        [format_number(check.drifted_fraction), format_number(check.drift_share)] for check in checks
    ]
    assert [row[0] for row in share[1:]] == [
        f"{timezone.localtime(check.created_at):%Y-%m-%d %H:%M} (#{check.pk})" for check in checks
    ]

    # The column asked for, score and threshold per check.
    shown = page(client, scientist, f"{monitor.get_absolute_url()}?column=hum")
    caption = shown.figures["column-score"]
    assert caption.startswith("Score of hum per check (")
    hum = [next(r for r in check.results if r["column"] == "hum") for check in checks]
    assert [row[1:] for row in shown.tables[caption][1:]] == [
        [format_number(r["score"]), format_number(r["threshold"])] for r in hum
    ]


def test_a_models_page_tables_each_metric_over_its_versions(
    client, model_version, registered_version, scientist
):
    # model_version (v1) was trained by a job, registered_version (v2) from the session's training.
    shown = page(client, scientist, model_version.model.get_absolute_url())
    # A chart per metric of the versions table (row counts are not drawn).
    assert list(shown.figures.values()) == [
        "rmse by version",
        "mae by version",
        "r2 by version",
        "loss by version",
    ]
    assert shown.tables["rmse by version"] == [
        ["version", "rmse"],
        ["v1", format_number(model_version.metrics["rmse"])],
        ["v2", format_number(registered_version.metrics["rmse"])],
    ]


def test_the_usage_page_tables_each_teams_cost_per_month(client, model_version, team, owner):
    job = Job.objects.get(pk=model_version.source_job_id)
    assert job.cost is not None
    shown = page(client, owner, "/usage/")
    header, *rows = shown.tables["Cost per team and month"]
    assert header == ["month", team.slug]
    this_month = f"{timezone.localtime():%Y-%m}"
    # Twelve months up to this one; only this month's job costs anything.
    assert len(rows) == 12
    assert rows[-1] == [this_month, format_number(job.cost)]
    assert all(row[1] == "0" for row in rows[:-1])


def test_the_usage_chart_counts_a_job_in_the_month_it_was_submitted(client, model_version, team, owner):
    job = Job.objects.get(pk=model_version.source_job_id)
    last_year = timezone.now() - datetime.timedelta(days=200)
    Job.objects.filter(pk=job.pk).update(created_at=last_year)  # as if submitted then
    month = f"{timezone.localtime(last_year):%Y-%m}"
    rows = page(client, owner, "/usage/").tables["Cost per team and month"][1:]
    assert dict(rows)[month] == format_number(job.cost)
    assert sum(row[1] != "0" for row in rows) == 1
