"""A day staged as sorted runs: read, normalize, screen and sort it a piece at a time (no Dagster).

`stage_in_pieces` reads the manifest's files a few at a time (`piece_bytes` of source per
piece, files of a piece in parallel), screens each piece (`quarantine.stage_day`) and spills
its good rows as one sorted run (`day_writer.write_run`, Arrow IPC + lz4) into a directory.
Only one piece is in memory at a time; what was kept out (quarantined rows, rejected files and
lines) is collected, since it is small unless the day is bad, and then it must be kept anyway.

`PhaseTimes` records where the time went (summed over the reading threads for the parallel
phases), for the asset's metadata and the benchmark.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from wflog_assets.day_writer import IpcRun, SortedRun, write_run
from wflog_assets.jsonlines import LineIssue
from wflog_assets.phases import PhaseTimes
from wflog_assets.quarantine import (
    QUARANTINE_REASON,
    STAGED_SCHEMA,
    StagedDay,
    split_staged,
    stage_day,
    summarize,
)
from wflog_assets.schema import DEFAULT_LAYOUT, LAYOUTS, TABLE_SCHEMA, TIMESTAMP, WORKFLOW_NAME
from wflog_assets.source import FileReject, Manifest, ManifestEntry, ObjectStore, read_manifest

DEFAULT_PIECE_BYTES = 32 * 1024 * 1024


def pieces(manifest: Manifest, piece_bytes: int) -> Iterator[Manifest]:
    """The manifest cut, in key order, into pieces of about `piece_bytes` of source each."""
    group: list[ManifestEntry] = []
    size = 0
    for entry in manifest.entries:
        if group and size + entry.size > piece_bytes:
            yield Manifest(manifest.day, tuple(group))
            group, size = [], 0
        group.append(entry)
        size += entry.size
    if group:
        yield Manifest(manifest.day, tuple(group))


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

    def summary(self) -> StagedDay:
        """What was accepted and kept out, for the checks."""
        day = summarize(self.kept_out)
        day.accepted_rows = self.accepted_rows
        day.line_issues = self.line_issues
        return day

    def good_rows(self) -> pa.Table:
        """All good rows in memory (the layout study only: production writes from the runs)."""
        tables = [pa.Table.from_batches(list(b for k in run.partitions for b in run.batches(k)),
                                        schema=STAGED_SCHEMA.remove(
                                            STAGED_SCHEMA.get_field_index(QUARANTINE_REASON)))
                  for run in self.runs]
        return pa.concat_tables(tables) if tables else split_staged(self.kept_out.slice(0, 0))[0]


def stage_in_pieces(
    store: ObjectStore,
    manifest: Manifest,
    filesystem: pafs.FileSystem,
    directory: str,
    max_workers: int = 8,
    piece_bytes: int = DEFAULT_PIECE_BYTES,
) -> StagedRuns:
    """Read the day a piece at a time; each piece's good rows become a sorted run file."""
    times = PhaseTimes()
    filesystem.create_dir(directory, recursive=True)
    spec, schema = LAYOUTS[DEFAULT_LAYOUT], TABLE_SCHEMA
    staged = StagedRuns(runs=[], kept_out=STAGED_SCHEMA.empty_table(), accepted_rows=0,
                        times=times)
    kept_out: list[pa.Table] = []
    for number, piece in enumerate(pieces(manifest, piece_bytes)):
        with times.timed("read_and_normalize_wall"):
            read = read_manifest(store, piece, max_workers=max_workers, times=times)
        with times.timed("screen_and_sort"):
            day = stage_day(read, piece)
            good, out = split_staged(day.table)
        kept_out.append(out)
        staged.accepted_rows += good.num_rows
        staged.source_files += len(read.files)
        staged.rejected.extend(read.rejected)
        staged.line_issues.extend(day.line_issues)
        for f in read.files:
            staged.ignored_columns.update(f.ignored_columns)
            staged.other_extra_keys.update(f.other_extra_keys)
            staged.files_by_reader[f.reader] = staged.files_by_reader.get(f.reader, 0) + 1
        if good.num_rows == 0:
            continue
        staged.workflows.update(pc.unique(good.column(WORKFLOW_NAME)).drop_null().to_pylist())
        bounds = pc.min_max(good.column(TIMESTAMP)).as_py()
        if bounds["min"] is not None:
            staged.min_timestamp = min(x for x in (staged.min_timestamp, bounds["min"])
                                       if x is not None)
            staged.max_timestamp = max(x for x in (staged.max_timestamp, bounds["max"])
                                       if x is not None)
        path = f"{directory}/run-{number:05d}.arrow"
        with times.timed("spill"):
            write_run(good, spec, schema, filesystem, path)
        staged.runs.append(IpcRun(filesystem, path))
    staged.kept_out = pa.concat_tables(kept_out) if kept_out else staged.kept_out
    return staged


LISTING = "_runs.json"
KEPT_OUT = "kept_out.parquet"


def save_staged(staged: StagedRuns, filesystem: pafs.FileSystem, directory: str) -> None:
    """Move a day's run files and kept-out records into `directory`; the listing goes last."""
    filesystem.create_dir(directory, recursive=True)
    filesystem.delete_dir_contents(directory, missing_dir_ok=True)
    names = []
    local = pafs.LocalFileSystem()
    for run in staged.runs:
        if not isinstance(run, IpcRun):
            raise TypeError(f"only spilled runs can be staged, got {type(run).__name__}")
        name = run.path.rsplit("/", 1)[1]
        if isinstance(filesystem, pafs.LocalFileSystem):
            shutil.move(run.path, f"{directory}/{name}")  # a rename on the same disk
        else:
            pafs.copy_files(run.path, f"{directory}/{name}", source_filesystem=local,
                            destination_filesystem=filesystem)
            local.delete_file(run.path)
        names.append(name)
    pq.write_table(staged.kept_out, f"{directory}/{KEPT_OUT}", filesystem=filesystem)
    listing = {"runs": names, "accepted_rows": staged.accepted_rows}
    with filesystem.open_output_stream(f"{directory}/{LISTING}") as out:
        out.write(json.dumps(listing).encode())


def load_staged(filesystem: pafs.FileSystem, directory: str, local_dir: str) -> StagedRuns:
    """A staged day back: runs memory-mapped (downloaded once into `local_dir` if remote)."""
    with filesystem.open_input_stream(f"{directory}/{LISTING}") as f:
        listing = json.loads(f.read())
    runs: list[SortedRun] = []
    local = pafs.LocalFileSystem()
    for name in listing["runs"]:
        if isinstance(filesystem, pafs.LocalFileSystem):
            runs.append(IpcRun(filesystem, f"{directory}/{name}"))
            continue
        target = f"{local_dir}/{name}"
        pafs.copy_files(f"{directory}/{name}", target, source_filesystem=filesystem,
                        destination_filesystem=local)
        runs.append(IpcRun(local, target))
    kept_out = pq.read_table(f"{directory}/{KEPT_OUT}", filesystem=filesystem)
    return StagedRuns(runs=runs, kept_out=kept_out, accepted_rows=int(listing["accepted_rows"]))
