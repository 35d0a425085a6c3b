"""Memory-bounded mode through the assets: a day many times larger than one piece.

The day is read `part_rows` rows at a time, staged as many sorted runs and merged into one
sorted data file per partition; the table must hold exactly the source rows, as a one-piece
run of the same day does. A file that fails after part of it was staged is kept out whole.
"""

from __future__ import annotations

import datetime as dt
import io

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from wflog_assets.iceberg.schema import TIMESTAMP
from wflog_assets.source.listing import list_day
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAY = dt.date(2025, 12, 9)
SETTINGS = GeneratorSettings(rows_per_day=6_000, files_per_day=4, workflows_per_day=9)


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, object]:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mat.metadata.items()}


def test_a_day_of_many_pieces_lands_exactly_in_one_sorted_file_per_partition(
    backend: Backend, instance: dg.DagsterInstance
):
    for key, data in generate_day(DAY, SETTINGS):
        backend.store.write(key, data)
    # 1,500-row files: 6 parts each
    result = backend.run_day(DAY, instance, staging={"piece_rows": 1_024, "part_rows": 256})

    normalized = _metadata(result, "normalized_log_batches")
    assert normalized["rows"] == SETTINGS.rows_per_day
    assert normalized["sorted_runs"] >= SETTINGS.rows_per_day // 1_024
    table = backend.table()
    assert table_rows(table) == expected_rows_for_days(backend.store, [DAY])
    by_partition: dict[tuple, int] = {}
    for task in table.scan().plan_files():
        partition = tuple(task.file.partition)
        by_partition[partition] = by_partition.get(partition, 0) + 1
        with table.io.new_input(task.file.file_path).open() as f:
            ts = pq.read_table(f, columns=[TIMESTAMP]).column(TIMESTAMP).to_pylist()
        assert ts == sorted(ts, reverse=True)
    assert set(by_partition.values()) == {1}
    assert _metadata(result, "workflow_logs")["data_files_written"] == len(by_partition)
    assert all(c.passed for c in result.get_asset_check_evaluations())


def _fails_late(rows: int, bad_from: int) -> bytes:
    """A chunk whose `line` column is text: numbers, then from row `bad_from` not a number."""
    (_, data), *_ = generate_day(
        DAY, GeneratorSettings(rows_per_day=rows, files_per_day=1, workflows_per_day=3, seed=99)
    )
    table = pq.read_table(io.BytesIO(data))
    lines = [str(i) if i < bad_from else "not-a-line" for i in range(rows)]
    table = table.set_column(table.schema.get_field_index("line"), "line", pa.array(lines))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_a_file_failing_after_some_parts_were_staged_is_kept_out_whole(
    backend: Backend, instance: dg.DagsterInstance
):
    for key, data in generate_day(DAY, SETTINGS):
        backend.store.write(key, data)
    bad_key = f"year=2025/month=12/day={DAY.day:02d}/chunk-99-part1765238400000.parquet"
    backend.store.write(bad_key, _fails_late(rows=2_000, bad_from=1_900))
    # 256-row parts: the bad file's first 7 parts are normalized (and staged) before it fails
    result = backend.run_day(DAY, instance, staging={"piece_rows": 512, "part_rows": 256})

    normalized = _metadata(result, "normalized_log_batches")
    assert normalized["rejected_files"] == 1
    (rejected,) = normalized["rejected"].records
    assert rejected.data["key"] == bad_key
    assert "line" in rejected.data["reason"]
    assert normalized["rows"] == SETTINGS.rows_per_day
    table = backend.table()
    good_days = [e for e in list_day(backend.store, DAY).entries if e.key != bad_key]
    assert len(good_days) == SETTINGS.files_per_day
    assert table.scan().to_arrow().num_rows == SETTINGS.rows_per_day
    assert bad_key not in set(
        table.scan(selected_fields=("source_file",)).to_arrow().column("source_file").to_pylist()
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["row_count_parity"].passed
    assert not checks["source_fully_ingested"].passed
