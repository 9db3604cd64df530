"""Running a job's compute in a child process, in its own process group (issue 16). No Django import.

The worker (``runners.execute``) is the parent: it keeps every database write, and hands the
compute to ``python -m runners.child <task.json>``, a fresh interpreter started with
``start_new_session=True``. A fresh interpreter rather than ``multiprocessing``'s spawn context:
its process group is set by the kernel at exec (spawn cannot ask for a new session), nothing of
the worker (Django connections, Celery's state, signal handlers) is inherited or pickled, and the
protocol is plain JSON, so a model that executes code on load only ever runs there. The parent
never imports torch: CUDA is initialised, if at all, in the child.

GPUs (issue 16): the child sees only the devices it was given (``CUDA_VISIBLE_DEVICES``; none, an
empty string, for a CPU job). A training job given several devices runs under torchrun
(``python -m torch.distributed.run --standalone``): one rank per device, DDP in
``runners.training``. torchrun starts each rank in a session of its own, so the run is the tree
of processes under the child, in as many process groups: every group seen is stopped, and the
memory limit counts them all.

A run may also be a plain ``Command`` (issue 17: a user's code, usually inside
``runners.sandbox``): its stdout and stderr are log streams, each line an ``output`` event, and
its exit status is the outcome (0: success). The process group, limits, cancel and usage are the
same code for both.

A serving child (``serves=True``, issue 15's evaluation jobs) also reads requests, one JSON line
each, on its stdin: ``send`` writes one from another thread of the parent while ``run`` follows the
child, and ``close_input`` ends them (the child then reports its result and exits).

The child writes JSON-lines events on its stdout (see ``runners.child``); the parent reads them
from a thread and, every ``poll_s``, calls its ``check`` (cancel, lost claim), samples the run's
resident memory from ``/proc`` and enforces the wall-time limits. Stopping is SIGTERM to the
run's groups, then SIGKILL after ``grace_s``. Resource use comes from ``os.wait4`` (the child's
user + system CPU seconds and peak RSS; with torchrun, that of torchrun and the ranks it reaped)
and the samples.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

CHECKPOINT_GLOB = "epoch-*.pt"
STDERR_TAIL_CHARS = 2000
# How many of a command's last stderr lines its failure message quotes.
STDERR_TAIL_LINES = 20
STDERR_LINE_CHARS = 1000
# A command's death by one of these (the OOM killer's SIGKILL, a crash) is not the input's fault.
LOST_SIGNALS = frozenset({signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS})
# A longer line of a command's output is split into pieces of this many bytes.
OUTPUT_LINE_BYTES = 64 * 1024
PAGE_MB = 1024.0
# Bytes of a memory page (``/proc/<pid>/statm`` counts pages).
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# Every this many polls the whole process table is read to find the run's processes (those that
# left its tree too); the polls between follow the known processes' children only (a whole /proc
# read is ~7 ms of CPU on a quiet host, the training's CPU on a 2-core one: issue 17's runner
# overhead).
SCAN_EVERY_POLLS = 6


@dataclass(frozen=True)
class Limits:
    """What one run may use: seconds of wall time (``soft_wall_time_s``: asked to checkpoint and
    stop; ``wall_time_s``: killed), resident megabytes of the whole process group, and CPU threads.
    None: no limit."""

    wall_time_s: float | None = None
    soft_wall_time_s: float | None = None
    memory_mb: int | None = None
    threads: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Usage:
    """What one run used (issue 16 accounting): wall and CPU seconds, peak resident megabytes of
    the process group, rows and bytes of input read, GPU seconds and peak GPU megabytes (None
    without a GPU)."""

    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    peak_rss_mb: float = 0.0
    rows_read: int | None = None
    bytes_read: int | None = None
    gpu_time_s: float | None = None
    peak_gpu_mem_mb: float | None = None


@dataclass(frozen=True)
class Command:
    """A plain command to run instead of ``runners.child`` (issue 17): ``argv`` with exactly
    ``env`` (nothing of the worker's environment is added) in ``cwd``; ``user``/``group``: the
    uid/gid to run it as (None: the worker's own)."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    user: int | None = None
    group: int | None = None


class ComputeError(Exception):
    """The child stopped without a result; ``str()`` is the message for the job's owner.

    ``is_user_error``: the input is wrong (spec, data, artifact) rather than the platform.
    """

    def __init__(self, message: str, *, is_user_error: bool = True):
        super().__init__(message)
        self.is_user_error = is_user_error


class ComputeLost(ComputeError):
    """The compute ended without an answer (no result, error or stop event): killed by a signal
    it did not get from us (the kernel's OOM killer, an operator, a lost node) or crashed. Not the
    input's fault, so the job runs again from its checkpoint while attempts remain."""

    def __init__(self, message: str):
        super().__init__(message, is_user_error=False)


class LimitExceeded(ComputeError):
    """The run went over one of its ``Limits`` and was stopped."""


# What a child keeps of its parent's environment: what finding programs, libraries, locale and GPUs
# needs, never a secret (the database URL, secret and signing keys, broker and storage credentials
# stay in the worker and the web process). A model whose loading executes code, a user's code, a
# model server: whatever runs in a child reads only this (issue 17).
KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH")
KEPT_PREFIXES = ("CUDA_", "NVIDIA_", "NCCL_")


def clean_environment(parent: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment of a child process: the ``KEPT_VARIABLES`` and ``KEPT_PREFIXES`` of
    ``parent`` (``os.environ``), then ``extra``."""
    kept = {
        name: value
        for name, value in parent.items()
        if name in KEPT_VARIABLES or name.startswith(KEPT_PREFIXES)
    }
    return kept | extra


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint file in ``folder`` (``epoch-NNNNN.pt``), or None."""
    found = sorted(folder.glob(CHECKPOINT_GLOB)) if folder.is_dir() else []
    return found[-1] if found else None


def visible_devices(worker_gpus: str, gpus: int) -> list[str]:
    """The devices a job asking for ``gpus`` GPUs gets on a worker whose slot holds
    ``worker_gpus`` (``STEWARD_WORKER_GPUS``: comma-separated CUDA device indices or UUIDs): the
    first ``gpus`` of them; none for a CPU job. Raises ComputeError when the slot has fewer (a
    worker consuming a GPU class's queue without its devices)."""
    if gpus == 0:
        return []
    slot = [device.strip() for device in worker_gpus.split(",") if device.strip()]
    if len(slot) < gpus:
        raise ComputeError(
            f"the job asks for {gpus} GPU{'s' if gpus != 1 else ''} and this worker's slot has "
            f"{len(slot)} (STEWARD_WORKER_GPUS={worker_gpus!r}); start the workers of its class's "
            "queue with their devices",
            is_user_error=False,
        )
    return slot[:gpus]


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process, from ``/proc``; [] without it."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            # Plain open/read: this runs every few polls over every process of the host.
            with open(f"/proc/{name}/stat", "rb") as stat_file:
                raw = stat_file.read()
            # Fields after the command (which may hold spaces and parentheses): state, ppid, pgrp.
            fields = raw.rsplit(b")", 1)[1].split()
            found.append((int(name), int(fields[1]), int(fields[2])))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return found


def _has_children_files() -> bool:
    """Whether this kernel lists a thread's children (``/proc/<pid>/task/<tid>/children``,
    CONFIG_PROC_CHILDREN)."""
    return Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children").exists()


CHILDREN_FILES = _has_children_files()


def tree_processes(roots: set[int]) -> list[tuple[int, int]]:
    """(pid, process group) of ``roots`` still alive and all their descendants, followed through
    ``/proc/<pid>/task/<tid>/children`` (a few reads per process, not the whole process table).
    A descendant whose parent ended was handed to its reaper: inside a sandbox that is the
    sandbox's first process, among the roots; outside, only ``run_processes`` finds it."""
    found: list[tuple[int, int]] = []
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                group = int(stat_file.read().rsplit(b")", 1)[1].split()[2])
            threads = os.listdir(f"/proc/{pid}/task")
        except (OSError, IndexError, ValueError):
            continue  # ended
        found.append((pid, group))
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as children:
                    todo += [int(child) for child in children.read().split()]
            except (OSError, ValueError):
                continue
    return found


def run_processes(leader: int) -> list[tuple[int, int]]:
    """(pid, process group) of the processes of the run led by ``leader``: those of its group and
    their descendants (torchrun's ranks, each in a group of its own)."""
    table = _processes()
    members = {pid for pid, _, group in table if group == leader}
    children: dict[int, list[int]] = {}
    for pid, parent, _ in table:
        children.setdefault(parent, []).append(pid)
    todo = list(members)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in members:
                members.add(child)
                todo.append(child)
    return [(pid, group) for pid, _, group in table if pid in members]


def rss_mb(pids: list[int]) -> float:
    """Resident megabytes of ``pids`` together (``/proc/<pid>/statm``'s resident pages)."""
    total_pages = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total_pages += int(statm.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_pages * PAGE_BYTES / 2**20


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each of ``pids`` has used so far (``/proc/<pid>/stat`` fields 14
    and 15, in clock ticks); a process that ended meanwhile is left out."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                fields = stat_file.read().rsplit(b")", 1)[1].split()
            # After the command: state is field 3, so utime (14) and stime (15) are [11] and [12].
            found[pid] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return found


class Launch:
    """One run of ``task`` (a JSON-able dict for ``runners.child``) in a child process.

    ``run`` returns the child's result event; ``usage`` holds what it used afterwards, whether
    ``run`` returned or raised.

    ``devices``: the GPUs the run may use (``visible_devices``); a training task given more than
    one runs under torchrun, one rank per device (on a host without CUDA, ranks on the CPU).
    """

    def __init__(
        self,
        task: dict[str, Any],
        limits: Limits,
        workdir: Path,
        devices: Sequence[str] = (),
        *,
        command: Command | None = None,
        serves: bool = False,
    ):
        self.task = {**task, "threads": limits.threads}
        self.limits = limits
        self.workdir = workdir
        self.devices = list(devices)
        self.ranks = len(self.devices) if task.get("kind") == "train" and len(self.devices) > 1 else 1
        self.usage = Usage()
        # A plain command (``Command``) rather than runners.child: ``task`` is then unused.
        self.plain = command
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._groups: set[int] = set()  # every process group of the run seen so far
        # CPU seconds last seen per process of the run: a sandbox's own PID namespace keeps its
        # processes' CPU time from reaching wait4 (issue 17), so the samples are the floor.
        self._cpu_seen: dict[int, float] = {}
        self.serves = serves
        self._input: Any = None  # a serving child's stdin, once started
        self._input_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        """Write ``message`` as one JSON line to a serving child's stdin (any thread). Raises
        ComputeError when the child is not reading (not started, ended, or its input closed)."""
        with self._input_lock:
            if self._input is None:
                raise ComputeError("the prediction process is not running", is_user_error=False)
            try:
                self._input.write(json.dumps(message).encode() + b"\n")
                self._input.flush()
            except (OSError, ValueError) as exc:
                raise ComputeError(
                    f"the prediction process stopped reading: {exc}", is_user_error=False
                ) from exc

    def close_input(self) -> None:
        """End a serving child's requests (EOF on its stdin); harmless when already closed."""
        with self._input_lock:
            if self._input is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._input.close()
                self._input = None

    def command(self, task_file: Path) -> list[str]:
        """The child's command line: ``python -m runners.child <task.json>``, under torchrun
        (``--standalone``: one node, its own rendezvous) when the run has several ranks."""
        child = ["-m", "runners.child", str(task_file)]
        if self.ranks == 1:
            return [sys.executable, *child]
        return [
            sys.executable,
            *["-m", "torch.distributed.run", "--standalone", "--nnodes", "1"],
            *["--nproc_per_node", str(self.ranks), *child],
        ]

    def run(
        self,
        on_event: Callable[[dict[str, Any]], None],
        check: Callable[[], None],
        *,
        poll_s: float = 0.5,
        grace_s: float = 2.0,
    ) -> dict[str, Any]:
        """Start the child and follow it to its end; returns its ``result`` event.

        ``on_event(event)`` gets each progress event (``log``, ``data``, ``epoch``, ``resumed``,
        ``checkpoint``) in the order written; ``check()`` runs at least every ``poll_s`` seconds.
        Whatever either raises (a cancel, a lost claim) stops the child's group (SIGTERM, SIGKILL
        after ``grace_s``) and propagates. Raises ComputeError with the child's own message when it
        reports an error or dies without a result, LimitExceeded when it went over ``limits``.

        A plain ``Command``: ``on_event`` gets ``{"event": "output", "stream": "stdout" |
        "stderr", "text": line}`` per line (no newline); returns ``{"event": "result",
        "exit_code": 0}``; a non-zero exit raises ComputeError (a user error) with the code and
        its last stderr lines, a death by SIGKILL, SIGSEGV or SIGBUS (exit status 128 + N through the
        shell) ComputeLost, so it runs again while attempts remain. The soft wall time does not apply
        (SIGUSR1 would kill code that does not expect it).
        """
        if self.plain is not None:
            return self._run_plain(self.plain, on_event, check, poll_s, grace_s)
        task_file = self.workdir / "task.json"
        task_file.write_text(json.dumps(self.task))
        # Each rank gets its share of the job's threads (runners.child sets torch's count to it).
        threads = str(max(1, self.limits.threads // self.ranks))
        env = clean_environment(
            os.environ,
            HOME=str(self.workdir),
            OMP_NUM_THREADS=threads,
            MKL_NUM_THREADS=threads,
            # Always set: an empty list hides every GPU from a CPU job on a GPU host.
            CUDA_VISIBLE_DEVICES=",".join(self.devices),
        )
        with open(self.workdir / "child.stderr", "w+b") as stderr:
            process = subprocess.Popen(  # noqa: S603 - our interpreter, our module, our file
                self.command(task_file),
                stdin=subprocess.PIPE if self.serves else None,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                env=env,
                cwd=Path(__file__).resolve().parent.parent,
            )
            with self._input_lock:
                self._input = process.stdin
            try:
                return self._follow(process, stderr, on_event, check, poll_s, grace_s)
            finally:
                self.close_input()

    def _run_plain(
        self,
        command: Command,
        on_event: Callable[[dict[str, Any]], None],
        check: Callable[[], None],
        poll_s: float,
        grace_s: float,
    ) -> dict[str, Any]:
        with open(self.workdir / "child.stderr", "w+b") as unused:
            process = subprocess.Popen(  # noqa: S603 - the sandbox's argv, never a shell string
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=command.env,
                cwd=command.cwd,
                user=command.user,
                group=command.group,
                extra_groups=[] if command.group is not None else None,
            )
            readers = [
                (_read_lines, (process.stdout, "stdout")),
                (_read_lines, (process.stderr, "stderr")),
            ]
            return self._follow(process, unused, on_event, check, poll_s, grace_s, readers)

    def _follow(
        self,
        process: subprocess.Popen[bytes],
        stderr: BinaryIO,
        on_event: Callable[[dict[str, Any]], None],
        check: Callable[[], None],
        poll_s: float,
        grace_s: float,
        sources: list[tuple[Callable[..., None], tuple[Any, ...]]] | None = None,
    ) -> dict[str, Any]:
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        sources = sources or [(_read_events, (process.stdout,))]
        readers = [
            threading.Thread(target=target, args=(*args, events), daemon=True) for target, args in sources
        ]
        for reader in readers:
            reader.start()
        open_streams = len(readers)
        started = time.monotonic()
        pgid = process.pid  # start_new_session: the child leads its own group
        ended: dict[str, Any] = {}
        soft_sent = False
        reported = False  # the child's first event: its SIGUSR1 handler is installed
        exited = eof = False
        exited_polls = 0
        polls = 0
        running: list[tuple[int, int]] = []
        try:
            while not (exited and eof):
                exited = self._reap(process, block=False)
                deadline = time.monotonic() + poll_s
                while not eof and (wait := deadline - time.monotonic()) > 0:
                    try:
                        event = events.get(timeout=wait)
                    except queue.Empty:
                        break
                    reported = True
                    if event is None:
                        open_streams -= 1
                        eof = open_streams == 0
                    elif event.get("event") in ("result", "error", "stopped", "usage"):
                        ended[event["event"]] = event
                    else:
                        if event.get("event") == "output" and event["stream"] == "stderr":
                            self._stderr_tail.append(event["text"])
                        if event.get("event") == "data":
                            self.usage.rows_read = int(event["rows_read"])
                            self.usage.bytes_read = int(event["bytes_read"])
                        on_event(event)
                if exited:
                    exited_polls += 1
                    if exited_polls > 2:
                        # Something the child started still holds its output open.
                        for group in self._groups | {pgid}:
                            with contextlib.suppress(ProcessLookupError, PermissionError):
                                os.killpg(group, signal.SIGKILL)
                    continue
                if eof and self._exits_within(process, poll_s):
                    continue  # reaped: the next pass ends the loop
                check()
                if polls % SCAN_EVERY_POLLS == 0 or not CHILDREN_FILES:
                    running = run_processes(pgid)
                else:
                    # Between whole scans, the known processes and their descendants: a process
                    # the run starts is sampled (and held to the memory limit) at the next poll.
                    running = tree_processes({pid for pid, _ in running} | {pgid})
                self._groups.update(group for _, group in running)
                polls += 1
                seen = cpu_seconds([pid for pid, _ in running])
                running = [(pid, group) for pid, group in running if pid in seen]
                self._cpu_seen.update(seen)
                self.usage.peak_rss_mb = max(self.usage.peak_rss_mb, rss_mb([pid for pid, _ in running]))
                elapsed = time.monotonic() - started
                limits = self.limits
                if limits.memory_mb is not None and self.usage.peak_rss_mb > limits.memory_mb:
                    raise LimitExceeded(
                        f"exceeded the memory limit of {limits.memory_mb} MB "
                        f"(peak {self.usage.peak_rss_mb:.0f} MB); stopped"
                    )
                if limits.wall_time_s is not None and elapsed > limits.wall_time_s:
                    raise LimitExceeded(f"exceeded the wall time limit of {limits.wall_time_s:g} s; killed")
                if (
                    self.plain is None
                    and limits.soft_wall_time_s is not None
                    and elapsed > limits.soft_wall_time_s
                    and reported
                    and not soft_sent
                ):
                    # Asks the child to save a checkpoint and stop after its current epoch: under
                    # torchrun, its ranks (torchrun itself would die of the signal).
                    for group in self._groups - {pgid} if self.ranks > 1 else {pgid}:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(group, signal.SIGUSR1)
                    soft_sent = True
        except BaseException:
            self._stop(process, pgid, grace_s)
            raise
        finally:
            if not exited:
                self._stop(process, pgid, grace_s)
            for group in self._groups | {pgid}:  # anything the run left behind in its groups
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            self.usage.wall_time_s = time.monotonic() - started
            for reader in readers:
                reader.join(timeout=grace_s)
        if self.plain is not None:
            return self._plain_outcome(process)
        return self._outcome(process, stderr, ended)

    def _reap(self, process: subprocess.Popen[bytes], *, block: bool) -> bool:
        """Collect the child's exit status and resource use (``os.wait4``); True once it exited."""
        if process.returncode is not None:
            return True
        try:
            pid, status, rusage = os.wait4(process.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            process.returncode = -1
            return True
        if pid == 0:
            return False
        process.returncode = os.waitstatus_to_exitcode(status)
        # wait4 counts the child and what it reaped; the samples count what it could not (the
        # processes of a sandbox's PID namespace): whichever saw more.
        self.usage.cpu_time_s = max(rusage.ru_utime + rusage.ru_stime, sum(self._cpu_seen.values()))
        # ru_maxrss is in kilobytes on Linux: the largest single process of the run.
        self.usage.peak_rss_mb = max(self.usage.peak_rss_mb, rusage.ru_maxrss / PAGE_MB)
        return True

    def _exits_within(self, process: subprocess.Popen[bytes], seconds: float) -> bool:
        """Whether the child exits (and is reaped) within ``seconds``. Its output has ended, so its
        exit is usually a moment away: polled every 2 ms for the first 50 ms rather than slept
        through (a fixed 50 ms sleep here was part of every job's wall time, issue 17's runner
        overhead), then every 20 ms: a child that closed its output and runs on is checked
        (limits, cancel) once a poll, as any other, not 20 times a second."""
        began = time.monotonic()
        while not self._reap(process, block=False):
            waited = time.monotonic() - began
            if waited >= seconds:
                return False
            time.sleep(0.002 if waited < 0.05 else 0.02)
        return True

    def _stop(self, process: subprocess.Popen[bytes], pgid: int, grace_s: float) -> None:
        """SIGTERM to the run's groups, SIGKILL after ``grace_s``; reaps the child."""
        if process.returncode is not None:
            return
        self._groups.update(group for _, group in run_processes(pgid))
        for group in self._groups | {pgid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self._reap(process, block=False):
                return
            time.sleep(0.05)
        for group in self._groups | {pgid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        self._reap(process, block=True)

    def _outcome(
        self, process: subprocess.Popen[bytes], stderr: BinaryIO, ended: dict[str, Any]
    ) -> dict[str, Any]:
        if "usage" in ended:
            self.usage.gpu_time_s = ended["usage"].get("gpu_time_s")
            self.usage.peak_gpu_mem_mb = ended["usage"].get("peak_gpu_mem_mb")
        if "result" in ended and process.returncode == 0:
            return ended["result"]
        if "stopped" in ended:
            epochs = ended["stopped"]["epoch"]
            raise LimitExceeded(
                f"stopped at the soft time limit of {self.limits.soft_wall_time_s:g} s after "
                f"{epochs} epoch{'s' if epochs != 1 else ''}; checkpoint saved"
            )
        if "error" in ended:
            error = ended["error"]
            raise ComputeError(str(error["message"]), is_user_error=bool(error.get("is_user_error")))
        stderr.seek(0)
        tail = stderr.read().decode("utf-8", "replace")[-STDERR_TAIL_CHARS:].strip()
        code = process.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with {code}"
        raise ComputeLost(
            f"the job's process {how} without a result" + (f"; its last output: {tail}" if tail else "")
        )

    def _plain_outcome(self, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        code = process.returncode
        if code == 0:
            return {"event": "result", "exit_code": 0}
        # Each line cut like the log's tail: the message is the job's error, shown in its lists.
        tail = "\n".join(line[:STDERR_LINE_CHARS] for line in self._stderr_tail)
        last = f"; its last stderr lines:\n{tail}" if tail else ""
        # A shell (and bwrap) reports its child's death by signal N as the exit status 128 + N.
        signum = -code if code is not None and code < 0 else (code or 0) - 128
        if signum in LOST_SIGNALS or (code is not None and code < 0):
            raise ComputeLost(f"the code was killed by signal {signum}{last}")
        raise ComputeError(f"the code exited with {code}{last}")


def _read_lines(stream: Any, name: str, events: queue.Queue[dict[str, Any] | None]) -> None:
    """Turn each line of a command's ``name`` stream into an ``output`` event; None at its end.
    Bytes that are not UTF-8, and NUL (PostgreSQL's text refuses it), are replaced; a line longer
    than ``OUTPUT_LINE_BYTES`` is split."""
    try:
        while raw := stream.readline(OUTPUT_LINE_BYTES):
            text = raw.decode("utf-8", "replace").rstrip("\r\n").replace("\x00", "\ufffd")
            events.put({"event": "output", "stream": name, "text": text})
    finally:
        events.put(None)


def _read_events(stream: Any, events: queue.Queue[dict[str, Any] | None]) -> None:
    """Parse the child's JSON lines into ``events``; None at the end of its output."""
    try:
        for raw in stream:
            with contextlib.suppress(ValueError):
                event = json.loads(raw)
                if isinstance(event, dict):
                    events.put(event)
    finally:
        events.put(None)
