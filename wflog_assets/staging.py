"""A day staged as sorted runs: read, normalize, screen and sort it a piece at a time (no Dagster).

`stage_in_pieces` reads the manifest's files in parallel, `part_rows` rows at a time, takes
them in key order into pieces of `piece_rows` rows, screens each piece (`quarantine.stage_day`)
and spills its good rows as one sorted run (`day_writer.write_run`, Arrow IPC + lz4) into a
directory. Only one piece is in memory at a time; what was kept out (quarantined rows, rejected
files and lines) is collected, since it is small unless the day is bad, and then it must be
kept anyway.

`PhaseTimes` records where the time went (summed over the reading threads for the parallel
phases), for the asset's metadata and the benchmark.
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from wflog_assets.day_writer import IpcRun, PartitionValues, SortedRun, write_run
from wflog_assets.jsonlines import LineIssue
from wflog_assets.normalize import NormalizationError, NormalizedFile
from wflog_assets.phases import PhaseTimes
from wflog_assets.quarantine import (
    FILE_PREFIX,
    STAGED_SCHEMA,
    StagedDay,
    record_rows,
    split_staged,
    stage_day,
    summarize,
)
from wflog_assets.schema import (
    ARROW_SCHEMA,
    DEFAULT_LAYOUT,
    LAYOUTS,
    SOURCE_FILE,
    TABLE_SCHEMA,
    TIMESTAMP,
    WORKFLOW_NAME,
)
from wflog_assets.source import (
    DayRead,
    FileReject,
    Manifest,
    ManifestEntry,
    ObjectStore,
    SourceReadError,
    TimedStore,
    file_reject,
    read_chunk_parts,
)

DEFAULT_PIECE_ROWS = 48 * 1024
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
            schema=ARROW_SCHEMA)


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


def stage_in_pieces(
    store: ObjectStore,
    manifest: Manifest,
    filesystem: pafs.FileSystem,
    directory: str,
    max_workers: int = 4,
    piece_rows: int = DEFAULT_PIECE_ROWS,
    part_rows: int = DEFAULT_PART_ROWS,
) -> StagedRuns:
    """Read the day in pieces of about `piece_rows` rows; each piece becomes a sorted run file.

    `max_workers` threads read and normalize files `part_rows` rows at a time, each into its
    file's queue of at most one part, while this thread takes the files in key order (chunk
    files are successive flushes, so pieces, and runs, follow time) and screens and sorts the
    pieces, while one more thread writes the previous piece's run: reading, sorting and
    spilling overlap, and memory stays at about two pieces plus 2 x max_workers parts.
    """
    times = PhaseTimes()
    started = time.perf_counter()
    filesystem.create_dir(directory, recursive=True)
    spec, schema = LAYOUTS[DEFAULT_LAYOUT], TABLE_SCHEMA
    staged = StagedRuns(runs=[], kept_out=STAGED_SCHEMA.empty_table(), accepted_rows=0,
                        times=times)
    queues: list[queue.Queue[object]] = [queue.Queue(maxsize=1) for _ in manifest.entries]
    stop = threading.Event()

    def read_file(number: int, entry: ManifestEntry) -> None:
        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    queues[number].put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        timed = TimedStore(store, times)
        t0 = time.perf_counter()
        try:
            for part in read_chunk_parts(timed, entry, part_rows):
                times.add("fetch_and_normalize", time.perf_counter() - t0)
                put(part)
                if stop.is_set():
                    return
                t0 = time.perf_counter()
        except (SourceReadError, NormalizationError) as exc:
            put(file_reject(entry, exc))
        except BaseException as exc:  # noqa: BLE001 - store errors fail the run, in this thread
            put(exc)
        finally:
            times.add("fetch_and_normalize", time.perf_counter() - t0)
            put(_DONE)

    pending: list[NormalizedFile] = []
    pending_rows = 0
    spilled: set[str] = set()
    rejected: dict[str, FileReject] = {}
    accepted: dict[str, int] = {}
    kept_out: list[pa.Table] = []

    def spill() -> None:
        nonlocal pending, pending_rows
        if not pending:
            return
        with times.timed("screen_and_sort"):
            day = stage_day(DayRead(files=pending, rejected=[]), manifest)
            good, out = split_staged(day.table)
        kept_out.append(out)
        staged.line_issues.extend(day.line_issues)
        spilled.update(f.key for f in pending)
        pending, pending_rows = [], 0
        if good.num_rows == 0:
            return
        counts = good.group_by(SOURCE_FILE).aggregate([([], "count_all")])
        for key, n in zip(counts.column(0).to_pylist(), counts.column(1).to_pylist(), strict=True):
            accepted[key] = accepted.get(key, 0) + n
        staged.workflows.update(pc.unique(good.column(WORKFLOW_NAME)).drop_null().to_pylist())
        bounds = pc.min_max(good.column(TIMESTAMP)).as_py()
        if bounds["min"] is not None:
            staged.min_timestamp = min(x for x in (staged.min_timestamp, bounds["min"])
                                       if x is not None)
            staged.max_timestamp = max(x for x in (staged.max_timestamp, bounds["max"])
                                       if x is not None)
        finish_spill()  # at most one piece is being written while the next one is built
        path = f"{directory}/run-{len(staged.runs) + len(writing):05d}.arrow"
        writing.append((path, spiller.submit(timed_write, good, path)))

    def timed_write(good: pa.Table, path: str) -> None:
        with times.timed("spill"):
            write_run(good, spec, schema, filesystem, path)

    def finish_spill() -> None:
        while writing:
            path, future = writing.pop(0)
            future.result()  # a failed write fails the run here
            staged.runs.append(IpcRun(filesystem, path))
            pa.default_memory_pool().release_unused()

    files_seen: set[str] = set()
    writing: list[tuple[str, Future[None]]] = []
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool, \
            ThreadPoolExecutor(max_workers=1) as spiller:
        for number, entry in enumerate(manifest.entries):
            pool.submit(read_file, number, entry)
        try:
            number = 0
            while number < len(queues):
                wait_started = time.perf_counter()
                item = queues[number].get()
                times.add("wait_for_parts", time.perf_counter() - wait_started)
                if item is _DONE:
                    queues[number] = queue.Queue()  # let its parts go
                    number += 1
                elif isinstance(item, BaseException):
                    raise item
                elif isinstance(item, FileReject):
                    rejected[item.key] = item
                    pending = [p for p in pending if p.key != item.key]
                    pending_rows = sum(p.table.num_rows for p in pending)
                else:
                    assert isinstance(item, NormalizedFile)
                    if item.key in rejected:
                        continue
                    if item.key not in files_seen:
                        files_seen.add(item.key)
                        staged.ignored_columns.update(item.ignored_columns)
                        staged.other_extra_keys.update(item.other_extra_keys)
                        staged.files_by_reader[item.reader] = (
                            staged.files_by_reader.get(item.reader, 0) + 1)
                    pending.append(item)
                    pending_rows += item.table.num_rows
                    if pending_rows >= piece_rows:
                        spill()
            spill()
            finish_spill()
        finally:
            stop.set()
    staged.excluded = spilled & set(rejected)
    staged.rejected = [rejected[k] for k in sorted(rejected)]
    staged.source_files = len(files_seen - set(rejected))
    staged.accepted_rows = sum(n for k, n in accepted.items() if k not in rejected)
    records = record_rows([(r.key, r.etag, f"{FILE_PREFIX}{r.reason}") for r in staged.rejected])
    kept = pa.concat_tables([*kept_out, record_rows([])]) if kept_out else record_rows([])
    if rejected:
        kept = kept.filter(pc.invert(pc.is_in(kept.column(SOURCE_FILE),
                                              pa.array(sorted(rejected), kept.schema.field(
                                                  SOURCE_FILE).type))))
    staged.kept_out = pa.concat_tables([kept, records])
    times.add("stage_wall", time.perf_counter() - started)
    return staged


LISTING = "_runs.json"
KEPT_OUT = "kept_out.parquet"


def save_staged(staged: StagedRuns, filesystem: pafs.FileSystem, directory: str) -> int:
    """Move a day's run files and kept-out records into `directory`; the listing goes last.

    Returns the bytes of the run files.
    """
    filesystem.create_dir(directory, recursive=True)
    filesystem.delete_dir_contents(directory, missing_dir_ok=True)
    local = pafs.LocalFileSystem()
    paths = []
    for run in staged.runs:
        if not isinstance(run, IpcRun):
            raise TypeError(f"only spilled runs can be staged, got {type(run).__name__}")
        paths.append(run.path)
    names = [path.rsplit("/", 1)[1] for path in paths]
    size = sum(local.get_file_info(path).size or 0 for path in paths)
    if isinstance(filesystem, pafs.LocalFileSystem):
        for path, name in zip(paths, names, strict=True):
            shutil.move(path, f"{directory}/{name}")  # a rename on the same disk
    elif paths:
        spill_dir = paths[0].rsplit("/", 1)[0]
        if any(path.rsplit("/", 1)[0] != spill_dir for path in paths):
            raise ValueError("a day's runs must be spilled into one directory")
        # one parallel upload of the folder (it holds only this day's runs)
        pafs.copy_files(spill_dir, directory, source_filesystem=local,
                        destination_filesystem=filesystem, use_threads=True)
        for path in paths:
            local.delete_file(path)
    pq.write_table(staged.kept_out, f"{directory}/{KEPT_OUT}", filesystem=filesystem)
    listing = {"runs": names, "accepted_rows": staged.accepted_rows,
               "excluded": sorted(staged.excluded)}
    with filesystem.open_output_stream(f"{directory}/{LISTING}") as out:
        out.write(json.dumps(listing).encode())
    return size


def load_staged(filesystem: pafs.FileSystem, directory: str, local_dir: str) -> StagedRuns:
    """A staged day back: runs read from where they are, or downloaded once into `local_dir`
    if the staging is remote (read batch by batch, each run is then read sequentially)."""
    with filesystem.open_input_stream(f"{directory}/{LISTING}") as f:
        listing = json.loads(f.read())
    local = pafs.LocalFileSystem()
    if isinstance(filesystem, pafs.LocalFileSystem):
        runs: list[SortedRun] = [IpcRun(filesystem, f"{directory}/{name}")
                                 for name in listing["runs"]]
    else:  # one parallel download of the folder
        pafs.copy_files(directory, local_dir, source_filesystem=filesystem,
                        destination_filesystem=local, use_threads=True)
        runs = [IpcRun(local, f"{local_dir}/{name}") for name in listing["runs"]]
    kept_out = pq.read_table(f"{directory}/{KEPT_OUT}", filesystem=filesystem)
    return StagedRuns(runs=runs, kept_out=kept_out, accepted_rows=int(listing["accepted_rows"]),
                      excluded=set(listing.get("excluded", [])))
