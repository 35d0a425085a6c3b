"""wflog-assets: workflow logs from S3 chunk files into an Apache Iceberg table, as Dagster assets."""

from wflog_assets.allocator import choose_before_arrow
from wflog_assets.heap import keep_loaded

# Arrow picks its allocator at its first allocation in a process; a Dagster run worker imports
# this package before any (allocator.py says why jemalloc, and how to choose another).
choose_before_arrow()
# A run worker has loaded Dagster by now: later collections skip its modules (heap.py).
keep_loaded()
