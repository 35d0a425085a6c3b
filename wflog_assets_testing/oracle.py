"""An independent, row-by-row reading of source files into expected table rows.

Deliberately written without Arrow compute, straight from shared/source-data.md, so the
pipeline's vectorised normalization is checked against a second implementation.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
from typing import Any

import pyarrow.parquet as pq
from pyiceberg.table import Table

from wflog_assets.day import day_prefix
from wflog_assets.iceberg.schema import EXTRA_FIELDS
from wflog_assets.source.listing import list_day
from wflog_assets.source.stores import ObjectStore


def _text(value: Any) -> str | None:
    """Strings as written; other JSON values as JSON (compared parsed, see `canonical`)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def canonical(text: str | None) -> Any:
    """Nested JSON text compared by value, with null members dropped (documented behaviour)."""
    if text is None or not text.startswith(("{", "[")):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text

    def drop(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: drop(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop(x) for x in v]
        return v

    return json.dumps(drop(value), sort_keys=True)


_WRITER_FILE = re.compile(r"/hour=(\d\d)/(\d+)_\d+_([^/]+)\.json\.gz$")


def _stand_in(key: str, extra: dict[str, Any]) -> str | None:
    """The data contract's workflow name of an app-level record: app:<deployment>_<app>."""
    match = _WRITER_FILE.search(key)
    if match:
        return f"app:{match[3]}"
    if isinstance(extra.get("deployment_name"), str) and isinstance(extra.get("app_name"), str):
        return f"app:{extra['deployment_name']}_{extra['app_name']}"
    return None


def _named(value: str | None) -> str | None:
    """A name, or None when it is empty or only whitespace (the next source is taken)."""
    return value if value is not None and value.strip() else None


def lands_in(key: str, timestamp: float, day: dt.date) -> bool:
    """Whether a record of file `key` belongs to `day` by the data contract: its UTC day is
    `day`, and its file is filed under `day`, or (the writer's local time) under a day next to
    it, named with a flush time from `day`'s start to 10 min after its end, in an hour folder
    a UTC offset of at most 14 h reaches."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    if not start <= timestamp < start + 86_400:
        return False
    folder = re.search(r"year=(\d{4})/month=(\d\d)/day=(\d\d)/", key)
    assert folder is not None
    filed = dt.date(int(folder[1]), int(folder[2]), int(folder[3]))
    if filed == day:
        return True
    match = _WRITER_FILE.search(key)
    if match is None or abs((filed - day).days) != 1:
        return False
    hour, flushed = int(match[1]), int(match[2]) / 1e9
    reach = hour >= 9 if filed < day else hour <= 14
    return reach and start <= flushed < start + 86_400 + 600


def expected_row(record: dict[str, Any], key: str, etag: str) -> dict[str, Any]:
    extra_in = record.get("extra") or {}
    extra = {name: _text(extra_in.get(name)) for name in EXTRA_FIELDS}
    other = sorted((k, _text(v)) for k, v in extra_in.items() if k not in EXTRA_FIELDS and v is not None)
    ts = record.get("timestamp")
    ts = float(ts) if isinstance(ts, str) else ts  # a number written as text (data contract)
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
        "atlan_argo_workflow_name": _named(extra["atlan-argo-workflow-name"])
        or _named(extra["workflow_id"])
        or _stand_in(key, extra_in),
        "atlan_argo_workflow_node": extra["atlan-argo-workflow-node"]
        or _text(extra_in.get("workflow_run_id")),
        "extra": extra if record.get("extra") is not None else None,
        "month": None if ts is None else dt.datetime.fromtimestamp(ts, tz=dt.UTC).month,
        "source_file": key,
        "source_etag": etag,
        "extra_other": other,
    }


def source_records(data: bytes, key: str) -> list[dict[str, Any]]:
    """The records of one source file, read the plain way (no Arrow inference for JSON)."""
    if key.endswith(".json.gz"):
        lines = gzip.decompress(data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]
    records: list[dict[str, Any]] = pq.read_table(io.BytesIO(data)).to_pylist()
    return records


def expected_rows_for_days(store: ObjectStore, days: list[dt.date]) -> list[dict[str, Any]]:
    """The rows the table must hold for `days`: every record whose UTC day is one of them,
    from the files of their folders and their neighbours' (`lands_in`)."""
    folders = sorted({d + dt.timedelta(days=step) for d in days for step in (-1, 0, 1)})
    rows: list[dict[str, Any]] = []
    for folder in folders:
        for entry in list_day(store, folder).entries:
            if not entry.key.startswith(day_prefix(folder)):
                continue  # read once, from its own folder
            for record in source_records(store.read(entry.key), entry.key):
                ts = record.get("timestamp")
                if not isinstance(ts, int | float) or isinstance(ts, bool):
                    continue  # no day: the reader reports the line
                if any(lands_in(entry.key, float(ts), d) for d in days):
                    rows.append(expected_row(record, entry.key, entry.etag))
    return sorted_rows(rows)


def _canonical_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    if row["extra"] is not None:
        row["extra"] = {k: canonical(v) for k, v in row["extra"].items()}
    row["extra_other"] = sorted((k, canonical(v)) for k, v in row["extra_other"] or [])
    return row


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["source_file"], row["timestamp"] or 0.0, row["message"] or "", row["line"] or 0)


def sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((_canonical_row(r) for r in rows), key=_row_key)


def table_rows(table: Table) -> list[dict[str, Any]]:
    return sorted_rows(table.scan().to_arrow().to_pylist())
