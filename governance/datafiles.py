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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
        # utf-8-sig: a byte order mark is not part of the first name (pandas drops it too, so
        # "\ufeffa,a" would otherwise pass this check and be read as columns a and a.1).
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = next(csv.reader(handle), [])
    except csv.Error as exc:
        raise DataFileError(f"{filename}: line 1 is not a valid CSV header ({exc})") from exc
    if not header or all(not name.strip() for name in header):
        raise DataFileError(f"{filename}: line 1 has no column names")
    blank = [i + 1 for i, name in enumerate(header) if not name.strip()]
    if blank:
        raise DataFileError(f"{filename}: line 1: column {blank[0]} has no name")
    _refuse_twice(header, filename, "line 1: ")
    return header


def _refuse_twice(names: Iterable[str], filename: str, where: str = "") -> None:
    """Raise DataFileError naming the first column name that appears twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataFileError(f"{filename}: {where}column name {name!r} appears twice")
        seen.add(name)


_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
# Rows per chunk when streaming a file: ~200 MB at 25 float columns, whatever the file's length.
DEFAULT_CHUNK_ROWS = 1_000_000


def _file_line(path: Path, line: int) -> int:
    """The line of the file where pandas' ``line`` starts: pandas counts a quoted field's newlines
    as no line, so a file whose fields hold newlines would otherwise be named a wrong line."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            previous = 0
            for number, _row in enumerate(reader, start=1):
                if number == line:
                    return previous + 1
                previous = reader.line_num
    except csv.Error:  # a field past csv's size limit: pandas' count is the best there is
        pass
    return line


def _csv_error(filename: str, exc: Exception, path: Path | None = None) -> DataFileError:
    """The DataFileError for a pandas CSV failure, naming the line where pandas names it (the
    file's own line when ``path`` is given)."""
    if isinstance(exc, pd.errors.EmptyDataError):
        return DataFileError(f"{filename}: the file is empty")
    if isinstance(exc, UnicodeDecodeError):
        return DataFileError(f"{filename}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    found = _PANDAS_LINE.search(str(exc))
    if found:
        expected, line, saw = found.groups()
        if path is not None:
            line = str(_file_line(path, int(line)))
        return DataFileError(f"{filename}: line {line} has {saw} fields, the header has {expected}")
    return DataFileError(f"{filename}: not valid CSV ({exc})")


def unified_dtype(first: str, second: str) -> str:
    """The dtype pandas gives a whole CSV column whose chunks were read as ``first`` and ``second``:
    the same dtype stays; int64 with float64 is float64; anything else mixed is object (strings,
    booleans with numbers or with a chunk of only missing values, which reads as float64)."""
    if first == second:
        return first
    if {first, second} <= {"int64", "float64"}:
        return "float64"
    return "object"


def _as_text(values: pd.Series) -> pd.Series:
    """Numbers read from a chunk of a column that is text in the whole file, as text again."""
    if pd.api.types.is_integer_dtype(values.dtype):
        text = values.astype(str)
    else:
        text = values.map(lambda v: str(int(v)) if float(v).is_integer() else repr(float(v)))
    return text.where(values.notna()).astype(object)


def _unify(chunk: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """``chunk`` with each column cast to its whole-file dtype (``dtypes``, the stored schema), so
    every chunk of a CSV file has the dtypes of the whole-file read: ints of a float column become
    floats; numbers in a text column become text (as pandas writes them: "1e3" reads back as
    "1000.0"); booleans of an object column stay booleans, as in the whole-file read."""
    changed = {}
    for name in chunk.columns:
        target = dtypes.get(str(name))
        have = str(chunk[name].dtype)
        if target is None or target == have:
            continue
        values = chunk[name]
        if target == "float64" and have in ("int64", "bool"):
            changed[name] = values.astype("float64")
        elif target == "object" and have in ("int64", "float64", "uint64"):
            changed[name] = _as_text(values)
        elif target == "object":
            changed[name] = values.astype(object)
    return chunk.assign(**changed) if changed else chunk


def _parquet_file(path: Path, filename: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:
        raise DataFileError(f"{filename}: unreadable Parquet file ({exc})") from exc


def row_group_rows(path: Path, filename: str | None = None) -> list[int]:
    """The number of rows of each row group of a Parquet file (from its footer)."""
    metadata = _parquet_file(path, filename or path.name).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def iter_frames(
    path: Path,
    fmt: str,
    filename: str | None = None,
    *,
    columns: list[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    dtypes: dict[str, str] | None = None,
    row_groups: list[int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the file's rows as DataFrames of at most ``chunk_rows`` rows, in file order; memory
    is bounded by one chunk (Parquet: one row group's column chunks, then ``chunk_rows`` rows).

    ``columns``: read only these (in file order; a name the file lacks is skipped). ``dtypes``:
    ``{column: dtype}`` of the whole-file read (a dataset version's schema): each CSV chunk is cast
    to it (``_unify``), so chunks agree with one another; without it each CSV chunk has the dtypes
    pandas infers on that chunk. Index labels run on across chunks (0..n-1 over the file), as in
    the whole-file read (from the first row group read). ``row_groups``: a Parquet file's row
    groups to read (a part of the file, for profiles built in parts). Raises DataFileError as
    ``read_frame`` does, at the chunk where the file
    goes wrong (a CSV line with too many fields, a corrupt Parquet page), possibly after earlier
    chunks were yielded. A file with a header and no rows yields one empty chunk.
    """
    filename = filename or path.name
    start = 0
    if fmt == "parquet":
        parquet = _parquet_file(path, filename)
        schema = parquet.schema_arrow
        # Batches of a file naming a column twice read fine (only a whole-table read refuses
        # them), and pandas then holds two columns under one name: refuse before any chunk.
        _refuse_twice(schema.names, filename)
        wanted = None if columns is None else [name for name in schema.names if name in set(columns)]
        if wanted is not None:
            schema = pa.schema([schema.field(name) for name in wanted], metadata=schema.metadata)
        try:
            yielded = False
            for batch in parquet.iter_batches(
                batch_size=chunk_rows, row_groups=row_groups, columns=wanted, use_pandas_metadata=False
            ):
                # Through a Table with the file's schema: pandas metadata restores dtypes (categories).
                frame = pa.Table.from_batches([batch], schema=schema).to_pandas()
                frame.index = pd.RangeIndex(start, start + len(frame))
                start += len(frame)
                yielded = True
                yield frame
            if not yielded:
                yield schema.empty_table().to_pandas()
        except (OSError, pa.ArrowException) as exc:
            # Corrupt pages pass the footer check.
            raise DataFileError(f"{filename}: unreadable Parquet data ({exc})") from exc
        return
    header = _check_header(path, filename)
    usecols = None if columns is None else [name for name in header if name in set(columns)]
    try:
        # index_col=False: rows with one field more than the header (a trailing comma on every data
        # row) would otherwise make the first column the index and shift every value one column.
        with pd.read_csv(path, chunksize=chunk_rows, usecols=usecols, index_col=False) as reader:
            for frame in reader:
                if dtypes:
                    frame = _unify(frame, dtypes)
                yield frame
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _csv_error(filename, exc, path) from exc


def read_frame(
    path: Path, fmt: str, filename: str | None = None, max_rows: int | None = None
) -> pd.DataFrame:
    """Load the whole file as a DataFrame, raising DataFileError with the line that is wrong.

    ``max_rows``: refuse files with more data rows than this. For large files prefer
    ``iter_frames`` (streamed): this holds the whole file in memory.
    """
    filename = filename or path.name
    if fmt == "parquet":
        metadata = _parquet_file(path, filename).metadata
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
            frame = pd.read_csv(
                path, low_memory=False, nrows=None if max_rows is None else max_rows + 1, index_col=False
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise _csv_error(filename, exc, path) from exc
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


def dtypes_of(schema: list[dict[str, str]]) -> dict[str, str]:
    """``{column: dtype}`` of a stored schema (``schema_of``), for ``iter_frames(dtypes=...)``."""
    return {item["name"]: item["dtype"] for item in schema}


def summarize(
    path: Path, filename: str, max_bytes: int, max_rows: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> FileSummary:
    """Validate ``path`` and describe it: format, SHA-256, size, row count, schema, reading it once
    in chunks of ``chunk_rows`` rows (memory bounded by one chunk, whatever the file's length).

    The schema is the whole-file read's (``read_frame``): CSV chunk dtypes are unified
    (``unified_dtype``); Parquet's comes from its footer, and every page is still decoded, so a
    corrupt page is refused here. Raises DataFileError if it is larger than ``max_bytes`` or has
    more than ``max_rows`` rows, is not CSV/Parquet, malformed or empty, or names a column with a
    NUL character.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise DataFileError(f"{filename}: {size} bytes is more than the limit of {max_bytes} bytes")
    fmt = detect_format(path, filename)
    if fmt == "parquet":
        rows = _parquet_file(path, filename).metadata.num_rows
        if rows > max_rows:
            raise DataFileError(f"{filename}: {rows} rows is more than the limit of {max_rows}")
    schema: list[dict[str, str]] | None = None
    rows = 0
    for chunk in iter_frames(path, fmt, filename, chunk_rows=chunk_rows):
        chunk_schema = schema_of(chunk)
        if schema is None:
            schema = chunk_schema
        elif [c["name"] for c in schema] == [c["name"] for c in chunk_schema]:
            schema = [
                {"name": a["name"], "dtype": unified_dtype(a["dtype"], b["dtype"])}
                for a, b in zip(schema, chunk_schema, strict=True)
            ]
        rows += len(chunk)
        if rows > max_rows:
            raise DataFileError(f"{filename}: more than the limit of {max_rows} rows")
    if not schema:
        raise DataFileError(f"{filename}: no columns")
    if rows == 0:
        raise DataFileError(f"{filename}: has a header but no data rows")
    if problem := unstorable(schema):
        # A Parquet file may name a column with a NUL, which PostgreSQL's jsonb refuses.
        raise DataFileError(f"{filename}: its column names cannot be stored: {problem}")
    return FileSummary(format=fmt, sha256=sha256_of(path), size_bytes=size, row_count=rows, schema=schema)


class RowSampler:
    """A uniform random sample of at most ``max_rows`` rows of the chunks ``add``ed to it, taken
    while they stream by; memory is bounded by one chunk plus the sample.

    Bottom-k sampling: each row draws a random key (``numpy.random.default_rng(seed)``, in row
    order, so the sample does not depend on how the rows are chunked) and the rows with the
    ``max_rows`` smallest keys are kept; every subset of that size is equally likely. With at most
    ``max_rows`` rows in all, the sample is every row, in order.
    """

    def __init__(self, max_rows: int, seed: int, columns: list[str] | None = None):
        self.max_rows, self.columns = max_rows, columns
        self.rows = 0
        self._rng = np.random.default_rng(seed)
        self._kept: pd.DataFrame | None = None
        self._keys = np.empty(0)

    def add(self, chunk: pd.DataFrame) -> None:
        """Offer the next rows (``columns`` of them, those the chunk has) to the sample."""
        if self.columns is not None:
            chunk = chunk[[c for c in chunk.columns if c in self.columns]]
        keys = self._rng.random(len(chunk))
        positions = np.arange(self.rows, self.rows + len(chunk))
        self.rows += len(chunk)
        if len(self._keys) >= self.max_rows:
            # Only rows that beat the current k-th key can enter: later chunks add few rows.
            better = keys < self._keys.max()
            chunk, keys, positions = chunk[better], keys[better], positions[better]
        chunk = chunk.set_axis(positions)
        if self._kept is None:
            self._kept = chunk
        elif len(chunk):
            self._kept = pd.concat([self._kept, chunk])
        self._keys = np.concatenate([self._keys, keys])
        if len(self._keys) > self.max_rows:
            best = np.argpartition(self._keys, self.max_rows - 1)[: self.max_rows]
            self._kept, self._keys = self._kept.iloc[best], self._keys[best]

    def frame(self) -> pd.DataFrame:
        """The sample so far, in stream order, indexed by row position in the stream."""
        return pd.DataFrame() if self._kept is None else self._kept.sort_index()


def sample_frames(
    chunks: Iterable[pd.DataFrame], max_rows: int, seed: int, columns: list[str] | None = None
) -> tuple[pd.DataFrame, int]:
    """``RowSampler`` over ``chunks``: the sample (at most ``max_rows`` rows) and the rows seen."""
    sampler = RowSampler(max_rows, seed, columns)
    for chunk in chunks:
        sampler.add(chunk)
    return sampler.frame(), sampler.rows


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
