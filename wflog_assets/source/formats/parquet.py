"""Parquet chunk files (the writer until 2026): decoded and normalized a part at a time."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from wflog_assets.errors import NormalizationError, SourceReadError
from wflog_assets.manifest import ManifestEntry
from wflog_assets.source.normalize import NormalizedFile, normalize_table

NAME = "parquet"


def read_parts(data: bytes, entry: ManifestEntry, part_rows: int) -> Iterator[NormalizedFile]:
    """The file normalized `part_rows` rows at a time, so a big file is never whole in memory
    as rows (only as its compressed bytes, downloaded once). A file Parquet cannot decode is
    `SourceReadError`; values the table cannot take are `NormalizationError` (with the column)."""
    try:
        batches = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=part_rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceReadError(entry.key, f"not a readable Parquet file: {exc}") from exc
    first = True
    while True:
        try:
            batch = next(batches, None)
            # a file with no rows still says what it is (and may be rejected)
            table = pq.read_schema(io.BytesIO(data)).empty_table() if batch is None and first else None
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceReadError(entry.key, f"not a readable Parquet file: {exc}") from exc
        if batch is None:
            if table is not None:
                yield _normalized(table, entry)
            return
        first = False
        yield _normalized(pa.Table.from_batches([batch]), entry)


def _normalized(table: pa.Table, entry: ManifestEntry) -> NormalizedFile:
    names = table.column_names
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # which of them would be the value? the file is rejected, not the day
        raise NormalizationError(entry.key, twice[0], f"columns named more than once: {twice}")
    try:
        return normalize_table(table, entry.key, entry.etag)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise NormalizationError(entry.key, "*", f"a value the table cannot take: {exc}") from exc
