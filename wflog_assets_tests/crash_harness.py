"""Run one day's ingest job in this process and SIGKILL it at a chosen point.

    python -m wflog_assets_tests.crash_harness <kill-point> <day> <dagster-home>

Configuration comes from the environment, as for any run. The kill is a real SIGKILL of the
whole process (no exception handler, no cleanup), placed by wrapping the function at that point.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

KILL_POINTS = ("reading", "staged", "before_commit", "during_commit", "after_commit")
# between the quarantine's commit and the data's, and after both (a day with a bad file)
QUARANTINE_KILL_POINTS = ("after_quarantine", "after_commit")


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: Any, name: str, before: bool, when: Callable[..., bool] = lambda *a, **k: True):
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before and when(*args, **kwargs):
            _die()
        result = original(*args, **kwargs)
        if not before and when(*args, **kwargs):
            _die()
        return result

    setattr(owner, name, wrapper)


def install(point: str) -> None:
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.table import Transaction

    import wflog_assets.defs.assets as assets
    from wflog_assets.defs.resources import ArrowStagingIOManager
    from wflog_assets.source.stores import S3ObjectStore

    if point == "reading":  # the second file being read
        calls = iter(range(1000))
        _wrap(S3ObjectStore, "read", before=True, when=lambda *a, **k: next(calls) == 1)
    elif point == "staged":  # normalized batches staged, nothing committed
        _wrap(
            ArrowStagingIOManager,
            "handle_output",
            before=False,
            when=lambda self, ctx, obj: ctx.asset_key.path[-1] == "normalized_log_batches",
        )
    elif point == "before_commit":  # data files written, commit not sent
        _wrap(Transaction, "commit_transaction", before=True)
    elif point == "during_commit":  # the catalog accepted the commit, the client never heard
        _wrap(RestCatalog, "commit_table", before=False)
    elif point == "after_commit":  # committed, Dagster never recorded the materialization
        _wrap(assets, "commit_day", before=False)
    elif point == "after_quarantine":  # the quarantine committed, the data not yet
        _wrap(assets, "write_quarantine", before=False)
    else:
        raise SystemExit(f"unknown kill point {point!r}: one of {KILL_POINTS + QUARANTINE_KILL_POINTS}")


def main() -> None:
    point, day, home = sys.argv[1:4]
    install(point)
    from wflog_assets.cli import materialize_days

    materialize_days([day], Path(home))
    print("finished without being killed")


if __name__ == "__main__":
    main()
