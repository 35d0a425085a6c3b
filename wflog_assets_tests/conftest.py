"""Fixtures: weed mini (real S3 + Iceberg REST catalog), and the two backends under test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import dagster as dg
import duckdb
import duckdb_extension_avro
import duckdb_extension_httpfs
import duckdb_extension_iceberg
import pytest

from wflog_assets_testing.backends import (  # noqa: F401 - re-exported for the tests
    START,
    Backend,
    embedded_backend,
    rest_backend,
    rest_env,
    weed_s3,
)
from wflog_assets_testing.dagster_stack import DagsterStack, running_stack
from wflog_assets_testing.weed import WeedServer, start_weed, stop_weed


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedServer]:
    server = start_weed(tmp_path_factory.mktemp("weed"))
    try:
        yield server
    finally:
        stop_weed(server)
    assert server.process.poll() is not None, "weed mini is still running"


@pytest.fixture(params=["embedded", pytest.param("rest", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "embedded":
        return embedded_backend(tmp_path)
    return rest_backend(request.getfixturevalue("weed"))


@pytest.fixture
def stack(weed: WeedServer, tmp_path: Path) -> Iterator[tuple[DagsterStack, Backend]]:
    """dagster-webserver + dagster-daemon on a fresh instance, pointed at weed mini through the
    environment (as in production), the sensor ticking every 5 s; and the same backend."""
    run = uuid.uuid4().hex[:10]
    env = {**os.environ, **rest_env(weed, run), "WFLOG_SENSOR_INTERVAL_S": "5"}
    with running_stack(tmp_path / "dagster_home", env) as dagster:
        yield dagster, rest_backend(weed, run)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def _extension(module: ModuleType, name: str) -> str:
    found = list(Path(module.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension"))
    assert len(found) == 1, found
    return str(found[0])


@pytest.fixture
def duck(weed: WeedServer) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    )
    # avro before iceberg, or iceberg tries to download avro
    for module, name in (
        (duckdb_extension_httpfs, "httpfs"),
        (duckdb_extension_avro, "avro"),
        (duckdb_extension_iceberg, "iceberg"),
    ):
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
    con.execute(
        f"ATTACH 's3://{weed.warehouse}' AS lake (TYPE ICEBERG, ENDPOINT '{weed.iceberg_uri}', SECRET rest)"
    )
    return con


# Tests that start servers or processes (weed mini, PostgreSQL, webserver + daemon, child runs)
# declare the `integration` marker themselves (`pytestmark` of a module, a test's decorator, the
# `rest` backend's param): `pytest -m "not integration"` is the fast loop. A test that reaches
# weed mini without declaring it is a collection error, not a slow surprise in the fast loop.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the integration tests first (a stable sort): the longest of them then overlap the rest
    # across the workers of `pytest -n` instead of being the last ones left
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)
    undeclared = [
        item.nodeid
        for item in items
        if "weed" in getattr(item, "fixturenames", ()) and item.get_closest_marker("integration") is None
    ]
    if undeclared:
        raise pytest.UsageError(f"these tests use weed mini but lack @pytest.mark.integration: {undeclared}")
