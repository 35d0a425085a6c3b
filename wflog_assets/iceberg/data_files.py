"""A day's rows -> sorted Iceberg data files, one per partition, in bounded memory (no Dagster).

pyiceberg 0.12 writes a partitioned `append` from one in-memory table (a `RecordBatchReader` is
refused for partitioned tables, apache/iceberg-python#2152), filters that whole table once per
partition value, and needs ~0.9 KiB of memory per row. Here instead:

- rows arrive in *pieces* (a bounded number of rows at a time); each piece is ordered by
  (partition values, timestamp DESC, nulls last) and kept as a **sorted run**: the piece itself
  (`MemoryRun`), or an Arrow IPC file (lz4) on any pyarrow filesystem (`write_run` /
  `IpcRun`), with an index of where each partition's rows are;
- `write_data_files` merges, partition by partition, the runs' slices of that partition
  (a k-way merge on the timestamp, one block at a time) into a rolling Parquet writer: one data
  file per partition unless it passes `write.target-file-size-bytes`, row groups of
  `write.parquet.row-group-limit` rows, field ids, partition values and column statistics as
  pyiceberg writes them (its own statistics code over the Parquet footer).

Memory: one block per run the merge has reached and not finished (runs of different hours are
read one after another), plus one row group, whatever the size of the day.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.io import FileIO
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    pyarrow_to_schema,
    schema_to_pyarrow,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema, sanitize_column_names
from pyiceberg.table import TableProperties
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Record
from pyiceberg.utils.properties import property_as_int

from wflog_assets.errors import RunFormatError
from wflog_assets.iceberg._compat import get_parquet_writer_kwargs, to_requested_schema
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


@dataclass
class WrittenFiles:
    """The data files written, and what the write did (for reports and benchmarks)."""

    data_files: list[DataFile] = field(default_factory=list)
    rows: int = 0
    partitions: int = 0


class _FileSettings:
    """What every data file of one write shares: schemas, table properties, locations."""

    def __init__(self, metadata: TableMetadata) -> None:
        table_schema = metadata.schema()
        sanitized = sanitize_column_names(table_schema)
        self.metadata = metadata
        self.file_schema = sanitized if sanitized != table_schema else table_schema
        props = metadata.properties
        self.row_group = (
            property_as_int(
                props,
                TableProperties.PARQUET_ROW_GROUP_LIMIT,
                TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT,
            )
            or 1
        )
        self.target = (
            property_as_int(
                props,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
            )
            or 1
        )
        self.kwargs = get_parquet_writer_kwargs(props)
        self.location = load_location_provider(table_location=metadata.location, table_properties=props)
        self.format_model = FileFormatFactory.get(FileFormat.PARQUET)
        self.stats_plan = compute_statistics_plan(self.file_schema, props)
        self.column_ids = parquet_path_to_id_mapping(self.file_schema)
        self._task_schemas: dict[pa.Schema, Schema] = {}
        self.arrow_schema = schema_to_pyarrow(self.file_schema, include_field_ids=True)
        self.table_names = [f.name for f in table_schema.fields]

    def to_file(self, rows: pa.Table) -> pa.Table:
        """`rows` as the file stores them: the table's field ids and (sanitized) names.

        Rows already of the table's types are relabelled without copying; anything else goes
        through pyiceberg's own projection.
        """
        if rows.column_names == self.table_names:
            try:
                return pa.Table.from_arrays(
                    [_relabel(rows.column(i), f.type) for i, f in enumerate(self.arrow_schema)],
                    schema=self.arrow_schema,
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                pass
        task = self._task_schemas.get(rows.schema)
        if task is None:
            task = self._task_schemas[rows.schema] = pyarrow_to_schema(
                rows.schema,
                name_mapping=self.metadata.schema().name_mapping,
                format_version=self.metadata.format_version,
            )
        return pa.Table.from_batches(
            [
                to_requested_schema(
                    requested_schema=self.file_schema,
                    file_schema=task,
                    batch=b,
                    include_field_ids=True,
                    format_model=self.format_model,
                )
                for b in rows.to_batches()
            ]
        )


def _relabel(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """The same values under `target`'s field names (and field-id metadata)."""
    if column.type == target or not pa.types.is_struct(target):
        return column
    if not pa.types.is_struct(column.type) or column.type.num_fields != target.num_fields:
        raise TypeError(f"cannot relabel {column.type} as {target}")
    fields = list(target)
    chunks = []
    for chunk in column.chunks:
        children = [
            _relabel(pa.chunked_array([chunk.field(i)]), f.type).combine_chunks()
            for i, f in enumerate(fields)
        ]
        mask = pc.is_null(chunk) if chunk.null_count else None
        chunks.append(pa.StructArray.from_arrays(children, fields=fields, mask=mask))
    return pa.chunked_array(chunks, type=target)


class _RollingWriter:
    """One partition's data files: row groups of a fixed size, a new file past the target size."""

    def __init__(
        self, settings: _FileSettings, io: FileIO, key: PartitionKey | None, new_name: Callable[[], str]
    ) -> None:
        self.settings, self.io, self.key, self.new_name = settings, io, key, new_name
        self.row_group = settings.row_group
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.files: list[DataFile] = []
        self._open: tuple[str, Any, Any, pq.ParquetWriter] | None = None

    def add(self, block: pa.Table) -> None:
        if block.num_rows == 0:
            return
        self.pending.append(block)
        self.pending_rows += block.num_rows
        if self.pending_rows >= self.row_group:
            self._flush(self.pending_rows - self.pending_rows % self.row_group)

    def _flush(self, rows: int) -> None:
        """Write the first `rows` pending rows (whole row groups, but at the end)."""
        table = pa.concat_tables(self.pending)  # chunks as they are: no copy
        rest = table.slice(rows)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows
        for offset in range(0, rows, self.row_group):  # the target size is checked per group
            self._write(table.slice(offset, min(self.row_group, rows - offset)))

    def _write(self, group: pa.Table) -> None:
        table = self.settings.to_file(group)
        if self._open is None:
            path = self.settings.location.new_data_location(
                data_file_name=self.new_name(), partition_key=self.key
            )
            output = self.io.new_output(path)
            stream = output.create(overwrite=True)
            writer = pq.ParquetWriter(
                stream, schema=table.schema, store_decimal_as_integer=True, **self.settings.kwargs
            )
            self._open = (path, output, stream, writer)
        _, _, stream, writer = self._open
        writer.write_table(table, row_group_size=self.row_group)
        if stream.tell() >= self.settings.target:
            self._close_file()

    def _close_file(self) -> None:
        if self._open is None:
            return
        path, output, stream, writer = self._open
        self._open = None
        writer.close()
        stream.close()
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=writer.writer.metadata,
            stats_columns=self.settings.stats_plan,
            parquet_column_mapping=self.settings.column_ids,
        )
        data_file = DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=self.key.partition if self.key else Record(),
            file_size_in_bytes=len(output),
            # the rows are written in the table's sort order (timestamp DESC)
            sort_order_id=self.settings.metadata.default_sort_order_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )
        data_file.spec_id = self.settings.metadata.default_spec_id  # from_args ignores it
        self.files.append(data_file)

    def finish(self) -> list[DataFile]:
        if self.pending_rows:
            self._flush(self.pending_rows)
        self._close_file()
        return self.files


def write_data_files(
    metadata: TableMetadata,
    io: FileIO,
    runs: Iterable[SortedRun],
    keep: Callable[[pa.Table], pa.Array] | None = None,
    observe: Callable[[pa.Table], None] | None = None,
) -> WrittenFiles:
    """Write the rows of `runs` (those `keep` selects, if given) as data files, not committed.

    `observe` sees every merged block (before `keep`): checks ride along the one pass.
    """
    spec, schema = metadata.spec(), metadata.schema()
    settings = _FileSettings(metadata)
    write_uuid = uuid.uuid4()
    counter = itertools.count()

    def new_name() -> str:
        return f"00000-{next(counter)}-{write_uuid}.parquet"

    out = WrittenFiles()
    writer: _RollingWriter | None = None
    current: PartitionValues | None = None
    for values, block in partition_blocks(runs):
        if writer is None or values != current:
            if writer is not None:
                out.data_files.extend(writer.finish())
            key = _partition_key(spec, schema, values) if spec.fields else None
            writer, current = _RollingWriter(settings, io, key, new_name), values
        if observe is not None:
            observe(block)
        if keep is not None:
            block = block.filter(keep(block))
        out.rows += block.num_rows
        writer.add(block)
    if writer is not None:
        out.data_files.extend(writer.finish())
    out.partitions = len({tuple(f.partition) for f in out.data_files})  # type: ignore[arg-type]
    return out


def _partition_key(spec: PartitionSpec, schema: Schema, values: PartitionValues) -> PartitionKey:
    return PartitionKey(
        field_values=[
            PartitionFieldValue(field=f, value=v) for f, v in zip(spec.fields, values, strict=True)
        ],
        partition_spec=spec,
        schema=schema,
    )
