"""Faults (flaky or slow S3, catalog down, expired token) and secrets, against weed mini."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest

from wflog_assets.definitions import INGEST_JOB, build_definitions
from wflog_assets.defs.resources import RestCatalogResource, S3LogSource, SourceS3Resource
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import START, Backend, rest_backend, rest_env
from wflog_assets_testing.faults import FlakyProxy
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows
from wflog_assets_testing.weed import WeedServer, free_ports

pytestmark = pytest.mark.integration  # weed mini, PostgreSQL or Dagster processes

DAY = dt.date(2025, 12, 9)
SMALL = GeneratorSettings(rows_per_day=600, files_per_day=6, workflows_per_day=4)
BIN = Path(sys.executable).parent


def _write(backend: Backend) -> None:
    for key, data in generate_day(DAY, SMALL):
        backend.store.write(key, data)


def _run(resources: dict[str, object], instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = build_definitions(resources, START).resolve_job_def(INGEST_JOB)
    return job.execute_in_process(partition_key=DAY.isoformat(), instance=instance, raise_on_error=False)


def test_flaky_s3_resets_503s_and_slow_answers_are_retried_and_the_day_lands_exactly(
    weed: WeedServer, instance: dg.DagsterInstance
):
    backend = rest_backend(weed)
    _write(backend)
    s3_port = urlparse(weed.s3_endpoint).port
    assert s3_port is not None
    # connections in turn: reset, answered 503, forwarded after 0.5 s, forwarded
    proxy = FlakyProxy(s3_port, lambda n: ("reset", "503", "slow", "ok")[n % 4], delay_s=0.5)
    try:
        source: S3LogSource = backend.resources["log_source"]
        flaky = SourceS3Resource(
            endpoint_url=proxy.endpoint,
            region_name=weed.region,
            path_style=True,
            aws_access_key_id=weed.access_key,
            aws_secret_access_key=weed.secret_key,
            max_attempts=6,
        )
        resources = {
            **backend.resources,
            "log_source": S3LogSource(s3=flaky, bucket=source.bucket, prefix=source.prefix),
        }
        result = _run(resources, instance)
    finally:
        proxy.close()
    assert result.success
    assert all(proxy.counts.get(kind, 0) >= 1 for kind in ("reset", "503", "slow")), proxy.counts
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY])


def test_catalog_down_fails_clearly_writes_nothing_and_a_rerun_lands_exactly(
    weed: WeedServer, instance: dg.DagsterInstance
):
    backend = rest_backend(weed)
    _write(backend)
    (dead_port,) = free_ports(1)
    good: RestCatalogResource = backend.resources["iceberg"]
    down = RestCatalogResource(**{**good.model_dump(), "uri": f"http://127.0.0.1:{dead_port}"})
    result = _run({**backend.resources, "iceberg": down}, instance)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    # the run plans against the table before reading anything: it stops there
    assert failure.step_key == "normalized_log_batches"
    message = str(failure.event_specific_data.error.to_string())
    assert "CatalogUnavailableError" in message
    assert "nothing was committed" in message
    assert f"the Iceberg catalog at http://127.0.0.1:{dead_port} cannot be reached" in message
    assert weed.secret_key not in message
    # nothing was written: the real catalog has no table yet
    assert not good.load_catalog().table_exists(good.identifier())
    assert _run(backend.resources, instance).success
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY])


def test_an_expired_catalog_token_is_refreshed(weed: WeedServer):
    backend = rest_backend(weed)
    backend.catalog.ensure_table()
    catalog = backend.catalog.load_catalog()
    manager = catalog._session.auth.auth_manager  # type: ignore[union-attr]
    manager._token = "expired-" + uuid.uuid4().hex  # what a token past its lifetime becomes
    table = catalog.load_table(backend.catalog.identifier())  # 401 -> refresh -> retried
    assert table.schema().find_field("timestamp")
    assert not manager._token.startswith("expired-")


def _everything_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_secrets_appear_nowhere_in_logs_metadata_or_instance_storage(weed: WeedServer, tmp_path: Path):
    run = uuid.uuid4().hex[:10]
    backend = rest_backend(weed, run)
    _write(backend)
    home = tmp_path / "dagster_home"
    env = {**os.environ, **rest_env(weed, run), "DAGSTER_HOME": str(home)}
    ok = subprocess.run(
        [str(BIN / "wflog-assets"), "materialize", "--start", DAY.isoformat(), "--dagster-home", str(home)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr.decode()[-3000:]
    (dead_port,) = free_ports(1)
    failing = subprocess.run(
        [str(BIN / "wflog-assets"), "materialize", "--start", DAY.isoformat(), "--dagster-home", str(home)],
        env={**env, "WFLOG_CATALOG_URI": f"http://127.0.0.1:{dead_port}"},
        capture_output=True,
        timeout=300,
    )
    assert failing.returncode != 0
    produced = ok.stdout + ok.stderr + failing.stdout + failing.stderr + _everything_under(home)
    assert b"CatalogUnavailableError" in produced  # the failure was recorded
    with dg.DagsterInstance.from_config(str(home)) as instance:
        counts = {
            key: instance.fetch_materializations(dg.AssetKey(key), limit=100).records
            for key in ("raw_log_chunks", "normalized_log_batches", "workflow_logs")
        }
        # both runs listed the day; only the first reached the catalog (the second stopped
        # when it planned what to read)
        assert {k: len(v) for k, v in counts.items()} == {
            "raw_log_chunks": 2,
            "normalized_log_batches": 1,
            "workflow_logs": 1,
        }
        records = [r for v in counts.values() for r in v]
        produced += repr([r.event_log_entry for r in records]).encode()
    for secret in (weed.secret_key, f"{weed.access_key}:{weed.secret_key}"):
        assert secret.encode() not in produced, secret
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [DAY])


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def test_the_documented_quarantine_snippet_works_outside_a_run_on_the_rest_catalog(
    weed: WeedServer, monkeypatch: pytest.MonkeyPatch
):
    """Outside a run a resource still holds its `dg.EnvVar`s: the credential must be read from
    the environment, not sent as the variable's name (`invalid_client` before)."""
    import re

    run = uuid.uuid4().hex[:10]
    for name, value in rest_env(weed, run).items():
        monkeypatch.setenv(name, value)
    backend = rest_backend(weed, run)
    day = dt.date(2025, 12, 5)
    good = {
        "timestamp": dt.datetime(2025, 12, 5, 1, tzinfo=dt.UTC).timestamp(),
        "extra": {"workflow_id": "w"},
    }
    lines = [json.dumps(good), json.dumps({**good, "extra": {}})]  # the second has no workflow
    backend.store.write("year=2025/month=12/day=05/x.json.gz", gzip.compress("\n".join(lines).encode()))
    with dg.DagsterInstance.ephemeral() as instance:
        backend.run_day(day, instance)
    doc = (Path(__file__).parent.parent / "docs" / "data-contract.md").read_text()
    (snippet,) = re.findall(r"```python\n(from wflog_assets.defs import settings\n.*?)```", doc, re.S)
    scope: dict[str, object] = {}
    exec(compile(snippet + "\nrows = " + snippet.strip().splitlines()[-1], "snippet", "exec"), scope)
    rows = scope["rows"]
    assert [r["quarantine_reason"] for r in rows.to_pylist()] == ["no workflow name"]
