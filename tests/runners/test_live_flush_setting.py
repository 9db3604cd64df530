"""STEWARD_LIVE_FLUSH_S (issue 17's runner overhead): a value that is not a finite number of
seconds >= 0 stops Django's startup naming the variable, rather than being read by
django-environ's lenient float ("1e3" as 13, "-1" kept) and failing every template run later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners import workload_env

ROOT = Path(__file__).resolve().parent.parent.parent
PRINT = (
    "import django; django.setup(); from django.conf import settings; print(settings.STEWARD_LIVE_FLUSH_S)"
)


def _start(value: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings", "STEWARD_LIVE_FLUSH_S": value}
    return subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", PRINT], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_bad_live_flush_setting_stops_the_startup_naming_it(value):
    done = _start(value)
    assert done.returncode != 0
    assert f"STEWARD_LIVE_FLUSH_S must be a number of seconds >= 0, got {value!r}" in done.stderr


def test_the_live_flush_setting_reads_a_float_as_python_does():
    done = _start("1e3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1000.0"


@pytest.mark.parametrize("value", ["inf", "-0.5", "nan", ""])
def test_a_code_run_refuses_a_live_flush_it_could_never_keep(monkeypatch, value):
    monkeypatch.setenv("STEWARD_LIVE_FLUSH_S", value)
    with pytest.raises(workload_env.WorkloadError, match="STEWARD_LIVE_FLUSH_S must be a number"):
        workload_env.live_flush_s()
