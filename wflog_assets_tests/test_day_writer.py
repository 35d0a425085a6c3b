"""The streaming day writer: sorted runs merged into one sorted data file per partition.

Against pyiceberg's own one-shot `append` of the same rows (on the SQLite catalog and on the
REST catalog with its S3 warehouse): the same rows, partitions and column statistics.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from wflog_assets.errors import RunFormatError
from wflog_assets.iceberg.data_files import write_data_files
from wflog_assets.iceberg.runs import IpcRun, MemoryRun, merge_partition, write_run
from wflog_assets.iceberg.schema import MONTH, TIMESTAMP, WORKFLOW_NAME, sort_for_table
from wflog_assets.iceberg.tables import ensure_table
from wflog_assets.source.listing import list_day
from wflog_assets.source.reading import read_manifest
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import Backend

DAY = dt.date(2025, 12, 20)
SETTINGS = GeneratorSettings(rows_per_day=3000, files_per_day=6, workflows_per_day=5)


def _day_rows(backend: Backend) -> pa.Table:
    for key, data in generate_day(DAY, SETTINGS):
        backend.store.write(key, data)
    read = read_manifest(backend.store, list_day(backend.store, DAY))
    assert not read.rejected
    return pa.concat_tables([f.table for f in read.files])


def _pieces(rows: pa.Table, n: int, seed: int = 7) -> list[pa.Table]:
    """`rows` shuffled and cut into n pieces: every piece spans the whole day."""
    order = list(range(rows.num_rows))
    random.Random(seed).shuffle(order)
    shuffled = rows.take(pa.array(order))
    size = -(-rows.num_rows // n)
    return [shuffled.slice(i, size) for i in range(0, rows.num_rows, size)]


def _commit(table, data_files) -> None:
    with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
        for data_file in data_files:
            append.append_data_file(data_file)


def _files(table) -> dict[tuple, list]:
    by_partition: dict[tuple, list] = {}
    for task in table.scan().plan_files():
        by_partition.setdefault(tuple(task.file.partition), []).append(task.file)
    return by_partition


def _file_rows(table, data_file) -> pa.Table:
    with table.io.new_input(data_file.file_path).open() as f:
        return pq.read_table(f)


def _spill(backend: Backend, tmp_path: Path) -> tuple[pafs.FileSystem, str]:
    if backend.name == "embedded":
        return pafs.LocalFileSystem(), tmp_path.as_posix()
    staging = backend.resources["staging_io_manager"]
    return staging.s3.arrow_filesystem(), staging.root.removeprefix("s3://") + "/runs"


def test_spilled_runs_make_the_same_table_as_a_one_shot_pyiceberg_append(backend: Backend, tmp_path: Path):
    rows = _day_rows(backend)
    catalog = backend.catalog.load_catalog()
    ns = backend.catalog.identifier().rsplit(".", 1)[0]
    streamed = ensure_table(catalog, f"{ns}.streamed")
    one_shot = ensure_table(catalog, f"{ns}.one_shot")
    one_shot.append(sort_for_table(rows))  # pyiceberg's own write of the sorted day

    fs, base = _spill(backend, tmp_path)
    runs = []
    for i, piece in enumerate(_pieces(rows, 5)):
        path = f"{base}/run-{i}.arrow"
        write_run(piece, streamed.spec(), streamed.schema(), fs, path)
        runs.append(IpcRun(fs, path))
    written = write_data_files(streamed.metadata, streamed.io, runs)
    _commit(streamed, written.data_files)

    assert written.rows == rows.num_rows
    got, want = _files(streamed.refresh()), _files(one_shot.refresh())
    assert sorted(got) == sorted(want)
    assert written.partitions == len(want) == len(written.data_files)
    columns = [c for c in rows.column_names if c != "extra_other"]  # maps have no order to compare
    for partition, (mine,) in got.items():
        (theirs,) = want[partition]
        assert mine.record_count == theirs.record_count
        assert mine.null_value_counts == theirs.null_value_counts
        assert mine.value_counts == theirs.value_counts
        assert mine.lower_bounds == theirs.lower_bounds
        assert mine.upper_bounds == theirs.upper_bounds
        assert mine.sort_order_id == streamed.sort_order().order_id
        a = _file_rows(streamed, mine).select(columns)
        b = _file_rows(one_shot, theirs).select(columns)
        # same rows in the same timestamp order (rows of equal timestamps in any order)
        assert a.column(TIMESTAMP).equals(b.column(TIMESTAMP))
        assert a.sort_by([(c, "ascending") for c in columns if c != "extra"]).equals(
            b.sort_by([(c, "ascending") for c in columns if c != "extra"])
        )
    assert streamed.scan().to_arrow().num_rows == one_shot.scan().to_arrow().num_rows


def test_a_day_of_many_pieces_gives_one_sorted_file_per_partition(backend: Backend, tmp_path: Path):
    rows = _day_rows(backend)
    table = backend.catalog.ensure_table()
    runs = [MemoryRun.of(piece, table.spec(), table.schema()) for piece in _pieces(rows, 12)]
    assert len(runs) == 12
    assert all(run.rows.num_rows <= 250 for run in runs)
    written = write_data_files(table.metadata, table.io, runs)
    _commit(table, written.data_files)

    files = _files(table.refresh())
    expected = Counter(
        zip(rows.column(WORKFLOW_NAME).to_pylist(), rows.column(MONTH).to_pylist(), strict=True)
    )
    assert {k: sum(f.record_count for f in v) for k, v in files.items()} == expected
    assert all(len(v) == 1 for v in files.values())
    for (data_file,) in files.values():
        ts = _file_rows(table, data_file).column(TIMESTAMP)
        assert ts.to_pylist() == sorted(ts.to_pylist(), reverse=True)


def test_only_the_selected_source_files_rows_are_written(tmp_path: Path, backend: Backend):
    rows = _day_rows(backend)
    table = backend.catalog.ensure_table()
    keep_key = rows.column("source_file")[0].as_py()
    runs = [MemoryRun.of(piece, table.spec(), table.schema()) for piece in _pieces(rows, 3)]
    written = write_data_files(
        table.metadata, table.io, runs, keep=lambda b: pc.equal(b.column("source_file"), keep_key)
    )
    _commit(table, written.data_files)
    got = table.refresh().scan().to_arrow()
    assert written.rows == got.num_rows == pc.sum(pc.equal(rows.column("source_file"), keep_key)).as_py()
    assert set(got.column("source_file").to_pylist()) == {keep_key}


def test_a_partition_past_the_target_file_size_rolls_into_several_sorted_files(tmp_path: Path):
    from wflog_assets_testing.backends import embedded_backend

    backend = embedded_backend(tmp_path)
    rows = _day_rows(backend)
    table = ensure_table(
        backend.catalog.load_catalog(),
        backend.catalog.identifier(),
        properties={"write.target-file-size-bytes": "1", "write.parquet.row-group-limit": "100"},
    )
    written = write_data_files(
        table.metadata, table.io, [MemoryRun.of(p, table.spec(), table.schema()) for p in _pieces(rows, 4)]
    )
    _commit(table, written.data_files)
    files = _files(table.refresh())
    biggest = max(files.values(), key=lambda v: sum(f.record_count for f in v))
    assert len(biggest) > 1
    assert all(f.record_count == 100 for f in biggest[:-1])
    in_write_order = sorted(biggest, key=lambda f: int(f.file_path.rsplit("/", 1)[1].split("-")[1]))
    stamps = [t for f in in_write_order for t in _file_rows(table, f).column(TIMESTAMP).to_pylist()]
    assert table.scan().to_arrow().num_rows == rows.num_rows
    for data_file in biggest:
        ts = _file_rows(table, data_file).column(TIMESTAMP).to_pylist()
        assert ts == sorted(ts, reverse=True)
    assert stamps == sorted(stamps, reverse=True)  # the files continue one another


def test_merge_keeps_ties_together_and_puts_null_timestamps_last():
    def run(values: list[float | None], tag: str) -> list[pa.RecordBatch]:
        t = pa.table({TIMESTAMP: pa.array(values, pa.float64()), "tag": [tag] * len(values)})
        return t.to_batches(max_chunksize=2)

    a = run([9, 7, 7, 7, 7, 3, None], "a")
    b = run([8, 7, 7, 2, 1, None], "b")
    c = run([7, 7, 7, 7, 7, 7, 7], "c")
    blocks = list(merge_partition([(9, iter(a)), (8, iter(b)), (7, iter(c))]))
    merged = pa.concat_tables(blocks)
    assert merged.column(TIMESTAMP).to_pylist() == [9, 8] + [7] * 13 + [3, 2, 1, None, None]
    sevens = [i for i, blk in enumerate(blocks) if 7 in blk.column(TIMESTAMP).to_pylist()]
    assert len(sevens) == 1  # every row of one timestamp comes out in one block
    assert Counter(merged.column("tag").to_pylist()) == Counter(a=7, b=6, c=7)


def test_runs_of_different_hours_are_read_one_after_another_not_all_at_once():
    pulled: list[str] = []

    def run(tag: str, start: float) -> tuple[float, object]:
        t = pa.table({TIMESTAMP: pa.array([start - i for i in range(10)], pa.float64())})

        def batches():
            for batch in t.to_batches(max_chunksize=2):
                pulled.append(tag)
                yield batch

        return start, batches()

    blocks = merge_partition([run("older", 100.0), run("newest", 300.0), run("middle", 200.0)])
    first = next(blocks)
    assert first.column(TIMESTAMP).to_pylist()[0] == 300.0
    assert set(pulled) == {"newest"}  # the other runs are not read yet
    rest = pa.concat_tables([first, *blocks]).column(TIMESTAMP).to_pylist()
    assert rest == sorted(rest, reverse=True)
    assert len(rest) == 30
    assert max(i for i, tag in enumerate(pulled) if tag == "newest") < pulled.index("middle")


def test_a_file_that_is_not_a_sorted_run_is_refused(tmp_path: Path):
    path = (tmp_path / "other.arrow").as_posix()
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": [1]}))
    with pytest.raises(RunFormatError, match="not a sorted run"):
        IpcRun(pafs.LocalFileSystem(), path)


def test_day_checks_count_clean_files_from_statistics_and_read_the_others(backend: Backend):
    from wflog_assets.day import Day
    from wflog_assets.quality.checks import _day_facts

    rows = _day_rows(backend)
    table = backend.catalog.ensure_table()
    _commit(
        table,
        write_data_files(
            table.metadata, table.io, [MemoryRun.of(rows, table.spec(), table.schema())]
        ).data_files,
    )
    start = dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.UTC).timestamp()
    clean = _day_facts(table.refresh(), Day(DAY))
    assert (clean.rows, clean.null_names, clean.outside) == (rows.num_rows, 0, 0)
    ts = rows.column(TIMESTAMP)
    assert (clean.min_ts, clean.max_ts) == (pc.min(ts).as_py(), pc.max(ts).as_py())

    # the same day's file, but a blank name, a time of the next day (another day's row: not
    # counted, yet inside the window a writer's time zone allows) and one two days later
    bad = rows.slice(0, 3)
    bad = bad.set_column(
        bad.schema.get_field_index(WORKFLOW_NAME),
        WORKFLOW_NAME,
        pa.array([" ", "x", "y"], bad.schema.field(WORKFLOW_NAME).type),
    )
    bad = bad.set_column(
        bad.schema.get_field_index(TIMESTAMP),
        TIMESTAMP,
        pa.array([start + 10, start + 90_000, start + 200_000], pa.float64()),
    )
    _commit(
        table,
        write_data_files(
            table.metadata, table.io, [MemoryRun.of(bad, table.spec(), table.schema())]
        ).data_files,
    )
    mixed = _day_facts(table.refresh(), Day(DAY))
    assert (mixed.rows, mixed.null_names, mixed.outside) == (rows.num_rows + 1, 1, 1)
    assert (mixed.min_ts, mixed.max_ts) == (start + 10, clean.max_ts)
