"""What encryption at rest costs on a 1 GB artifact, through the product path (issue 12).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward \
        .venv/bin/python benchmarks/bench_artifact_encryption.py --size-mb 1024 --rounds 2

One run, same machine, same file (random bytes: incompressible, like weights):

* Product path: Steward under gunicorn (as ``bin/up`` serves it, production settings, RBAC and
  audit on), a data scientist's API token. A run is created through the MLflow API and the file
  is uploaded as one of its artifacts (``PUT /api/2.0/mlflow-artifacts/artifacts/...``, what
  ``mlflow.log_artifact`` sends), then downloaded (``GET``) twice: cold (this machine's decrypted
  copies wiped, as on another web node: the download decrypts and verifies) and warm (the copy is
  there). Two servers, one per mode, side by side:
  - **plain**: the embedded default (direct mode: files under ``STEWARD_ARTIFACT_ROOT``);
  - **encrypted**: a key-encryption key set (``STEWARD_ARTIFACT_KEYS``): AES-256-GCM envelope,
    1 MiB chunks, the same filesystem.
  MB/s (10^6 bytes per second) of each, and the ratio encrypted / plain.
* Engine alone (the second figure): ``envelope.encrypt_stream`` and ``decrypt_stream`` of the
  same file, against a plain copy of it.

No timed assertions: figures and ratios are printed. The scratch database ``steward_bench_crypto``
beside DATABASE_URL's is created, migrated and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bench_registry  # benchmarks/ is on sys.path
from bench_registry import MLFLOW, Server, make_users, setup_django, start_steward
from scratch_db import drop_database, recreate_database

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DB = "steward_bench_crypto"
MB = 1_000_000


def start_server(workdir: Path, mode: str, keys: str) -> Server:
    """Steward under gunicorn (1 worker x 2 threads) with its own artifact folders; ``keys`` empty
    is the plain default."""
    extra = {
        "STEWARD_ARTIFACT_ROOT": str(workdir / mode / "artifacts"),
        "STEWARD_ARTIFACT_CACHE": str(workdir / mode / "cache"),
        "STEWARD_ARTIFACT_KEYS": keys,
        "STEWARD_MAX_MODEL_BYTES": str(8 * 1024**3),
    }
    # A 1 GB body takes longer than gunicorn's default 30 s worker timeout on a busy machine.
    return start_steward(workdir, 1, 2, extra_env=extra, label=mode, worker_timeout_s=900)


def measure_server(server: Server, token: str, source: Path, cache: Path, rounds: int) -> dict[str, float]:
    """Best MB/s over ``rounds`` of upload, cold download and warm download of ``source``."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    name = f"crypto-{secrets.token_hex(4)}"
    experiment = session.post(f"{server.url}{MLFLOW}/experiments/create", json={"name": name}, timeout=60)
    experiment.raise_for_status()
    experiment_id = experiment.json()["experiment_id"]
    size = source.stat().st_size
    best = {"upload": 0.0, "download_cold": 0.0, "download_warm": 0.0}
    for _ in range(rounds):
        run = session.post(
            f"{server.url}{MLFLOW}/runs/create", json={"experiment_id": experiment_id}, timeout=60
        )
        run.raise_for_status()
        info = run.json()["run"]["info"]
        path = f"experiments/{experiment_id}/{info['run_id']}/artifacts/weights.bin"
        url = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
        started = time.perf_counter()
        with source.open("rb") as body:
            answer = session.put(url, data=body, headers={"Content-Length": str(size)}, timeout=1800)
        answer.raise_for_status()
        best["upload"] = max(best["upload"], size / MB / (time.perf_counter() - started))
        for phase in ("download_cold", "download_warm"):
            if phase == "download_cold":
                shutil.rmtree(cache, ignore_errors=True)
            started = time.perf_counter()
            received = 0
            with session.get(url, stream=True, timeout=1800) as answer:
                answer.raise_for_status()
                for chunk in answer.iter_content(1024 * 1024):
                    received += len(chunk)
            if received != size:
                raise RuntimeError(f"{server.name}: downloaded {received} of {size} bytes")
            best[phase] = max(best[phase], size / MB / (time.perf_counter() - started))
    return best


def measure_engine(source: Path, workdir: Path) -> dict[str, float]:
    """MB/s of the envelope alone (encrypt, decrypt) and of a plain copy of ``source``."""
    from governance.storage import envelope

    size = source.stat().st_size
    key = envelope.new_data_key()
    aad = envelope.associated_data("bench/weights.bin", "0" * 64)
    sealed, opened, copied = workdir / "sealed", workdir / "opened", workdir / "copied"
    figures = {}
    started = time.perf_counter()
    with source.open("rb") as plain, copied.open("wb") as out:
        shutil.copyfileobj(plain, out, 1024 * 1024)
    figures["plain copy"] = size / MB / (time.perf_counter() - started)
    started = time.perf_counter()
    with source.open("rb") as plain, sealed.open("wb") as out:
        envelope.encrypt_stream(plain, out, key, aad)
    figures["encrypt"] = size / MB / (time.perf_counter() - started)
    started = time.perf_counter()
    with sealed.open("rb") as ciphertext, opened.open("wb") as out:
        envelope.decrypt_stream(ciphertext, out, key, aad)
    figures["decrypt"] = size / MB / (time.perf_counter() - started)
    for item in (sealed, opened, copied):
        item.unlink()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="the artifact's size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server; the best is kept")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (a scratch database is made beside it)")

    workdir = Path(tempfile.mkdtemp(prefix="steward-bench-crypto-"))
    recreate_database(url, BENCH_DB)
    # setup_django migrates the database bench_registry names: this benchmark's own.
    bench_registry.BENCH_DB = BENCH_DB
    servers: list[Server] = []
    try:
        setup_django(url, workdir)
        token = make_users(other_teams=1)
        source = workdir / "weights.bin"
        with source.open("wb") as out:
            for _ in range(args.size_mb):
                out.write(os.urandom(1024 * 1024))
        size_mb = source.stat().st_size / MB
        from governance.storage.envelope import Keyring

        results = {}
        for mode, keys in (("plain", ""), ("encrypted", Keyring.new_entry("bench"))):
            server = start_server(workdir, mode, keys)
            servers.append(server)
            results[mode] = measure_server(server, token, source, workdir / mode / "cache", args.rounds)
            server.stop()
            shutil.rmtree(workdir / mode, ignore_errors=True)
        engine = measure_engine(source, workdir)

        print(f"\nArtifact of {size_mb:,.0f} MB (random bytes), best of {args.rounds} round(s)\n")
        print("(1) product path: MLflow artifact API under gunicorn, RBAC and audit on; MB/s")
        print(f"    {'':<32}{'plain':>10}{'encrypted':>12}{'ratio':>8}")
        labels = {
            "upload": "upload (PUT)",
            "download_cold": "download, cold (decrypt+verify)",
            "download_warm": "download, warm (local copy)",
        }
        for phase, label in labels.items():
            plain, sealed = results["plain"][phase], results["encrypted"][phase]
            print(f"    {label:<32}{plain:>10,.0f}{sealed:>12,.0f}{sealed / plain:>8.2f}")
        print("\n(2) engine alone (envelope.encrypt_stream / decrypt_stream against a plain copy); MB/s")
        for name, value in engine.items():
            print(f"    {name:<32}{value:>10,.0f}")
    finally:
        for server in servers:
            server.stop()
        drop_database(url, BENCH_DB)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
