"""Environment variables -> resource fields, in one place (read when definitions load)."""

from __future__ import annotations

import dagster as dg

from wflog_assets.defs.resources import (
    ArrowStagingIOManager,
    IcebergCatalogResource,
    LocalLogSource,
    LogSourceResource,
    RestCatalogResource,
    S3LogSource,
    SourceS3Resource,
    SqliteCatalogResource,
)
from wflog_assets.environment import (
    ENV_SETTINGS,
    boolean,
    catalog_kind,
    choice,
    data_dir,
    end_date,
    get,
    required,
    rest_catalog_fields,
    sensor_interval_s,
    sensor_lookback_days,
    start_date,
    table_names,
)

__all__ = [  # ENV_SETTINGS and the readers, re-exported with the resources built from them
    "ENV_SETTINGS",
    "data_dir",
    "end_date",
    "iceberg_catalog",
    "log_source",
    "resources_from_env",
    "s3_resource",
    "sensor_interval_s",
    "sensor_lookback_days",
    "staging_io_manager",
    "start_date",
]


def _secret(name: str) -> str | None:
    """A secret as an EnvVar reference (resolved at run time), or None when unset."""
    return dg.EnvVar(name) if get(name) else None


def s3_resource() -> SourceS3Resource:
    return SourceS3Resource(
        endpoint_url=get("WFLOG_S3_ENDPOINT_URL"),
        region_name=get("WFLOG_S3_REGION"),
        path_style=boolean("WFLOG_S3_PATH_STYLE"),
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
    )


def log_source() -> LogSourceResource:
    if choice("WFLOG_SOURCE", ("local", "s3")) == "s3":
        return S3LogSource(
            s3=s3_resource(),
            bucket=required("WFLOG_S3_BUCKET", "when WFLOG_SOURCE=s3"),
            prefix=get("WFLOG_S3_PREFIX") or "",
        )
    root = dg.EnvVar("WFLOG_SOURCE_DIR").get_value() or str(data_dir() / "source")
    return LocalLogSource(root=root)


def iceberg_catalog() -> IcebergCatalogResource:
    namespace, table = table_names()
    if catalog_kind() == "rest":
        return RestCatalogResource(**rest_catalog_fields(_secret), namespace=namespace, table_name=table)
    return SqliteCatalogResource(data_dir=str(data_dir()), namespace=namespace, table_name=table)


def staging_io_manager() -> ArrowStagingIOManager:
    root = dg.EnvVar("WFLOG_STAGING").get_value() or str(data_dir() / "staging")
    return ArrowStagingIOManager(root=root, s3=s3_resource())


def resources_from_env() -> dict[str, object]:
    return {
        "log_source": log_source(),
        "iceberg": iceberg_catalog(),
        "staging_io_manager": staging_io_manager(),
    }
