"""Compaction of a month and snapshot expiry, on the SQLite catalog and the REST catalog."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from wflog_assets.defs.maintenance import MAINTENANCE_JOB
from wflog_assets.iceberg._compat import arrow_filesystem
from wflog_assets.iceberg.checkpoint import known_state
from wflog_assets.iceberg.commit import commit_day, write_data_files
from wflog_assets.iceberg.maintenance import (
    SUMMARY_MAINTENANCE,
    compact_month,
    expire_by_policy,
    expire_snapshots,
    referenced_files,
    remove_orphan_files,
)
from wflog_assets.iceberg.plan import derive_committed_state
from wflog_assets.iceberg.schema import LAYOUTS, SORT_ORDER, TABLE_SCHEMA, sort_for_table
from wflog_assets.iceberg.tables import HYGIENE_PROPERTIES
from wflog_assets.manifest import Manifest
from wflog_assets.source.listing import list_day
from wflog_assets.source.reading import read_manifest
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

SMALL = GeneratorSettings(rows_per_day=600, files_per_day=3, workflows_per_day=4)
DECEMBER = [dt.date(2025, 12, 1) + dt.timedelta(days=i) for i in range(3)]
NOVEMBER = dt.date(2025, 11, 30)


def _ingest_file_by_file(backend: Backend, day: dt.date) -> None:
    """Each chunk as if it arrived late: one commit per file, so every partition of the day
    ends up with one data file per chunk (the chunks share the day's workflows)."""
    for key, data in generate_day(day, SMALL):
        backend.store.write(key, data)
    full, rows = _day_again(backend, day)
    for n in range(1, len(full.entries) + 1):
        partial = Manifest.build(full.day, full.entries[:n])
        keys = pa.array([e.key for e in partial.entries])
        subset = rows.filter(pc.is_in(rows["source_file"], value_set=keys))
        assert commit_day(backend.table, partial, subset).outcome == "appended"


def _files_per_partition(table, month: int) -> Counter:
    return Counter(tuple(t.file.partition) for t in table.scan().plan_files() if t.file.partition[1] == month)


def test_compacting_a_month_keeps_rows_and_order_and_leaves_one_file_per_partition(backend: Backend):
    backend.catalog.ensure_table()
    for day in [NOVEMBER, *DECEMBER]:
        _ingest_file_by_file(backend, day)
    before = table_rows(backend.table())
    assert max(_files_per_partition(backend.table(), 12).values()) == 3  # one per chunk
    november = _files_per_partition(backend.table(), 11)

    result = compact_month(backend.table, 2025, 12)

    table = backend.table()
    assert table_rows(table) == before == expected_rows_for_days(backend.store, [NOVEMBER, *DECEMBER])
    after = _files_per_partition(table, 12)
    assert set(after.values()) == {1}
    assert (result.partitions, result.partitions_compacted, result.files_after) == (
        len(after),
        len(after),
        len(after),
    )
    assert result.files_before == 3 * len(after)
    assert result.rows == sum(1 for r in before if r["month"] == 12)
    assert _files_per_partition(table, 11) == november  # another month is not touched
    assert table.current_snapshot().summary[SUMMARY_MAINTENANCE] == "compact"
    for task in table.scan().plan_files():
        if task.file.partition[1] != 12:
            continue
        with table.io.new_input(task.file.file_path).open() as f:
            stamps = pq.read_table(f, columns=["timestamp"]).column("timestamp").to_pylist()
        assert stamps == sorted(stamps, reverse=True), task.file.file_path
    # nothing left to do, and the checkpoint still knows every day is committed
    assert compact_month(backend.table, 2025, 12).snapshot_id is None
    for day in DECEMBER:
        manifest, rows = _day_again(backend, day)
        assert commit_day(backend.table, manifest, rows).outcome == "unchanged"


def test_expiring_snapshots_keeps_the_current_one_and_the_checkpoint(backend: Backend):
    backend.catalog.ensure_table()
    for day in DECEMBER:
        _ingest_file_by_file(backend, day)
    compact_month(backend.table, 2025, 12)
    table = backend.table()
    current = table.current_snapshot().snapshot_id
    expired = expire_snapshots(table, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    table = backend.table()
    assert expired == 3 * len(DECEMBER)
    assert [s.snapshot_id for s in table.snapshots()] == [current]
    assert table_rows(table) == expected_rows_for_days(backend.store, DECEMBER)
    # the day snapshots are gone: the checkpoint reads the rows' lineage instead
    manifest, rows = _day_again(backend, DECEMBER[0])
    assert commit_day(backend.table, manifest, rows).outcome == "unchanged"
    assert [s.snapshot_id for s in backend.table().snapshots()] == [current]  # no empty commit


def test_maintenance_asset_compacts_the_month_and_expires_snapshots(
    backend: Backend, instance: dg.DagsterInstance
):
    backend.catalog.ensure_table()
    for day in DECEMBER:
        _ingest_file_by_file(backend, day)
    before = table_rows(backend.table())
    job = backend.definitions().resolve_job_def(MAINTENANCE_JOB)
    result = job.execute_in_process(
        partition_key="2025-12-01",
        instance=instance,
        run_config={
            "ops": {"workflow_logs_maintenance": {"config": {"expire_snapshots_older_than_days": 0}}}
        },
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("workflow_logs_maintenance")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["month"] == "2025-12"
    assert meta["partitions_compacted"] == meta["partitions"] == meta["files_after"] > 0
    assert meta["files_before"] == 3 * meta["files_after"]
    assert meta["rows_rewritten"] == len(before)
    assert (meta["snapshots_expired"], meta["snapshots_kept"]) == (3 * len(DECEMBER), 1)
    table = backend.table()
    current = table.current_snapshot()
    assert meta["manifests"] == len(current.manifests(table.io)) >= 1
    assert table_rows(table) == before


def _day_again(backend: Backend, day: dt.date) -> tuple[Manifest, pa.Table]:
    """The day's current manifest and all its rows, sorted for the table (one commit's input)."""
    full = list_day(backend.store, day)
    return full, sort_for_table(pa.concat_tables(f.table for f in read_manifest(backend.store, full).files))


def test_orphan_files_of_a_killed_run_are_removed_once_older_than_the_window(backend: Backend):
    backend.catalog.ensure_table()
    _ingest_file_by_file(backend, DECEMBER[0])
    before = table_rows(backend.table())
    table = backend.table()
    _, rows = _day_again(backend, DECEMBER[0])
    # a run killed after writing its data files, before its commit
    orphans = write_data_files(table, rows).data_files
    assert orphans
    recent = remove_orphan_files(table, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert (recent.files, recent.too_recent) == (0, len(orphans))
    removed = remove_orphan_files(table, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert (removed.files, removed.bytes) == (len(orphans), sum(f.file_size_in_bytes for f in orphans))
    filesystem, root = arrow_filesystem(table.io, f"{table.location().rstrip('/')}/data")
    listed = {
        i.path
        for i in filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        if i.type == pafs.FileType.File
    }
    data_files = {arrow_filesystem(table.io, t.file.file_path)[1] for t in table.scan().plan_files()}
    assert listed == data_files  # the data folder holds exactly what the snapshots reference
    assert table_rows(backend.table()) == before


def _metadata_files(table) -> list[str]:
    filesystem, root = arrow_filesystem(table.io, f"{table.location().rstrip('/')}/metadata")
    return [
        i.path
        for i in filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        if i.type == pafs.FileType.File
    ]


def test_a_table_committed_all_day_keeps_its_metadata_bounded(backend: Backend):
    """Old metadata.json files deleted at commit, manifests merged, snapshots expired by the
    table's own properties, and what expiry leaves behind removed as orphans."""
    table = backend.catalog.ensure_table()
    assert {k: table.properties.get(k) for k in HYGIENE_PROPERTIES} == HYGIENE_PROPERTIES
    with table.transaction() as tx:  # merge at 10 manifests (Iceberg's default: 100)
        tx.set_properties({"commit.manifest.min-count-to-merge": "10"})
    day = DECEMBER[0]
    for key, data in generate_day(day, GeneratorSettings(rows_per_day=1_500, files_per_day=30)):
        backend.store.write(key, data)
    full, rows = _day_again(backend, day)
    counts = rows.group_by("source_file").aggregate([([], "count_all")])
    accepted = dict(zip(counts["source_file"].to_pylist(), counts["count_all"].to_pylist(), strict=True))
    for n in range(1, len(full.entries) + 1):  # a commit a minute: one new file each
        partial = Manifest.build(full.day, full.entries[:n])
        keys = pa.array([e.key for e in partial.entries])
        subset = rows.filter(pc.is_in(rows["source_file"], value_set=keys))
        assert commit_day(backend.table, partial, subset, accepted=accepted).outcome == "appended"
    table = backend.table()
    json_files = [p for p in _metadata_files(table) if p.endswith(".metadata.json")]
    assert len(json_files) <= 11, json_files  # previous-versions-max 10, plus the current one
    assert len(table.current_snapshot().manifests(table.io)) <= 10  # merged
    assert len(table.snapshots()) == len(full.entries)
    # too young to expire; then 2 hours later: all but the newest 12 go, with the files only
    # they referenced (manifest lists, manifests, state files), as Iceberg's expiry does
    before = set(_metadata_files(table))
    assert expire_by_policy(table, dt.datetime.now(dt.UTC)) == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert expire_by_policy(table, later) == len(full.entries) - 12
    table = backend.table()
    assert len(table.snapshots()) == 12
    assert len(_metadata_files(table)) < len(before) - 18  # 18 manifest lists at least
    # merge appends leave the manifests they merged away: orphans, removed after their window
    remove_orphan_files(table, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    left = [p for p in _metadata_files(table) if not p.endswith(".metadata.json")]
    assert left
    assert set(left) <= referenced_files(table)
    assert table_rows(table) == expected_rows_for_days(backend.store, [day])
    derived = derive_committed_state(table, day.isoformat())
    assert known_state(table, day.isoformat()) == derived  # the newest state file survived


def test_an_existing_table_gets_the_hygiene_properties_it_does_not_name(backend: Backend):
    catalog = backend.catalog.load_catalog()
    identifier = backend.catalog.identifier()
    catalog.create_namespace_if_not_exists(identifier.rsplit(".", 1)[0])
    catalog.create_table(  # made by an earlier version, and an operator's own retention
        identifier,
        schema=TABLE_SCHEMA,
        partition_spec=LAYOUTS["wf_month"],
        sort_order=SORT_ORDER,
        properties={"history.expire.max-snapshot-age-ms": "86400000"},
    )
    table = backend.catalog.ensure_table()
    assert table.properties["history.expire.max-snapshot-age-ms"] == "86400000"
    others = {k: v for k, v in HYGIENE_PROPERTIES.items() if k != "history.expire.max-snapshot-age-ms"}
    assert {k: table.properties.get(k) for k in others} == others
