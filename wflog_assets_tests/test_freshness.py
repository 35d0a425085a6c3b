"""The current day stays fresh: files land continuously while the daemon runs the sensor, and
each is queryable within two minutes, with no pile-up of runs for the day and exact rows.

A reduced version of `bench/bench_stream.py`'s arrival simulation (the bench prints the full
figures): weed mini (S3 + REST catalog), dagster-webserver and dagster-daemon as processes,
the sensor started over GraphQL with a 5 s interval, tiny writer files landing at a steady rate.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wflog_assets.defs.sensors import SENSOR_NAME
from wflog_assets.iceberg.commit import day_filter
from wflog_assets.iceberg.schema import SOURCE_FILE
from wflog_assets.tools.generate import gzip_lines, writer_flushes
from wflog_assets_testing.backends import Backend, rest_backend, rest_env
from wflog_assets_testing.dagster_stack import DagsterStack, until
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows
from wflog_assets_testing.weed import WeedServer

FILES = 45
EVERY_S = 2.0  # one file every 2 s: 90 s of arrivals
DAGSTER_YAML = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 4
telemetry:
  enabled: false
"""


@pytest.fixture
def stack(weed: WeedServer, tmp_path: Path) -> Iterator[tuple[DagsterStack, Backend]]:
    run = uuid.uuid4().hex[:10]
    backend = rest_backend(weed, run)
    env = {**os.environ, **rest_env(weed, run), "WFLOG_SENSOR_INTERVAL_S": "5"}
    dagster = DagsterStack(tmp_path / "dagster_home", env, DAGSTER_YAML)
    try:
        dagster.wait_ready()
        yield dagster, backend
    finally:
        dagster.stop()


def _queryable(backend: Backend, day: dt.date) -> set[str]:
    catalog = backend.catalog.load_catalog()
    if not catalog.table_exists(backend.catalog.identifier()):
        return set()
    scan = backend.table().scan(row_filter=day_filter(day), selected_fields=(SOURCE_FILE,))
    return set(scan.to_arrow().column(SOURCE_FILE).to_pylist())


def test_files_landing_all_day_are_queryable_within_two_minutes_without_pile_up(
        stack: tuple[DagsterStack, Backend]):
    dagster, backend = stack
    today = dt.datetime.now(dt.UTC).date()
    started = dagster.query(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
             __typename ... on Sensor { sensorState { status } } } }""",
        {"s": {"repositoryLocationName": dagster.location, "repositoryName": "__repository__",
               "sensorName": SENSOR_NAME}},
    )["startSensor"]
    assert started["sensorState"]["status"] == "RUNNING", started
    landed: dict[str, float] = {}

    def writer() -> None:
        for key, lines in writer_flushes(today, FILES, seed=int(time.time())):
            backend.store.write(key, gzip_lines(lines))
            landed[key] = time.monotonic()
            time.sleep(EVERY_S)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    seen: dict[str, float] = {}

    def all_seen() -> bool:
        now = time.monotonic()
        for key in _queryable(backend, today) - set(seen):
            seen[key] = now
        return not thread.is_alive() and set(landed) <= set(seen)

    until("every landed file in the table", all_seen, timeout_s=FILES * EVERY_S + 240, every_s=1)
    latencies = sorted(seen[k] - landed[k] for k in landed)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    assert p95 <= 120, latencies
    runs = dagster.query(
        """query($day: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $day}]}) {
             ... on Runs { results { status startTime endTime } } } }""",
        {"day": today.isoformat()})["runsOrError"]["results"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    spans = sorted((r["startTime"], r["endTime"]) for r in runs)
    # never two runs of the day at once: each started after the one before had ended
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    assert len(runs) < FILES  # runs take the files that arrived meanwhile together
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [today])
