"""Through Dagster itself: dagster-webserver + dagster-daemon, a backfill launched over GraphQL
(the UI's path), and the sensor launching a run for a newly uploaded day."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from wflog_assets.definitions import TABLE_TAG
from wflog_assets.defs.sensors import DIGEST_TAG, SENSOR_NAME
from wflog_assets.tools.generate import GeneratorSettings, generate_day, generate_late_file
from wflog_assets_testing.backends import Backend
from wflog_assets_testing.dagster_stack import DagsterStack, until
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

pytestmark = pytest.mark.integration  # weed mini, PostgreSQL or Dagster processes

ASSETS = ["raw_log_chunks", "normalized_log_batches", "workflow_logs"]
SMALL = GeneratorSettings(rows_per_day=500, files_per_day=2, workflows_per_day=4)
DAYS = [dt.date(2025, 12, 1) + dt.timedelta(days=i) for i in range(3)]
NEW_DAY = dt.date(2025, 12, 4)


def _write(backend: Backend, day: dt.date) -> None:
    for key, data in generate_day(day, SMALL):
        backend.store.write(key, data)


def test_ui_backfill_then_sensor_run_for_a_new_day(stack: tuple[DagsterStack, Backend]):
    dagster, backend = stack
    for day in DAYS:
        _write(backend, day)

    backfill_id = dagster.launch_asset_backfill(ASSETS, [d.isoformat() for d in DAYS])
    dagster.wait_backfill(backfill_id, timeout_s=420)
    stats = dagster.query("{ assetNodes { assetKey { path } partitionStats { numMaterialized } } }")
    materialized = {
        n["assetKey"]["path"][-1]: n["partitionStats"]["numMaterialized"]
        for n in stats["assetNodes"]
        if n["assetKey"]["path"][-1] in ASSETS
    }
    assert materialized == dict.fromkeys(ASSETS, len(DAYS))
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, DAYS)

    # a late file, then `workflow_logs` alone materialized from the UI (a partial selection):
    # it lists and stages the day itself, so the late rows land
    late_key, late_data = generate_late_file(DAYS[0], SMALL, index=0, rows=40)
    backend.store.write(late_key, late_data)
    partial = dagster.launch_asset_backfill(["workflow_logs"], [DAYS[0].isoformat()])
    dagster.wait_backfill(partial, timeout_s=300)
    rows = table_rows(backend.table())
    assert sum(r["source_file"] == late_key for r in rows) == 40
    assert rows == expected_rows_for_days(backend.store, DAYS)

    dagster.start_sensor(SENSOR_NAME)
    _write(backend, NEW_DAY)

    def new_day_run() -> dict[str, Any] | None:
        runs = dagster.query(
            """query($day: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $day}]}) {
                 ... on Runs { results { status tags { key value } } } } }""",
            {"day": NEW_DAY.isoformat()},
        )["runsOrError"]["results"]
        assert all(r["status"] not in ("FAILURE", "CANCELED") for r in runs), runs
        return next((r for r in runs if r["status"] == "SUCCESS"), None)

    run = until("the sensor's run for the new day", new_day_run, timeout_s=300)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/sensor_name"] == SENSOR_NAME
    assert tags[TABLE_TAG] == backend.catalog.identifier()  # the run queue's per-table limit key
    assert DIGEST_TAG in tags
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [*DAYS, NEW_DAY])
