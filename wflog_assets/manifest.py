"""A day's source files as a manifest: keys, versions and the digest that identifies them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import pyarrow as pa

from wflog_assets.day import Day


@dataclass(frozen=True, order=True, slots=True)
class ManifestEntry:
    """One object of a day: its key relative to the source root, and what identifies its version."""

    key: str
    size: int
    etag: str
    last_modified: str
    format: str = "parquet"  # a name of `source.formats`


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
    def build(cls, day: str, entries: Iterable[ManifestEntry], ignored: Iterable[str] = ()) -> Manifest:
        return cls(day=day, entries=tuple(sorted(entries)), ignored=tuple(sorted(ignored)))

    @cached_property
    def digest(self) -> str:
        h = hashlib.sha256(f"wflog-manifest-v1\n{self.day}\n".encode())
        for e in self.entries:
            h.update(f"{e.key}\t{e.size}\t{e.etag}\n".encode())
        return h.hexdigest()

    @property
    def utc_day(self) -> Day:
        """The day as a value (its prefix and bounds)."""
        return Day.parse(self.day)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def versions(self) -> dict[str, str]:
        """key -> ETag, what decides whether a file changed."""
        return {e.key: e.etag for e in self.entries}

    def to_arrow(self) -> pa.Table:
        columns = {name: [getattr(e, name) for e in self.entries] for name in MANIFEST_SCHEMA.names}
        table = pa.Table.from_pydict(columns, schema=MANIFEST_SCHEMA)
        return table.replace_schema_metadata({"wflog.day": self.day})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Manifest:
        metadata = table.schema.metadata or {}
        day = metadata.get(b"wflog.day", b"").decode()
        columns = [table.column(name).to_pylist() for name in MANIFEST_SCHEMA.names]
        entries = tuple(map(ManifestEntry, *columns))
        if any(a.key >= b.key for a, b in pairwise(entries)):  # not as `to_arrow` wrote it
            entries = tuple(sorted(entries))
        return cls(day=day, entries=entries)
