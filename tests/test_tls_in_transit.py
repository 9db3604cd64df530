"""Encryption in transit (issue 12), to the broker and to PostgreSQL.

Broker: with ``CELERY_BROKER_URL=rediss://...`` Steward's Celery app speaks TLS and verifies the
broker's certificate, against ``STEWARD_BROKER_CA_FILE``. A real ``redis-server`` (Debian's, built
with TLS) listens on a TLS port only, with a certificate signed by a CA this test makes with
``cryptography``; Steward's settings and Celery app run in a fresh process, as a worker would
start, and send a message through the broker and read it back.

PostgreSQL: ``DATABASE_URL=...?sslmode=verify-full&sslrootcert=CA`` makes Steward's connection
TLS with the server's certificate and host name verified. The machine's own PostgreSQL runs
without TLS, so the test starts a private cluster of the same PostgreSQL (``initdb`` as the
``postgres`` user) that accepts TLS connections only, and Steward's settings connect from a
fresh process.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port

REDIS_SERVER = shutil.which("redis-server")
ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import django
django.setup()
from config.celery import app
with app.connection_for_write() as connection:
    connection.ensure_connection(max_retries=1)
    queue = connection.SimpleQueue("steward-tls-probe")
    queue.put({"hello": "over tls"})
    message = queue.get(timeout=10)
    message.ack()
    print(message.payload["hello"])
"""


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (one day, P-256)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Steward test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["server"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, paths["server-key"])
    return paths


@pytest.fixture
def tls_redis(tmp_path):
    """(port, CA file) of a redis-server that accepts TLS only (its plain port is off)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH: this test runs a real Redis with TLS")
    paths = _certificates(tmp_path)
    port = free_port()
    command = [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    command += ["--tls-cert-file", str(paths["server"]), "--tls-key-file", str(paths["server-key"])]
    command += ["--tls-ca-cert-file", str(paths["ca"]), "--tls-auth-clients", "no"]
    command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not listen on its TLS port within 10 s") from None
                time.sleep(0.05)
        yield port, paths["ca"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def _probe(port: int, ca_file: Path | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "STEWARD_BROKER_CA_FILE")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        CELERY_BROKER_URL=f"rediss://127.0.0.1:{port}/0",
        STEWARD_VAR_DIR=str(tmp_path / "var"),
    )
    if ca_file is not None:
        env["STEWARD_BROKER_CA_FILE"] = str(ca_file)
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
DB_PROBE = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    # The server's own view of this session (pg_stat_ssl), not only the client's.
    cursor.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    ssl, version = cursor.fetchone()
print("tls" if ssl else "plain", version)
"""


@pytest.fixture
def tls_postgres():
    """(port, CA file) of a private PostgreSQL cluster that accepts TLS connections only."""
    if os.geteuid() != 0 or not PG_BINARIES or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and Debian's PostgreSQL server to start a private cluster")
    bin_dir = PG_BINARIES[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="steward-pg-tls-"))
    folder.chmod(0o755)  # the postgres user walks into it
    paths = _certificates(folder)
    paths["server-key"].chmod(0o600)
    shutil.chown(folder, "postgres")
    for path in paths.values():
        shutil.chown(path, "postgres")
    data = folder / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(  # noqa: S603 - Debian's initdb, fixed arguments
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-N"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
    )
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - Debian's postgres, fixed arguments
        [
            *as_postgres,
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={folder}",
            "-c",
            "ssl=on",
            "-c",
            f"ssl_cert_file={paths['server']}",
            "-c",
            f"ssl_key_file={paths['server-key']}",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the private PostgreSQL did not listen within 30 s") from None
                time.sleep(0.1)
        yield port, paths["ca"]
    finally:
        # The postmaster's own pid (runuser waits for it): a fast shutdown.
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def _db_probe(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=url, STEWARD_VAR_DIR=str(tmp_path / "var")
    )
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", DB_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_postgresql_is_reached_over_tls_with_its_certificate_and_host_verified(tls_postgres, tmp_path):
    port, ca_file = tls_postgres
    base = f"postgres://postgres@127.0.0.1:{port}/postgres"

    verified = _db_probe(f"{base}?sslmode=verify-full&sslrootcert={ca_file}", tmp_path)
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert verified.stdout.split()[0] == "tls"
    assert verified.stdout.split()[1].startswith("TLSv1.")

    # In the clear: the server refuses (its pg_hba accepts TLS only).
    plain = _db_probe(f"{base}?sslmode=disable", tmp_path)
    assert plain.returncode != 0
    assert "no encryption" in plain.stderr

    # Another CA: the server's certificate is not trusted.
    other = _certificates(tmp_path)["ca"]
    untrusted = _db_probe(f"{base}?sslmode=verify-full&sslrootcert={other}", tmp_path)
    assert untrusted.returncode != 0
    # (The other CA has the same name, so OpenSSL reports the signature that does not verify.)
    assert "certificate verify failed" in untrusted.stderr or "signature failure" in untrusted.stderr

    # The right CA but another host name than the certificate's (127.0.0.1): refused.
    wrong_host = _db_probe(
        f"postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca_file}", tmp_path
    )
    assert wrong_host.returncode != 0
    assert "does not match host name" in wrong_host.stderr


def test_a_rediss_broker_is_reached_over_tls_and_its_certificate_verified(tls_redis, tmp_path):
    port, ca_file = tls_redis

    trusted = _probe(port, ca_file, tmp_path)
    assert (trusted.returncode, trusted.stdout.strip()) == (0, "over tls"), trusted.stderr[-2000:]

    # The same broker without its CA: the certificate is refused, nothing is sent in the clear.
    untrusted = _probe(port, None, tmp_path)
    assert untrusted.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr or "certificate verify failed" in untrusted.stderr
