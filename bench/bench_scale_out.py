"""The production shape under load: a backfill of many days through a PostgreSQL-backed Dagster
instance with a run queue, against a real S3 API and Iceberg REST catalog.

    .venv/bin/python bench/bench_scale_out.py [--days 90] [--concurrency 4] [--rows-per-day 20000]
                                              [--kill-daemon-after 45] [--out scale-out.json]

Starts weed mini (S3 + Iceberg REST catalog) and a throwaway PostgreSQL server on loopback,
uploads generated days, then runs dagster-webserver and dagster-daemon as separate processes on
the shipped instance config (wflog_assets/deploy/dagster.yaml) and launches one backfill of
every day over GraphQL (the UI's path). Half-way (by default) the daemon is SIGKILLed and
restarted. Prints wall time, runs per minute, commit conflicts retried, peak RSS per run
process, and the day-by-day check of the table (exact rows, no duplicates, every partition
materialized). The reduced form runs in CI as wflog_assets_tests/test_scale_out.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test helpers live there

from wflog_assets.tools.generate import GeneratorSettings
from wflog_assets_testing.load import LoadSettings, run_load
from wflog_assets_testing.postgres import running_postgres
from wflog_assets_testing.weed import start_weed, stop_weed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--first-day", default="2025-09-01")
    parser.add_argument("--concurrency", type=int, default=4, help="DAGSTER_MAX_CONCURRENT_RUNS")
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--files-per-day", type=int, default=8)
    parser.add_argument("--workflows-per-day", type=int, default=25)
    parser.add_argument(
        "--kill-daemon-after",
        type=int,
        default=None,
        help="SIGKILL the daemon after this many successful runs (default: days/2; -1: never)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    kill = args.days // 2 if args.kill_daemon_after is None else args.kill_daemon_after
    settings = LoadSettings(
        days=args.days,
        first_day=dt.date.fromisoformat(args.first_day),
        max_concurrent_runs=args.concurrency,
        data=GeneratorSettings(
            rows_per_day=args.rows_per_day,
            files_per_day=args.files_per_day,
            workflows_per_day=args.workflows_per_day,
        ),
        kill_daemon_after_runs=None if kill < 0 else kill,
        timeout_s=4 * 3600,
    )
    with tempfile.TemporaryDirectory(prefix="wflog-scale-") as tmp:
        work = Path(tmp)
        (work / "weed").mkdir()
        started = time.monotonic()
        weed = start_weed(work / "weed")
        try:
            with running_postgres() as postgres, postgres.database("wflog_bench") as db:
                print(f"weed mini and PostgreSQL ready in {time.monotonic() - started:.1f} s")
                report = run_load(weed, postgres, db, work, settings)
        finally:
            stop_weed(weed)
    figures = report.as_dict()
    rss = report.run_peak_rss_mib
    print()
    print(
        "| days | runs at once | source rows | wall (first run after) | runs' span | runs/min "
        "| runs (ok/failed/retried) | commit conflicts retried | peak RSS per run (median / max) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---:|---|")
    print(
        f"| {report.days} | {report.max_concurrent_runs} (seen {report.max_runs_in_progress}) "
        f"| {report.source_rows:,} | {report.wall_s:.0f} s ({report.first_run_s:.0f} s) "
        f"| {report.runs_span_s:.0f} s | {report.runs_per_minute:.1f} "
        f"| {report.runs_succeeded}/{report.runs_failed}/{report.runs_retried} "
        f"| {report.conflicts_retried} of {report.commit_attempts} attempts "
        f"| {rss.get('median', 0):.0f} / {rss.get('max', 0):.0f} MiB ({rss.get('processes', 0)} runs) |"
    )
    print(
        f"run duration, median of the first / last tenth of runs: {report.run_s_first_tenth:.1f} s / "
        f"{report.run_s_last_tenth:.1f} s"
    )
    print()
    ok = (
        report.rows_per_day_ok
        and report.duplicate_rows == 0
        and report.days_succeeded == report.days
        and set(report.partitions_materialized.values()) == {report.days}
    )
    print(
        f"table check: rows per day exact={report.rows_per_day_ok}, duplicates={report.duplicate_rows}, "
        f"snapshots={report.snapshots}, partitions materialized={report.partitions_materialized}, "
        f"daemon killed at {report.daemon_killed_at_s} s and restarted {report.daemon_restarts}x"
    )
    print("RESULT:", "OK" if ok else "WRONG")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
