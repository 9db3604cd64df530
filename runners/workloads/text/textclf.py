"""Tokens, their hashing, the bag-of-words classifier and its pyfunc wrapper, shared by this
template's entry points. Logged with the model (``code_paths``), so a model server or an inference
child loads it without the template."""

from __future__ import annotations

import itertools
import re
import zlib
from typing import Any

import mlflow.pyfunc
import torch
from torch import nn

TOKEN = re.compile(r"[a-z0-9$!']+")
MAX_TOKENS = 400  # a message's first tokens: the corpus keeps each message's first 400 characters


def tokens(text: str) -> list[str]:
    """Lower-cased words (letters, digits, ``$ ! '``) of ``text``, at most ``MAX_TOKENS``."""
    return TOKEN.findall(str(text).lower())[:MAX_TOKENS]


def bucket_ids(words: list[str], buckets: int) -> list[int]:
    """Unigrams and bigrams hashed into ``buckets`` with CRC-32 (stable across processes, unlike
    Python's ``hash``); at least one id (bucket 0 stands for an empty text)."""
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    return [zlib.crc32(gram.encode("utf-8")) % buckets for gram in grams] or [0]


def batch(texts: list[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat ids, offsets) of ``texts`` for ``nn.EmbeddingBag``."""
    ids: list[int] = []
    offsets: list[int] = []
    for text in texts:
        offsets.append(len(ids))
        ids.extend(bucket_ids(tokens(text), buckets))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class BagOfWords(nn.Module):
    """Mean of the hashed n-grams' embeddings, then a linear layer: one logit per class.
    ``classes`` (the labels, sorted) and ``buckets`` travel with the saved model."""

    def __init__(self, buckets: int, dimensions: int, classes: list[str]):
        super().__init__()
        self.buckets = buckets
        self.classes = list(classes)
        self.embedding = nn.EmbeddingBag(buckets, dimensions, mode="mean")
        self.output = nn.Linear(dimensions, len(classes))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.output(self.embedding(ids, offsets))

    def probabilities(self, texts: list[str], chunk: int = 1024) -> torch.Tensor:
        """Class probabilities (rows x classes) of ``texts``, in chunks of ``chunk`` texts."""
        self.eval()
        parts = []
        with torch.no_grad():
            for start in range(0, len(texts), chunk):
                parts.append(torch.softmax(self(*batch(texts[start : start + chunk], self.buckets)), dim=1))
        return torch.cat(parts) if parts else torch.empty((0, len(self.classes)))


def text_features(frame: Any, column: str) -> Any:
    """``frame`` with the numeric features a drift monitor can compare: ``chars`` (length) and
    ``tokens`` (word count) of column ``column``."""
    out = frame.copy()
    texts = out[column].fillna("").astype(str)
    out["chars"] = texts.str.len()
    out["tokens"] = texts.map(lambda text: len(tokens(text)))
    return out


class TextClassifier(mlflow.pyfunc.PythonModel):
    """The classifier as an MLflow pyfunc that takes a COLUMN: a DataFrame with column ``text``
    in (tokenized and hashed here, as in training), the class label (a string per row) out."""

    def __init__(self, model: BagOfWords, column: str = "text"):
        self.model = model
        self.column = column

    def texts(self, frame: Any) -> list[str]:
        """Column ``self.column`` of ``frame`` as strings (missing as empty).
        Raises ValueError naming the column when it is absent."""
        if self.column not in frame.columns:
            raise ValueError(f"column {self.column!r} missing: the text to classify")
        return frame[self.column].fillna("").astype(str).tolist()

    # No type hints on purpose: MLflow reads predict's hints as a schema of its own (and warns
    # at every load); the column signature logged with the model is the one that holds.
    def predict(self, context, model_input, params=None):
        """The label of each row of ``model_input`` (a DataFrame), as a list of strings."""
        probabilities = self.model.probabilities(self.texts(model_input))
        return [self.model.classes[i] for i in probabilities.argmax(1).tolist()]
