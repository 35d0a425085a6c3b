"""The current writer's real shape, through the assets, on both backends.

Files are written as application-sdk 3.52 writes them (`generate.writer_flushes`: flush-time
names, hour folders of the pod's local time, allow-listed keys, 1-100 records a flush,
app-level records, the library's own levels) and the table is compared row by row with an
independent reading of the same files (`oracle.expected_rows_for_days`):

- a pod with TZ=America/New_York files records of a UTC day under the day before; after both
  days are materialized (in either order, and again after a late file) every record is in its
  UTC day exactly once, and re-runs are `unchanged`;
- app-level records land (workflow name `app:<deployment>_<app>`), the P0 query finds them,
  and a normal day of the writer passes all six checks.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from wflog_assets.day import Day
from wflog_assets.iceberg.query import p0_query
from wflog_assets.tools.generate import APP, DEPLOYMENT, gzip_lines, writer_flushes
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

FIRST, SECOND = dt.date(2026, 11, 24), dt.date(2026, 11, 25)
NEW_YORK = -5.0
APP_WORKFLOW = f"app:{DEPLOYMENT}_{APP}"


def _write(backend: Backend, day: dt.date, files: int, seed: int, tz: float) -> list[str]:
    keys = []
    for key, lines in writer_flushes(day, files, seed=seed, tz_offset_h=tz):
        backend.store.write(key, gzip_lines(lines))
        keys.append(key)
    return keys


def _outcome(result: dg.ExecuteInProcessResult) -> str:
    (mat,) = result.asset_materializations_for_node("workflow_logs")
    return str(mat.metadata["outcome"].value)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def _rows_by_day(backend: Backend) -> dict[str, int]:
    ts = backend.table().scan(selected_fields=("timestamp",)).to_arrow().column("timestamp")
    days = pc.strftime(
        pc.cast(pc.floor(pc.multiply(ts, 1e6)).cast("int64"), pa.timestamp("us", tz="UTC")), format="%Y-%m-%d"
    )
    counts = pc.value_counts(days).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


@pytest.mark.parametrize("order", ["first_then_second", "second_then_first"])
def test_a_new_york_pod_day_pair_lands_every_record_in_its_utc_day(
    backend: Backend, instance: dg.DagsterInstance, order: str
):
    keys = _write(backend, FIRST, 240, seed=1, tz=NEW_YORK) + _write(
        backend, SECOND, 240, seed=2, tz=NEW_YORK
    )
    folders = {k.split("/hour=")[0] for k in keys}
    assert len(folders) == 3  # the 23rd, 24th and 25th: a UTC day spans two local days
    days = [FIRST, SECOND] if order == "first_then_second" else [SECOND, FIRST]
    for day in days:
        result = backend.run_day(day, instance)
        assert all(_checks(result).values()), _checks(result)
    want = expected_rows_for_days(backend.store, [FIRST, SECOND])
    assert table_rows(backend.table()) == want
    by_day = _rows_by_day(backend)
    assert set(by_day) == {FIRST.isoformat(), SECOND.isoformat()}
    assert sum(by_day.values()) == len(want)

    # a late flush of the 25th (UTC), filed under the 24th by the pod's clock
    late_key, late_lines = next(writer_flushes(SECOND, 240, seed=99, tz_offset_h=NEW_YORK))
    late_key = late_key.replace("_000000_", "_900000_")
    assert late_key.startswith(Day(FIRST).prefix)
    backend.store.write(late_key, gzip_lines(late_lines))
    for day in days:
        backend.run_day(day, instance)
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [FIRST, SECOND])
    assert sum(_rows_by_day(backend).values()) == len(want) + len(late_lines)
    late_rows = backend.table().scan(selected_fields=("source_file",)).to_arrow().column("source_file")
    assert pc.sum(pc.equal(late_rows, late_key)).as_py() == len(late_lines)
    for day in days:
        assert _outcome(backend.run_day(day, instance)) == "unchanged"


def test_app_level_records_land_queryable_and_a_writer_day_passes_every_check(
    backend: Backend, instance: dg.DagsterInstance
):
    _write(backend, SECOND, 300, seed=3, tz=0.0)
    result = backend.run_day(SECOND, instance)
    assert _checks(result) == {
        "row_count_parity": True,
        "no_null_workflow_names": True,
        "timestamps_inside_day": True,
        "schema_as_declared": True,
        "source_fully_ingested": True,
        "no_duplicate_rows": True,
    }
    for evaluation in result.get_asset_check_evaluations():  # each check result is its day's
        assert evaluation.partition == SECOND.isoformat()
        assert evaluation.metadata["day"].value == SECOND.isoformat()
        history = instance.event_log_storage.get_asset_check_execution_history(
            evaluation.asset_check_key, limit=10
        )
        assert [r.status.value for r in history] == ["SUCCEEDED"]  # one record, none skipped
    want = expected_rows_for_days(backend.store, [SECOND])
    assert table_rows(backend.table()) == want
    assert backend.staged_files() == []  # committed: no copy of the day is left in staging
    assert pa.default_memory_pool().backend_name == "jemalloc"  # the catalog resource chose it
    app_rows = [r for r in want if r["atlan_argo_workflow_name"] == APP_WORKFLOW]
    assert len(app_rows) > 100  # about 4% of ~6,000 records
    levels = {r["level"] for r in want}
    assert {"ACTIVITY", "METRIC", "TRACING", "Level 25"} <= levels
    found = p0_query(backend.table(), APP_WORKFLOW, limit=None)
    assert found.rows.num_rows == len(app_rows)
    newest = max(r["timestamp"] for r in app_rows)
    assert found.rows.column("timestamp")[0].as_py() == newest
