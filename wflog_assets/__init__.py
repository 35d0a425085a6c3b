"""wflog-assets: workflow logs from S3 chunk files into an Apache Iceberg table, as Dagster assets."""
