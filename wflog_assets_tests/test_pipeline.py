"""Three days through the three assets, on the embedded default and on real S3 + REST catalog."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow.parquet as pq

from wflog_assets.iceberg._compat import schema_to_pyarrow
from wflog_assets.iceberg.commit import SUMMARY_DAY
from wflog_assets.iceberg.plan import SUMMARY_DIGEST
from wflog_assets.iceberg.schema import SORT_ORDER, TABLE_SCHEMA
from wflog_assets.source.listing import list_day
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAYS = [dt.date(2025, 12, 1), dt.date(2025, 12, 2), dt.date(2025, 12, 3)]
SMALL = GeneratorSettings(rows_per_day=3_000, files_per_day=5, workflows_per_day=12)


def _write_days(backend: Backend) -> None:
    for i, day in enumerate(DAYS):
        # the last day uses the hour=HH level some deployments add
        settings = GeneratorSettings(**{**SMALL.__dict__, "hour_level": i == len(DAYS) - 1})
        for key, data in generate_day(day, settings):
            backend.store.write(key, data)


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, object]:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mat.metadata.items()}


def test_three_days_land_exactly_the_source_rows(backend: Backend, instance: dg.DagsterInstance):
    _write_days(backend)
    for day in DAYS:
        result = backend.run_day(day, instance)
        manifest = list_day(backend.store, day)
        raw = _metadata(result, "raw_log_chunks")
        assert raw["file_count"] == len(manifest.entries) == SMALL.files_per_day
        assert raw["total_bytes"] == manifest.total_bytes
        assert raw["manifest_digest"] == manifest.digest
        assert len(raw["manifest"].records) == len(manifest.entries)
        logs = _metadata(result, "workflow_logs")
        assert logs["outcome"] == "appended"
        assert logs["rows_written"] == SMALL.rows_per_day
        assert logs["source_files_ingested"] == SMALL.files_per_day
        assert logs["data_files_written"] >= 1
        # Dagster's own keys, which its catalog shows
        assert logs["dagster/row_count"] == logs["day_rows"] == SMALL.rows_per_day
        assert logs["dagster/table_name"] == backend.catalog.identifier()
        normalized = _metadata(result, "normalized_log_batches")
        assert normalized["rows"] == SMALL.rows_per_day

    table = backend.table()
    assert table_rows(table) == expected_rows_for_days(backend.store, DAYS)
    spec = backend.definitions().resolve_assets_def("workflow_logs").specs_by_key
    (columns,) = [s.metadata["dagster/column_schema"] for s in spec.values()]
    assert [c.name for c in columns.columns] == [f.name for f in table.schema().fields]

    # one snapshot per day, each carrying the day and its manifest digest
    summaries = [s.summary for s in table.snapshots()]
    assert [s.get(SUMMARY_DAY) for s in summaries] == [d.isoformat() for d in DAYS]
    assert [s.get(SUMMARY_DIGEST) for s in summaries] == [list_day(backend.store, d).digest for d in DAYS]


def test_table_layout_and_every_data_file_sorted_newest_first(backend: Backend, instance: dg.DagsterInstance):
    _write_days(backend)
    for day in DAYS[:2]:
        backend.run_day(day, instance)
    table = backend.table()
    # by name and type: a REST catalog assigns its own field ids
    as_arrow = schema_to_pyarrow(table.schema(), include_field_ids=False)
    assert as_arrow.equals(schema_to_pyarrow(TABLE_SCHEMA, include_field_ids=False))
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [
        ("atlan_argo_workflow_name", "identity"),
        ("month", "identity"),
    ]
    (sort_field,) = table.sort_order().fields
    assert table.schema().find_column_name(sort_field.source_id) == "timestamp"
    assert (sort_field.direction, sort_field.null_order) == (
        SORT_ORDER.fields[0].direction,
        SORT_ORDER.fields[0].null_order,
    )
    tasks = list(table.scan().plan_files())
    assert tasks
    for task in tasks:
        with table.io.new_input(task.file.file_path).open() as f:
            data = pq.read_table(f)
        stamps = data.column("timestamp").to_pylist()
        assert stamps == sorted(stamps, reverse=True), task.file.file_path
        # one (workflow, month) partition per file, matching the file's partition record
        names = set(data.column("atlan_argo_workflow_name").to_pylist())
        months = set(data.column("month").to_pylist())
        assert names == {task.file.partition[0]}
        assert months == {task.file.partition[1]}
