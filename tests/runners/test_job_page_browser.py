"""Issue 17, the job page in the real Chromium: a running job's log streams into the page and its
metrics plot as step curves while it runs; stderr is marked, user output is text, never markup;
the log follows its end unless the reader scrolled up; finishing the job stops the polling.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); Playwright drives it and never
downloads a browser of its own. The live server runs in a thread of this process on the test
database, so rows written here through the ORM (as the worker writes them) reach the page.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runners.actions import JOBS, do_submit_job
from runners.models import JobKind, JobLogChunk, RunMetric
from tests.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium through Playwright's sync API, one per module.

    Playwright's sync API keeps an event loop in this thread, which Django takes for async code
    and refuses the ORM in; the test's own ORM calls (and the database flush after each test)
    are synchronous, so that check is off while the browser is up."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # The default 5 s for an expectation to come true is short on a busy two-core CI machine.
    expect.set_options(timeout=15_000)
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server):
    """A fresh page in its own browser context (no cookies of another test). After the test,
    asserts that no page it showed broke the site's Content-Security-Policy (issue 13):
    Chromium reports each refused script, style, frame or image on the console."""
    context = chromium.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    page.csp_refused = refused  # a test that provokes a refusal on purpose takes it off this list
    yield page
    context.close()
    assert not refused, "the page broke its Content-Security-Policy:\n" + "\n".join(refused)


def log_in(page, user) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def add_chunk(job, stream: str, text: str) -> JobLogChunk:
    """The next chunk of ``job``'s log, as the worker writes it."""
    seq = JobLogChunk.objects.filter(job=job).count() + 1
    return JobLogChunk.objects.create(job=job, seq=seq, attempt=job.attempt, stream=stream, text=text)


@pytest.fixture
def running_job(dataset_version, registered_model, scientist):
    """A training job a worker has claimed (running, attempt 1)."""
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec={"target": "cnt", "features": ["temp", "hum"], "epochs": 3},
        actor=scientist,
    )
    JOBS.begin(job.pk)
    job.refresh_from_db()
    return job


def test_log_streams_and_metrics_plot_while_the_job_runs_then_polling_stops(page, running_job, scientist):
    from playwright.sync_api import expect

    job = running_job
    add_chunk(job, "steward", "attempt 1 on worker w1\n")
    JOBS.record_progress(job.pk, job.attempt, history=[{"epoch": 1, "train_loss": 0.93, "val_loss": 0.97}])
    log_requests: list[str] = []
    page.on("request", lambda request: "/log/" in request.url and log_requests.append(request.url))
    log_in(page, scientist)
    page.goto(job.get_absolute_url())

    log, charts = page.locator("[data-job-log]"), page.locator("[data-line-charts]")
    text = page.locator("[data-log-text]")
    expect(text).to_have_text("attempt 1 on worker w1\n")
    expect(log).to_have_attribute("data-polling", "true")
    loss = page.locator('figure.chart[data-chart="loss"]')
    expect(loss).to_have_attribute("data-keys", "train_loss val_loss")
    expect(loss).to_have_attribute("data-points", "2")

    # While the page is open, the worker writes: stdout, stderr carrying markup, another epoch,
    # and points a code run logs through MLflow (one of them NaN).
    add_chunk(job, "stdout", "epoch 1/3 train_loss=0.93\n")
    add_chunk(job, "stderr", 'UserWarning: <img src=x onerror="window.hacked=1"> & more\n')
    JOBS.record_progress(
        job.pk,
        job.attempt,
        history=[
            {"epoch": 1, "train_loss": 0.93, "val_loss": 0.97},
            {"epoch": 2, "train_loss": 0.71, "val_loss": 0.8},
        ],
    )
    RunMetric.objects.bulk_create(
        RunMetric(
            job=job, key="lr", value=None if step == 2 else 0.1 / (step + 1), timestamp_ms=step, step=step
        )
        for step in range(5)
    )

    stderr = text.locator("span.log-stderr")
    expect(stderr).to_have_text('UserWarning: <img src=x onerror="window.hacked=1"> & more\n')
    expect(text).to_contain_text("epoch 1/3 train_loss=0.93\n")
    assert text.locator("img").count() == 0
    assert page.evaluate("window.hacked") is None
    expect(loss).to_have_attribute("data-points", "4")
    expect(loss.locator("canvas")).to_have_count(1)
    lr = page.locator('figure.chart[data-chart="lr"]')
    expect(lr).to_have_attribute("data-points", "5")
    expect(lr.locator("figcaption")).to_have_text("lr: lr 0.02 at step 4")
    assert page.locator("figure.chart").evaluate_all("figures => figures.map(f => f.dataset.chart)") == [
        "loss",
        "lr",
    ]

    # The box follows the end while the reader is at the end, and stays put once they scroll up.
    for index in range(60):
        add_chunk(job, "stdout", f"batch {index}\n")
    expect(text).to_contain_text("batch 59\n")
    assert text.evaluate("box => box.scrollHeight - box.scrollTop - box.clientHeight") < 8
    # At the end there is nothing to jump to: the button is hidden, not merely marked so.
    expect(page.locator("[data-log-follow]")).to_be_hidden()
    text.evaluate("box => { box.scrollTop = 0; }")
    add_chunk(job, "stdout", "after scrolling up\n")
    expect(text).to_contain_text("after scrolling up\n")
    assert text.evaluate("box => box.scrollTop") == 0
    expect(page.locator("[data-log-follow]")).to_be_visible()
    expect(page.locator("[data-log-truncated]")).to_be_hidden()

    # The job finishes: both pollers stop, and nothing is asked for after that.
    JOBS.fail(job.pk, "stopped by the test")
    expect(log).to_have_attribute("data-polling", "false")
    expect(charts).to_have_attribute("data-polling", "false")
    expect(log).to_have_attribute("data-state", "failed")
    asked = len(log_requests)
    add_chunk(job, "stdout", "written after the end\n")
    poll_ms = int(log.get_attribute("data-poll-ms"))
    page.wait_for_timeout(3 * poll_ms)  # three polling periods: long enough for a poller that had not stopped
    assert len(log_requests) == asked
    assert "written after the end" not in text.inner_text()


def test_a_truncated_log_says_so(page, running_job, scientist, settings):
    settings.STEWARD_JOB_LOG_MAX_BYTES = 64
    add_chunk(running_job, "stdout", "x" * 60 + "\n")
    add_chunk(running_job, "steward", "log truncated at 64 bytes\n")
    JOBS.fail(running_job.pk, "stopped by the test")
    log_in(page, scientist)
    page.goto(running_job.get_absolute_url())
    from playwright.sync_api import expect

    expect(page.locator("[data-job-log]")).to_have_attribute("data-polling", "false")
    expect(page.locator("[data-log-truncated]")).to_be_visible()
    expect(page.locator("[data-log-text] span.log-steward")).to_have_text("log truncated at 64 bytes\n")
    expect(page.locator("[data-charts-status]")).to_have_text("This job logged no metrics.")
