"""The worker's side of a child that serves predictions (issue 15's evaluation jobs). No Django.

The evaluation engine (``runners.evaluation``) runs in the worker and asks a model for
predictions many times: the rows once, then perturbed rows (robustness) and shuffled rows
(permutation importance). The model lives in a serving child (``runners.child``'s ``serve``
task), so torch is never imported and no user pickle is ever loaded in the worker, and the
model's code cannot touch the numbers that judge it.

``ChildPredictions`` runs the engine in a thread of its own while the caller's thread follows the
child with ``launcher.Launch.run`` (its database checks stay on the caller's connection): each
``predict`` writes the rows as parquet, sends a request on the child's stdin and waits for the
answer event, which ``on_event`` routes back. Whatever ends the child wakes the waiting thread.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from governance import datafiles
from runners import launcher
from runners.evaluation import Predict, Predictions

T = TypeVar("T")
ANSWERS = frozenset({"ready", "predicted", "predict_failed"})
# The prefix of the answer's columns of each class's probability (the child is told it).
CLASS_PROBA_PREFIX = "proba:"


class PredictionFailed(Exception):
    """The child could not predict these rows (the model's own error, its message), or the child
    is gone; the engine reports it as the predictor's failure."""


class ChildPredictions:
    """Predictors backed by a serving child; ``workdir`` holds the request and answer files."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.launch: launcher.Launch | None = None
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._is_gone = False
        self.ready: dict[str, Any] = {}

    def on_event(self, event: dict[str, Any]) -> bool:
        """Route the child's answer events to the waiting thread; False for any other event."""
        if event.get("event") not in ANSWERS:
            return False
        self._answers.put(event)
        return True

    def _next_answer(self) -> dict[str, Any]:
        answer = self._answers.get()
        if answer is None:
            self._is_gone = True
            raise PredictionFailed("the prediction process ended")
        return answer

    def predictor(self, model: str, positive_label: str | None, *, each_class: bool = False) -> Predict:
        """The predictor protocol over the child's ``model`` (a key of its task's ``models``);
        asks for ``positive_label``'s probability when given, else, with ``each_class`` (a
        multiclass evaluation), every class's (``Predictions.classes`` names the columns)."""

        def predict(frame: pd.DataFrame) -> Predictions:
            if self._is_gone or self.launch is None:
                raise PredictionFailed("the prediction process ended")
            number = next(self._ids)
            rows, output = self.workdir / f"rows-{number}.parquet", self.workdir / f"output-{number}.parquet"
            rows.write_bytes(datafiles.write_frame(frame.reset_index(drop=True), "parquet"))
            request = {
                "id": number,
                "model": model,
                "rows": str(rows),
                "output": str(output),
                "positive_label": positive_label,
                "class_probabilities": CLASS_PROBA_PREFIX if each_class and positive_label is None else None,
            }
            try:
                self.launch.send(request)
                answer = self._next_answer()
                if answer.get("id") != number:  # one request at a time: a stray answer is a bug
                    raise PredictionFailed(f"answer {answer.get('id')} to request {number}")
                if answer["event"] == "predict_failed":
                    raise PredictionFailed(answer["message"])
                answered = datafiles.read_frame(output, "parquet", output.name)
            finally:
                rows.unlink(missing_ok=True)
            output.unlink(missing_ok=True)
            labels = answered["prediction"].to_numpy()
            if "proba" in answered.columns:
                return Predictions(labels=labels, proba=answered["proba"].to_numpy(np.float64))
            each = [column for column in answered.columns if column.startswith(CLASS_PROBA_PREFIX)]
            if each:
                classes = tuple(column[len(CLASS_PROBA_PREFIX) :] for column in each)
                return Predictions(labels, answered[each].to_numpy(np.float64), classes)
            return Predictions(labels=labels)

        return predict

    def run(
        self,
        launch: launcher.Launch,
        follow: Callable[[], dict[str, Any]],
        work: Callable[[ChildPredictions], T],
    ) -> tuple[T, dict[str, Any]]:
        """Run ``work(self)`` in a thread once the child is ready, while ``follow()`` (the
        caller's ``launch.run(...)``) follows the child in this thread; the child's input is
        closed when ``work`` ends, so the child reports its result and exits.

        Returns (``work``'s value, the child's result event). Raises what ``follow`` raises (the
        child's error, a cancel, a limit) before anything of ``work``; else what ``work`` raised.
        """
        self.launch = launch
        outcome: dict[str, Any] = {}

        def body() -> None:
            try:
                self.ready = self._next_answer()
                outcome["value"] = work(self)
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc
            finally:
                launch.close_input()

        thread = threading.Thread(target=body, name="evaluation", daemon=True)
        thread.start()
        try:
            result = follow()
        finally:
            self._answers.put(None)  # wakes a thread still waiting on a child that is gone
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"], result
