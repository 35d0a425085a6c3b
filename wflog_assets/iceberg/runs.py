"""Sorted runs: a piece of a day's rows ordered by (partition values, timestamp DESC, nulls
last), kept in memory (`MemoryRun`) or spilled as an lz4 Arrow IPC file with an index of where
each partition's rows are (`write_run`, `IpcRun`); and the k-way merge that reads them back
partition by partition, one block at a time (`partition_blocks`).

The merge opens a run only when it reaches the run's newest row, so runs of different hours
are read one after another: memory is one block per active run, whatever the day's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema

from wflog_assets.errors import RunFormatError
from wflog_assets.iceberg.schema import TIMESTAMP

PartitionValues = tuple[Any, ...]
RUN_INDEX_KEY = b"wflog.run-index"
# Rows per batch inside a spilled run, and per block of the merge. The merge holds one batch of
# every active run: when a file's rows jump across the day every run is active at once, so this
# bounds the merge's memory (16,384: 1.6 GiB for a 1 GB .json.gz cycling through the day; 4,096:
# 0.6 GiB; docs/benchmarks.md).
RUN_BATCH_ROWS = 4 * 1024


def _sort_key(values: PartitionValues) -> tuple[tuple[bool, Any], ...]:
    """Ascending, nulls last: the order partitions are written in (and runs are sorted in)."""
    return tuple((v is None, v if v is not None else 0) for v in values)


def partition_columns(rows: pa.Table, spec: PartitionSpec, schema: Schema) -> list[pa.Array]:
    """Each partition field's value for every row (the spec's transforms, as pyiceberg applies)."""
    out = []
    for spec_field in spec.fields:
        name = schema.find_column_name(spec_field.source_id)
        source = schema.find_field(spec_field.source_id)
        if name is None:
            raise KeyError(f"partition source field {spec_field.source_id} is not in the schema")
        column = rows.column(name).combine_chunks()
        out.append(spec_field.transform.pyarrow_transform(source.field_type)(column))
    return out


def _boundaries(columns: list[pa.Array], n: int) -> list[int]:
    """Row offsets where any of `columns` changes value (run ends), ending with n."""
    ends: set[int] = {n}
    for column in columns:
        ends.update(pc.run_end_encode(column).run_ends.to_pylist())
    return sorted(ends)


def _slices(columns: list[pa.Array], n: int) -> list[tuple[PartitionValues, int, int]]:
    """(partition values, offset, length) of each run of equal partition values."""
    out, start = [], 0
    for end in _boundaries(columns, n):
        if end > start:
            out.append((tuple(c[start].as_py() for c in columns), start, end - start))
        start = end
    return out


def sort_piece(
    rows: pa.Table, spec: PartitionSpec, schema: Schema
) -> tuple[pa.Table, list[tuple[PartitionValues, int, int]]]:
    """Order a piece by (partition values, timestamp DESC nulls last); its partitions' slices.

    A piece already in that order (as staged days are) is not sorted again.
    """
    if rows.num_rows == 0:
        return rows, []
    parts = partition_columns(rows, spec, schema)
    slices = _slices(parts, rows.num_rows)
    keys = [s[0] for s in slices]  # contiguous partitions, each newest first: keep as it is
    if len(set(keys)) == len(keys) and all(
        _descending(rows.column(TIMESTAMP).slice(o, n)) for _, o, n in slices
    ):
        return rows, slices
    names = [f"_p{i}" for i in range(len(parts))]
    keyed = pa.table([*parts, rows.column(TIMESTAMP)], names=[*names, TIMESTAMP])
    indices = pc.sort_indices(
        keyed, sort_keys=[*((n, "ascending", "at_end") for n in names), (TIMESTAMP, "descending", "at_end")]
    )
    rows = rows.take(indices)
    return rows, _slices([p.take(indices) for p in parts], rows.num_rows)


def _descending(ts: pa.ChunkedArray | pa.Array) -> bool:
    if len(ts) < 2:
        return True
    ts = ts.combine_chunks() if isinstance(ts, pa.ChunkedArray) else ts
    nulls = ts.null_count
    head = ts.slice(0, len(ts) - nulls)
    if nulls and head.null_count:  # a null before the tail: not nulls-last
        return False
    if len(head) < 2:
        return True
    return bool(pc.all(pc.greater_equal(head.slice(0, len(head) - 1), head.slice(1))).as_py())


class SortedRun(Protocol):
    """Rows ordered by (partition, timestamp DESC), readable one partition at a time."""

    @property
    def partitions(self) -> dict[PartitionValues, int]:
        """Partition values -> rows in this run."""
        ...

    def top(self, partition: PartitionValues) -> float | None:
        """The newest timestamp of the partition's rows here (None: none or all null)."""
        ...

    def batches(self, partition: PartitionValues) -> Iterator[pa.RecordBatch]: ...


@dataclass
class MemoryRun:
    """A sorted piece held in memory."""

    rows: pa.Table
    slices: dict[PartitionValues, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: pa.Table, spec: PartitionSpec, schema: Schema) -> MemoryRun:
        rows, slices = sort_piece(rows, spec, schema)
        return cls(rows, {k: (o, n) for k, o, n in slices})

    @property
    def partitions(self) -> dict[PartitionValues, int]:
        return {k: n for k, (_, n) in self.slices.items()}

    def top(self, partition: PartitionValues) -> float | None:
        offset, _ = self.slices[partition]
        top: float | None = self.rows.column(TIMESTAMP)[offset].as_py()
        return top

    def batches(self, partition: PartitionValues) -> Iterator[pa.RecordBatch]:
        if partition in self.slices:
            offset, length = self.slices[partition]
            yield from self.rows.slice(offset, length).to_batches(max_chunksize=RUN_BATCH_ROWS)


def write_run(
    rows: pa.Table, spec: PartitionSpec, schema: Schema, filesystem: pafs.FileSystem, path: str
) -> None:
    """Sort a piece and spill it as an Arrow IPC file (lz4) with its partition index."""
    rows, slices = sort_piece(rows, spec, schema)
    index, batch_no = [], 0
    batches: list[pa.RecordBatch] = []
    for key, offset, length in slices:
        chunk = rows.slice(offset, length).combine_chunks().to_batches(max_chunksize=RUN_BATCH_ROWS)
        index.append([list(key), batch_no, len(chunk), length, rows.column(TIMESTAMP)[offset].as_py()])
        batch_no += len(chunk)
        batches.extend(chunk)
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    metadata = {RUN_INDEX_KEY: json.dumps(index).encode()}
    with (
        filesystem.open_output_stream(path) as sink,
        pa.ipc.new_file(sink, rows.schema, options=options, metadata=metadata) as writer,
    ):
        for batch in batches:
            writer.write_batch(batch)


class IpcRun:
    """A run spilled by `write_run`, read back one batch at a time (ranged reads if remote)."""

    def __init__(self, filesystem: pafs.FileSystem, path: str) -> None:
        # read into heap buffers that are freed batch by batch (a memory map would keep every
        # page it touched resident, and counted, until the end)
        self._reader = pa.ipc.open_file(filesystem.open_input_file(path))
        raw = (self._reader.metadata or {}).get(RUN_INDEX_KEY)
        if raw is None:
            raise RunFormatError(f"{path}: not a sorted run (no {RUN_INDEX_KEY.decode()} index)")
        self._index = {tuple(k): (first, count, rows, top) for k, first, count, rows, top in json.loads(raw)}
        self.path = path

    @property
    def partitions(self) -> dict[PartitionValues, int]:
        return {k: rows for k, (_, _, rows, _) in self._index.items()}

    def top(self, partition: PartitionValues) -> float | None:
        top: float | None = self._index[partition][3]
        return top

    def batches(self, partition: PartitionValues) -> Iterator[pa.RecordBatch]:
        if partition in self._index:
            first, count, _, _ = self._index[partition]
            for i in range(first, first + count):
                yield self._reader.get_batch(i)


def _low(block: pa.Table) -> float:
    """The smallest timestamp of a DESC-sorted block (nulls last count as -inf)."""
    ts = block.column(TIMESTAMP)
    last = ts[len(ts) - 1].as_py()
    return float("-inf") if last is None else float(last)


def merge_partition(sources: list[tuple[float | None, Iterator[pa.RecordBatch]]]) -> Iterator[pa.Table]:
    """Blocks of one partition's rows from several DESC-sorted runs, in timestamp DESC order.

    `sources`: (newest timestamp, batches) per run. Each round emits every buffered row newer
    than T, the newest of the active runs' oldest buffered timestamps: no unread row can be
    newer. A run is read only once T falls to its newest timestamp, so runs covering different
    hours (pieces are files in time order) are read one after another, not all at once.
    Rows of one timestamp are emitted in one block.
    """
    minus_inf = float("-inf")
    waiting = sorted(
        ((minus_inf if top is None else float(top), i) for i, (top, _) in enumerate(sources)), reverse=True
    )
    iterators = [it for _, it in sources]
    buffers: dict[int, pa.Table] = {}  # active runs: their unread rows
    live: set[int] = set()  # active runs that may have more batches

    def pull(i: int) -> None:
        batch = next(iterators[i], None)
        if batch is None:
            live.discard(i)
            return
        block = pa.Table.from_batches([batch])
        buffers[i] = pa.concat_tables([buffers[i], block]) if i in buffers else block

    while True:
        while empty := [i for i in live if i not in buffers or buffers[i].num_rows == 0]:
            for i in empty:
                pull(i)
        lows = [_low(buffers[i]) for i in live]
        threshold = max(lows) if lows else minus_inf
        if waiting and (waiting[0][0] > threshold or not lows):
            _, i = waiting.pop(0)  # its newest rows may be newer than any buffered: activate
            live.add(i)
            pull(i)
            continue
        if not live and not waiting:
            rest = [b for b in buffers.values() if b.num_rows]
            if rest:
                yield _sorted_block(rest)
            return
        out = []
        for i, b in list(buffers.items()):
            if b.num_rows == 0:
                continue
            newer = int(pc.sum(pc.greater(b.column(TIMESTAMP), threshold)).as_py() or 0)
            if newer:
                out.append(b.slice(0, newer))
                buffers[i] = b.slice(newer)
        for i in [i for i, b in buffers.items() if i not in live and b.num_rows == 0]:
            del buffers[i]  # finished runs
        if out:
            yield _sorted_block(out)
        elif lows:  # every buffered row of the oldest-low run sits at the threshold: read on
            pull(max(live, key=lambda i: _low(buffers[i])))


def partition_blocks(runs: Iterable[SortedRun]) -> Iterator[tuple[PartitionValues, pa.Table]]:
    """Every partition's rows, merged across `runs`, as (partition values, block) in order."""
    runs = list(runs)
    keys: set[PartitionValues] = set()
    for run in runs:
        keys.update(run.partitions)
    for values in sorted(keys, key=_sort_key):
        for block in merge_partition(
            [(run.top(values), run.batches(values)) for run in runs if values in run.partitions]
        ):
            yield values, block


def _sorted_block(blocks: list[pa.Table]) -> pa.Table:
    """One DESC-sorted block of several: concatenated in order when their ranges do not
    overlap (runs of different hours), else sorted."""
    if len(blocks) == 1:
        return blocks[0]
    ranges = []
    for block in blocks:
        bounds = pc.min_max(block.column(TIMESTAMP)).as_py()
        ranges.append((bounds["max"], bounds["min"], block))
    if all(r[0] is not None for r in ranges) and not any(b.column(TIMESTAMP).null_count for b in blocks):
        ranges.sort(key=lambda r: r[0], reverse=True)
        if all(ranges[i][1] >= ranges[i + 1][0] for i in range(len(ranges) - 1)):
            return pa.concat_tables([r[2] for r in ranges])
    block = pa.concat_tables(blocks)
    return block.take(pc.sort_indices(block, sort_keys=[(TIMESTAMP, "descending", "at_end")]))
