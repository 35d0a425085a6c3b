"""pyiceberg catalog properties for the two catalogs the project runs on, and opening one
(no Dagster here: the resources and the CLI's quick paths both use it)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import requests
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import StaticTable, Table

from wflog_assets.errors import CatalogUnavailableError

CATALOG_NAME = "wflog"


def load_if_exists(catalog: Catalog, identifier: str) -> Table | None:
    """The table, or None when the catalog has none of that name (one request, not two)."""
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        return None


def open_or_create(catalog: Catalog, identifier: str, **create: Any) -> Table:
    """The table, created (with its namespace) only when missing. pyiceberg's
    `create_table_if_not_exists` writes a new metadata file before it finds the table exists:
    one orphan per call, so it is only the fallback of a load that found nothing."""
    table = load_if_exists(catalog, identifier)
    if table is not None:
        return table
    catalog.create_namespace_if_not_exists(identifier.rsplit(".", 1)[0])
    return catalog.create_table_if_not_exists(identifier, **create)


def sqlite_properties(data_dir: str) -> dict[str, str]:
    """The embedded default: a SQLite `SqlCatalog` and a local warehouse under `data_dir`."""
    root = Path(data_dir).resolve()
    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    return {
        "type": "sql",
        "uri": f"sqlite:///{root / 'catalog.db'}",
        "warehouse": (root / "warehouse").as_uri(),
        "init_catalog_tables": "true",
    }


def rest_properties(
    uri: str,
    warehouse: str,
    credential: str | None = None,
    scope: str | None = None,
    oauth2_server_uri: str | None = None,
    s3_endpoint: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_region: str = "us-east-1",
    s3_path_style: bool = False,
) -> dict[str, str]:
    """An Iceberg REST catalog (Polaris) with OAuth2 client credentials, data files on S3."""
    props = {
        "type": "rest",
        "uri": uri,
        "warehouse": warehouse,
        "s3.region": s3_region,
        "s3.path-style-access": str(s3_path_style).lower(),
    }
    token_uri = oauth2_server_uri or f"{uri.rstrip('/')}/v1/oauth/tokens"
    optional = {
        "credential": credential,
        "oauth2-server-uri": token_uri if credential else None,
        "scope": scope,
        "s3.endpoint": s3_endpoint,
        "s3.access-key-id": s3_access_key_id,
        "s3.secret-access-key": s3_secret_access_key,
    }
    props.update({k: v for k, v in optional.items() if v})
    return props


def read_table(properties: dict[str, str], identifier: str) -> Table | None:
    """The table's current state for reading, or None if the catalog has no such table. On the
    embedded SQLite catalog it reads the table's metadata location straight from the catalog's
    `iceberg_tables` row (the SQL catalog's schema) with the standard library, which spares a
    query's start-up SQLAlchemy and pyiceberg's `SqlCatalog`; any other catalog is loaded."""
    uri = properties.get("uri", "")
    if properties.get("type") != "sql" or not uri.startswith("sqlite:///"):
        return load_if_exists(open_catalog(properties), identifier)
    namespace, name = identifier.rsplit(".", 1)
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        return None
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT metadata_location FROM iceberg_tables"
            " WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
            (CATALOG_NAME, namespace, name),
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return StaticTable.from_metadata(row[0], properties)


def open_catalog(properties: dict[str, str]) -> Catalog:
    """The catalog; a catalog that cannot be reached is `CatalogUnavailableError`, saying what to do."""
    try:
        return load_catalog(CATALOG_NAME, **properties)
    except requests.exceptions.ConnectionError as exc:
        raise CatalogUnavailableError(
            f"the Iceberg catalog at {properties['uri']} cannot be reached "
            f"({type(exc).__name__}: connection refused or reset); nothing was committed: "
            "check WFLOG_CATALOG_URI and re-run the day when the catalog is back"
        ) from exc
