"""An independent reader: DuckDB (offline extension packages) through the REST catalog."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pytest

from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import rest_backend
from wflog_assets_testing.oracle import expected_rows_for_days, sorted_rows
from wflog_assets_testing.weed import WeedServer

pytestmark = pytest.mark.integration  # weed mini, PostgreSQL or Dagster processes

DAYS = [dt.date(2025, 12, 10), dt.date(2025, 12, 11)]


def test_duckdb_reads_the_same_rows_as_the_source(
    weed: WeedServer, duck: duckdb.DuckDBPyConnection, instance: dg.DagsterInstance
):
    backend = rest_backend(weed)
    settings = GeneratorSettings(rows_per_day=1_500, files_per_day=3, workflows_per_day=6)
    for day in DAYS:
        for key, data in generate_day(day, settings):
            backend.store.write(key, data)
        backend.run_day(day, instance)
    rows = duck.execute(f"SELECT * FROM lake.{backend.catalog.namespace}.workflow_logs").to_arrow_table()
    assert sorted_rows(rows.to_pylist()) == expected_rows_for_days(backend.store, DAYS)
    # and the P0 shape of query, answered by DuckDB from the same table
    heaviest, count = duck.execute(
        f"SELECT atlan_argo_workflow_name, count(*) c FROM lake.{backend.catalog.namespace}"
        ".workflow_logs GROUP BY 1 ORDER BY c DESC LIMIT 1"
    ).fetchone()
    expected = [
        r for r in expected_rows_for_days(backend.store, DAYS) if r["atlan_argo_workflow_name"] == heaviest
    ]
    assert count == len(expected)
