"""The current writer's stream: tiny files read in batches, and runs that read only what changed.

- batches of small `.json.gz` files parse to exactly what file-by-file reads give, whatever the
  batch mixes in (type drift between files, big integers next to floats, blank lines, broken
  gzip, several gzip members, empty files, bad lines): a generated family per seed;
- a day's re-run reads only its new files, and an unchanged day reads no object, with exact
  rows on both backends;
- two runs of one day that interleave with a late file landing between them lose nothing.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random

import dagster as dg
import pyarrow as pa
import pytest

from wflog_assets.day import Day
from wflog_assets.definitions import INGEST_JOB
from wflog_assets.defs.maintenance import DAY_COMPACTION_JOB, build_day_compaction
from wflog_assets.defs.partitions import daily_partitions
from wflog_assets.errors import NormalizationError, SourceReadError
from wflog_assets.iceberg.plan import day_filter
from wflog_assets.manifest import ManifestEntry
from wflog_assets.source.formats import jsonl
from wflog_assets.source.reading import file_reject
from wflog_assets.staging.pieces import _split, read_units
from wflog_assets.tools.generate import gzip_lines, writer_flushes
from wflog_assets_testing.backends import START, Backend
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAY = dt.date(2026, 11, 2)


def _hostile(rng: random.Random, number: int) -> bytes:
    """One small file a hostile or buggy writer could leave."""
    good = {
        "timestamp": 1_762_041_600.5 + number,
        "level": "INFO",
        "message": "m",
        "extra": {"workflow_id": f"wf-{number % 3}"},
    }
    kind = rng.randrange(7)
    if kind == 0:  # an integer float64 cannot hold, in a file of its own
        return gzip_lines([json.dumps({**good, "extra": {**good["extra"], "size": 2**53 + 1}})])
    if kind == 1:  # a fraction under the same key elsewhere
        return gzip_lines([json.dumps({**good, "extra": {**good["extra"], "size": 1.5}})])
    if kind == 2:  # blank lines between records
        return gzip.compress(b"\n" + json.dumps(good).encode() + b"\n\n  \n", mtime=0)
    if kind == 3:  # a truncated gzip stream
        return gzip_lines([json.dumps(good)] * 5)[:-7]
    if kind == 4:  # two gzip members
        return gzip_lines([json.dumps(good)]) + gzip_lines([json.dumps({**good, "line": 7})])
    if kind == 5:  # a line that is not JSON, next to a good one
        return gzip_lines([json.dumps(good), "{not json"])
    return gzip.compress(b"", mtime=0)  # no lines at all


def _day_files(seed: int) -> list[tuple[ManifestEntry, bytes]]:
    rng = random.Random(seed)
    files = [(key, gzip_lines(lines)) for key, lines in writer_flushes(DAY, 300, seed=seed, drift=0.03)]
    for number in range(12):  # hostile files at random places of the day
        files.insert(rng.randrange(len(files)), (f"x/hostile-{seed}-{number}.json.gz", _hostile(rng, number)))
    return [
        (ManifestEntry(key, len(data), f"etag-{i}", "", jsonl.NAME), data)
        for i, (key, data) in enumerate(files)
    ]


def _file_by_file(files: list[tuple[ManifestEntry, bytes]]) -> list[object]:
    out: list[object] = []
    for entry, data in files:
        try:
            out.extend(jsonl.read_parts(data, entry, 8192))
        except (SourceReadError, NormalizationError) as exc:
            out.append(file_reject(entry, exc))
    return out


def _rows_and_reports(items: list[object]) -> tuple[pa.Table, list[object]]:
    tables = [i.table for i in items if hasattr(i, "table")]
    reports = [i for i in items if not hasattr(i, "table")]
    reports += [issue for i in items if hasattr(i, "issues") for issue in i.issues]
    return pa.concat_tables(tables), sorted(reports, key=repr)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_small_files_read_in_batches_equal_file_by_file_reads(seed: int):
    files = _day_files(seed)
    batched = [
        item
        for unit in read_units(tuple(e for e, _ in files))
        for item in _split([f for f in files if f[0] in unit], 8192)
    ]
    rows, reports = _rows_and_reports(batched)
    want_rows, want_reports = _rows_and_reports(_file_by_file(files))
    assert rows.num_rows == want_rows.num_rows > 5_000
    assert rows.equals(want_rows)
    assert reports == want_reports
    assert len(reports) >= 3
    # most files really were parsed together: far fewer items than files
    assert len(batched) < len(files) / 4


def _write_writer_day(backend: Backend, files: int, seed: int = 5) -> list[str]:
    keys = []
    for key, lines in writer_flushes(DAY, files, seed=seed):
        backend.store.write(key, gzip_lines(lines))
        keys.append(key)
    return keys


def _meta(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    (mat,) = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mat.metadata.items()}


def _late(backend: Backend, seq: int, rows: int = 5) -> str:
    key, lines = next(writer_flushes(DAY, 1, seed=1000 + seq))
    key = key.replace("_000000_", f"_{900000 + seq:06d}_")
    backend.store.write(key, gzip_lines(lines[:rows] or lines))
    return key


def _assert_exact(backend: Backend) -> None:
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY])


def test_a_rerun_reads_only_new_files_and_an_unchanged_day_reads_nothing(
    backend: Backend, instance: dg.DagsterInstance
):
    keys = _write_writer_day(backend, 400)
    first = _meta(backend.run_day(DAY, instance), "normalized_log_batches")
    assert first["files_read"] == first["files_in_day"] == 400
    assert first["files_by_reader"] == {"arrow": 400}
    late = _late(backend, 1)
    result = backend.run_day(DAY, instance)
    staged, logs = _meta(result, "normalized_log_batches"), _meta(result, "workflow_logs")
    assert (staged["files_read"], staged["files_already_committed"]) == (1, 400)
    assert staged["source_bytes_read"] == len(backend.store.read(late))
    assert logs["outcome"] == "appended"
    assert logs["source_files_added"] == [late]
    assert logs["day_rows"] == backend.table().scan().count()
    assert all(c.passed for c in result.get_asset_check_evaluations())
    _assert_exact(backend)
    again = backend.run_day(DAY, instance)
    staged = _meta(again, "normalized_log_batches")
    assert (staged["files_read"], staged["source_bytes_read"]) == (0, 0)
    assert _meta(again, "workflow_logs")["outcome"] == "unchanged"
    assert len(keys) + 1 == staged["files_in_day"]
    _assert_exact(backend)


def _run(backend: Backend, instance: dg.DagsterInstance, *assets: str) -> None:
    job = backend.definitions().resolve_job_def(INGEST_JOB)
    selection = None if not assets else [dg.AssetKey(a) for a in assets]
    result = job.execute_in_process(
        partition_key=DAY.isoformat(), instance=instance, asset_selection=selection
    )
    assert result.success


@pytest.mark.parametrize("order", ["late_run_commits_first", "late_run_commits_last"])
def test_two_runs_of_a_day_interleaving_with_a_late_file_lose_nothing(
    backend: Backend, instance: dg.DagsterInstance, order: str
):
    _write_writer_day(backend, 60)
    _run(backend, instance, "raw_log_chunks", "normalized_log_batches")  # run A: listed, staged
    _late(backend, 2)  # lands while run A is between staging and committing
    if order == "late_run_commits_first":
        _run(backend, instance)  # run B: lists the late file too, and commits first
        _run(backend, instance, "workflow_logs")  # run A commits from its own staging
    else:
        _run(backend, instance, "raw_log_chunks", "normalized_log_batches")  # run B stages
        _run(backend, instance, "workflow_logs")  # the newest staging (B's) commits
        _run(backend, instance, "workflow_logs")  # then A's, planned before the late file
    _assert_exact(backend)
    _run(backend, instance)
    _assert_exact(backend)


def _files_per_partition(backend: Backend) -> dict[tuple[object, ...], int]:
    counts: dict[tuple[object, ...], int] = {}
    for task in backend.table().scan(row_filter=day_filter(Day(DAY))).plan_files():
        key = tuple(task.file.partition)
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_a_closed_day_is_compacted_to_one_file_per_partition(backend: Backend, instance: dg.DagsterInstance):
    _write_writer_day(backend, 150)
    backend.run_day(DAY, instance)
    # late flushes of the same workflows (same seed: same names), each its own commit
    for key, lines in list(writer_flushes(DAY, 160, seed=5))[150:153]:
        backend.store.write(key, gzip_lines(lines))
        backend.run_day(DAY, instance)
    before = _files_per_partition(backend)
    assert max(before.values()) > 1
    definitions = backend.definitions()
    logs = definitions.resolve_assets_def("workflow_logs")
    _, _, sensor = build_day_compaction(daily_partitions(START), logs, {}, lookback_days=400)
    with dg.build_sensor_context(instance=instance, definitions=definitions) as context:
        tick = sensor(context)
    assert [r.partition_key for r in tick.run_requests] == [DAY.isoformat()]
    job = definitions.resolve_job_def(DAY_COMPACTION_JOB)
    result = job.execute_in_process(partition_key=DAY.isoformat(), instance=instance)
    meta = _meta(result, "workflow_logs_day_compaction")
    assert meta["files_before"] == sum(n for n in before.values() if n > 1)
    after = _files_per_partition(backend)
    assert set(after) == set(before)
    assert set(after.values()) == {1}
    _assert_exact(backend)
    assert _meta(backend.run_day(DAY, instance), "workflow_logs")["outcome"] == "unchanged"
    with dg.build_sensor_context(instance=instance, definitions=definitions) as context:
        assert not sensor(context).run_requests  # nothing written since the compaction


BIG_INTEGERS = (2**53 + 1, 2**63 - 1, 2**64 - 5, -(2**63), 18446744073709551611, 9007199254740993)


Texts = dict[tuple[str, int], dict[str, str]]


def _integer_files(seed: int) -> tuple[list[tuple[ManifestEntry, bytes]], Texts]:
    """Small files whose records mix integers float64 cannot hold with fractions, small
    integers and text, in `extra` and at the top level; and, per (file, line), every integer
    as the text it was written with (the independent expectation)."""
    rng = random.Random(seed)
    files: list[tuple[ManifestEntry, bytes]] = []
    want: Texts = {}
    for number in range(120):
        key = f"x/ints-{seed}-{number:03d}.json.gz"
        lines = []
        for line in range(rng.randint(1, 4)):
            extra: dict[str, object] = {"workflow_id": f"wf-{number % 3}"}
            for name in ("dedup_key", "size_bytes", "count"):
                pick = rng.random()
                if pick < 0.4:
                    extra[name] = rng.choice((*BIG_INTEGERS, rng.randrange(2**53, 2**64)))
                elif pick < 0.6:
                    extra[name] = rng.choice((1.5, 0.25, -3.75))
                elif pick < 0.8:
                    extra[name] = rng.randrange(-1000, 1000)
            record = {"timestamp": 1_762_041_600.5 + number, "level": "INFO", "message": "m", "extra": extra}
            if rng.random() < 0.1:
                record["message"] = rng.choice(BIG_INTEGERS)
            lines.append(json.dumps(record))
            want[(key, line)] = {
                k: str(v) for k, v in {**extra, "message": record["message"]}.items() if isinstance(v, int)
            }
        files.append((ManifestEntry(key, 0, f"etag-{number}", "", jsonl.NAME), gzip_lines(lines)))
    return files, want


def _integers_read(items: list[object]) -> Texts:
    """Per (file, line), the text the reader kept for every value that `_integer_files` wrote
    as an integer, wherever the reader put it."""
    rows, reports = _rows_and_reports(items)
    assert reports == []
    got: Texts = {}
    lines: dict[str, int] = {}
    for row in rows.to_pylist():
        key = row["source_file"]
        line = lines[key] = lines.get(key, -1) + 1
        values = {**dict(row["extra_other"] or []), "message": row["message"]}
        values["workflow_id"] = row["atlan_argo_workflow_name"]
        got[(key, line)] = {k: v for k, v in values.items() if v is not None}
    return got


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_integers_keep_every_digit_on_the_batch_and_the_file_paths(seed: int):
    files, want = _integer_files(seed)
    batched = [
        item
        for unit in read_units(tuple(e for e, _ in files))
        for item in _split([f for f in files if f[0] in unit], 8192)
    ]
    for items in (batched, _file_by_file(files)):
        got = _integers_read(items)
        assert set(got) == set(want)
        wrong = {
            at: (name, text, got[at].get(name))
            for at, texts in want.items()
            for name, text in texts.items()
            if got[at].get(name) != text
        }
        assert wrong == {}
    assert sum(1 for texts in want.values() for v in texts.values() if abs(int(v)) >= 2**53) > 100


def test_big_integers_come_back_from_the_table_as_written(backend: Backend, instance: dg.DagsterInstance):
    start = Day(DAY).start
    records = [
        {"timestamp": start + 1, "extra": {"workflow_id": "wf", "dedup_key": 18446744073709551611}},
        {"timestamp": start + 2, "extra": {"workflow_id": "wf", "dedup_key": 9223372036854775807}},
        {"timestamp": start + 3, "extra": {"workflow_id": "wf", "size_bytes": 9007199254740993}},
        {"timestamp": start + 4, "extra": {"workflow_id": "wf", "size_bytes": 1.5}},
    ]
    prefix = f"{Day(DAY).prefix}hour=00/"
    backend.store.write(f"{prefix}1_000001_d_a.json.gz", gzip_lines([json.dumps(r) for r in records]))
    for i, r in enumerate(records):  # and each alone in a small file, as the batch path reads them
        backend.store.write(f"{prefix}2_{i:06d}_d_a.json.gz", gzip_lines([json.dumps(r)]))
    backend.run_day(DAY, instance)
    rows = backend.table().scan(selected_fields=("source_file", "extra_other")).to_arrow().to_pylist()
    got = sorted(v for row in rows for _, v in row["extra_other"])
    want = sorted(["18446744073709551611", "9223372036854775807", "9007199254740993", "1.5"] * 2)
    assert got == want
