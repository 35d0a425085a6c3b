"""A day committed all day long, reduced (`bench/bench_long_haul.py` measures the full one):
the structural bounds, not timings. Each run learns what the day holds from one state file,
the open day's partitions stay at most OPEN_DAY_MAX_FILES files, metadata.json files and
manifests stay bounded, the checks judge each run by what it wrote, and the rows are exact."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import dagster as dg

from wflog_assets.day import Day
from wflog_assets.iceberg._compat import arrow_filesystem
from wflog_assets.iceberg.maintenance import OPEN_DAY_MAX_FILES
from wflog_assets.iceberg.plan import day_filter
from wflog_assets.tools.generate import gzip_lines, writer_flushes
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAY = dt.date(2025, 12, 11)
RUNS, PER_RUN = 24, 3


def _metadata_json_files(table) -> int:
    import pyarrow.fs as pafs

    filesystem, root = arrow_filesystem(table.io, f"{table.location().rstrip('/')}/metadata")
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    return sum(1 for i in infos if i.path.endswith(".metadata.json"))


def test_a_day_committed_run_after_run_keeps_every_bound(backend: Backend, instance: dg.DagsterInstance):
    # few workflows, so that each run adds a file to most partitions of the day
    files = writer_flushes(DAY, RUNS * PER_RUN, workflows=4)
    most = 0
    for run in range(RUNS):
        for _ in range(PER_RUN):
            key, lines = next(files)
            backend.store.write(key, gzip_lines(lines))
        result = backend.run_day(DAY, instance, commit={"checks": "run"})
        (staged,) = result.asset_materializations_for_node("normalized_log_batches")
        assert staged.metadata["day_state"].value == ("none" if run == 0 else "carried")
        assert staged.metadata["files_read"].value == PER_RUN  # only what is new
        checks = result.get_asset_check_evaluations()
        assert {c.metadata["scope"].value for c in checks} == {"run"}
        assert all(c.passed for c in checks), [(c.check_name, c.metadata) for c in checks]
        table = backend.table()
        per_partition = Counter(
            tuple(t.file.partition) for t in table.scan(row_filter=day_filter(Day(DAY))).plan_files()
        )
        assert max(per_partition.values()) <= OPEN_DAY_MAX_FILES, per_partition
        most = max(most, max(per_partition.values()))
        assert _metadata_json_files(table) <= 11
        assert len(table.current_snapshot().manifests(table.io)) <= 100
    assert most == OPEN_DAY_MAX_FILES  # the bound was reached, and held
    (logs,) = result.asset_materializations_for_node("workflow_logs")
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY])
    # the whole day judged at once agrees
    day = backend.run_day(DAY, instance, commit={"checks": "day"})
    assert all(c.passed and c.metadata["scope"].value == "day" for c in day.get_asset_check_evaluations())
    assert logs.metadata["files_compacted"].value >= 0


def test_checks_judged_by_the_run_fail_on_what_the_run_wrote(backend: Backend):
    """Run-scope checks read the written files' statistics: a nameless row, a row far outside
    the day and a row count that differs from what was accepted each turn a check red."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from wflog_assets.iceberg.commit import write_data_files
    from wflog_assets.iceberg.schema import TIMESTAMP, WORKFLOW_NAME, sort_for_table
    from wflog_assets.quality.checks import day_checks
    from wflog_assets.quality.quarantine import STAGED_SCHEMA, summarize
    from wflog_assets.source.listing import list_day
    from wflog_assets.source.reading import read_manifest
    from wflog_assets.tools.generate import GeneratorSettings, generate_day

    for key, data in generate_day(DAY, GeneratorSettings(rows_per_day=300, files_per_day=2)):
        backend.store.write(key, data)
    rows = pa.concat_tables(f.table for f in read_manifest(backend.store, list_day(backend.store, DAY)).files)
    table = backend.catalog.ensure_table()
    staged = summarize(STAGED_SCHEMA.empty_table())
    staged.accepted_rows = rows.num_rows

    def judged(data: pa.Table, expected: int) -> dict[str, bool]:
        written = write_data_files(table, sort_for_table(data)).data_files
        outcomes = day_checks(table, DAY.isoformat(), staged, [], expected_rows=expected, written=written)
        assert {o.metadata["scope"] for o in outcomes} == {"run"}
        return {o.name: o.passed for o in outcomes}

    good = judged(rows, rows.num_rows)
    assert all(good.values()), good
    assert not judged(rows, rows.num_rows + 1)["row_count_parity"]
    names = rows.column(WORKFLOW_NAME)
    nameless = rows.set_column(
        rows.schema.get_field_index(WORKFLOW_NAME),
        WORKFLOW_NAME,
        pc.if_else(pc.equal(pa.array(range(rows.num_rows)), 0), pa.scalar(None, names.type), names),
    )
    assert not judged(nameless, rows.num_rows)["no_null_workflow_names"]
    timestamps = rows.column(TIMESTAMP)
    far = rows.set_column(
        rows.schema.get_field_index(TIMESTAMP),
        TIMESTAMP,
        pc.if_else(pc.equal(pa.array(range(rows.num_rows)), 0), pc.add(timestamps, 5 * 86_400), timestamps),
    )
    assert not judged(far, rows.num_rows)["timestamps_inside_day"]
