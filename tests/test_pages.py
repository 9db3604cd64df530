"""The server-rendered UI: every page for every persona, and what each page shows (forms: test_forms.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import AuditEvent
from lineage.openlineage.events import parse_event
from monitoring.actions.channels import do_create_channel
from monitoring.actions.checks import do_request_drift_check
from monitoring.actions.monitors import do_create_monitor
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.execute import execute_drift_check
from monitoring.models import Alert
from monitoring.reports import execute_drift_report
from runners.actions import do_submit_job
from runners.code_versions import do_create_code_project, do_register_code_version
from runners.models import Job, JobKind, OpenLineageDataset, OpenLineageRun
from runners.openlineage.actions import do_ingest_events
from runners.schedules import do_create_job_schedule
from tests.conftest import wrong_page_answers
from tests.runners.code_helpers import FILES, zip_of

IN_TEAM = ["admin", "owner", "scientist", "approver", "viewer", "compliance_officer"]
PERSONAS = [*IN_TEAM, "outsider"]


@pytest.fixture
def world(model_version, current_dataset_version, scientist, owner):
    """A trained version (with its job and lineage), a finished drift check with its report, its
    alert; a monitor of the version, a webhook channel and an escalation policy using it."""
    check = do_request_drift_check(
        model_version=model_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    assert execute_drift_check(check.pk) == "succeeded"
    assert execute_drift_report(check.pk) == "succeeded"  # its own task since issue 11
    check.refresh_from_db()
    team = model_version.model.team
    channel = do_create_channel(
        team=team, name="ops", kind="webhook", url="https://hooks.example/steward", actor=owner
    )
    policy = do_create_escalation_policy(
        team=team, name="on-call", levels=[{"users": [owner], "channels": [channel]}], actor=owner
    )
    monitor = do_create_monitor(
        model_version=model_version,
        name="hourly",
        escalation_policy=policy,
        schedule_minutes=60,
        actor=scientist,
    )
    job_schedule = do_create_job_schedule(
        name="weekly",
        kind="train",
        dataset=model_version.training_dataset_version.dataset,
        registered_model=model_version.model,
        spec=model_version.training_spec,
        cron="0 2 * * 1",
        actor=scientist,
    )
    code_project = do_create_code_project(team=team, name="trainer", actor=scientist)
    # An external OpenLineage run (issue 10): its job, run and output dataset have pages.
    ol_event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-01T08:00:00Z",
        "run": {"runId": "0193f3a0-0000-7000-8000-000000000001"},
        "job": {"namespace": "airflow", "name": "daily"},
        "outputs": [{"namespace": "s3://lake", "name": "daily.parquet"}],
    }
    do_ingest_events([(parse_event(ol_event), ol_event)], team=team, actor=scientist)
    return {
        "ol_run": OpenLineageRun.objects.select_related("job").get(),
        "ol_dataset": OpenLineageDataset.objects.get(),
        "code_project": code_project,
        "code_version": do_register_code_version(code_project, archive=zip_of(FILES), actor=scientist),
        "monitor": monitor,
        "job_schedule": job_schedule,
        "channel": channel,
        "policy": policy,
        "dataset_version": model_version.training_dataset_version,
        "model_version": model_version,
        "job": Job.objects.get(pk=model_version.source_job_id),
        "check": check,
        "alert": Alert.objects.get(drift_check=check),
        "event": AuditEvent.objects.get(
            action="dataset_version.register", object_id=str(current_dataset_version.pk)
        ),
    }


def _pages(world) -> list[tuple[str, bool]]:
    """(url, is about one of the team's objects) for every page of the UI."""
    dataset_version, model_version = world["dataset_version"], world["model_version"]
    job, check, alert = world["job"], world["check"], world["alert"]
    lists = ["dashboard", "dataset_list", "model_list", "job_list", "usage", "drift_check_list", "alert_list"]
    lists += ["job_schedule_list", "lineage_explorer"]
    objects = [
        ("dataset_detail", dataset_version.dataset_id),
        ("dataset_version_detail", dataset_version.pk),
        ("model_detail", model_version.model_id),
        ("model_archive", model_version.model_id),
        ("model_delete", model_version.model_id),
        ("model_version_detail", model_version.pk),
        ("model_version_infer", model_version.pk),
        ("model_version_evaluate", model_version.pk),
        ("model_serving", model_version.model_id),
        ("prediction_token_create", model_version.model_id),
        ("drift_check_request", model_version.pk),
        ("job_detail", job.pk),
        ("job_progress", job.pk),
        ("job_cancel", job.pk),
        ("job_release", job.pk),
        ("drift_check_detail", check.pk),
        ("drift_check_report", check.pk),
        ("alert_detail", alert.pk),
        ("alert_acknowledge", alert.pk),
        ("alert_resolve", alert.pk),
        ("audit_event_detail", world["event"].pk),
        ("user_detail", model_version.model.owner_id),
        ("alert_snooze", alert.pk),
        ("monitor_create", model_version.pk),
        *[(name, world["monitor"].pk) for name in MONITOR_PAGES],
        *[(name, world["channel"].pk) for name in CHANNEL_PAGES],
        ("escalation_policy_detail", world["policy"].pk),
        ("escalation_policy_edit", world["policy"].pk),
        *[(name, world["job_schedule"].pk) for name in JOB_SCHEDULE_PAGES],
    ]
    lists += ["channel_list", "escalation_policy_list", "escalation_policy_create", "code_project_list"]
    code_version = world["code_version"]
    objects += [("code_project_detail", world["code_project"].pk), ("code_version_detail", code_version.pk)]
    lists.append("openlineage_list")
    objects += [
        ("openlineage_run_detail", world["ol_run"].pk),
        ("openlineage_job_detail", world["ol_run"].job_id),
        ("openlineage_dataset_detail", world["ol_dataset"].pk),
    ]
    code_pages = [
        reverse("code_version_file", args=[code_version.pk, "lib/features.py"]),
        f"{reverse('code_version_compare')}?a={code_version.pk}&b={code_version.pk}",
    ]
    return (
        [(reverse(name), False) for name in [*lists, "audit_event_list"]]
        + [(reverse(name, args=[pk]), True) for name, pk in objects]
        + [(url, True) for url in code_pages]
        + [(url, True) for url in _lineage_pages(dataset_version)]
    )


def _lineage_pages(dataset_version) -> list[str]:
    """The explorer, the graph fragment, the impact page and its exports, about the data."""
    query = f"?node=dataset_version:{dataset_version.pk}"
    names = [
        "lineage_explorer",
        "lineage_graph",
        "lineage_impact",
        "lineage_impact_csv",
        "lineage_impact_json",
    ]
    return [reverse(name) + query for name in names]


MONITOR_PAGES = [
    "monitor_detail",
    "monitor_edit",
    "monitor_run",
    "monitor_pause",
    "monitor_resume",
    "monitor_delete",
]
JOB_SCHEDULE_PAGES = [
    "job_schedule_detail",
    "job_schedule_pause",
    "job_schedule_resume",
    "job_schedule_delete",
]
CHANNEL_PAGES = ["channel_detail", "channel_enable", "channel_disable", "channel_rotate_secret"]


def test_every_page_for_every_persona(client, request, world):
    pages = _pages(world)
    # 55 + the OpenLineage list, job, run and dataset pages and the lineage explorer, its node
    # fragment, the impact page and its exports (issue 10); a user's page (issue 14).
    # The evaluate form of a model version (issue 15).
    assert len(pages) == 67

    def expected(persona: str, is_team_object: bool) -> int:
        return 404 if is_team_object and persona == "outsider" else 200

    assert wrong_page_answers(client, request, pages, PERSONAS, expected) == []


def test_login_page_logs_in_and_logout_is_a_post(client, owner):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(
        reverse("login"), {"username": "olivia", "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    page = client.get("/").content.decode()
    assert 'action="/logout/"' in page
    assert client.get(reverse("login")).status_code == 302  # already logged in
    assert client.post(reverse("logout")).status_code == 302
    assert client.get("/").status_code == 302


def test_base_layout_has_nav_vendored_htmx_and_the_user(client, owner):
    client.force_login(owner)
    page = client.get("/").content.decode()
    for label, url in [
        ("Datasets", "/datasets/"),
        ("Models", "/models/"),
        ("Jobs", "/jobs/"),
        ("Code", "/code/"),
        ("Usage", "/usage/"),
        ("Drift checks", "/drift-checks/"),
        ("Alerts", "/alerts/"),
        ("Escalation", "/escalation-policies/"),
        ("Audit trail", "/audit/"),
        ("API docs", "/api/docs/"),
    ]:
        assert f'<a href="{url}"' in page
        assert f">{label}</a>" in page
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in page
    assert "https://" not in page  # no CDN: the UI works offline
    assert '<span class="username">olivia</span>' in page
    assert client.get("/static/steward/steward.css").status_code == 200


# Content of the pages -------------------------------------------------------------------------


def test_model_version_page_shows_metrics_signature_provenance_and_lineage(client, world, viewer):
    model_version, job = world["model_version"], world["job"]
    client.force_login(viewer)
    page = client.get(model_version.get_absolute_url()).content.decode()
    assert f'<th>rmse</th><td class="number">{model_version.metrics["rmse"]:.4f}</td>' in page
    assert "<code>windspeed</code>" in page
    assert f'<a href="/jobs/{job.pk}/">Training job #{job.pk}</a>' in page
    assert f'<a href="/dataset-versions/{world["dataset_version"].pk}/">bike-sharing-hourly v1</a>' in page
    assert f'<a href="/drift-checks/{world["check"].pk}/">#{world["check"].pk}</a>' in page
    assert world["alert"].title in page
    # A viewer may look but not change: no drift check or inference form.
    assert "Run a drift check" not in page
    assert "Run inference" not in page


def test_model_version_page_offers_both_forms_to_a_data_scientist(client, world, scientist):
    client.force_login(scientist)
    page = client.get(world["model_version"].get_absolute_url()).content.decode()
    assert f'action="/model-versions/{world["model_version"].pk}/drift-check/"' in page
    assert f'action="/model-versions/{world["model_version"].pk}/infer/"' in page


def test_drift_check_page_highlights_drifted_columns_and_frames_the_report(client, world, approver):
    check = world["check"]
    drifted = [result["column"] for result in check.results if result["is_drifted"]]
    assert drifted  # the 2012 rows drift from 2011 (demand grew)
    client.force_login(approver)
    page = client.get(check.get_absolute_url()).content.decode()
    assert page.count('<tr class="drifted">') == len(drifted)
    for column in drifted:
        assert f'<tr class="drifted">\n                <td><code>{column}</code></td>' in page
    assert f"{check.drifted_count} of {len(check.results)}</strong> columns drifted" in page
    assert f'<iframe class="report" sandbox="allow-scripts" src="/drift-checks/{check.pk}/report/"' in page
    assert 'hx-trigger="every 2s"' not in page  # finished: no polling

    report = client.get(reverse("drift_check_report", args=[check.pk]))
    assert report.status_code == 200
    assert report["Content-Type"] == "text/html; charset=utf-8"
    assert report["X-Frame-Options"] == "SAMEORIGIN"
    # Sandboxed (an opaque origin) and no network (issue 13).
    assert report["Content-Security-Policy"].startswith("sandbox allow-scripts; default-src 'none'; ")
    assert b"<html" in b"".join(report.streaming_content)


def test_dataset_version_page_shows_schema_hash_download_and_lineage(client, world, compliance_officer):
    version, job = world["dataset_version"], world["job"]
    client.force_login(compliance_officer)
    page = client.get(version.get_absolute_url()).content.decode()
    assert f"<code>{version.sha256}</code>" in page
    assert "17,379" in page
    assert "<td><code>cnt</code></td><td>int64</td>" in page
    assert f'href="/api/dataset-versions/{version.pk}/download/"' in page
    assert f'<span class="kind">job</span> <a href="/jobs/{job.pk}/">Training job #{job.pk}</a>' in page
    assert f'<a href="{world["model_version"].get_absolute_url()}">bike-demand v1</a>' in page


def test_job_page_shows_finished_history_and_stops_polling(client, world, scientist):
    job = world["job"]
    client.force_login(scientist)
    page = client.get(job.get_absolute_url()).content.decode()
    assert '<th class="number">train_loss</th>' in page
    assert '<th class="number">val_rmse</th>' in page
    assert page.count('<tr><td class="number">') == 3  # one history row per epoch
    assert 'hx-trigger="every 2s"' not in page
    assert "Cancel job" not in page
    assert "epoch 3/3" in page  # the log tail
    assert f'<a href="{world["model_version"].get_absolute_url()}">bike-demand v1</a>' in page


def test_running_job_fragment_polls_every_two_seconds(client, dataset_version, registered_model, scientist):
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec={"target": "cnt", "features": ["temp"], "epochs": 2},
        actor=scientist,
    )
    client.force_login(scientist)
    fragment = client.get(reverse("job_progress", args=[job.pk]), headers={"HX-Request": "true"})
    html = fragment.content.decode()
    assert fragment.status_code == 200
    assert html.lstrip().startswith("<section")
    assert f'hx-get="/jobs/{job.pk}/progress/" hx-trigger="every 2s" hx-swap="outerHTML"' in html
    assert "Cancel job" in html


def test_dashboard_opens_on_the_owners_open_alerts(client, drifted_check, owner, viewer):
    alert = Alert.objects.get(drift_check=drifted_check)
    client.force_login(owner)
    page = client.get("/").content.decode()
    mine = page.index("Unresolved alerts on your models")
    assert page.index(alert.title) > mine
    assert page.index(alert.title) < page.index("Recent jobs")
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert "Unresolved alerts on your models" not in page  # a viewer owns no models
    assert "Other unresolved alerts in your teams" in page
    assert alert.title in page


def test_dashboard_shows_the_admin_who_has_which_role(client, admin, owner, viewer):
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert "Who has which role" in page
    assert "Unresolved alerts on your models" not in page  # an admin without a team owns no models
    assert "<tr><td>olivia</td><td>Mobility</td><td>Model owner</td></tr>" in page
    assert "<tr><td>vera</td><td>Mobility</td><td>Viewer</td></tr>" in page
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert "Who has which role" not in page
    assert "No unresolved alerts on models you own." in page


def test_dashboard_shows_the_compliance_officer_the_latest_audit_events(
    client, dataset_version, compliance_officer
):
    client.force_login(compliance_officer)
    page = client.get("/").content.decode()
    assert "Latest audit events" in page
    assert "Unresolved alerts on your models" not in page
    assert page.index("<code>dataset_version.register</code>") < page.index("<code>dataset.create</code>")


def test_lists_never_show_another_teams_objects(client, drifted_check, outsider):
    client.force_login(outsider)
    for name in [
        "dataset_list",
        "model_list",
        "job_list",
        "usage",
        "drift_check_list",
        "alert_list",
        "audit_event_list",
    ]:
        page = client.get(reverse(name) + "?state=").content.decode()
        assert "bike-sharing" not in page, name
        assert "bike-demand" not in page, name
        # Nor in the filters' choices.
        assert "Mobility" not in page, name


def test_alert_list_opens_on_open_alerts(client, drifted_check, owner):
    alert = Alert.objects.get(drift_check=drifted_check)
    client.force_login(owner)
    assert alert.title in client.get(reverse("alert_list")).content.decode()
    client.post(reverse("alert_resolve", args=[alert.pk]))
    assert alert.title not in client.get(reverse("alert_list")).content.decode()
    assert alert.title in client.get(reverse("alert_list") + "?state=").content.decode()
    assert alert.title in client.get(reverse("alert_list") + "?state=resolved").content.decode()


# The audit trail ------------------------------------------------------------------------------


def test_audit_trail_filters_and_answers_htmx_with_the_table_only(
    client, dataset_version, compliance_officer
):
    client.force_login(compliance_officer)
    page = client.get(reverse("audit_event_list")).content.decode()
    assert "<code>dataset_version.register</code>" in page
    assert "<code>membership.grant</code>" in page
    assert 'hx-trigger="input delay:400ms, submit"' in page

    fragment = client.get(
        reverse("audit_event_list"), {"action": "dataset_version."}, headers={"HX-Request": "true"}
    ).content.decode()
    assert fragment.lstrip().startswith('<div id="audit-table">')
    assert "<html" not in fragment
    assert fragment.count("<code>dataset_version.register</code>") == 1
    assert "membership.grant" not in fragment

    by_actor = client.get(reverse("audit_event_list"), {"actor": "dana", "q": "hourly"}).content.decode()
    assert by_actor.count("<td>dana</td>") == 2  # created the dataset, registered its version


def test_audit_trail_is_paginated_newest_first(client, admin, team, compliance_officer):
    from governance.actions.datasets import do_create_dataset
    from governance.keyset import cursor_of

    for number in range(55):
        do_create_dataset(team=team, name=f"dataset-{number:02}", actor=admin)
    client.force_login(compliance_officer)
    first = client.get(reverse("audit_event_list"), {"action": "dataset."}).content.decode()
    assert first.count("<code>dataset.create</code>") == 50
    assert first.index("dataset-54") < first.index("dataset-53")
    oldest_shown = AuditEvent.objects.filter(action="dataset.create").order_by("-timestamp", "-id")[49]
    assert f'href="?action=dataset.&amp;before={cursor_of(oldest_shown)}"' in first
    assert "Newer" not in first
    second = client.get(
        reverse("audit_event_list"), {"action": "dataset.", "before": cursor_of(oldest_shown)}
    ).content.decode()
    assert second.count("<code>dataset.create</code>") == 5
    assert "dataset-00" in second
    assert "dataset-05" not in second
    assert "Older" not in second


def test_audit_trail_costs_the_same_queries_for_any_number_of_rows(
    client, admin, team, compliance_officer, django_assert_num_queries
):
    from governance.actions.datasets import do_create_dataset

    for number in range(60):
        do_create_dataset(team=team, name=f"dataset-{number:02}", actor=admin)
    client.force_login(compliance_officer)
    # Session, user, platform roles (compliance officers see every team: no membership query),
    # the page's rows with their team (keyset: no COUNT), the teams for the team filter, the
    # object types for the type chooser (one DISTINCT over an index).
    with django_assert_num_queries(6):
        response = client.get(reverse("audit_event_list"))
    assert response.content.decode().count("<code>dataset.create</code>") == 50
    older = response.context["page"].older
    with django_assert_num_queries(6):
        response = client.get(reverse("audit_event_list"), {"before": older})
    assert response.content.decode().count("<code>dataset.create</code>") == 10


def test_audit_event_page_shows_one_table_of_changes_and_folds_the_unchanged_values(
    client, dataset_version, registered_model, scientist
):
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec={"target": "cnt", "features": ["temp"]},
        actor=scientist,
    )
    client.force_login(scientist)
    cancelled = client.post(reverse("job_cancel", args=[job.pk]))
    event = AuditEvent.objects.get(action="job.cancel")
    page = client.get(event.get_absolute_url()).content.decode()
    assert (
        '<tr class="diff-changed"><td><code>state</code></td><td>changed</td>'
        "<td><code>&quot;queued&quot;</code></td><td><code>&quot;cancelled&quot;</code></td></tr>"
    ) in page
    assert f"<code>{cancelled['X-Request-ID']}</code>" in page
    assert f'<a href="/jobs/{job.pk}/">Training job #{job.pk}</a>' in page
    assert f'<dt>Actor</dt><dd><a href="/people/users/{scientist.pk}/">dana</a></dd>' in page
    # One diff view (issue 14): no raw JSON dump repeating the table; what did not change is
    # still there, folded.
    assert '<pre class="json">' not in page
    unchanged = sorted(key for key in event.after if event.before.get(key) == event.after[key])
    assert f"<summary>Unchanged values ({len(unchanged)})</summary>" in page
    folded = page.split("<summary>Unchanged values")[1].split("</details>")[0]
    assert [row.split("</code>")[0] for row in folded.split("<tr><td><code>")[1:]] == unchanged
