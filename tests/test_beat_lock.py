"""Issue 13: two beat processes never both send. Real ``celery beat`` processes on the test
database and broker (PostgreSQL's advisory lock, or SQLite's lock file): the second stands by while
the first sends, and takes over when the first is killed.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

import config.celery
from tests.runners.test_durable_worker import _database_url

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SENT = "Sending due task"


def _beat(tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{name}.log"
    env = os.environ | {
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": config.celery.app.conf.broker_url,
        "STEWARD_VAR_DIR": str(settings.VAR_DIR),
        # The sequencer's entry every second: a sending beat shows within a second or two.
        "STEWARD_AUDIT_SEQUENCE_INTERVAL_S": "1",
    }
    process = subprocess.Popen(  # noqa: S603 - our interpreter running celery beat
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config.celery",
            "beat",
            "--loglevel",
            "INFO",
            "--pidfile",
            str(tmp_path / f"{name}.pid"),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=settings.BASE_DIR,
    )
    return process, log


def _wait_for(log: Path, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, (
            f"{text!r} not in {log.name} within {timeout_s} s:\n{log.read_text()}"
        )
        time.sleep(0.2)


def test_a_second_beat_stands_by_and_takes_over_when_the_first_dies(tmp_path):
    # Due a few seconds in, after the first beat's first sends, then every minute: the first beat
    # sends it; both beats read it at their start, before that send.
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="probe-resend",
        task="governance.tasks.sequence_audit_events",
        interval=every_minute,
        last_run_at=timezone.now() - datetime.timedelta(seconds=55),
    )
    first, first_log = _beat(tmp_path, "first")
    second = None
    try:
        _wait_for(first_log, "beat lock taken")
        second, second_log = _beat(tmp_path, "second")
        _wait_for(first_log, f"{SENT} probe-resend")
        _wait_for(second_log, "beat lock held elsewhere: this beat stands by")
        sent_by_first = first_log.read_text().count(SENT)
        time.sleep(4)  # the sequencer's entry fell due about four times meanwhile
        assert SENT not in second_log.read_text()
        assert first_log.read_text().count(SENT) > sent_by_first  # the first kept sending

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        _wait_for(second_log, "beat lock taken: this beat sends the scheduled tasks", timeout_s=30)
        _wait_for(second_log, SENT, timeout_s=30)
        # The probe's last run, as the second read it at its start, was before the first sent it:
        # taking over, it reads the schedule again and does not send it a second time so soon.
        time.sleep(2)
        assert f"{SENT} probe-resend" not in second_log.read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        # What the beats sent would otherwise wait for the next test's worker.
        with config.celery.app.connection_for_write() as connection:
            connection.default_channel.queue_purge(config.celery.app.conf.task_default_queue)
