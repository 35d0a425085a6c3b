"""The one optimistic-commit retry loop every committer of this project goes through.

An attempt loads the table afresh, plans against it, writes and commits; it returns its
result, or None when its commit lost the race (pyiceberg's `CommitFailedException`, or an
outcome the attempt could not confirm), and is then made again, after a jittered exponential
wait, from the table as it now is: never rebased.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table, TableProperties

from wflog_assets.errors import CommitRetriesExhaustedError

T = TypeVar("T")


def backoff(attempt: int, base_s: float) -> None:
    """Before a retry (attempt 2, 3, ...): jittered exponential wait from `base_s`."""
    if attempt > 1:
        time.sleep(base_s * 2 ** (attempt - 2) * (1 + random.random()))


def without_library_retries(table: Table) -> Table:
    """Make conflicts come back to the caller instead of being rebased by pyiceberg.

    pyiceberg re-applies a conflicting append on top of the new table state by itself
    (`commit.retry.*`); that would commit a plan made against an older state (two runs of the
    same day could both append). Only this in-memory copy of the properties changes.
    """
    properties = {**table.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    table.metadata = table.metadata.model_copy(update={"properties": properties})
    return table


def commit_with_retries(
    attempt: Callable[[int], T | None],
    what: str,
    max_attempts: int,
    base_backoff_s: float,
    give_up: Callable[[], None] = lambda: None,
    error: type[CommitRetriesExhaustedError] = CommitRetriesExhaustedError,
) -> T:
    """Run `attempt(1)`, `attempt(2)`, ... until one returns a result; `give_up` cleans up
    (e.g. deletes data files written for a plan that never landed) before `error` is raised."""
    last: Exception | None = None
    for number in range(1, max_attempts + 1):
        backoff(number, base_backoff_s)
        try:
            result = attempt(number)
        except CommitFailedException as exc:
            last = exc
            continue
        if result is not None:
            return result
    give_up()
    raise error(
        f"{what}: commit still conflicting after {max_attempts} attempts"
        + (f": {last}" if last is not None else "")
    )
