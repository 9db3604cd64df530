"""Predict requests' rows checked against a model version's input signature (issue 17).

A plain module (no Django): ``columns_of`` reads the columns a version expects from its Steward
signature or its MLmodel signature; ``parse_rows`` turns the JSON body into a DataFrame or raises
RowsError naming the row and column at fault, with the HTTP status to answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

NUMBER = "number"
INTEGER = "integer"
STRING = "string"
BOOLEAN = "boolean"
ANY = "any"

# MLflow ColSpec types (mlflow.types.DataType) -> what a JSON value must be.
_MLFLOW_TYPES = {
    "double": NUMBER,
    "float": NUMBER,
    "long": INTEGER,
    "integer": INTEGER,
    "string": STRING,
    "boolean": BOOLEAN,
}


@dataclass(frozen=True)
class Rows:
    """Checked rows: ``records`` ({column: value}, JSON values) and the ``columns`` in the
    signature's order (row 0's keys when the version names none)."""

    records: list[dict[str, Any]]
    columns: list[str]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame.from_records(self.records, columns=self.columns)


@dataclass(frozen=True)
class Column:
    """An input column: its ``name``, the JSON ``kind`` of its values (number, integer, string,
    boolean, any) and whether every row must carry it."""

    name: str
    kind: str
    is_required: bool = True


class RowsError(ValueError):
    """A body that cannot be scored; ``status`` is 400, or 413 past the row limit."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def columns_of(signature: dict[str, Any], flavor_details: dict[str, Any]) -> list[Column] | None:
    """The input columns of a version: a Steward signature's ``features`` (``categorical`` ones
    take strings or numbers, the others numbers; integers only where the MLmodel signature types
    the column as an integer), else the named columns of the MLmodel signature in
    ``flavor_details``; None when neither names its columns (a tensor signature or none: rows are
    passed as sent)."""
    mlflow_columns = _mlflow_columns(flavor_details)
    features = signature.get("features") if isinstance(signature, dict) else None
    if not features:
        return mlflow_columns
    categorical = set(signature.get("categorical") or [])
    # A model logged by users' code gets its MLmodel columns as features (so drift checks work);
    # the model casts an integer column before predicting, so 5.9 would be scored as 5.
    integers = {column.name for column in mlflow_columns or [] if column.kind == INTEGER}
    return [
        Column(str(name), ANY if name in categorical else INTEGER if name in integers else NUMBER)
        for name in features
    ]


def _mlflow_columns(flavor_details: dict[str, Any]) -> list[Column] | None:
    """The named columns of the MLmodel signature in ``flavor_details``, typed; None without one
    (a tensor signature, none, or one that cannot be read)."""
    mlmodel = (flavor_details or {}).get("signature") or {}
    inputs = mlmodel.get("inputs") if isinstance(mlmodel, dict) else None
    if isinstance(inputs, str):
        try:
            inputs = json.loads(inputs)
        except ValueError:
            return None
    if not isinstance(inputs, list) or not inputs:
        return None
    if not all(
        isinstance(spec, dict) and spec.get("name") and spec.get("type") != "tensor" for spec in inputs
    ):
        return None
    return [
        Column(
            str(spec["name"]),
            _MLFLOW_TYPES.get(str(spec.get("type")), ANY),
            spec.get("required", True) is not False,
        )
        for spec in inputs
    ]


def _records(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise RowsError('expected a JSON object {"rows": [{column: value}, ...]}')
    if "rows" in body and "dataframe_records" in body:
        raise RowsError("send rows or dataframe_records, not both")
    unknown = sorted(set(body) - {"rows", "dataframe_records"})
    if unknown:
        raise RowsError(f"unknown field(s) {', '.join(unknown)}; send rows (or MLflow's dataframe_records)")
    records = body.get("rows", body.get("dataframe_records"))
    if records is None:
        raise RowsError("rows: required, a list of objects {column: value}")
    if not isinstance(records, list):
        raise RowsError("rows: expected a list of objects {column: value}")
    return records


def _check_value(value: Any, column: Column, row: int) -> None:
    where = f"row {row}, column {column.name!r}"
    if value is None:
        raise RowsError(f"{where}: null; send a value")
    if isinstance(value, float) and not math.isfinite(value):
        raise RowsError(f"{where}: {value} is not a finite number")
    if column.kind in (NUMBER, INTEGER) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise RowsError(f"{where}: expected a number, got {type(value).__name__} {value!r:.40}")
    if column.kind == INTEGER and isinstance(value, float) and not value.is_integer():
        # The model casts the column to its integer type: 5.9 would be scored as 5 (MLflow's
        # own schema check refuses that cast too).
        raise RowsError(f"{where}: expected an integer, got {value!r}")
    if column.kind == STRING and not isinstance(value, str):
        raise RowsError(f"{where}: expected a string, got {type(value).__name__}")
    if column.kind == BOOLEAN and not isinstance(value, bool):
        raise RowsError(f"{where}: expected true or false, got {type(value).__name__}")
    if column.kind == ANY and not isinstance(value, str | int | float | bool):
        raise RowsError(f"{where}: expected a number or a string, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise RowsError(f"{where}: empty string")


def parse_rows(body: Any, columns: list[Column] | None, max_rows: int) -> Rows:
    """The rows of ``body`` (``{"rows": [...]}`` or ``{"dataframe_records": [...]}``), checked
    against ``columns``. Rows are numbered from 0 in messages. Raises RowsError for
    no rows, more than ``max_rows`` (413), a row that is not an object, a missing, extra, null,
    non-finite or ill-typed value."""
    records = _records(body)
    if not records:
        raise RowsError("rows: empty; send at least one row")
    if len(records) > max_rows:
        raise RowsError(f"rows: {len(records)} rows; at most {max_rows} per request", status=413)
    expected = None if columns is None else {column.name: column for column in columns}
    first_keys: list[str] | None = None
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            raise RowsError(
                f"row {number}: expected an object {{column: value}}, got {type(record).__name__}"
            )
        if expected is None:
            keys = list(record)
            if first_keys is None:
                first_keys = keys
            elif set(keys) != set(first_keys):
                raise RowsError(f"row {number}: columns differ from row 0's ({', '.join(first_keys)})")
            for key, value in record.items():
                _check_value(value, Column(str(key), ANY), number)
            continue
        extra = sorted(set(record) - set(expected))
        if extra:
            raise RowsError(f"row {number}: unknown column(s) {', '.join(map(repr, extra))}")
        for column in expected.values():
            if column.name not in record:
                if column.is_required:
                    raise RowsError(f"row {number}: missing column {column.name!r}")
                continue
            _check_value(record[column.name], column, number)
    order = [column.name for column in columns] if columns is not None else list(first_keys or [])
    return Rows(records, order)
