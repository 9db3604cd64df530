"""Encryption in transit to the broker (issue 12): with ``CELERY_BROKER_URL=rediss://...`` Steward's
Celery app speaks TLS and verifies the broker's certificate, against ``STEWARD_BROKER_CA_FILE``.

A real ``redis-server`` (Debian's, built with TLS) listens on a TLS port only, with a certificate
signed by a CA this test makes with ``cryptography``; Steward's settings and Celery app run in a
fresh process, as a worker would start, and send a message through the broker and read it back.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
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


def test_a_rediss_broker_is_reached_over_tls_and_its_certificate_verified(tls_redis, tmp_path):
    port, ca_file = tls_redis

    trusted = _probe(port, ca_file, tmp_path)
    assert (trusted.returncode, trusted.stdout.strip()) == (0, "over tls"), trusted.stderr[-2000:]

    # The same broker without its CA: the certificate is refused, nothing is sent in the clear.
    untrusted = _probe(port, None, tmp_path)
    assert untrusted.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr or "certificate verify failed" in untrusted.stderr
