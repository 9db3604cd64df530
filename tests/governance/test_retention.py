"""Retention and tiering (issue 12): a team's retention policy through the API, legal holds, the
daily lifecycle (``actions.retention.apply_retention``, called with a ``now`` in the future), the
cold tier with its transparent restore, the version page and ``/metrics``. Managed mode with
encryption at rest on, on the real filesystem backends (hot and cold under the test's tmp_path).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.retention import apply_retention
from governance.artifacts import store_bytes
from governance.models import AuditEvent, DatasetVersion, RetentionPolicy, StoredObject
from governance.storage.envelope import MAGIC, Keyring
from governance.storage.store import COLD_SUFFIX
from monitoring.actions.checks import record_drift_report
from monitoring.models import DriftCheck, ReportState
from tests.conftest import BIKE_HOURLY, _real_data

BIKE_DAILY = _real_data("bike-sharing/day.csv")
TOKEN = "scrape-0123456789"


@pytest.fixture(autouse=True)
def keys(settings):
    """Managed mode: encryption at rest on, with one key-encryption key ``k1``."""
    settings.STEWARD_ARTIFACT_KEYS = Keyring.new_entry("k1")
    settings.STEWARD_METRICS_TOKEN = TOKEN


def _register(
    dataset, actor, path: Path, source=DatasetVersion.Source.PATH, on_behalf_of=None
) -> DatasetVersion:
    return do_register_dataset_version(
        dataset=dataset,
        file_path=path,
        filename=path.name,
        source=source,
        actor=actor,
        on_behalf_of=on_behalf_of,
    )


def _policy_url(team) -> str:
    return f"/api/teams/{team.pk}/retention-policy/"


def _set_policy(client, team, rules, audit_events_days=None):
    return client.put(
        _policy_url(team), {"rules": rules, "audit_events_days": audit_events_days}, format="json"
    )


def _hot(settings, version) -> Path:
    return Path(settings.ARTIFACT_ROOT) / version.file


def _cold(settings, version) -> Path:
    return Path(settings.STEWARD_ARTIFACT_COLD_URL.removeprefix("file://")) / (version.file + COLD_SUFFIX)


def _forget_copies(settings) -> None:
    """Drop this machine's decrypted copies, as a fresh worker would start."""
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)


def _download(client, version):
    return client.get(f"/api/dataset-versions/{version.pk}/download/")


def test_the_policy_refuses_audit_events_under_six_months_and_only_managers_set_it(
    client_for, team, owner, scientist, outsider
):
    assert client_for(scientist).get(_policy_url(team)).json() == {"audit_events_days": None, "rules": {}}
    rules = {"datasets": {"cold_after_days": 30, "delete_after_days": 365}}

    short = _set_policy(client_for(owner), team, rules, audit_events_days=182)
    assert short.status_code == 400
    assert "183 days" in short.json()["audit_events_days"][0]
    unknown = _set_policy(client_for(owner), team, {"models": {"delete_after_days": 30}}, 365)
    assert unknown.status_code == 400
    assert "unknown kind 'models'" in unknown.json()["rules"][0]
    zero = _set_policy(client_for(owner), team, {"datasets": {"cold_after_days": 0}}, 365)
    assert zero.status_code == 400
    assert "datasets.cold_after_days" in zero.json()["rules"][0]
    assert _set_policy(client_for(scientist), team, rules, 365).status_code == 403
    assert client_for(outsider).get(_policy_url(team)).status_code == 404
    assert not RetentionPolicy.objects.exists()
    assert not AuditEvent.objects.filter(action="retention_policy.set").exists()

    done = _set_policy(client_for(owner), team, rules, audit_events_days=183)
    assert done.status_code == 200
    assert done.json() == {"audit_events_days": 183, "rules": rules}
    assert client_for(scientist).get(_policy_url(team)).json() == done.json()
    event = AuditEvent.objects.get(action="retention_policy.set")
    assert (event.actor_id, event.team_id, event.before) == (owner.pk, team.pk, None)
    assert event.after["rules"] == rules
    assert event.after["audit_events_days"] == 183
    # The same policy again changes nothing and records nothing.
    assert _set_policy(client_for(owner), team, rules, 183).status_code == 200
    assert AuditEvent.objects.filter(action="retention_policy.set").count() == 1


def test_an_unused_version_moves_to_cold_and_a_download_restores_the_same_bytes(
    settings, client_for, client, team, dataset, owner, scientist, django_capture_on_commit_callbacks
):
    version = _register(dataset, scientist, BIKE_HOURLY)
    assert _set_policy(client_for(owner), team, {"datasets": {"cold_after_days": 30}}).status_code == 200
    sealed = _hot(settings, version).read_bytes()
    now = timezone.now()

    # Not yet unused for 30 days: nothing moves.
    assert apply_retention(now + timedelta(days=29))["moved_to_cold"] == 0
    with django_capture_on_commit_callbacks(execute=True):  # the hot object goes once the move commits
        counts = apply_retention(now + timedelta(days=31))

    assert counts == {"deleted": 0, "moved_to_cold": 1, "held": 0, "skipped": 0, "swept": 0}
    record = StoredObject.objects.get(key=version.file)
    assert record.tier == "cold"
    assert not _hot(settings, version).exists()
    # The cold copy is the ciphertext, compressed: encryption stays intact in the cold tier.
    assert gzip.decompress(_cold(settings, version).read_bytes()) == sealed
    assert sealed.startswith(MAGIC)
    assert record.cold_size_bytes == _cold(settings, version).stat().st_size
    moved = AuditEvent.objects.get(action="artifact.move_to_cold")
    assert (moved.actor_id, moved.team_id, moved.object_repr) == (None, team.pk, version.file)
    assert (moved.after["kind"], moved.after["cold_after_days"]) == ("datasets", 30)
    run = AuditEvent.objects.filter(action="retention.apply").latest("pk")
    assert (run.after["moved_to_cold"], run.after["deleted"]) == (1, 0)

    client.force_login(scientist)
    page = client.get(f"/dataset-versions/{version.pk}/").content.decode()
    assert "<strong>cold</strong>: compressed to" in page
    assert "the next read restores it first" in page
    assert "never (no retention period for it)" in page

    _forget_copies(settings)
    with django_capture_on_commit_callbacks(execute=True):
        response = _download(client_for(scientist), version)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == BIKE_HOURLY.read_bytes()
    record.refresh_from_db()
    assert (record.tier, record.cold_size_bytes) == ("hot", None)
    assert record.last_restore_ms is not None
    assert record.last_read_at is not None
    assert _hot(settings, version).read_bytes() == sealed
    assert not _cold(settings, version).exists()
    restored = AuditEvent.objects.get(action="artifact.restore")
    assert restored.after["restore_ms"] == record.last_restore_ms
    assert "restored from the cold tier" in client.get(f"/dataset-versions/{version.pk}/").content.decode()
    # Read just now: ten days on it is not unused, and nothing moves again.
    assert apply_retention(now + timedelta(days=10))["moved_to_cold"] == 0


def test_legal_hold_prevents_deletion_and_the_policy_deletes_the_rest_by_kind(
    settings, client_for, client, team, dataset, owner, scientist, tmp_path
):
    held = _register(dataset, scientist, BIKE_HOURLY)
    expiring = _register(dataset, scientist, BIKE_DAILY)
    predictions_file = tmp_path / "predictions.csv"
    predictions_file.write_text("".join(BIKE_DAILY.read_text().splitlines(keepends=True)[:50]))
    predictions = _register(
        do_create_dataset(team=team, name="bike-predictions", actor=scientist),
        None,
        predictions_file,
        source=DatasetVersion.Source.JOB,
        on_behalf_of=scientist,
    )
    rules = {"datasets": {"delete_after_days": 90}, "predictions": {"cold_after_days": 7}}
    assert _set_policy(client_for(owner), team, rules, 400).status_code == 200
    hold_url = f"/api/dataset-versions/{held.pk}/legal-hold/"
    record = client_for(scientist).get(f"/api/teams/{team.pk}/records-of-processing/").json()
    assert {activity["retention"] for activity in record["activities"]} == {
        "datasets: deleted 90 days after registration, unless under legal hold; audit events kept 400 days"
    }

    assert client_for(scientist).post(hold_url, {"reason": "x"}, format="json").status_code == 403
    assert client_for(owner).post(hold_url, {"reason": " "}, format="json").status_code == 400
    assert DatasetVersion.objects.get(pk=held.pk).legal_hold_at is None
    hold = client_for(owner).post(hold_url, {"reason": "litigation 2026-17"}, format="json")
    assert hold.status_code == 200
    assert hold.json()["legal_hold_reason"] == "litigation 2026-17"
    again = client_for(owner).post(hold_url, {"reason": "twice"}, format="json")
    assert again.status_code == 400
    assert "already under legal hold" in again.json()["detail"][0]
    event = AuditEvent.objects.get(action="dataset_version.legal_hold")
    assert (event.actor_id, event.object_id, event.after["legal_hold_reason"]) == (
        owner.pk,
        str(held.pk),
        "litigation 2026-17",
    )
    client.force_login(scientist)
    expiry = (expiring.created_at + timedelta(days=90)).strftime("%Y-%m-%d")
    assert (
        f"{expiry} (its team's retention policy deletes it then)"
        in client.get(f"/dataset-versions/{expiring.pk}/").content.decode()
    )
    assert (
        "never while under <strong>legal hold</strong>"
        in client.get(f"/dataset-versions/{held.pk}/").content.decode()
    )

    counts = apply_retention(timezone.now() + timedelta(days=91))

    assert counts == {"deleted": 1, "moved_to_cold": 1, "held": 1, "skipped": 0, "swept": 0}
    expiring.refresh_from_db()
    assert expiring.erased_at is not None
    assert expiring.erased_by is None
    assert expiring.erasure_reason == "retention policy: datasets are deleted 90 days after registration"
    assert StoredObject.objects.get(key=expiring.file).wrapped_key is None
    erased = AuditEvent.objects.get(action="dataset_version.erase")
    assert (erased.actor_id, erased.object_id) == (None, str(expiring.pk))
    assert _download(client_for(scientist), expiring).status_code == 410
    _forget_copies(settings)
    kept = _download(client_for(scientist), held)
    assert kept.status_code == 200
    assert b"".join(kept.streaming_content) == BIKE_HOURLY.read_bytes()
    # Predictions have no deletion period, only a cold one: moved, not erased.
    predictions.refresh_from_db()
    assert predictions.erased_at is None
    assert StoredObject.objects.get(key=predictions.file).tier == "cold"

    cleared = client_for(owner).delete(hold_url)
    assert cleared.status_code == 200
    assert cleared.json()["legal_hold_at"] is None
    assert AuditEvent.objects.get(action="dataset_version.legal_hold_clear").before["legal_hold_reason"] == (
        "litigation 2026-17"
    )
    assert apply_retention(timezone.now() + timedelta(days=91))["deleted"] == 1
    assert DatasetVersion.objects.get(pk=held.pk).erased_at is not None


def _metric(text: str, name: str, team: str, tier: str) -> float | None:
    prefix = f'{name}{{team="{team}",tier="{tier}"}} '
    line = next((row for row in text.splitlines() if row.startswith(prefix)), None)
    return None if line is None else float(line.removeprefix(prefix))


def test_metrics_show_storage_per_team_and_tier(
    settings, client_for, team, other_team, dataset, owner, scientist, outsider
):
    hourly = _register(dataset, scientist, BIKE_HOURLY)
    daily = _register(dataset, scientist, BIKE_DAILY)
    fraud = do_create_dataset(team=other_team, name="daily", actor=outsider)
    theirs = _register(fraud, outsider, BIKE_DAILY)  # the same bytes as Mobility's, an object of Fraud's
    _set_policy(client_for(owner), team, {"datasets": {"cold_after_days": 30}})
    StoredObject.objects.filter(key=hourly.file).update(last_read_at=timezone.now())
    apply_retention(timezone.now() + timedelta(days=31))  # both of Mobility's move: unused for 30 days
    _download(client_for(scientist), hourly)  # restores hourly

    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()

    cold_daily = StoredObject.objects.get(key=daily.file)
    assert cold_daily.tier == "cold"
    assert _metric(text, "steward_artifact_team_objects", "Mobility", "hot") == 1
    assert _metric(text, "steward_artifact_team_bytes", "Mobility", "hot") == BIKE_HOURLY.stat().st_size
    assert _metric(text, "steward_artifact_team_objects", "Mobility", "cold") == 1
    assert _metric(text, "steward_artifact_team_bytes", "Mobility", "cold") == cold_daily.cold_size_bytes
    # Fraud has no policy: its copy (dataset bytes are per team) stays hot.
    assert theirs.file != daily.file
    assert _metric(text, "steward_artifact_team_objects", "Fraud", "hot") == 1
    assert _metric(text, "steward_artifact_team_bytes", "Fraud", "hot") == BIKE_DAILY.stat().st_size
    assert _metric(text, "steward_artifact_team_objects", "Fraud", "cold") is None


def test_drift_reports_follow_the_reports_rule(
    settings, client_for, client, team, owner, scientist, drifted_check, django_capture_on_commit_callbacks
):
    html = b"<html><head><title>drift</title></head><body>hum and cnt drifted</body></html>"
    # As when its monitor asks for a report: the worker claims it, stores the HTML, records it.
    DriftCheck.objects.filter(pk=drifted_check.pk).update(report_state=ReportState.QUEUED)
    key = store_bytes(html, hashlib.sha256(html).hexdigest(), "reports", ".html")
    assert record_drift_report(drifted_check.pk, report=key)
    rules = {"reports": {"cold_after_days": 10, "delete_after_days": 60}}
    assert _set_policy(client_for(owner), team, rules).status_code == 200
    now = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        assert apply_retention(now + timedelta(days=11))["moved_to_cold"] == 1
    assert StoredObject.objects.get(key=key).tier == "cold"
    client.force_login(scientist)
    _forget_copies(settings)
    page = client.get(f"/drift-checks/{drifted_check.pk}/report/")
    assert page.status_code == 200
    assert b"hum and cnt drifted" in b"".join(page.streaming_content)
    assert StoredObject.objects.get(key=key).tier == "hot"

    with django_capture_on_commit_callbacks(execute=True):
        counts = apply_retention(now + timedelta(days=61))

    assert counts == {"deleted": 1, "moved_to_cold": 0, "held": 0, "skipped": 0, "swept": 0}
    drifted_check.refresh_from_db()
    assert drifted_check.report == ""
    assert (
        drifted_check.report_error
        == "deleted: retention policy: reports are deleted 60 days after registration"
    )
    assert drifted_check.results  # the verdict stays
    assert StoredObject.objects.get(key=key).shredded_at is not None
    event = AuditEvent.objects.get(action="drift_report.delete")
    assert (event.actor_id, event.object_id, event.before) == (None, str(drifted_check.pk), {"report": key})
    assert client.get(f"/drift-checks/{drifted_check.pk}/report/").status_code == 404


def test_a_damaged_cold_copy_is_refused_naming_the_artifact_and_audited(
    settings, client_for, team, dataset, owner, scientist, django_capture_on_commit_callbacks
):
    version = _register(dataset, scientist, BIKE_HOURLY)
    _set_policy(client_for(owner), team, {"datasets": {"cold_after_days": 1}})
    with django_capture_on_commit_callbacks(execute=True):
        apply_retention(timezone.now() + timedelta(days=2))
    cold = _cold(settings, version)
    cold.write_bytes(cold.read_bytes()[: cold.stat().st_size // 2])  # truncated in the cold store
    _forget_copies(settings)

    response = _download(client_for(scientist), version)

    assert response.status_code == 409
    assert version.file in response.json()["detail"]
    assert "cold copy does not decompress" in response.json()["detail"]
    record = StoredObject.objects.get(key=version.file)
    assert (record.tier, record.integrity_failures) == ("cold", 1)
    assert not _hot(settings, version).exists()
    assert (
        AuditEvent.objects.filter(action="artifact.integrity_failure", object_repr=version.file).count() == 1
    )
    assert not AuditEvent.objects.filter(action="artifact.restore").exists()


def test_direct_mode_deletes_by_policy_and_tiers_nothing(
    settings, client_for, team, dataset, owner, scientist, django_capture_on_commit_callbacks
):
    settings.STEWARD_ARTIFACT_KEYS = ""  # direct mode: plain files, no records
    version = _register(dataset, scientist, BIKE_HOURLY)
    rules = {"datasets": {"cold_after_days": 1, "delete_after_days": 30}}
    assert _set_policy(client_for(owner), team, rules).status_code == 200

    assert apply_retention(timezone.now() + timedelta(days=2)) == {
        "deleted": 0,
        "moved_to_cold": 0,
        "held": 0,
        "skipped": 0,
        "swept": 0,
    }
    assert _hot(settings, version).read_bytes() == BIKE_HOURLY.read_bytes()
    with django_capture_on_commit_callbacks(execute=True):  # the file goes once the erasure commits
        assert apply_retention(timezone.now() + timedelta(days=31))["deleted"] == 1
    assert not _hot(settings, version).exists()
    assert DatasetVersion.objects.get(pk=version.pk).erased_at is not None


def test_the_daily_run_sweeps_what_killed_writers_left_and_nothing_else(settings, dataset, scientist):
    version = _register(dataset, scientist, BIKE_HOURLY)
    stored = Path(settings.ARTIFACT_ROOT) / version.file
    cache = Path(settings.STEWARD_ARTIFACT_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    two_days_ago = (timezone.now() - timedelta(days=2)).timestamp()
    partial_upload = stored.parent / ".incoming-abc123"
    half_encrypted = cache / ".scratch-def456"
    gathered = cache / ".gathered-789" / "model"
    fresh = cache / ".incoming-being-written"
    for leftover in (partial_upload, half_encrypted, gathered / "MLmodel", fresh):
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"plaintext of a killed write")
    for old in (partial_upload, half_encrypted, gathered / "MLmodel", gathered, gathered.parent):
        os.utime(old, (two_days_ago, two_days_ago))

    counts = apply_retention()

    assert counts["swept"] == 3
    assert not partial_upload.exists()
    assert not half_encrypted.exists()
    assert not gathered.parent.exists()
    assert fresh.exists()  # a write still under way is left alone
    assert stored.exists()
    event = AuditEvent.objects.filter(action="retention.apply").latest("pk")
    assert event.after["swept"] == 3
