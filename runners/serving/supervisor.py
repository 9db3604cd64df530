"""Starting, finding and stopping model servers (``runners.serving.server``), one per model
version per host (issue 17). A plain module (no Django): the caller passes the settings.

The first request for a version takes a file lock next to the socket, so of all the web
processes of the host one starts the server while the others wait and then use it; a server that
died is started again by the next request; a server stops itself when idle. It starts with a
clean environment (none of the web process's secrets: database URL, secret key, signing key,
broker URL) in its own session, so it outlives the web worker that started it and no signal to
that worker's group reaches it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners import launcher, sandbox
from runners.serving import server

# What the server's environment keeps of the web process's: where programs and Python live, the
# locale. Nothing else passes (no DATABASE_URL, DJANGO_SECRET_KEY, STEWARD_AUDIT_SIGNING_KEY...).


class ServerError(RuntimeError):
    """The model server could not be started or did not answer; ``is_user_error`` when the
    version itself does not load or cannot predict on the rows."""

    def __init__(self, message: str, *, is_user_error: bool = False):
        super().__init__(message)
        self.is_user_error = is_user_error


@dataclass(frozen=True)
class ServerSpec:
    """One version's server: ``key`` names its files in ``folder`` (socket, lock, config, log);
    ``model`` is {path, flavor, sha256, name}; ``idle_s`` until it stops itself, ``threads``
    it computes with, ``start_timeout_s`` to load the model, ``request_timeout_s`` per request."""

    folder: Path
    key: str
    model: dict[str, str]
    idle_s: float
    threads: int = 1
    start_timeout_s: float = 120.0
    request_timeout_s: float = 60.0
    code_root: Path = field(default_factory=lambda: Path(__file__).resolve().parents[2])
    # "bwrap": the server runs in bubblewrap (``runners.sandbox.confine_server``); "none": a
    # clean environment and a session of its own only. ``sandbox_uid``: its user under a root web
    # process (STEWARD_SANDBOX_UID).
    sandbox: str = "none"
    sandbox_uid: int = 65534

    @property
    def home(self) -> Path:
        """The server's folder (its config, its socket, a copy of its model): the web process's
        alone; the server writes nothing in it (a sandboxed one sees only its config and model)."""
        return self.folder / self.key

    @property
    def socket_path(self) -> Path:
        return self.home / "server.sock"

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.key}.{suffix}"


def server_command(spec: ServerSpec, config_path: Path, model_path: Path) -> list[str]:
    """The command line of ``spec``'s model server: the one place it is built. In bwrap mode
    the server loads the model (a pickle runs the model's own code) seeing only Python, Steward's
    plain packages, its config and the model's files (read-only), a tmpfs /tmp, no network at all,
    as an unprivileged user, as the PID namespace's first process: when it ends, whatever it
    started ends with it (``runners.sandbox.confine_server``). Its socket is passed to it open."""
    if spec.sandbox != "bwrap":
        return [sys.executable, "-m", "runners.serving.server", str(config_path)]
    env = clean_environment(spec) | {
        "PYTHONPATH": str(sandbox.INSIDE_STEWARD),
        "HOME": str(sandbox.INSIDE_TMP),
    }
    env["PATH"] = f"{sandbox.python_bin()}:/usr/bin:/bin"
    return sandbox.confine_server(
        [str(sandbox.python_bin() / "python"), "-m", "runners.serving.server", str(config_path)],
        env=env,
        steward_packages=[spec.code_root / "runners", spec.code_root / "governance"],
        read_only=[config_path, model_path.resolve()],
        uid=spec.sandbox_uid,
    )


def clean_environment(spec: ServerSpec) -> dict[str, str]:
    """The server's whole environment: the kept variables, Python's path to Steward's code, and
    one thread for every numeric library (the model server's own ``threads`` for torch)."""
    threads = str(spec.threads)
    return launcher.clean_environment(
        os.environ,
        PYTHONPATH=str(spec.code_root),
        HOME=str(spec.folder),
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
        PYTHONUNBUFFERED="1",
    )


def _start(spec: ServerSpec) -> None:
    """Start the server (the caller holds the lock) and wait until it says it is ready. Raises
    ServerError with the end of its log when it exits first or takes too long, or when its folder
    cannot be laid out (a socket path longer than a Unix socket's 107 bytes names the setting).

    The socket is bound here, by the web process, in the server's folder (the web process's
    alone) and handed to the server open: the server needs no writable folder, so nothing it
    writes can be a link that the web process follows later. It is renamed onto ``socket_path``
    once the server is ready, so a socket there is a server that answers (or one that ended:
    connecting is then refused, and the next request starts another)."""
    model = dict(spec.model)
    staging = spec.home / f"s{os.getpid()}.sock"
    try:
        spec.home.mkdir(mode=0o700, exist_ok=True)
        if spec.sandbox == "bwrap" and os.geteuid() == 0:
            # The server runs as the sandbox's user; the artifact store's files are their owner's
            # alone (0600), so it reads a world-readable copy (bound read-only).
            model["path"] = str(_copy_for(spec, Path(spec.model["path"])))
        staging.unlink(missing_ok=True)
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening.bind(str(staging))
        except OSError as exc:
            listening.close()
            raise ServerError(
                f"the model server's socket {staging} cannot be made ({exc}); "
                "set STEWARD_MODEL_SERVER_DIR to a short path"
            ) from exc
        listening.listen(64)
        ready_read, ready_write = os.pipe()
        config = spec.home / "server.json"
        config.unlink(missing_ok=True)
        config.write_text(
            json.dumps(
                {
                    "listen_fd": listening.fileno(),
                    "ready_fd": ready_write,
                    "model": model,
                    "idle_s": spec.idle_s,
                    "threads": spec.threads,
                }
            )
        )
        config.chmod(0o644)
        log = spec.file("log")
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                server_command(spec, config, Path(model["path"])),
                cwd=spec.code_root,
                env=clean_environment(spec),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=(listening.fileno(), ready_write),
            )
    except OSError as exc:
        raise ServerError(f"the model server of {spec.model['name']} cannot be laid out: {exc}") from exc
    # The server holds them now: the web process keeps neither end it gave away.
    listening.close()
    os.close(ready_write)
    spec.file("pid").write_text(str(process.pid))
    try:
        _await_ready(spec, process, ready_read, log)
    except ServerError:
        staging.unlink(missing_ok=True)
        raise
    finally:
        os.close(ready_read)
    os.replace(staging, spec.socket_path)


def _await_ready(spec: ServerSpec, process: subprocess.Popen[bytes], ready: int, log: Path) -> None:
    """Wait for the server's "ready" line on ``ready``. Raises ServerError when it exits (or
    closes the pipe) first, or after ``start_timeout_s``."""
    deadline = time.monotonic() + spec.start_timeout_s
    while True:
        waited, _, _ = select.select([ready], [], [], 0.05)
        if waited:
            if os.read(ready, 64).startswith(b"ready"):
                return
            # The pipe closed without a word: the server is ending (or its model's code closed it).
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill(process.pid)
                raise ServerError(
                    f"the model server of {spec.model['name']} closed its ready pipe without starting"
                ) from None
        code = process.poll()
        if code is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            message = " | ".join(tail) or f"exit status {code}"
            raise ServerError(
                f"the model server of {spec.model['name']} stopped: {message}",
                is_user_error="model server:" in message,
            )
        if time.monotonic() > deadline:
            _kill(process.pid)
            raise ServerError(
                f"the model server of {spec.model['name']} did not start in {spec.start_timeout_s:.0f} s"
            )


def _copy_for(spec: ServerSpec, source: Path) -> Path:
    """A world-readable copy of the model file or folder ``source`` in the server's folder,
    made again each start (a start is rare: once per version, host and idle period)."""
    target = spec.home / "model" / source.name
    shutil.rmtree(target.parent, ignore_errors=True)
    target.parent.mkdir(mode=0o755)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copyfile(source, target)
    for path in [target, *(target.rglob("*") if target.is_dir() else [])]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return target


@contextlib.contextmanager
def _locked(spec: ServerSpec):
    spec.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with spec.file("lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ask(spec: ServerSpec, rows: list[dict[str, Any]], columns: list[str] | None) -> Any:
    return server.request(str(spec.socket_path), rows, columns, spec.request_timeout_s)


def predict(spec: ServerSpec, rows: list[dict[str, Any]], columns: list[str] | None) -> list[Any]:
    """The predictions of ``rows`` by ``spec``'s server, started first when none answers (once
    more if it dies during the request). Raises ServerError when it cannot start or answers an
    error (``is_user_error`` for the model's own refusal of the rows)."""
    answer = None
    for _attempt in range(2):
        try:
            answer = _ask(spec, rows, columns)
            break
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            with _locked(spec):
                # Another process may have started it while this one waited for the lock.
                try:
                    answer = _ask(spec, rows, columns)
                    break
                except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
                    _start(spec)
        except OSError as exc:  # a timeout: the server is alive but stuck on this request
            raise ServerError(f"the model server of {spec.model['name']} did not answer: {exc}") from exc
    if answer is None:
        raise ServerError(f"the model server of {spec.model['name']} does not answer")
    if "error" in answer:
        raise ServerError(answer["error"], is_user_error=bool(answer.get("is_user_error")))
    return list(answer["predictions"])


def _kill(pid: int, grace_s: float = 2.0) -> None:
    """Stop the server led by ``pid``: SIGTERM to its process group, SIGKILL after ``grace_s``
    if it is still there (a model's code may ignore SIGTERM)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def stop_all(folder: Path) -> int:
    """Stop every model server whose files are in ``folder`` (tests, shutdown); how many."""
    stopped = 0
    for pid_file in Path(folder).glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            _kill(int(pid_file.read_text()))
            stopped += 1
        pid_file.unlink(missing_ok=True)
        (pid_file.with_suffix("") / "server.sock").unlink(missing_ok=True)
    return stopped


def server_pid(spec: ServerSpec) -> int | None:
    """The process id of ``spec``'s server if one was started and is alive."""
    try:
        pid = int(spec.file("pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None
