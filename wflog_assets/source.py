"""Listing a day's chunk files and reading them, from S3 or a local directory (no Dagster here)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from wflog_assets.jsonlines import read_json_lines
from wflog_assets.normalize import NormalizationError, NormalizedFile, normalize_table
from wflog_assets.phases import PhaseTimes

PARQUET = "parquet"
JSON_LINES = "jsonl.gz"
# What the writers produce: Parquet chunks (until 2026) and gzip JSON lines (application-sdk 3.52+).
FORMATS_BY_SUFFIX: dict[str, str] = {".parquet": PARQUET, ".json.gz": JSON_LINES}


class SourceReadError(RuntimeError):
    """A source object could not be read as a chunk file."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def day_prefix(day: dt.date) -> str:
    """The source folder of one day, relative to the source root."""
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


@dataclass(frozen=True, order=True)
class ManifestEntry:
    """One object of a day: its key relative to the source root, and what identifies its version."""

    key: str
    size: int
    etag: str
    last_modified: str
    format: str = PARQUET


MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("last_modified", pa.string()),
        ("format", pa.string()),
    ]
)


@dataclass(frozen=True)
class Manifest:
    """The files of one day, sorted by key. Its digest identifies the day's content."""

    day: str
    entries: tuple[ManifestEntry, ...]
    # Objects under the day that are not chunk files (`_SUCCESS`, folder markers, ...): reported,
    # not read, and not part of the digest.
    ignored: tuple[str, ...] = ()

    @classmethod
    def build(cls, day: str, entries: Iterable[ManifestEntry],
              ignored: Iterable[str] = ()) -> Manifest:
        return cls(day=day, entries=tuple(sorted(entries)), ignored=tuple(sorted(ignored)))

    @property
    def digest(self) -> str:
        h = hashlib.sha256(f"wflog-manifest-v1\n{self.day}\n".encode())
        for e in self.entries:
            h.update(f"{e.key}\t{e.size}\t{e.etag}\n".encode())
        return h.hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def versions(self) -> dict[str, str]:
        """key -> ETag, what decides whether a file changed."""
        return {e.key: e.etag for e in self.entries}

    def to_arrow(self) -> pa.Table:
        rows = [asdict(e) for e in self.entries]
        table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
        return table.replace_schema_metadata({"wflog.day": self.day})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Manifest:
        metadata = table.schema.metadata or {}
        day = metadata.get(b"wflog.day", b"").decode()
        entries = (ManifestEntry(**row) for row in table.to_pylist())
        return cls.build(day, entries)


class ObjectStore(Protocol):
    """What the pipeline needs of a source: list a prefix, read an object."""

    def list(self, prefix: str) -> Iterator[ManifestEntry]: ...

    def list_folders(self, prefix: str) -> list[str]:
        """Names of the folders right below `prefix` (one delimiter level)."""
        ...

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None: ...


def format_of(key: str) -> str | None:
    """The chunk format of an object key, or None for anything else."""
    for suffix, fmt in FORMATS_BY_SUFFIX.items():
        if key.endswith(suffix):
            return fmt
    return None


def _months(since: dt.date, until: dt.date) -> Iterator[tuple[int, int]]:
    year, month = since.year, since.month
    while (year, month) <= (until.year, until.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def list_days(store: ObjectStore, since: dt.date, until: dt.date) -> list[dt.date]:
    """Days in [since, until] that have a `day=` folder: one delimiter listing per month."""
    days: list[dt.date] = []
    for year, month in _months(since, until):
        for name in store.list_folders(f"year={year:04d}/month={month:02d}/"):
            if not name.startswith("day="):
                continue
            try:
                day = dt.date(year, month, int(name.removeprefix("day=")))
            except ValueError:
                continue  # not a calendar day: not ours to ingest
            if since <= day <= until:
                days.append(day)
    return days


def list_day(store: ObjectStore, day: dt.date) -> Manifest:
    """All chunk files of a day (both formats), including any `hour=` level below it."""
    entries: list[ManifestEntry] = []
    ignored: list[str] = []
    for entry in store.list(day_prefix(day)):
        fmt = format_of(entry.key)
        if fmt is None:
            if not entry.key.endswith(".tmp"):
                ignored.append(entry.key)
            continue
        entries.append(replace(entry, format=fmt))
    return Manifest.build(day.isoformat(), entries, ignored)


class LocalObjectStore:
    """A directory laid out like the bucket. The ETag stand-in is size + modification time."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def list(self, prefix: str) -> Iterator[ManifestEntry]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            st = path.stat()
            modified = dt.datetime.fromtimestamp(st.st_mtime, tz=dt.UTC).isoformat()
            yield ManifestEntry(
                key=path.relative_to(self.root).as_posix(),
                size=st.st_size,
                etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
                last_modified=modified,
            )

    def list_folders(self, prefix: str) -> list[str]:
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


class S3ObjectStore:
    """An S3 bucket and prefix, through a boto3 client (paginated listing)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def list(self, prefix: str) -> Iterator[ManifestEntry]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix):]
                yield ManifestEntry(
                    key=key,
                    size=int(obj["Size"]),
                    etag=str(obj.get("ETag", "")).strip('"'),
                    last_modified=obj["LastModified"].astimezone(dt.UTC).isoformat(),
                )

    def list_folders(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        names: list[str] = []
        full = self.prefix + prefix
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            names.extend(p["Prefix"][len(full):].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(names)

    def read(self, key: str) -> bytes:
        response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        return response["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)


@dataclass(frozen=True)
class FileReject:
    """A manifest file that gave no rows: the key, its version, and why."""

    key: str
    etag: str
    reason: str


@dataclass
class DayRead:
    """What reading a manifest gave: normalized files, and the files that could not be read."""

    files: list[NormalizedFile]
    rejected: list[FileReject]


def read_chunk(store: ObjectStore, entry: ManifestEntry) -> NormalizedFile:
    """Read one chunk file (either format) and normalize it.

    Raises `SourceReadError` or `NormalizationError` for a file that is not a usable chunk;
    errors of the store itself (network, permissions) propagate and fail the run.
    """
    if entry.size == 0:
        raise SourceReadError(entry.key, "empty object (0 bytes)")
    data = store.read(entry.key)
    if entry.format == JSON_LINES:
        parsed = read_json_lines(data, entry.key)
        normalized = normalize_table(parsed.table, entry.key, entry.etag)
        normalized.issues = parsed.issues
        normalized.reader = parsed.path
        return normalized
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceReadError(entry.key, f"not a readable Parquet file: {exc}") from exc
    return normalize_table(table, entry.key, entry.etag)


class TimedStore:
    """An object store whose reads are timed and counted as the `fetch` phase."""

    def __init__(self, store: ObjectStore, times: PhaseTimes) -> None:
        self._store, self._times = store, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read(self, key: str) -> bytes:
        started = time.perf_counter()
        data = self._store.read(key)
        self._times.add("fetch", time.perf_counter() - started, len(data))
        return data


def read_chunk_parts(store: ObjectStore, entry: ManifestEntry,
                     part_rows: int) -> Iterator[NormalizedFile]:
    """A chunk file normalized `part_rows` rows at a time (Parquet), so a big file is never
    whole in memory as rows (only as its compressed bytes, downloaded once).

    JSON lines files are parsed whole (one part). Raises like `read_chunk`, possibly after
    some parts were yielded (the caller must then drop those).
    """
    if entry.format == JSON_LINES:
        yield read_chunk(store, entry)
        return
    if entry.size == 0:
        raise SourceReadError(entry.key, "empty object (0 bytes)")
    data = store.read(entry.key)
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


def file_reject(entry: ManifestEntry, exc: SourceReadError | NormalizationError) -> FileReject:
    """The record of a file that gave no rows, with the reason its error gives."""
    if isinstance(exc, SourceReadError):
        return FileReject(entry.key, entry.etag, exc.reason)
    return FileReject(entry.key, entry.etag, f"column {exc.column!r}: {exc.reason}")


def _read_or_reject(store: ObjectStore, entry: ManifestEntry,
                    reader: Callable[[ObjectStore, ManifestEntry], NormalizedFile]
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
    return DayRead(files=[r for r in results if isinstance(r, NormalizedFile)],
                   rejected=[r for r in results if isinstance(r, FileReject)])
