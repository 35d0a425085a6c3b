"""The P0 query: logs of one workflow (optionally a node and a time range), newest first.

How it reads only what it needs (no Dagster here):

1. pyiceberg plans the files: partition pruning (identity or bucket on the workflow name,
   identity on month) and file statistics (min/max of name, node, timestamp).
2. Files are visited newest first, by the upper bound of their `timestamp` statistics.
3. Inside a file, row groups are pruned by their own Parquet statistics (name, node, time
   range), and only the selected columns of the remaining row groups are read.
4. Once `limit` rows are held, a row group or file whose newest timestamp is older than the
   oldest row held cannot change the answer and is not read. Data files are written sorted by
   timestamp DESC, so a LIMIT 100 on a 400k-row workflow reads one row group, not 400k rows.

Files with delete files, and nested columns (`extra`, `extra_other`), are read through
pyiceberg's own reader for that file, with the same filter: same rows, no early stop inside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
)
from pyiceberg.table import FileScanTask, Table
from pyiceberg.types import DoubleType, NestedField, PrimitiveType

from wflog_assets.errors import QueryError
from wflog_assets.iceberg._compat import ArrowScan, from_bytes, schema_to_pyarrow
from wflog_assets.iceberg.expressions import at_least, equal, less_than
from wflog_assets.iceberg.schema import TIMESTAMP, WORKFLOW_NAME, WORKFLOW_NODE

DEFAULT_COLUMNS: tuple[str, ...] = (
    TIMESTAMP,
    "level",
    "logger_name",
    WORKFLOW_NODE,
    "message",
)
_FIELD_ID = b"PARQUET:field_id"


@dataclass(frozen=True)
class P0Result:
    """The rows (newest first) and what it took to get them."""

    rows: pa.Table
    files_planned: int  # data files left after partition and file-statistics pruning
    bytes_planned: int  # their total size
    files_read: int  # files whose footer was read
    row_groups_read: int
    rows_scanned: int  # rows decoded from the row groups that were read
    bytes_read: int  # footers + column chunks actually fetched
    plan_seconds: float
    seconds: float  # planning + reading + sorting


@dataclass(frozen=True)
class P0Query:
    workflow: str | None
    node: str | None = None
    start: float | None = None  # Unix seconds, inclusive
    end: float | None = None  # Unix seconds, exclusive
    limit: int | None = 100

    def row_filter(self) -> BooleanExpression:
        expr: BooleanExpression = AlwaysTrue()
        if self.workflow is not None:
            expr = And(expr, equal(WORKFLOW_NAME, self.workflow))
        if self.node is not None:
            expr = And(expr, equal(WORKFLOW_NODE, self.node))
        if self.start is not None:
            expr = And(expr, at_least(TIMESTAMP, self.start))
        if self.end is not None:
            expr = And(expr, less_than(TIMESTAMP, self.end))
        return expr

    def arrow_mask(self, rows: pa.Table) -> pa.ChunkedArray:
        mask = pa.repeat(pa.scalar(True), rows.num_rows)
        if self.workflow is not None:
            mask = pc.and_(mask, pc.equal(rows.column(WORKFLOW_NAME), self.workflow))
        if self.node is not None:
            mask = pc.and_(mask, pc.equal(rows.column(WORKFLOW_NODE), self.node))
        if self.start is not None:
            mask = pc.and_(mask, pc.greater_equal(rows.column(TIMESTAMP), self.start))
        if self.end is not None:
            mask = pc.and_(mask, pc.less(rows.column(TIMESTAMP), self.end))
        return pc.fill_null(mask, False)


class _TopN:
    """The newest `limit` rows seen so far (all rows when `limit` is None)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.pieces: list[pa.Table] = []
        self.held = 0

    def add(self, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        self.pieces.append(rows)
        self.held += rows.num_rows
        if self.limit is not None and self.held >= 2 * max(self.limit, 1024):
            self.pieces, self.held = [self.result()], min(self.held, self.limit)

    def result(self) -> pa.Table | None:
        if not self.pieces:
            return None
        both = pa.concat_tables(self.pieces)
        order = pc.sort_indices(both, sort_keys=[(TIMESTAMP, "descending", "at_end")])
        return both.take(order if self.limit is None else order[: self.limit])

    def cannot_improve(self, newest: float | None) -> bool:
        """True if rows no newer than `newest` cannot enter the result."""
        if self.limit == 0:
            return True
        if self.limit is None or self.held < self.limit or newest is None:
            return False
        held = self.result()
        self.pieces = [held] if held is not None else []
        oldest_held = held.column(TIMESTAMP)[-1].as_py() if held is not None else None
        return oldest_held is not None and newest < oldest_held


@dataclass
class _Counters:
    files_read: int = 0
    row_groups_read: int = 0
    rows_scanned: int = 0
    bytes_read: int = 0


def _bound(task: FileScanTask, field_id: int, upper: bool) -> float | None:
    bounds = task.file.upper_bounds if upper else task.file.lower_bounds
    raw = (bounds or {}).get(field_id)
    return None if raw is None else float(from_bytes(DoubleType(), raw))


def _rg_stats(rg: pq.RowGroupMetaData, index: int | None) -> tuple[Any, Any] | None:
    if index is None:
        return None
    stats = rg.column(index).statistics
    if stats is None or not stats.has_min_max:
        return None
    return stats.min, stats.max


def _rg_may_match(rg: pq.RowGroupMetaData, cols: dict[str, int | None], query: P0Query) -> bool:
    """False only when the row group's statistics prove no row can match."""
    for name, value in ((WORKFLOW_NAME, query.workflow), (WORKFLOW_NODE, query.node)):
        if value is None:
            continue
        if cols.get(name) is None:
            return False  # the column is absent from the file: all null, never equal
        stats = _rg_stats(rg, cols[name])
        if stats is not None and not (stats[0] <= value <= stats[1]):
            return False
    ts = _rg_stats(rg, cols.get(TIMESTAMP))
    if ts is not None:
        if query.start is not None and ts[1] < query.start:
            return False
        if query.end is not None and ts[0] >= query.end:
            return False
    return True


def _only_value(task: FileScanTask, field_id: int, value: str) -> bool:
    """True when the file's statistics prove every row holds `value` in that column."""
    lower = (task.file.lower_bounds or {}).get(field_id)
    upper = (task.file.upper_bounds or {}).get(field_id)
    nulls = (task.file.null_value_counts or {}).get(field_id)
    encoded = value.encode()
    return lower == encoded and upper == encoded and nulls == 0


def _read_file(
    table: Table,
    task: FileScanTask,
    query: P0Query,
    columns: tuple[str, ...],
    top: _TopN,
    counters: _Counters,
) -> None:
    """Row groups of one data file, pruned and stopped early; matching rows go to `top`."""
    schema = table.schema()
    # Filter columns are read only when the file's statistics do not already settle them
    # (an identity-partitioned file holds one workflow).
    filters = [
        name
        for name, value in ((WORKFLOW_NAME, query.workflow), (WORKFLOW_NODE, query.node))
        if value is not None and not _only_value(task, schema.find_field(name).field_id, value)
    ]
    needed = tuple(dict.fromkeys((*columns, TIMESTAMP, *filters)))
    query = P0Query(
        workflow=query.workflow if WORKFLOW_NAME in filters else None,
        node=query.node if WORKFLOW_NODE in filters else None,
        start=query.start,
        end=query.end,
        limit=query.limit,
    )
    with table.io.new_input(task.file.file_path).open() as stream:
        parquet = pq.ParquetFile(stream)
        meta = parquet.metadata
        counters.files_read += 1
        counters.bytes_read += meta.serialized_size + 8
        by_id = {
            int(f.metadata[_FIELD_ID]): f.name
            for f in parquet.schema_arrow
            if f.metadata and _FIELD_ID in f.metadata
        }
        # a top-level primitive column's leaf path is its name
        leaf = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
        file_name = {name: by_id.get(schema.find_field(name).field_id) for name in needed}
        cols = {name: leaf.get(f) if f is not None else None for name, f in file_name.items()}
        present = [f for f in file_name.values() if f is not None]
        target = schema_to_pyarrow(schema.select(*needed), include_field_ids=False)
        for i in range(meta.num_row_groups):
            rg = meta.row_group(i)
            ts = _rg_stats(rg, cols.get(TIMESTAMP))
            if top.cannot_improve(ts[1] if ts is not None else None):
                continue  # sorted DESC: every later row group is older still
            if not _rg_may_match(rg, cols, query):
                continue
            data = parquet.read_row_group(i, columns=present)
            counters.row_groups_read += 1
            counters.rows_scanned += data.num_rows
            counters.bytes_read += sum(
                rg.column(c).total_compressed_size for c in cols.values() if c is not None
            )
            arrays = [
                data.column(file_name[f.name]).cast(f.type)
                if file_name[f.name] is not None
                else pa.nulls(data.num_rows, f.type)
                for f in target
            ]
            rows = pa.Table.from_arrays(arrays, schema=target)
            top.add(rows.filter(query.arrow_mask(rows)).select(list(columns)))


def _fast_path_ok(table: Table, task: FileScanTask, columns: tuple[str, ...]) -> bool:
    schema = table.schema()
    fields: list[NestedField] = [schema.find_field(c) for c in columns]
    return not task.delete_files and all(isinstance(f.field_type, PrimitiveType) for f in fields)


def _read_with_pyiceberg(
    table: Table,
    task: FileScanTask,
    query: P0Query,
    columns: tuple[str, ...],
    top: _TopN,
    counters: _Counters,
) -> None:
    scan = ArrowScan(table.metadata, table.io, table.schema().select(*columns), query.row_filter())
    rows = scan.to_table([task])
    counters.files_read += 1
    counters.rows_scanned += task.file.record_count
    counters.bytes_read += task.file.file_size_in_bytes
    top.add(rows)


def plan_p0(table: Table, query: P0Query) -> list[FileScanTask]:
    """The data files the query may need, newest first (by timestamp upper bound)."""
    tasks = list(table.scan(row_filter=query.row_filter()).plan_files())
    ts_id = table.schema().find_field(TIMESTAMP).field_id

    def newest(task: FileScanTask) -> float:
        bound = _bound(task, ts_id, upper=True)
        return math.inf if bound is None else bound

    return sorted(tasks, key=newest, reverse=True)


def p0_query(
    table: Table,
    workflow: str,
    node: str | None = None,
    start: float | None = None,
    end: float | None = None,
    limit: int | None = 100,
    columns: tuple[str, ...] = DEFAULT_COLUMNS,
) -> P0Result:
    """Newest `limit` rows (None: all) of `workflow` (optionally `node`, `start` <= ts < `end`)."""
    if limit is not None and limit < 0:
        raise QueryError(f"limit={limit}: use 0 or more rows")
    unknown = [c for c in columns if c not in table.schema().column_names]
    if unknown:
        raise QueryError(f"unknown column(s) {unknown}: choose from {table.schema().column_names}")
    selected = tuple(dict.fromkeys((*columns, TIMESTAMP)))
    query = P0Query(workflow=workflow, node=node, start=start, end=end, limit=limit)
    started = time.perf_counter()
    tasks = plan_p0(table, query)
    planned = time.perf_counter()
    ts_id = table.schema().find_field(TIMESTAMP).field_id
    top, counters = _TopN(limit), _Counters()
    for task in tasks:
        if top.cannot_improve(_bound(task, ts_id, upper=True)):
            break  # files are in newest-first order: none after this one can improve
        reader = _read_file if _fast_path_ok(table, task, selected) else _read_with_pyiceberg
        reader(table, task, query, selected, top, counters)
    empty = schema_to_pyarrow(table.schema().select(*selected), include_field_ids=False)
    held = top.result()
    rows = held if held is not None else empty.empty_table()
    return P0Result(
        rows=rows.select(list(columns)),
        files_planned=len(tasks),
        bytes_planned=sum(t.file.file_size_in_bytes for t in tasks),
        files_read=counters.files_read,
        row_groups_read=counters.row_groups_read,
        rows_scanned=counters.rows_scanned,
        bytes_read=counters.bytes_read,
        plan_seconds=planned - started,
        seconds=time.perf_counter() - started,
    )


def workflow_row_counts(table: Table) -> pa.Table:
    """Rows per workflow, heaviest first."""
    names = table.scan(selected_fields=(WORKFLOW_NAME,)).to_arrow()
    counts = names.group_by(WORKFLOW_NAME).aggregate([([], "count_all")])
    return counts.sort_by([("count_all", "descending"), (WORKFLOW_NAME, "ascending")])


def iter_planned_paths(table: Table, query: P0Query) -> Iterator[str]:
    """Paths of the files the query plans (for tests and reports)."""
    for task in plan_p0(table, query):
        yield task.file.file_path
