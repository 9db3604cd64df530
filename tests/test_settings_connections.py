"""How long a web thread keeps its database connection (issue 9, hostile test F12): persistent
under gunicorn, none under the dev server, which starts a thread per request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRINT_MAX_AGE = (
    "import sys; sys.argv = {argv!r}; import django; django.setup(); "
    "from django.conf import settings; print(settings.DATABASES['default']['CONN_MAX_AGE'])"
)


def conn_max_age(argv: list[str], **environment: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "STEWARD_DB_CONN_MAX_AGE")}
    env.update(environment, DJANGO_SETTINGS_MODULE="config.settings")
    done = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", PRINT_MAX_AGE.format(argv=argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (["gunicorn", "config.wsgi"], {}, 60),
        (["manage.py", "runserver"], {}, 0),
        (["gunicorn", "config.wsgi"], {"DEBUG": "true"}, 0),
        (["manage.py", "runserver"], {"STEWARD_DB_CONN_MAX_AGE": "30"}, 30),
    ],
)
def test_persistent_connections_only_outside_the_dev_server(argv, environment, expected):
    assert conn_max_age(argv, **environment) == expected
