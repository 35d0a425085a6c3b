"""Peak memory of a day holding one big `.json.gz`, against plain pyarrow reading that file.

    .venv/bin/python bench/bench_big_json.py [--mb 300] [--cycling] [--out f.json]

Writes a day of the current writer's shape (`generate.writer_flushes`, 400 files) plus ONE
`.json.gz` of `--mb` MB of decompressed lines (writer records, in time order, or with
`--cycling` passing through the whole day again and again), then in child processes:

- `baseline`: plain pyarrow reads that one file whole (`pyarrow.json.read_json` over a gzip
  input stream), the way a loader without blocks would;
- `ingest`: the ingest job on the whole day (embedded catalog), as `wflog-assets materialize`
  (`wflog_assets_testing.memory.ingest_in_child`).

Prints each child's peak RSS (`wait4`) and seconds, and ingest / baseline. Figures only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wflog_assets_testing.memory import ingest_in_child

DAY = dt.date(2026, 11, 3)


def make_day(root: Path, megabytes: int, cycling: bool = False) -> tuple[str, int]:
    """The day's files under `root`: 400 writer files and the big one; (its key, its lines)."""
    from wflog_assets.source.stores import LocalObjectStore
    from wflog_assets.tools.generate import gzip_lines, writer_flushes
    from wflog_assets_testing.memory import write_big_json

    store = LocalObjectStore(root)
    for key, lines in writer_flushes(DAY, 400, seed=1):
        store.write(key, gzip_lines(lines))
    return write_big_json(root, DAY, megabytes, cycling=cycling)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="decompressed MB of the big file")
    parser.add_argument("--cycling", action="store_true", help="the big file's lines cycle through the day")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wflog-bigjson-") as tmp:
        root = Path(tmp) / "source"  # the embedded backend of `tmp` (`wflog_assets_testing`)
        key, lines = make_day(root, args.mb, args.cycling)
        size = (root / key).stat().st_size
        print(
            f"one .json.gz of {args.mb} MB decompressed ({size / 1e6:.1f} MB gzip, {lines} lines), 400 others"
        )
        baseline = run_child(["_baseline", str(root / key)])
        ingest = ingest_in_child(Path(tmp), DAY)
        for name, figures in (("baseline", baseline), ("ingest", ingest)):
            print(f"  {name:9} {figures['seconds']:6.1f} s  {figures['peak_rss_mib']:5} MiB  {figures}")
        ratio = round(ingest["peak_rss_mib"] / baseline["peak_rss_mib"], 2)
        print(f"  ratios: {{'ingest/baseline peak RSS': {ratio}}}")
        if args.out:
            Path(args.out).write_text(json.dumps({"baseline": baseline, "ingest": ingest, "mb": args.mb}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        child_baseline(sys.argv[2])
    else:
        main()
