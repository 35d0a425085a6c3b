"""The row rules, defined once: the quarantine keeps out the rows they flag, and the checks
count the rows of the table they flag (which must be none)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from wflog_assets.day import MAX_UNIX_SECONDS


def no_workflow_name(names: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True where the workflow name is null, empty or blank."""
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(names), ""), True)


def outside_day(timestamps: pa.Array | pa.ChunkedArray, start: float, end: float) -> pa.Array:
    """True where the timestamp is null, NaN or outside [start, end)."""
    inside = pc.and_(pc.greater_equal(timestamps, start), pc.less(timestamps, end))
    return pc.fill_null(pc.invert(inside), True)


def not_unix_seconds(timestamps: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True where the timestamp is NaN, infinite, or too large to be Unix seconds (a time in
    milliseconds or nanoseconds); null stays false (`outside_day` reports it)."""
    return pc.fill_null(pc.invert(pc.less(pc.abs(timestamps), MAX_UNIX_SECONDS)), False)
