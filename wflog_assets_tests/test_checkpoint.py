"""Re-materializing a day: unchanged -> nothing; new file -> append; changed -> replace; a
vanished file keeps its rows unless the run deletes them; a listing that misses most of the day
fails before anything is committed."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from wflog_assets.definitions import INGEST_JOB
from wflog_assets.defs.resources import LocalLogSource, LogSourceResource, S3LogSource
from wflog_assets.source.listing import list_day
from wflog_assets.tools.generate import GeneratorSettings, generate_day, generate_late_file
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAY = dt.date(2025, 12, 5)
OTHER_DAY = dt.date(2025, 12, 6)
SMALL = GeneratorSettings(rows_per_day=1_200, files_per_day=4, workflows_per_day=8)


def _logs_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (mat,) = result.asset_materializations_for_node("workflow_logs")
    return {k: v.value for k, v in mat.metadata.items()}


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


def test_vanished_file_keeps_its_rows_by_default(two_days: Backend, instance: dg.DagsterInstance):
    rows_before = table_rows(two_days.table())
    snapshot = two_days.table().current_snapshot().snapshot_id
    victim = list_day(two_days.store, DAY).entries[0].key
    victim_rows = [r for r in rows_before if r["source_file"] == victim]
    assert victim_rows
    two_days.store.delete(victim)
    result = two_days.run_day(DAY, instance)
    logs = _logs_metadata(result)
    assert logs["outcome"] == "unchanged"
    assert logs["vanished_files"] == "keep"
    assert logs["source_files_vanished_kept"] == [victim]
    assert logs["source_files_removed"] == []
    (staged,) = result.asset_materializations_for_node("normalized_log_batches")
    assert staged.metadata["files_gone_keys"].value == [victim]
    assert table_rows(two_days.table()) == rows_before  # the table is the archive
    assert two_days.table().current_snapshot().snapshot_id == snapshot
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["row_count_parity"], checks


def test_vanished_file_removes_its_rows_when_the_run_deletes(two_days: Backend, instance: dg.DagsterInstance):
    victim = list_day(two_days.store, DAY).entries[0].key
    two_days.store.delete(victim)
    logs = _logs_metadata(two_days.run_day(DAY, instance, staging={"vanished_files": "delete"}))
    assert logs["outcome"] == "replaced"
    assert logs["vanished_files"] == "delete"
    assert logs["source_files_removed"] == [victim]
    assert logs["source_files_vanished_kept"] == []
    assert logs["rows_written"] == 0
    _assert_exact(two_days)
    assert not [r for r in table_rows(two_days.table()) if r["source_file"] == victim]


@pytest.mark.parametrize("policy", ["keep", "delete"])
def test_a_listing_that_misses_most_of_the_day_fails_before_committing(
    two_days: Backend, instance: dg.DagsterInstance, policy: str
):
    rows_before = table_rows(two_days.table())
    snapshot = two_days.table().current_snapshot().snapshot_id
    entries = list_day(two_days.store, DAY).entries
    for entry in entries[: len(entries) // 2 + 1]:  # more than half of the day's files gone
        two_days.store.delete(entry.key)
    result = two_days.run_day(DAY, instance, staging={"vanished_files": policy}, expect_success=False)
    _assert_refused(result)
    assert table_rows(two_days.table()) == rows_before
    assert two_days.table().current_snapshot().snapshot_id == snapshot
    # asked for explicitly, the run goes through: the rows kept, or removed when it deletes
    staging = {"vanished_files": policy, "max_vanished_fraction": 1.0}
    logs = _logs_metadata(two_days.run_day(DAY, instance, staging=staging))
    if policy == "keep":
        assert logs["outcome"] == "unchanged"
        assert table_rows(two_days.table()) == rows_before
    else:
        assert logs["outcome"] == "replaced"
        _assert_exact(two_days)


def _assert_refused(result: dg.ExecuteInProcessResult) -> None:
    """The run failed in its plan, saying what to fix, and committed nothing."""
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "normalized_log_batches"
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None
    message = user_failure.description or ""
    assert "nothing was committed" in message, message
    assert "max_vanished_fraction" in message, message
    assert "Source: " in message
    assert not result.asset_materializations_for_node("workflow_logs")


def _wrong_root(backend: Backend) -> Backend:
    """The same backend with its source pointed at a root that holds nothing."""
    source = backend.resources["log_source"]
    if isinstance(source, LocalLogSource):
        empty = Path(source.root).parent / "empty-source"
        empty.mkdir(exist_ok=True)
        wrong: LogSourceResource = LocalLogSource(root=str(empty))
    else:
        assert isinstance(source, S3LogSource)
        wrong = S3LogSource(s3=source.s3, bucket=source.bucket, prefix=source.prefix + "-nothing-here")
    return dataclasses.replace(backend, resources={**backend.resources, "log_source": wrong})


def test_an_empty_source_root_changes_nothing_in_a_committed_day(
    two_days: Backend, instance: dg.DagsterInstance
):
    rows_before = table_rows(two_days.table())
    snapshot = two_days.table().current_snapshot().snapshot_id
    for day in (DAY, OTHER_DAY):
        _assert_refused(_wrong_root(two_days).run_day(day, instance, expect_success=False))
    assert table_rows(two_days.table()) == rows_before
    assert two_days.table().current_snapshot().snapshot_id == snapshot
    _assert_exact(two_days)


def test_workflow_logs_materialized_alone_lists_and_stages_the_day_itself(
    two_days: Backend, instance: dg.DagsterInstance
):
    """A partial materialization (or a re-execution from failure) never commits a staging of
    another run: the late file that landed after the last full run is listed and lands."""
    key, data = generate_late_file(DAY, SMALL, index=3, rows=100)
    two_days.store.write(key, data)
    job = two_days.definitions().resolve_job_def(INGEST_JOB)
    alone = job.execute_in_process(
        partition_key=DAY.isoformat(), instance=instance, asset_selection=[dg.AssetKey("workflow_logs")]
    )
    assert alone.success
    logs = _logs_metadata(alone)
    assert (logs["outcome"], logs["source_files_added"], logs["rows_written"]) == ("appended", [key], 100)
    _assert_exact(two_days)
    assert _logs_metadata(two_days.run_day(DAY, instance))["outcome"] == "unchanged"


def test_workflow_logs_never_commits_a_staging_left_by_another_run(
    two_days: Backend, instance: dg.DagsterInstance
):
    """A run that staged the day and failed before its commit leaves its staging; a late file
    lands; `workflow_logs` alone must not commit that older staging under its own name."""
    job = two_days.definitions().resolve_job_def(INGEST_JOB)
    first, data = generate_late_file(DAY, SMALL, index=4, rows=40)
    two_days.store.write(first, data)
    staged_only = job.execute_in_process(
        partition_key=DAY.isoformat(),
        instance=instance,
        asset_selection=[dg.AssetKey("raw_log_chunks"), dg.AssetKey("normalized_log_batches")],
    )
    assert staged_only.success
    second, data = generate_late_file(DAY, SMALL, index=5, rows=60)
    two_days.store.write(second, data)
    alone = job.execute_in_process(
        partition_key=DAY.isoformat(), instance=instance, asset_selection=[dg.AssetKey("workflow_logs")]
    )
    logs = _logs_metadata(alone)
    assert sorted(logs["source_files_added"]) == sorted([first, second])
    _assert_exact(two_days)


def test_a_parquet_chunk_with_a_column_named_twice_is_one_rejected_file(
    two_days: Backend, instance: dg.DagsterInstance
):
    """Not the day's failure: the file is rejected with the column's name, the others land."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    expected = expected_rows_for_days(two_days.store, [DAY, OTHER_DAY])
    first = list_day(two_days.store, DAY).entries[0].key
    good = pq.read_table(io.BytesIO(two_days.store.read(first)))
    twice = pa.Table.from_arrays(
        [*good.columns, good.column("message")], names=[*good.column_names, "message"]
    )
    bad = first.rsplit("/", 1)[0] + "/chunk-twice.parquet"
    out = io.BytesIO()
    pq.write_table(twice, out)
    two_days.store.write(bad, out.getvalue())
    result = two_days.run_day(DAY, instance)
    (staged,) = result.asset_materializations_for_node("normalized_log_batches")
    assert staged.metadata["rejected_files"].value == 1
    (reject,) = staged.metadata["rejected"].value.records
    assert reject.data["key"] == bad
    assert "message" in reject.data["reason"]
    assert table_rows(two_days.table()) == expected
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["source_fully_ingested"] is False
    assert checks["row_count_parity"]
