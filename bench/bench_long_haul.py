"""A day committed all day long, and a month of such days in fast-forward (figures only, no
thresholds; `test_long_haul.py` asserts the structural bounds of a reduced run).

    .venv/bin/python bench/bench_long_haul.py [--runs 1440] [--files-per-run 14]
        [--sample-every 60] [--s3-latency-ms 30] [--month-days 0] [--out f.json]

The current writer's day (`generate.writer_flushes`, `runs * files_per_run` files in time
order) lands `files_per_run` files at a time; after each landing the day is run the way a warm
worker runs it (the ingest job in-process, on one persistent Dagster instance). Printed:

- the run time by hour of the day (median of the runs of each hour), and the ratio of the
  median of the last 60 runs to the median of runs 2-61 (same run, same machine);
- at every `--sample-every` runs: the P0 query of the open day and of a closed day (its own
  `seconds`), the data files of the open day and the most in one of its partitions, manifests
  of the current snapshot, snapshots kept, the newest metadata.json's size, files and bytes
  under the table's metadata/, and Dagster storage per run;
- at the end: rows of the day against the lines written (an independent count).

A run stands for a minute of the day but takes a second or two here, so the table's snapshot
window (an hour in production: 60 runs) is scaled to the same number of runs' wall time,
`--window-s` (default 120 s), for the retention to act as it does in a real day.

`--s3-latency-ms N` runs on weed mini instead: the source on its S3 and the table in its REST
catalog, every S3 request (source and data files) held N ms by a loopback proxy.

`--month-days D` then runs D more days in fast-forward (`--month-runs` runs each), each
closed day compacted and cleaned as `workflow_logs_day_compaction` does (orphans older than
`--window-s`), and prints the
same figures per day plus the P0 query of day 2 against its time on day 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DAY = dt.date(2026, 11, 2)
CLOSED = DAY - dt.timedelta(days=1)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextmanager
def backend_for(latency_ms: float | None, root: Path) -> Iterator[Any]:
    """The embedded default, or weed mini's S3 + REST catalog behind a latency proxy."""
    from wflog_assets_testing.backends import embedded_backend

    if latency_ms is None:
        yield embedded_backend(root)
        return
    from wflog_assets_testing.backends import rest_backend
    from wflog_assets_testing.faults import LatencyProxy
    from wflog_assets_testing.weed import start_weed, stop_weed

    (root / "weed").mkdir(parents=True)
    weed = start_weed(root / "weed")
    proxy = LatencyProxy(int(weed.s3_endpoint.rsplit(":", 1)[1]), latency_ms / 1000)
    try:
        yield rest_backend(weed, "long_haul", s3_endpoint=proxy.endpoint)
    finally:
        proxy.close()
        stop_weed(weed)


def table_figures(table: Any, day: dt.date) -> dict[str, Any]:
    """Data files of the day (and the most in one partition), manifests, snapshots, metadata."""
    import pyarrow.fs as pafs

    from wflog_assets.day import Day
    from wflog_assets.iceberg._compat import arrow_filesystem
    from wflog_assets.iceberg.maintenance import manifest_count
    from wflog_assets.iceberg.plan import day_filter

    tasks = list(table.scan(row_filter=day_filter(Day(day))).plan_files())
    per_partition = Counter(tuple(t.file.partition) for t in tasks)
    filesystem, root = arrow_filesystem(table.io, f"{table.location().rstrip('/')}/metadata")
    infos = [
        i
        for i in filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        if i.type == pafs.FileType.File
    ]
    return {
        "data_files_in_day": len(tasks),
        "most_files_in_a_partition": max(per_partition.values(), default=0),
        "manifests": manifest_count(table),
        "snapshots": len(table.snapshots()),
        "metadata_json_bytes": len(table.io.new_input(table.metadata_location)),
        "metadata_files": len(infos),
        "metadata_bytes": sum(i.size or 0 for i in infos),
    }


def p0_seconds(table: Any, workflow: str) -> tuple[float, int]:
    from wflog_assets.iceberg.query import p0_query

    result = p0_query(table, workflow, limit=100)
    return result.seconds, result.files_planned


def heaviest_workflow(table: Any, day: dt.date) -> str:
    import pyarrow.compute as pc

    from wflog_assets.day import Day
    from wflog_assets.iceberg.plan import day_filter
    from wflog_assets.iceberg.schema import WORKFLOW_NAME

    names = table.scan(row_filter=day_filter(Day(day)), selected_fields=(WORKFLOW_NAME,)).to_arrow()
    counts = pc.value_counts(names.column(WORKFLOW_NAME).combine_chunks())
    best = max(counts.to_pylist(), key=lambda c: c["counts"])
    return str(best["values"])


def ingest_day(
    backend: Any,
    instance: Any,
    day: dt.date,
    runs: int,
    per_run: int,
    sample_every: int,
    home: Path,
    label: str,
) -> dict[str, Any]:
    """`runs` runs of `per_run` new writer files each; per-run times and sampled figures."""
    from wflog_assets.tools.generate import gzip_lines, writer_flushes

    files = writer_flushes(day, runs * per_run)
    times: list[float] = []
    samples: list[dict[str, Any]] = []
    lines = 0
    workflow: str | None = None
    closed_workflow = heaviest_workflow(backend.table(), CLOSED) if label == "day" else None
    storage_before = _dir_bytes(home)
    for run in range(runs):
        for _ in range(per_run):
            key, batch = next(files)
            backend.store.write(key, gzip_lines(batch))
            lines += len(batch)
        started = time.perf_counter()
        backend.run_day(day, instance, commit={"checks": "run"})  # judged as today is
        times.append(time.perf_counter() - started)
        if run % sample_every == 0 or run == runs - 1:
            table = backend.table()
            workflow = workflow or heaviest_workflow(table, day)
            figures = table_figures(table, day)
            figures["run"] = run + 1
            figures["p0_open_s"], figures["p0_open_files"] = p0_seconds(table, workflow)
            if closed_workflow is not None:
                figures["p0_closed_s"], figures["p0_closed_files"] = p0_seconds(table, closed_workflow)
            figures["dagster_bytes_per_run"] = (_dir_bytes(home) - storage_before) // (run + 1)
            figures["median_run_s_last_20"] = statistics.median(times[-20:])
            samples.append(figures)
            print(json.dumps({label: str(day), **figures}), flush=True)
    rows = backend.table().scan(row_filter=_day_filter(day)).count()
    return {"times": times, "samples": samples, "lines": lines, "rows": rows, "exact": rows == lines}


def _day_filter(day: dt.date) -> Any:
    from wflog_assets.day import Day
    from wflog_assets.iceberg.plan import day_filter

    return day_filter(Day(day))


def by_hour(times: list[float]) -> list[float]:
    """Median run time of each of 24 equal slices of the day's runs."""
    n = len(times)
    return [
        round(statistics.median(times[h * n // 24 : max((h + 1) * n // 24, h * n // 24 + 1)]), 3)
        for h in range(24)
        if h * n // 24 < n
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1440)
    parser.add_argument("--files-per-run", type=int, default=14)
    parser.add_argument("--sample-every", type=int, default=60)
    parser.add_argument("--s3-latency-ms", type=float, default=None)
    parser.add_argument("--month-days", type=int, default=0)
    parser.add_argument("--month-runs", type=int, default=48)
    parser.add_argument("--window-s", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import dagster as dg

    from wflog_assets.day import day_prefix
    from wflog_assets.tools.generate import gzip_lines, writer_flushes

    root = Path(tempfile.mkdtemp(prefix="wflog-long-haul-"))
    home = root / "dagster_home"
    home.mkdir()
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        with (
            backend_for(args.s3_latency_ms, root) as backend,
            dg.DagsterInstance.from_config(str(home)) as instance,
        ):
            # a closed day beside the open one, packed in 40 files and committed once
            flushes = list(writer_flushes(CLOSED, 2000))
            per = -(-len(flushes) // 40)
            for index in range(40):
                chunk = [line for _, batch in flushes[index * per : (index + 1) * per] for line in batch]
                key = f"{day_prefix(CLOSED)}hour={index * 24 // 40:02d}/{index:06d}_packed.json.gz"
                backend.store.write(key, gzip_lines(chunk))
            backend.run_day(CLOSED, instance)
            scale_window(backend, args.window_s)
            day = ingest_day(
                backend, instance, DAY, args.runs, args.files_per_run, args.sample_every, home, "day"
            )
            times = day["times"]
            first = statistics.median(times[1:61]) if len(times) > 61 else statistics.median(times[1:])
            last = statistics.median(times[-60:])
            p0 = [s["p0_open_s"] for s in day["samples"]]
            at_60 = next((s["p0_open_s"] for s in day["samples"] if s["run"] >= 60), p0[0])
            summary = {
                "runs": len(times),
                "median_runs_2_61_s": round(first, 3),
                "median_last_60_s": round(last, 3),
                "last_over_first": round(last / first, 2),
                "p0_open_at_end_over_at_run_60": round(p0[-1] / at_60, 2),
                "run_s_by_hour": by_hour(times),
                "rows": day["rows"],
                "lines_written": day["lines"],
                "exact": day["exact"],
            }
            print(json.dumps({"summary": summary}), flush=True)
            report["day"] = {**summary, "samples": day["samples"]}
            if args.month_days:
                report["month"] = month(backend, instance, args, home)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


def scale_window(backend: Any, window_s: float) -> None:
    """The table's snapshot window, scaled to the bench's compressed time."""
    with backend.table().transaction() as tx:
        tx.set_properties({"history.expire.max-snapshot-age-ms": str(int(window_s * 1000))})


def month(backend: Any, instance: Any, args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """Days in fast-forward, each closed day compacted and cleaned; the snapshot window scaled."""
    from wflog_assets.iceberg.maintenance import compact_day, remove_orphan_files

    days = [DAY + dt.timedelta(days=1 + i) for i in range(args.month_days)]
    per_day = []
    p0_day2: float | None = None
    workflow_day2: str | None = None
    for index, day in enumerate(days):
        result = ingest_day(
            backend, instance, day, args.month_runs, args.files_per_run, args.month_runs, home, "month"
        )
        compact_day(backend.table, day)
        window = dt.timedelta(seconds=args.window_s)
        remove_orphan_files(backend.table(), dt.datetime.now(dt.UTC) - window)
        if index == 0:
            workflow_day2 = heaviest_workflow(backend.table(), day)
        assert workflow_day2 is not None
        seconds, files = p0_seconds(backend.table(), workflow_day2)
        p0_day2 = p0_day2 if p0_day2 is not None else seconds
        figures = {
            **table_figures(backend.table(), day),
            "day": str(day),
            "exact": result["exact"],
            "median_run_s": round(statistics.median(result["times"]), 3),
            "p0_day2_s": round(seconds, 4),
            "p0_day2_files": files,
        }
        per_day.append(figures)
        print(json.dumps({"month_day": figures}), flush=True)
    return {
        "days": per_day,
        "p0_day2_end_over_start": round(per_day[-1]["p0_day2_s"] / per_day[0]["p0_day2_s"], 2),
    }


if __name__ == "__main__":
    main()
