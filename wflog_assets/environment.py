"""The environment variables the project reads, defined once, read when called (never at
import). No Dagster here: the Dagster layer (`defs/settings.py`) builds resources from these,
and the CLI's quick paths (the P0 query) open the catalog with them directly."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wflog_assets.errors import SettingError

DEFAULT_START_DATE = "2025-12-01"


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
    EnvSetting(
        "WFLOG_END_DATE",
        None,
        "Last day partition (YYYY-MM-DD, UTC; unset: today, each day a partition as it begins)",
    ),
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


def get(name: str) -> str | None:
    """The variable's value, or its default when unset or empty."""
    setting = next(s for s in ENV_SETTINGS if s.name == name)
    value = os.environ.get(name)
    return value if value not in (None, "") else setting.default


def boolean(name: str) -> bool:
    value = (get(name) or "").strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingError(f"{name}={value!r}: use true or false")
    return value in ("true", "1", "yes")


def choice(name: str, allowed: tuple[str, ...]) -> str:
    value = (get(name) or "").strip().lower()
    if value not in allowed:
        raise SettingError(f"{name}={value!r}: use one of {', '.join(allowed)}")
    return value


def integer(name: str) -> int:
    value = (get(name) or "").strip()
    try:
        return int(value)
    except ValueError as exc:
        raise SettingError(f"{name}={value!r}: use a whole number") from exc


def required(name: str, why: str) -> str:
    value = get(name)
    if not value:
        raise SettingError(f"{name} is not set: it is required {why}")
    return value


def data_dir() -> Path:
    return Path(get("WFLOG_DATA_DIR") or ".wflog").resolve()


def start_date() -> str:
    return get("WFLOG_START_DATE") or DEFAULT_START_DATE


def end_date() -> str | None:
    return get("WFLOG_END_DATE")


def sensor_lookback_days() -> int:
    return integer("WFLOG_SENSOR_LOOKBACK_DAYS")


def sensor_interval_s() -> int:
    return integer("WFLOG_SENSOR_INTERVAL_S")


def catalog_kind() -> str:
    return choice("WFLOG_CATALOG", ("sqlite", "rest"))


def table_names() -> tuple[str, str]:
    """(namespace, table) of the workflow_logs table."""
    return get("WFLOG_NAMESPACE") or "workflow_logs", get("WFLOG_TABLE") or "workflow_logs"


def rest_catalog_fields(secret: Callable[[str], Any]) -> dict[str, Any]:
    """The REST catalog's settings (WFLOG_CATALOG=rest), by the names both
    `catalogs.rest_properties` and the catalog resource take; `secret(name)` gives a secret's
    value (here) or its `dg.EnvVar` (the resource, resolved in a run)."""
    return {
        "uri": required("WFLOG_CATALOG_URI", "when WFLOG_CATALOG=rest"),
        "warehouse": required("WFLOG_CATALOG_WAREHOUSE", "when WFLOG_CATALOG=rest"),
        "credential": secret("WFLOG_CATALOG_CREDENTIAL"),
        "scope": get("WFLOG_CATALOG_SCOPE"),
        "s3_endpoint": get("WFLOG_S3_ENDPOINT_URL"),
        "s3_access_key_id": secret("AWS_ACCESS_KEY_ID"),
        "s3_secret_access_key": secret("AWS_SECRET_ACCESS_KEY"),
        "s3_region": get("WFLOG_S3_REGION") or "us-east-1",
        "s3_path_style": boolean("WFLOG_S3_PATH_STYLE"),
    }


def catalog_properties() -> dict[str, str]:
    """pyiceberg properties of the configured catalog, secrets read from the environment now
    (for a process that is not a Dagster run: the CLI's query)."""
    from wflog_assets.iceberg.catalogs import rest_properties, sqlite_properties

    if catalog_kind() == "rest":
        return rest_properties(**rest_catalog_fields(get))
    return sqlite_properties(str(data_dir()))
