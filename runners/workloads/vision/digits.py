"""The digits' layout and the CNN, shared by this template's entry points (plain torch: no
torchvision, which does not import on Steward's workers)."""

from __future__ import annotations

from typing import Any

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
