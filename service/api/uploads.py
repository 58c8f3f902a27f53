"""Reading an uploaded CSV into numbers, refused as it is read past the limits.

Rows are numbered as a spreadsheet numbers them: the header is row 1, the first data row 2.
"""

from __future__ import annotations

import csv
import io
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from service.config import Settings
from service.errors import InvalidUpload, quoted
from service.store.datasets import MAX_NAME, Parsed

#: columns an error message lists by name
LISTED = 10


@dataclass(frozen=True)
class Limits:
    """How large an upload's table may be; past a limit the upload is refused as it is read."""

    #: data rows (DESCENT_MAX_ROWS)
    rows: int = Settings.model_fields["max_rows"].default
    #: columns of the header, the target's among them (DESCENT_MAX_COLUMNS)
    columns: int = Settings.model_fields["max_columns"].default
    #: rows times features (DESCENT_MAX_VALUES)
    values: int = Settings.model_fields["max_values"].default

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(rows=settings.max_rows, columns=settings.max_columns, values=settings.max_values)


def parse_csv(raw: bytes, *, target: str | None, limits: Limits) -> Parsed:
    """A header row, then rows of finite numbers; `target` names y's column (default: last)."""
    reader = csv.reader(io.StringIO(_decode(raw), newline=""), strict=True)
    try:
        columns = _header(next(reader, None), limits.columns)
        target_at = _target_index(columns, target)
        flat = _numbers(reader, columns, limits)
    except csv.Error as exc:
        raise InvalidUpload(f"row {reader.line_num} is not valid CSV: {exc}") from exc
    table = np.frombuffer(flat, dtype=np.float64).reshape(-1, len(columns))
    x = np.delete(table, target_at, axis=1)
    y = table[:, target_at].copy()
    return Parsed(
        columns=columns,
        target=columns[target_at],
        x=x,
        y=y,
        integer_target=bool(np.all(y == np.round(y))),
    )


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is dropped
    except UnicodeDecodeError as exc:
        row = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 1]
        raise InvalidUpload(
            f"the file is not UTF-8 text: row {row} has the byte {bad!r} (offset {exc.start});"
            " save it as UTF-8 CSV"
        ) from None


def _header(row: list[str] | None, max_columns: int) -> list[str]:
    if row is None:
        raise InvalidUpload("the file is empty: a header row naming the columns is required")
    if len(row) > max_columns:
        raise InvalidUpload(
            f"the header (row 1) has {len(row)} columns; the limit is {max_columns}"
            " (DESCENT_MAX_COLUMNS)"
        )
    if not any(cell.strip() for cell in row):
        raise InvalidUpload("row 1 is blank: it must be the header, naming the columns")
    columns = [name.strip() for name in row]
    seen: set[str] = set()  # a set, so that a wide header costs one look-up a column
    for i, name in enumerate(columns, start=1):
        if not name:
            raise InvalidUpload(f"column {i} of the header (row 1) has no name")
        if "\x00" in name:
            raise InvalidUpload(f"column {i}'s name has a NUL character")
        if len(name) > MAX_NAME:
            raise InvalidUpload(f"column {i}'s name is longer than {MAX_NAME} characters")
        if name in seen:
            raise InvalidUpload(f"the header (row 1) names column {quoted(name)} twice")
        seen.add(name)
    if len(columns) < 2:
        raise InvalidUpload(
            f"the file has one column ({quoted(columns[0])}); it needs the target and at least one"
            " feature column"
        )
    return columns


def _target_index(columns: list[str], target: str | None) -> int:
    if target is None:
        return len(columns) - 1
    if target.strip() not in columns:
        raise InvalidUpload(f"no column {quoted(target)}; the columns are {_some(columns)}")
    return columns.index(target.strip())


def _numbers(rows: Iterator[list[str]], columns: list[str], limits: Limits) -> array[float]:
    """The data rows' numbers, row after row, in one flat buffer; blank rows are skipped."""
    flat = array("d")
    width = len(columns)
    # rows times features past DESCENT_MAX_VALUES, or rows past DESCENT_MAX_ROWS: whichever
    # comes first ends the parse at that row
    max_rows = min(limits.rows, limits.values // (width - 1))
    count = 0
    for number, row in enumerate(rows, start=2):
        try:
            # the common path: one comprehension a row; only a failure looks closer
            values = [float(cell) for cell in row] if len(row) == width else None
        except ValueError:
            values = None
        if values is None:
            if not any(cell.strip() for cell in row):
                continue
            raise _bad_row(row, number, columns)
        if not math.isfinite(sum(values)):  # nan and inf survive a sum, so one test a row
            _check_finite(values, number, columns)
        count += 1
        if count > max_rows:
            raise _too_many(count, width - 1, limits)
        flat.extend(values)
    if count == 0:
        raise InvalidUpload("no rows: the file has a header (row 1) but no data rows")
    return flat


def _too_many(count: int, features: int, limits: Limits) -> InvalidUpload:
    if count > limits.rows:
        return InvalidUpload(
            f"more than {limits.rows} rows; the limit is {limits.rows} (DESCENT_MAX_ROWS)"
        )
    return InvalidUpload(
        f"more than {limits.values} values: {count} rows of {features} features make"
        f" {count * features}; the limit is {limits.values} rows times features"
        " (DESCENT_MAX_VALUES)"
    )


def _bad_row(row: list[str], number: int, columns: list[str]) -> InvalidUpload:
    if len(row) != len(columns):
        return InvalidUpload(
            f"row {number} has {len(row)} cells, the header has {len(columns)}"
            " (the header is row 1)"
        )
    for name, cell in zip(columns, row, strict=True):
        try:
            float(cell)
        except ValueError:
            what = "is empty" if not cell.strip() else f"{quoted(cell)} is not a number"
            return InvalidUpload(
                f"row {number}, column {quoted(name)}: {what} (the header is row 1)"
            )
    return InvalidUpload(f"row {number} could not be read")  # pragma: no cover


def _some(columns: list[str]) -> str:
    """The first few columns' names, and how many more there are."""
    named = ", ".join(quoted(c) for c in columns[:LISTED])
    more = len(columns) - LISTED
    return named if more <= 0 else f"{named} and {more} more"


def _check_finite(values: list[float], number: int, columns: list[str]) -> None:
    for name, value in zip(columns, values, strict=True):
        if not math.isfinite(value):
            raise InvalidUpload(
                f"row {number}, column {quoted(name)}: {value} is not a finite number"
                " (the header is row 1)"
            )
    # a sum of finite values can overflow to inf; then every value was fine
