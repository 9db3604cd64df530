"""Real evaluations for the gate tests (issue 15): scikit-learn models fitted on the adult data and
evaluated by ``runners.evaluation`` (the engine the evaluation job runs), not made-up numbers.

- ``full``: logistic regression on every feature; accurate, and unfair by demographic parity on
  sex (a selection-rate ratio near 0.29).
- ``mitigated`` / ``mitigated_again``: the same pipeline (C = 1 and 0.5) post-processed by
  Fairlearn's ``ThresholdOptimizer`` for demographic parity on sex (ratio above 0.9).
- ``weak``: three features only; far worse on every metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tests.conftest import ADULT

POSITIVE = " >50K"
NEGATIVE = " <=50K"
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "race", "sex"]


class Mitigated:
    """A fitted pipeline post-processed by Fairlearn's ``ThresholdOptimizer`` (demographic parity
    on ``attribute``); predicts the adult labels from a frame holding ``attribute``."""

    def __init__(self, model: Any, attribute: str):
        from fairlearn.postprocessing import ThresholdOptimizer

        self.optimizer = ThresholdOptimizer(
            estimator=model, constraints="demographic_parity", prefit=True, predict_method="predict_proba"
        )
        self.attribute = attribute

    def fit(self, frame: pd.DataFrame, labels: pd.Series) -> Mitigated:
        self.optimizer.fit(frame, (labels == POSITIVE).astype(int), sensitive_features=frame[self.attribute])
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        groups = frame[self.attribute].fillna(" Male")
        chosen = self.optimizer.predict(frame, sensitive_features=groups, random_state=0)
        return np.where(chosen == 1, POSITIVE, NEGATIVE)


def _pipeline(numeric: list[str], categorical: list[str], c: float = 1.0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prepare = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                categorical,
            ),
        ]
    )
    return make_pipeline(prepare, LogisticRegression(max_iter=500, C=c))


@dataclass(frozen=True)
class AdultEvaluations:
    """``spec``: the EvaluationSpec as JSON; ``comparisons``: ``{name: Comparison.to_dict()}`` of
    each candidate (``full``, ``mitigated_again``, ``weak``) against ``mitigated`` (the champion);
    ``champion``: ``mitigated``'s own EvaluationResult.to_dict() on the same rows."""

    spec: dict[str, Any]
    comparisons: dict[str, dict[str, Any]]
    champion: dict[str, Any]


def adult_evaluations() -> AdultEvaluations:
    """Fit the four models on 70 % of the adult rows and evaluate them on the other 30 %."""
    from runners.evaluation import EvaluationSpec, evaluate_pair, sklearn_predictor

    frame = pd.read_csv(ADULT)
    train = frame.sample(frac=0.7, random_state=0)
    test = frame.drop(train.index)
    features = NUMERIC + CATEGORICAL
    full = _pipeline(NUMERIC, CATEGORICAL).fit(train[features], train["label"])
    models = {
        "full": full,
        "mitigated_again": Mitigated(
            _pipeline(NUMERIC, CATEGORICAL, c=0.5).fit(train[features], train["label"]), "sex"
        ),
        "weak": _pipeline(["age", "hours-per-week"], ["workclass"]).fit(train[features], train["label"]),
    }
    models["mitigated_again"].fit(train[features], train["label"])
    champion = Mitigated(full, "sex").fit(train[features], train["label"])
    spec = EvaluationSpec(
        task="classification",
        target="label",
        positive_label=POSITIVE,
        features=tuple(features),
        sensitive_attributes=("sex",),
        slice_columns=("race", "age"),
        bootstrap_resamples=100,
        importance_repeats=2,
        importance_max_rows=2000,
    )
    champion_predict = sklearn_predictor(champion, POSITIVE)
    comparisons = {
        name: evaluate_pair(test, sklearn_predictor(model, POSITIVE), champion_predict, spec).to_dict()
        for name, model in models.items()
    }
    return AdultEvaluations(
        spec=spec.to_dict(), comparisons=comparisons, champion=comparisons["full"]["champion"]
    )
