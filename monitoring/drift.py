"""Data drift between a reference and a current frame with evidently's ``DataDriftPreset``.

No Django import. Evidently chooses each column's method and threshold by its documented rules
(K-S / chi-square below 1,000 rows, Wasserstein / Jensen-Shannon above); a column drifted when
evidently's per-column drift test fails, and the dataset drifted when the share of drifted
columns reaches ``drift_share`` (evidently's default 0.5).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

# Evidently holds whole frames in memory and renders every point; above this many rows the
# human report (and its verdicts) use a seeded random sample of each frame.
MAX_REPORT_ROWS = 200_000


class DriftInputError(ValueError):
    """The frames cannot be compared; the message names the column or the empty side."""


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float | None
    threshold: float
    is_drifted: bool


@dataclass(frozen=True)
class DriftResult:
    columns: list[ColumnDrift]
    drift_share: float
    drifted_count: int
    drifted_fraction: float
    is_dataset_drift: bool
    sampled_rows: int | None
    html: str

    def columns_as_dicts(self) -> list[dict]:
        return [asdict(column) for column in self.columns]


def _inert(text: str) -> str:
    """``text`` unable to close or comment out a ``<script>`` element.

    Evidently inlines column names and category values into ``<script>`` blocks of its HTML
    without escaping ``</``: an uploaded value ``</script><script>...`` would run in the
    viewer's browser. Look-alike characters keep the report readable.
    """
    return text.replace("</", "<\u2215").replace("<!", "<\u01c3")


def _inert_frame(frame: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    frame = frame.rename(columns=names)
    for column in frame.columns:
        series = frame[column]
        if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series)):
            frame[column] = series.map(lambda v: _inert(v) if isinstance(v, str) else v)
    return frame


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A seeded random sample of at most ``max_rows`` rows of ``frame`` (the frame itself if smaller)."""
    return frame.sample(n=max_rows, random_state=seed) if len(frame) > max_rows else frame


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    drift_share: float = 0.5,
    max_rows: int = MAX_REPORT_ROWS,
) -> DriftResult:
    """Per-column drift of ``current`` against ``reference`` over ``columns``, plus the HTML report.

    Each side is sampled (seeded) down to ``max_rows`` rows first; ``sampled_rows`` says so.
    Raises DriftInputError if a side is empty, a column is missing from a side, or a column
    holds no values on a side (evidently would abort the whole report on it).
    """
    if not 0 < drift_share <= 1:
        raise DriftInputError(f"drift_share must be in (0, 1], got {drift_share}")
    if reference.empty:
        raise DriftInputError("the reference data has no rows")
    if current.empty:
        raise DriftInputError("the current data has no rows")
    if not columns:
        raise DriftInputError("no columns to compare")
    for side, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DriftInputError(f"the {side} data lacks column(s) {', '.join(map(repr, missing))}")
        empty = [c for c in columns if frame[c].isna().all()]
        if empty:
            raise DriftInputError(
                f"column(s) {', '.join(map(repr, empty))} have no values in the {side} data"
            )
    sampled = max(len(reference), len(current)) > max_rows
    reference, current = (
        sample_rows(reference[columns], max_rows, 0),
        sample_rows(current[columns], max_rows, 1),
    )
    safe_names = {column: _inert(str(column)) for column in columns}
    original_names = {safe: column for column, safe in safe_names.items()}
    snapshot = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
        reference_data=_inert_frame(reference, safe_names), current_data=_inert_frame(current, safe_names)
    )
    payload = snapshot.dict()
    metrics = {m["id"]: m for m in payload["metrics"]}
    results = []
    for test in payload["tests"]:
        metric = metrics.get(test.get("metric_config", {}).get("metric_id"))
        config = (metric or {}).get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        score = metric["value"]
        results.append(
            ColumnDrift(
                column=original_names.get(config["column"], config["column"]),
                method=config["method"],
                score=None if score is None or math.isnan(score) else float(score),
                threshold=float(config["threshold"]),
                is_drifted=test["status"] == "FAIL",
            )
        )
    order = {name: i for i, name in enumerate(columns)}
    results.sort(key=lambda c: order.get(c.column, len(order)))
    drifted = sum(c.is_drifted for c in results)
    fraction = drifted / len(results) if results else 0.0
    return DriftResult(
        columns=results,
        drift_share=drift_share,
        drifted_count=drifted,
        drifted_fraction=fraction,
        is_dataset_drift=bool(results) and fraction >= drift_share,
        sampled_rows=max_rows if sampled else None,
        html=snapshot.get_html_str(as_iframe=False),
    )


class ReportTimeout(Exception):
    """The report's child process ran past its time limit and was killed."""


def _compare_in_child(folder: Path) -> None:
    """The child's side: frames and options from ``folder``, the outcome written back there."""
    job = json.loads((folder / "job.json").read_text())
    reference = pd.read_pickle(folder / "reference.pkl")  # noqa: S301 - written by our parent
    current = pd.read_pickle(folder / "current.pkl")  # noqa: S301 - written by our parent
    try:
        rows = max(len(reference), len(current), 1)
        result = compare(reference, current, job["columns"], job["drift_share"], max_rows=rows)
    except DriftInputError as exc:
        (folder / "input_error.txt").write_text(str(exc))
        return
    except Exception as exc:  # reported by the parent as the report's error
        (folder / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
        return
    (folder / "report.html").write_text(result.html, encoding="utf-8")
    (folder / "result.json").write_text(json.dumps({"columns": result.columns_as_dicts()}))


def compare_with_time_limit(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    drift_share: float,
    time_limit_s: float,
    folder: Path,
) -> tuple[Path, list[dict]]:
    """``compare`` in a child process killed after ``time_limit_s`` seconds (issue 11: evidently
    took 507 s on one high-cardinality column). Returns (path of the HTML in ``folder``, per-column
    verdicts). Raises ReportTimeout past the limit, DriftInputError for frames evidently cannot
    compare, RuntimeError if the child failed. A new interpreter (``python -m monitoring.drift``),
    not ``multiprocessing``: a prefork Celery worker's pool processes are daemons, which may not
    have multiprocessing children, and a fork would copy the worker's threads and connections."""
    reference.to_pickle(folder / "reference.pkl")
    current.to_pickle(folder / "current.pkl")
    (folder / "job.json").write_text(json.dumps({"columns": list(columns), "drift_share": drift_share}))
    root = Path(__file__).resolve().parent.parent
    # Only what the interpreter needs: the worker's own settings and secrets stay with it.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),  # caches a library may write go with the report's scratch folder
        "PYTHONPATH": str(root),
    }
    with (folder / "child.log").open("wb") as log:
        child = subprocess.Popen(  # noqa: S603 - our interpreter running our module
            [sys.executable, "-m", "monitoring.drift", str(folder)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            child.wait(time_limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise ReportTimeout(
                f"the report ran past its time limit of {time_limit_s:g} s and was stopped"
            ) from None
    if (folder / "input_error.txt").exists():
        raise DriftInputError((folder / "input_error.txt").read_text())
    if (folder / "error.txt").exists():
        raise RuntimeError((folder / "error.txt").read_text())
    if child.returncode != 0 or not (folder / "result.json").exists():
        tail = (folder / "child.log").read_text(errors="replace")[-500:]
        raise RuntimeError(f"the report's process ended with exit code {child.returncode}: {tail}")
    return folder / "report.html", json.loads((folder / "result.json").read_text())["columns"]


if __name__ == "__main__":
    _compare_in_child(Path(sys.argv[1]))
