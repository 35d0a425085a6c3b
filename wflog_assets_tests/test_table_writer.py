"""commit_day under real conflicts, on the SQLite catalog and the REST catalog (weed mini)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest
from pyiceberg.expressions import StartsWith

from wflog_assets.day import day_prefix
from wflog_assets.errors import SourceListingError
from wflog_assets.iceberg.commit import commit_day
from wflog_assets.iceberg.plan import VanishedRule, plan_reads
from wflog_assets.iceberg.schema import LAYOUTS, SORT_ORDER, SOURCE_FILE, TABLE_SCHEMA, sort_for_table
from wflog_assets.iceberg.tables import SOURCE_FILE_METRICS, ensure_table
from wflog_assets.manifest import Manifest
from wflog_assets.source.listing import list_day
from wflog_assets.source.reading import read_manifest
from wflog_assets.tools.generate import GeneratorSettings, generate_day, generate_late_file
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

SMALL = GeneratorSettings(rows_per_day=400, files_per_day=2, workflows_per_day=4)


def _day(backend: Backend, day: dt.date) -> tuple[Manifest, pa.Table]:
    for key, data in generate_day(day, SMALL):
        backend.store.write(key, data)
    manifest = list_day(backend.store, day)
    files = read_manifest(backend.store, manifest)
    return manifest, sort_for_table(pa.concat_tables([f.table for f in files.files]))


def test_a_plan_made_before_a_concurrent_same_day_commit_is_redone_not_duplicated(backend: Backend):
    day = dt.date(2025, 12, 20)
    manifest, rows = _day(backend, day)
    table = backend.catalog.ensure_table()
    stale = backend.catalog.load_catalog().load_table(backend.catalog.identifier())
    first = commit_day(backend.table, manifest, rows)  # the other run lands first
    assert first.outcome == "appended"
    loads = iter([stale])
    result = commit_day(lambda: next(loads, None) or backend.table(), manifest, rows)
    assert result.outcome == "unchanged"
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [day])
    assert len(table.refresh().snapshots()) == 1


def test_a_run_that_listed_before_a_newer_file_landed_never_removes_it(backend: Backend):
    """Run A lists the day, run B lists it with one more file and commits first: A's commit
    re-plans against B's snapshot and must not take B's file for a vanished one."""
    day = dt.date(2025, 12, 21)
    manifest, rows = _day(backend, day)
    table = backend.catalog.ensure_table()
    planned = plan_reads(table, manifest)  # run A plans from its own listing
    late_key, late = generate_late_file(day, SMALL, index=0, rows=33)
    backend.store.write(late_key, late)
    newer = list_day(backend.store, day)
    newer_rows = read_manifest(backend.store, newer)
    assert (
        commit_day(
            backend.table, newer, sort_for_table(pa.concat_tables([f.table for f in newer_rows.files]))
        ).outcome
        == "appended"
    )
    result = commit_day(
        backend.table, manifest, rows, staged=[e.key for e in manifest.entries], planned=planned
    )
    assert result.files_removed == []
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [day])


def test_a_listing_that_misses_most_committed_files_is_refused_by_the_plan(backend: Backend):
    day = dt.date(2025, 12, 22)
    manifest, rows = _day(backend, day)
    backend.catalog.ensure_table()
    commit_day(backend.table, manifest, rows)
    partial = Manifest.build(manifest.day, manifest.entries[1:])  # one of two files gone: 50%
    kept = plan_reads(backend.table(), partial)
    assert kept.plan.removed == ()
    assert kept.vanished == (manifest.entries[0].key,)
    deleting = plan_reads(backend.table(), partial, VanishedRule(delete=True))
    assert deleting.plan.removed == (manifest.entries[0].key,)
    for rule in (VanishedRule(), VanishedRule(delete=True), VanishedRule(max_fraction=0.4)):
        with pytest.raises(SourceListingError, match="nothing was committed"):
            plan_reads(backend.table(), Manifest.build(manifest.day, ()), rule)
    with pytest.raises(SourceListingError):
        plan_reads(backend.table(), partial, VanishedRule(max_fraction=0.4))
    everything_gone = plan_reads(
        backend.table(), Manifest.build(manifest.day, ()), VanishedRule(max_fraction=1.0)
    )
    assert everything_gone.plan.removed == ()
    assert len(everything_gone.vanished) == 2


def test_eight_days_committed_from_eight_threads_all_land_exactly(backend: Backend):
    days = [dt.date(2025, 12, 1) + dt.timedelta(days=i) for i in range(8)]
    work = [_day(backend, d) for d in days]
    backend.catalog.ensure_table()

    def commit(item: tuple[Manifest, pa.Table]):
        catalog = backend.catalog.load_catalog()  # one client per thread, as runs would have
        return commit_day(
            lambda: catalog.load_table(backend.catalog.identifier()),
            *item,
            max_attempts=20,
            base_backoff_s=0.05,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(commit, work))
    assert [r.outcome for r in results] == ["appended"] * 8
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, days)
    assert sorted(s.summary.get("wflog.day") for s in backend.table().snapshots()) == [
        d.isoformat() for d in days
    ]


def test_the_same_day_from_four_threads_lands_once(backend: Backend):
    day = dt.date(2025, 12, 24)
    manifest, rows = _day(backend, day)
    backend.catalog.ensure_table()

    def commit(_: int):
        catalog = backend.catalog.load_catalog()
        return commit_day(
            lambda: catalog.load_table(backend.catalog.identifier()),
            manifest,
            rows,
            max_attempts=20,
            base_backoff_s=0.05,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(r.outcome for r in pool.map(commit, range(4)))
    assert outcomes == ["appended", "unchanged", "unchanged", "unchanged"]
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [day])


def test_a_days_checkpoint_scan_plans_only_that_days_data_files(backend: Backend):
    """`source_file` keeps full bounds: the per-day scans (checkpoint, checks) must not read
    every data file of the table, or each run gets slower as history grows."""
    days = [dt.date(2025, 12, 1) + dt.timedelta(days=i) for i in range(3)]
    backend.catalog.ensure_table()
    for day in days:
        assert commit_day(backend.table, *_day(backend, day)).outcome == "appended"
    table = backend.table()
    for day in days:
        planned = {
            t.file.file_path
            for t in table.scan(row_filter=StartsWith(SOURCE_FILE, day_prefix(day))).plan_files()
        }
        snapshot = next(s for s in table.snapshots() if s.summary.get("wflog.day") == day.isoformat())
        added = {
            entry.data_file.file_path
            for m in snapshot.manifests(table.io)
            if m.added_snapshot_id == snapshot.snapshot_id
            for entry in m.fetch_manifest_entry(table.io)
        }
        assert planned == added, day


def test_an_existing_table_gets_full_source_file_bounds_for_new_writes(backend: Backend):
    catalog = backend.catalog.load_catalog()
    identifier = backend.catalog.identifier()
    catalog.create_namespace_if_not_exists(backend.catalog.namespace)
    catalog.create_table(
        identifier, schema=TABLE_SCHEMA, partition_spec=LAYOUTS["wf_month"], sort_order=SORT_ORDER
    )  # as an earlier version of this project made it
    table = backend.catalog.ensure_table()
    assert table.properties[SOURCE_FILE_METRICS] == "full"


def test_commits_merge_manifests_when_the_table_asks_for_it(backend: Backend):
    catalog = backend.catalog.load_catalog()
    ensure_table(
        catalog,
        backend.catalog.identifier(),
        properties={"commit.manifest-merge.enabled": "true", "commit.manifest.min-count-to-merge": "3"},
    )
    days = [dt.date(2025, 12, 1) + dt.timedelta(days=i) for i in range(6)]
    for day in days:
        assert commit_day(backend.table, *_day(backend, day)).outcome == "appended"
    table = backend.table()
    assert len(table.current_snapshot().manifests(table.io)) < 3  # fast appends leave 6
    assert table_rows(table) == expected_rows_for_days(backend.store, days)
    assert [s.summary.get("wflog.day") for s in table.snapshots()] == [d.isoformat() for d in days]
