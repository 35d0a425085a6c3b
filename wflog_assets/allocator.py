"""Which allocator Arrow's buffers come from, for the whole process.

pyarrow's default on Linux is mimalloc, which keeps freed pages resident: a day's run, whose
batches come and go all the time, peaked 30-40% higher with it than with jemalloc or the
system allocator for the same work (`bench/bench_stream.py`, `bench/bench_ingest.py`, see
docs/benchmarks.md). `ARROW_DEFAULT_MEMORY_POOL`, when set, still decides.
"""

from __future__ import annotations

import os

import pyarrow as pa


def use_lean_allocator() -> str:
    """Make jemalloc (else the system allocator) Arrow's default pool, unless the operator chose
    one with `ARROW_DEFAULT_MEMORY_POOL`; the backend now in use."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa.default_memory_pool().backend_name
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    return pool.backend_name
