"""Object stores a source can live in: a local directory laid out like the bucket, or S3."""

from __future__ import annotations

import builtins
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from wflog_assets.errors import SourceReadError
from wflog_assets.manifest import ManifestEntry
from wflog_assets.phases import PhaseTimes

GONE = "the object is gone (deleted or replaced since the day was listed): re-run the day"
CHANGED = "the object changed since the day was listed (another ETag): re-run the day"


def local_etag(size: int, mtime_ns: int) -> str:
    """A local file's ETag stand-in: its size and modification time."""
    return f"{size:x}-{mtime_ns:x}"


class ObjectStore(Protocol):
    """What the pipeline needs of a source: list a prefix, read an object."""

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ManifestEntry]:
        """Objects under `prefix` in key order (only keys after `start_after`, if given)."""
        ...

    def list_folders(self, prefix: str) -> builtins.list[str]:
        """Names of the folders right below `prefix` (one delimiter level)."""
        ...

    def read(self, key: str, etag: str | None = None) -> bytes:
        """The object's bytes; `SourceReadError` if it is gone (deleted since the listing), or
        if `etag` is given and the object read is another version (replaced since)."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

    def move(self, source: str, target: str) -> None:
        """Put the object `source` at `target` (replacing it) and remove `source`."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object (nothing if it is not there)."""
        ...


class LocalObjectStore:
    """A directory laid out like the bucket. The ETag stand-in is size + modification time."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ManifestEntry]:
        base = self.root / prefix
        if not base.is_dir():
            return
        files: list[tuple[str, os.stat_result]] = []
        folders = [(str(base), prefix.rstrip("/"))]
        while folders:  # os.scandir: one stat per file (pathlib's rglob + is_file + stat: three)
            path, key = folders.pop()
            with os.scandir(path) as entries:
                for entry in entries:
                    name = f"{key}/{entry.name}" if key else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        folders.append((entry.path, name))
                    elif entry.is_file() and (start_after is None or name > start_after):
                        files.append((name, entry.stat()))
                    elif entry.is_dir() and (start_after is None or name > start_after):
                        # a symlinked folder is not followed: listed as a folder marker, so
                        # that the day reports it instead of skipping it unseen
                        files.append((f"{name}/", entry.stat(follow_symlinks=False)))
        for key, st in sorted(files, key=lambda f: f[0]):
            modified = dt.datetime.fromtimestamp(st.st_mtime, tz=dt.UTC).isoformat()
            yield ManifestEntry(
                key=key, size=st.st_size, etag=local_etag(st.st_size, st.st_mtime_ns), last_modified=modified
            )

    def list_folders(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def read(self, key: str, etag: str | None = None) -> bytes:
        try:
            with open(self.root / key, "rb") as f:
                st = os.fstat(f.fileno())  # the version opened, whatever replaces the path later
                data = f.read()
        except FileNotFoundError as exc:
            raise SourceReadError(key, GONE) from exc
        if etag is not None and local_etag(st.st_size, st.st_mtime_ns) != etag:
            raise SourceReadError(key, CHANGED)
        return data

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def move(self, source: str, target: str) -> None:
        path = self.root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        (self.root / source).replace(path)  # atomic within one filesystem

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class S3ObjectStore:
    """An S3 bucket and prefix, through a boto3 client (paginated listing)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ManifestEntry]:
        paginator = self.client.get_paginator("list_objects_v2")
        after = {"StartAfter": self.prefix + start_after} if start_after is not None else {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, **after):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix) :]
                yield ManifestEntry(
                    key=key,
                    size=int(obj["Size"]),
                    etag=str(obj.get("ETag", "")).strip('"'),
                    last_modified=obj["LastModified"].astimezone(dt.UTC).isoformat(),
                )

    def list_folders(self, prefix: str) -> builtins.list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        names: builtins.list[str] = []
        full = self.prefix + prefix
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            names.extend(p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(names)

    def read(self, key: str, etag: str | None = None) -> bytes:
        from botocore.exceptions import ClientError  # here: listing a local source needs no boto

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise SourceReadError(key, GONE) from exc
            raise
        if etag is not None and str(response.get("ETag", "")).strip('"') != etag:
            response["Body"].close()
            raise SourceReadError(key, CHANGED)
        body: bytes = response["Body"].read()
        return body

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def move(self, source: str, target: str) -> None:
        copy = {"Bucket": self.bucket, "Key": self.prefix + source}
        self.client.copy_object(Bucket=self.bucket, Key=self.prefix + target, CopySource=copy)
        self.delete(source)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


class TimedStore:
    """An object store whose reads are timed and counted as the `fetch` phase."""

    def __init__(self, store: ObjectStore, times: PhaseTimes) -> None:
        self._store, self._times = store, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read(self, key: str, etag: str | None = None) -> bytes:
        started = time.perf_counter()
        data = self._store.read(key, etag)
        self._times.add("fetch", time.perf_counter() - started, len(data))
        return data
