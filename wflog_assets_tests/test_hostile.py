"""A hostile source: no value fails a day, nothing is lost without a record.

Generated families (a seed each), through the assets on both backends: a day of good writer
files and Parquet chunks, plus files whose lines or rows carry what a buggy or hostile writer
can send: NaN, +-Infinity, 1e20, millisecond and nanosecond timestamps; values nested 65 to
3,000 levels deep (in `extra`, in a list, in the message); workflow names of 256 bytes to
2 KB (ASCII and not); several gzip members with a bad line in a later one. Each run must
succeed; every good record is in the table (counted per file, independently); every bad one
is in the quarantine with its key and reason; a long workflow name is kept whole and
queryable. An object deleted between listing and reading is one rejected file, named. With a
300 MB (decompressed) `.json.gz` in the day too, the run's process peaks under 1 GiB.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import json
import random
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from wflog_assets.day import Day
from wflog_assets.iceberg.query import p0_query
from wflog_assets.quality.quarantine import NOT_UNIX_SECONDS, QUARANTINE_SUFFIX, day_quarantine
from wflog_assets.source.listing import list_day
from wflog_assets.source.normalize import NESTED_TOO_DEEP
from wflog_assets.source.stores import CHANGED, GONE, LocalObjectStore, ObjectStore
from wflog_assets.staging.pieces import stage_in_pieces
from wflog_assets.tools.generate import gzip_lines, writer_flushes
from wflog_assets_testing.backends import Backend, embedded_backend
from wflog_assets_testing.memory import ingest_in_child, write_big_json

DAY = dt.date(2026, 2, 11)
START = Day(DAY).start
BAD_TIMES = ("NaN", "Infinity", "-Infinity", "1e20", "1770768000000", "1770768000000000000")


def _deep(rng: random.Random) -> str:
    depth = rng.choice((65, 100, 600, 3_000))
    if rng.random() < 0.5:
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "1" + "]" * depth


def _long_name(rng: random.Random) -> str:
    size = rng.choice((256, 300, 1_100, 2_048))
    alphabet = "abcdefghij-" if rng.random() < 0.5 else "wörk-流れ-"
    return "".join(rng.choice(alphabet) for _ in range(size))[:size]


def _line(rng: random.Random, ts: float, kind: str, long_names: list[str]) -> str:
    """One JSON line of `kind`: good, long_name, text_time (a number as text: good), bad_time,
    deep or dup_key (a key twice in one object)."""
    if kind == "text_time":
        return f'{{"timestamp": "{ts}", "extra": {{"workflow_id": "wf-s"}}}}'
    if kind == "dup_key":
        if rng.random() < 0.5:
            return f'{{"timestamp": 1, "timestamp": {ts}, "extra": {{"workflow_id": "a"}}}}'
        return f'{{"timestamp": {ts}, "extra": {{"workflow_id": "a", "workflow_id": "b"}}}}'
    if kind == "bad_time":
        return (
            f'{{"timestamp": {rng.choice(BAD_TIMES)}, "level": "INFO", "extra": {{"workflow_id": "wf-t"}}}}'
        )
    if kind == "deep":
        where = rng.choice(("extra", "message"))
        value = _deep(rng)
        if where == "extra":
            return f'{{"timestamp": {ts}, "extra": {{"workflow_id": "wf-d", "x": {value}}}}}'
        return f'{{"timestamp": {ts}, "message": {value}, "extra": {{"workflow_id": "wf-d"}}}}'
    name = f"wf-{rng.randrange(5)}"
    if kind == "long_name":
        name = _long_name(rng)
        long_names.append(name)
    return json.dumps({"timestamp": ts, "level": "INFO", "message": "m", "extra": {"workflow_id": name}})


def _hostile_json(rng: random.Random, number: int, long_names: list[str]) -> tuple[str, bytes, Counter[str]]:
    """A writer-named file of 1-12 lines of random kinds, in 1-3 gzip members."""
    ts0 = START + 3_600 + number * 60
    choices = ("good", "good", "long_name", "text_time", "bad_time", "deep", "dup_key")
    kinds = [rng.choice(choices) for _ in range(rng.randint(1, 12))]
    lines = [_line(rng, ts0 + i, k, long_names) for i, k in enumerate(kinds)]
    cuts = sorted(rng.sample(range(1, len(lines)), min(len(lines) - 1, rng.randint(0, 2))))
    members = [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    data = b"".join(gzip.compress(("\n".join(m) + "\n").encode(), mtime=0) for m in members)
    hour = int((ts0 - START) // 3600)
    key = f"{Day(DAY).prefix}hour={hour:02d}/{int((ts0 + 30) * 1e9)}_{900_000 + number}_dep_app.json.gz"
    return key, data, Counter(kinds)


def _hostile_parquet(
    rng: random.Random, number: int, long_names: list[str]
) -> tuple[str, bytes, Counter[str]]:
    """A Parquet chunk whose rows mix good ones, long names and timestamps that are not seconds,
    in a float64 or an int64 column (where a bad value is milliseconds or nanoseconds)."""
    kinds = [rng.choice(("good", "long_name", "bad_time")) for _ in range(rng.randint(5, 40))]
    integers = rng.random() < 0.5
    bad: tuple[float, ...] = (
        (1_770_768_000_000, 1_770_768_000_000_000_000)
        if integers
        else (float("nan"), float("inf"), 1e20, 1.77e12, 1.77e18)
    )
    ts: list[float] = []
    names = []
    for i, kind in enumerate(kinds):
        ts.append(rng.choice(bad) if kind == "bad_time" else START + 7_200 + i)
        name = _long_name(rng) if kind == "long_name" else f"wf-{i % 4}"
        if kind == "long_name":
            long_names.append(name)
        names.append(name)
    extra = pa.array([{"workflow_id": n} for n in names], pa.struct([("workflow_id", pa.string())]))
    column = pa.array([int(t) for t in ts], pa.int64()) if integers else pa.array(ts, pa.float64())
    table = pa.table({"timestamp": column, "level": ["INFO"] * len(ts), "extra": extra})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return (
        f"{Day(DAY).prefix}chunk-{number}-part{int(START * 1000) + number}.parquet",
        sink.getvalue(),
        Counter(kinds),
    )


def _misnamed(rng: random.Random, number: int) -> tuple[str, bytes, Counter[str]]:
    """A writer-named `.json.gz` that is not gzip of JSON lines: zstd, bzip2, plain text, or
    gzip compressed twice; rejected as a whole, with what it is."""
    line = json.dumps({"timestamp": START + 600 + number, "extra": {"workflow_id": "wf-m"}}) + "\n"
    data = rng.choice(
        (
            b"\x28\xb5\x2f\xfd" + line.encode(),  # a zstd frame's magic
            bz2.compress(line.encode()),
            line.encode(),
            gzip.compress(gzip.compress(line.encode())),
        )
    )
    key = f"{Day(DAY).prefix}hour=00/{int((START + 700 + number) * 1e9)}_{800_000 + number}_dep_app.json.gz"
    return key, data, Counter(unreadable=1)


def _kind(reason: str) -> str:
    if reason.startswith(("file: not a gzip stream: it is ", "file: compressed twice")):
        return "unreadable"
    if NESTED_TOO_DEEP in reason:
        return "deep"
    return "dup_key" if "duplicate key" in reason else reason


def _hostile_day(store: ObjectStore, seed: int) -> tuple[Counter[str], dict[str, Counter[str]], list[str]]:
    """A day of good writer files and hostile ones in `store`: (good rows per file, the kinds of
    lines per hostile file, the long workflow names written)."""
    rng = random.Random(seed)
    good_rows: Counter[str] = Counter()
    for key, lines in writer_flushes(DAY, 120, seed=seed):
        store.write(key, gzip_lines(lines))
        good_rows[key] = len(lines)
    expected: dict[str, Counter[str]] = {}
    long_names: list[str] = []
    for number in range(40):
        if number % 8 == 4:
            key, data, kinds = _misnamed(rng, number)
        else:
            make = _hostile_parquet if number % 8 == 0 else _hostile_json
            key, data, kinds = make(rng, number, long_names)
        store.write(key, data)
        expected[key] = kinds
        good_rows[key] = kinds["good"] + kinds["long_name"] + kinds["text_time"]
    return good_rows, expected, long_names


def _assert_every_record_accounted(
    backend: Backend, good_rows: Counter[str], expected: dict[str, Counter[str]]
) -> None:
    """Every good record in the table (counted per file), every bad one in the quarantine with
    its file and reason."""
    table = backend.table()
    got = Counter(table.scan(selected_fields=("source_file",)).to_arrow().column("source_file").to_pylist())
    assert got == +good_rows
    catalog = backend.catalog.load_catalog()
    quarantine = day_quarantine(
        catalog.load_table(backend.catalog.identifier(QUARANTINE_SUFFIX)), DAY.isoformat()
    )
    kept_out = Counter((r["source_file"], _kind(r["quarantine_reason"])) for r in quarantine.to_pylist())
    want = Counter()
    for key, kinds in expected.items():
        if kinds["bad_time"]:
            want[(key, NOT_UNIX_SECONDS)] = kinds["bad_time"]
        for kind in ("deep", "dup_key", "unreadable"):
            if kinds[kind]:
                want[(key, kind)] = kinds[kind]
    assert kept_out == want


@pytest.mark.parametrize("seed", [21, 22])
def test_a_hostile_day_commits_every_good_record_and_reports_every_bad_one(
    backend: Backend, instance: dg.DagsterInstance, seed: int
):
    good_rows, expected, long_names = _hostile_day(backend.store, seed)

    result = backend.run_day(DAY, instance)  # raises if the run failed

    _assert_every_record_accounted(backend, good_rows, expected)
    (staged,) = result.asset_materializations_for_node("normalized_log_batches")
    misnamed = sum(kinds["unreadable"] for kinds in expected.values())
    assert staged.metadata["rejected_files"].value == misnamed == 5  # counted as rejected files
    table = backend.table()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["source_fully_ingested"] is False
    assert all(v for k, v in checks.items() if k not in ("source_fully_ingested", "no_duplicate_rows"))
    paths = [task.file.file_path for task in table.scan().plan_files()]
    assert all(len(part.encode()) <= 255 for path in paths for part in path.split("/"))
    assert any("/_long/" in path for path in paths)
    for name in set(long_names[:3]):
        found = p0_query(table, name, limit=None, columns=("atlan_argo_workflow_name", "timestamp"))
        assert found.rows.num_rows == long_names.count(name)
        assert set(found.rows.column("atlan_argo_workflow_name").to_pylist()) == {name}


def test_an_object_replaced_between_listing_and_reading_is_one_named_reject(backend: Backend, tmp_path: Path):
    flushes = list(writer_flushes(DAY, 30, seed=5))
    for key, lines in flushes:
        backend.store.write(key, gzip_lines(lines))
    manifest = list_day(backend.store, DAY)
    replaced = [flushes[2][0], flushes[20][0]]
    for key in replaced:  # another version: its rows must not land under the listed ETag
        backend.store.write(key, gzip_lines([*dict(flushes)[key], dict(flushes)[key][0]]))
    staged = stage_in_pieces(backend.store, manifest, pafs.LocalFileSystem(), str(tmp_path / "spill"))
    assert [(r.key, r.reason) for r in staged.rejected] == [(k, CHANGED) for k in sorted(replaced)]
    assert staged.accepted_rows == sum(len(lines) for key, lines in flushes if key not in replaced)


def test_every_object_under_the_source_root_is_read_or_reported(backend: Backend, tmp_path: Path):
    (key, lines), *_ = writer_flushes(DAY, 1, seed=6)
    data = gzip_lines(lines)
    backend.store.write(key, data)
    unread = [  # folders the listing does not read: reported by the day beside them
        "year=2026/month=2/",
        "year=2026/month=13/",
        "year=2026/month=02/day=3/",
        "year=2026/month=02/day=32/",
        "year=2026/month=02/logs/",
        "year=26/",
    ]
    for folder in unread:
        backend.store.write(folder + "day=11/" + key.rsplit("/", 1)[-1], data)
    odd = [f"{Day(DAY).prefix}late.json.gz.tmp", f"{Day(DAY).prefix}notes.txt"]
    for name in odd:
        backend.store.write(name, b"{}")
    if isinstance(backend.store, LocalObjectStore):  # a symlinked folder is not followed
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / key.rsplit("/", 1)[-1]).write_bytes(data)
        (backend.store.root / Day(DAY).prefix / "linked").symlink_to(elsewhere)
        odd.append(f"{Day(DAY).prefix}linked/")
    manifest = list_day(backend.store, DAY)
    assert [e.key for e in manifest.entries] == [key]
    assert set(manifest.ignored) == set(unread) | set(odd)


def test_an_object_deleted_between_listing_and_reading_is_one_named_reject(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "source")
    flushes = list(writer_flushes(DAY, 30, seed=4))
    for key, lines in flushes:
        store.write(key, gzip_lines(lines))
    manifest = list_day(store, DAY)
    gone = [flushes[3][0], flushes[17][0]]
    for key in gone:
        (tmp_path / "source" / key).unlink()
    staged = stage_in_pieces(store, manifest, pafs.LocalFileSystem(), str(tmp_path / "spill"))
    assert [(r.key, r.reason) for r in staged.rejected] == [(k, GONE) for k in sorted(gone)]
    assert staged.accepted_rows == sum(len(lines) for key, lines in flushes if key not in gone)


@pytest.mark.parametrize("cycling", [False, True], ids=["time-order", "cycling"])
def test_a_hostile_day_with_a_300_mb_json_file_commits_within_1_gib(tmp_path: Path, cycling: bool):
    backend = embedded_backend(tmp_path)
    good_rows, expected, _ = _hostile_day(backend.store, 23)
    # its lines in time order, or passing through the whole day again and again
    key, lines = write_big_json(tmp_path / "source", DAY, 300, level=1, cycling=cycling)
    good_rows[key] = lines

    figures = ingest_in_child(tmp_path, DAY)  # the run in a process of its own: its peak RSS

    assert figures["peak_rss_mib"] <= 1024, figures
    assert figures["day_rows"] == sum(good_rows.values())
    assert lines > 400_000
    _assert_every_record_accounted(backend, good_rows, expected)
