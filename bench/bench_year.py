"""A year of daily commits, then the monthly maintenance: does the table stay fast?

    .venv/bin/python bench/bench_year.py [--days 365] [--monthly] [--merge-manifests N] [--out f.json]

One commit per day through the project's writer (`commit_day`, the assets' path) into the
embedded SQLite catalog on local disk: a heavy workflow that logs every day (1,200 rows a day:
~438k in a year, the seed's P0 example) and a tail of short runs. Prints the commit time of the
first and last days (with `--monthly`, the maintenance also runs at every month's end during the
year, as its schedule would), then the P0 query of the heavy workflow (all its rows, the seed's measure,
and LIMIT 100), cold, before and after compacting every month (`compact_month`), and expiring
old snapshots (`expire_snapshots`), and one more day's commit after maintenance.
No thresholds: figures, each next to its own baseline from the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench_layouts import rows_for_counts
from pyiceberg.catalog.sql import SqlCatalog

from wflog_assets.iceberg.commit import commit_day
from wflog_assets.iceberg.maintenance import compact_month, expire_snapshots, manifest_count
from wflog_assets.iceberg.query import p0_query
from wflog_assets.iceberg.schema import sort_for_table
from wflog_assets.iceberg.tables import ensure_table
from wflog_assets.manifest import Manifest, ManifestEntry

HEAVY = "atlan-salesforce-1671795233-cron-1735689600"
IDENTIFIER = "bench.year"


def day_rows(day: dt.date, rng: random.Random, heavy_rows: int, tail: int):  # -> pa.Table
    t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    counts = {HEAVY: heavy_rows}
    for rank in range(1, tail + 1):
        counts[f"atlan-dbt-{1_600_000_000 + rng.randrange(10**8)}-cron-{t0 + rng.randrange(86_400)}"] = max(
            20, round(2_000 / rank**1.3)
        )
    return rows_for_counts(day, counts, rng)


def commit(catalog: SqlCatalog, day: dt.date, rng: random.Random, args) -> float:
    rows = day_rows(day, rng, args.heavy_rows, args.tail)
    key = rows.column("source_file")[0].as_py()
    manifest = Manifest.build(day.isoformat(), [ManifestEntry(key, 1, "bench", "")])
    rows = sort_for_table(rows)
    started = time.perf_counter()
    commit_day(lambda: catalog.load_table(IDENTIFIER), manifest, rows)
    return time.perf_counter() - started


def p0(catalog: SqlCatalog, limit: int | None, repetitions: int) -> dict[str, float]:
    """Cold P0 of the heavy workflow (table reloaded each time): median seconds and its files."""
    times, result = [], None
    for _ in range(repetitions):
        table = catalog.load_table(IDENTIFIER)
        result = p0_query(table, HEAVY, limit=limit)
        times.append(result.seconds)
    assert result is not None
    return {
        "seconds": round(statistics.median(times), 3),
        "rows": result.rows.num_rows,
        "files_planned": result.files_planned,
        "files_read": result.files_read,
        "plan_seconds": round(result.plan_seconds, 3),
    }


def table_shape(catalog: SqlCatalog) -> dict[str, int]:
    table = catalog.load_table(IDENTIFIER)
    return {
        "data_files": sum(1 for _ in table.scan().plan_files()),
        "manifests": manifest_count(table),
        "snapshots": len(table.snapshots()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--heavy-rows", type=int, default=1200)
    parser.add_argument("--tail", type=int, default=20, help="short workflow runs per day")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--merge-manifests",
        type=int,
        default=0,
        metavar="N",
        help="set commit.manifest-merge.enabled with min-count-to-merge N (0: off)",
    )
    parser.add_argument(
        "--monthly",
        action="store_true",
        help="run the maintenance (compact the month, expire snapshots) at each "
        "month's end during the year, as the schedule would",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wflog-bench-year-"))
    catalog = SqlCatalog("bench", uri=f"sqlite:///{work}/catalog.db", warehouse=work.as_uri())
    merge = (
        {
            "commit.manifest-merge.enabled": "true",
            "commit.manifest.min-count-to-merge": str(args.merge_manifests),
        }
        if args.merge_manifests
        else {}
    )
    ensure_table(catalog, IDENTIFIER, properties=merge)
    rng = random.Random(7)
    first_day = dt.date(2025, 1, 1)
    commit_s, monthly_s = [], []
    for i in range(args.days):
        day = first_day + dt.timedelta(days=i)
        commit_s.append(commit(catalog, day, rng, args))
        if args.monthly and (day + dt.timedelta(days=1)).day == 1:  # the schedule, at month end
            started = time.perf_counter()
            compact_month(lambda: catalog.load_table(IDENTIFIER), day.year, day.month)
            expire_snapshots(catalog.load_table(IDENTIFIER), dt.datetime.now(dt.UTC))
            monthly_s.append(time.perf_counter() - started)
    tenth = max(1, args.days // 10)
    figures: dict[str, object] = {
        "days": args.days,
        "table_properties": merge,
        "monthly_maintenance": args.monthly,
        "monthly_maintenance_s_median": round(statistics.median(monthly_s), 2) if monthly_s else None,
        "commit_s_first": round(commit_s[0], 3),
        "commit_s_first_tenth_median": round(statistics.median(commit_s[:tenth]), 3),
        "commit_s_last_tenth_median": round(statistics.median(commit_s[-tenth:]), 3),
        "commit_s_last": round(commit_s[-1], 3),
        "before": {
            **table_shape(catalog),
            "p0_all": p0(catalog, None, args.repetitions),
            "p0_limit100": p0(catalog, 100, args.repetitions),
        },
    }
    started = time.perf_counter()
    months = sorted(
        {
            ((first_day + dt.timedelta(days=i)).year, (first_day + dt.timedelta(days=i)).month)
            for i in range(args.days)
        }
    )
    results = [compact_month(lambda: catalog.load_table(IDENTIFIER), y, m) for y, m in months]
    compacted_s = time.perf_counter() - started
    expired = expire_snapshots(catalog.load_table(IDENTIFIER), dt.datetime.now(dt.UTC))
    figures["maintenance"] = {
        "months": len(months),
        "seconds": round(compacted_s, 1),
        "files_before": sum(r.files_before for r in results),
        "files_after": sum(r.files_after for r in results),
        "snapshots_expired": expired,
        "manifests_after": manifest_count(catalog.load_table(IDENTIFIER)),
    }
    figures["after"] = {
        **table_shape(catalog),
        "p0_all": p0(catalog, None, args.repetitions),
        "p0_limit100": p0(catalog, 100, args.repetitions),
    }
    next_day = first_day + dt.timedelta(days=args.days)
    figures["commit_s_after_maintenance"] = round(commit(catalog, next_day, rng, args), 3)

    b, a = figures["before"], figures["after"]
    if monthly_s:
        print(
            f"monthly maintenance during the year: {len(monthly_s)} runs, median "
            f"{statistics.median(monthly_s):.2f} s"
        )
    print(
        f"{args.days} daily commits: first {figures['commit_s_first']:.3f} s, median of the first "
        f"tenth {figures['commit_s_first_tenth_median']:.3f} s, of the last tenth "
        f"{figures['commit_s_last_tenth_median']:.3f} s "
        f"({figures['commit_s_last_tenth_median'] / figures['commit_s_first_tenth_median']:.2f}x), "
        f"after maintenance {figures['commit_s_after_maintenance']:.3f} s"
    )
    print(
        f"maintenance: {len(months)} months compacted in {compacted_s:.1f} s, "
        f"{figures['maintenance']['files_before']} -> {figures['maintenance']['files_after']} files, "
        f"{expired} snapshots expired"
    )
    print()
    print(
        "| | data files | manifests | snapshots | P0 all rows: s (files planned / read) "
        "| P0 LIMIT 100: s (files read) |"
    )
    print("|---|---:|---:|---:|---|---|")
    for name, f in (("before maintenance", b), ("after maintenance", a)):
        full, limited = f["p0_all"], f["p0_limit100"]
        print(
            f"| {name} | {f['data_files']} | {f['manifests']} | {f['snapshots']} "
            f"| {full['seconds']:.3f} ({full['files_planned']} / {full['files_read']}) "
            f"| {limited['seconds']:.3f} ({limited['files_read']}) |"
        )
    print(f"\nheavy workflow: {b['p0_all']['rows']:,} rows; data in {work}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
