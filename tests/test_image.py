"""The built image runs (issue 13): migrations, then the web process answering its probes, as the
non-root user, on a read-only root filesystem with only the var volume and /tmp writable.

.ci/build-image builds it (podman) and .ci/run names it in STEWARD_TEST_IMAGE; without that this
test is skipped. This machine's container runtimes cannot start a container (no cgroups, and
setrlimit is refused), so the test starts the image's processes the way a runtime would, minus
the isolation: the image's own root filesystem, mounted read-only by podman, with the volumes
bound in, entered by chroot as the image's USER, with the image's ENV, WORKDIR and ENTRYPOINT read
from its configuration. What is checked is the image's content and configuration, not podman's.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import free_port

IMAGE = os.environ.get("STEWARD_TEST_IMAGE", "")

pytestmark = pytest.mark.skipif(not IMAGE, reason="no image built: .ci/build-image, then STEWARD_TEST_IMAGE")


class Container:
    """The image's configuration and its mounted root filesystem, and how to start a process."""

    def __init__(self, image: str, var: Path, tmp: Path):
        inspected = json.loads(subprocess.check_output(["podman", "image", "inspect", image]))[0]  # noqa: S603, S607
        config = inspected["Config"]
        self.env = config["Env"]
        self.user = config["User"]
        self.workdir = config["WorkingDir"]
        self.entrypoint = config["Entrypoint"]
        self.healthcheck = (inspected.get("Healthcheck") or {}).get("Test", [])
        self.root = subprocess.check_output(["podman", "image", "mount", image], text=True).strip()  # noqa: S603, S607
        self.var, self.tmp = var, tmp

    def start(self, *command: str, env: dict[str, str], entrypoint: bool = True) -> subprocess.Popen:
        """Start ``command`` (after the ENTRYPOINT unless told otherwise) in the image."""
        environment = [*self.env, *(f"{key}={value}" for key, value in env.items())]
        argv = [*(self.entrypoint if entrypoint else []), *command]
        inner = f"cd {shlex.quote(self.workdir)} && exec {shlex.join(argv)}"
        var_dir = next(item.split("=", 1)[1] for item in self.env if item.startswith("STEWARD_VAR_DIR="))
        mounts = (
            f"mount --bind {self.var} {self.root}{var_dir} && mount --bind {self.tmp} {self.root}/tmp"
            f" && mount -t proc proc {self.root}/proc && mount --rbind /dev {self.root}/dev"
        )
        chroot = shlex.join(
            ["chroot", f"--userspec={self.user}", self.root, "env", "-i", *environment, "sh", "-c", inner]
        )
        return subprocess.Popen(  # noqa: S603
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mounts} && exec {chroot}"],  # noqa: S607
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(
        self, *command: str, env: dict[str, str], entrypoint: bool = True, timeout: int = 300
    ) -> tuple[int, str]:
        process = self.start(*command, env=env, entrypoint=entrypoint)
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output


@pytest.fixture
def container(tmp_path):
    var, tmp = tmp_path / "var", tmp_path / "tmp"
    var.mkdir()
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    found = Container(IMAGE, var, tmp)
    os.chown(var, *(int(part) for part in found.user.split(":")))
    yield found
    subprocess.run(["podman", "image", "unmount", IMAGE], check=False, capture_output=True)  # noqa: S603, S607


@pytest.fixture
def database_url():
    """A database of its own, empty, on the test database's PostgreSQL server (dropped after)."""
    db = connection.settings_dict
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("the image test migrates a PostgreSQL database of its own")
    server = {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"],
    }
    name = "steward_image_test"
    with psycopg.connect(**server, dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    yield f"postgres://{server['user']}:{server['password'] or ''}@{server['host']}:{server['port']}/{name}"
    with psycopg.connect(**server, dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own local server
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_the_image_migrates_and_serves_as_its_user_on_a_read_only_root(container, database_url):
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis"):
        pytest.skip("the image's readiness needs a broker it can reach: CELERY_BROKER_URL=redis://...")
    env = {"SECRET_KEY": "image-test-only", "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker}

    code, output = container.run("id", "-u", env=env, entrypoint=False)
    assert (code, output.strip()) == (0, container.user.split(":")[0])
    code, output = container.run(
        "python", "-c", "open('/opt/steward/app/written-at-run-time', 'w')", env=env, entrypoint=False
    )
    assert code != 0
    assert "Read-only file system" in output

    code, output = container.run("migrate", env=env)
    assert code == 0, output
    assert "Applying governance.0001" in output

    port = free_port()
    web = container.start("web", env={**env, "PORT": str(port), "WEB_WORKERS": "1"})
    try:
        deadline, status, body = time.monotonic() + 120, 0, ""
        while time.monotonic() < deadline and web.poll() is None:
            try:
                status, _headers, body = _get(f"http://127.0.0.1:{port}/health/ready/")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert web.poll() is None, web.stdout.read() if web.stdout else ""
        assert status == 200, body
        status, headers, body = _get(f"http://127.0.0.1:{port}/login/")
        assert status == 200
        assert "Log in to Steward" in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        # The image's own HEALTHCHECK command passes against the running web process.
        assert container.healthcheck[0] == "CMD"
        code, output = container.run(
            *container.healthcheck[1:], env={**env, "PORT": str(port)}, entrypoint=False, timeout=30
        )
        assert code == 0, output
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
