"""Environment variables -> resource fields, in one place (read when definitions load)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from wflog_assets.defs.partitions import DEFAULT_START_DATE
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


@dataclass(frozen=True)
class EnvSetting:
    name: str
    default: str | None
    configures: str
    secret: bool = False


# Every variable the project reads. README's table is this list.
ENV_SETTINGS: tuple[EnvSetting, ...] = (
    EnvSetting(
        "WFLOG_DATA_DIR",
        ".wflog",
        "Embedded default's home: source/, catalog.db, "
        "warehouse/, staging/ (relative to the working directory)",
    ),
    EnvSetting("WFLOG_START_DATE", DEFAULT_START_DATE, "First day partition (YYYY-MM-DD, UTC)"),
    EnvSetting("WFLOG_SOURCE", "local", "`local` (a directory) or `s3`"),
    EnvSetting("WFLOG_SOURCE_DIR", "$WFLOG_DATA_DIR/source", "Local source directory"),
    EnvSetting("WFLOG_S3_BUCKET", None, "Source bucket (WFLOG_SOURCE=s3)"),
    EnvSetting("WFLOG_S3_PREFIX", "", "Key prefix above year=/month=/day="),
    EnvSetting("WFLOG_S3_ENDPOINT_URL", None, "S3 endpoint (unset: AWS)"),
    EnvSetting("WFLOG_S3_REGION", "us-east-1", "S3 region (source, staging and data files)"),
    EnvSetting("WFLOG_S3_PATH_STYLE", "false", "`true` for path-style S3 addressing"),
    EnvSetting("AWS_ACCESS_KEY_ID", None, "S3 access key (unset: default AWS chain)", True),
    EnvSetting("AWS_SECRET_ACCESS_KEY", None, "S3 secret key", True),
    EnvSetting(
        "WFLOG_STAGING",
        "$WFLOG_DATA_DIR/staging",
        "Staging root: directory or s3://bucket/prefix for normalized batches",
    ),
    EnvSetting("WFLOG_CATALOG", "sqlite", "`sqlite` (embedded) or `rest` (Polaris)"),
    EnvSetting("WFLOG_CATALOG_URI", None, "REST catalog URI"),
    EnvSetting("WFLOG_CATALOG_CREDENTIAL", None, "REST OAuth2 `client_id:client_secret`", True),
    EnvSetting(
        "WFLOG_CATALOG_WAREHOUSE",
        None,
        "REST warehouse: the Polaris catalog name, or a location such as s3://warehouse",
    ),
    EnvSetting("WFLOG_CATALOG_SCOPE", None, "REST OAuth2 scope, e.g. PRINCIPAL_ROLE:ALL"),
    EnvSetting(
        "WFLOG_SENSOR_LOOKBACK_DAYS",
        "3",
        "Days before the newest day folder that each sensor tick re-lists for late files",
    ),
    EnvSetting("WFLOG_SENSOR_INTERVAL_S", "60", "Minimum seconds between sensor ticks"),
    EnvSetting("WFLOG_NAMESPACE", "workflow_logs", "Iceberg namespace"),
    EnvSetting("WFLOG_TABLE", "workflow_logs", "Iceberg table name"),
)


def _get(name: str) -> str | None:
    setting = next(s for s in ENV_SETTINGS if s.name == name)
    value = dg.EnvVar(name).get_value()
    return value if value not in (None, "") else setting.default


def _secret(name: str) -> str | None:
    """A secret as an EnvVar reference (resolved at run time), or None when unset."""
    return dg.EnvVar(name) if dg.EnvVar(name).get_value() else None


def _bool(name: str) -> bool:
    value = (_get(name) or "").strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{name}={value!r}: use true or false")
    return value in ("true", "1", "yes")


def _choice(name: str, allowed: tuple[str, ...]) -> str:
    value = (_get(name) or "").strip().lower()
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: use one of {', '.join(allowed)}")
    return value


def integer(name: str) -> int:
    value = (_get(name) or "").strip()
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r}: use a whole number") from exc


def _required(name: str, why: str) -> str:
    value = _get(name)
    if not value:
        raise ValueError(f"{name} is not set: it is required {why}")
    return value


def data_dir() -> Path:
    return Path(_get("WFLOG_DATA_DIR") or ".wflog").resolve()


def start_date() -> str:
    return _get("WFLOG_START_DATE") or DEFAULT_START_DATE


def sensor_lookback_days() -> int:
    return integer("WFLOG_SENSOR_LOOKBACK_DAYS")


def sensor_interval_s() -> int:
    return integer("WFLOG_SENSOR_INTERVAL_S")


def s3_resource() -> SourceS3Resource:
    return SourceS3Resource(
        endpoint_url=_get("WFLOG_S3_ENDPOINT_URL"),
        region_name=_get("WFLOG_S3_REGION"),
        path_style=_bool("WFLOG_S3_PATH_STYLE"),
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
    )


def log_source() -> LogSourceResource:
    if _choice("WFLOG_SOURCE", ("local", "s3")) == "s3":
        return S3LogSource(
            s3=s3_resource(),
            bucket=_required("WFLOG_S3_BUCKET", "when WFLOG_SOURCE=s3"),
            prefix=_get("WFLOG_S3_PREFIX") or "",
        )
    root = dg.EnvVar("WFLOG_SOURCE_DIR").get_value() or str(data_dir() / "source")
    return LocalLogSource(root=root)


def iceberg_catalog() -> IcebergCatalogResource:
    names = {
        field: value
        for field, value in (("namespace", _get("WFLOG_NAMESPACE")), ("table_name", _get("WFLOG_TABLE")))
        if value is not None
    }
    if _choice("WFLOG_CATALOG", ("sqlite", "rest")) == "rest":
        return RestCatalogResource(
            uri=_required("WFLOG_CATALOG_URI", "when WFLOG_CATALOG=rest"),
            credential=_secret("WFLOG_CATALOG_CREDENTIAL"),
            warehouse=_required("WFLOG_CATALOG_WAREHOUSE", "when WFLOG_CATALOG=rest"),
            scope=_get("WFLOG_CATALOG_SCOPE"),
            s3_endpoint=_get("WFLOG_S3_ENDPOINT_URL"),
            s3_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
            s3_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
            s3_region=_get("WFLOG_S3_REGION") or "us-east-1",
            s3_path_style=_bool("WFLOG_S3_PATH_STYLE"),
            **names,
        )
    return SqliteCatalogResource(data_dir=str(data_dir()), **names)


def staging_io_manager() -> ArrowStagingIOManager:
    root = dg.EnvVar("WFLOG_STAGING").get_value() or str(data_dir() / "staging")
    return ArrowStagingIOManager(root=root, s3=s3_resource())


def resources_from_env() -> dict[str, object]:
    return {
        "log_source": log_source(),
        "iceberg": iceberg_catalog(),
        "staging_io_manager": staging_io_manager(),
    }
