"""Small helpers for turning Arrow query results into numpy arrays without making a Python
object per row: string columns as integer codes, runs of equal keys in sorted rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def popcount(masks: np.ndarray) -> np.ndarray:
    """Set bits of each 64-bit mask (minutes of an hour)."""
    return np.bitwise_count(masks).astype(np.int64)


def _flat(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.flatten() if pa.types.is_list(array.type) else array


def numbers(tables: Sequence[pa.Table], name: str, dtype: Any) -> np.ndarray:
    """A numeric (or list of numeric) column of every table, concatenated; NULL as 0."""
    parts = [
        pc.fill_null(_flat(t.column(name)), 0).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        for t in tables
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def present(tables: Sequence[pa.Table], name: str) -> np.ndarray:
    """Where a column is not NULL."""
    parts = [pc.is_valid(_flat(t.column(name))).to_numpy(zero_copy_only=False) for t in tables]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def lengths(tables: Sequence[pa.Table], name: str) -> np.ndarray:
    """The length of a list column's value in every row."""
    parts = [
        pc.list_value_length(t.column(name).combine_chunks()).to_numpy(zero_copy_only=False) for t in tables
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Labels:
    """A string column as integer codes into its distinct `values` (rows never become
    Python strings; only the few values do)."""

    codes: np.ndarray
    values: np.ndarray

    @staticmethod
    def of(tables: Sequence[pa.Table], name: str) -> Labels:
        arrays = [_flat(t.column(name)).cast(pa.string()) for t in tables]
        encoded = pc.dictionary_encode(pa.concat_arrays(arrays) if arrays else pa.array([], pa.string()))
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        return Labels(codes, np.asarray(encoded.dictionary.to_pylist(), dtype=object))

    def take(self, index: np.ndarray) -> Labels:
        return Labels(self.codes[index], self.values)

    def text(self, row: int) -> str:
        return str(self.values[self.codes[row]])

    @property
    def blank(self) -> np.ndarray:
        """True where the row's value is ''."""
        if not len(self.values):
            return np.zeros(len(self.codes), dtype=bool)
        return (self.values == "")[self.codes]


def key(*labels: Labels) -> np.ndarray:
    """One integer per distinct combination of the labels' values."""
    out = np.zeros(len(labels[0].codes), dtype=np.int64)
    for label in labels:
        out = out * max(1, len(label.values)) + label.codes
    return out


@dataclass(frozen=True, slots=True)
class Segments:
    """Runs of equal keys in sorted rows: `starts` (first row of each run) and `ids`
    (the run of each row)."""

    starts: np.ndarray
    ids: np.ndarray

    @staticmethod
    def where(changes: np.ndarray) -> Segments:
        """`changes[i]`: row i starts a new run (row 0 always does)."""
        changes = changes.copy()
        if changes.size:
            changes[0] = True
        return Segments(np.flatnonzero(changes), np.cumsum(changes) - 1)

    @staticmethod
    def of(*keys: np.ndarray) -> Segments:
        """Runs of consecutive rows equal in every key."""
        changed = np.zeros(len(keys[0]), dtype=bool)
        for k in keys:
            changed[1:] |= k[1:] != k[:-1]
        return Segments.where(changed)

    @property
    def count(self) -> int:
        return len(self.starts)

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, self.starts) if self.count else values[:0]

    def max(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, self.starts) if self.count else values[:0]

    def min(self, values: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(values, self.starts) if self.count else values[:0]

    def any_bits(self, values: np.ndarray) -> np.ndarray:
        return np.bitwise_or.reduceat(values, self.starts) if self.count else values[:0]

    def last_nonblank(self, label: Labels, keep: np.ndarray | None = None) -> Labels:
        """Per run, the value of its last row whose value is not '' (and `keep`), else ''."""
        usable = ~label.blank if keep is None else ~label.blank & keep
        index = self.max(np.where(usable, np.arange(len(label.codes)), -1))
        blank = np.flatnonzero(label.values == "")
        values = label.values if blank.size else np.append(label.values, "")
        none = blank[0] if blank.size else len(label.values)
        return Labels(np.where(index >= 0, label.codes[np.maximum(index, 0)], none), values)
