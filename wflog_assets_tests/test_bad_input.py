"""Bad input on real S3 (weed mini): every bad file or row reported, every good row kept.

One day holds good files and one object of each bad kind; it is materialized once (module
fixture) and each test checks one kind: what the report says, that the good rows are in the
table, and the asset checks' results.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.expressions import EqualTo

from wflog_assets.day import day_prefix
from wflog_assets.quality.quarantine import QUARANTINE_DAY, QUARANTINE_SUFFIX
from wflog_assets.source.listing import list_day
from wflog_assets_testing.backends import Backend, rest_backend
from wflog_assets_testing.oracle import expected_row, sorted_rows, table_rows
from wflog_assets_testing.weed import WeedServer

pytestmark = pytest.mark.integration  # weed mini, PostgreSQL or Dagster processes

DAY = dt.date(2025, 12, 5)
T0 = dt.datetime(2025, 12, 5, tzinfo=dt.UTC).timestamp()
PREFIX = day_prefix(DAY)
LONG = "L" * 100_000 + " end"


def record(i: int, name: str | None = "atlan-wf-good", **over: Any) -> dict[str, Any]:
    rec = {
        "timestamp": T0 + 100 + i * 7.25,
        "level": "INFO",
        "logger_name": "app.x",
        "message": f"message {i}",
        "file": "a.py",
        "line": i,
        "function": "run",
        "extra": {
            "atlan-argo-workflow-name": name,
            "atlan-argo-workflow-node": "node-1",
            "trace_id": name,
            "attempt": i % 3,
        },
    }
    rec.update(over)
    return rec


def parquet(records: list[dict[str, Any]] | pa.Table) -> bytes:
    table = records if isinstance(records, pa.Table) else pa.Table.from_pylist(records)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def invalid_utf8_file() -> bytes:
    good = pa.Table.from_pylist([record(40), record(41)])
    raw = b"fine" + b"bad \xff\xfe bytes"
    offsets = pa.array([0, 4, len(raw)], pa.int32()).buffers()[1]
    message = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(raw)])
    return parquet(good.set_column(good.schema.get_field_index("message"), "message", message))


GOOD_A = [record(i) for i in range(20)] + [record(20, message=LONG)]
GOOD_B = [record(i, name="atlan-wf-other") for i in range(21, 30)]
NAMELESS = [record(50), record(51, name=None), record(52, name=""), record(53, name="  ")]
OUTSIDE = [record(60), record(61, timestamp=T0 - 5.0), record(62, timestamp=T0 + 86_400.0)]
DUPLICATE = [record(3), record(70)]  # record(3) is also in GOOD_A
# timestamps written as text: a number lands as that number, other text is a row kept out
TEXT_TIME = [{**record(80), "timestamp": f" {T0 + 680} "}, {**record(83), "timestamp": "yesterday"}]


def float32_times() -> bytes:
    table = pa.Table.from_pylist([record(90)])
    at = table.schema.get_field_index("timestamp")
    return parquet(table.set_column(at, "timestamp", table.column("timestamp").cast(pa.float32())))


OBJECTS: dict[str, bytes] = {
    "chunk-0-part1.parquet": parquet(GOOD_A),
    "hour=07/chunk-1-part2.parquet": parquet(GOOD_B),
    "chunk-2-part3.parquet": parquet(GOOD_A)[:-100],  # truncated
    "chunk-3-part4.parquet": b"PAR1 this is not parquet at all \x00\x01\x02",  # garbage
    "chunk-4-part5.parquet": b"",  # zero bytes
    "notes.json": b'{"not": "a chunk"}',
    "_SUCCESS": b"",
    "chunk-5-part6.parquet": parquet(TEXT_TIME),  # string timestamps
    "chunk-12-part13.parquet": float32_times(),
    "chunk-6-part7.parquet": parquet([{k: v for k, v in record(81).items() if k != "timestamp"}]),
    "chunk-7-part8.parquet": parquet([{k: v for k, v in record(82).items() if k != "extra"}]),
    "chunk-8-part9.parquet": parquet(NAMELESS),
    "chunk-9-part10.parquet": parquet(OUTSIDE),
    "chunk-10-part11.parquet": invalid_utf8_file(),
    "chunk-11-part12.parquet": parquet(DUPLICATE),
}
FOLDER_MARKER = PREFIX + "hour=08/"


@dataclass
class Outcome:
    backend: Backend
    raw: dict[str, Any]
    normalized: dict[str, Any]
    logs: dict[str, Any]
    checks: dict[str, dg.AssetCheckEvaluation]
    etags: dict[str, str]


def _meta(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mat.metadata.items()}


@pytest.fixture(scope="module")
def outcome(weed: WeedServer) -> Iterator[Outcome]:
    backend = rest_backend(weed)
    for name, data in OBJECTS.items():
        backend.store.write(PREFIX + name, data)
    backend.store.write(FOLDER_MARKER, b"")  # what the S3 console writes for a folder
    with dg.DagsterInstance.ephemeral() as instance:
        result = backend.run_day(DAY, instance)
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        yield Outcome(
            backend,
            _meta(result, "raw_log_chunks"),
            _meta(result, "normalized_log_batches"),
            _meta(result, "workflow_logs"),
            checks,
            {e.key: e.etag for e in list_day(backend.store, DAY).entries},
        )


def _rejected(o: Outcome) -> dict[str, str]:
    return {r.data["key"]: r.data["reason"] for r in o.normalized["rejected"].records}


def _quarantine(o: Outcome) -> list[dict[str, Any]]:
    catalog = o.backend.catalog
    table = catalog.load_catalog().load_table(catalog.identifier(QUARANTINE_SUFFIX))
    return table.scan(row_filter=EqualTo(QUARANTINE_DAY, DAY.isoformat())).to_arrow().to_pylist()


def _rows_of(o: Outcome, records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    key = PREFIX + name
    return [expected_row(r, key, o.etags[key]) for r in records]


def _table(o: Outcome) -> list[dict[str, Any]]:
    return table_rows(o.backend.table())


def test_good_rows_of_the_day_all_land_in_one_commit(outcome: Outcome):
    good = (
        _rows_of(outcome, GOOD_A, "chunk-0-part1.parquet")
        + _rows_of(outcome, GOOD_B, "hour=07/chunk-1-part2.parquet")
        + _rows_of(outcome, [NAMELESS[0]], "chunk-8-part9.parquet")
        + _rows_of(outcome, [OUTSIDE[0]], "chunk-9-part10.parquet")
        + _rows_of(outcome, [{**record(40), "message": "fine"}], "chunk-10-part11.parquet")
        + _rows_of(outcome, DUPLICATE, "chunk-11-part12.parquet")
        + _rows_of(outcome, TEXT_TIME[:1], "chunk-5-part6.parquet")
    )
    assert _table(outcome) == sorted_rows(good)
    assert outcome.logs["outcome"] == "appended"
    assert len(outcome.backend.table().snapshots()) == 1
    for name in ("row_count_parity", "no_null_workflow_names", "timestamps_inside_day", "schema_as_declared"):
        assert outcome.checks[name].passed, (name, outcome.checks[name].metadata)
    parity = outcome.checks["row_count_parity"].metadata
    assert parity["table_rows"].value == parity["accepted_rows"].value == len(good)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("chunk-2-part3.parquet", "not a readable Parquet file"),
        ("chunk-3-part4.parquet", "not a readable Parquet file"),
        ("chunk-4-part5.parquet", "empty object (0 bytes)"),
        ("chunk-12-part13.parquet", "column 'timestamp': float rounds Unix seconds by up to 128 s"),
        ("chunk-6-part7.parquet", "column 'timestamp': required column is missing"),
        ("chunk-7-part8.parquet", "column 'extra': required column is missing"),
    ],
)
def test_unreadable_file_is_reported_with_key_and_reason_and_quarantined(
    outcome: Outcome, name: str, reason: str
):
    key = PREFIX + name
    assert _rejected(outcome)[key].startswith(reason)
    assert not [r for r in _table(outcome) if r["source_file"] == key]
    (record_,) = [q for q in _quarantine(outcome) if q["source_file"] == key]
    assert record_["quarantine_reason"].startswith(f"file: {reason}")
    assert record_["source_etag"] == outcome.etags[key]
    check = outcome.checks["source_fully_ingested"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert key in {f["key"] for f in check.metadata["rejected_files"].value}


def test_objects_that_are_not_chunk_files_are_listed_as_ignored(outcome: Outcome):
    ignored = outcome.raw["ignored_objects"]
    assert {PREFIX + "notes.json", PREFIX + "_SUCCESS", FOLDER_MARKER} <= set(ignored)
    keys = {r.data["key"] for r in outcome.raw["manifest"].records}
    assert not keys & set(ignored)


@pytest.mark.parametrize(
    ("name", "records", "reason"),
    [
        ("chunk-8-part9.parquet", NAMELESS[1:], "no workflow name"),
        ("chunk-9-part10.parquet", OUTSIDE[1:], "timestamp outside the day 2025-12-05"),
        ("chunk-5-part6.parquet", TEXT_TIME[1:], "timestamp outside the day 2025-12-05"),
    ],
)
def test_bad_rows_are_quarantined_and_their_files_good_rows_land(
    outcome: Outcome, name: str, records: list[dict[str, Any]], reason: str
):
    key = PREFIX + name
    quarantined = [q for q in _quarantine(outcome) if q["source_file"] == key]
    assert sorted(q["message"] for q in quarantined) == sorted(r["message"] for r in records)
    assert all(q["quarantine_reason"].startswith(reason) for q in quarantined)
    assert len([r for r in _table(outcome) if r["source_file"] == key]) == 1
    summary = {
        (r.data["key"], r.data["reason"]): r.data["rows"] for r in outcome.normalized["quarantine"].records
    }
    assert sum(v for (k, why), v in summary.items() if k == key and why.startswith(reason)) == len(records)


def test_invalid_utf8_row_is_quarantined_with_its_bytes_escaped(outcome: Outcome):
    key = PREFIX + "chunk-10-part11.parquet"
    (q,) = [q for q in _quarantine(outcome) if q["source_file"] == key]
    assert q["message"] == "bad \\xff\\xfe bytes"
    assert q["quarantine_reason"].startswith("invalid UTF-8")


def test_a_100kb_message_lands_intact(outcome: Outcome):
    (row,) = [r for r in _table(outcome) if r["message"] and r["message"].startswith("LLL")]
    assert row["message"] == LONG


def test_duplicate_rows_across_files_land_twice_and_warn(outcome: Outcome):
    copies = [r for r in _table(outcome) if r["message"] == "message 3"]
    assert sorted(r["source_file"] for r in copies) == [
        PREFIX + "chunk-0-part1.parquet",
        PREFIX + "chunk-11-part12.parquet",
    ]
    check = outcome.checks["no_duplicate_rows"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["duplicate_copies"].value == 1
    (example,) = check.metadata["examples"].value
    assert example["message"] == "message 3"
    assert len(example["files"]) == 2


def test_rerun_of_the_bad_day_writes_nothing_and_keeps_one_quarantine(outcome: Outcome):
    before = len(_quarantine(outcome))
    with dg.DagsterInstance.ephemeral() as instance:
        result = outcome.backend.run_day(DAY, instance)
    assert _meta(result, "workflow_logs")["outcome"] == "unchanged"
    assert len(_quarantine(outcome)) == before
    # the day's verdicts stand (the quarantine holds the day's bad input), but a run that read
    # nothing has no rows to look for duplicates in
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items() if name != "no_duplicate_rows"} == {
        name: e.passed for name, e in outcome.checks.items() if name != "no_duplicate_rows"
    }
    assert evaluations["no_duplicate_rows"].metadata["rows_judged"].value == 0
