"""Both writer generations: Parquet chunks and gzip JSON lines, every `extra` key kept."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import dagster as dg
import duckdb
import pytest

from wflog_assets.manifest import ManifestEntry
from wflog_assets.source.formats.jsonl import LINE_TOO_LONG, MAX_LINE_BYTES, read_parts
from wflog_assets.source.listing import list_day
from wflog_assets.tools.generate import GeneratorSettings, generate_day, json_key
from wflog_assets_testing.backends import Backend, rest_backend
from wflog_assets_testing.oracle import expected_row, expected_rows_for_days, sorted_rows, table_rows
from wflog_assets_testing.weed import WeedServer

DAY = dt.date(2025, 12, 8)
T0 = dt.datetime(2025, 12, 8, tzinfo=dt.UTC).timestamp()


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, object]:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mat.metadata.items()}


def _gz_lines(lines: list[bytes]) -> bytes:
    return gzip.compress(b"\n".join(lines) + b"\n", mtime=0)


def _record(i: int, **extra: object) -> dict[str, object]:
    return {
        "timestamp": T0 + 60 * i + 0.25,
        "level": "INFO",
        "logger_name": "app.x",
        "message": f"record {i}",
        "file": "a.py",
        "line": i,
        "function": "run",
        "extra": {"atlan-argo-workflow-name": "atlan-wf-1", **extra},
    }


def test_mixed_day_with_hour_folders_lands_the_union_field_by_field(
    backend: Backend, instance: dg.DagsterInstance
):
    settings = GeneratorSettings(
        rows_per_day=2_400, files_per_day=6, workflows_per_day=6, format="mixed", hour_level=True
    )
    for key, data in generate_day(DAY, settings):
        backend.store.write(key, data)
    result = backend.run_day(DAY, instance)
    raw = _metadata(result, "raw_log_chunks")
    assert raw["files_by_format"] == {"parquet": 3, "jsonl.gz": 3}
    assert all("/hour=" in r.data["key"] for r in raw["manifest"].records if r.data["format"] == "jsonl.gz")
    normalized = _metadata(result, "normalized_log_batches")
    assert normalized["rejected_lines"] == 0
    assert {"error", "objectstore_timings_ms", "in_workflow", "workflow_run_id"} <= set(
        normalized["extra_other_keys"]
    )
    rows = table_rows(backend.table())
    assert rows == expected_rows_for_days(backend.store, [DAY])
    # spot-check the lossless text of values that are not strings
    other = [dict(r["extra_other"]) for r in rows if r["extra_other"]]
    assert any(o.get("in_workflow") in ("true", "false") for o in other)
    assert any(json.loads(o["error"])["detail"]["errno"] == 104 for o in other if "error" in o)
    # Temporal-only records get their workflow name from workflow_id, never null
    assert all(r["atlan_argo_workflow_name"] for r in rows)


@pytest.mark.integration
def test_json_lines_edge_cases_are_reported_by_line_and_good_lines_land(
    weed: WeedServer, instance: dg.DagsterInstance
):
    backend = rest_backend(weed)
    long_message = "x" * 200_000
    files: dict[str, list[bytes]] = {
        "good": [
            json.dumps(_record(0)).encode(),
            json.dumps(_record(1, note="naïve café ✓ 日本語"), ensure_ascii=False).encode(),
            json.dumps({**_record(2), "message": long_message}).encode(),
        ],
        "bad_lines": [
            json.dumps(_record(3)).encode(),
            b'{"timestamp": 17, "level": ',
            json.dumps({k: v for k, v in _record(4).items() if k != "timestamp"}).encode(),
            json.dumps(_record(5)).encode(),
        ],
    }
    keys = {
        name: json_key(DAY, 3, 1_765_000_000_000_000_000 + i, i)
        for i, name in enumerate(["good", "bad_lines", "empty", "truncated"])
    }
    backend.store.write(keys["good"], _gz_lines(files["good"]))
    backend.store.write(keys["bad_lines"], _gz_lines(files["bad_lines"]))
    backend.store.write(keys["empty"], gzip.compress(b"", mtime=0))
    truncated_records = [_record(10 + i, payload=f"{i:06d}" * 40) for i in range(400)]
    whole = _gz_lines([json.dumps(r).encode() for r in truncated_records])
    backend.store.write(keys["truncated"], whole[: len(whole) * 2 // 3])

    result = backend.run_day(DAY, instance)
    rejected = {
        (r.data["key"], r.data["line"]): r.data["reason"]
        for r in _metadata(result, "normalized_log_batches")["rejected"].records
    }
    assert rejected[(keys["bad_lines"], 2)].startswith("not JSON")
    assert rejected[(keys["bad_lines"], 3)] == "no timestamp"
    assert rejected[(keys["empty"], -1)] == "empty file: no lines"
    (((truncated_key, cut_line), reason),) = [
        (k, v) for k, v in rejected.items() if k[0] == keys["truncated"]
    ]
    assert "truncated gzip stream" in reason
    assert len(rejected) == 4

    entries = {e.key: e.etag for e in list_day(backend.store, DAY).entries}
    expected = [
        expected_row(r, keys["good"], entries[keys["good"]])
        for r in [_record(0), _record(1, note="naïve café ✓ 日本語"), {**_record(2), "message": long_message}]
    ]
    expected += [
        expected_row(r, keys["bad_lines"], entries[keys["bad_lines"]]) for r in (_record(3), _record(5))
    ]
    expected += [
        expected_row(r, truncated_key, entries[truncated_key]) for r in truncated_records[: cut_line - 1]
    ]
    assert cut_line > 100  # most of the truncated file was recovered
    assert table_rows(backend.table()) == sorted_rows(expected)


@pytest.mark.integration
def test_extra_keys_growing_over_days_stay_readable_in_pyiceberg_and_duckdb(
    weed: WeedServer, duck: duckdb.DuckDBPyConnection, instance: dg.DagsterInstance
):
    backend = rest_backend(weed)
    day1, day2 = dt.date(2025, 12, 1), dt.date(2025, 12, 2)
    t1, t2 = (dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp() for d in (day1, day2))
    backend.store.write(
        json_key(day1, 1, 1, 0), _gz_lines([json.dumps({**_record(0, a=1), "timestamp": t1 + 5}).encode()])
    )
    backend.store.write(
        json_key(day2, 1, 2, 0),
        _gz_lines([json.dumps({**_record(0, a=2, b={"deep": [1, 2]}), "timestamp": t2 + 5}).encode()]),
    )
    for day in (day1, day2):
        backend.run_day(day, instance)
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [day1, day2])
    got = duck.execute(
        f"SELECT extra_other['a'], extra_other['b'] FROM lake.{backend.catalog.namespace}"
        ".workflow_logs ORDER BY timestamp"
    ).fetchall()
    assert got == [("1", None), ("2", '{"deep":[1,2]}')]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_both_generations_give_the_same_table_for_the_same_day_shape(
    backend: Backend, instance: dg.DagsterInstance, fmt: str
):
    settings = GeneratorSettings(rows_per_day=600, files_per_day=2, workflows_per_day=3, format=fmt)
    for key, data in generate_day(DAY, settings):
        backend.store.write(key, data)
    backend.run_day(DAY, instance)
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY])


@pytest.mark.parametrize("newline_at_end", [True, False])
def test_a_line_longer_than_the_limit_is_a_rejected_line_and_the_others_land(newline_at_end: bool):
    good = [json.dumps({"timestamp": 1_770_768_000.0 + i, "extra": {"workflow_id": "w"}}) for i in range(4)]
    huge = json.dumps({"timestamp": 1_770_768_100.0, "message": "x" * (MAX_LINE_BYTES + (9 << 20))})
    text = "\n".join([good[0], huge, good[1], good[2], huge, good[3], huge])
    data = gzip.compress((text + ("\n" if newline_at_end else "")).encode(), compresslevel=1)
    entry = ManifestEntry("k.json.gz", len(data), "e", "")
    parts = list(read_parts(data, entry, part_rows=8192))
    assert sum(p.table.num_rows for p in parts) == 4
    assert [(i.line, i.reason) for p in parts for i in p.issues] == [(n, LINE_TOO_LONG) for n in (2, 5, 7)]
