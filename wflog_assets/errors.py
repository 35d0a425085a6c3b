"""Every error this project raises on purpose, under one base class (no Dagster here).

Catch `WflogError` to handle all of them; each subclass says what went wrong and, where there
is one, what to do about it. Errors of the libraries underneath (network, pyarrow) propagate
as they are unless a module turns them into one of these with the key or table they concern.
"""

from __future__ import annotations


class WflogError(Exception):
    """Base class of the project's own errors."""


class SettingError(WflogError, ValueError):
    """An environment variable's value the project cannot use; the message says what to set."""


class SourceReadError(WflogError):
    """A source object could not be read as a chunk file."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class NormalizationError(WflogError, ValueError):
    """A source file cannot be mapped to the target schema."""

    def __init__(self, key: str, column: str, reason: str) -> None:
        super().__init__(f"{key}: column {column!r}: {reason}")
        self.key = key
        self.column = column
        self.reason = reason


class RunFormatError(WflogError, ValueError):
    """A spilled run file is not one this project wrote (no partition index)."""


class SourceListingError(WflogError):
    """A day's listing misses far more of the files the table holds than a source loses by
    itself (a wrong or empty source root, an expired prefix): nothing was committed."""

    def __init__(
        self, day: str, listed: int, committed: int, gone: tuple[str, ...], max_fraction: float
    ) -> None:
        self.day, self.listed, self.committed, self.gone = day, listed, committed, gone
        super().__init__(
            f"{day}: the source listing finds {listed} file(s), but {len(gone)} of the "
            f"{committed} file(s) the table holds for the day are not in it (more than "
            f"{max_fraction:.0%}), e.g. {gone[0]!r}: nothing was committed. Check that the source "
            "root names the folder right above year=YYYY; if those files really are gone, run the "
            "day again with max_vanished_fraction: 1.0 (their rows stay in the table unless "
            "vanished_files is 'delete')."
        )


class TableLayoutError(WflogError):
    """An existing table does not have the schema, partition spec or sort order this code writes."""


class CommitRetriesExhaustedError(WflogError):
    """Concurrent commits kept conflicting with ours beyond the retry budget."""


class CompactionConflictError(CommitRetriesExhaustedError):
    """Concurrent commits kept touching the month being compacted beyond the retry budget."""


class CatalogUnavailableError(WflogError):
    """The Iceberg catalog cannot be reached; nothing was committed."""


class QueryError(WflogError, ValueError):
    """A query asked for something the table cannot answer (a bad limit, an unknown column)."""


class ExportFormatError(WflogError, ValueError):
    """The export is not a ClickHouse CSV export with the expected header."""
