"""One day's ingest through the asset graph, against the pyarrow bound measured in the same run.

    .venv/bin/python bench/bench_ingest.py [--rows 500000,2000000,8000000] [--files 40]
        [--per-file-rows 2000000] [--source local|s3] [--piece-rows 49152] [--out figures.json]

For each day size (40 chunk files, the generator's schema quirks, a long tail of workflows with
one heavy run), each mode runs in its own process, so its peak RSS (`wait4`) is its own:

- `bound`: plain pyarrow on the same files: read (4 threads, as the assets) + normalize (the
  same Arrow normalization) + one sort + one Parquet file per (workflow, month), zstd, 32k row
  groups, the whole day in memory;
- `assets`: the ingest job (raw_log_chunks + normalized_log_batches + workflow_logs, checks
  and quarantine included) in-process on the embedded SQLite catalog, Dagster start-up (imports,
  definitions, instance) timed separately; phases from the assets' own metadata;
- `per_file` (one size only): the proof of concept's way, one pyiceberg `append` per file.

`--source s3` puts the files (and staging) on weed mini's S3 and adds a plain `get_object`
download of every file as the transfer baseline. Figures only, no thresholds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wflog_assets.process import LEAN_POOL

DAY = dt.date(2025, 12, 29)
BASE_ROWS_PER_FILE = 2_500
WORKERS = 4


# ----------------------------------------------------------------------------------- source
def make_source(root: Path, rows: int, files: int) -> None:
    """40 chunk files of rows/files rows: generator files (schema quirks kept), tiled with fresh
    timestamps inside each file's time window."""
    from wflog_assets.tools.generate import GeneratorSettings, generate_day

    marker = root / f"_done-{rows}-{files}"
    if marker.exists():
        return
    settings = GeneratorSettings(
        rows_per_day=BASE_ROWS_PER_FILE * files, files_per_day=files, workflows_per_day=60, seed=11
    )
    per_file = rows // files
    for index, (key, data) in enumerate(generate_day(DAY, settings)):
        base = pq.read_table(io.BytesIO(data))
        reps = -(-per_file // base.num_rows)
        table = pa.concat_tables([base] * reps).slice(0, per_file)
        ts = base.column("timestamp")
        lo, hi = pc.min_max(ts).as_py().values()
        rng = pa.array(sorted((lo + (hi - lo) * ((i * 7919) % per_file) / per_file) for i in range(per_file)))
        table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", rng)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        del index
    marker.write_text("ok")


# ------------------------------------------------------------------------------------ modes
def mode_bound(source: Path, work: Path) -> dict[str, Any]:
    """Plain pyarrow, the whole day in memory: read + normalize + sort each file (threads),
    then per (workflow, month) the files' slices concatenated, sorted by time and written as
    one Parquet file (a single sort of the whole day needs a second copy of it: at 8 M rows
    more memory than this machine has)."""
    from wflog_assets.iceberg.schema import sort_for_table
    from wflog_assets.source.normalize import normalize_table

    files = sorted(p for p in source.rglob("*.parquet"))
    t0 = time.perf_counter()

    def read(p: Path) -> pa.Table:
        return sort_for_table(normalize_table(pq.read_table(p), p.name, "etag").table)

    with ThreadPoolExecutor(WORKERS) as pool:
        tables = list(pool.map(read, files))
    t1 = time.perf_counter()
    slices: dict[tuple[Any, ...], list[pa.Table]] = {}
    for table in tables:
        names = table.column("atlan_argo_workflow_name").combine_chunks()
        months = table.column("month").combine_chunks()
        ends = sorted(
            {*pc.run_end_encode(names).run_ends.to_pylist(), *pc.run_end_encode(months).run_ends.to_pylist()}
        )
        start = 0
        for end in ends:
            slices.setdefault((names[start].as_py(), months[start].as_py()), []).append(
                table.slice(start, end - start)
            )
            start = end
    out = work / "bound"
    out.mkdir(parents=True, exist_ok=True)
    sort_s = 0.0
    for written, key in enumerate(sorted(slices, key=str)):
        s0 = time.perf_counter()
        part = pa.concat_tables(slices.pop(key))
        part = part.take(pc.sort_indices(part, sort_keys=[("timestamp", "descending")]))
        sort_s += time.perf_counter() - s0
        pq.write_table(part, out / f"part-{written}.parquet", compression="zstd", row_group_size=32 * 1024)
    t3 = time.perf_counter()
    return {
        "rows": sum(t.num_rows for t in tables),
        "seconds": t3 - t0,
        "data_files": len(list(out.iterdir())),
        "phases": {
            "read + normalize + sort per file": t1 - t0,
            "merge per partition (concat + sort)": sort_s,
            "write": t3 - t1 - sort_s,
        },
    }


def _resources(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from wflog_assets.defs.resources import (
        ArrowStagingIOManager,
        LocalLogSource,
        S3LogSource,
        SourceS3Resource,
        SqliteCatalogResource,
    )

    catalog = SqliteCatalogResource(data_dir=str(work / "catalog"))
    if args.source == "local":
        return {
            "log_source": LocalLogSource(root=str(Path(args.source_dir))),
            "iceberg": catalog,
            "staging_io_manager": ArrowStagingIOManager(root=str(work / "staging")),
        }
    s3 = SourceS3Resource(**json.loads(args.s3))
    return {
        "log_source": S3LogSource(s3=s3, bucket=args.bucket, prefix=args.prefix),
        "iceberg": catalog,
        "staging_io_manager": ArrowStagingIOManager(root=f"s3://{args.bucket}/staging", s3=s3),
    }


def mode_assets(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    import dagster as dg

    from wflog_assets.definitions import INGEST_JOB, build_definitions

    job = build_definitions(_resources(args, work), "2025-12-01").resolve_job_def(INGEST_JOB)
    instance = dg.DagsterInstance.ephemeral()
    t1 = time.perf_counter()
    staging = {"read_workers": WORKERS, "piece_rows": args.piece_rows}
    result = job.execute_in_process(
        partition_key=DAY.isoformat(),
        instance=instance,
        run_config={"ops": {"normalized_log_batches": {"config": staging}}},
    )
    t2 = time.perf_counter()
    assert result.success
    meta: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        meta[mat.asset_key.path[-1]] = {k: v.value for k, v in mat.metadata.items()}
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(result.run_id)}
    normalized, table = meta["normalized_log_batches"], meta["workflow_logs"]
    checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
    read = normalized["phase_seconds"]
    return {
        "rows": table["rows_written"],
        "seconds": t2 - t1,
        "startup_seconds": t1 - t0,
        "data_files": table["data_files_written"],
        "failed_checks": [c.check_name for c in checks],
        "source_bytes": normalized["source_bytes_read"],
        "sorted_runs": normalized["sorted_runs"],
        "staged_bytes": normalized.get("staged_bytes", 0),
        "phases": {
            "list (raw_log_chunks step)": steps.get("raw_log_chunks", 0.0),
            "stage (read, normalize, screen, sort, spill), wall": read.get("stage_wall", 0.0),
            "  fetch, summed over threads": read.get("fetch", 0.0),
            "  fetch+normalize, summed over threads": read.get("fetch_and_normalize", 0.0),
            "  screen+sort (main thread)": read.get("screen_and_sort", 0.0),
            "  spill runs (spill thread)": read.get("spill", 0.0),
            "  main thread waiting for parts": read.get("wait_for_parts", 0.0),
            "  staging write (IO manager)": normalized.get("staging_write_s", 0.0),
            "normalized_log_batches step": steps.get("normalized_log_batches", 0.0),
            "plan (checkpoint scan)": table["phase_seconds"].get("plan", 0.0),
            "merge+write data files": table["phase_seconds"].get("write", 0.0),
            "commit": table["phase_seconds"].get("commit", 0.0),
            "workflow_logs step (+checks, quarantine)": steps.get("workflow_logs", 0.0),
        },
    }


def mode_per_file(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from pyiceberg.catalog.sql import SqlCatalog

    from wflog_assets.iceberg.schema import sort_for_table
    from wflog_assets.iceberg.tables import ensure_table
    from wflog_assets.source.normalize import normalize_table

    catalog = SqlCatalog("bench", uri=f"sqlite:///{work}/perfile.db", warehouse=f"file://{work}/wh")
    table = ensure_table(catalog, "bench.per_file")
    files = sorted(Path(args.source_dir).rglob("*.parquet"))
    t0 = time.perf_counter()
    rows = 0
    for path in files:
        data = sort_for_table(normalize_table(pq.read_table(path), path.name, "etag").table)
        table.append(data)
        rows += data.num_rows
    seconds = time.perf_counter() - t0
    data_files = len(list(table.scan().plan_files()))
    return {"rows": rows, "seconds": seconds, "data_files": data_files, "commits": len(files)}


def mode_download(args: argparse.Namespace) -> dict[str, Any]:
    """The transfer itself: every file fetched with get_object, 8 threads, nothing else."""
    from wflog_assets.defs.resources import SourceS3Resource

    client = SourceS3Resource(**json.loads(args.s3)).get_client()
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=args.prefix)
        for o in page.get("Contents", [])
    ]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        total = sum(
            pool.map(lambda k: len(client.get_object(Bucket=args.bucket, Key=k)["Body"].read()), keys)
        )
    return {"rows": 0, "seconds": time.perf_counter() - t0, "bytes": total, "data_files": 0}


# ------------------------------------------------------------------------------------ driver
def run_child(
    mode: str, args: argparse.Namespace, source_dir: Path, work: Path, extra: list[str]
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--source-dir",
        str(source_dir),
        "--work",
        str(work),
        "--piece-rows",
        str(args.piece_rows),
        "--source",
        args.source,
        *extra,
    ]
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "stderr.log", "w") as err:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": str(Path(__file__).parent.parent),
                # Arrow's allocator as `wflog-assets` chooses it (process.py), the same for every mode
                "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or LEAN_POOL,
            },
        )
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{mode} failed (status {status}), see {work / 'stderr.log'}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="500000,2000000,8000000")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument(
        "--per-file-rows",
        type=int,
        default=2_000_000,
        help="the day size that also runs the per-file-commit baseline (0: none)",
    )
    parser.add_argument("--source", choices=("local", "s3"), default="local")
    parser.add_argument("--piece-rows", type=int, default=48 * 1024)
    parser.add_argument(
        "--modes", default="bound,assets,download,per_file", help="which to run (download: --source s3 only)"
    )
    parser.add_argument("--work", default=None, help="work directory (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--source-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--s3", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        if args.child == "bound":
            figures = mode_bound(Path(args.source_dir), work)
        elif args.child == "assets":
            figures = mode_assets(args, work)
        elif args.child == "per_file":
            figures = mode_per_file(args, work)
        else:
            figures = mode_download(args)
        print(json.dumps(figures))
        return

    base = Path(args.work or tempfile.mkdtemp(prefix="wflog-bench-ingest-"))
    results: list[dict[str, Any]] = []
    weed = None
    try:
        if args.source == "s3":
            sys.path.insert(0, str(Path(__file__).parent.parent))
            from wflog_assets_testing.weed import start_weed

            (base / "weed").mkdir(parents=True, exist_ok=True)
            weed = start_weed(base / "weed")
        for rows in [int(r) for r in args.rows.split(",")]:
            source = base / f"source-{rows}"
            make_source(source, rows, args.files)
            mb = sum(p.stat().st_size for p in source.rglob("*.parquet")) / 1e6
            extra: list[str] = []
            if weed is not None:
                extra = _upload(weed, source, rows)
            print(f"\n== {rows:,} rows in {args.files} files, {mb:.0f} MB ({args.source}) ==", flush=True)
            wanted = args.modes.split(",")
            modes = (
                [m for m in ("bound", "assets") if m in wanted]
                + (["download"] if weed is not None and "download" in wanted else [])
                + (["per_file"] if rows == args.per_file_rows and "per_file" in wanted else [])
            )
            day: dict[str, Any] = {"rows": rows, "files": args.files, "source_mb": round(mb, 1)}
            for mode in modes:
                work = base / f"work-{rows}-{mode}-{time.time_ns()}"
                day[mode] = run_child(mode, args, source, work, extra)
                _print(mode, day[mode], day["bound"]["seconds"] if "bound" in day else None, rows)
            if "bound" in day and "assets" in day:
                a, b = day["assets"]["seconds"], day["bound"]["seconds"]
                day["assets_vs_bound"] = round(a / b, 2)
                print(f"   assets / bound = {a / b:.2f}x")
            if "per_file" in day and "assets" in day:
                day["per_file_vs_assets"] = round(day["per_file"]["seconds"] / day["assets"]["seconds"], 2)
                print(f"   per-file commits / assets = {day['per_file_vs_assets']:.2f}x")
            if "download" in day and "assets" in day:
                fetched = day["assets"]["phases"]["  fetch, summed over threads"]
                print(
                    f"   plain download {day['download']['seconds']:.2f} s "
                    f"({day['download']['bytes'] / 1e6:.0f} MB); the assets' fetch phase "
                    f"{fetched:.2f} s summed over {WORKERS} threads"
                )
            results.append(day)
    finally:
        if weed is not None:
            from wflog_assets_testing.weed import stop_weed

            stop_weed(weed)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"\nfigures written to {args.out}")


def _upload(weed: Any, source: Path, rows: int) -> list[str]:
    from wflog_assets.defs.resources import SourceS3Resource

    s3 = {
        "endpoint_url": weed.s3_endpoint,
        "region_name": weed.region,
        "path_style": True,
        "aws_access_key_id": weed.access_key,
        "aws_secret_access_key": weed.secret_key,
    }
    client = SourceS3Resource(**s3).get_client()
    prefix = f"bench-{rows}"
    for path in source.rglob("*.parquet"):
        client.put_object(
            Bucket=weed.source_bucket, Key=f"{prefix}/{path.relative_to(source)}", Body=path.read_bytes()
        )
    return ["--s3", json.dumps(s3), "--bucket", weed.source_bucket, "--prefix", prefix]


def _print(mode: str, f: dict[str, Any], bound: float | None, rows: int) -> None:
    rate = f"{rows / f['seconds']:>10,.0f} rows/s" if f.get("rows") else " " * 17
    startup = f", start-up {f['startup_seconds']:.1f} s" if "startup_seconds" in f else ""
    ratio = f"{f['seconds'] / bound:5.2f}x bound" if bound else " " * 11
    print(
        f"  {mode:<9} {f['seconds']:7.2f} s {rate}  {ratio}  "
        f"peak RSS {f['peak_rss_mib']:>5} MiB  data files {f.get('data_files', 0)}{startup}"
    )
    for phase, seconds in f.get("phases", {}).items():
        print(f"      {phase:<44} {seconds:7.2f} s")
    if f.get("failed_checks"):
        print(f"      FAILED CHECKS: {f['failed_checks']}")


if __name__ == "__main__":
    main()
