"""Sorted runs -> Iceberg data files, one per partition, in bounded memory (no Dagster).

pyiceberg 0.12 writes a partitioned `append` from one in-memory table (a `RecordBatchReader`
is refused for partitioned tables, apache/iceberg-python#2152) and needs ~0.9 KiB of memory per
row. Here `write_data_files` streams each partition's merged blocks (`runs.partition_blocks`)
into a rolling Parquet writer: one data file per partition unless it passes
`write.target-file-size-bytes`, row groups of `write.parquet.row-group-limit` rows, field ids,
partition values and column statistics as pyiceberg writes them (its own statistics code over
the Parquet footer).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.io import FileIO
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import TableProperties
from pyiceberg.table.metadata import TableMetadata

from wflog_assets.iceberg._compat import (
    FileFormatFactory,
    PartitionFieldValue,
    PartitionKey,
    Record,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    get_parquet_writer_kwargs,
    load_location_provider,
    parquet_path_to_id_mapping,
    property_as_int,
    pyarrow_to_schema,
    sanitize_column_names,
    schema_to_pyarrow,
    to_requested_schema,
)
from wflog_assets.iceberg.runs import PartitionValues, SortedRun, partition_blocks


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
