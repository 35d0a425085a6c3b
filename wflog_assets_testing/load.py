"""The production shape under load: weed mini (S3 + Iceberg REST catalog), a PostgreSQL-backed
Dagster instance configured by wflog_assets/deploy/dagster.yaml, dagster-daemon and
dagster-webserver as separate processes, and a backfill of many days launched over GraphQL.

Shared by `bench/bench_scale_out.py` (90 days, 4 runs at once) and the reduced form in
`test_scale_out.py` (CI). Everything is checked, not only timed: exact rows per day in the
table, no duplicates, every partition materialized in the instance.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

from wflog_assets.definitions import TABLE_TAG
from wflog_assets.source.listing import list_day
from wflog_assets.source.stores import S3ObjectStore
from wflog_assets.tools.generate import GeneratorSettings, generate_day
from wflog_assets_testing.backends import rest_backend, rest_env
from wflog_assets_testing.dagster_stack import PRODUCTION_DAGSTER_YAML, DagsterStack
from wflog_assets_testing.oracle import source_records
from wflog_assets_testing.postgres import PostgresServer
from wflog_assets_testing.weed import WeedServer

ASSETS = ("raw_log_chunks", "normalized_log_batches", "workflow_logs")


@dataclass(frozen=True)
class LoadSettings:
    days: int = 90
    first_day: dt.date = dt.date(2025, 9, 1)
    max_concurrent_runs: int = 4
    data: GeneratorSettings = field(default_factory=GeneratorSettings)
    # SIGKILL the daemon once this many runs have succeeded, then start a new one (None: never).
    kill_daemon_after_runs: int | None = None
    timeout_s: float = 3600.0


@dataclass
class LoadReport:
    days: int
    max_concurrent_runs: int
    source_rows: int
    source_files: int
    source_bytes: int
    wall_s: float = 0.0  # backfill launched -> backfill COMPLETED
    first_run_s: float = 0.0  # backfill launched -> first run started (the backfill daemon's tick)
    runs_span_s: float = 0.0  # first run started -> last run ended
    # median run duration (start -> end) of the first and the last tenth of successful runs:
    # equal when a run's cost does not grow with the table's history
    run_s_first_tenth: float = 0.0
    run_s_last_tenth: float = 0.0
    runs: int = 0
    runs_succeeded: int = 0
    runs_failed: int = 0
    runs_retried: int = 0  # runs started by the instance's run retries (a parent run failed)
    days_succeeded: int = 0  # distinct days with a successful run
    max_runs_in_progress: int = 0
    commit_attempts: int = 0
    conflicts_retried: int = 0
    daemon_killed_at_s: float | None = None
    daemon_restarts: int = 0
    run_peak_rss_mib: dict[str, float] = field(default_factory=dict)
    rows_per_day_ok: bool = False
    duplicate_rows: int = -1
    partitions_materialized: dict[str, int] = field(default_factory=dict)
    snapshots: int = 0

    @property
    def runs_per_minute(self) -> float:
        """Successful runs per minute of the runs' own span (the queue working)."""
        return self.runs_succeeded / (self.runs_span_s / 60) if self.runs_span_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "runs_per_minute": round(self.runs_per_minute, 2)}


class ProcessWatch:
    """Samples /proc for Dagster run workers, keeping each one's high-water RSS (VmHWM). Run
    workers are the children of the code servers (`dagster api grpc`) that the run launcher asks
    to start a run; with the in-process executor a run is that one process."""

    def __init__(self, every_s: float = 0.25):
        self.every_s = every_s
        self.run_workers: dict[int, int] = {}  # pid -> VmHWM KiB of the run worker itself
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    @staticmethod
    def _read(pid: str) -> tuple[int, bytes, int] | None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None  # exited meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        hwm = int(fields.get("VmHWM", "0 kB").split()[0])
        return int(fields["PPid"]), cmdline, hwm

    def sample(self) -> None:
        procs = {
            int(p): info for p in os.listdir("/proc") if p.isdigit() if (info := self._read(p)) is not None
        }
        servers = {pid for pid, (_, cmd, _) in procs.items() if b"api grpc" in cmd}  # code servers
        workers = {
            pid for pid, (ppid, cmd, _) in procs.items() if ppid in servers and b"resource_tracker" not in cmd
        }
        for pid in workers:
            self.run_workers[pid] = max(self.run_workers.get(pid, 0), procs[pid][2])

    def summary(self) -> dict[str, float]:
        """Run workers seen, and the median and max of their peak RSS in MiB."""
        values = sorted(kib / 1024 for kib in self.run_workers.values())
        if not values:
            return {"processes": 0}
        return {
            "processes": len(values),
            "median": round(statistics.median(values), 1),
            "max": round(values[-1], 1),
        }


def _upload(store: S3ObjectStore, settings: LoadSettings) -> tuple[list[dt.date], int, int]:
    days = [settings.first_day + dt.timedelta(days=i) for i in range(settings.days)]
    files = size = 0
    for day in days:
        for key, data in generate_day(day, settings.data):
            store.write(key, data)
            files += 1
            size += len(data)
    return days, files, size


def expected_rows_per_day(store: S3ObjectStore, days: list[dt.date]) -> dict[str, int]:
    """Rows per day read straight from the source files (no pipeline code)."""
    counts: dict[str, int] = {}
    for day in days:
        counts[day.isoformat()] = sum(
            len(source_records(store.read(e.key), e.key)) for e in list_day(store, day).entries
        )
    return counts


def table_rows_per_day(table: Table) -> tuple[dict[str, int], int]:
    """Rows per UTC day in the table, and how many rows are exact duplicates of another."""
    data = table.scan(selected_fields=("timestamp", "source_file", "message", "line")).to_arrow()
    micros = pc.cast(pc.floor(pc.multiply(data["timestamp"], 1_000_000)), "int64")
    days = pc.strftime(pc.cast(micros, pa.timestamp("us", tz="UTC")), format="%Y-%m-%d")
    per_day = Counter(days.to_pylist())
    keys = data.group_by(["timestamp", "source_file", "message", "line"]).aggregate([([], "count_all")])
    duplicates = pc.sum(pc.subtract(keys["count_all"], 1)).as_py() or 0
    return dict(per_day), duplicates


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """This process's view of the instance reads the same variables as the daemon's."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_load(
    weed: WeedServer,
    postgres: PostgresServer,
    db_name: str,
    work_dir: Path,
    settings: LoadSettings,
    log: Callable[[str], None] = print,
) -> LoadReport:
    run = uuid.uuid4().hex[:10]
    backend = rest_backend(weed, run)
    assert isinstance(backend.store, S3ObjectStore)
    t0 = time.monotonic()
    days, files, size = _upload(backend.store, settings)
    expected = expected_rows_per_day(backend.store, days)
    log(
        f"generated {len(days)} days: {files} files, {size / 1e6:.1f} MB, "
        f"{sum(expected.values())} rows in {time.monotonic() - t0:.1f} s"
    )
    report = LoadReport(
        days=len(days),
        max_concurrent_runs=settings.max_concurrent_runs,
        source_rows=sum(expected.values()),
        source_files=files,
        source_bytes=size,
    )
    env = {
        **os.environ,
        **rest_env(weed, run),
        **postgres.env(db_name),
        "DAGSTER_MAX_CONCURRENT_RUNS": str(settings.max_concurrent_runs),
        "WFLOG_START_DATE": settings.first_day.isoformat(),
    }
    home = work_dir / "dagster_home"
    stack = DagsterStack(home, env, PRODUCTION_DAGSTER_YAML.read_text())
    try:
        stack.wait_ready()
        with ProcessWatch() as watch:
            start = time.monotonic()
            backfill_id = stack.launch_asset_backfill(
                list(ASSETS), [d.isoformat() for d in days], tags={TABLE_TAG: backend.catalog.identifier()}
            )
            log(f"backfill {backfill_id} launched over GraphQL: {len(days)} days")
            with _environ(postgres.env(db_name)), dg.DagsterInstance.from_config(str(home)) as instance:
                _follow(stack, instance, backfill_id, settings, report, start, log)
                report.wall_s = round(time.monotonic() - start, 1)
                _collect(
                    instance,
                    backfill_id,
                    backend.catalog.identifier(),
                    report,
                    launched_at=time.time() - (time.monotonic() - start),
                )
        report.run_peak_rss_mib = watch.summary()
    finally:
        stack.stop()
    table = backend.table()
    per_day, report.duplicate_rows = table_rows_per_day(table)
    report.rows_per_day_ok = per_day == expected
    if not report.rows_per_day_ok:
        wrong = {d: (per_day.get(d), n) for d, n in expected.items() if per_day.get(d) != n}
        log(f"days with wrong row counts (table, source): {wrong}")
    report.snapshots = len(table.snapshots())
    return report


def _follow(
    stack: DagsterStack,
    instance: dg.DagsterInstance,
    backfill_id: str,
    settings: LoadSettings,
    report: LoadReport,
    start: float,
    log: Callable[[str], None],
) -> None:
    """Poll until the backfill completes; kill and restart the daemon on the way if asked."""
    deadline = start + settings.timeout_s
    last = ""
    while True:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        by_status = Counter(r.status.value for r in runs)
        report.max_runs_in_progress = max(
            report.max_runs_in_progress, by_status["STARTED"] + by_status["STARTING"]
        )
        line = " ".join(f"{k}={v}" for k, v in sorted(by_status.items()))
        if line != last:
            log(f"  {time.monotonic() - start:6.1f} s  {line}")
            last = line
        if (
            settings.kill_daemon_after_runs is not None
            and report.daemon_killed_at_s is None
            and by_status["SUCCESS"] >= settings.kill_daemon_after_runs
        ):
            stack.kill_daemon()
            report.daemon_killed_at_s = round(time.monotonic() - start, 1)
            log(f"  {report.daemon_killed_at_s:6.1f} s  daemon SIGKILLed; restarting it")
            time.sleep(3)
            stack.start_daemon()
            report.daemon_restarts += 1
        if stack.backfill_finished(backfill_id):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill not done after {settings.timeout_s} s: {line}")
        time.sleep(1)


def _day_of(run: dg.DagsterRun) -> str | None:
    """The day a run materialized: asset backfills tag a one-day range, other runs the partition."""
    return run.tags.get("dagster/partition") or run.tags.get("dagster/asset_partition_range_start")


def _collect(
    instance: dg.DagsterInstance, backfill_id: str, table_id: str, report: LoadReport, launched_at: float
) -> None:
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    starts = [r.start_time for r in records if r.start_time]
    ends = [r.end_time for r in records if r.end_time]
    if starts and ends:
        report.first_run_s = round(min(starts) - launched_at, 1)
        report.runs_span_s = round(max(ends) - min(starts), 1)
    done = sorted(
        (r.start_time, r.end_time - r.start_time)
        for r in records
        if r.start_time and r.end_time and r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    )
    if done:
        tenth = max(1, len(done) // 10)
        report.run_s_first_tenth = round(statistics.median(d for _, d in done[:tenth]), 1)
        report.run_s_last_tenth = round(statistics.median(d for _, d in done[-tenth:]), 1)
    runs = [r.dagster_run for r in records]
    report.runs = len(runs)
    report.runs_succeeded = sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    report.runs_failed = sum(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
    report.runs_retried = sum(r.parent_run_id is not None for r in runs)
    report.days_succeeded = len({_day_of(r) for r in runs if r.status == dg.DagsterRunStatus.SUCCESS})
    assert all(r.tags.get(TABLE_TAG) == table_id for r in runs), "runs miss the table tag"
    attempts = 0
    events = instance.fetch_materializations(dg.AssetKey("workflow_logs"), limit=10_000).records
    for event in events:
        mat = event.asset_materialization
        if mat is not None and "commit_attempts" in mat.metadata:
            attempts += int(mat.metadata["commit_attempts"].value)  # type: ignore[arg-type]
    committed = sum(1 for e in events if e.asset_materialization is not None)
    report.commit_attempts = attempts
    report.conflicts_retried = attempts - committed
    report.partitions_materialized = {
        name: len(instance.get_materialized_partitions(dg.AssetKey(name))) for name in ASSETS
    }
