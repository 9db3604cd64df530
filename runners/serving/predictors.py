"""Load a registered model version of any flavor as a predictor ``predict(frame) -> Series``.

A plain engine: no Django. Steward's own artifact (``steward_tabular``) loads with
``torch.load(weights_only=True)``, which runs no code from it, so the web process may load it.
An MLflow model directory loads through ``mlflow.pyfunc.load_model``: that unpickles (sklearn,
pytorch, custom pyfunc) and so EXECUTES the artifact's code; it is only ever called inside a job's
child process or a model-server process (``runners.serving.server``), never the web or worker.
torch and mlflow are imported inside the functions that need them (tests/test_web_imports.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STEWARD_TABULAR = "steward_tabular"
MLFLOW_MODEL = "mlflow_model"
PREDICTABLE_FLAVORS = (STEWARD_TABULAR, MLFLOW_MODEL)
PREDICTION_COLUMN = "prediction"


class PredictorError(ValueError):
    """The version cannot be loaded or cannot predict on these rows; the message says why."""


@dataclass
class Predictor:
    """A loaded model: ``predict(frame)`` is one prediction per row of ``frame``, aligned with its
    index (regression: the target's units; classification: the class label); ``name`` is the
    version, ``device`` where it runs. Raises PredictorError for rows it cannot score.
    ``score_records``, when set, scores JSON records already checked against the signature
    without building a DataFrame (online prediction's few rows: pandas costs more than the model)."""

    name: str
    flavor: str
    device: str
    score: Callable[[pd.DataFrame], pd.Series] = field(repr=False)
    score_records: Callable[[list[dict[str, Any]]], list[Any]] | None = field(default=None, repr=False)
    # The probability of one class per row (issue 15's evaluation); None: the model gives none.
    score_proba: Callable[[pd.DataFrame, str], np.ndarray | None] | None = field(default=None, repr=False)
    # Every class's probability per row (a multiclass evaluation); None: the model gives none.
    score_class_proba: Callable[[pd.DataFrame], pd.DataFrame | None] | None = field(default=None, repr=False)
    # The penultimate layer's activations per row (image drift, issue 11); None: not a vision model.
    score_embeddings: Callable[[pd.DataFrame], np.ndarray] | None = field(default=None, repr=False)

    def predict_records(self, records: list[dict[str, Any]]) -> list[Any]:
        """One prediction per record ({column: value}), as ``predict`` would give for them."""
        if not records:
            raise PredictorError("no rows to predict on")
        if self.score_records is None:
            return self.predict(pd.DataFrame.from_records(records)).tolist()
        try:
            return self.score_records(records)
        except PredictorError:
            raise
        except Exception as exc:
            raise PredictorError(f"{self.name} could not predict: {type(exc).__name__}: {exc}") from exc

    def predict(self, frame: pd.DataFrame) -> pd.Series:
        if frame.empty:
            raise PredictorError("no rows to predict on")
        try:
            return self.score(frame)
        except PredictorError:
            raise
        except Exception as exc:  # the model's own error on these rows is the caller's input problem
            raise PredictorError(f"{self.name} could not predict: {type(exc).__name__}: {exc}") from exc

    def predict_proba(self, frame: pd.DataFrame, positive_label: str) -> np.ndarray | None:
        """The probability of class ``positive_label`` (compared as text) for every row of
        ``frame``, shape (rows,); None when the model gives no probabilities (a regression, a
        model without ``predict_proba``) or does not know that class. Raises PredictorError as
        ``predict`` does."""
        if self.score_proba is None:
            return None
        if frame.empty:
            raise PredictorError("no rows to predict on")
        try:
            return self.score_proba(frame, positive_label)
        except PredictorError:
            raise
        except Exception as exc:
            raise PredictorError(f"{self.name} could not predict: {type(exc).__name__}: {exc}") from exc

    def predict_class_proba(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        """Every class's probability for every row of ``frame``: shape (rows, classes), one
        column per class named by the class as text (a class 1 is ``"1"``); None when the model
        gives no probabilities. Raises PredictorError as ``predict`` does, and when the answer
        has the wrong number of rows."""
        if self.score_class_proba is None:
            return None
        if frame.empty:
            raise PredictorError("no rows to predict on")
        try:
            found = self.score_class_proba(frame)
        except PredictorError:
            raise
        except Exception as exc:
            raise PredictorError(f"{self.name} could not predict: {type(exc).__name__}: {exc}") from exc
        if found is not None and len(found) != len(frame):
            raise PredictorError(f"{self.name} gave {len(found)} rows of probabilities for {len(frame)} rows")
        return found

    def embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's own embedding of each row of ``frame``: the activations of its penultimate
        layer, shape (rows, dimensions), float64. Raises PredictorError for a model that gives
        none (only a Steward vision model does), for rows it cannot read, and for a wrong shape."""
        if self.score_embeddings is None:
            raise PredictorError(
                f"{self.name} gives no embeddings: only a Steward vision model (an MLflow pyfunc of the "
                "vision template, whose torch network is its 'network') exposes its penultimate layer"
            )
        if frame.empty:
            raise PredictorError("no rows to embed")
        try:
            found = np.asarray(self.score_embeddings(frame), dtype=np.float64)
        except PredictorError:
            raise
        except Exception as exc:
            raise PredictorError(f"{self.name} could not embed: {type(exc).__name__}: {exc}") from exc
        if found.ndim != 2 or len(found) != len(frame):
            raise PredictorError(f"{self.name} gave embeddings of shape {found.shape} for {len(frame)} rows")
        return found


def class_names(classes: Any) -> list[str]:
    """A model's classes as text, as the evaluation engine reads labels (a class 1.0 is "1")."""
    return [
        str(int(label)) if isinstance(label, float) and label.is_integer() else str(label)
        for label in np.asarray(classes).tolist()
    ]


def class_frame(proba: Any, classes: Any) -> pd.DataFrame:
    """``proba`` (rows x classes) as a frame of float64 columns named ``class_names(classes)``.
    Raises PredictorError when the shapes disagree."""
    values = np.asarray(proba, dtype=np.float64)
    names = class_names(classes)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise PredictorError(f"probabilities of shape {values.shape} for {len(names)} classes")
    return pd.DataFrame(values, columns=names)


def class_column(classes: Any, positive_label: str) -> int | None:
    """The position of ``positive_label`` among a model's ``classes`` compared as text (a class
    1 and "1" are one class, as the evaluation engine reads them); None when absent."""
    for position, text in enumerate(class_names(classes)):
        if text == positive_label:
            return position
    return None


def refusal(flavor: str) -> str:
    """Why a version of ``flavor`` cannot predict (a bare state dict has no architecture; ONNX
    and unknown files have no runtime here); "" when it can."""
    if flavor in PREDICTABLE_FLAVORS:
        return ""
    reasons = {
        "pytorch_state_dict": "a bare PyTorch state dict holds weights without the model's code",
        "onnx": "Steward ships no ONNX runtime",
        "unknown": "Steward does not recognise the artifact",
    }
    return (
        f"a {flavor} model cannot predict: {reasons.get(flavor, 'no loader for it')}; register an "
        "MLflow model directory (MLmodel) or a Steward tabular model"
    )


def load(path: Path, *, flavor: str, sha256: str, name: str) -> Predictor:
    """The predictor of the version stored at ``path`` (its recorded ``sha256``, checked before
    loading a file). ``steward_tabular`` never runs artifact code; ``mlflow_model`` runs it, so
    call it only in a child or model-server process. Raises PredictorError for a flavor that
    cannot predict, a changed artifact or one that does not load."""
    why = refusal(flavor)
    if why:
        raise PredictorError(why)
    path = Path(path)
    if flavor == STEWARD_TABULAR:
        return _load_tabular(path, sha256, name)
    return _load_mlflow(path, name)


def _load_tabular(path: Path, sha256: str, name: str) -> Predictor:
    from runners import inference

    try:
        loaded = inference.load_checked(path.read_bytes(), sha256, name)
    except (OSError, inference.ArtifactError) as exc:
        raise PredictorError(str(exc)) from exc

    def score(frame: pd.DataFrame) -> pd.Series:
        from runners.training import TrainingError

        try:
            return inference.predict(frame, loaded)
        except TrainingError as exc:
            raise PredictorError(str(exc)) from exc

    encode = records_encoder(loaded.preprocessing)

    def score_records(records: list[dict[str, Any]]) -> list[Any]:
        return inference.predict_encoded(encode(records), loaded).tolist()

    def score_proba(frame: pd.DataFrame, positive_label: str) -> np.ndarray | None:
        from runners.training import TrainingError

        try:
            return inference.predict_proba(frame, loaded, positive_label)
        except TrainingError as exc:
            raise PredictorError(str(exc)) from exc

    def score_class_proba(frame: pd.DataFrame) -> pd.DataFrame | None:
        from runners.training import TrainingError

        try:
            found = inference.predict_class_proba(frame, loaded)
        except TrainingError as exc:
            raise PredictorError(str(exc)) from exc
        return None if found is None else class_frame(found[1], found[0])

    return Predictor(
        name, STEWARD_TABULAR, str(loaded.device), score, score_records, score_proba, score_class_proba
    )


def records_encoder(preprocessing: dict[str, Any]) -> Callable[[list[dict[str, Any]]], np.ndarray]:
    """``runners.training.encode_features`` for JSON records ({column: value}) without pandas:
    numbers standardised by the training mean and std (missing or not a number: the mean, 0),
    categories one-hot by ``str(value)`` (unseen or missing: all zeros). Raises PredictorError
    naming a feature absent from a record."""
    plan: list[tuple[str, int, Any]] = []  # (column, offset, (mean, std) or {category: index})
    width = 0
    for column in preprocessing["features"]:
        if column in preprocessing["numeric"]:
            stats = preprocessing["numeric"][column]
            plan.append((column, width, (float(stats["mean"]), float(stats["std"]))))
            width += 1
        else:
            categories = preprocessing["categorical"][column]
            plan.append((column, width, {str(c): i for i, c in enumerate(categories)}))
            width += len(categories)

    def encode(records: list[dict[str, Any]]) -> np.ndarray:
        x = np.zeros((len(records), width), dtype=np.float32)
        for row, record in enumerate(records):
            for column, offset, how in plan:
                if column not in record:
                    raise PredictorError(f"column {column!r} missing from the data")
                value = record[column]
                if isinstance(how, tuple):
                    number = _as_number(value)
                    if number is not None:
                        x[row, offset] = (number - how[0]) / how[1]
                elif value is not None:
                    code = how.get(str(value))
                    if code is not None:
                        x[row, offset + code] = 1.0
        return x

    return encode


def _as_number(value: Any) -> float | None:
    """``pd.to_numeric(errors="coerce")`` of one value, infinities and NaN as missing."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _load_mlflow(path: Path, name: str) -> Predictor:
    try:
        import mlflow.pyfunc
    except ImportError as exc:  # pragma: no cover - mlflow-skinny is a dependency
        raise PredictorError(f"mlflow is not installed here, {name} cannot load ({exc})") from exc
    try:
        model = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:  # a missing flavor package, a torn directory: the version cannot load
        raise PredictorError(f"{name} does not load: {type(exc).__name__}: {exc}") from exc
    schema = model.metadata.get_input_schema()
    columns = input_columns(schema)
    dtypes = _column_dtypes(schema)

    def score(frame: pd.DataFrame) -> pd.Series:
        inputs = frame[columns] if columns else frame
        # JSON numbers arrive as int64/float64; MLflow refuses an unsafe cast (float64 to a
        # float32 column), which the signature itself asks for.
        inputs = inputs.astype({name: dtype for name, dtype in dtypes.items() if name in inputs.columns})
        return as_series(model.predict(inputs), frame.index)

    def score_class_proba(frame: pd.DataFrame) -> pd.DataFrame | None:
        # pyfunc's predict gives labels only. The probabilities come from the flavor's own model
        # (a fitted sklearn estimator or pipeline: predict_proba and classes_) or, for a custom
        # pyfunc, from its PythonModel's predict_proba(model_input): a DataFrame with one column
        # per class, named by the class (or an array, with the PythonModel's classes_). Any
        # other model gives none.
        owner = _probability_owner(model)
        if owner is None:
            return None
        inputs = frame[columns] if columns else frame
        inputs = inputs.astype({name: dtype for name, dtype in dtypes.items() if name in inputs.columns})
        found = owner.predict_proba(inputs)
        if isinstance(found, pd.DataFrame):
            return class_frame(found.to_numpy(), found.columns)
        if hasattr(found, "detach"):  # a torch tensor from a custom pyfunc
            found = found.detach().cpu().numpy()
        if not hasattr(owner, "classes_"):
            raise PredictorError("predict_proba gave an array without classes_ to name its columns")
        return class_frame(found, owner.classes_)

    def score_proba(frame: pd.DataFrame, positive_label: str) -> np.ndarray | None:
        found = score_class_proba(frame)
        if found is None or positive_label not in found.columns:
            return None
        return found[positive_label].to_numpy()

    def score_embeddings(frame: pd.DataFrame) -> np.ndarray:
        inputs = frame[columns] if columns else frame
        inputs = inputs.astype({name: dtype for name, dtype in dtypes.items() if name in inputs.columns})
        return penultimate_layer(model, inputs)

    return Predictor(
        name,
        MLFLOW_MODEL,
        "cpu",
        score,
        score_proba=score_proba,
        score_class_proba=score_class_proba,
        score_embeddings=score_embeddings,
    )


# Rows per forward pass when embedding: bounds the activations held at once.
EMBED_BATCH_ROWS = 1024


def penultimate_layer(model: Any, inputs: pd.DataFrame) -> np.ndarray:
    """What enters the last layer of a Steward vision model's network (its penultimate layer's
    activations), one row per row of ``inputs``, float64. The vision template's pyfunc wrapper
    (``runners/workloads/vision/digits.py``) keeps its torch ``nn.Sequential`` as ``network`` and
    computes ``probabilities(frame)`` with it; a forward pre-hook on the network's last layer reads
    that layer's input, so versions registered before this function existed are read alike.
    Raises PredictorError for any other model."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # not a custom pyfunc (MLflow raises its MlflowException)
        python_model = None
    network: Any = getattr(python_model, "network", None)
    layers = list(network.children()) if callable(getattr(network, "children", None)) else []
    if len(layers) < 2 or not callable(getattr(python_model, "probabilities", None)):
        raise PredictorError(
            "the model gives no embeddings: only a Steward vision model (the vision template's pyfunc, "
            "a torch network of several layers as its 'network') exposes its penultimate layer"
        )
    import torch

    captured: list[Any] = []
    handle = layers[-1].register_forward_pre_hook(lambda _layer, args: captured.append(args[0].detach()))
    try:
        for start in range(0, len(inputs), EMBED_BATCH_ROWS):
            python_model.probabilities(inputs.iloc[start : start + EMBED_BATCH_ROWS])
    finally:
        handle.remove()
    return torch.cat(captured).reshape(len(inputs), -1).cpu().numpy().astype(np.float64)


def _probability_owner(model: Any) -> Any:
    """What gives an MLflow model's class probabilities (see ``score_class_proba``), or None."""
    try:
        raw = model.get_raw_model()
    except NotImplementedError:  # a custom pyfunc keeps its model to itself
        raw = None
    if raw is not None and hasattr(raw, "predict_proba") and hasattr(raw, "classes_"):
        return raw
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # not a custom pyfunc (MLflow raises its MlflowException)
        return None
    return python_model if callable(getattr(python_model, "predict_proba", None)) else None


def input_columns(schema: Any) -> list[str]:
    """The named input columns of an MLflow schema (its ``input_names()``); [] for a tensor
    signature or none, where the model gets the rows as sent."""
    if schema is None or not getattr(schema, "has_input_names", lambda: False)():
        return []
    if getattr(schema, "is_tensor_spec", lambda: False)():
        return []
    return [str(name) for name in schema.input_names()]


# MLflow ColSpec types -> the numpy dtype a column is cast to before predicting.
_NUMPY_TYPES = {"float": "float32", "double": "float64", "integer": "int32", "long": "int64"}


def _column_dtypes(schema: Any) -> dict[str, str]:
    if not input_columns(schema):
        return {}
    found = {}
    for spec in schema.inputs:
        dtype = _NUMPY_TYPES.get(str(getattr(getattr(spec, "type", None), "name", "")))
        if dtype is not None and spec.name is not None:
            found[str(spec.name)] = dtype
    return found


def as_series(output: Any, index: pd.Index) -> pd.Series:
    """A model's output as one value per row: a 1-column result is squeezed; a row of several
    values (class probabilities) becomes a list. Raises PredictorError when the number of rows
    differs from the input's."""
    if isinstance(output, pd.DataFrame):
        output = output.iloc[:, 0] if output.shape[1] == 1 else output.to_numpy()
    if isinstance(output, pd.Series):
        output = output.to_numpy()
    if hasattr(output, "detach"):  # a torch tensor from a custom pyfunc
        output = output.detach().cpu().numpy()
    values = np.asarray(output) if not isinstance(output, np.ndarray) else output
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim == 0 or len(values) != len(index):
        raise PredictorError(f"the model returned {values.shape} for {len(index)} row(s)")
    if values.ndim > 1:
        return pd.Series([row.tolist() for row in values], index=index, name=PREDICTION_COLUMN)
    return pd.Series(values, index=index, name=PREDICTION_COLUMN)


def json_value(value: Any) -> Any:
    """A prediction as JSON: numpy scalars as Python ones, NaN and infinities as None."""
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
