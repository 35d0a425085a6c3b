"""Data quality: screening rules, the quarantine and the per-day checks (no Dagster)."""
