"""Training a PyTorch MLP on tabular data. No Django import: tested and run as a plain function.

The artifact is a dict of tensors and plain containers, so ``torch.load(weights_only=True)``
loads it without unpickling code: the state_dict, the architecture, and the preprocessing
(feature means/stds, category maps, target scaling or class list) that inference must repeat.

Several GPUs on one node (issue 16): started by torchrun, each rank calls ``init_distributed``
and then ``train`` as usual: the model is wrapped in DistributedDataParallel, each rank trains
on its DistributedSampler share of every epoch, and rank 0 alone writes checkpoints (the
caller's ``on_checkpoint``). Every rank ends with the same weights, hence the same artifact.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from runners.specs import TrainingSpec

ARTIFACT_FORMAT = "steward.tabular_mlp/1"
CHECKPOINT_FORMAT = "steward.tabular_mlp.checkpoint/1"
# A classification target with at most this many distinct values; more means regression.
MAX_CLASSES = 50


class TrainingError(RuntimeError):
    """The data cannot be trained on; the message names the column and row."""


class TrainingStopped(Exception):
    """Training was asked to stop (``should_stop``) and stopped after ``epoch`` with a checkpoint."""

    def __init__(self, epoch: int):
        super().__init__(f"stopped after epoch {epoch}")
        self.epoch = epoch


class TabularMLP(nn.Module):
    def __init__(self, input_dim: int, hidden_layers: list[int], output_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_layers:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, output_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def select_device() -> torch.device:
    """CUDA when a GPU is present (under torchrun, the rank's own: ``cuda:<LOCAL_RANK>``), else CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cuda")


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless its process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> str:
    """Join the job's process group as torchrun's environment says (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT``); returns the backend: NCCL with CUDA, gloo without (the
    ranks then run on the CPU). Raises RuntimeError when the rendezvous fails."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return backend


def _all_ranks(values: list[float], device: torch.device, op: Any = None) -> list[float]:
    """``values`` reduced over the ranks (sum, or ``op``); as they are in a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return [float(value) for value in tensor.tolist()]


def fit_preprocessing(frame: pd.DataFrame, spec: TrainingSpec) -> dict[str, Any]:
    """Learn feature scaling and category maps from the training rows.

    Numeric: mean and std (std 0 -> 1), NaN imputed with the mean. Categorical (non-numeric
    dtypes, booleans, or listed in ``spec.categorical``): sorted category list, one-hot encoded.
    Raises TrainingError for infinite values or an all-missing feature.
    """
    declared = set(spec.categorical or [])
    numeric, categorical = {}, {}
    for column in spec.features:
        series = frame[column]
        is_numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if column in declared or not is_numeric:
            # str() first: list- or dict-valued cells (Parquet nested types) are unhashable.
            categories = sorted(set(series.dropna().map(str)))
            categorical[column] = categories
            continue
        values = series.astype("float64")
        if np.isinf(values).any():
            row = int(values.index[np.isinf(values.to_numpy())].min())
            raise TrainingError(f"feature {column!r} has an infinite value (data row {row + 1})")
        if values.isna().all():
            raise TrainingError(f"feature {column!r} has no values in the training rows")
        std = float(values.std(ddof=0))
        numeric[column] = {"mean": float(values.mean()), "std": std if std > 0 else 1.0}
    return {"features": list(spec.features), "numeric": numeric, "categorical": categorical}


def encode_features(frame: pd.DataFrame, preprocessing: dict[str, Any]) -> np.ndarray:
    """Apply ``preprocessing`` to ``frame`` -> float32 matrix (rows x encoded width).

    Missing numerics become the training mean (0 after scaling); unseen categories encode as
    all zeros. Raises TrainingError naming a feature column that is absent.
    """
    missing = [c for c in preprocessing["features"] if c not in frame.columns]
    if missing:
        raise TrainingError(f"column(s) {', '.join(map(repr, missing))} missing from the data")
    blocks = []
    for column in preprocessing["features"]:
        if column in preprocessing["numeric"]:
            stats = preprocessing["numeric"][column]
            values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
            values = values.replace([np.inf, -np.inf], np.nan)
            blocks.append(((values.fillna(stats["mean"]) - stats["mean"]) / stats["std"]).to_numpy()[:, None])
        else:
            categories = preprocessing["categorical"][column]
            index = {c: i for i, c in enumerate(categories)}
            codes = frame[column].map(lambda v, index=index: -1 if _is_missing(v) else index.get(str(v), -1))
            one_hot = np.zeros((len(frame), len(categories)), dtype=np.float32)
            rows = np.flatnonzero(codes.to_numpy() >= 0)
            one_hot[rows, codes.to_numpy()[rows]] = 1.0
            blocks.append(one_hot)
    return np.hstack(blocks).astype(np.float32)


def _is_missing(value: Any) -> bool:
    # pd.isna on a list-valued cell returns an array; this works for any scalar or container.
    return (
        value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))
    )


def _decide_task(target: pd.Series, requested: str) -> str:
    if requested != "auto":
        return requested
    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return "classification"
    return "regression"


@dataclass
class TrainingResult:
    artifact: bytes
    metrics: dict[str, float]
    history: list[dict[str, float]]
    signature: dict[str, Any]
    device: str


ProgressCallback = Callable[[int, int, dict[str, float]], None]
# Called with (epoch, checkpoint) where the checkpoint is torch.save-able, weights_only-loadable.
CheckpointCallback = Callable[[int, dict[str, Any]], None]


def train(
    frame: pd.DataFrame,
    spec: TrainingSpec,
    on_epoch: ProgressCallback | None = None,
    *,
    resume: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
    on_checkpoint: CheckpointCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train an MLP regressor or classifier on ``frame`` (already filtered by ``spec.where``).

    Splits rows into train/validation (seeded permutation), minimizes MSE on the standardized
    target (regression) or cross-entropy (classification) with Adam, and calls
    ``on_epoch(epoch, epochs, record)`` after each epoch (it may raise to stop training).
    Metrics on the validation rows, in the target's units: rmse, mae, r2 (regression) or
    accuracy, log_loss (classification). Raises TrainingError for NaN targets, too few rows,
    or a classification target with too many classes. Errors name a data row as the frame's
    index label + 1: the row of the file for frames from ``governance.datafiles.read_frame``,
    whose row filter keeps the labels.

    Checkpoints (issue 16): every ``checkpoint_every`` epochs (0: never) ``on_checkpoint(epoch,
    state)`` gets the model and optimizer state, the epoch, the history, the preprocessing and
    torch's random state; ``resume`` (such a state) continues after its epoch, so a resumed run
    ends with the same model as an uninterrupted one on the CPU. When ``should_stop()`` turns true
    the run saves a checkpoint after the current epoch and raises TrainingStopped.

    Under DDP (``init_distributed`` called first) each rank takes ``batch_size / world size``
    rows per step, so a step averages ``batch_size`` rows over the ranks as in one process; the
    training loss is the mean over all ranks; the ranks stop together when any was asked to;
    rank 0 alone calls ``on_checkpoint``. The model matches a single process's in quality, not
    bit for bit (another order of the rows).
    """
    target = frame[spec.target]
    _check_rows(frame, spec)
    task = _decide_task(target, spec.task)
    torch.manual_seed(spec.seed)
    generator = np.random.default_rng(spec.seed)
    order = generator.permutation(len(frame))
    n_val = max(1, round(len(frame) * spec.validation_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    train_rows = frame.iloc[train_idx]
    preprocessing = fit_preprocessing(train_rows, spec)
    x_all = encode_features(frame, preprocessing)

    y_tensor, output_dim, loss_fn, preprocessing["target"] = _encode_target(target, task, spec, train_idx)

    device = select_device()
    rank, world_size = world()
    architecture = {
        "input_dim": x_all.shape[1],
        "hidden_layers": list(spec.hidden_layers),
        "output_dim": output_dim,
    }
    model = TabularMLP(**architecture).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
    x_tensor = torch.from_numpy(x_all)
    x_train, y_train = x_tensor[train_idx].to(device), y_tensor[train_idx].to(device)
    x_val, y_val = x_tensor[val_idx].to(device), y_tensor[val_idx].to(device)

    history: list[dict[str, float]] = []
    first = 1
    if resume is not None:
        if resume.get("format") != CHECKPOINT_FORMAT or resume.get("architecture") != architecture:
            raise TrainingError("the checkpoint does not match this job's model; it cannot be resumed")
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["rng_state"])
        history = list(resume["history"])
        preprocessing = resume["preprocessing"]
        first = int(resume["epoch"]) + 1
    # Wrapped after loading: DDP broadcasts rank 0's weights, the same checkpoint on every rank.
    net: nn.Module = model
    if world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    for epoch in range(first, spec.epochs + 1):
        if world_size > 1:
            train_loss = _train_epoch_ddp(
                net, optimizer, loss_fn, x_train, y_train, spec, epoch, (rank, world_size)
            )
        else:
            train_loss = _train_epoch(model, optimizer, loss_fn, x_train, y_train, spec.batch_size, epoch)
        record = {"epoch": epoch, "train_loss": train_loss}
        record.update(_evaluate(model, x_val, y_val, loss_fn, preprocessing["target"]))
        if not all(math.isfinite(value) for value in record.values()):
            raise TrainingError(
                f"training diverged at epoch {epoch} (a metric is not finite: the target's scale may be "
                "too large for float32, or lower learning_rate)"
            )
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, spec.epochs, record)
        stopping = should_stop is not None and should_stop() and epoch < spec.epochs
        if world_size > 1:  # the signal reaches the ranks apart: they stop at the same epoch
            stopping = _all_ranks([float(stopping)], device, dist.ReduceOp.MAX)[0] > 0
        if (
            on_checkpoint is not None
            and rank == 0
            and (stopping or (checkpoint_every and epoch % checkpoint_every == 0 and epoch < spec.epochs))
        ):
            on_checkpoint(epoch, _checkpoint(epoch, architecture, model, optimizer, preprocessing, history))
        if stopping:
            raise TrainingStopped(epoch)

    metrics = {k.removeprefix("val_"): v for k, v in history[-1].items() if k.startswith("val_")}
    metrics.update({"train_rows": float(len(train_idx)), "validation_rows": float(len(val_idx))})
    signature = {
        "task": task,
        "target": spec.target,
        "features": list(spec.features),
        "categorical": sorted(preprocessing["categorical"]),
    }
    artifact = _artifact(architecture, model, preprocessing, signature)
    return TrainingResult(artifact, metrics, history, signature, str(device))


def _check_rows(frame: pd.DataFrame, spec: TrainingSpec) -> None:
    """TrainingError for a missing target value (naming its data row) or fewer than 10 rows."""
    target = frame[spec.target]
    if target.isna().any():
        first = int(target.index[target.isna().to_numpy()][0])
        raise TrainingError(
            f"target column {spec.target!r} has {int(target.isna().sum())} missing value(s) "
            f"(first at data row {first + 1})"
        )
    if len(frame) < 10:
        raise TrainingError(f"need at least 10 training rows, got {len(frame)}")


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    batch_size: int,
    epoch: int,
) -> float:
    """One pass over the training rows in shuffled mini-batches; the mean training loss per row.
    TrainingError when a batch's loss is not finite."""
    model.train()
    permutation = torch.randperm(len(x_train), device=x_train.device)
    total = 0.0
    for start in range(0, len(x_train), batch_size):
        batch = permutation[start : start + batch_size]
        optimizer.zero_grad()
        loss = loss_fn(model(x_train[batch]), y_train[batch])
        if not torch.isfinite(loss):
            raise TrainingError(
                f"training diverged at epoch {epoch} (loss is {loss.item()}); lower learning_rate"
            )
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(x_train)


def _train_epoch_ddp(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    spec: TrainingSpec,
    epoch: int,
    place: tuple[int, int],
) -> float:
    """One DDP pass: this rank's DistributedSampler share of the training rows (shuffled with the
    spec's seed and the epoch), in batches of ``batch_size / world size``; the mean training loss
    per row over all ranks. TrainingError when a batch's loss is not finite."""
    rank, world_size = place
    # The sampler reads only len() of its dataset: the training rows' positions stand in for it.
    positions = cast("Dataset[int]", range(len(x_train)))
    sampler: DistributedSampler[int] = DistributedSampler(
        positions, num_replicas=world_size, rank=rank, shuffle=True, seed=spec.seed
    )
    sampler.set_epoch(epoch)
    indices = torch.tensor(list(sampler), dtype=torch.long, device=x_train.device)
    step = max(1, spec.batch_size // world_size)
    net.train()
    total = 0.0
    for start in range(0, len(indices), step):
        batch = indices[start : start + step]
        optimizer.zero_grad()
        loss = loss_fn(net(x_train[batch]), y_train[batch])
        if not torch.isfinite(loss):
            raise TrainingError(
                f"training diverged at epoch {epoch} (loss is {loss.item()}); lower learning_rate"
            )
        loss.backward()  # DDP averages the gradients over the ranks here
        optimizer.step()
        total += loss.item() * len(batch)
    summed, rows = _all_ranks([total, float(len(indices))], x_train.device)
    return summed / rows


def _encode_target(
    target: pd.Series, task: str, spec: TrainingSpec, train_idx: np.ndarray
) -> tuple[torch.Tensor, int, nn.Module, dict[str, Any]]:
    """(target tensor, output width, loss, the target's preprocessing): a regression target is
    standardised with the training rows' mean and std; class labels become indices."""
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(target):
            raise TrainingError(f"target column {spec.target!r} is not numeric; use task=classification")
        y_all = target.astype("float64").to_numpy()
        if np.isinf(y_all).any():
            raise TrainingError(f"target column {spec.target!r} has an infinite value")
        y_mean, y_std = float(y_all[train_idx].mean()), float(y_all[train_idx].std()) or 1.0
        y_tensor = torch.tensor((y_all - y_mean) / y_std, dtype=torch.float32)[:, None]
        return y_tensor, 1, nn.MSELoss(), {"task": task, "mean": y_mean, "std": y_std}
    classes = sorted({str(v) for v in target.unique()})
    if len(classes) < 2 or len(classes) > MAX_CLASSES:
        raise TrainingError(
            f"target column {spec.target!r} has {len(classes)} classes; "
            f"classification needs 2 to {MAX_CLASSES}"
        )
    index = {c: i for i, c in enumerate(classes)}
    y_tensor = torch.tensor([index[str(v)] for v in target], dtype=torch.long)
    return y_tensor, len(classes), nn.CrossEntropyLoss(), {"task": task, "classes": classes}


def _artifact(
    architecture: dict[str, Any], model: nn.Module, preprocessing: dict[str, Any], signature: dict[str, Any]
) -> bytes:
    """The artifact's bytes: ``torch.save`` of plain tensors and JSON-able dicts (loadable with
    ``torch.load(weights_only=True)``)."""
    buffer = io.BytesIO()
    torch.save(
        {
            "format": ARTIFACT_FORMAT,
            "architecture": architecture,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "preprocessing": preprocessing,
            "signature": signature,
        },
        buffer,
    )
    return buffer.getvalue()


def _checkpoint(
    epoch: int,
    architecture: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    preprocessing: dict[str, Any],
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """A resumable training state: plain containers and tensors (``torch.load(weights_only=True)``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "architecture": architecture,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng_state": torch.get_rng_state(),
        "preprocessing": preprocessing,
        "history": list(history),
    }


def _evaluate(model, x_val, y_val, loss_fn, target_info: dict) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        output = model(x_val)
        record = {"val_loss": float(loss_fn(output, y_val).item())}
        if target_info["task"] == "regression":
            scale = target_info["std"]
            error = (output - y_val).squeeze(1) * scale
            truth = y_val.squeeze(1) * scale + target_info["mean"]
            ss_res = float((error**2).sum())
            ss_tot = float(((truth - truth.mean()) ** 2).sum()) or 1.0
            record.update(
                {
                    "val_rmse": float(torch.sqrt((error**2).mean())),
                    "val_mae": float(error.abs().mean()),
                    "val_r2": 1.0 - ss_res / ss_tot,
                }
            )
        else:
            record.update(
                {
                    "val_accuracy": float((output.argmax(1) == y_val).float().mean()),
                    "val_log_loss": record["val_loss"],
                }
            )
    return record
