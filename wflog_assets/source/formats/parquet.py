"""Parquet chunk files (the writer until 2026): decoded and normalized a part at a time."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from wflog_assets.errors import SourceReadError
from wflog_assets.manifest import ManifestEntry
from wflog_assets.source.normalize import NormalizedFile, normalize_table

NAME = "parquet"


def read_parts(data: bytes, entry: ManifestEntry, part_rows: int) -> Iterator[NormalizedFile]:
    """The file normalized `part_rows` rows at a time, so a big file is never whole in memory
    as rows (only as its compressed bytes, downloaded once)."""
    try:
        batches = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=part_rows)
        first = True
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                if first:  # a file with no rows still says what it is (and may be rejected)
                    empty = pq.read_schema(io.BytesIO(data)).empty_table()
                    yield normalize_table(empty, entry.key, entry.etag)
                return
            first = False
            yield normalize_table(pa.Table.from_batches([batch]), entry.key, entry.etag)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceReadError(entry.key, f"not a readable Parquet file: {exc}") from exc
