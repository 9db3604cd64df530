"""The compute of one job, run by ``runners.launcher`` as ``python -m runners.child <task.json>``.

No Django import and no database: it reads the rows file, trains or predicts, writes the artifact
or the predictions to the path it was given, and reports JSON lines on its stdout (anything else
printed goes to stderr):

- ``{"event": "log", "message", "device"?}``; ``{"event": "data", "rows_read", "bytes_read"}``
- ``{"event": "resumed", "epoch", "history"}``; ``{"event": "epoch", "epoch", "epochs", "record"}``
- ``{"event": "checkpoint", "epoch", "path"}``; ``{"event": "stopped", "epoch", "checkpoint"}``
  (asked to stop by SIGUSR1: the soft time limit)
- ``{"event": "result", ...}`` (training: ``artifact``, ``metrics``, ``signature``, ``device``;
  inference and embedding: ``rows``, ``device``; serving: ``requests``, ``rows``, ``device``) or
  ``{"event": "error", "message", "is_user_error"}``
- ``{"event": "usage", "gpu_time_s", "peak_gpu_mem_mb", "cpu_time_s", "peak_rss_mb"}`` before it
  exits (GPU figures None without a GPU; CPU seconds and peak RSS of this process and its
  children, for a parent that cannot ``wait4`` it: the Ray backend).

Under torchrun (a training job on several GPUs, ``runners.launcher``) every rank runs this
module: each joins the process group and trains its share (``runners.training``); rank 0 alone
reports events, writes checkpoints and the artifact; another rank reports only its error.

The task (JSON): ``kind`` (train / infer / embed / serve), ``data`` {path, format, filename, name, where},
``threads``, ``output`` (file to write); training: ``spec``, ``checkpoint_dir``,
``checkpoint_every``, ``checkpoint_prune`` (keep only the latest checkpoint file; default true),
``resume`` (a checkpoint file or null); inference: ``model`` {path, sha256,
name, flavor}; it writes the rows with ``prediction`` and, for a model that gives class
probabilities, ``confidence`` (the predicted class's; monitors estimate accuracy from it).
Embedding (image drift, issue 11) takes the same ``model`` and writes, instead of the
predictions, the model's penultimate-layer activations of each row as columns ``e0``, ``e1``...
(``predictors.Predictor.embeddings``: only a Steward vision model gives them).

Serving (issue 15's evaluation jobs: the worker evaluates, the model predicts here): ``models``
{key: {path, sha256, name, flavor}} are loaded, ``{"event": "ready", "models": {key: flavor}}``
is reported, then each stdin line ``{"id", "model", "rows", "output", "positive_label",
"class_probabilities"}`` is answered by writing ``output`` (parquet: ``prediction`` and, when the
model gives the positive class's probability, ``proba``; without a positive label and with
``class_probabilities`` (a column prefix), each class's probability as a column named the prefix
and the class, when the model gives them) and reporting ``{"event": "predicted", "id"}``, or
``{"event": "predict_failed", "id", "message"}`` when the model cannot predict those rows (a
model failing on perturbed rows is a finding, not the end of the run). At EOF: the result.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from governance import datafiles
from runners.specs import SpecError, parse_spec

CHECKPOINT_NAME = "epoch-{epoch:05d}.pt"
PR_SET_PDEATHSIG = 1


class Reporter:
    """Writes events as JSON lines on the stream the parent reads; ``only``: the events written
    (None: all; a DDP rank other than 0 writes only its ``error``)."""

    def __init__(self, stream: TextIO, only: frozenset[str] | None = None):
        self.stream = stream
        self.only = only

    def __call__(self, event: str, **fields: Any) -> None:
        if self.only is not None and event not in self.only:
            return
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()


def _rank() -> tuple[int, int]:
    """(rank, world size) as torchrun set them in the environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the worker that started it dies: a killed worker
    leaves no compute running on (the process group is not the worker's)."""
    # Not Linux: no prctl; the parent's kill of the group is then the only stop.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(1)  # the parent died before we asked


def _load_rows(data: dict[str, Any], report: Reporter) -> Any:
    from runners.training import TrainingError

    path = Path(data["path"])
    frame = datafiles.read_frame(path, data["format"], data.get("filename") or path.name)
    report("data", rows_read=len(frame), bytes_read=path.stat().st_size)
    rows = datafiles.apply_where(frame, data.get("where") or {})
    if rows.empty:
        raise TrainingError(f"no rows of {data['name']} match where={data.get('where') or {}}")
    return rows


def _train(task: dict[str, Any], report: Reporter, stop_requested: list[bool]) -> None:
    import torch

    from runners import training

    rank, world_size = _rank()
    if world_size > 1:
        backend = training.init_distributed()
        report(
            "log",
            message=f"DDP under torchrun: world size {world_size}, backend {backend}, "
            f"{torch.get_num_threads()} thread(s) per rank",
        )
    rows = _load_rows(task["data"], report)
    spec = parse_spec(task["spec"], list(rows.columns))
    device = training.select_device()
    report(
        "log",
        message=f"training on {len(rows)} rows, {len(spec.features)} features, device {device}",
        device=str(device),
    )
    resume = None
    if task.get("resume"):
        try:
            resume = torch.load(task["resume"], map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file: training from the start is still right
            report(
                "log",
                message=f"checkpoint {Path(task['resume']).name} unreadable ({exc}); starting at epoch 1",
            )
        else:
            report("resumed", epoch=int(resume["epoch"]), history=resume["history"])
    folder = Path(task["checkpoint_dir"])
    prune = bool(task.get("checkpoint_prune", True))

    def on_checkpoint(epoch: int, state: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CHECKPOINT_NAME.format(epoch=epoch)
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, path)  # a worker killed mid-write leaves no torn checkpoint
        # Not when the worker stores each checkpoint (managed mode): it removes them once stored,
        # and one pruned here before its event was read would never be.
        for older in folder.glob("epoch-*.pt") if prune else ():
            if older != path:
                older.unlink(missing_ok=True)
        report("checkpoint", epoch=epoch, path=str(path))

    try:
        result = training.train(
            rows,
            spec,
            lambda epoch, epochs, record: report("epoch", epoch=epoch, epochs=epochs, record=record),
            resume=resume,
            checkpoint_every=int(task.get("checkpoint_every") or 0),
            on_checkpoint=on_checkpoint,
            should_stop=lambda: stop_requested[0],
        )
    except training.TrainingStopped as stopped:
        report("stopped", epoch=stopped.epoch, checkpoint=str(folder))
        return
    if rank != 0:
        return  # the same weights as rank 0's: one artifact, written once
    Path(task["output"]).write_bytes(result.artifact)
    report(
        "result",
        artifact=task["output"],
        metrics=result.metrics,
        signature=result.signature,
        device=result.device,
    )


def _infer(task: dict[str, Any], report: Reporter) -> None:
    from runners.serving import predictors

    model = task["model"]
    # Any flavor (issue 17): an MLflow model's loading runs its code, here in the child only.
    loaded = predictors.load(
        Path(model["path"]),
        flavor=model.get("flavor", predictors.STEWARD_TABULAR),
        sha256=model["sha256"],
        name=model["name"],
    )
    rows = _load_rows(task["data"], report)
    report(
        "log",
        message=f"predicting {len(rows)} rows with {model['name']} ({loaded.flavor}) on {loaded.device}",
        device=loaded.device,
    )
    output = rows.copy()
    output[predictors.PREDICTION_COLUMN] = loaded.predict(rows)
    # A classifier's probability of the class it predicted (issue 11): monitors estimate its
    # accuracy from it while labels are late (CBPE). Models without probabilities write none.
    try:
        each = loaded.predict_class_proba(rows)
    except predictors.PredictorError as exc:  # the predictions stand; only the confidence is missing
        report("log", message=f"no confidence column: {exc}")
        each = None
    if each is not None and len(each.columns):
        output["confidence"] = each.to_numpy(dtype="float64").max(axis=1)
    report("log", message=f"writing {len(output)} predictions")
    Path(task["output"]).write_bytes(datafiles.write_frame(output, task["data"]["format"]))
    report("result", rows=len(output), device=loaded.device)


def _embed(task: dict[str, Any], report: Reporter) -> None:
    import pandas as pd

    from runners.serving import predictors

    model = task["model"]
    loaded = predictors.load(
        Path(model["path"]), flavor=model["flavor"], sha256=model["sha256"], name=model["name"]
    )
    rows = _load_rows(task["data"], report)
    report(
        "log",
        message=f"embedding {len(rows)} rows with {model['name']} ({loaded.flavor})",
        device=loaded.device,
    )
    vectors = loaded.embeddings(rows)
    output = pd.DataFrame(vectors, columns=[f"e{i}" for i in range(vectors.shape[1])])
    Path(task["output"]).write_bytes(datafiles.write_frame(output, "parquet"))
    report("result", rows=len(output), device=loaded.device)


def _serve(task: dict[str, Any], report: Reporter, requests: TextIO) -> None:
    import pandas as pd

    from runners.serving import predictors

    loaded = {
        key: predictors.load(
            Path(model["path"]), flavor=model["flavor"], sha256=model["sha256"], name=model["name"]
        )
        for key, model in task["models"].items()
    }
    devices = sorted({predictor.device for predictor in loaded.values()})
    report(
        "ready",
        models={key: predictor.flavor for key, predictor in loaded.items()},
        device=",".join(devices),
    )
    answered = rows = 0
    for line in requests:
        request = json.loads(line)
        predictor = loaded[request["model"]]
        try:
            frame = datafiles.read_frame(Path(request["rows"]), "parquet", "rows.parquet")
            output = pd.DataFrame({predictors.PREDICTION_COLUMN: predictor.predict(frame).to_numpy()})
            if request.get("positive_label") is not None:
                proba = predictor.predict_proba(frame, request["positive_label"])
                if proba is not None:
                    output["proba"] = proba
            elif request.get("class_probabilities"):
                each = predictor.predict_class_proba(frame)
                if each is not None:
                    for label in each.columns:
                        output[f"{request['class_probabilities']}{label}"] = each[label].to_numpy()
            Path(request["output"]).write_bytes(datafiles.write_frame(output, "parquet"))
        except (predictors.PredictorError, datafiles.DataFileError, TypeError, ValueError) as exc:
            # TypeError / ValueError: pyarrow refusing what the model returned (mixed types).
            report("predict_failed", id=request["id"], message=str(exc))
        else:
            report("predicted", id=request["id"])
            answered += 1
            rows += len(frame)
    report("result", requests=answered, rows=rows, device=",".join(devices))


def _gpu_usage(started: float, world_size: int) -> dict[str, float | None]:
    """GPU seconds (the run's wall time on each of its ``world_size`` GPUs: a rank holds its GPU
    throughout) and this process's peak GPU memory in MB (rank 0's under DDP, where each rank's
    share is alike); None when CUDA was never initialised here (no GPU, or a CPU job)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return {"gpu_time_s": None, "peak_gpu_mem_mb": None}
    return {
        "gpu_time_s": (time.monotonic() - started) * world_size,
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20,
    }


def _own_usage() -> dict[str, float]:
    """User + system CPU seconds and the largest resident MB of this process and its children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_time_s": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": max(own.ru_maxrss, children.ru_maxrss) / 1024.0,
    }


def main(argv: list[str]) -> int:
    """Run the task in ``argv[1]``; 0 with a result (or a stop at the soft limit), 1 otherwise."""
    stop_requested = [False]
    signal.signal(signal.SIGUSR1, lambda signum, frame: stop_requested.__setitem__(0, True))
    task = json.loads(Path(argv[1]).read_text())
    rank, world_size = _rank()
    report = Reporter(os.fdopen(os.dup(1), "w"), None if rank == 0 else frozenset({"error"}))
    os.dup2(2, 1)  # libraries' prints go to the log, not into the events
    _die_with_parent()
    started = time.monotonic()
    from runners.inference import ArtifactError
    from runners.serving.predictors import PredictorError
    from runners.training import TrainingError

    user_errors = (
        SpecError,
        TrainingError,
        ArtifactError,
        PredictorError,
        datafiles.DataFileError,
        FileNotFoundError,
    )
    try:
        import torch

        # Explicit in every rank: the job's threads shared out (torch's default is every core).
        torch.set_num_threads(max(1, int(task["threads"]) // world_size))
        if task["kind"] == "train":
            _train(task, report, stop_requested)
        elif task["kind"] == "serve":
            _serve(task, report, sys.stdin)
        elif task["kind"] == "embed":
            _embed(task, report)
        else:
            _infer(task, report)
        return 0
    except user_errors as exc:
        report("error", message=str(exc), is_user_error=True)
        return 1
    except Exception as exc:
        traceback.print_exc()
        report("error", message=f"internal error: {type(exc).__name__}: {exc}", is_user_error=False)
        return 1
    finally:
        report("usage", **_gpu_usage(started, world_size), **_own_usage())
        _leave_process_group()


def _leave_process_group() -> None:
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
