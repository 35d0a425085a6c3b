"""Rows/s reading + normalizing the same records as Parquet chunks and as gzip JSON lines.

    .venv/bin/python bench/bench_formats.py [--rows 200000] [--files 8] [--repeat 3]

Baselines measured in the same run: plain pyarrow parsing of each file (pq.read_table /
pyarrow.json.read_json) without normalization. Prints rows/s and ratios; no timing thresholds.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import statistics
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from wflog_assets.source.formats.jsonl import read_json_lines
from wflog_assets.source.normalize import normalize_table
from wflog_assets.tools.generate import LEVELS, LOGGERS, message_text, open_extra


def records(n: int, seed: int = 3) -> list[dict[str, object]]:
    rng = random.Random(seed)
    names = [f"atlan-salesforce-{1671795233 + i}-cron-{1766791800 + i}" for i in range(20)]
    out = []
    for i in range(n):
        level = rng.choice(LEVELS)
        extra = open_extra(rng, rng.choice(names), temporal_only=rng.random() < 0.1)
        extra["attempt"] = i % 3 + 1
        out.append(
            {
                "timestamp": 1766966400.0 + i * 0.01,
                "level": level,
                "logger_name": rng.choice(LOGGERS),
                "message": message_text(rng, level, i),
                "file": "/app/a.py",
                "line": rng.randrange(900),
                "function": "run",
                "extra": extra,
            }
        )
    return out


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    recs = records(args.rows)
    per = -(-len(recs) // args.files)
    chunks = [recs[i : i + per] for i in range(0, len(recs), per)]
    parquet_files, json_files = [], []
    for chunk in chunks:
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(chunk), sink)
        parquet_files.append(sink.getvalue())
        lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in chunk) + "\n"
        json_files.append(gzip.compress(lines.encode(), mtime=0))

    def parquet_plain() -> int:
        return sum(pq.read_table(io.BytesIO(b)).num_rows for b in parquet_files)

    def json_plain() -> int:
        return sum(
            pj.read_json(pa.input_stream(pa.BufferReader(b), compression="gzip")).num_rows for b in json_files
        )

    def parquet_ours() -> int:
        return sum(
            normalize_table(pq.read_table(io.BytesIO(b)), f"k{i}", "e").table.num_rows
            for i, b in enumerate(parquet_files)
        )

    def json_ours() -> int:
        total = 0
        for i, b in enumerate(json_files):
            parsed = read_json_lines(b, f"k{i}")
            assert parsed.path == "arrow"
            assert not parsed.issues
            total += normalize_table(parsed.table, f"k{i}", "e").table.num_rows
        return total

    mb_parquet = sum(map(len, parquet_files)) / 1e6
    mb_json = sum(map(len, json_files)) / 1e6
    print(
        f"{args.rows} records in {args.files} files: Parquet {mb_parquet:.1f} MB, "
        f"JSON lines gz {mb_json:.1f} MB (median of {args.repeat})"
    )
    results = {}
    for name, fn in [
        ("parquet: pyarrow read only", parquet_plain),
        ("parquet: read + normalize", parquet_ours),
        ("jsonl.gz: pyarrow read only", json_plain),
        ("jsonl.gz: read + normalize", json_ours),
    ]:
        seconds, rows = best_of(args.repeat, fn)
        assert rows == args.rows
        results[name] = seconds
        print(f"  {name:<30} {seconds:7.3f} s  {rows / seconds:>12,.0f} rows/s")
    p_ours, p_plain = results["parquet: read + normalize"], results["parquet: pyarrow read only"]
    j_ours, j_plain = results["jsonl.gz: read + normalize"], results["jsonl.gz: pyarrow read only"]
    print(
        f"  read + normalize vs plain read: parquet {p_ours / p_plain:.2f}x, jsonl.gz {j_ours / j_plain:.2f}x"
    )
    print(f"  jsonl.gz vs parquet (read + normalize): {j_ours / p_ours:.2f}x the time")


if __name__ == "__main__":
    main()
