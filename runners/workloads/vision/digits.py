"""The digits' layout, the CNN and its pyfunc wrapper, shared by this template's entry points
(plain torch: no torchvision, which does not import on Steward's workers). Logged with the model
(``code_paths``), so a model server or an inference child loads the wrapper without the template."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc

PIXELS = [f"p{i}" for i in range(64)]
LABEL = "label"
SIDE = 8
MAX_INTENSITY = 16.0  # scikit-learn's digits are 0..16 per pixel


def images(frame: Any) -> Any:
    """The pixel columns of ``frame`` as a float tensor (rows x 1 x 8 x 8) scaled to 0..1.
    Raises ValueError naming a missing pixel column."""
    import torch

    missing = [column for column in PIXELS if column not in frame.columns]
    if missing:
        raise ValueError(f"column(s) {', '.join(missing[:5])} missing: expected pixel columns p0..p63")
    values = frame[PIXELS].to_numpy(dtype="float32") / MAX_INTENSITY
    return torch.from_numpy(values).reshape(-1, 1, SIDE, SIDE)


def network() -> Any:
    """Two 3x3 convolutions and a pooling, then two linear layers: 10 logits per image.
    An ``nn.Sequential`` of torch's own layers, so a saved model loads without this module."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


class DigitsClassifier(mlflow.pyfunc.PythonModel):
    """The CNN as an MLflow pyfunc that takes COLUMNS: a DataFrame with p0..p63 (0..16) in, the
    digit (int64, one per row) out, so online prediction and inference jobs send plain rows."""

    def __init__(self, network: Any):
        self.network = network

    def probabilities(self, frame: Any) -> Any:
        """Softmax probabilities (rows x 10, a torch tensor) of ``frame``'s images.
        Raises ValueError naming a missing pixel column."""
        import torch

        self.network.eval()
        with torch.no_grad():
            return torch.softmax(self.network(images(frame)), dim=1)

    def predict_proba(self, model_input: Any) -> Any:
        """Each digit's probability for each row of ``model_input`` (a DataFrame): a DataFrame of
        10 columns named "0" .. "9", the convention by which Steward's evaluation reads a custom
        pyfunc's class probabilities (multiclass ROC AUC, log loss, calibration)."""
        import pandas as pd

        return pd.DataFrame(self.probabilities(model_input).numpy(), columns=[str(d) for d in range(10)])

    # No type hints on purpose: MLflow reads predict's hints as a schema of its own (and warns
    # at every load); the column signature logged with the model is the one that holds.
    def predict(self, context, model_input, params=None):
        """The digit of each row of ``model_input`` (a DataFrame), as an int64 array."""
        return self.probabilities(model_input).argmax(1).numpy()
