"""Issue 14, one journey per person in the real Chromium: each person does their job through the
pages as they would (typing into forms, clicking links and buttons, downloading files) and the
test asserts what they see: headings, messages, table rows, badges and the downloads' contents.

Each page visited is saved as a full-page screenshot under ``var/screenshots/<journey>/``
(``Journey``), numbered in visiting order: CI keeps ``var/`` as an artifact, so a reviewer can
page through what each person saw. The browser, the ``page`` (which fails a test on any
Content-Security-Policy violation) and ``log_in`` are the job page test's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from governance.actions.datasets import do_create_dataset
from governance.actions.model_versions import do_register_model_version
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.actions.registered_models import do_create_registered_model
from governance.audit.sequencer import sequence_audit_events
from governance.charts import format_number
from governance.models import AuditEvent, Membership, ModelVersion, PromotionRequest
from governance.tasks import notify_approvers
from monitoring.actions.alerts import do_acknowledge_alert
from monitoring.actions.checks import do_run_monitor
from monitoring.actions.monitors import do_create_monitor
from monitoring.execute import execute_drift_check
from monitoring.models import Alert, CurrentSource, DriftCheck, Severity
from monitoring.queries import column_scores
from tests.runners.test_job_page_browser import chromium, log_in, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


@dataclass
class Journey:
    """The screenshots of one person's journey: ``shot(page, name)`` saves the whole page as
    ``var/screenshots/<journey>/<NN>-<name>.png``, NN counting from 01 in visiting order.
    ``start`` empties the journey's folder first, so it holds one run's pages only."""

    folder: Path
    taken: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, name: str) -> Journey:
        folder = SCREENSHOTS / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return cls(folder)

    def shot(self, page, name: str) -> Path:  # noqa: F811 (a Playwright page, not the fixture)
        self.taken.append(name)
        path = self.folder / f"{len(self.taken):02}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


def next_whole_second() -> datetime.datetime:
    """Wait for the next whole second of UTC and return it: a boundary a person can type into a
    date filter, with every event written before this call older than it and every event
    written after it at least as new."""
    now = timezone.now()
    boundary = now.replace(microsecond=0) + datetime.timedelta(seconds=1)
    time.sleep((boundary - now).total_seconds())
    return boundary


def typed(moment: datetime.datetime) -> str:
    """``moment`` as a person types it into the trail's UTC fields (the placeholder's shape)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_verifier(folder: Path, bundle: str) -> subprocess.CompletedProcess[str]:
    """``python3 merkle.py verify --public-key steward.pem <bundle>`` in ``folder``, as
    docs/operations.md tells an auditor to run the downloaded verifier."""
    return subprocess.run(  # noqa: S603 - our own interpreter running the downloaded verifier
        [sys.executable, "-I", "merkle.py", "verify", "--public-key", "steward.pem", bundle],
        capture_output=True,
        text=True,
        cwd=folder,
        check=False,
    )


def download(page, link_text: str, folder: Path) -> Path:  # noqa: F811 (a Playwright page)
    """Click the link named ``link_text`` and save what it downloads into ``folder`` under the
    name the server suggests; return the saved path."""
    with page.expect_download() as started:
        page.get_by_role("link", name=link_text, exact=True).click()
    saved = folder / started.value.suggested_filename
    started.value.save_as(saved)
    return saved


def table_rows(locator) -> list[list[str]]:
    """A table's body as the cells' visible texts, row by row."""
    return locator.locator("tbody tr").evaluate_all(
        "rows => rows.map(row => [...row.cells].map(cell => cell.innerText.trim()))"
    )


# The compliance officer ------------------------------------------------------------------------


def test_the_compliance_officer_filters_the_trail_exports_the_bundle_and_verifies_it(
    page,  # noqa: F811
    team,
    scientist,
    compliance_officer,
    tmp_path,
):
    from playwright.sync_api import expect

    # The Mobility team's work: a dataset before the window, two datasets and a model inside
    # it, another dataset after it; then the sequencer signs a checkpoint over all of them.
    do_create_dataset(team=team, name="bike-sharing-hourly", actor=scientist)
    since = next_whole_second()
    in_window = [
        do_create_dataset(team=team, name="bike-sharing-2012", actor=scientist),
        do_create_dataset(team=team, name="weather-hourly", actor=scientist),
    ]
    do_create_registered_model(team=team, name="bike-demand", owner=scientist, actor=scientist)
    until = next_whole_second()
    do_create_dataset(team=team, name="holidays-2012", actor=scientist)
    sequence_audit_events()
    wanted = list(
        AuditEvent.objects.filter(action="dataset.create", object_id__in=[str(d.pk) for d in in_window])
        .order_by("leaf__leaf_index")
        .values_list("pk", flat=True)
    )
    assert len(wanted) == 2
    journey = Journey.start("compliance-officer")

    page.goto("/login/")
    journey.shot(page, "login")
    log_in(page, compliance_officer)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    expect(page.locator("h1")).to_have_text("Audit trail")
    journey.shot(page, "trail")

    # A date typed as people say it is refused, and the trail says so instead of keeping the
    # rows of the filters before (htmx swaps no 400 by default: static/steward/audit_trail.js).
    filters = page.locator("form.filters")
    filters.get_by_label("Action").fill("dataset.")
    filters.get_by_label("Since (UTC)").fill("yesterday")
    filters.get_by_role("button", name="Filter").click()
    audit_table = page.locator("#audit-table")
    expect(audit_table.locator("p.empty")).to_have_text("No events listed: correct the filters.")
    expect(audit_table.locator(".errorlist")).to_have_text("Since (UTC): Enter a valid date/time.")
    expect(page.locator("#audit-exports a")).to_have_text(["Offline verifier (merkle.py)", "Public key"])
    journey.shot(page, "trail-invalid-filter")

    filters.get_by_label("Since (UTC)").fill(typed(since))
    filters.get_by_label("Until (UTC)").fill(typed(until))
    filters.get_by_role("button", name="Filter").click()
    table = page.locator("#audit-table table.audit")
    expect(table.locator("tbody tr")).to_have_count(2)
    # The address bar holds the filters (htmx pushed them): the view can be bookmarked.
    assert parse_qs(urlsplit(page.url).query) == {
        "action": ["dataset."],
        "since": [typed(since)],
        "until": [typed(until)],
    }
    assert [row[1:] for row in table_rows(table)] == [
        ["dana", "dataset.create", f"weather-hourly dataset {in_window[1].pk}", "Mobility"],
        ["dana", "dataset.create", f"bike-sharing-2012 dataset {in_window[0].pk}", "Mobility"],
    ]
    journey.shot(page, "trail-filtered")

    # The evidence: the filtered bundle, the verifier and the public key, as the trail offers them.
    bundle_path = download(page, "Export JSON bundle (with proofs)", tmp_path)
    verifier = download(page, "Offline verifier (merkle.py)", tmp_path)
    key = download(page, "Public key", tmp_path)
    assert (verifier.name, key.name) == ("merkle.py", "steward.pem")
    bundle = json.loads(bundle_path.read_text())
    assert bundle["filters"] == {"action": "dataset.", "since": typed(since), "until": typed(until)}
    assert [event["event_id"] for event in bundle["events"]] == wanted
    assert [event["personal"]["object_repr"] for event in bundle["events"]] == [
        "bike-sharing-2012",
        "weather-hourly",
    ]
    assert bundle["unsequenced_events_not_included"] == 0
    assert bundle["verifier"]["sha256"] == hashlib.sha256(verifier.read_bytes()).hexdigest()

    intact = run_verifier(tmp_path, bundle_path.name)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.splitlines()[-1] == "OK: 2 of 2 events verified"
    # Someone edits who created the first dataset in a copy: the verifier names that leaf.
    bundle["events"][0]["personal"]["actor_label"] = "mallory"
    (tmp_path / "tampered.json").write_text(json.dumps(bundle))
    tampered = run_verifier(tmp_path, "tampered.json")
    leaf = bundle["events"][0]["leaf_index"]
    assert tampered.returncode == 1
    assert f"leaf {leaf}: FAILED: personal details do not match the leaf's commitment" in tampered.stdout
    assert (
        tampered.stdout.splitlines()[-1] == f"FAILED: first failing leaf index {leaf} (1 of 2 events failed)"
    )

    # One event, opened from its row: who did what to which object, and that it verifies.
    table.get_by_role("row").filter(has_text="weather-hourly").get_by_role("link").first.click()
    expect(page.locator("h1")).to_have_text(f"Audit event #{wanted[1]} dataset.create")
    summary = page.locator("dl")
    expect(summary.locator("dt:text-is('Actor') + dd")).to_have_text("dana")
    expect(summary.locator("dt:text-is('Object') + dd")).to_have_text(
        f"weather-hourly dataset {in_window[1].pk}"
    )
    expect(summary.locator("dt:text-is('Team') + dd")).to_have_text("Mobility")
    expect(page.locator(".verification .badge")).to_have_text("Verified")
    journey.shot(page, "event")

    assert journey.taken == ["login", "trail", "trail-invalid-filter", "trail-filtered", "event"]
    assert sorted(path.name for path in journey.folder.iterdir()) == [
        "01-login.png",
        "02-trail.png",
        "03-trail-invalid-filter.png",
        "04-trail-filtered.png",
        "05-event.png",
    ]


# The admin -------------------------------------------------------------------------------------


def test_the_admin_creates_a_user_sets_a_password_grants_and_revokes_a_role(
    page,  # noqa: F811
    chromium,  # noqa: F811
    live_server,
    admin,
    team,
    owner,
):
    from playwright.sync_api import expect

    new_password = "tandem-lantern-quarry-41"
    messages = page.locator("ul.messages")
    journey = Journey.start("admin")
    log_in(page, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="People").click()
    expect(page.locator("h1")).to_have_text("Who has which role")
    journey.shot(page, "people")

    # A new colleague's login, without a password yet.
    page.get_by_role("link", name="Users", exact=True).click()
    expect(page.locator("h1")).to_have_text("Users")
    journey.shot(page, "users")
    form = page.locator("form").filter(has=page.get_by_role("heading", name="New user"))
    form.get_by_label("Username").fill("priya")
    form.get_by_label("Email").fill("priya@example.com")
    form.get_by_role("button", name="Create user").click()
    expect(messages).to_have_text("Created user priya.")
    priya_row = page.locator("table tbody tr").filter(has=page.locator("td:first-child", has_text="priya"))
    expect(priya_row.locator("td")).to_have_text(
        ["priya", "priya@example.com", "—", "—", "never", "active", "Password · Deactivate"]
    )
    journey.shot(page, "user-created")

    # Her password.
    priya_row.get_by_role("link", name="Password").click()
    expect(page.locator("h1")).to_have_text("Password of priya")
    journey.shot(page, "password")
    page.get_by_label("Password:", exact=True).fill(new_password)
    page.get_by_label("Password, again").fill(new_password)
    page.get_by_role("button", name="Save").click()
    expect(messages).to_have_text("priya's password is set.")
    expect(page.locator("h1")).to_have_text("Users")
    journey.shot(page, "password-set")

    # A role in Mobility.
    page.get_by_role("link", name="Who has which role").click()
    grant = page.locator("form").filter(has=page.get_by_role("heading", name="Grant a team role"))
    grant.get_by_label("Username").fill("priya")
    grant.get_by_label("Team").select_option(label="Mobility")
    grant.get_by_label("Role").select_option(label="Data scientist")
    grant.get_by_role("button", name="Grant").click()
    expect(messages).to_have_text("priya is now Data scientist in Mobility.")
    mobility = page.locator("section.panel").filter(has=page.get_by_role("heading", name="Team roles"))
    expect(mobility.locator("tbody tr").filter(has_text="priya").locator("td").nth(1)).to_have_text(
        "Data scientist"
    )
    journey.shot(page, "role-granted")

    # ... and taken back, after the confirmation page.
    mobility.locator("tbody tr").filter(has_text="priya").get_by_role("link", name="Remove").click()
    expect(page.locator("h1")).to_have_text("Remove priya from Mobility?")
    expect(page.locator("main form p")).to_have_text(
        "They are Data scientist there and lose that role's rights at once."
    )
    journey.shot(page, "revoke-confirm")
    page.get_by_role("button", name="Remove").click()
    expect(messages).to_have_text("Removed priya from Mobility.")
    expect(page.locator("h1")).to_contain_text("Mobility")
    assert [row[:2] for row in table_rows(page.locator("section.panel table"))] == [["olivia", "Model owner"]]
    journey.shot(page, "role-revoked")

    priya = get_user_model().objects.get(username="priya")
    assert (priya.email, priya.is_active) == ("priya@example.com", True)
    assert priya.check_password(new_password)
    assert not Membership.objects.filter(user=priya).exists()

    # The trail tells the story of the four changes, newest first.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    filters = page.locator("form.filters")
    filters.get_by_label("Text").fill("priya")
    filters.get_by_role("button", name="Filter").click()
    table = page.locator("#audit-table table.audit")
    expect(table.locator("tbody tr")).to_have_count(4)
    assert parse_qs(urlsplit(page.url).query) == {"q": ["priya"]}
    membership = AuditEvent.objects.get(action="membership.grant", object_repr="priya in Mobility").object_id
    assert [row[1:] for row in table_rows(table)] == [
        ["admin", "membership.revoke", f"priya in Mobility membership {membership}", "Mobility"],
        ["admin", "membership.grant", f"priya in Mobility membership {membership}", "Mobility"],
        ["admin", "user.password_change", f"priya user {priya.pk}", ""],
        ["admin", "user.create", f"priya user {priya.pk}", ""],
    ]
    journey.shot(page, "trail")

    # Priya logs in with the password the admin set, in a browser of her own.
    context = chromium.new_context(base_url=live_server.url)
    try:
        own = context.new_page()
        own.goto("/login/")
        own.get_by_label("Username").fill("priya")
        own.get_by_label("Password").fill(new_password)
        own.get_by_role("button", name="Log in").click()
        own.wait_for_url(f"{live_server.url}/")
        expect(own.locator("header .username")).to_have_text("priya")
        journey.shot(own, "priya-logged-in")
    finally:
        context.close()

    assert journey.taken == [
        "people",
        "users",
        "user-created",
        "password",
        "password-set",
        "role-granted",
        "revoke-confirm",
        "role-revoked",
        "trail",
        "priya-logged-in",
    ]


# The model owner and the approver ----------------------------------------------------------------


@dataclass
class Candidate:
    """A model with a production version (v1, promoted through an approved request) and a newer
    v2 whose critical monitor's real drift check of the 2012 rows breached and opened an alert."""

    production: ModelVersion
    version: ModelVersion
    check: DriftCheck
    alert: Alert


@pytest.fixture
def candidate(
    registered_version,
    dataset_version,
    current_dataset_version,
    bike_training_result,
    scientist,
    owner,
    approver,
) -> Candidate:
    v1 = registered_version
    first = do_request_promotion(model_version=v1, reason="first release", actor=scientist)
    do_approve_promotion(promotion_request=first, decision_reason="baseline", actor=approver)
    # v2: the session's trained artifact registered again, recorded with a 10% lower rmse (as a
    # retraining might bring): the one metric the approver sees differ.
    metrics = dict(bike_training_result.metrics)
    metrics["rmse"] = round(metrics["rmse"] * 0.9, 4)
    v2 = do_register_model_version(
        model=v1.model,
        artifact_bytes=bike_training_result.artifact,
        metrics=metrics,
        signature=bike_training_result.signature,
        training_spec=v1.training_spec,
        training_dataset_version=dataset_version,
        source_job_id=None,
        actor=None,
        on_behalf_of=scientist,
    )
    monitor = do_create_monitor(
        model_version=v2,
        name="hourly",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        severity=Severity.CRITICAL,
        actor=scientist,
    )
    check = do_run_monitor(monitor=monitor, actor=scientist)
    assert execute_drift_check(check.pk, make_report=False) == "succeeded"
    check.refresh_from_db()
    alert = Alert.objects.get(drift_check=check)
    assert (alert.severity, alert.state, alert.owner) == ("critical", "open", owner)
    return Candidate(production=v1, version=v2, check=check, alert=alert)


def test_the_model_owner_reads_the_alert_acknowledges_it_and_requests_promotion(
    page,  # noqa: F811
    candidate,
    owner,
):
    from playwright.sync_api import expect

    alert, check, v2 = candidate.alert, candidate.check, candidate.version
    main_nav = page.get_by_role("navigation", name="Main")
    messages = page.locator("ul.messages")
    journey = Journey.start("model-owner")
    log_in(page, owner)

    # The dashboard puts the alert on her models first.
    mine = page.locator("section.panel").filter(
        has=page.get_by_role("heading", name="Unresolved alerts on your models")
    )
    assert [row[:4] for row in table_rows(mine.locator("table"))] == [
        [alert.title, "Critical", "Open", "olivia"]
    ]
    journey.shot(page, "dashboard")

    main_nav.get_by_role("link", name="Alerts").click()
    expect(page.locator("h1")).to_have_text("Alerts")
    rows = table_rows(page.locator("main table"))
    assert [row[:4] for row in rows] == [[alert.title, "Critical", "Open", "olivia"]]
    journey.shot(page, "alerts")

    page.get_by_role("link", name=alert.title).click()
    expect(page.locator("h1")).to_have_text(f"Alert #{alert.pk} {alert.title}")
    journey.shot(page, "alert")

    page.get_by_role("link", name=f"drift check #{check.pk}").first.click()
    expect(page.locator("h1")).to_have_text(f"Drift check #{check.pk} {v2}")

    # The verdict, one badge per kind of drift: two of the twelve columns drifted (hum and cnt,
    # under half of them: data drift, not dataset drift); the 2012 rows carry no predictions.
    verdict = page.locator("section.panel").filter(has=page.get_by_role("heading", name="Verdict"))
    expect(verdict.locator(".badge")).to_have_text(
        [
            "Succeeded",
            f"Data drift: {check.drifted_count} of 12 columns",
            "Prediction drift not measured",
            "Performance not measured",
            "Critical",
        ]
    )
    assert check.drifted_count == 2
    expect(verdict).to_contain_text(f"Raised alert #{alert.pk} ({alert.title}).")
    # The scores against their thresholds: a bar per tested column, drawn, with its figures.
    scores = column_scores(check)
    figure = page.locator("#drift-scores")
    expect(figure.locator(".uplot canvas")).to_have_count(1)
    expect(figure).to_have_attribute("data-points", str(len(scores)))
    expect(figure.locator("figcaption")).to_have_text("Drift score ÷ threshold per column")
    # Twelve labels as long as "weathersit (jensenshannon)" do not fit level under their bars.
    expect(figure).to_have_attribute("data-x-labels", "slanted")
    # ... and the chart grows by their room instead of squashing the bars (220 px otherwise).
    assert figure.locator(".uplot canvas").evaluate("canvas => canvas.clientHeight") > 220
    figure.get_by_text("Table", exact=True).click()
    shown = table_rows(figure.locator("details.chart-table table"))
    assert shown == [
        [
            f"{row['column']} ({row['method']})",
            format_number(row["relative"]),
            "1",
            format_number(row["score"]),
            format_number(row["threshold"]),
        ]
        for row in scores
    ]
    assert [row[0] for row in shown[:2]] == ["cnt (wasserstein)", "hum (wasserstein)"]
    assert all(float(row[1]) >= 1 for row in shown[:2])
    assert all(float(row[1]) < 1 for row in shown[2:])
    journey.shot(page, "drift-check")

    # Back to the alert, which she acknowledges: it stays on her list, acknowledged.
    page.go_back()
    expect(page.locator("h1")).to_have_text(f"Alert #{alert.pk} {alert.title}")
    page.get_by_role("button", name="Acknowledge").click()
    expect(messages).to_have_text(f"Alert #{alert.pk} acknowledged.")
    summary = page.locator("dl.summary")
    expect(summary.locator("dt:text-is('State') + dd")).to_have_text("Acknowledged")
    expect(summary.locator("dt:text-is('Acknowledged') + dd")).to_contain_text("by olivia")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    journey.shot(page, "alert-acknowledged")
    main_nav.get_by_role("link", name="Alerts").click()
    expect(page.get_by_label("State")).to_have_value("unresolved")
    assert [row[:4] for row in table_rows(page.locator("main table"))] == [
        [alert.title, "Critical", "Acknowledged", "olivia"]
    ]
    journey.shot(page, "alerts-acknowledged")

    # v2's page: she asks for production. Without the acknowledgement the request is refused
    # and the page lists the critical alert, still unresolved.
    page.get_by_role("link", name=alert.title).click()
    page.locator("dl.summary").get_by_role("link", name=str(v2)).click()
    expect(page.locator("h1")).to_have_text(f"Model version {v2}")
    panel = page.locator("section.panel").filter(
        has=page.get_by_role("heading", name="Aliases and promotion")
    )
    expect(panel.locator("p").first).to_have_text("production → v1")
    panel.locator("summary", has_text="Request promotion").click()
    journey.shot(page, "version")
    panel.get_by_label("Reason").fill("rmse 10% lower; the 2012 drift is demand growth, not a fault")
    panel.get_by_role("button", name="Request promotion").click()
    expect(page.locator("h1")).to_have_text(f"Promote {v2}")
    warning = page.locator("#critical-alerts")
    expect(warning.locator("li")).to_have_text([f"Alert #{alert.pk}: {alert.title} (acknowledged)"])
    expect(warning.get_by_role("link", name=f"Alert #{alert.pk}")).to_have_attribute(
        "href", alert.get_absolute_url()
    )
    expect(page.locator("form .errorlist")).to_have_text(
        f"{v2} has unresolved critical alerts (#{alert.pk} {alert.title}); "
        "read them, then request again acknowledging them"
    )
    assert not PromotionRequest.objects.filter(model_version=v2).exists()
    journey.shot(page, "request-refused")

    # One box per alert she read: an alert raised since would be one she has not ticked.
    page.get_by_label(f"Alert #{alert.pk}: {alert.title}").check()
    page.get_by_role("button", name="Request promotion").click()
    promotion = PromotionRequest.objects.get(model_version=v2)
    expect(page.locator("h1")).to_have_text(f"Promotion request #{promotion.pk} {v2} to production")
    expect(messages).to_have_text(f"Requested {v2} to production; an approver must now decide.")
    summary = page.locator("dl.summary")
    expect(summary.locator("dt:text-is('State') + dd")).to_have_text("Pending")
    expect(summary.locator("dt:text-is('Reason') + dd")).to_have_text(
        "rmse 10% lower; the 2012 drift is demand growth, not a fault"
    )
    expect(summary.locator("dd.acknowledged-alerts")).to_contain_text(f"alert #{alert.pk}")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    journey.shot(page, "request-made")
    assert promotion.acknowledged_alerts == [{"id": alert.pk, "title": alert.title, "state": "acknowledged"}]

    assert journey.taken == [
        "dashboard",
        "alerts",
        "alert",
        "drift-check",
        "alert-acknowledged",
        "alerts-acknowledged",
        "version",
        "request-refused",
        "request-made",
    ]


def test_the_approver_reads_the_context_of_a_request_and_approves_it(
    page,  # noqa: F811
    candidate,
    owner,
    approver,
    live_server,
    settings,
):
    from playwright.sync_api import expect

    settings.STEWARD_BASE_URL = live_server.url  # the links in the mail lead to this server
    alert, v1, v2 = candidate.alert, candidate.production, candidate.version
    # The owner acknowledged the alert and asked for production, as in her journey.
    do_acknowledge_alert(alert=alert, actor=owner)
    promotion = do_request_promotion(
        model_version=v2, reason="rmse 10% lower", actor=owner, acknowledge_alerts=True
    )
    url = f"{live_server.url}/promotions/{promotion.pk}/"

    # The approvers' mail: the beat task sends it once, to the approver only, with the link.
    before = len(mail.outbox)  # the alert's own mail to olivia went out when it opened
    assert notify_approvers() == 1
    (message,) = mail.outbox[before:]
    assert message.to == [approver.email]
    assert message.subject == f"[Steward] Promotion to decide: {v2} to production"
    assert f"olivia asks for {v2} to become production in team Mobility." in message.body
    assert (
        f"Unresolved critical alert #{alert.pk} (acknowledged by the requester): {alert.title}"
        in message.body
    )
    (link,) = [
        line.removeprefix("Decide at ") for line in message.body.splitlines() if line.startswith("Decide at ")
    ]
    assert link == url

    journey = Journey.start("approver")
    messages = page.locator("ul.messages")
    log_in(page, approver)
    waiting = page.locator("section.panel").filter(
        has=page.get_by_role("heading", name="Promotion requests waiting for your decision")
    )
    assert [row[:6] for row in table_rows(waiting.locator("table"))] == [
        [f"#{promotion.pk}", str(v2), "production", "Pending", "olivia", "—"]
    ]
    journey.shot(page, "dashboard")

    # The link in the mail opens the request.
    page.goto(link)
    expect(page.locator("h1")).to_have_text(f"Promotion request #{promotion.pk} {v2} to production")
    summary = page.locator("dl.summary")
    expect(summary.locator("dt:text-is('State') + dd")).to_have_text("Pending")
    expect(summary.locator("dt:text-is('production now') + dd")).to_have_text(str(v1))
    expect(summary.locator("dt:text-is('Requested') + dd")).to_contain_text("by olivia")
    expect(summary.locator("dt:text-is('Reason') + dd")).to_have_text("rmse 10% lower")
    acknowledged = summary.locator("dd.acknowledged-alerts")
    expect(acknowledged.locator(".badge")).to_have_text("Critical")
    expect(acknowledged).to_contain_text(
        f"the requester acknowledged alert #{alert.pk} ({alert.title}) when asking"
    )
    expect(acknowledged.get_by_role("link", name=f"alert #{alert.pk}")).to_have_attribute(
        "href", alert.get_absolute_url()
    )
    # The candidate beside production: metrics, training data, unresolved alerts.
    context = page.locator("section.panel").filter(
        has=page.get_by_role("heading", name="The candidate and production now")
    )
    expect(context.locator("table.compare thead th")).to_have_text(
        ["", f"candidate {v2}", f"production now: {v1}", ""]
    )
    rows = {row[0]: row[1:] for row in table_rows(context.locator("table.compare"))}
    assert rows["rmse"] == [format_number(v2.metrics["rmse"]), format_number(v1.metrics["rmse"]), "differs"]
    assert rows["mae"] == [format_number(v1.metrics["mae"])] * 2 + [""]
    training = v1.training_dataset_version
    assert rows["training data: dataset"] == ["bike-sharing-hourly", "bike-sharing-hourly", ""]
    assert rows["training data: sha256"] == [training.sha256, training.sha256, ""]
    assert rows["unresolved alerts"] == ["1", "0", ""]
    # Each one's newest drift check with its verdicts: v2's breached, v1 has none.
    assert rows["drift, newest check"] == [
        f"#{candidate.check.pk} Data drift: 2 of 12 columns Prediction drift not measured "
        "Performance not measured",
        "no check yet",
        "",
    ]
    # All of it within the page: the hashes wrap in their cells (the table was pushed 170 px past
    # the panel, with its "differs" badge out of sight) and the badge stays on one line.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    differs = context.locator("table.compare tr.differs .badge")
    expect(differs).to_have_text(["differs"])
    badge_height = differs.bounding_box()["height"]
    assert badge_height < 1.5 * acknowledged.locator(".badge").bounding_box()["height"]
    candidate_alerts = context.locator("table").filter(has=page.locator("th", has_text="Severity"))
    assert [row[:4] for row in table_rows(candidate_alerts)] == [
        [alert.title, "Critical", "Acknowledged", "olivia"]
    ]
    journey.shot(page, "request")

    # She approves with a reason; production moves to v2 at once.
    decision = page.locator("section.panel").filter(has=page.get_by_role("heading", name="Your decision"))
    decision.get_by_label("Reason").fill("drift explained by 2012 demand growth; alert stays with olivia")
    decision.get_by_role("button", name="Approve").click()
    expect(messages).to_have_text(f"Promotion request #{promotion.pk} approved; {v2} now holds production.")
    summary = page.locator("dl.summary")
    expect(summary.locator("dt:text-is('State') + dd")).to_have_text("Approved")
    expect(summary.locator("dt:text-is('production now') + dd")).to_have_text(str(v2))
    expect(summary.locator("dt:text-is('Approved') + dd")).to_contain_text("by aaron")
    expect(summary.locator("dt:text-is('Decision reason') + dd")).to_have_text(
        "drift explained by 2012 demand growth; alert stays with olivia"
    )
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    # The panel said "No version holds production yet" here, of the version that had just got it.
    expect(page.locator("section.panel h2 + p.muted").first).to_have_text(
        f"{v2} holds production now: nothing to compare with."
    )
    journey.shot(page, "approved")

    # The model's page: the alias moved, and who moved it.
    summary.get_by_role("link", name=str(v2)).first.click()
    page.locator("dl.summary").get_by_role("link", name=v2.model.name).click()
    expect(page.locator("h1")).to_have_text(f"Model {v2.model.name}")
    aliases = page.locator("section.panel").filter(has=page.get_by_role("heading", name="Aliases"))
    (production,) = table_rows(aliases.locator("table"))
    assert [production[0], production[1], production[3]] == ["production protected", "v2", "aaron"]
    journey.shot(page, "model")

    assert journey.taken == ["dashboard", "request", "approved", "model"]
