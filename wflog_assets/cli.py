"""`wflog-assets`: generate demo logs, run the daily job, query the table."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from wflog_assets.generate import GeneratorSettings, write_days
from wflog_assets.source import LocalObjectStore, ObjectStore, S3ObjectStore, day_prefix

DEMO_FORMATS = ("parquet", "mixed", "jsonl")  # the old writer, both, the current writer
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _store(dest: str) -> ObjectStore:
    if dest.startswith("s3://"):
        from wflog_assets.defs import settings

        bucket, _, prefix = dest.removeprefix("s3://").partition("/")
        return S3ObjectStore(settings.s3_resource().get_client(), bucket, prefix)
    return LocalObjectStore(dest)


def cmd_generate(args: argparse.Namespace) -> int:
    settings = GeneratorSettings(
        rows_per_day=args.rows_per_day, files_per_day=args.files_per_day,
        workflows_per_day=args.workflows_per_day, hour_level=args.hour_level, seed=args.seed,
        format=args.format,
    )
    keys = write_days(_store(args.dest), dt.date.fromisoformat(args.start), args.days, settings,
                      late_files_per_day=args.late_files)
    print(f"wrote {len(keys)} chunk files for {args.days} day(s) from {args.start} to {args.dest}")
    return 0


def _instance(home: Path):  # -> dg.DagsterInstance
    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    return dg.DagsterInstance.from_config(str(home))


def materialize_days(days: Sequence[str], dagster_home: Path) -> list[dict[str, object]]:
    """Run the ingest job for each day; return each day's workflow_logs metadata."""
    from wflog_assets.definitions import INGEST_JOB, defs

    job = defs().resolve_job_def(INGEST_JOB)
    summaries = []
    with _instance(dagster_home) as instance:
        for day in days:
            result = job.execute_in_process(partition_key=day, instance=instance,
                                            run_config=QUIET_RUN_CONFIG)
            if not result.success:
                raise SystemExit(f"run for {day} failed")
            for mat in result.asset_materializations_for_node("workflow_logs"):
                summaries.append({"day": day, **{k: v.value for k, v in mat.metadata.items()}})
    return summaries


def cmd_materialize(args: argparse.Namespace) -> int:
    from wflog_assets.defs import settings

    start = dt.date.fromisoformat(args.start)
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(args.days)]
    home = Path(args.dagster_home or settings.data_dir() / "dagster_home")
    for summary in materialize_days(days, home):
        print(_summary_line(summary))
    return 0


def _summary_line(s: dict[str, object]) -> str:
    return (
        f"{s['day']}: {s['outcome']:<9} rows_written={s['rows_written']:>7} "
        f"data_files={s['data_files_written']:>3} source_files={s['source_files_in_day']:>3} "
        f"snapshot={s['snapshot_id']} attempts={s['commit_attempts']}"
    )


def _print_p0(workflow: str, node: str | None, limit: int) -> None:
    from wflog_assets.defs import settings
    from wflog_assets.query import p0_query

    table = settings.iceberg_catalog().ensure_table()
    result = p0_query(table, workflow, node=node, limit=limit)
    print(f"P0 query: workflow={workflow} node={node} limit={limit}: "
          f"{result.rows.num_rows} rows, {result.files_planned} files planned, "
          f"{result.bytes_planned} bytes, {result.seconds * 1000:.0f} ms")
    for row in result.rows.to_pylist():
        stamp = dt.datetime.fromtimestamp(row["timestamp"], tz=dt.UTC).isoformat(
            timespec="milliseconds")
        message = textwrap.shorten(row["message"] or "", 70)
        print(f"  {stamp}  {row['level']:<8} {message}")


def cmd_query(args: argparse.Namespace) -> int:
    _print_p0(args.workflow, args.node, args.limit)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate demo days (once), materialize them, print a summary and a P0 query."""
    from wflog_assets.defs import settings
    from wflog_assets.query import workflow_row_counts

    data = settings.data_dir()
    source = LocalObjectStore(data / "source")
    start = dt.date.fromisoformat(settings.start_date())
    days = [start + dt.timedelta(days=i) for i in range(len(DEMO_FORMATS))]
    missing = [(d, f) for d, f in zip(days, DEMO_FORMATS, strict=True)
               if not (source.root / day_prefix(d)).is_dir()]
    for day, fmt in missing:
        write_days(source, day, 1, GeneratorSettings(format=fmt), late_files_per_day=1)
    print(f"demo data: {source.root} ({len(missing)} day(s) generated now)")
    summaries = materialize_days([d.isoformat() for d in days], data / "dagster_home")
    for summary in summaries:
        print(_summary_line(summary))
    catalog = settings.iceberg_catalog()
    table = catalog.ensure_table()
    counts = workflow_row_counts(table)
    total = sum(counts.column("count_all").to_pylist())
    print(f"table {catalog.identifier()}: {total} rows, {counts.num_rows} workflows, "
          f"{len(table.snapshots())} snapshots")
    _print_p0(counts.column(0)[0].as_py(), None, 5)
    print(f"Dagster UI: DAGSTER_HOME={data / 'dagster_home'} .venv/bin/dagster dev")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wflog-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic chunk files")
    gen.add_argument("--dest", required=True, help="directory or s3://bucket/prefix")
    gen.add_argument("--start", default="2025-12-01")
    gen.add_argument("--days", type=int, default=3)
    gen.add_argument("--rows-per-day", type=int, default=20_000)
    gen.add_argument("--files-per-day", type=int, default=8)
    gen.add_argument("--workflows-per-day", type=int, default=25)
    gen.add_argument("--late-files", type=int, default=0, help="late chunk files per day")
    gen.add_argument("--hour-level", action="store_true", help="write under hour=HH/")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--format", choices=("parquet", "jsonl", "mixed"), default="parquet",
                     help="old Parquet chunks, the current writer's gzip JSON lines, or both")
    gen.set_defaults(func=cmd_generate)

    mat = sub.add_parser("materialize", help="run the daily job for a range of days")
    mat.add_argument("--start", required=True)
    mat.add_argument("--days", type=int, default=1)
    mat.add_argument("--dagster-home", help="instance directory (default: $WFLOG_DATA_DIR/"
                     "dagster_home)")
    mat.set_defaults(func=cmd_materialize)

    query = sub.add_parser("query", help="the P0 query: newest logs of one workflow")
    query.add_argument("--workflow", required=True)
    query.add_argument("--node")
    query.add_argument("--limit", type=int, default=20)
    query.set_defaults(func=cmd_query)

    demo = sub.add_parser("demo", help="generate demo logs and ingest them (embedded default)")
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
