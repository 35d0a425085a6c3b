"""Files landing at a steady rate, and when each became queryable (freshness, not speed)."""

from __future__ import annotations

import datetime as dt
import threading
import time

from wflog_assets.day import Day
from wflog_assets.iceberg.plan import day_filter
from wflog_assets.iceberg.schema import SOURCE_FILE
from wflog_assets.tools.generate import gzip_lines, writer_flushes
from wflog_assets_testing.backends import Backend


def queryable(backend: Backend, day: dt.date) -> set[str]:
    """The source files whose rows the table holds for the day."""
    catalog = backend.catalog.load_catalog()
    if not catalog.table_exists(backend.catalog.identifier()):
        return set()
    scan = backend.table().scan(row_filter=day_filter(Day(day)), selected_fields=(SOURCE_FILE,))
    return set(scan.to_arrow().column(SOURCE_FILE).to_pylist())


def land_and_watch(
    backend: Backend, day: dt.date, files: int, every_s: float, timeout_s: float, seed: int = 0
) -> list[float]:
    """Write the writer's files for `day` one every `every_s` seconds while watching the table;
    return each file's seconds from landing to queryable, in landing order."""
    landed: dict[str, float] = {}

    def writer() -> None:
        for key, lines in writer_flushes(day, files, seed=seed or int(time.time())):
            backend.store.write(key, gzip_lines(lines))
            landed[key] = time.monotonic()
            time.sleep(every_s)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    seen: dict[str, float] = {}
    deadline = time.monotonic() + files * every_s + timeout_s
    while thread.is_alive() or not set(landed) <= set(seen):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(set(landed) - set(seen))} of {len(landed)} files never became queryable"
            )
        now = time.monotonic()
        for key in queryable(backend, day) - set(seen):
            seen[key] = now
        time.sleep(1)
    return [seen[k] - landed[k] for k in landed]
