"""Records of what could not be taken from the source: whole files and single lines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileReject:
    """A manifest file that gave no rows: the key, its version, and why."""

    key: str
    etag: str
    reason: str


@dataclass(frozen=True)
class LineIssue:
    """A line (or the whole file, line None) that could not be taken, and why."""

    key: str
    line: int | None
    reason: str
