"""Hostile code runs (issue 17): code that prints what a database refuses, fills its temporary
folders or the worker's disk. Each is a failed job with the reason, or a log kept whole, never
an internal error; run through the worker's ``execute_job`` like any code run."""

from __future__ import annotations

import pytest

from governance.models import Dataset
from runners.code_runs import do_submit_code_run
from runners.execute import execute_job
from runners.models import Job, JobLogChunk
from tests.runners.code_fixtures import make_code_version
from tests.runners.test_sandbox import needs_bwrap


def _run(team, scientist, script: str, **submit) -> tuple[str, Job, str]:
    """Run ``script`` (probe.py) as a code run; returns (final state, job, whole stored log)."""
    code = make_code_version(
        team, scientist, {"probe.py": script, "MLproject": "entry_points: {main: {command: python probe.py}}"}
    )
    job = do_submit_code_run(code_version=code, entry_point="main", actor=scientist, **submit)
    state = execute_job(job.pk)
    job = Job.objects.get(pk=job.pk)
    log = "".join(JobLogChunk.objects.filter(job=job).order_by("seq").values_list("text", flat=True))
    return state, job, log


@pytest.mark.django_db
def test_binary_garbage_with_nul_bytes_is_kept_in_the_log_and_the_error(team, scientist):
    """PostgreSQL's text refuses NUL: stored as it came, the run failed as an internal error and
    lost its whole log. The NUL (like bytes that are not UTF-8) is now a replacement character."""
    state, job, log = _run(
        team,
        scientist,
        r"""
        import sys
        sys.stdout.buffer.write(b"out\x00put \xff\xfe garbage\n")
        sys.stdout.flush()
        sys.stderr.buffer.write(b"err\x00or at the end\n")
        sys.exit(3)
        """,
    )
    assert state == "failed"
    assert "exited with 3" in job.error
    assert "err\ufffdor at the end" in job.error
    assert "out\ufffdput \ufffd\ufffd garbage\n" in log
    assert "err\ufffdor at the end\n" in log
    assert "internal error" not in job.error


@needs_bwrap
@pytest.mark.django_db
def test_the_sandboxs_tmp_and_shm_hold_at_most_the_jobs_memory_limit(team, scientist):
    """Files in the sandbox's tmpfs are memory that no process's RSS shows: unbounded, a code
    under a 128 MB limit could fill the host's memory through /tmp or /dev/shm."""
    state, job, log = _run(
        team,
        scientist,
        """
        import errno
        for folder in ("/tmp", "/dev/shm"):
            try:
                with open(f"{folder}/fill", "wb") as handle:
                    for _ in range(100):  # 100 MiB: more than half of 128 MB
                        handle.write(b"x" * 2**20)
                print(f"wrote 100 MiB to {folder}")
            except OSError as exc:
                print(f"{folder}: {errno.errorcode[exc.errno]}")
        """,
        spec={"limits": {"memory_mb": 128}},
    )
    assert state == "succeeded", job.error
    assert "/tmp: ENOSPC\n" in log
    assert "/dev/shm: ENOSPC\n" in log
    assert "wrote 100 MiB" not in log


@pytest.mark.django_db
def test_a_child_process_over_the_memory_limit_stops_the_run(team, scientist):
    """Memory a code run's own children hold counts: a child started after the run began (found
    through its parent's children between the worker's whole scans of the process table) that
    grows past the limit stops the run with its peak."""
    state, job, log = _run(
        team,
        scientist,
        r"""
        import subprocess, sys, time
        time.sleep(0.8)
        print("starting the child", flush=True)
        subprocess.run([sys.executable, "-c",
                        "import time; blocks = []\n"
                        "for _ in range(60):\n"
                        "    blocks.append(bytearray(10 * 2**20)); time.sleep(0.05)\n"
                        "time.sleep(30)"])
        print("the child ended", flush=True)
        """,
        spec={"limits": {"memory_mb": 300, "wall_time_s": 120}},
    )
    assert state == "failed"
    assert "exceeded the memory limit of 300 MB" in job.error
    assert "starting the child" in log
    assert "the child ended" not in log
    assert job.peak_rss_mb > 300


FILL = """
import os, time
out = os.environ["STEWARD_OUTPUT_DIR"]
os.makedirs(f"{{out}}/datasets", exist_ok=True)
for i in range(600):  # stopped by the worker long before (a minute at most otherwise)
    {write}
    time.sleep(0.1)
print("never stopped")
"""


@pytest.mark.django_db
def test_a_code_filling_the_workers_disk_is_stopped_and_registers_nothing(team, scientist, settings):
    settings.STEWARD_CODE_OUTPUT_MAX_BYTES = 4 * 2**20
    write = 'open(f"{out}/datasets/big-{i}.bin", "wb").write(os.urandom(2**20))'
    state, job, log = _run(team, scientist, FILL.format(write=write), outputs={"datasets": ["big-0"]})
    assert state == "failed"
    assert "STEWARD_CODE_OUTPUT_MAX_BYTES (4194304 bytes)" in job.error
    assert "never stopped" not in log
    assert not Dataset.objects.filter(team=team, name="big-0").exists()


@pytest.mark.django_db
def test_a_code_making_files_without_end_is_stopped(team, scientist, settings):
    settings.STEWARD_CODE_OUTPUT_MAX_FILES = 50
    write = 'os.makedirs(f"{out}/tree/{i}/a/b", exist_ok=True)'
    state, job, log = _run(team, scientist, FILL.format(write=write))
    assert state == "failed"
    assert "STEWARD_CODE_OUTPUT_MAX_FILES (50)" in job.error
    assert "never stopped" not in log


@pytest.mark.parametrize(
    ("setting", "write"),
    [
        (
            "STEWARD_CODE_OUTPUT_MAX_BYTES",
            'open(f"{out}/datasets/big.csv", "w").write("a\\n" + "1\\n" * 2**22)',
        ),
        ("STEWARD_CODE_OUTPUT_MAX_FILES", '[os.makedirs(f"{out}/tree/{i}") for i in range(200)]'),
    ],
    ids=["bytes", "files"],
)
@pytest.mark.django_db
def test_a_code_going_over_the_output_bounds_just_before_it_exits_is_failed(
    team, scientist, settings, setting, write
):
    """The bounds hold for what the run leaves, not only for what a poll happened to see: a code
    that writes past them in one go and exits at once (no poll between) fails and registers
    nothing. The launcher reaps a child whose output ended without a last poll (issue 17's
    runner overhead), so the worker measures the folders once more after the run."""
    settings.STEWARD_CODE_OUTPUT_MAX_BYTES = 4 * 2**20
    settings.STEWARD_CODE_OUTPUT_MAX_FILES = 50
    state, job, log = _run(
        team,
        scientist,
        f"""
        import os
        out = os.environ["STEWARD_OUTPUT_DIR"]
        os.makedirs(f"{{out}}/datasets", exist_ok=True)
        {write}
        print("wrote")
        """,
        outputs={"datasets": ["big"]} if setting.endswith("BYTES") else {},
    )
    assert state == "failed", job.error
    assert setting in job.error
    assert "wrote\n" in log
    assert not Dataset.objects.filter(team=team, name="big").exists()


@pytest.mark.parametrize(
    "make",
    [
        'os.symlink("/etc/passwd", f"{out}/leak.csv")',
        'open(f"{out}/mine.csv", "w").write("a\\n1\\n"); os.link(f"{out}/mine.csv", f"{out}/leak.csv")',
    ],
    ids=["symlink", "hardlink"],
)
@pytest.mark.django_db
def test_an_output_that_is_a_link_fails_the_run_and_registers_nothing(team, scientist, make):
    """The worker reads outputs with its own rights: a link would let the code publish a file it
    cannot read (a host file in none mode) as a dataset version of its team."""
    state, job, _log = _run(
        team,
        scientist,
        f"""
        import os
        out = os.path.join(os.environ["STEWARD_OUTPUT_DIR"], "datasets")
        {make}
        """,
        outputs={"datasets": ["leak"]},
    )
    assert state == "failed"
    assert job.error == "output datasets/leak.csv: not a regular file"
    assert not Dataset.objects.filter(team=team, name="leak").exists()


@pytest.mark.django_db
def test_a_megabyte_line_is_whole_in_the_log_but_cut_in_the_tail_and_the_error(team, scientist, client_for):
    """Output comes in 64 KiB pieces of a long line: 50 of them made a 3 MB ``log_tail``, sent
    with the job in every list, and 20 on stderr a 1.3 MB error."""
    state, job, log = _run(
        team,
        scientist,
        """
        import sys
        print("x" * 2**20)
        print("e" * 2**20, file=sys.stderr)
        sys.exit(1)
        """,
    )
    assert state == "failed"
    # Each line comes in 64 KiB pieces, each a line of the log; stdout's and stderr's pieces are
    # read by two readers, so they may interleave (a CI run saw it): each stream's pieces, in
    # their order, make its line whole.
    pieces = log.split("\n")
    assert "".join(piece for piece in pieces if piece and set(piece) == {"x"}) == "x" * 2**20
    assert "".join(piece for piece in pieces if piece and set(piece) == {"e"}) == "e" * 2**20
    listed = client_for(scientist).get("/api/jobs/").json()["results"]
    [shown] = [row for row in listed if row["id"] == job.pk]
    assert shown["log_tail"].count("x") <= 50 * 1000
    assert "x" * 1000 in shown["log_tail"]
    assert len(shown["error"]) < 25 * 1000
    assert "e" * 1000 in shown["error"]


@pytest.mark.django_db
def test_a_fast_printing_code_is_written_as_it_goes_whatever_the_live_interval(team, scientist, settings):
    """The worker holds a code run's lines between two log writes: paced by time alone
    (STEWARD_LIVE_FLUSH_S), a code printing short lines fast held tens of MB per second of
    interval in the worker (not under the job's memory limit). Past a few MB of pending lines
    the worker writes them at once: a run printing ~8 MB under a 1e9 s interval is stored in
    several writes, and whole."""
    settings.STEWARD_LIVE_FLUSH_S = 1e9
    state, job, log = _run(
        team,
        scientist,
        """
        import sys
        for i in range(200_000):
            sys.stdout.write(f"line {i:08d} " + "x" * 24 + "\\n")
        """,
    )
    assert state == "succeeded", job.error
    assert log.count("\n") >= 200_000
    assert "line 00199999 " in log
    writes = JobLogChunk.objects.filter(job=job, stream="stdout").values("created_at").distinct()
    assert writes.count() > 1
