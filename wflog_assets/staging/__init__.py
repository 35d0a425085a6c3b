"""A day staged between reading and committing: sorted runs in bounded memory (no Dagster)."""
