"""A day staged as sorted runs: read, normalize, screen and sort it a piece at a time (no Dagster).

`stage_in_pieces` reads the manifest's files in parallel, `part_rows` rows at a time, takes
them in key order into pieces of `piece_rows` rows, screens each piece (`quarantine.stage_day`)
and spills its good rows as one sorted run (`runs.write_run`, Arrow IPC + lz4) into a
directory. Only one piece is in memory at a time; what was kept out (quarantined rows, rejected
files and lines) is collected, since it is small unless the day is bad, and then it must be
kept anyway.

`PhaseTimes` records where the time went (summed over the reading threads for the parallel
phases), for the asset's metadata and the benchmark.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from wflog_assets.errors import NormalizationError, SourceReadError
from wflog_assets.iceberg.plan import ReadPlan
from wflog_assets.iceberg.runs import IpcRun, PartitionValues, SortedRun, write_run
from wflog_assets.iceberg.schema import (
    ARROW_SCHEMA,
    DEFAULT_LAYOUT,
    LAYOUTS,
    SOURCE_FILE,
    TABLE_SCHEMA,
    TIMESTAMP,
    WORKFLOW_NAME,
)
from wflog_assets.manifest import Manifest, ManifestEntry
from wflog_assets.phases import PhaseTimes
from wflog_assets.quality.quarantine import (
    FILE_PREFIX,
    STAGED_SCHEMA,
    StagedDay,
    record_rows,
    split_staged,
    stage_day,
    summarize,
)
from wflog_assets.source.formats import format_named, jsonl
from wflog_assets.source.normalize import NormalizedFile
from wflog_assets.source.reading import DayRead, file_reject, read_chunk_parts
from wflog_assets.source.rejects import FileReject, LineIssue
from wflog_assets.source.stores import ObjectStore, TimedStore

DEFAULT_PIECE_ROWS = 48 * 1024
DEFAULT_READ_WORKERS = 4
DEFAULT_PART_ROWS = 8 * 1024


@dataclass
class StagedRuns:
    """A day's good rows as sorted runs, and every record kept out of the table."""

    runs: list[SortedRun]
    kept_out: pa.Table  # STAGED_SCHEMA rows whose quarantine_reason is set
    accepted_rows: int
    source_files: int = 0
    workflows: set[str] = field(default_factory=set)
    min_timestamp: float | None = None
    max_timestamp: float | None = None
    ignored_columns: set[str] = field(default_factory=set)
    other_extra_keys: set[str] = field(default_factory=set)
    files_by_reader: dict[str, int] = field(default_factory=dict)
    rejected: list[FileReject] = field(default_factory=list)
    line_issues: list[LineIssue] = field(default_factory=list)
    times: PhaseTimes = field(default_factory=PhaseTimes)
    # files rejected after part of their rows was spilled: their rows are skipped on reading
    excluded: set[str] = field(default_factory=set)
    # The files this staging read (a run reads only what its day needs): key -> rows accepted.
    # None: every file of the manifest was read, and the commit may act on all of them.
    read_keys: dict[str, int] | None = None
    # the plan the files to read came from (the commit removes only the files it found gone)
    planned: ReadPlan | None = None
    # where the staging lives once saved, so that it can be removed after the commit
    location: tuple[pafs.FileSystem, str] | None = None
    # the run that staged it (set when loaded back from staging)
    staged_by_run: str | None = None

    def discard(self) -> None:
        """Remove the saved staging (runs, kept-out records, listing)."""
        if self.location is not None:
            filesystem, directory = self.location
            filesystem.delete_dir(directory)
            self.location = None

    @property
    def unreadable(self) -> list[str]:
        """Files rejected as a whole by the line reader: an issue about the whole file (not
        gzip, compressed twice, empty) and no row taken from it."""
        rows = self.read_keys or {}
        return sorted({i.key for i in self.line_issues if i.line is None and not rows.get(i.key, 0)})

    def accepted_in(self, keys: Iterable[str]) -> int:
        """Rows accepted from these files (all of them when every file was read)."""
        if self.read_keys is None:
            return self.accepted_rows
        return sum(self.read_keys.get(k, 0) for k in keys)

    def readable(self) -> list[SortedRun]:
        """The runs as the table must get them (without the rows of excluded files)."""
        if not self.excluded:
            return list(self.runs)
        return [ExcludedRun(run, self.excluded) for run in self.runs]

    def summary(self) -> StagedDay:
        """What was accepted and kept out, for the checks."""
        day = summarize(self.kept_out)
        day.accepted_rows = self.accepted_rows
        day.line_issues = self.line_issues
        return day

    def good_rows(self) -> pa.Table:
        """All good rows in memory (the layout study only: production writes from the runs)."""
        return pa.Table.from_batches(
            [b for run in self.readable() for k in run.partitions for b in run.batches(k)],
            schema=ARROW_SCHEMA,
        )


class ExcludedRun:
    """A run without the rows of some source files (files rejected after part of them was
    staged: a file is ingested whole or not at all)."""

    def __init__(self, run: SortedRun, excluded: set[str]) -> None:
        self.run, self.excluded = run, pa.array(sorted(excluded))

    @property
    def partitions(self) -> dict[PartitionValues, int]:
        return self.run.partitions

    def top(self, partition: PartitionValues) -> float | None:
        return self.run.top(partition)

    def batches(self, partition: PartitionValues) -> Iterator[pa.RecordBatch]:
        for batch in self.run.batches(partition):
            column = batch.column(SOURCE_FILE)
            yield batch.filter(pc.invert(pc.is_in(column, self.excluded.cast(column.type))))


_DONE = object()
# Small `.json.gz` files (the current writer flushes every 100 records or 10 s) are read in
# batches: fetched with many GETs in flight and parsed as one Arrow read per batch.
SMALL_FILE_BYTES = 256 * 1024
BATCH_BYTES = 512 * 1024
BATCH_FILES = 1000
DEFAULT_FETCH_WORKERS = 32
Item = NormalizedFile | FileReject


def read_units(entries: tuple[ManifestEntry, ...]) -> list[tuple[ManifestEntry, ...]]:
    """The entries in key order, small JSON-lines files grouped into batches, others alone."""
    units: list[tuple[ManifestEntry, ...]] = []
    batch: list[ManifestEntry] = []
    size = 0
    for entry in entries:
        small = entry.format == jsonl.NAME and 0 < entry.size <= SMALL_FILE_BYTES
        if batch and (not small or size + entry.size > BATCH_BYTES or len(batch) >= BATCH_FILES):
            units.append(tuple(batch))
            batch, size = [], 0
        if small:
            batch.append(entry)
            size += entry.size
        else:
            units.append((entry,))
    if batch:
        units.append(tuple(batch))
    return units


def _split(files: list[tuple[ManifestEntry, bytes]], part_rows: int) -> Iterator[Item]:
    """A batch's files parsed together where Arrow takes them; else each half on its own, down
    to single files (where a bad file or line is found and reported). A few odd files among
    many cost a few re-parses of shrinking halves, not a per-file read of the whole batch."""
    if len(files) > 1:
        batch = jsonl.read_batch(files)
        if batch is not None:
            yield batch
            return
        half = len(files) // 2
        yield from _split(files[:half], part_rows)
        yield from _split(files[half:], part_rows)
        return
    for entry, data in files:
        try:
            yield from format_named(entry.format).read_parts(data, entry, part_rows)
        except (SourceReadError, NormalizationError) as exc:
            yield file_reject(entry, exc)


class DayStager:
    """Reads a manifest's files and stages them as sorted runs, a piece at a time.

    `max_workers` threads each read one unit (a file, `part_rows` rows at a time, or a batch of
    small files whose objects are fetched by `fetch_workers` threads at once) into the unit's
    queue of at most one item, while the calling thread takes the units in key order (chunk
    files are successive flushes, so pieces, and runs, follow time), screens and sorts pieces of
    `piece_rows` rows, and one more thread writes the previous piece's run: reading, sorting and
    spilling overlap, and memory stays at about two pieces plus 2 x max_workers items.
    """

    def __init__(
        self,
        store: ObjectStore,
        manifest: Manifest,
        filesystem: pafs.FileSystem,
        directory: str,
        max_workers: int,
        piece_rows: int,
        part_rows: int,
        fetch_workers: int,
    ) -> None:
        self.store, self.manifest = store, manifest
        self.filesystem, self.directory = filesystem, directory
        self.max_workers, self.piece_rows, self.part_rows = max_workers, piece_rows, part_rows
        self.fetch_workers = fetch_workers
        self.times = PhaseTimes()
        self.staged = StagedRuns(
            runs=[], kept_out=STAGED_SCHEMA.empty_table(), accepted_rows=0, times=self.times
        )
        self.units = read_units(manifest.entries)
        self.queues: list[queue.Queue[object]] = [queue.Queue(maxsize=1) for _ in self.units]
        self.stop = threading.Event()
        self.pending: list[NormalizedFile] = []
        self.pending_rows = 0
        self.spilled: set[str] = set()
        self.rejected: dict[str, FileReject] = {}
        self.accepted: dict[str, int] = {}
        self.kept_out: list[pa.Table] = []
        self.files_seen: set[str] = set()
        self.writing: list[tuple[str, Future[None]]] = []

    # ---- reading threads

    def _put(self, number: int, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.queues[number].put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _items(
        self, unit: tuple[ManifestEntry, ...], timed: ObjectStore, fetcher: ThreadPoolExecutor
    ) -> Iterator[Item]:
        if len(unit) == 1:
            try:
                yield from read_chunk_parts(timed, unit[0], self.part_rows)
            except (SourceReadError, NormalizationError) as exc:
                yield file_reject(unit[0], exc)
            return

        def fetch(entry: ManifestEntry) -> bytes | SourceReadError:
            try:
                return timed.read(entry.key, entry.etag)
            except SourceReadError as exc:  # gone since the listing: that file only
                return exc

        fetched = list(zip(unit, fetcher.map(fetch, unit), strict=True))
        for entry, data in fetched:
            if isinstance(data, SourceReadError):
                yield file_reject(entry, data)
        good = [(entry, data) for entry, data in fetched if isinstance(data, bytes)]
        if good:
            yield from _split(good, self.part_rows)

    def _read_unit(self, number: int, fetcher: ThreadPoolExecutor) -> None:
        timed = TimedStore(self.store, self.times)
        t0 = time.perf_counter()
        try:
            for item in self._items(self.units[number], timed, fetcher):
                self.times.add("fetch_and_normalize", time.perf_counter() - t0)
                self._put(number, item)
                if self.stop.is_set():
                    return
                t0 = time.perf_counter()
        except BaseException as exc:  # noqa: BLE001 - store errors fail the run, in this thread
            self._put(number, exc)
        finally:
            self.times.add("fetch_and_normalize", time.perf_counter() - t0)
            self._put(number, _DONE)

    # ---- the staging thread

    def _take(self, item: object) -> None:
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, FileReject):
            self.rejected[item.key] = item
            self.pending = [p for p in self.pending if item.key not in p.keys]
            self.pending_rows = sum(p.table.num_rows for p in self.pending)
            return
        assert isinstance(item, NormalizedFile)
        if item.key in self.rejected:
            return
        staged = self.staged
        for key in item.keys:
            if key not in self.files_seen:
                self.files_seen.add(key)
                staged.files_by_reader[item.reader] = staged.files_by_reader.get(item.reader, 0) + 1
        staged.ignored_columns.update(item.ignored_columns)
        staged.other_extra_keys.update(item.other_extra_keys)
        self.pending.append(item)
        self.pending_rows += item.table.num_rows
        if self.pending_rows >= self.piece_rows:
            self._spill()

    def _spill(self) -> None:
        if not self.pending:
            return
        staged = self.staged
        with self.times.timed("screen_and_sort"):
            day = stage_day(DayRead(files=self.pending, rejected=[]), self.manifest)
            good, out = split_staged(day.table)
        self.kept_out.append(out)
        staged.line_issues.extend(day.line_issues)
        self.spilled.update(k for f in self.pending for k in f.keys)
        self.pending, self.pending_rows = [], 0
        if good.num_rows == 0:
            return
        counts = good.group_by(SOURCE_FILE).aggregate([([], "count_all")])
        for key, n in zip(counts.column(0).to_pylist(), counts.column(1).to_pylist(), strict=True):
            self.accepted[key] = self.accepted.get(key, 0) + n
        staged.workflows.update(pc.unique(good.column(WORKFLOW_NAME)).drop_null().to_pylist())
        bounds = pc.min_max(good.column(TIMESTAMP)).as_py()
        if bounds["min"] is not None:
            staged.min_timestamp = min(x for x in (staged.min_timestamp, bounds["min"]) if x is not None)
            staged.max_timestamp = max(x for x in (staged.max_timestamp, bounds["max"]) if x is not None)
        self._finish_spill()  # at most one piece is being written while the next one is built
        path = f"{self.directory}/run-{len(staged.runs) + len(self.writing):05d}.arrow"
        self.writing.append((path, self.spiller.submit(self._write, good, path)))

    def _write(self, good: pa.Table, path: str) -> None:
        with self.times.timed("spill"):
            write_run(good, LAYOUTS[DEFAULT_LAYOUT], TABLE_SCHEMA, self.filesystem, path)

    def _finish_spill(self) -> None:
        while self.writing:
            path, future = self.writing.pop(0)
            future.result()  # a failed write fails the run here
            self.staged.runs.append(IpcRun(self.filesystem, path))
            pa.default_memory_pool().release_unused()

    def _consume(self) -> None:
        number = 0
        while number < len(self.queues):
            wait_started = time.perf_counter()
            item = self.queues[number].get()
            self.times.add("wait_for_parts", time.perf_counter() - wait_started)
            if item is _DONE:
                self.queues[number] = queue.Queue()  # let its parts go
                number += 1
            else:
                self._take(item)
        self._spill()
        self._finish_spill()

    def _finish(self) -> StagedRuns:
        staged, rejected = self.staged, self.rejected
        staged.excluded = self.spilled & set(rejected)
        # a neighbouring folder's file is reported by its own folder's day
        own = self.manifest.utc_day.prefix
        staged.rejected = [rejected[k] for k in sorted(rejected) if k.startswith(own)]
        staged.source_files = len(self.files_seen - set(rejected))
        staged.accepted_rows = sum(n for k, n in self.accepted.items() if k not in rejected)
        records = record_rows([(r.key, r.etag, f"{FILE_PREFIX}{r.reason}") for r in staged.rejected])
        kept = pa.concat_tables([*self.kept_out, record_rows([])])
        if rejected:
            keys = pa.array(sorted(rejected), kept.schema.field(SOURCE_FILE).type)
            kept = kept.filter(pc.invert(pc.is_in(kept.column(SOURCE_FILE), keys)))
        staged.kept_out = pa.concat_tables([kept, records])
        staged.read_keys = {
            e.key: 0 if e.key in rejected else self.accepted.get(e.key, 0) for e in self.manifest.entries
        }
        return staged

    def run(self) -> StagedRuns:
        started = time.perf_counter()
        self.filesystem.create_dir(self.directory, recursive=True)
        with (
            ThreadPoolExecutor(max_workers=max(1, self.max_workers)) as pool,
            ThreadPoolExecutor(max_workers=max(1, self.fetch_workers)) as fetcher,
            ThreadPoolExecutor(max_workers=1) as spiller,
        ):
            self.spiller = spiller
            for number in range(len(self.units)):
                pool.submit(self._read_unit, number, fetcher)
            try:
                self._consume()
            finally:
                self.stop.set()
        staged = self._finish()
        self.times.add("stage_wall", time.perf_counter() - started)
        return staged


def stage_in_pieces(
    store: ObjectStore,
    manifest: Manifest,
    filesystem: pafs.FileSystem,
    directory: str,
    max_workers: int = DEFAULT_READ_WORKERS,
    piece_rows: int = DEFAULT_PIECE_ROWS,
    part_rows: int = DEFAULT_PART_ROWS,
    fetch_workers: int = DEFAULT_FETCH_WORKERS,
) -> StagedRuns:
    """Read the manifest's files in pieces of about `piece_rows` rows; each piece becomes a
    sorted run file in `directory` (see `DayStager`)."""
    return DayStager(
        store, manifest, filesystem, directory, max_workers, piece_rows, part_rows, fetch_workers
    ).run()
