"""Each per-file variation of the writer's inferred schema maps to the one target schema."""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wflog_assets.errors import NormalizationError
from wflog_assets.iceberg.schema import ARROW_SCHEMA, EXTRA_FIELDS, sort_for_table
from wflog_assets.source.normalize import normalize_table

TS = dt.datetime(2025, 12, 31, 23, 59, 59, 500000, tzinfo=dt.UTC).timestamp()


def _through_parquet(records: list[dict]) -> pa.Table:
    """Build a file the way the writer does: inferred schema, written and read as Parquet."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return pq.read_table(io.BytesIO(sink.getvalue()))


def _one(records: list[dict], key: str = "k.parquet") -> list[dict]:
    result = normalize_table(_through_parquet(records), key, "etag-1")
    assert result.table.schema.equals(ARROW_SCHEMA)
    return result.table.to_pylist()


def test_hyphenated_workflow_keys_fill_name_and_node_not_swapped():
    (row,) = _one(
        [
            {
                "timestamp": TS,
                "extra": {
                    "atlan-argo-workflow-name": "atlan-salesforce-1671795233-cron-1766791800",
                    "atlan-argo-workflow-node": "atlan-salesforce-1671795233-cron-1766791800-extract-42",
                    "trace_id": "t-1",
                },
            }
        ]
    )
    assert row["atlan_argo_workflow_name"] == "atlan-salesforce-1671795233-cron-1766791800"
    assert row["atlan_argo_workflow_node"] == "atlan-salesforce-1671795233-cron-1766791800-extract-42"
    assert row["trace_id"] == "t-1"
    assert row["extra"]["atlan-argo-workflow-name"] == row["atlan_argo_workflow_name"]


def test_blank_workflow_ids_take_the_next_name_as_missing_ones_do():
    key = "year=2025/month=12/day=31/hour=23/1767225599000000000_000001_prod_crawler.json.gz"
    rows = _one(
        [
            {"timestamp": TS, "extra": {"atlan-argo-workflow-name": " ", "workflow_id": "wf-1"}},
            {"timestamp": TS, "extra": {"atlan-argo-workflow-name": "", "workflow_id": "\t "}},
            {"timestamp": TS, "extra": {"workflow_id": "  "}},
        ],
        key,
    )
    assert [r["atlan_argo_workflow_name"] for r in rows] == ["wf-1", "app:prod_crawler", "app:prod_crawler"]


def test_null_typed_child_becomes_null_strings():
    table = _through_parquet([{"timestamp": TS, "extra": {"request_id": None, "url": "u"}}])
    assert pa.types.is_null(table.schema.field("extra").type.field("request_id").type)
    (row,) = normalize_table(table, "k", "e").table.to_pylist()
    assert row["extra"]["request_id"] is None
    assert row["extra"]["url"] == "u"


def test_missing_children_are_null_and_every_known_child_is_present():
    (row,) = _one([{"timestamp": TS, "extra": {"url": "u"}}])
    assert set(row["extra"]) == set(EXTRA_FIELDS)
    assert row["extra"]["url"] == "u"
    assert all(row["extra"][k] is None for k in EXTRA_FIELDS if k != "url")
    assert row["atlan_argo_workflow_name"] is None


def test_int_and_string_numbers_give_the_same_text():
    as_int = _one([{"timestamp": TS, "extra": {"attempt": 3, "duration_ms": 120, "status_code": 200}}])
    as_str = _one([{"timestamp": TS, "extra": {"attempt": "3", "duration_ms": "120", "status_code": "200"}}])
    assert as_int[0]["extra"] == as_str[0]["extra"]
    assert as_int[0]["extra"]["status_code"] == "200"


def test_child_order_does_not_matter():
    a = _one([{"timestamp": TS, "extra": {"url": "u", "method": "GET", "attempt": 1}}])
    b = _one([{"timestamp": TS, "extra": {"attempt": 1, "method": "GET", "url": "u"}}])
    assert a == b


def test_month_derives_from_timestamp_with_or_without_a_month_column():
    (without,) = _one([{"timestamp": TS, "extra": {"url": "u"}}])
    (with_wrong,) = _one([{"timestamp": TS, "month": 1, "extra": {"url": "u"}}])
    assert without["month"] == with_wrong["month"] == 12  # 2025-12-31T23:59:59.5Z is December
    (jan,) = _one([{"timestamp": TS + 1.0, "extra": {"url": "u"}}])
    assert jan["month"] == 1


def test_warn_level_is_normalized_to_warning_and_others_kept():
    levels = ("WARN", "ERROR", "TRACE")
    rows = _one([{"timestamp": TS, "level": lvl, "extra": {"url": "u"}} for lvl in levels])
    assert [r["level"] for r in rows] == ["WARNING", "ERROR", "TRACE"]


def test_rows_carry_their_source_key_and_etag():
    rows = _one([{"timestamp": TS, "extra": {"url": "u"}}] * 3, key="year=2025/month=12/day=31/c.parquet")
    assert {(r["source_file"], r["source_etag"]) for r in rows} == {
        ("year=2025/month=12/day=31/c.parquet", "etag-1")
    }


def test_null_extra_row_keeps_other_columns():
    rows = _one([{"timestamp": TS, "extra": {"url": "u"}}, {"timestamp": TS, "extra": None}])
    assert rows[1]["extra"] is None
    assert rows[1]["timestamp"] == TS
    assert rows[0]["extra"]["url"] == "u"


def test_integer_timestamps_and_string_lines_are_cast():
    (row,) = _one([{"timestamp": 1764547200, "line": "42", "extra": {"url": "u"}}])
    assert row["timestamp"] == 1764547200.0
    assert row["line"] == 42


@pytest.mark.parametrize(
    ("record", "column"),
    [
        ({"timestamp": TS, "line": "forty-two", "extra": {"url": "u"}}, "line"),
        ({"timestamp": TS, "line": 4.5, "extra": {"url": "u"}}, "line"),
        ({"timestamp": TS, "message": {"text": "m"}, "extra": {"url": "u"}}, "message"),
        ({"timestamp": TS, "extra": "not a struct"}, "extra"),
    ],
)
def test_uncastable_value_fails_with_file_key_and_column(record: dict, column: str):
    with pytest.raises(NormalizationError) as info:
        normalize_table(_through_parquet([record]), "year=2025/month=12/day=31/bad.parquet", "e")
    assert info.value.key == "year=2025/month=12/day=31/bad.parquet"
    assert info.value.column == column
    assert "year=2025/month=12/day=31/bad.parquet" in str(info.value)
    assert column in str(info.value)


def test_timestamps_as_text_are_numbers_when_they_are_numbers_and_float32_is_refused():
    rows = _through_parquet(
        [{"timestamp": t, "extra": {"url": "u"}} for t in ("1764547200.5", " 1e9 ", "yesterday", "")]
    )
    table = normalize_table(rows, "k.parquet", "e").table
    assert table.column("timestamp").to_pylist() == [1764547200.5, 1e9, None, None]
    as_float32 = rows.set_column(0, "timestamp", pa.array([1.0, 2.0, 3.0, 4.0], pa.float32()))
    with pytest.raises(NormalizationError, match=r"k\.parquet: column 'timestamp': float rounds"):
        normalize_table(as_float32, "k.parquet", "e")


@pytest.mark.parametrize("missing", ["timestamp", "extra"])
def test_missing_required_column_fails_with_file_key(missing: str):
    record = {"timestamp": TS, "message": "m", "extra": {"url": "u"}}
    del record[missing]
    with pytest.raises(NormalizationError, match=f"k.parquet: column '{missing}'"):
        normalize_table(_through_parquet([record]), "k.parquet", "e")


def test_every_other_extra_key_is_kept_in_extra_other_as_text():
    result = normalize_table(
        _through_parquet(
            [
                {
                    "timestamp": TS,
                    "argo_workflow_run_id": None,
                    "extra": {
                        "url": "u",
                        "in_workflow": True,
                        "retries": 3,
                        "http": {"status": 503, "path": "/x"},
                        "note": "plain",
                    },
                }
            ]
        ),
        "k",
        "e",
    )
    (row,) = result.table.to_pylist()
    other = dict(row["extra_other"])
    assert json.loads(other["http"]) == {"status": 503, "path": "/x"}
    assert {k: v for k, v in other.items() if k != "http"} == {
        "in_workflow": "true",
        "retries": "3",
        "note": "plain",
    }
    assert result.other_extra_keys == ["http", "in_workflow", "note", "retries"]
    assert result.ignored_columns == ["argo_workflow_run_id"]


def test_nested_value_of_a_known_child_becomes_json_text():
    (row,) = _one([{"timestamp": TS, "extra": {"attempt": {"n": 1, "of": [1, 2]}}}])
    assert json.loads(row["extra"]["attempt"]) == {"n": 1, "of": [1, 2]}


def test_temporal_only_records_get_workflow_name_and_node_from_temporal_ids():
    rows = _one(
        [
            {"timestamp": TS, "extra": {"workflow_id": "wf-temporal-1", "workflow_run_id": "run-9"}},
            {
                "timestamp": TS,
                "extra": {
                    "atlan-argo-workflow-name": "argo-1",
                    "workflow_id": "w",
                    "atlan-argo-workflow-node": "argo-1-n",
                    "workflow_run_id": "r",
                },
            },
        ]
    )
    assert [(r["atlan_argo_workflow_name"], r["atlan_argo_workflow_node"]) for r in rows] == [
        ("wf-temporal-1", "run-9"),
        ("argo-1", "argo-1-n"),
    ]
    # the raw values stay where they were
    assert rows[0]["extra"]["workflow_id"] == "wf-temporal-1"
    assert dict(rows[0]["extra_other"]) == {"workflow_run_id": "run-9"}


def test_sort_groups_partitions_and_orders_newest_first():
    rows = _one(
        [
            {"timestamp": TS - 10, "extra": {"atlan-argo-workflow-name": "b"}},
            {"timestamp": TS - 5, "extra": {"atlan-argo-workflow-name": "a"}},
            {"timestamp": TS - 1, "extra": {"atlan-argo-workflow-name": "b"}},
            {"timestamp": TS - 7, "extra": {"atlan-argo-workflow-name": "a"}},
        ]
    )
    table = sort_for_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA))
    got = [(r["atlan_argo_workflow_name"], r["timestamp"]) for r in table.to_pylist()]
    assert got == [("a", TS - 5), ("a", TS - 7), ("b", TS - 1), ("b", TS - 10)]
