"""Confining a user's code run (issue 17: "User code is untrusted"). No Django.

``build`` turns a run's command line into a ``launcher.Command``:

- ``bwrap`` mode (bubblewrap): own mount, PID, IPC, UTS, cgroup and network namespaces; a root
  made of read-only binds of what Python needs (``/usr``, ``/lib*``, ``/bin``, ``/etc/ssl``, the
  interpreter's and the virtualenv's prefixes) and of Steward's plain packages (``runners/``,
  ``governance/``) under ``/opt/steward``, never the project root, ``var/``, the artifact store
  or a SQLite file; the code folder and the inputs read-only, the output folder read-write, a
  tmpfs ``/tmp`` and ``/dev/shm`` (DataLoader workers share tensors through it), ``--proc`` and
  ``--dev``. The network namespace has only loopback: a ``socat`` in the sandbox listens on
  ``127.0.0.1:<api_port>`` and forwards to ``/run/steward/api.sock``, a Unix socket that a second
  ``socat`` outside (in the run's process group) forwards to Steward's API. So the code reaches
  Steward's API and nothing else.
- ``none`` mode: a clean environment and a process group of its own only (the code sees the
  host's files that its user may read, and the host's network).

Either way the code runs with exactly the environment given (``--clearenv``), as ``uid``/``gid``
when the worker is root: a root worker's bwrap skips the user namespace (which would map the
code's uid onto root outside) and drops to ``uid`` with ``setpriv`` inside, with every
capability gone; an unprivileged worker's bwrap maps its own uid to ``uid`` inside.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runners.launcher import Command

BWRAP = "/usr/bin/bwrap"
SOCAT = "/usr/bin/socat"
SETPRIV = "/usr/bin/setpriv"
MODES = ("auto", "bwrap", "none")
# Where the run's folders appear inside the sandbox.
INSIDE_CODE = Path("/job/code")
INSIDE_INPUTS = Path("/job/inputs")
INSIDE_OUTPUT = Path("/job/output")
INSIDE_STEWARD = Path("/opt/steward")
INSIDE_RUN = Path("/run/steward")
INSIDE_TMP = Path("/tmp")  # noqa: S108 - a tmpfs of the sandbox's own
INSIDE_SHM = Path("/dev/shm")  # noqa: S108 - likewise
API_SOCKET = "api.sock"
# How the launch waits for each end of the API proxy to listen: a check every WAIT_STEP_S seconds,
# at most WAIT_STEPS times (5 s). Each socat is ready in a few milliseconds: a 50 ms step cost a
# code run ~0.1 s at its start (issue 17's runner overhead), a 5 ms one a fork of sleep per step.
WAIT_STEP_S = "0.005"
WAIT_STEPS = 1000
# What bwrap mode does not give in none mode: the warning line on the job's log.
NONE_WARNING = (
    "sandbox: none (bubblewrap is not usable here); the code runs with a clean environment in its "
    "own process group{as_user}, but it can read the host's files its user may read and reach the "
    "network; see docs/operations.md, Running users' code"
)


class SandboxError(Exception):
    """The sandbox asked for cannot be set up on this host; the message says why."""


@dataclass(frozen=True)
class Layout:
    """The run's folders as the code sees them (inside the sandbox, or the host's in none mode)."""

    code: Path
    inputs: Path
    output: Path
    steward: Path  # the folder holding Steward's plain packages, for PYTHONPATH


@functools.lru_cache(maxsize=8)
def bwrap_usable(bwrap: str = BWRAP) -> bool:
    """Whether ``bwrap`` can create its namespaces on this host (``--unshare-all`` for an
    unprivileged worker; the same without a user namespace for root) and ``socat`` is there.
    Probed once per process (a probe is a process start, paid by every job otherwise)."""
    if not (Path(bwrap).is_file() and Path(SOCAT).is_file()):
        return False
    unshare = _unshare_flags()
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv
            [bwrap, *unshare, "--ro-bind", "/", "/", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def resolve_mode(asked: str, bwrap: str = BWRAP) -> str:
    """``asked`` (``STEWARD_SANDBOX``) made concrete: ``auto`` is ``bwrap`` where usable, else
    ``none``. Raises SandboxError for ``bwrap`` on a host where it cannot run, or an unknown mode."""
    if asked not in MODES:
        raise SandboxError(f"STEWARD_SANDBOX is {asked!r}; one of {', '.join(MODES)}")
    if asked == "none":
        return "none"
    usable = bwrap_usable(bwrap)
    if asked == "bwrap" and not usable:
        raise SandboxError(
            f"STEWARD_SANDBOX=bwrap but {bwrap} --unshare-all (with {SOCAT}) does not run on this worker"
        )
    return "bwrap" if usable else "none"


def layout(mode: str, workdir: Path, steward_root: Path) -> Layout:
    """Where the code finds its folders in ``mode``: fixed paths in the sandbox, the workdir's
    ``code``, ``inputs`` and ``output`` folders otherwise."""
    if mode == "bwrap":
        return Layout(INSIDE_CODE, INSIDE_INPUTS, INSIDE_OUTPUT, INSIDE_STEWARD)
    return Layout(workdir / "code", workdir / "inputs", workdir / "output", steward_root)


def _unshare_flags() -> list[str]:
    if os.geteuid() == 0:
        # Root: no user namespace (see the module's docstring); setpriv drops to the code's uid.
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all"]


def _mkdirs(target: Path, made: set[Path]) -> list[str]:
    """bwrap arguments creating ``target``'s missing ancestors world-readable (bwrap makes them
    0700 otherwise, which an unprivileged code cannot cross)."""
    args: list[str] = []
    for parent in reversed(target.parents):
        if parent == Path("/") or parent in made:
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def system_binds() -> list[str]:
    """Read-only binds of what Python and its libraries need, and nothing else of the host."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for etc in (
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/alternatives",
        "/etc/ld.so.cache",
        "/etc/localtime",
    ):
        args += ["--ro-bind-try", etc, etc]
    return args


def python_dirs() -> list[Path]:
    """The interpreter's and the virtualenv's prefixes (symbolic links resolved), outside /usr."""
    found = []
    for prefix in (sys.base_prefix, sys.prefix):
        real = Path(prefix).resolve()
        if not real.is_relative_to("/usr") and real not in found:
            found.append(real)
    return found


def python_bin() -> Path:
    """The virtualenv's ``bin`` folder as seen in the sandbox (the real path), for PATH."""
    return Path(sys.prefix).resolve() / "bin"


def _confined_root(
    env: dict[str, str],
    uid: int,
    tmpfs_bytes: int | None,
    made: set[Path],
    steward_packages: list[Path],
    *,
    die_with_parent: bool,
) -> list[str]:
    """bwrap's arguments up to the process's own binds: namespaces, exactly ``env``, the uid
    mapping (unprivileged worker), the system's read-only binds, /proc, /dev, a tmpfs /tmp and
    /dev/shm of ``tmpfs_bytes`` each, the interpreter's prefixes and Steward's plain packages."""
    args = [BWRAP, *_unshare_flags()]
    if die_with_parent:
        # A job's run: with its worker. It also gets a session of its own (no terminal to push
        # input into); a server keeps bwrap's process group so that stopping the group stops it.
        args += ["--die-with-parent", "--new-session"]
    args.append("--clearenv")
    for name, value in sorted(env.items()):
        args += ["--setenv", name, value]
    if os.geteuid() != 0:
        args += ["--uid", str(uid), "--gid", str(uid)]
    args += system_binds()
    # The sandbox's own /tmp and /dev/shm first: a virtualenv or Steward's packages living under
    # /tmp (a checkout in /tmp) are bound on top of them, not hidden by them.
    size = ["--size", str(tmpfs_bytes)] if tmpfs_bytes is not None else []
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", *size, "--tmpfs", str(INSIDE_SHM)]
    args += ["--perms", "1777", *size, "--tmpfs", str(INSIDE_TMP)]
    made.add(INSIDE_TMP)
    for folder in python_dirs():
        args += [*_mkdirs(folder, made), "--ro-bind", str(folder), str(folder)]
    for package in steward_packages:
        inside = INSIDE_STEWARD / package.name
        args += [*_mkdirs(inside, made), "--ro-bind", str(package), str(inside)]
    return args


def _dropped_to(uid: int) -> list[str]:
    """A root worker's sandbox starts its process through ``setpriv`` as ``uid`` with every
    capability gone (there is no user namespace to do it); nothing for an unprivileged one."""
    if os.geteuid() != 0:
        return []
    return [
        SETPRIV,
        "--reuid",
        str(uid),
        "--regid",
        str(uid),
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def confine_server(
    argv: list[str],
    *,
    env: dict[str, str],
    steward_packages: list[Path],
    read_only: list[Path],
    uid: int,
) -> list[str]:
    """The command line running ``argv`` (a long-lived server: a model server loading a
    code-executing flavor) in bwrap: no network at all (it serves a Unix socket passed to it
    open), exactly ``env``, Steward's plain packages under /opt/steward, the ``read_only`` paths
    bound at their own paths, a tmpfs /tmp, and nothing else of the host: not the project root,
    ``var/``, the database or the secret key files; nothing of the host writable. ``argv`` is
    the PID namespace's first process (``--as-pid-1``): when it ends, every process it started
    ends. It outlives its starter (no ``--die-with-parent``; it stops itself when idle). As
    ``uid`` when the caller is root. Started in a session of its own (``start_new_session``),
    its process group holds bwrap and the server: signalling the group stops both."""
    made: set[Path] = set()
    args = _confined_root(env, uid, None, made, steward_packages, die_with_parent=False)
    for path in read_only:
        args += [*_mkdirs(path, made), "--ro-bind", str(path), str(path)]
    return [*args, "--as-pid-1", "--chdir", "/", *_dropped_to(uid), *argv]


def build(
    mode: str,
    *,
    run_line: str,
    env: dict[str, str],
    workdir: Path,
    steward_packages: list[Path],
    api_target: tuple[str, int] | None,
    api_port: int,
    uid: int,
    tmpfs_bytes: int | None = None,
) -> Command:
    """The ``Command`` running ``run_line`` (a /bin/sh command line) in the code folder under
    ``mode`` (``bwrap`` or ``none``) with exactly ``env``.

    ``workdir`` holds ``code/``, ``inputs/``, ``output/`` and ``run/`` (for the API socket);
    ``steward_packages``: Steward's plain packages to expose read-only (bwrap mode);
    ``api_target``: Steward's API (host, port) that the sandbox's loopback ``api_port`` forwards
    to (bwrap mode; None: no API). ``uid`` (and the same gid): the user the code runs as when the
    worker is root. ``tmpfs_bytes``: the size of each of the sandbox's ``/tmp`` and ``/dev/shm``
    (tmpfs pages are memory that no process's RSS shows, so the memory limit would not see them;
    None: the kernel's default, half the host's memory each).
    """
    as_root = os.geteuid() == 0
    if mode == "none":
        return Command(
            ["/bin/sh", "-c", run_line],
            env,
            workdir / "code",
            user=uid if as_root else None,
            group=uid if as_root else None,
        )
    if mode != "bwrap":
        raise SandboxError(f"unknown sandbox mode {mode!r}")
    made: set[Path] = set()
    args = _confined_root(env, uid, tmpfs_bytes, made, steward_packages, die_with_parent=True)
    args += ["--chdir", str(INSIDE_CODE)]
    args += [*_mkdirs(INSIDE_CODE, made), "--ro-bind", str(workdir / "code"), str(INSIDE_CODE)]
    args += ["--ro-bind", str(workdir / "inputs"), str(INSIDE_INPUTS)]
    args += ["--bind", str(workdir / "output"), str(INSIDE_OUTPUT)]
    args += [*_mkdirs(INSIDE_RUN, made), "--ro-bind", str(workdir / "run"), str(INSIDE_RUN)]
    inner = run_line
    if api_target is not None:
        # The sandbox's end of the API proxy; the run waits (at most 5 s) until it listens, read
        # from /proc/net/tcp (state 0A: listening) so that no connection is made to find out.
        listen = (
            f"{SOCAT} TCP-LISTEN:{api_port},bind=127.0.0.1,fork,reuseaddr "
            f"UNIX-CONNECT:{INSIDE_RUN / API_SOCKET} </dev/null >/dev/null 2>&1 &\n"
            f"n=0; while ! grep -q ':{api_port:04X} 00000000:0000 0A' /proc/net/tcp "
            f"&& [ $n -lt {WAIT_STEPS} ]; do sleep {WAIT_STEP_S}; n=$((n+1)); done\n"
        )
        inner = listen + run_line
    args += [*_dropped_to(uid), "/bin/sh", "-c", inner]
    if api_target is None:
        return Command(args, {"PATH": "/usr/bin:/bin"}, workdir)
    # The worker's end of the proxy, in the run's process group (stopped with it), and killed when
    # its parent (this shell, then bwrap, which dies with the worker) dies: a killed worker left it
    # listening for ever. bwrap starts once its socket exists.
    host, port = api_target
    socket_path = shlex.quote(str(workdir / "run" / API_SOCKET))
    proxy_log = shlex.quote(str(workdir / "proxy.log"))
    outer = (
        f"{SETPRIV} --pdeathsig KILL {SOCAT} UNIX-LISTEN:{socket_path},fork,mode=0666 "
        f"TCP:{shlex.quote(host)}:{port} </dev/null >/dev/null 2>>{proxy_log} &\n"
        f"n=0; while [ ! -S {socket_path} ] && [ $n -lt {WAIT_STEPS} ]; "
        f"do sleep {WAIT_STEP_S}; n=$((n+1)); done\n"
        'exec "$@"'
    )
    return Command(["/bin/sh", "-c", outer, "sandbox", *args], {"PATH": "/usr/bin:/bin"}, workdir)
