"""Run workers forked from a warm template (`PreloadedRunLauncher`): the runs the daemon launches
come out as exact as in-process ones, can be canceled, and import the project's code afresh."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from wflog_assets.defs import launcher
from wflog_assets.defs.launcher import WORKER_TAG, worker_alive
from wflog_assets.iceberg.catalogs import read_table, sqlite_properties
from wflog_assets.source.stores import LocalObjectStore
from wflog_assets.tools.generate import gzip_lines, writer_flushes
from wflog_assets_testing.launch import instance_with_launcher, launch_day, run_worker_pid, wait_for
from wflog_assets_testing.oracle import expected_rows_for_days, table_rows

DAY = dt.date(2026, 11, 2)


@pytest.fixture
def day_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalObjectStore, Path]:
    """A writer's day of 3,000 tiny files, and the environment naming it (the worker's)."""
    store = LocalObjectStore(tmp_path / "source")
    with ThreadPoolExecutor(max_workers=8) as pool:
        for key, lines in writer_flushes(DAY, 3000, seed=11):
            pool.submit(store.write, key, gzip_lines(lines))
    data = tmp_path / "data"
    monkeypatch.setenv("WFLOG_DATA_DIR", str(data))
    monkeypatch.setenv("WFLOG_SOURCE_DIR", str(store.root))
    monkeypatch.setenv("WFLOG_START_DATE", "2026-11-01")
    return store, data


def _step_started(instance: dg.DagsterInstance, run_id: str, step: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return any(r.event_log_entry.step_key == step for r in records)


def _table_rows(data: Path) -> list[dict[str, object]]:
    table = read_table(sqlite_properties(str(data)), "workflow_logs.workflow_logs")
    assert table is not None
    return table_rows(table)


def test_launched_runs_are_forked_from_one_template_exact_and_survive_its_death(
    day_source: tuple[LocalObjectStore, Path], tmp_path: Path
):
    store, data = day_source
    instance = instance_with_launcher(tmp_path / "home", "PreloadedRunLauncher")
    pids = []
    for _ in range(2):  # the day, then the same day unchanged
        run_id = launch_day(instance, DAY.isoformat())
        run = wait_for(instance, run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        pid = int(run.tags[WORKER_TAG].split("@")[0])
        assert run_worker_pid(instance, run_id) == pid  # the run ran in the forked worker
        pids.append(pid)
    template = launcher._TEMPLATE._process
    assert template is not None and template.poll() is None  # one template, still there
    assert pids[0] != pids[1] and template.pid not in pids
    assert _table_rows(data) == expected_rows_for_days(store, [DAY])
    template.kill()  # a template that died: the next launch starts another
    template.wait()
    assert wait_for(instance, launch_day(instance, DAY.isoformat())).status == dg.DagsterRunStatus.SUCCESS
    renewed = launcher._TEMPLATE._process
    assert renewed is not None and renewed.pid != template.pid and renewed.poll() is None


def test_a_canceled_run_ends_canceled_and_the_day_is_exact_after_the_next_run(
    day_source: tuple[LocalObjectStore, Path], tmp_path: Path
):
    store, data = day_source
    instance = instance_with_launcher(tmp_path / "home", "PreloadedRunLauncher")
    run_id = launch_day(instance, DAY.isoformat())
    deadline = time.monotonic() + 60
    while not _step_started(instance, run_id, "normalized_log_batches") and time.monotonic() < deadline:
        time.sleep(0.01)  # reading the day's 3,000 files: a second or two
    assert instance.run_launcher.terminate(run_id)
    run = wait_for(instance, run_id, timeout_s=60)
    assert run.status == dg.DagsterRunStatus.CANCELED
    pid, launched = run.tags[WORKER_TAG].split("@")
    time.sleep(1)
    assert not worker_alive(int(pid), float(launched))  # the worker is gone, not left running
    assert wait_for(instance, launch_day(instance, DAY.isoformat())).status == dg.DagsterRunStatus.SUCCESS
    assert _table_rows(data) == expected_rows_for_days(store, [DAY])


def test_the_template_holds_no_module_of_the_project_but_its_process_settings():
    code = (
        "import importlib, sys\n"
        "from wflog_assets.defs import warm\n"
        "for name in warm.PRELOAD: importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('wflog_assets'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # every run imports the definitions, assets and readers afresh: edited code takes effect
    assert out.stdout.split() == [
        "wflog_assets",
        "wflog_assets.allocator",
        "wflog_assets.defs",
        "wflog_assets.defs.warm",
        "wflog_assets.heap",
    ]
