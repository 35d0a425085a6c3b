"""The layout study at the proof of concept's scale, next to its published figures.

    .venv/bin/python bench/bench_layouts.py [--scale 1.0] [--repetitions 5] [--out DIR]

A month (December 2025) of rows: one heavy workflow logging 436,985 rows over 9 days (the
seed's P0 example) and a long tail of runs (40 a day, a few hundred to tens of thousands of
rows each). Every day is committed once per layout through the project's own writer
(`commit_day`, the same path as the assets) to an embedded SQLite catalog. Then the P0 query
is timed per layout, cold and warm, for the heaviest, a median and the tiniest workflow, as
`LIMIT 100` and as all of the workflow's rows (the seed's measure). No thresholds: figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from wflog_assets.day import day_prefix
from wflog_assets.iceberg.commit import commit_day
from wflog_assets.iceberg.schema import ARROW_SCHEMA, LAYOUT_TABLE_SUFFIX, LAYOUTS, sort_for_table
from wflog_assets.iceberg.tables import ensure_table
from wflog_assets.manifest import Manifest, ManifestEntry
from wflog_assets.source.normalize import month_of
from wflog_assets.tools.report import markdown_table, measure, pick_workflows, seed_comparison, write_report

HEAVY = "atlan-salesforce-1671795233-cron-1766791800"
HEAVY_ROWS = 436_985
HEAVY_DAYS = 9
TAIL_PER_DAY = 40
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")


def day_rows(day: dt.date, rng: random.Random, scale: float) -> pa.Table:
    """One day's normalized rows: the heavy run (first 9 days) and the day's long tail."""
    t0 = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    counts: dict[str, int] = {}
    if day.day <= HEAVY_DAYS:
        base, extra = divmod(round(HEAVY_ROWS * scale), HEAVY_DAYS)
        counts[HEAVY] = base + (1 if day.day <= extra else 0)
    for rank in range(1, TAIL_PER_DAY + 1):
        name = (
            f"atlan-{rng.choice(('snowflake', 'tableau', 'postgres', 'dbt'))}-"
            f"{1_600_000_000 + rng.randrange(10**8)}-cron-{int(t0) + rng.randrange(86_400)}"
        )
        counts[name] = max(20, round(40_000 * scale / rank**1.3))
    return rows_for_counts(day, counts, rng)


def rows_for_counts(day: dt.date, counts: dict[str, int], rng: random.Random) -> pa.Table:
    """Normalized rows of one day (one source file): `counts[workflow]` rows per workflow, at
    random times of the day, two nodes per workflow. Shared with bench_year.py."""
    t0 = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    names, stamps, nodes, messages, levels = [], [], [], [], []
    for name, n in counts.items():
        node_names = [f"{name}-{step}-{rng.randrange(10**9)}" for step in ("fetch", "transform")]
        names.extend([name] * n)
        stamps.extend(t0 + rng.random() * 86_399 for _ in range(n))
        nodes.extend(rng.choice(node_names) for _ in range(n))
        levels.extend(rng.choice(LEVELS) for _ in range(n))
        messages.extend(f"Processed batch {i} of {rng.randrange(500)} records, status=ok" for i in range(n))
    total = len(names)
    key = f"{day_prefix(day)}chunk-0-part{int(t0 * 1000)}.parquet"
    timestamps = pa.array(stamps, pa.float64())
    data = {f.name: pa.nulls(total, f.type) for f in ARROW_SCHEMA}
    data.update(
        {
            "timestamp": timestamps,
            "level": pa.array(levels, pa.large_string()),
            "logger_name": pa.array(["application_sdk.activities.common"] * total, pa.large_string()),
            "message": pa.array(messages, pa.large_string()),
            "atlan_argo_workflow_name": pa.array(names, pa.large_string()),
            "atlan_argo_workflow_node": pa.array(nodes, pa.large_string()),
            "trace_id": pa.array(names, pa.large_string()),
            "month": month_of(timestamps),
            "source_file": pa.array([key] * total, pa.large_string()),
            "source_etag": pa.array(["bench"] * total, pa.large_string()),
        }
    )
    return pa.Table.from_pydict(data, schema=ARROW_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="row-count factor (1.0: the seed's 436,985-row workflow)"
    )
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--out", help="directory for layout-report.md/.png/.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wflog-bench-layouts-"))
    catalog = SqlCatalog("bench", uri=f"sqlite:///{work}/catalog.db", warehouse=work.as_uri())
    identifiers = {layout: f"bench.logs{LAYOUT_TABLE_SUFFIX[layout]}" for layout in LAYOUTS}
    for layout, identifier in identifiers.items():
        ensure_table(catalog, identifier, layout)
    rng = random.Random(42)
    rows_total, started = 0, time.perf_counter()
    write_s = dict.fromkeys(LAYOUTS, 0.0)
    for offset in range(args.days):
        day = dt.date(2025, 12, 1) + dt.timedelta(days=offset)
        rows = day_rows(day, rng, args.scale)
        rows_total += rows.num_rows
        key = rows.column("source_file")[0].as_py()
        manifest = Manifest.build(day.isoformat(), [ManifestEntry(key, 1, "bench", "")])
        for layout, identifier in identifiers.items():
            t = time.perf_counter()
            commit_day(lambda i=identifier: catalog.load_table(i), manifest, sort_for_table(rows, layout))
            write_s[layout] += time.perf_counter() - t
    print(
        f"{rows_total:,} rows over {args.days} days written to 3 layouts in "
        f"{time.perf_counter() - started:.1f} s "
        f"({', '.join(f'{k} {v:.1f} s' for k, v in write_s.items())}); data in {work}"
    )
    for layout, identifier in identifiers.items():
        files = list(catalog.load_table(identifier).scan().plan_files())
        print(
            f"  {layout}: {len(files)} data files, "
            f"{sum(f.file.file_size_in_bytes for f in files) / 1e6:.1f} MB"
        )

    workflows = pick_workflows(catalog.load_table(identifiers["wf_month"]))
    figures = measure(
        lambda layout: catalog.load_table(identifiers[layout]), workflows, repetitions=args.repetitions
    )
    print("\nThe seed's P0 table (all rows of the heaviest workflow) and ours, cold median:\n")
    print(seed_comparison(figures))
    print("\nEvery workflow and query shape:\n")
    print(markdown_table(figures))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for path in write_report(figures, str(Path(args.out) / "layout-report")):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
