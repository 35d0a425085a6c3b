"""Synthetic chunk files shaped like the real writer's (see shared/source-data.md).

The writer turns buffered record dicts into a table with pyarrow's type inference, so this
generator does the same (`pa.Table.from_pylist`): per-file schemas then vary exactly as in
production (null-typed children, missing children, int-vs-string numbers, child order).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from wflog_assets.day import Day, day_prefix
from wflog_assets.source.stores import ObjectStore

CONNECTORS = (
    "salesforce",
    "snowflake",
    "postgres",
    "tableau",
    "bigquery",
    "redshift",
    "looker",
    "databricks",
    "mysql",
    "dbt",
    "powerbi",
    "oracle",
    "mssql",
    "s3",
    "glue",
)
LOGGERS = tuple(
    f"application_sdk.{area}.{mod}"
    for area, mods in {
        "activities": ("metadata_extraction", "query_extraction", "lineage", "common"),
        "workflows": ("metadata_extraction", "query_extraction", "base"),
        "clients": ("sql", "temporal", "objectstore", "http", "redis"),
        "handlers": ("sql", "base"),
        "transformers": ("atlas", "query", "common"),
        "outputs": ("parquet", "json", "iceberg"),
        "inputs": ("parquet", "sql", "json"),
        "observability": ("logger", "metrics", "traces"),
        "common": ("utils", "error_codes", "aws"),
    }.items()
    for mod in mods
)
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL")
NODES = ("fetch", "extract", "transform", "publish", "lineage", "cleanup")
NUMERIC_EXTRA = ("attempt", "duration_ms", "status_code")
STRING_EXTRA = (
    "activity_id",
    "activity_type",
    "client_host",
    "heartbeat_timeout",
    "log_type",
    "method",
    "namespace",
    "path",
    "request_id",
    "run_id",
    "schedule_to_close_timeout",
    "schedule_to_start_timeout",
    "start_to_close_timeout",
    "task_queue",
    "url",
    "workflow_id",
    "workflow_type",
)


@dataclass(frozen=True)
class GeneratorSettings:
    rows_per_day: int = 20_000
    files_per_day: int = 8
    workflows_per_day: int = 25
    hour_level: bool = False  # some deployments add .../day=DD/hour=HH/
    seed: int = 7
    # "parquet" (the old writer), "jsonl" (gzip JSON lines of the current writer) or "mixed"
    format: str = "parquet"


def workflow_name(rng: random.Random, day: dt.date) -> str:
    """`atlan-<connector>-<template epoch>-cron-<run epoch>`: a new name for each run."""
    template = 1_600_000_000 + rng.randrange(100_000_000)
    run = int(Day(day).start) + rng.randrange(86_400)
    return f"atlan-{rng.choice(CONNECTORS)}-{template}-cron-{run}"


def _workflow_weights(rng: random.Random, count: int) -> list[float]:
    # Long tail: a few runs log most of the day, most log a few hundred rows.
    return [1.0 / (rank**1.6) for rank in range(1, count + 1)]


def message_text(rng: random.Random, level: str, i: int) -> str:
    """A log message like the writer's: tracebacks for errors, batch progress otherwise."""
    if level in ("ERROR", "CRITICAL"):
        return (
            f"Activity failed (row {i}): connection reset by peer\n"
            "Traceback (most recent call last):\n"
            '  File "/app/application_sdk/clients/sql.py", line 212, in run_query\n'
            "    cursor.execute(query)\n"
            "ConnectionResetError: [Errno 104] Connection reset by peer, "
            + "retrying with backoff "
            * rng.randrange(1, 40)
        )
    return f"Processed batch {i} of {rng.randrange(1, 500)} records, status=ok, query='SELECT 1, \"x\"'"


def _file_table(
    rng: random.Random,
    day: dt.date,
    names: list[str],
    weights: list[float],
    n_rows: int,
    t0: float,
    t1: float,
    index: int,
) -> pa.Table:
    """One chunk file's records, with this file's own schema quirks."""
    numeric_as_string = {k: rng.random() < 0.3 for k in NUMERIC_EXTRA}
    all_null = {k for k in (*STRING_EXTRA, *NUMERIC_EXTRA) if rng.random() < 0.15}
    missing = {k for k in (*STRING_EXTRA, *NUMERIC_EXTRA) if rng.random() < 0.15} - all_null
    with_month = rng.random() < 0.5
    run_id_mode = rng.choice(("absent", "null", "value"))
    extra_keys = [
        "atlan-argo-workflow-name",
        "atlan-argo-workflow-node",
        "trace_id",
        *(k for k in (*STRING_EXTRA, *NUMERIC_EXTRA) if k not in missing),
    ]
    rng.shuffle(extra_keys)  # child order differs between files
    timestamps = sorted(rng.uniform(t0, t1) for _ in range(n_rows))
    records = []
    for i, ts in enumerate(timestamps):
        name = rng.choices(names, weights)[0]
        level = rng.choice(LEVELS)
        extra: dict[str, object] = {}
        for key in extra_keys:
            if key in all_null:
                extra[key] = None
            elif key == "atlan-argo-workflow-name":
                extra[key] = name
            elif key == "atlan-argo-workflow-node":
                extra[key] = f"{name}-{rng.choice(NODES)}-{rng.randrange(10**9, 10**10)}"
            elif key == "trace_id":
                extra[key] = name
            elif key in NUMERIC_EXTRA:
                value = (
                    rng.randrange(1, 5000) if key != "status_code" else rng.choice((200, 201, 400, 404, 500))
                )
                extra[key] = str(value) if numeric_as_string[key] else value
            else:
                extra[key] = f"{key}-{rng.randrange(10_000)}"
        record: dict[str, object] = {
            "timestamp": ts,
            "level": level,
            "logger_name": rng.choice(LOGGERS),
            "message": message_text(rng, level, i),
            "file": "/app/application_sdk/" + rng.choice(("a.py", "b/c.py", "d/e/f.py")),
            "line": rng.randrange(1, 900),
            "function": rng.choice(("run", "execute", "fetch_metadata", "transform", "__call__")),
        }
        if run_id_mode != "absent":
            record["argo_workflow_run_id"] = None if run_id_mode == "null" else name
            record["argo_workflow_run_uuid"] = None if run_id_mode == "null" else f"uuid-{index}"
        if with_month:
            record["month"] = day.month
        record["extra"] = extra
        records.append(record)
    return pa.Table.from_pylist(records)


# Keys of the current writer's open `extra` dict beyond the 23 known ones, with JSON values
# of every type (see source-data.md, "The writer today").
def open_extra(rng: random.Random, name: str, temporal_only: bool) -> dict[str, object]:
    """The current writer's open `extra` dict for a record of workflow `name`."""
    extra: dict[str, object] = {
        "workflow_id": f"{name}-wf" if temporal_only else name,
        "workflow_run_id": f"run-{rng.randrange(10**12):012d}",
        "in_workflow": rng.random() < 0.8,
        "trace_id": name,
    }
    if not temporal_only:
        extra["atlan-argo-workflow-name"] = name
        extra["atlan-argo-workflow-node"] = f"{name}-{rng.choice(NODES)}-{rng.randrange(10**9)}"
    if rng.random() < 0.5:
        extra.update(
            {
                "http_method": rng.choice(("GET", "POST")),
                "http_status": rng.choice((200, 201, 404, 503)),
                "url": f"https://api.example.com/v1/{rng.randrange(99)}",
            }
        )
    if rng.random() < 0.3:
        extra["objectstore_timings_ms"] = [rng.randrange(1, 90) for _ in range(rng.randrange(1, 4))]
        extra["objectstore_bytes"] = rng.randrange(10**7)
    if rng.random() < 0.2:
        extra["error"] = {
            "type": "ConnectionResetError",
            "retryable": True,
            "detail": {"errno": 104, "host": "db.internal"},
        }
    if rng.random() < 0.3:
        extra["duration_ms"] = round(rng.uniform(0.5, 9000), 3)
    if rng.random() < 0.2:
        extra["parent_workflow_id"] = f"parent-{rng.randrange(1000)}"
    if rng.random() < 0.1:
        extra["note"] = "naïve café ✓ 日本語"  # non-ASCII text
    return extra


def json_record(rng: random.Random, ts: float, level: str, i: int, extra: dict[str, object]) -> str:
    """One JSON line of the current writer (logger, message and call site drawn from `rng`)."""
    record = {
        "timestamp": ts,
        "level": level,
        "logger_name": rng.choice(LOGGERS),
        "message": message_text(rng, level, i),
        "file": "/app/application_sdk/a.py",
        "line": rng.randrange(1, 900),
        "function": "run",
        "extra": extra,
    }
    return json.dumps(record, ensure_ascii=False)


def _json_lines_file(
    rng: random.Random, names: list[str], weights: list[float], n_rows: int, t0: float, t1: float
) -> bytes:
    """One gzip JSON-lines file; in some files a key changes JSON type between lines."""
    drift = rng.random() < 0.2
    lines = []
    for i, ts in enumerate(sorted(rng.uniform(t0, t1) for _ in range(n_rows))):
        name = rng.choices(names, weights)[0]
        level = rng.choice(LEVELS)
        extra = open_extra(rng, name, temporal_only=rng.random() < 0.1)
        extra["attempt"] = str(i % 3 + 1) if drift and i % 2 else i % 3 + 1
        lines.append(json_record(rng, ts, level, i, extra))
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def json_key(day: dt.date, hour: int, stamp_ns: int, seq: int) -> str:
    return f"{day_prefix(day)}hour={hour:02d}/{stamp_ns}_{seq:04d}_prod-eu-1_atlan-application-sdk.json.gz"


def _encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def chunk_key(day: dt.date, index: int, stamp_ms: int, hour: int | None = None) -> str:
    folder = day_prefix(day) + (f"hour={hour:02d}/" if hour is not None else "")
    return f"{folder}chunk-{index}-part{stamp_ms}.parquet"


def generate_day(day: dt.date, settings: GeneratorSettings) -> Iterator[tuple[str, bytes]]:
    """(key, Parquet bytes) of one day's chunk files, deterministic for (day, seed)."""
    rng = random.Random(f"{settings.seed}-{day.isoformat()}")
    names = [workflow_name(rng, day) for _ in range(settings.workflows_per_day)]
    weights = _workflow_weights(rng, len(names))
    start = Day(day).start
    span = 86_400 / settings.files_per_day
    base, extra_rows = divmod(settings.rows_per_day, settings.files_per_day)
    for index in range(settings.files_per_day):
        n_rows = base + (1 if index < extra_rows else 0)
        t0, t1 = start + index * span, start + (index + 1) * span - 1e-3
        as_json = settings.format == "jsonl" or (settings.format == "mixed" and index % 2 == 1)
        if as_json:
            stamp_ns = int(t1 * 1_000_000) * 1000
            yield (
                json_key(day, int(index * span // 3600), stamp_ns, index),
                _json_lines_file(rng, names, weights, n_rows, t0, t1),
            )
            continue
        table = _file_table(rng, day, names, weights, n_rows, t0, t1, index)
        hour = int(index * span // 3600) if settings.hour_level else None
        yield chunk_key(day, index, int(t1 * 1000), hour), _encode(table)


def generate_late_file(
    day: dt.date, settings: GeneratorSettings, index: int, rows: int, delay_s: float = 3_600
) -> tuple[str, bytes]:
    """A chunk that arrives after the day ended (a late buffer flush): rows inside `day`."""
    rng = random.Random(f"{settings.seed}-{day.isoformat()}-late-{index}")
    names = [workflow_name(rng, day) for _ in range(max(2, settings.workflows_per_day // 5))]
    start = Day(day).start
    table = _file_table(
        rng,
        day,
        names,
        _workflow_weights(rng, len(names)),
        rows,
        start + 86_000,
        start + 86_399.999,
        1000 + index,
    )
    stamp_ms = int((start + 86_400 + delay_s) * 1000)
    return chunk_key(day, 1000 + index, stamp_ms), _encode(table)


def write_days(
    store: ObjectStore, start: dt.date, days: int, settings: GeneratorSettings, late_files_per_day: int = 0
) -> list[str]:
    """Write `days` days of chunk files (and optional late files) into `store`; return the keys."""
    keys: list[str] = []
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        for key, data in generate_day(day, settings):
            store.write(key, data)
            keys.append(key)
        for index in range(late_files_per_day):
            key, data = generate_late_file(day, settings, index, rows=max(10, settings.rows_per_day // 50))
            store.write(key, data)
            keys.append(key)
    return keys


# The 3.52 writer's own levels, and how a custom stdlib level arrives.
WRITER_LEVELS = (*LEVELS, "ACTIVITY", "METRIC", "TRACING", "Level 25")
APP_LEVEL_SHARE = 0.04  # records without any workflow context (the driven sample: about 4%)
DEPLOYMENT, APP = "prod-eu-1", "atlan-application-sdk"


def app_record_extra(rng: random.Random) -> dict[str, object]:
    """`extra` of an app-level record: worker start-up, heartbeat, HTTP access line, upload."""
    extra: dict[str, object] = {"app_name": APP, "deployment_name": DEPLOYMENT}
    kind = rng.randrange(4)
    if kind == 0:
        extra["task_queue"] = "atlan-app-queue"
    elif kind == 1:
        extra.update({"method": "GET", "path": "/health", "status_code": 200, "client_host": "10.0.0.7"})
    elif kind == 2:
        extra.update({"objectstore_bytes": rng.randrange(10**7), "duration_ms": rng.randrange(1, 900)})
    return extra


def writer_flushes(
    day: dt.date,
    files: int,
    seed: int = 7,
    drift: float = 0.0,
    workflows: int = 60,
    tz_offset_h: float = 0.0,
) -> Iterator[tuple[str, list[str]]]:
    """(key, JSON lines) of a UTC day's records as the current writer (application-sdk 3.52)
    leaves them: a file per flush (after 100 records, 10 s, or an error: 40% single-line files,
    about 20 records a file on average), named `<epoch_ns>_<seq:06d>_<deployment>_<app>.json.gz`
    (the flush time, UTC) under the `day=`/`hour=` folders of the pod's local time
    (`tz_offset_h`: UTC+offset, e.g. -5 for a pod with TZ=America/New_York), in time order.
    About 4% of records are app-level (no workflow context); levels include the library's own
    (`ACTIVITY`, `METRIC`, `TRACING`) and a custom one (`Level 25`).
    `drift`: share of files in which a key changes JSON type between lines."""
    rng = random.Random(f"{seed}-{day.isoformat()}-writer")
    names = [workflow_name(rng, day) for _ in range(workflows)]
    weights = _workflow_weights(rng, len(names))
    start, span = Day(day).start, 86_400 / files
    for seq in range(files):
        n_rows = 1 if rng.random() < 0.4 else min(100, 2 + int(rng.expovariate(1 / 30)))
        t0 = start + seq * span
        t1 = t0 + span - 1e-3
        shifting = rng.random() < drift
        lines = []
        for i, ts in enumerate(sorted(rng.uniform(t0, t1) for _ in range(n_rows))):
            name = rng.choices(names, weights)[0]
            level = (
                "ERROR"
                if i == n_rows - 1 and n_rows < 100 and rng.random() < 0.3
                else (rng.choice(WRITER_LEVELS))
            )
            if rng.random() < APP_LEVEL_SHARE:
                extra = app_record_extra(rng)
            else:
                extra = open_extra(rng, name, temporal_only=True)
                extra["attempt"] = str(i % 3 + 1) if shifting and i % 2 else i % 3 + 1
            lines.append(json_record(rng, ts, level, i, extra))
        stamp_ns = int(t1 * 1_000_000) * 1000
        local = dt.datetime.fromtimestamp(t1, tz=dt.UTC) + dt.timedelta(hours=tz_offset_h)
        folder = f"{day_prefix(local.date())}hour={local.hour:02d}/"
        yield f"{folder}{stamp_ns}_{seq:06d}_{DEPLOYMENT}_{APP}.json.gz", lines


def gzip_lines(lines: list[str]) -> bytes:
    """A `.json.gz` body of these lines, as the writer compresses a flush."""
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
