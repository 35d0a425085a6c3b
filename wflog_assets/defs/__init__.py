"""Dagster wiring: partitions, resources, IO manager, assets, jobs."""
