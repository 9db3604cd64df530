"""How often a running code run's live telemetry is written (issue 17's runner overhead): the
worker's buffered log lines and the templates' metric batches, both paced by the setting
``STEWARD_LIVE_FLUSH_S``, which the worker also gives each run as the variable of that name.

No Django and nothing heavy: ``config.settings`` reads the setting with it, and code runs read the
variable with it inside their sandbox (``runners.workload_env.live_flush_s``)."""

from __future__ import annotations

VARIABLE = "STEWARD_LIVE_FLUSH_S"
# The job page reads the log every 1.5 s and the charts every 2 s: writing more often only takes
# CPU from the training beside it.
DEFAULT = "2"


def parse_flush_s(raw: str) -> float:
    """Seconds between live writes from ``raw`` (Python's float syntax: "1e3" is 1000). Raises
    ValueError naming the variable unless it is a finite number >= 0 (infinite: nothing would be
    written before the run's end)."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"{VARIABLE} must be a number of seconds >= 0, got {raw!r}")
    return value
