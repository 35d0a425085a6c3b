"""Reading a day's chunk files through the format registry, rejecting the unusable ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from wflog_assets.errors import NormalizationError, SourceReadError
from wflog_assets.manifest import Manifest, ManifestEntry
from wflog_assets.source.formats import format_named
from wflog_assets.source.normalize import NormalizedFile
from wflog_assets.source.rejects import FileReject
from wflog_assets.source.stores import ObjectStore

WHOLE_FILE = 1 << 62  # part_rows that makes a file one part


@dataclass
class DayRead:
    """What reading a manifest gave: normalized files, and the files that could not be read."""

    files: list[NormalizedFile]
    rejected: list[FileReject]


def read_chunk_parts(store: ObjectStore, entry: ManifestEntry, part_rows: int) -> Iterator[NormalizedFile]:
    """A chunk file normalized `part_rows` rows at a time (as its format allows).

    Raises `SourceReadError` or `NormalizationError` for a file that is not a usable chunk,
    possibly after some parts were yielded (the caller must then drop those); errors of the
    store itself (network, permissions) propagate and fail the run.
    """
    if entry.size == 0:
        raise SourceReadError(entry.key, "empty object (0 bytes)")
    data = store.read(entry.key, entry.etag)
    yield from format_named(entry.format).read_parts(data, entry, part_rows)


def read_chunk(store: ObjectStore, entry: ManifestEntry) -> NormalizedFile:
    """Read one chunk file (any format) and normalize it whole."""
    parts = list(read_chunk_parts(store, entry, WHOLE_FILE))
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return NormalizedFile(
        key=first.key,
        table=pa.concat_tables(p.table for p in parts),
        ignored_columns=sorted({c for p in parts for c in p.ignored_columns}),
        other_extra_keys=sorted({c for p in parts for c in p.other_extra_keys}),
        issues=[i for p in parts for i in p.issues],
        reader=first.reader,
    )


def file_reject(entry: ManifestEntry, exc: SourceReadError | NormalizationError) -> FileReject:
    """The record of a file that gave no rows, with the reason its error gives."""
    if isinstance(exc, SourceReadError):
        return FileReject(entry.key, entry.etag, exc.reason)
    return FileReject(entry.key, entry.etag, f"column {exc.column!r}: {exc.reason}")


def _read_or_reject(
    store: ObjectStore, entry: ManifestEntry, reader: Callable[[ObjectStore, ManifestEntry], NormalizedFile]
) -> NormalizedFile | FileReject:
    try:
        return reader(store, entry)
    except (SourceReadError, NormalizationError) as exc:
        return file_reject(entry, exc)


def read_manifest(
    store: ObjectStore,
    manifest: Manifest,
    max_workers: int = 8,
    reader: Callable[[ObjectStore, ManifestEntry], NormalizedFile] = read_chunk,
) -> DayRead:
    """Read and normalize every file of a manifest in parallel (Arrow releases the GIL).

    A file that is not a usable chunk is rejected (not read further) and the others go on.
    """
    if not manifest.entries:
        return DayRead(files=[], rejected=[])
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(manifest.entries)))) as pool:
        results = list(pool.map(lambda e: _read_or_reject(store, e, reader), manifest.entries))
    return DayRead(
        files=[r for r in results if isinstance(r, NormalizedFile)],
        rejected=[r for r in results if isinstance(r, FileReject)],
    )
