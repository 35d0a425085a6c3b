"""The current day stays fresh: files land continuously while the daemon runs the sensor, and
each is queryable within two minutes, with no pile-up of runs for the day and exact rows.

A reduced version of `bench/bench_stream.py`'s arrival simulation (the bench prints the full
figures): weed mini (S3 + REST catalog), dagster-webserver and dagster-daemon as processes,
the sensor started over GraphQL with a 5 s interval, tiny writer files landing at a steady rate.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from wflog_assets.defs.sensors import SENSOR_NAME
from wflog_assets_testing.arrivals import land_and_watch
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.dagster_stack import DagsterStack
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

pytestmark = pytest.mark.integration  # weed mini, PostgreSQL or Dagster processes

FILES = 30
EVERY_S = 1.0  # one file a second for 30 s, the sensor ticking every 5 s


def test_files_landing_all_day_are_queryable_within_two_minutes_without_pile_up(
    stack: tuple[DagsterStack, Backend],
):
    dagster, backend = stack
    today = dt.datetime.now(dt.UTC).date()
    dagster.start_sensor(SENSOR_NAME)
    latencies = sorted(land_and_watch(backend, today, FILES, EVERY_S, timeout_s=240))
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    assert p95 <= 120, latencies
    runs = dagster.settled_runs(today.isoformat())
    assert runs
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    spans = sorted((r["startTime"], r["endTime"]) for r in runs)
    # never two runs of the day at once: each started after the one before had ended
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    assert len(runs) < FILES  # runs take the files that arrived meanwhile together
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [today])
