"""The day's state carried through the table (`iceberg/checkpoint.py`) equals the state derived
from the rows, after every kind of history, on both catalogs; where the chain is broken the
plan falls back to the derivation."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from wflog_assets.iceberg.checkpoint import (
    SUMMARY_DAY_STATE,
    CommittedDay,
    day_state_snapshot,
    known_state,
    write_state,
)
from wflog_assets.iceberg.commit import commit_day
from wflog_assets.iceberg.maintenance import compact_day, expire_snapshots
from wflog_assets.iceberg.plan import committed_state, derive_committed_state
from wflog_assets.iceberg.schema import SOURCE_FILE, sort_for_table
from wflog_assets.source.listing import list_day
from wflog_assets.source.reading import read_manifest
from wflog_assets.tools.generate import GeneratorSettings, generate_day, generate_late_file
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAY = dt.date(2025, 12, 9)
NEXT = dt.date(2025, 12, 10)
SMALL = GeneratorSettings(rows_per_day=900, files_per_day=3, workflows_per_day=6)


def _same(backend: Backend, day: dt.date, carried: bool) -> CommittedDay:
    """The plan's state equals the derived one; `carried`: it came from a state file."""
    table = backend.table()
    derived = derive_committed_state(table, day.isoformat())
    assert derived.versions  # the day holds rows: a comparison of two empty states proves nothing
    assert (known_state(table, day.isoformat()) is not None) == carried
    state = committed_state(table, day.isoformat())
    assert (state.versions, state.rows) == (derived.versions, derived.rows)
    return state


def test_the_carried_state_equals_the_derived_one_through_every_kind_of_history(
    backend: Backend, instance: dg.DagsterInstance
):
    first, *others = generate_day(DAY, SMALL)
    for key, data in [first, *generate_day(NEXT, SMALL)]:
        backend.store.write(key, data)
    backend.run_day(DAY, instance)
    _same(backend, DAY, carried=True)
    for key, data in others:  # the rest of the day: the same workflows, a second file each
        backend.store.write(key, data)
    backend.run_day(DAY, instance)
    _same(backend, DAY, carried=True)
    assert compact_day(backend.table, DAY).partitions_compacted  # a compaction on top
    _same(backend, DAY, carried=True)
    for index in range(3):  # appends: late files, one run each
        backend.store.write(*generate_late_file(DAY, SMALL, index=index, rows=20 + index))
        backend.run_day(DAY, instance)
        _same(backend, DAY, carried=True)
    victim = list_day(backend.store, DAY).entries[0].key  # a replaced file
    backend.store.write(victim, generate_late_file(DAY, SMALL, index=9, rows=31)[1])
    backend.run_day(DAY, instance)
    assert _same(backend, DAY, carried=True).rows[victim] == 31
    gone = list_day(backend.store, DAY).entries[1].key  # a vanished file, kept, then deleted
    backend.store.delete(gone)
    backend.run_day(DAY, instance)
    assert gone in _same(backend, DAY, carried=True).versions
    backend.store.write(*generate_late_file(DAY, SMALL, index=4, rows=5))
    backend.run_day(DAY, instance, staging={"vanished_files": "delete"})
    assert gone not in _same(backend, DAY, carried=True).versions
    backend.run_day(NEXT, instance)  # another day's commit on top
    _same(backend, DAY, carried=True)
    _same(backend, NEXT, carried=True)
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY, NEXT])


def test_a_broken_chain_falls_back_to_the_rows_and_the_next_commit_mends_it(
    backend: Backend, instance: dg.DagsterInstance
):
    for day in (DAY, NEXT):
        for key, data in generate_day(day, SMALL):
            backend.store.write(key, data)
    backend.run_day(DAY, instance)
    # a commit by another writer (no summary of ours): the state may have changed -> derive
    table = backend.table()
    rows = table.scan().to_arrow().slice(0, 3)
    foreign = rows.set_column(
        rows.schema.get_field_index(SOURCE_FILE), SOURCE_FILE, pa.array(["elsewhere/x.parquet"] * 3)
    )
    table.append(foreign)
    assert day_state_snapshot(backend.table(), DAY.isoformat()) is None
    state = _same(backend, DAY, carried=False)
    assert state.rows["elsewhere/x.parquet"] == 3
    # a state file that is gone: derive
    backend.store.write(*generate_late_file(DAY, SMALL, index=0, rows=12))
    backend.run_day(DAY, instance)  # removes nothing it did not list (the foreign file stays)
    _same(backend, DAY, carried=True)
    location = backend.table().current_snapshot().summary[SUMMARY_DAY_STATE]
    backend.table().io.delete(location)
    _same(backend, DAY, carried=False)
    # the day's snapshots expired: derive; the next commit writes a state again
    backend.run_day(NEXT, instance)
    current = backend.table().current_snapshot()
    expire_snapshots(backend.table(), dt.datetime.fromtimestamp(current.timestamp_ms / 1000 + 1, dt.UTC))
    assert len(backend.table().snapshots()) == 1
    _same(backend, DAY, carried=False)
    _same(backend, NEXT, carried=True)
    backend.store.write(*generate_late_file(DAY, SMALL, index=1, rows=13))
    backend.run_day(DAY, instance)
    _same(backend, DAY, carried=True)


def test_a_state_written_for_a_commit_that_never_landed_is_never_read(backend: Backend):
    for key, data in generate_day(DAY, SMALL):
        backend.store.write(key, data)
    manifest = list_day(backend.store, DAY)
    rows = sort_for_table(pa.concat_tables([f.table for f in read_manifest(backend.store, manifest).files]))
    counts = rows.group_by(SOURCE_FILE).aggregate([([], "count_all")])
    accepted = dict(
        zip(counts.column(SOURCE_FILE).to_pylist(), counts.column("count_all").to_pylist(), strict=True)
    )
    backend.catalog.ensure_table()
    commit_day(backend.table, manifest, rows, accepted=accepted)
    # a run killed after writing its state file, before its commit: an orphan nobody names
    write_state(backend.table(), DAY.isoformat(), CommittedDay({"bogus": "e"}, {"bogus": 1}))
    state = _same(backend, DAY, carried=True)
    assert "bogus" not in state.versions

    def commit(_: int) -> str:  # four concurrent commits of one more file: one lands
        catalog = backend.catalog.load_catalog()
        return commit_day(
            lambda: catalog.load_table(backend.catalog.identifier()),
            later,
            later_rows,
            max_attempts=20,
            base_backoff_s=0.05,
            accepted=later_accepted,
        ).outcome

    backend.store.write(*generate_late_file(DAY, SMALL, index=2, rows=17))
    later = list_day(backend.store, DAY)
    later_rows = sort_for_table(
        pa.concat_tables([f.table for f in read_manifest(backend.store, later).files])
    )
    later_accepted = {
        key: int(pc.sum(pc.equal(later_rows.column(SOURCE_FILE), key)).as_py()) for key in later.versions()
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert sorted(pool.map(commit, range(4))) == ["appended", "unchanged", "unchanged", "unchanged"]
    _same(backend, DAY, carried=True)
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY])
