"""Issue 13, the site's Content-Security-Policy in the real Chromium: the pages people use render
under it without one refused script, style, image or frame (the ``page`` fixture fails a test on
any violation Chromium reports), Swagger UI starts from its own script URL, and the drift check
page frames the evidently report, which runs its inline scripts under its own policy.
"""

from __future__ import annotations

import pytest

from monitoring.actions.checks import do_request_drift_check
from monitoring.execute import execute_drift_check
from monitoring.reports import execute_drift_report
from tests.runners.test_job_page_browser import chromium, log_in, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_pages_render_under_the_policy(page, registered_version, compliance_officer):  # noqa: F811
    from playwright.sync_api import expect

    log_in(page, compliance_officer)
    for path, shown in (
        ("/", "Dashboard"),
        (f"/models/{registered_version.model_id}/", registered_version.model.name),
        ("/audit/", "Audit"),
        ("/lineage/", "Lineage"),
    ):
        page.goto(path)
        expect(page.locator("main")).to_contain_text(shown)

    # Swagger UI: its bundle and its start-up script are Steward's own files; it draws the schema.
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Steward API")


def test_the_drift_report_runs_framed_under_its_own_policy(
    page,  # noqa: F811
    registered_version,
    current_dataset_version,
    scientist,
):
    from playwright.sync_api import expect

    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    execute_drift_check(check.pk)
    assert execute_drift_report(check.pk) == "succeeded"

    log_in(page, scientist)
    page.goto(f"/drift-checks/{check.pk}/")
    frame = page.frame_locator("iframe.report")
    # Evidently draws its report with inline scripts: text appears only if they ran.
    expect(frame.locator("body")).to_contain_text("hum", timeout=30_000)
    # Sandboxed: a script in the report can read neither the page around it nor, with the
    # viewer's session, Steward's API.
    (report,) = [f for f in page.frames if f.url.endswith(f"/drift-checks/{check.pk}/report/")]
    reached = report.evaluate(
        """async () => {
            const out = {};
            try { out.parent = parent.document.title; } catch (e) { out.parent = "blocked"; }
            try { out.api = (await fetch("/api/tokens/")).status; } catch (e) { out.api = "blocked"; }
            return out;
        }"""
    )
    assert reached == {"parent": "blocked", "api": "blocked"}
    # Those two refusals were the point; any other is still a failure of the page fixture.
    page.csp_refused[:] = [line for line in page.csp_refused if "/api/tokens/" not in line]
