"""An independent reader: DuckDB (offline extension packages) through the REST catalog."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import ModuleType

import dagster as dg
import duckdb
import duckdb_extension_avro
import duckdb_extension_httpfs
import duckdb_extension_iceberg
import pytest

from wflog_assets.generate import GeneratorSettings, generate_day
from wflog_assets_tests.conftest import rest_backend
from wflog_assets_tests.oracle import expected_rows_for_days, sorted_rows
from wflog_assets_tests.weed import WeedServer

DAYS = [dt.date(2025, 12, 10), dt.date(2025, 12, 11)]


def _extension(module: ModuleType, name: str) -> str:
    found = list(Path(module.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension"))
    assert len(found) == 1, found
    return str(found[0])


@pytest.fixture
def duck(weed: WeedServer) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"autoinstall_known_extensions": "false",
                                 "autoload_known_extensions": "false"})
    # avro before iceberg, or iceberg tries to download avro
    for module, name in ((duckdb_extension_httpfs, "httpfs"), (duckdb_extension_avro, "avro"),
                         (duckdb_extension_iceberg, "iceberg")):
        con.execute(f"LOAD '{_extension(module, name)}'")
    host = weed.s3_endpoint.removeprefix("http://")
    con.execute(
        f"CREATE SECRET s3 (TYPE S3, KEY_ID '{weed.access_key}', SECRET '{weed.secret_key}', "
        f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false, REGION '{weed.region}')"
    )
    con.execute(
        f"CREATE SECRET rest (TYPE ICEBERG, CLIENT_ID '{weed.access_key}', "
        f"CLIENT_SECRET '{weed.secret_key}', OAUTH2_SERVER_URI '{weed.iceberg_uri}/v1/oauth/tokens')"
    )
    con.execute(f"ATTACH 's3://{weed.warehouse}' AS lake (TYPE ICEBERG, ENDPOINT '{weed.iceberg_uri}', "
                "SECRET rest)")
    return con


def test_duckdb_reads_the_same_rows_as_the_source(weed: WeedServer, duck: duckdb.DuckDBPyConnection,
                                                   instance: dg.DagsterInstance):
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
        ".workflow_logs GROUP BY 1 ORDER BY c DESC LIMIT 1").fetchone()
    expected = [r for r in expected_rows_for_days(backend.store, DAYS)
                if r["atlan_argo_workflow_name"] == heaviest]
    assert count == len(expected)
