"""Re-materializing a day: unchanged -> nothing; new file -> append; changed/vanished -> replace."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from wflog_assets.source.listing import list_day
from wflog_assets.source.stores import LocalObjectStore, S3ObjectStore
from wflog_assets.tools.generate import GeneratorSettings, generate_day, generate_late_file
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAY = dt.date(2025, 12, 5)
OTHER_DAY = dt.date(2025, 12, 6)
SMALL = GeneratorSettings(rows_per_day=1_200, files_per_day=4, workflows_per_day=8)


def _logs_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (mat,) = result.asset_materializations_for_node("workflow_logs")
    return {k: v.value for k, v in mat.metadata.items()}


def _delete(backend: Backend, key: str) -> None:
    store = backend.store
    if isinstance(store, LocalObjectStore):
        (store.root / key).unlink()
    else:
        assert isinstance(store, S3ObjectStore)
        store.client.delete_object(Bucket=store.bucket, Key=store.prefix + key)


@pytest.fixture
def two_days(backend: Backend, instance: dg.DagsterInstance) -> Backend:
    for day in (DAY, OTHER_DAY):
        for key, data in generate_day(day, SMALL):
            backend.store.write(key, data)
        backend.run_day(day, instance)
    return backend


def _assert_exact(backend: Backend) -> None:
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY, OTHER_DAY])


def test_unchanged_day_writes_no_snapshot(two_days: Backend, instance: dg.DagsterInstance):
    before = [s.snapshot_id for s in two_days.table().snapshots()]
    logs = _logs_metadata(two_days.run_day(DAY, instance))
    assert logs["outcome"] == "unchanged"
    assert logs["rows_written"] == 0
    assert [s.snapshot_id for s in two_days.table().snapshots()] == before
    _assert_exact(two_days)


def test_late_file_appends_only_its_rows(two_days: Backend, instance: dg.DagsterInstance):
    key, data = generate_late_file(DAY, SMALL, index=0, rows=77)
    two_days.store.write(key, data)
    rows_before = two_days.table().scan().count()
    logs = _logs_metadata(two_days.run_day(DAY, instance))
    assert logs["outcome"] == "appended"
    assert logs["rows_written"] == 77
    assert logs["rows_deleted"] == 0
    assert logs["source_files_added"] == [key]
    assert two_days.table().current_snapshot().summary.get("added-records") == "77"
    assert two_days.table().scan().count() == rows_before + 77
    _assert_exact(two_days)


def test_rewritten_file_replaces_its_rows(two_days: Backend, instance: dg.DagsterInstance):
    manifest = list_day(two_days.store, DAY)
    victim = manifest.entries[1].key
    _, replacement = generate_late_file(DAY, SMALL, index=5, rows=50)
    two_days.store.write(victim, replacement)  # same key, new content (new ETag)
    old_rows = len([r for r in table_rows(two_days.table()) if r["source_file"] == victim])
    result = two_days.run_day(DAY, instance)
    logs = _logs_metadata(result)
    assert logs["outcome"] == "replaced"
    assert logs["source_files_changed"] == [victim]
    assert logs["rows_written"] == 50
    assert logs["rows_deleted"] == old_rows
    _assert_exact(two_days)
    # and once more: nothing left to do
    assert _logs_metadata(two_days.run_day(DAY, instance))["outcome"] == "unchanged"


def test_vanished_file_removes_its_rows(two_days: Backend, instance: dg.DagsterInstance):
    victim = list_day(two_days.store, DAY).entries[0].key
    _delete(two_days, victim)
    logs = _logs_metadata(two_days.run_day(DAY, instance))
    assert logs["outcome"] == "replaced"
    assert logs["source_files_removed"] == [victim]
    assert logs["rows_written"] == 0
    _assert_exact(two_days)
    assert not [r for r in table_rows(two_days.table()) if r["source_file"] == victim]
