"""An independent, row-by-row reading of source files into expected table rows.

Deliberately written without Arrow compute, straight from shared/source-data.md, so the
pipeline's vectorised normalization is checked against a second implementation.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pyarrow.parquet as pq
from pyiceberg.table import Table

from wflog_assets.schema import EXTRA_FIELDS
from wflog_assets.source import ObjectStore, list_day


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expected_row(record: dict[str, Any], key: str, etag: str) -> dict[str, Any]:
    extra_in = record.get("extra") or {}
    extra = {name: _text(extra_in.get(name)) for name in EXTRA_FIELDS}
    ts = record.get("timestamp")
    level = record.get("level")
    return {
        "timestamp": None if ts is None else float(ts),
        "level": "WARNING" if level == "WARN" else level,
        "logger_name": record.get("logger_name"),
        "message": record.get("message"),
        "file": record.get("file"),
        "line": record.get("line"),
        "function": record.get("function"),
        "trace_id": extra["trace_id"],
        "atlan_argo_workflow_name": extra["atlan-argo-workflow-name"],
        "atlan_argo_workflow_node": extra["atlan-argo-workflow-node"],
        "extra": extra if record.get("extra") is not None else None,
        "month": None if ts is None else dt.datetime.fromtimestamp(ts, tz=dt.UTC).month,
        "source_file": key,
        "source_etag": etag,
    }


def expected_rows_for_days(store: ObjectStore, days: list[dt.date]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for day in days:
        for entry in list_day(store, day).entries:
            table = pq.read_table(io.BytesIO(store.read(entry.key)))
            rows.extend(expected_row(r, entry.key, entry.etag) for r in table.to_pylist())
    return sorted_rows(rows)


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["source_file"], row["timestamp"] or 0.0, row["message"] or "", row["line"] or 0)


def sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=_row_key)


def table_rows(table: Table) -> list[dict[str, Any]]:
    return sorted_rows(table.scan().to_arrow().to_pylist())
