"""The P0 query: logs of one workflow (optionally a node and a time range), newest first."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    LessThan,
)
from pyiceberg.table import Table

from wflog_assets.schema import TIMESTAMP, WORKFLOW_NAME, WORKFLOW_NODE

DEFAULT_COLUMNS: tuple[str, ...] = (
    TIMESTAMP, "level", "logger_name", WORKFLOW_NODE, "message",
)


@dataclass(frozen=True)
class P0Result:
    rows: pa.Table
    files_planned: int
    bytes_planned: int
    seconds: float


def p0_filter(workflow: str, node: str | None = None, start: float | None = None,
              end: float | None = None) -> BooleanExpression:
    expr: BooleanExpression = EqualTo(WORKFLOW_NAME, workflow)
    for extra in (
        EqualTo(WORKFLOW_NODE, node) if node is not None else None,
        GreaterThanOrEqual(TIMESTAMP, start) if start is not None else None,
        LessThan(TIMESTAMP, end) if end is not None else None,
    ):
        if extra is not None:
            expr = And(expr, extra)
    return expr if expr is not None else AlwaysTrue()


def p0_query(
    table: Table,
    workflow: str,
    node: str | None = None,
    start: float | None = None,
    end: float | None = None,
    limit: int = 100,
    columns: tuple[str, ...] = DEFAULT_COLUMNS,
) -> P0Result:
    """Newest `limit` rows of `workflow`, pruned by partition and file statistics."""
    started = time.perf_counter()
    selected = tuple(dict.fromkeys((*columns, TIMESTAMP)))
    scan = table.scan(row_filter=p0_filter(workflow, node, start, end), selected_fields=selected)
    tasks = list(scan.plan_files())
    rows = scan.to_arrow()
    if rows.num_rows:
        order = pc.sort_indices(rows, sort_keys=[(TIMESTAMP, "descending", "at_end")])
        rows = rows.take(order[:limit])
    return P0Result(
        rows=rows.select(list(columns)),
        files_planned=len(tasks),
        bytes_planned=sum(t.file.file_size_in_bytes for t in tasks),
        seconds=time.perf_counter() - started,
    )


def workflow_row_counts(table: Table) -> pa.Table:
    """Rows per workflow, heaviest first."""
    names = table.scan(selected_fields=(WORKFLOW_NAME,)).to_arrow()
    counts = names.group_by(WORKFLOW_NAME).aggregate([([], "count_all")])
    return counts.sort_by([("count_all", "descending"), (WORKFLOW_NAME, "ascending")])
