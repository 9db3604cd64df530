"""The evaluation engine (issue 15, "Evaluation gates"): metrics with bootstrap intervals, slices,
fairness (Fairlearn), robustness, permutation importance and champion/challenger, for one model
version on one dataset version. Plain: NumPy, pandas, scikit-learn, Fairlearn; no Django, no torch.

- ``spec``: ``EvaluationSpec`` (validated, ``to_dict`` / ``from_dict``), ``Predictions``, the
  ``Predict`` protocol, ``EvaluationError(field, message)``.
- ``engine``: ``evaluate(frame, predict, spec) -> EvaluationResult``;
  ``evaluate_pair(frame, predict_candidate, predict_champion, spec) -> Comparison``;
  ``sklearn_predictor(model, positive_label)``.
- ``metrics`` (vectorised point and bootstrap values, curves), ``inputs`` (bad input),
  ``slices``, ``fairness``, ``probes`` (robustness, permutation importance).
"""

from runners.evaluation.engine import Comparison, EvaluationResult, evaluate, evaluate_pair, sklearn_predictor
from runners.evaluation.spec import EvaluationError, EvaluationSpec, Predict, Predictions

__all__ = [
    "Comparison",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationSpec",
    "Predict",
    "Predictions",
    "evaluate",
    "evaluate_pair",
    "sklearn_predictor",
]
