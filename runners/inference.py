"""Loading a trained artifact and predicting on tabular data. No Django import."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from runners.training import ARTIFACT_FORMAT, TabularMLP, TrainingError, encode_features, select_device

PREDICTION_COLUMN = "prediction"


class ArtifactError(ValueError):
    """The artifact is not a Steward model this version can load."""


@dataclass
class LoadedModel:
    module: TabularMLP
    preprocessing: dict[str, Any]
    signature: dict[str, Any]
    device: torch.device


def load_model(data: bytes) -> LoadedModel:
    """Load an artifact with ``torch.load(weights_only=True)`` (no code is unpickled)."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"not a loadable model artifact ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"artifact format is not {ARTIFACT_FORMAT}")
    device = select_device()
    module = TabularMLP(**payload["architecture"])
    module.load_state_dict(payload["state_dict"])
    module.to(device).eval()
    return LoadedModel(module, payload["preprocessing"], payload["signature"], device)


def load_checked(data: bytes, sha256: str, name: str) -> LoadedModel:
    """``load_model`` after checking ``data`` against its recorded hex SHA-256 (``name`` is the
    version, for the error). Raises ArtifactError when the file changed since registration."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactError(f"artifact of {name} does not match its recorded sha256")
    return load_model(data)


def predict(frame: pd.DataFrame, model: LoadedModel, batch_size: int = 65536) -> pd.Series:
    """Predictions for every row of ``frame``, aligned with its index.

    Regression: values in the target's units. Classification: the predicted class label.
    Raises TrainingError naming a feature column missing from ``frame``.
    """
    if frame.empty:
        raise TrainingError("no rows to predict on")
    return predict_encoded(encode_features(frame, model.preprocessing), model, frame.index, batch_size)


def predict_proba(
    frame: pd.DataFrame, model: LoadedModel, positive_label: str, batch_size: int = 65536
) -> np.ndarray | None:
    """The probability of class ``positive_label`` for every row of ``frame``, shape (rows,):
    the softmax of the classifier's outputs (its ``CrossEntropyLoss`` logits) at that class's
    column. None for a regression or a class the model was not trained on (``classes`` hold the
    training target's values as text, e.g. ``" >50K"`` with its space)."""
    target = model.preprocessing["target"]
    if target["task"] != "classification" or positive_label not in target["classes"]:
        return None
    found = predict_class_proba(frame, model, batch_size)
    assert found is not None  # a classification
    return found[1][:, list(target["classes"]).index(positive_label)]


def predict_class_proba(
    frame: pd.DataFrame, model: LoadedModel, batch_size: int = 65536
) -> tuple[list[str], np.ndarray] | None:
    """Every class's probability for every row of ``frame``: (the classes as text, in the
    training target's order; the softmax of the logits, shape (rows, classes), float64). None for
    a regression. Raises TrainingError naming a feature column missing from ``frame``."""
    target = model.preprocessing["target"]
    if target["task"] != "classification":
        return None
    if frame.empty:
        raise TrainingError("no rows to predict on")
    x = encode_features(frame, model.preprocessing)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start : start + batch_size]).to(model.device)
            outputs.append(torch.softmax(model.module(batch), dim=1).cpu())
    return list(target["classes"]), torch.cat(outputs).numpy().astype(np.float64)


def predict_encoded(
    x: np.ndarray, model: LoadedModel, index: pd.Index | None = None, batch_size: int = 65536
) -> pd.Series:
    """``predict`` of rows already encoded (``encode_features``: float32, rows x encoded width);
    ``index`` labels them (default 0..n-1). Online prediction encodes its few rows without pandas."""
    index = pd.RangeIndex(len(x)) if index is None else index
    outputs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start : start + batch_size]).to(model.device)
            outputs.append(model.module(batch).cpu())
    output = torch.cat(outputs)
    target = model.preprocessing["target"]
    if target["task"] == "regression":
        values = output.squeeze(1).numpy().astype(np.float64) * target["std"] + target["mean"]
        return pd.Series(values, index=index, name=PREDICTION_COLUMN)
    classes = np.array(target["classes"], dtype=object)
    return pd.Series(classes[output.argmax(1).numpy()], index=index, name=PREDICTION_COLUMN)
