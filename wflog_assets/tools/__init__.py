"""Tools around the pipeline: demo data generator, ClickHouse converter, layout report."""
