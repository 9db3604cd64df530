"""Reading and validating tabular data files (CSV, Parquet). No Django import.

Every rejection raises ``DataFileError`` with a message a person can act on (which line, which
column), so the API can answer 400 and nothing is registered.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_MAGIC = b"PAR1"
_CHUNK = 1024 * 1024


class DataFileError(ValueError):
    """The file cannot be registered; the message says why."""


class RowFilterError(ValueError):
    """A row filter names a missing column or has no usable value."""


@dataclass(frozen=True)
class FileSummary:
    format: str
    sha256: str
    size_bytes: int
    row_count: int
    schema: list[dict[str, str]]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path, filename: str) -> str:
    """``"parquet"`` when the file starts with Parquet's magic bytes, ``"csv"`` for UTF-8 text.

    Raises DataFileError for anything else (a binary file, an empty file).
    """
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
    if not head:
        raise DataFileError(f"{filename}: the file is empty")
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if filename.lower().endswith(".parquet"):
        raise DataFileError(f"{filename}: named .parquet but does not start with Parquet's magic bytes")
    if b"\x00" in head:
        raise DataFileError(f"{filename}: not a CSV or Parquet file (binary content)")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 64 KiB boundary is not an error.
        if exc.start < len(head) - 4:
            raise DataFileError(
                f"{filename}: not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start}); "
                "upload CSV as UTF-8 or use Parquet"
            ) from exc
    return "csv"


def _check_header(path: Path, filename: str) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            header = next(csv.reader(handle), [])
    except csv.Error as exc:
        raise DataFileError(f"{filename}: line 1 is not a valid CSV header ({exc})") from exc
    if not header or all(not name.strip() for name in header):
        raise DataFileError(f"{filename}: line 1 has no column names")
    blank = [i + 1 for i, name in enumerate(header) if not name.strip()]
    if blank:
        raise DataFileError(f"{filename}: line 1: column {blank[0]} has no name")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataFileError(f"{filename}: line 1: column name {name!r} appears twice")
        seen.add(name)
    return header


_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_frame(
    path: Path, fmt: str, filename: str | None = None, max_rows: int | None = None
) -> pd.DataFrame:
    """Load the whole file as a DataFrame, raising DataFileError with the line that is wrong.

    ``max_rows``: refuse files with more data rows than this (guards memory on huge uploads).
    """
    filename = filename or path.name
    if fmt == "parquet":
        try:
            metadata = pq.ParquetFile(path).metadata
        except Exception as exc:
            raise DataFileError(f"{filename}: unreadable Parquet file ({exc})") from exc
        if max_rows is not None and metadata.num_rows > max_rows:
            raise DataFileError(f"{filename}: {metadata.num_rows} rows is more than the limit of {max_rows}")
        try:
            frame = pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            # Corrupt pages pass the footer check; duplicate column names fail schema unification.
            raise DataFileError(f"{filename}: unreadable Parquet data ({exc})") from exc
    else:
        _check_header(path, filename)
        try:
            frame = pd.read_csv(path, low_memory=False, nrows=None if max_rows is None else max_rows + 1)
        except pd.errors.EmptyDataError as exc:
            raise DataFileError(f"{filename}: the file is empty") from exc
        except pd.errors.ParserError as exc:
            found = _PANDAS_LINE.search(str(exc))
            if found:
                expected, line, saw = found.groups()
                raise DataFileError(
                    f"{filename}: line {line} has {saw} fields, the header has {expected}"
                ) from exc
            raise DataFileError(f"{filename}: not valid CSV ({exc})") from exc
        except UnicodeDecodeError as exc:
            raise DataFileError(f"{filename}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        if max_rows is not None and len(frame) > max_rows:
            raise DataFileError(f"{filename}: more than the limit of {max_rows} rows")
    if frame.shape[1] == 0:
        raise DataFileError(f"{filename}: no columns")
    if len(frame) == 0:
        raise DataFileError(f"{filename}: has a header but no data rows")
    return frame


def schema_of(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Columns in order with pandas dtype names, e.g. ``[{"name": "cnt", "dtype": "int64"}]``."""
    return [{"name": str(name), "dtype": str(dtype)} for name, dtype in frame.dtypes.items()]


def summarize(path: Path, filename: str, max_bytes: int, max_rows: int) -> FileSummary:
    """Validate ``path`` and describe it: format, SHA-256, size, row count, schema.

    Raises DataFileError if it is larger than ``max_bytes``, not CSV/Parquet, malformed or empty,
    or names a column with a NUL character.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise DataFileError(f"{filename}: {size} bytes is more than the limit of {max_bytes} bytes")
    fmt = detect_format(path, filename)
    frame = read_frame(path, fmt, filename, max_rows=max_rows)
    schema = schema_of(frame)
    if problem := unstorable(schema):
        # A Parquet file may name a column with a NUL, which PostgreSQL's jsonb refuses.
        raise DataFileError(f"{filename}: its column names cannot be stored: {problem}")
    return FileSummary(
        format=fmt, sha256=sha256_of(path), size_bytes=size, row_count=len(frame), schema=schema
    )


def write_frame(frame: pd.DataFrame, fmt: str) -> bytes:
    """Serialize ``frame`` as CSV (UTF-8, no index) or Parquet bytes."""
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    return frame.to_csv(index=False).encode("utf-8")


def unstorable(value: Any) -> str | None:
    """Why a JSON value cannot be stored as typed, or None: a NaN or infinite number, or a NUL
    character in a string or key (PostgreSQL's jsonb refuses both; SQLite's JSON check refuses the
    first). Walks lists and objects."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if isinstance(value, str) and "\x00" in value:
        return "text may not contain NUL characters"
    if isinstance(value, dict):
        return next((p for k, v in value.items() for p in (unstorable(k), unstorable(v)) if p), None)
    if isinstance(value, list):
        return next((p for item in value if (p := unstorable(item))), None)
    return None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def loads_json_object(text: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object a user typed, strictly: no NaN/Infinity tokens, no number
    beyond a float's range, no NUL character (``unstorable``). Raises ValueError saying why."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    problem = unstorable(value)
    if problem:
        raise ValueError(problem)
    return value


def check_where(where: Any, columns: list[str]) -> dict[str, Any]:
    """Validate a row filter ``{column: value or [values]}`` against the dataset's columns.

    Values are text, numbers or booleans that can be stored (``unstorable``). Raises RowFilterError.
    """
    if where is None:
        return {}
    if not isinstance(where, dict):
        raise RowFilterError(f"where: expected an object of column -> value, got {where!r}")
    for column, value in where.items():
        if column not in columns:
            raise RowFilterError(f"where: column {column!r} is not in the dataset")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise RowFilterError(f"where: {column!r} needs a value or a non-empty list of values")
        problem = unstorable(values)
        if problem:
            raise RowFilterError(f"where: {column!r}: {problem}")
    return dict(where)


def apply_where(frame: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    """Rows whose ``column`` equals the value (or is in the list) for every filter entry."""
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        values = value if isinstance(value, list) else [value]
        mask &= frame[column].isin(values)
    return frame[mask]
