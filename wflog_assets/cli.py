"""`wflog-assets`: generate demo logs, run the daily job, query the table."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wflog_assets.day import day_prefix
from wflog_assets.errors import WflogError
from wflog_assets.process import prepare_command

if TYPE_CHECKING:  # each command imports what it needs: a query starts without pyarrow's writers
    import dagster as dg
    from pyiceberg.table import Table

    from wflog_assets.source.stores import ObjectStore

DEMO_FORMATS = ("parquet", "mixed", "jsonl")  # the old writer, both, the current writer
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _store(dest: str) -> ObjectStore:
    from wflog_assets.source.stores import LocalObjectStore, S3ObjectStore

    if dest.startswith("s3://"):
        from wflog_assets.defs import settings

        bucket, _, prefix = dest.removeprefix("s3://").partition("/")
        return S3ObjectStore(settings.s3_resource().get_client(), bucket, prefix)
    return LocalObjectStore(dest)


def cmd_generate(args: argparse.Namespace) -> int:
    from wflog_assets.tools.generate import GeneratorSettings, write_days

    settings = GeneratorSettings(
        rows_per_day=args.rows_per_day,
        files_per_day=args.files_per_day,
        workflows_per_day=args.workflows_per_day,
        hour_level=args.hour_level,
        seed=args.seed,
        format=args.format,
    )
    keys = write_days(
        _store(args.dest),
        args.start,
        args.days,
        settings,
        late_files_per_day=args.late_files,
    )
    print(f"wrote {len(keys)} chunk files for {args.days} day(s) from {args.start} to {args.dest}")
    return 0


# The embedded default's instance (the demo, `materialize`, and `dagster dev` per the README):
# runs stuck starting or canceling are failed after the timeouts (a killed `dagster dev` leaves
# none behind), and no telemetry. Written only where no dagster.yaml says otherwise.
EMBEDDED_INSTANCE_YAML = """\
# Dagster instance of wflog-assets' embedded default (written by wflog-assets; edit freely).
# Dagster's local run launcher (a fresh interpreter per run, started by the code server), plus
# a check that a run's worker process is alive: run monitoring fails a run whose worker died (a
# killed `dagster dev`), and the sensor requests its day again.
run_launcher:
  module: wflog_assets.defs.launcher
  class: LocalCheckedRunLauncher
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 30
# The source sensor ticks every minute (1,440 ticks a day): the daemon purges old ticks.
retention:
  schedule:
    purge_after_days: 90
  sensor:
    purge_after_days:
      skipped: 1
      success: 7
      failure: 30
telemetry:
  enabled: false
nux:
  enabled: false
"""


def _instance(home: Path) -> dg.DagsterInstance:
    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        config.write_text(EMBEDDED_INSTANCE_YAML)
    return dg.DagsterInstance.from_config(str(home))


def materialize_days(days: Sequence[str], dagster_home: Path, layouts: bool = False) -> list[dict[str, Any]]:
    """Run the ingest job (and the layout study's) for each day; return workflow_logs metadata."""
    from wflog_assets.definitions import INGEST_JOB, LAYOUT_JOB, defs

    definitions = defs()
    jobs = [definitions.resolve_job_def(INGEST_JOB)]
    if layouts:
        jobs.append(definitions.resolve_job_def(LAYOUT_JOB))
    summaries = []
    with _instance(dagster_home) as instance:
        for day in days:
            for job in jobs:
                result = job.execute_in_process(
                    partition_key=day, instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=False
                )
                if not result.success:
                    raise SystemExit(f"error: run of {job.name} for {day} failed: {_failure(result)}")
                for mat in result.get_asset_materialization_events():
                    meta = mat.materialization.metadata
                    if "outcome" in meta:  # the tables: workflow_logs and the layout study's
                        summaries.append({"day": day, **{k: v.value for k, v in meta.items()}})
    return summaries


def _failure(result: Any) -> str:
    """What failed a run, in one line: a step's own message (`dg.Failure`) or its error."""
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return str(data.user_failure_data.description)
        if data.error is not None:
            cause = data.error.cause or data.error
            return f"{event.step_key}: {cause.cls_name}: {cause.message.strip().splitlines()[-1]}"
    return "see the run's events"


def cmd_materialize(args: argparse.Namespace) -> int:
    from wflog_assets.defs import settings
    from wflog_assets.source.listing import has_year_folders

    start: dt.date = args.start
    outside = _outside_partitions(start, start + dt.timedelta(days=args.days - 1))
    if outside:
        print(f"error: {outside}", file=sys.stderr)
        return 2
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(args.days)]
    home = Path(args.dagster_home or settings.data_dir() / "dagster_home")
    summaries = materialize_days(days, home, layouts=args.layouts)
    for summary in summaries:
        print(_summary_line(summary))
    source = settings.log_source()
    if not any(s["source_files_in_day"] for s in summaries) and not has_year_folders(source.object_store()):
        print(
            f"error: {source.describe()} holds no year= folder: the source root looks one level off "
            "(set WFLOG_SOURCE_DIR or WFLOG_S3_PREFIX to the folder right above year=YYYY)",
            file=sys.stderr,
        )
        return 3
    return 0


def _summary_line(s: dict[str, object]) -> str:
    return (
        f"{s['day']} {s['table']}: {s['outcome']:<9} rows_written={s['rows_written']:>7} "
        f"data_files={s['data_files_written']:>3} source_files={s['source_files_in_day']:>3} "
        f"snapshot={s['snapshot_id']} attempts={s['commit_attempts']}"
    )


def _day(text: str) -> dt.date:
    """`--start`: a calendar day."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a calendar day: use YYYY-MM-DD") from None


def _days(text: str) -> int:
    """`--days`: one or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number of days, 1 or more")
    return value


def _outside_partitions(first: dt.date, last: dt.date) -> str | None:
    """Why days `first`..`last` are not all partitions of the daily assets, or None."""
    from wflog_assets.defs import settings
    from wflog_assets.defs.partitions import setting_date

    start = setting_date("WFLOG_START_DATE", settings.start_date())
    end_text = settings.end_date()
    end = setting_date("WFLOG_END_DATE", end_text) if end_text else dt.datetime.now(dt.UTC).date()
    if first < start:
        return (
            f"{first} is before WFLOG_START_DATE={start}, where the daily partitions start: "
            "set WFLOG_START_DATE earlier"
        )
    if last > end:
        limit = f"WFLOG_END_DATE={end_text}" if end_text else f"today ({end}, UTC)"
        return f"{last} is after {limit}, the last daily partition: pick earlier days"
    return None


def _limit(text: str) -> int | None:
    """`--limit`: a count of rows (0 or more), or `all` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number of rows (0 or more) or `all`")
    return value


def _instant(text: str | None) -> float | None:
    """Unix seconds from `2025-12-01T10:00:00` (UTC unless an offset is given) or a number."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise SystemExit(f"{text!r} is not a time: use ISO 8601 (2025-12-01T10:00) or Unix seconds") from exc
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()


def _layout_table(layout: str) -> Table:
    from wflog_assets.defs import settings

    return settings.iceberg_catalog().ensure_table(layout)


def _query_table(layout: str) -> Table:
    """The layout's table, opened without Dagster (the query's start-up is its imports)."""
    from wflog_assets import environment
    from wflog_assets.iceberg.catalogs import read_table
    from wflog_assets.iceberg.schema import table_identifier

    identifier = table_identifier(*environment.table_names(), layout)
    table = read_table(environment.catalog_properties(), identifier)
    if table is None:
        raise SystemExit(f"no table {identifier} yet: materialize a day first (wflog-assets materialize)")
    return table


def _print_p0(
    workflow: str,
    node: str | None,
    limit: int | None,
    start: float | None = None,
    end: float | None = None,
    columns: tuple[str, ...] | None = None,
    layout: str = "wf_month",
    table: Any = None,  # pyiceberg Table; default: the layout's, through the resource
) -> int:
    """Print the P0 query's figures and rows; the number of rows."""
    from wflog_assets.iceberg.query import DEFAULT_COLUMNS, p0_query

    table = table if table is not None else _layout_table(layout)
    result = p0_query(
        table, workflow, node=node, start=start, end=end, limit=limit, columns=columns or DEFAULT_COLUMNS
    )
    print(
        f"P0 query on {layout}: workflow={workflow} node={node} limit={limit}: "
        f"{result.rows.num_rows} rows; {result.files_planned} files planned "
        f"({result.bytes_planned} bytes), {result.files_read} read, "
        f"{result.row_groups_read} row groups, {result.rows_scanned} rows scanned, "
        f"{result.bytes_read} bytes read; {result.plan_seconds * 1000:.0f} ms planning, "
        f"{result.seconds * 1000:.0f} ms in all"
    )
    for row in result.rows.to_pylist():
        if columns:
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
            continue
        stamp = dt.datetime.fromtimestamp(row["timestamp"], tz=dt.UTC).isoformat(timespec="milliseconds")
        message = textwrap.shorten(row["message"] or "", 70)
        print(f"  {stamp}  {row['level']:<8} {message}")
    return int(result.rows.num_rows)


def cmd_query(args: argparse.Namespace) -> int:
    from wflog_assets.iceberg.query import p0_query
    from wflog_assets.iceberg.schema import WORKFLOW_NAME

    columns = tuple(c.strip() for c in args.columns.split(",")) if args.columns else None
    table = _query_table(args.layout)
    found = _print_p0(
        args.workflow,
        args.node,
        args.limit,
        _instant(args.start),
        _instant(args.end),
        columns,
        args.layout,
        table,
    )
    if not found and not p0_query(table, args.workflow, limit=1, columns=(WORKFLOW_NAME,)).rows.num_rows:
        print(
            f"error: the table holds no workflow named {args.workflow!r} (names are exact; app-level "
            "records are app:<deployment>_<app>)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from wflog_assets.defs import settings
    from wflog_assets.iceberg.schema import LAYOUTS
    from wflog_assets.tools.report import measure, pick_comparable, seed_comparison, write_report

    resource = settings.iceberg_catalog()
    catalog = resource.load_catalog()
    tables = {layout: resource.ensure_table(layout, catalog) for layout in LAYOUTS}
    empty = [layout for layout, table in tables.items() if table.current_snapshot() is None]
    if empty:
        raise SystemExit(
            f"no data in the table(s) of {', '.join(empty)}: materialize "
            "workflow_logs and the layout_study assets first"
        )

    def load(layout: str) -> Table:
        return catalog.load_table(resource.layout_identifier(layout))

    workflows, left_out = pick_comparable(load, list(LAYOUTS), args.workflow or [])
    if left_out:
        print(
            f"left out {len(left_out)} workflow(s) the layouts' tables hold different rows for "
            f"(load the same days into every layout), e.g. {dict(list(left_out.items())[:3])}",
            file=sys.stderr,
        )
    figures = measure(
        load,
        workflows,
        repetitions=args.repetitions,
        limit=args.limit,
    )
    for path in write_report(figures, args.out):
        print(f"wrote {path}")
    print(seed_comparison(figures))
    return 0


def cmd_convert_clickhouse(args: argparse.Namespace) -> int:
    from wflog_assets.errors import ExportFormatError
    from wflog_assets.tools.clickhouse import convert_export

    try:
        result = convert_export(
            args.export,
            _store(args.dest),
            rows_per_file=args.rows_per_file,
            timezone=args.timezone,
            replace=args.replace,
        )
    except (ExportFormatError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"export {args.export} (id {result.export_id}): {result.rows_read} rows read, "
        f"{result.rows_written} written to {len(result.files)} chunk file(s) in "
        f"{len(result.rows_by_day)} day(s), {result.rows_rejected} rejected"
    )
    for day, rows in sorted(result.rows_by_day.items()):
        print(f"  {day}: {rows} rows")
    if result.removed_files:
        print(
            f"{len(result.removed_files)} chunk file(s) of "
            f"{'earlier exports' if args.replace else 'an earlier conversion of the same rows'} were "
            "removed: ingest these days with the run config vanished_files: delete and "
            "max_vanished_fraction: 1.0 (normalized_log_batches) so that the table drops their rows"
        )
    if result.other_exports:
        listed = ", ".join(f"{i} ({n} files)" for i, n in sorted(result.other_exports.items()))
        print(
            f"warning: these days also hold other exports: {listed}; their rows stay beside this "
            "one's. A corrected re-export of the same days replaces them with --replace.",
            file=sys.stderr,
        )
    if result.rejects:
        print(f"rejected rows: {args.dest.rstrip('/')}/{result.rejects_key}", file=sys.stderr)
        for reject in result.rejects[:10]:
            print(f"  line {reject.line}: {reject.reason}", file=sys.stderr)
        if not args.allow_rejects:
            print(
                "error: rows were rejected (see the rejects file); fix the export or pass --allow-rejects",
                file=sys.stderr,
            )
            return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate demo days (once), materialize them, print a summary and a P0 query."""
    from wflog_assets.defs import settings
    from wflog_assets.iceberg.query import workflow_row_counts
    from wflog_assets.source.stores import LocalObjectStore
    from wflog_assets.tools.generate import GeneratorSettings, write_days

    data = settings.data_dir()
    source = LocalObjectStore(data / "source")
    start = dt.date.fromisoformat(settings.start_date())
    days = [start + dt.timedelta(days=i) for i in range(len(DEMO_FORMATS))]
    missing = [
        (d, f) for d, f in zip(days, DEMO_FORMATS, strict=True) if not (source.root / day_prefix(d)).is_dir()
    ]
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
    print(
        f"table {catalog.identifier()}: {total} rows, {counts.num_rows} workflows, "
        f"{len(table.snapshots())} snapshots"
    )
    _print_p0(counts.column(0)[0].as_py(), None, 5)
    # the UI's partitions: the demo's days, not every day from them to today
    print(f"Dagster UI: DAGSTER_HOME={data / 'dagster_home'} WFLOG_END_DATE={days[-1]} .venv/bin/dagster dev")
    return 0


Commands = Any  # argparse's subparsers action (private type)
HELP = argparse.ArgumentDefaultsHelpFormatter  # --help shows every default


def _data_commands(sub: Commands) -> None:
    """generate, materialize, demo."""
    defaults = HELP
    gen = sub.add_parser("generate", help="write synthetic chunk files", formatter_class=defaults)
    gen.add_argument("--dest", required=True, help="directory or s3://bucket/prefix")
    gen.add_argument("--start", required=True, type=_day, help="first day (YYYY-MM-DD, UTC)")
    gen.add_argument("--days", type=_days, default=3, help="number of days from --start")
    gen.add_argument("--rows-per-day", type=int, default=20_000)
    gen.add_argument("--files-per-day", type=int, default=8)
    gen.add_argument("--workflows-per-day", type=int, default=25)
    gen.add_argument("--late-files", type=int, default=0, help="late chunk files per day")
    gen.add_argument("--hour-level", action="store_true", help="write under hour=HH/")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument(
        "--format",
        choices=("parquet", "jsonl", "mixed"),
        default="parquet",
        help="old Parquet chunks, the current writer's gzip JSON lines, or both",
    )
    gen.set_defaults(func=cmd_generate)

    mat = sub.add_parser(
        "materialize", help="run the daily job for a range of days", formatter_class=defaults
    )
    mat.add_argument("--start", required=True, type=_day, help="first day (YYYY-MM-DD, UTC)")
    mat.add_argument("--days", type=_days, default=1, help="number of days from --start")
    mat.add_argument("--dagster-home", help="instance directory (default: $WFLOG_DATA_DIR/dagster_home)")
    mat.add_argument(
        "--layouts",
        action="store_true",
        help="also load the days into the bucket layouts' tables (layout study)",
    )
    mat.set_defaults(func=cmd_materialize)

    demo = sub.add_parser("demo", help="generate demo logs and ingest them (embedded default)")
    demo.set_defaults(func=cmd_demo)


def _table_commands(sub: Commands) -> None:
    """query, report, convert-clickhouse."""
    defaults = HELP
    query = sub.add_parser(
        "query", help="the P0 query: newest logs of one workflow", formatter_class=defaults
    )
    query.add_argument("--workflow", required=True)
    query.add_argument("--node")
    query.add_argument("--limit", type=_limit, default=20, help="rows to print: a number, or `all`")
    query.add_argument("--start", help="from this time (inclusive): ISO 8601, UTC, or Unix seconds")
    query.add_argument("--end", help="until this time (exclusive)")
    query.add_argument(
        "--columns",
        help="comma-separated columns (default: timestamp, level, "
        "logger_name, atlan_argo_workflow_node, message)",
    )
    query.add_argument("--layout", default="wf_month", choices=("wf_month", "wf_bucket", "wf_bucket_month"))
    query.set_defaults(func=cmd_query)

    report = sub.add_parser(
        "report", help="the layout study: P0 latency per partition layout", formatter_class=defaults
    )
    report.add_argument(
        "--out", default="layout-report", help="path stem: writes <out>.md, <out>.png and <out>.json"
    )
    report.add_argument(
        "--workflow", action="append", help="a workflow to measure besides heaviest/median/tiny (repeatable)"
    )
    report.add_argument("--repetitions", type=int, default=5)
    report.add_argument("--limit", type=int, default=100)
    report.set_defaults(func=cmd_report)

    convert = sub.add_parser(
        "convert-clickhouse",
        help="ClickHouse CSV export -> chunk files in the source layout",
        formatter_class=defaults,
    )
    convert.add_argument("export", help="the export: .csv or .csv.gz, with header")
    convert.add_argument("--dest", required=True, help="source root: directory or s3://bucket/prefix")
    convert.add_argument("--rows-per-file", type=int, default=250_000)
    convert.add_argument(
        "--timezone",
        help="the zone of the export's Timestamp values (an IANA name; default: UTC, or what a "
        "CSVWithNamesAndTypes type line says)",
    )
    convert.add_argument(
        "--replace",
        action="store_true",
        help="replace, in each day this export writes, the chunk files of every other export "
        "(a corrected re-export of the same days)",
    )
    convert.add_argument(
        "--allow-rejects",
        action="store_true",
        help="exit 0 even if rows were rejected (they are still recorded)",
    )
    convert.set_defaults(func=cmd_convert_clickhouse)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wflog-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _data_commands(sub)
    _table_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except WflogError as exc:  # an expected mistake (a setting, a query): one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run() -> None:
    """The `wflog-assets` command: `main`, then exit without the interpreter's final sweep of
    every object (Dagster's and pyiceberg's modules make it cost 0.4-0.8 s a process)."""
    prepare_command()  # Arrow's allocator, before Arrow loads (process.py)
    status = main()
    gc.freeze()  # what is frozen is left to the OS at exit: the process ends now
    sys.exit(status)


if __name__ == "__main__":
    run()
