"""The row rules, defined once: the quarantine keeps out the rows they flag, and the checks
count the rows of the table they flag (which must be none)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def no_workflow_name(names: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True where the workflow name is null, empty or blank."""
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(names), ""), True)


def outside_day(timestamps: pa.Array | pa.ChunkedArray, start: float, end: float) -> pa.Array:
    """True where the timestamp is null or outside [start, end)."""
    return pc.fill_null(pc.or_(pc.less(timestamps, start), pc.greater_equal(timestamps, end)), True)
