"""Drift statistics engine: reference profiles, two-sample methods and checks. No Django imports.

- ``profile``: ``build_profile(data) -> DatasetProfile`` (JSON-able, mergeable across chunks).
- ``methods``: K-S, Wasserstein (normed), PSI, Jensen-Shannon, chi-square, Z and missing-rate tests.
- ``check``: ``run_check(reference_profile, current_chunks, config) -> CheckResult``;
  ``compare_raw_columns`` for text and embedding columns and images (``embedding``: MMD).
- ``multivariate``: the domain classifier and PCA reconstruction tests.
"""

from monitoring.engine.check import (
    CheckConfig,
    CheckResult,
    ColumnResult,
    ConfigError,
    Status,
    compare_raw_columns,
    count_tested,
    raw_data_columns,
    raw_row_columns,
    run_check,
)
from monitoring.engine.profile import ColumnKind, ColumnProfile, DatasetProfile, build_profile

__all__ = [
    "CheckConfig",
    "CheckResult",
    "ColumnKind",
    "ColumnProfile",
    "ColumnResult",
    "ConfigError",
    "DatasetProfile",
    "Status",
    "build_profile",
    "compare_raw_columns",
    "count_tested",
    "raw_data_columns",
    "raw_row_columns",
    "run_check",
]
