"""Issue 14, charts in the real Chromium: each page's charts are drawn by uPlot (a canvas in the
figure, ``data-points`` the values drawn) under the site's Content-Security-Policy (the ``page``
fixture fails a test on any refusal), from the same rows as their tables (tests/test_charts.py).
"""

from __future__ import annotations

import pytest

from monitoring.actions.checks import do_request_drift_check, do_run_monitor
from monitoring.actions.monitors import do_create_monitor
from monitoring.execute import execute_drift_check
from monitoring.models import CurrentSource
from monitoring.queries import column_scores
from runners.models import Job
from tests.runners.test_job_page_browser import chromium, log_in, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def drawn(page, selector: str, points: int) -> None:  # noqa: F811
    """The figure at ``selector`` has a uPlot canvas and says it drew ``points`` values."""
    from playwright.sync_api import expect

    figure = page.locator(selector)
    expect(figure.locator(".uplot canvas")).to_have_count(1)
    expect(figure).to_have_attribute("data-points", str(points))


def test_each_pages_charts_are_drawn(page, model_version, current_dataset_version, scientist, owner):  # noqa: F811
    from playwright.sync_api import expect

    job = Job.objects.get(pk=model_version.source_job_id)
    check = do_request_drift_check(
        model_version=model_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    assert execute_drift_check(check.pk, make_report=False) == "succeeded"
    check.refresh_from_db()
    monitor = do_create_monitor(
        model_version=model_version,
        name="hourly",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        actor=scientist,
    )
    monitored = do_run_monitor(monitor=monitor, actor=scientist)
    assert execute_drift_check(monitored.pk, make_report=False) == "succeeded"

    log_in(page, scientist)
    # Training curves: the job's epochs, train and validation loss in one chart (embedded, no polling).
    page.goto(model_version.get_absolute_url())
    epochs = len(job.history)
    drawn(page, 'figure[data-chart="loss"]', 2 * epochs)
    expect(page.locator('figure[data-chart="loss"]')).to_have_attribute("data-keys", "train_loss val_loss")
    expect(page.locator("[data-line-charts]")).to_have_attribute("data-polling", "false")

    # A bar per tested column and the threshold line.
    page.goto(check.get_absolute_url())
    drawn(page, "#drift-scores", len(column_scores(check)))
    expect(page.locator("#drift-scores figcaption")).to_have_text("Drift score ÷ threshold per column")

    # The monitor's one check: its drifted share, and the most drifted column's score.
    page.goto(monitor.get_absolute_url())
    drawn(page, "#drift-share", 1)
    drawn(page, "#column-score", 1)
    # A lone check: the time axis spans a day each side (it ran over years), and the threshold,
    # a line of one point that drew nothing, is drawn across the plot.
    for chart in ("#drift-share", "#column-score"):
        expect(page.locator(chart)).to_have_attribute("data-x-span", str(2 * 86400))
        expect(page.locator(chart)).to_have_attribute("data-thresholds-across", "1")
    monitored.refresh_from_db()
    most = column_scores(monitored)[0]["column"]
    expect(page.locator("#column-score figcaption")).to_contain_text(f"Score of {most} per check")

    # One version of the model: a point per metric chart.
    page.goto(model_version.model.get_absolute_url())
    drawn(page, "#metric-history-1", 1)
    expect(page.locator("#metric-history-1 figcaption")).to_have_text("rmse by version")

    # Twelve months of one team's cost (the eleven without jobs cost 0).
    page.context.clear_cookies()
    log_in(page, owner)
    page.goto("/usage/")
    drawn(page, "#usage-cost", 12)


def test_an_empty_chart_says_so_without_a_script_error(
    page,  # noqa: F811
    registered_version,
    current_dataset_version,
    scientist,
):
    from playwright.sync_api import expect

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    monitor = do_create_monitor(
        model_version=registered_version,
        name="hourly",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        actor=scientist,
    )
    log_in(page, scientist)
    page.goto(monitor.get_absolute_url())
    expect(page.locator("#drift-share")).to_contain_text("No data yet.")
    expect(page.locator("#drift-share canvas")).to_have_count(0)
    page.goto(registered_version.get_absolute_url())
    expect(page.locator("main")).to_contain_text("No training run recorded for this version")
    assert errors == []
