"""Source side: the day's manifest, object stores, file formats and normalization (no Dagster)."""
