"""Peak memory of a day holding one big `.json.gz`, against plain pyarrow reading that file.

    .venv/bin/python bench/bench_big_json.py [--mb 300] [--out f.json]

Writes a day of the current writer's shape (`generate.writer_flushes`, 400 files) plus ONE
`.json.gz` of `--mb` MB of decompressed lines (writer records), then in child processes:

- `baseline`: plain pyarrow reads that one file whole (`pyarrow.json.read_json` over a gzip
  input stream), the way a loader without blocks would;
- `ingest`: the ingest job on the whole day (embedded catalog), as `wflog-assets materialize`.

Prints each child's peak RSS (`wait4`) and seconds, and ingest / baseline. Figures only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DAY = dt.date(2026, 11, 3)


def make_day(root: Path, megabytes: int) -> tuple[str, int]:
    """The day's files under `root`; (the big file's key, its lines)."""
    from wflog_assets.day import day_prefix
    from wflog_assets.source.stores import LocalObjectStore
    from wflog_assets.tools.generate import gzip_lines, writer_flushes

    store = LocalObjectStore(root)
    for key, lines in writer_flushes(DAY, 400, seed=1):
        store.write(key, gzip_lines(lines))
    # writer records in time order, each repeated as often as the size asks: a big file of one
    # process's flushes concatenated (an export, a backfill), its lines in time order
    pool = [line for _, lines in writer_flushes(DAY, 2_000, seed=2) for line in lines]
    average = sum(len(line) + 1 for line in pool) / len(pool)
    repeat = max(1, round(megabytes * 1_000_000 / average / len(pool)))
    key = f"{day_prefix(DAY)}hour=12/1762171200000000000_999999_prod-eu-1_atlan-application-sdk.json.gz"
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with gzip.open(path, "wb", compresslevel=6) as out:
        for line in pool:
            out.write((line + "\n").encode() * repeat)
            count += repeat
    return key, count


def run_child(args: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args[0]} failed ({status})")
    figures = json.loads(out.strip().splitlines()[-1])
    figures.update(
        seconds=round(time.perf_counter() - started, 1), peak_rss_mib=round(usage.ru_maxrss / 1024)
    )
    return figures


def child_baseline(path: str) -> None:
    import pyarrow as pa
    import pyarrow.json as pj

    table = pj.read_json(pa.input_stream(path, compression="gzip"))
    print(json.dumps({"rows": table.num_rows}))


def child_ingest(root: str, work: str) -> None:
    import dagster as dg

    from wflog_assets.definitions import INGEST_JOB, build_definitions
    from wflog_assets.defs.resources import ArrowStagingIOManager, LocalLogSource, SqliteCatalogResource

    resources = {
        "log_source": LocalLogSource(root=root),
        "iceberg": SqliteCatalogResource(data_dir=f"{work}/catalog"),
        "staging_io_manager": ArrowStagingIOManager(root=f"{work}/staging"),
    }
    job = build_definitions(resources, "2026-11-01").resolve_job_def(INGEST_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(partition_key=DAY.isoformat(), instance=instance)
    (mat,) = result.asset_materializations_for_node("workflow_logs")
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    print(json.dumps({"day_rows": mat.metadata["day_rows"].value, "failed_checks": failed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="decompressed MB of the big file")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wflog-bigjson-") as tmp:
        root = Path(tmp) / "source"
        key, lines = make_day(root, args.mb)
        size = (root / key).stat().st_size
        print(
            f"one .json.gz of {args.mb} MB decompressed ({size / 1e6:.1f} MB gzip, {lines} lines), 400 others"
        )
        baseline = run_child(["_baseline", str(root / key)])
        ingest = run_child(["_ingest", str(root), str(Path(tmp) / "work")])
        for name, figures in (("baseline", baseline), ("ingest", ingest)):
            print(f"  {name:9} {figures['seconds']:6.1f} s  {figures['peak_rss_mib']:5} MiB  {figures}")
        ratio = round(ingest["peak_rss_mib"] / baseline["peak_rss_mib"], 2)
        print(f"  ratios: {{'ingest/baseline peak RSS': {ratio}}}")
        if args.out:
            Path(args.out).write_text(json.dumps({"baseline": baseline, "ingest": ingest, "mb": args.mb}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        child_baseline(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "_ingest":
        child_ingest(sys.argv[2], sys.argv[3])
    else:
        main()
