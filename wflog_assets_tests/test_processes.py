"""Separate run processes against weed mini: concurrent days, and SIGKILL at every point."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from wflog_assets.day import day_prefix
from wflog_assets.quality.quarantine import QUARANTINE_SUFFIX, day_quarantine
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import Backend, rest_backend, rest_env
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows
from wflog_assets_testing.weed import WeedServer
from wflog_assets_tests.crash_harness import KILL_POINTS, QUARANTINE_KILL_POINTS

pytestmark = pytest.mark.integration  # weed mini, PostgreSQL or Dagster processes

SMALL = GeneratorSettings(rows_per_day=800, files_per_day=3, workflows_per_day=5)
BIN = Path(sys.executable).parent


def _setup(weed: WeedServer, days: list[dt.date]) -> tuple[Backend, dict[str, str]]:
    run = uuid.uuid4().hex[:10]
    backend = rest_backend(weed, run)
    for day in days:
        for key, data in generate_day(day, SMALL):
            backend.store.write(key, data)
    env = {**os.environ, **rest_env(weed, run)}
    return backend, env


def test_eight_days_by_four_concurrent_processes_land_exactly(weed: WeedServer, tmp_path: Path):
    days = [dt.date(2025, 12, 1) + dt.timedelta(days=i) for i in range(8)]
    backend, env = _setup(weed, days)
    backend.catalog.ensure_table()  # created once, as the first run in production would
    procs = [
        subprocess.Popen(
            [
                str(BIN / "wflog-assets"),
                "materialize",
                "--start",
                days[2 * i].isoformat(),
                "--days",
                "2",
                "--dagster-home",
                str(tmp_path / f"home-{i}"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(outputs)
    lines = [ln for out in outputs for ln in out.splitlines() if re.match(r"\d{4}-\d\d-\d\d \S+: ", ln)]
    assert sorted(ln[:10] for ln in lines) == [d.isoformat() for d in days]
    assert all(" appended " in ln for ln in lines), lines
    attempts = [int(re.search(r"attempts=(\d+)", ln).group(1)) for ln in lines]
    print(f"commit attempts per day: {attempts} (retries: {sum(attempts) - len(attempts)})")
    table = backend.table()
    assert table_rows(table) == expected_rows_for_days(backend.store, days)
    assert sorted(s.summary.get("wflog.day") for s in table.snapshots()) == [d.isoformat() for d in days]


def _kill_at(point: str, day: dt.date, home: Path, env: dict[str, str]) -> None:
    """Run the day in a child process SIGKILLed at `point` (crash_harness)."""
    killed = subprocess.run(
        [sys.executable, "-m", "wflog_assets_tests.crash_harness", point, day.isoformat(), str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_any_point_then_rerun_leaves_exact_rows(weed: WeedServer, tmp_path: Path, point: str):
    day = dt.date(2025, 12, 14)
    backend, env = _setup(weed, [day])
    home = tmp_path / "home"
    _kill_at(point, day, home, env)
    table = backend.catalog.ensure_table()
    committed = bool(table.snapshots())
    assert committed == (point in ("during_commit", "after_commit"))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        rerun = backend.run_day(day, instance)
    (mat,) = rerun.asset_materializations_for_node("workflow_logs")
    # a commit Dagster never heard of is recognised from the table, not written again
    assert mat.metadata["outcome"].value == ("unchanged" if committed else "appended")
    assert table_rows(backend.table()) == expected_rows_for_days(backend.store, [day])
    assert len(backend.table().snapshots()) == 1


@pytest.mark.parametrize("point", QUARANTINE_KILL_POINTS)
def test_sigkill_around_the_quarantine_commit_then_rerun_keeps_the_bad_files_record(
    weed: WeedServer, tmp_path: Path, point: str
):
    day = dt.date(2025, 12, 15)
    backend, env = _setup(weed, [day])
    expected = expected_rows_for_days(backend.store, [day])  # the good files' rows
    bad = f"{day_prefix(day)}chunk-garbage.parquet"
    backend.store.write(bad, b"PAR1 this is not a parquet file")
    home = tmp_path / "home"
    _kill_at(point, day, home, env)
    catalog = backend.catalog.load_catalog()
    quarantine = catalog.load_table(backend.catalog.identifier(QUARANTINE_SUFFIX))
    assert day_quarantine(quarantine, day.isoformat()).column("source_file").to_pylist() == [bad]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        rerun = backend.run_day(day, instance)
    (mat,) = rerun.asset_materializations_for_node("workflow_logs")
    assert mat.metadata["outcome"].value == ("unchanged" if point == "after_commit" else "appended")
    assert table_rows(backend.table()) == expected
    records = day_quarantine(quarantine.refresh(), day.isoformat())
    assert records.column("source_file").to_pylist() == [bad]
    assert "file:" in records.column("quarantine_reason")[0].as_py()
    checks = {e.check_name: e.passed for e in rerun.get_asset_check_evaluations()}
    assert checks["source_fully_ingested"] is False, checks
    assert checks["row_count_parity"], checks
