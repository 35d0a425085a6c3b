"""The current writer's stream: a day of tiny `.json.gz` files against the same records packed
in 40 files, measured in the same run (figures only, no thresholds).

    .venv/bin/python bench/bench_stream.py [--files 20000,100000] [--packed 40]
        [--s3-latency-ms 30] [--out f.json]

For each size, the writer's day (`generate.writer_flushes`: a file per flush of 1-100
records, about 20 on average, 40% single-line flushes, `hour=` folders) and the same lines
packed into `--packed` files are written to two local source folders. Each run below is a
child process doing what `wflog-assets materialize` does (Dagster start-up, the ingest job
in-process, embedded SQLite catalog), timed as a whole, with its peak RSS from `wait4`:

- `packed`: the packed day, ingested from scratch (the baseline);
- `tiny`: the writer's day, ingested from scratch;
- `late`: one more tiny file lands in the writer's day, and the day is run again;
- `unchanged`: the day is run once more with nothing new (reads no object).

Ratios printed: tiny / packed (rows/s and files/s), late / tiny, unchanged / tiny.

`--arrivals N` instead simulates the current day: N writer files land at `--every-s` while
dagster-webserver and dagster-daemon run the source sensor (interval `--sensor-interval-s`) on
weed mini (S3 + REST catalog); it prints p50/p95/max seconds from landing to queryable, the
runs launched and whether two ever overlapped, and the day's data files per partition before
and after the day's compaction (what `workflow_logs_day_compaction` does once the day closed).

`--s3-latency-ms N` puts both source days on weed mini's S3 instead, read through a loopback
proxy that holds every request N ms (the first-byte latency of a distant store): the runs
then show whether many GETs in flight hide it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DAY = dt.date(2026, 11, 2)


def make_sources(write: Callable[[str, bytes], None], files: int, packed: int) -> int:
    """The writer's day under `<files>/tiny/`, the same lines packed into `packed` files under
    `<files>/packed/`; returns the rows."""
    from wflog_assets.day import day_prefix
    from wflog_assets.tools.generate import gzip_lines, writer_flushes

    lines_all: list[str] = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        for key, lines in writer_flushes(DAY, files):
            pool.submit(write, f"{files}/tiny/{key}", gzip_lines(lines))
            lines_all.extend(lines)
        per = -(-len(lines_all) // packed)
        for index in range(packed):
            key = (
                f"{files}/packed/{day_prefix(DAY)}hour={index * 24 // packed:02d}/{index:06d}_packed.json.gz"
            )
            pool.submit(write, key, gzip_lines(lines_all[index * per : (index + 1) * per]))
    return len(lines_all)


def writer_of(spec: dict[str, str]) -> Callable[[str, bytes], None]:
    """key, bytes -> an object where the spec says (a local folder, or weed mini directly)."""
    if spec["kind"] == "local":
        from wflog_assets.source.stores import LocalObjectStore

        return LocalObjectStore(spec["root"]).write
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=spec["key"],
        aws_secret_access_key=spec["secret"],
    )
    return lambda key, data: client.put_object(
        Bucket=spec["bucket"], Key=f"{spec['prefix']}/{key}", Body=data
    )


def make_in_child(spec: dict[str, str], files: int, packed: int) -> int:
    """`make_sources` in a child process: the parent stays small, and the peak RSS a run's
    child inherits across fork + exec is its own, not the generator's."""
    out = subprocess.run(
        [sys.executable, __file__, "_make", json.dumps(spec), str(files), str(packed)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip().splitlines()[-1])


def run_child(source: dict[str, str], work: Path) -> dict[str, Any]:
    """One ingest of DAY in a child process: wall seconds, peak RSS, the assets' metadata."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "_run", json.dumps(source), str(work)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if status != 0:
            log.seek(0)
            raise SystemExit(f"child failed ({status}) on {source}:\n{log.read()[-4000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures.update(seconds=round(seconds, 2), peak_rss_mib=round(usage.ru_maxrss / 1024))
    return figures


def child(spec: str, work: str) -> None:
    import dagster as dg

    from wflog_assets.definitions import INGEST_JOB, build_definitions
    from wflog_assets.defs.resources import (
        ArrowStagingIOManager,
        LocalLogSource,
        S3LogSource,
        SourceS3Resource,
        SqliteCatalogResource,
    )

    source = json.loads(spec)
    if source["kind"] == "local":
        log_source: Any = LocalLogSource(root=source["root"])
    else:
        s3 = SourceS3Resource(
            endpoint_url=source["endpoint"],
            region_name="us-east-1",
            path_style=True,
            aws_access_key_id=source["key"],
            aws_secret_access_key=source["secret"],
        )
        log_source = S3LogSource(s3=s3, bucket=source["bucket"], prefix=source["prefix"])
    resources = {
        "log_source": log_source,
        "iceberg": SqliteCatalogResource(data_dir=f"{work}/catalog"),
        "staging_io_manager": ArrowStagingIOManager(root=f"{work}/staging"),
    }
    job = build_definitions(resources, "2026-11-01").resolve_job_def(INGEST_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(partition_key=DAY.isoformat(), instance=instance)
    meta = {
        e.event_specific_data.materialization.asset_key.path[-1]: {
            k: v.value for k, v in e.event_specific_data.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }
    normalized, table = meta["normalized_log_batches"], meta["workflow_logs"]
    print(
        json.dumps(
            {
                "outcome": table["outcome"],
                "day_rows": table["day_rows"],
                "rows_written": table["rows_written"],
                "files_read": normalized["files_read"],
                "files_in_day": normalized["files_in_day"],
                "source_bytes_read": normalized["source_bytes_read"],
                "files_by_reader": normalized["files_by_reader"],
                "data_files_written": table["data_files_written"],
                "failed_checks": [c.check_name for c in result.get_asset_check_evaluations() if not c.passed],
                "phases": normalized["phase_seconds"],
            }
        ),
        flush=True,
    )
    gc.freeze()  # as `wflog-assets` does before it exits (`cli.run`)


def _ratios(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The writer's day against the packed one, and the late and unchanged runs against it."""
    seconds = {name: run["seconds"] for name, run in runs.items()}
    return {
        "tiny/packed seconds": round(seconds["tiny"] / seconds["packed"], 2),
        "late/tiny seconds": round(seconds["late"] / seconds["tiny"], 3),
        "unchanged/tiny seconds": round(seconds["unchanged"] / seconds["tiny"], 3),
    }


@contextmanager
def _sources(latency_ms: float | None) -> Iterator[tuple[dict[str, str], Callable[[str], dict[str, str]]]]:
    """(where to write sources, the source spec of a top folder to read): a local folder, or
    weed mini (written directly, read through the latency proxy)."""
    root = Path(tempfile.mkdtemp(prefix="wflog-stream-"))
    try:
        if latency_ms is None:
            yield (
                {"kind": "local", "root": str(root / "src")},
                lambda top: {"kind": "local", "root": str(root / "src" / top)},
            )
            return
        from wflog_assets_testing.faults import LatencyProxy
        from wflog_assets_testing.weed import start_weed, stop_weed

        (root / "weed").mkdir()
        weed = start_weed(root / "weed")
        proxy = LatencyProxy(int(weed.s3_endpoint.rsplit(":", 1)[1]), latency_ms / 1000)
        direct = {
            "kind": "s3",
            "endpoint": weed.s3_endpoint,
            "bucket": weed.source_bucket,
            "prefix": root.name,
            "key": weed.access_key,
            "secret": weed.secret_key,
        }
        try:
            yield direct, lambda top: {**direct, "endpoint": proxy.endpoint, "prefix": f"{root.name}/{top}"}
        finally:
            proxy.close()
            stop_weed(weed)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure(
    files: int, packed: int, target: dict[str, str], spec: Callable[[str], dict[str, str]]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    rows = make_in_child(target, files, packed)
    print(
        f"{files} tiny files, {rows} rows (sources written in {time.perf_counter() - t0:.0f} s)", flush=True
    )
    from wflog_assets.tools.generate import gzip_lines, writer_flushes

    work = Path(tempfile.mkdtemp(prefix="wflog-stream-work-"))
    try:
        tiny, packed_day = spec(f"{files}/tiny"), spec(f"{files}/packed")
        runs = {"packed": run_child(packed_day, work / "packed"), "tiny": run_child(tiny, work / "tiny")}
        key, lines = next(writer_flushes(DAY, 1, seed=99))
        writer_of(target)(f"{files}/tiny/{key.replace('_000000_', '_999999_')}", gzip_lines(lines[:5]))
        runs["late"] = run_child(tiny, work / "tiny")
        runs["unchanged"] = run_child(tiny, work / "tiny")
        ratios = _ratios(runs)
        for name, run in runs.items():
            print(
                f"  {name:<9} {run['seconds']:>7.1f} s  {run['peak_rss_mib']:>5} MiB  "
                f"{run['outcome']:<9} read {run['files_read']:>6}/{run['files_in_day']} files "
                f"{run['source_bytes_read']:>10} B  day_rows={run['day_rows']}  "
                f"rows/s={rows / run['seconds']:,.0f}  files/s={run['files_read'] / run['seconds']:,.0f}"
                f"{'  FAILED CHECKS ' + str(run['failed_checks']) if run['failed_checks'] else ''}",
                flush=True,
            )
        print(f"  ratios: {ratios}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"files": files, "rows": rows, "runs": runs, "ratios": ratios}


def freshness(files: int, every_s: float, interval_s: int) -> dict[str, Any]:
    import datetime as dt
    import itertools
    import statistics
    import uuid

    from wflog_assets.day import Day
    from wflog_assets.defs.sensors import SENSOR_NAME
    from wflog_assets.iceberg.maintenance import compact_day
    from wflog_assets.iceberg.plan import day_filter
    from wflog_assets_testing.arrivals import land_and_watch
    from wflog_assets_testing.backends import rest_backend, rest_env
    from wflog_assets_testing.dagster_stack import running_stack
    from wflog_assets_testing.oracle import expected_rows_for_days, table_rows
    from wflog_assets_testing.weed import start_weed, stop_weed

    root = Path(tempfile.mkdtemp(prefix="wflog-fresh-"))
    (root / "weed").mkdir()
    weed = start_weed(root / "weed")
    run = uuid.uuid4().hex[:10]
    backend = rest_backend(weed, run)
    env = {**os.environ, **rest_env(weed, run), "WFLOG_SENSOR_INTERVAL_S": str(interval_s)}
    try:
        with running_stack(root / "dagster_home", env, max_runs=4) as stack:
            stack.start_sensor(SENSOR_NAME)
            today = dt.datetime.now(dt.UTC).date()
            latencies = sorted(land_and_watch(backend, today, files, every_s, timeout_s=600))
            runs = stack.partition_runs(today.isoformat())
        spans = sorted((r["startTime"], r["endTime"] or 0) for r in runs)

        def per_partition() -> dict[tuple[object, ...], int]:
            counts: dict[tuple[object, ...], int] = {}
            for task in backend.table().scan(row_filter=day_filter(Day(today))).plan_files():
                counts[tuple(task.file.partition)] = counts.get(tuple(task.file.partition), 0) + 1
            return counts

        before = per_partition()
        compaction = compact_day(backend.table, today)
        after = per_partition()
        exact = table_rows(backend.table()) == expected_rows_for_days(backend.store, [today])
    finally:
        stop_weed(weed)
        shutil.rmtree(root, ignore_errors=True)
    figures = {
        "files": files,
        "every_s": every_s,
        "sensor_interval_s": interval_s,
        "p50_s": round(statistics.median(latencies), 1),
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "max_s": round(latencies[-1], 1),
        "runs": len(runs),
        "runs_failed": sum(r["status"] != "SUCCESS" for r in runs),
        "runs_overlapped": any(b[0] < a[1] for a, b in itertools.pairwise(spans)),
        "partitions": len(before),
        "files_per_partition_before": {
            "max": max(before.values()),
            "mean": round(statistics.mean(before.values()), 2),
        },
        "files_per_partition_after": {"max": max(after.values())},
        "partitions_compacted": compaction.partitions_compacted,
        "rows_exact": exact,
    }
    print(json.dumps(figures), flush=True)
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        child(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_make":
        print(make_sources(writer_of(json.loads(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", default="20000,100000", help="tiny files per day, comma-separated")
    parser.add_argument("--packed", type=int, default=40, help="files of the packed baseline day")
    parser.add_argument(
        "--s3-latency-ms",
        type=float,
        default=None,
        help="sources on weed mini's S3, each request held this long",
    )
    parser.add_argument(
        "--arrivals",
        type=int,
        default=None,
        help="simulate the current day: this many files landing (see above)",
    )
    parser.add_argument("--every-s", type=float, default=1.0, help="seconds between landings")
    parser.add_argument(
        "--sensor-interval-s",
        type=int,
        default=30,
        help="minimum seconds between sensor ticks in the simulation",
    )
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    if args.arrivals:
        result = freshness(args.arrivals, args.every_s, args.sensor_interval_s)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        return
    with _sources(args.s3_latency_ms) as (target, spec):
        report = [_measure(int(files), args.packed, target, spec) for files in args.files.split(",")]
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
