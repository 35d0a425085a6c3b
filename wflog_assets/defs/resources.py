"""Resources: where the logs come from, the Iceberg catalog, and the staging IO manager.

Each has an abstract base and interchangeable implementations (embedded default and
production), like `project_fully_featured`. Values arrive through resource fields; secrets are
always `dg.EnvVar`s, so they are resolved at run time and never shown in the UI.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from botocore.config import Config
from dagster_aws.s3 import S3Resource
from pydantic import Field, field_validator
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from wflog_assets.iceberg.catalogs import load_if_exists, open_catalog, rest_properties, sqlite_properties
from wflog_assets.iceberg.schema import DEFAULT_LAYOUT, table_identifier
from wflog_assets.iceberg.tables import ensure_table
from wflog_assets.process import end_run, start_run
from wflog_assets.source.stores import LocalObjectStore, ObjectStore, S3ObjectStore
from wflog_assets.staging.persist import LISTING, load_staged, save_staged
from wflog_assets.staging.pieces import StagedRuns

MAX_POOL_CONNECTIONS = 64


def secret(value: str | None) -> str | None:
    """A field's value: inside a run Dagster has resolved a `dg.EnvVar` already; outside one (a
    script, the CLI, a notebook) the field still holds the `EnvVar`, whose text is the variable's
    NAME, so it is read from the environment here."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value


class SourceS3Resource(S3Resource):
    """dagster-aws `S3Resource` plus path-style addressing (needed by most S3-compatible stores)."""

    path_style: bool = Field(
        default=False,
        description="Address buckets as <endpoint>/<bucket> instead of <bucket>.<endpoint>. "
        "Set true for MinIO, SeaweedFS and other S3-compatible endpoints.",
    )

    def get_client(self) -> Any:
        config = Config(
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if self.path_style else "auto"},
            # as many pooled connections as GETs in flight for batches of small files
            max_pool_connections=MAX_POOL_CONNECTIONS,
        )
        session = boto3.session.Session(profile_name=self.profile_name)
        return session.client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id=secret(self.aws_access_key_id),
            aws_secret_access_key=secret(self.aws_secret_access_key),
            aws_session_token=secret(self.aws_session_token),
            config=config,
        )

    def arrow_filesystem(self) -> pafs.S3FileSystem:
        """The same endpoint and credentials as a pyarrow filesystem (for staging files)."""
        endpoint = urlparse(self.endpoint_url) if self.endpoint_url else None
        return pafs.S3FileSystem(
            access_key=secret(self.aws_access_key_id),
            secret_key=secret(self.aws_secret_access_key),
            session_token=secret(self.aws_session_token),
            region=self.region_name or "us-east-1",
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
            force_virtual_addressing=False if self.path_style else None,
        )


# --------------------------------------------------------------------------- source


class LogSourceResource(dg.ConfigurableResource, ABC):  # type: ignore[type-arg]  # Dagster: no default
    """Where the chunk files are: `<root>/year=YYYY/month=MM/day=DD/[hour=HH/]chunk-*.parquet`."""

    @abstractmethod
    def object_store(self) -> ObjectStore:
        """The store to list and read."""

    @abstractmethod
    def describe(self) -> str:
        """Where the files are, for metadata (never credentials)."""


class LocalLogSource(LogSourceResource):
    """A local directory laid out like the bucket (the embedded default)."""

    root: str = Field(description="Directory that holds the year=/month=/day= folders.")

    def object_store(self) -> ObjectStore:
        return LocalObjectStore(self.root)

    def describe(self) -> str:
        return str(Path(self.root).resolve())


class S3LogSource(LogSourceResource):
    """An S3 bucket and prefix."""

    s3: SourceS3Resource
    bucket: str = Field(description="Bucket that holds the log chunk files.")
    prefix: str = Field(default="", description="Key prefix above the year= folders, e.g. `logs/workflows`.")

    @field_validator("bucket")
    @classmethod
    def _bucket_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("WFLOG_S3_BUCKET is empty: set it to the bucket holding the logs")
        return value

    def object_store(self) -> ObjectStore:
        return S3ObjectStore(self.s3.get_client(), self.bucket, self.prefix)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}"


# --------------------------------------------------------------------------- catalog


class IcebergCatalogResource(dg.ConfigurableResource, ABC):  # type: ignore[type-arg]  # Dagster: no default
    """A pyiceberg catalog and the table the logs go to."""

    namespace: str = Field(default="workflow_logs", description="Iceberg namespace of the table.")
    table_name: str = Field(default="workflow_logs", description="Iceberg table name.")

    @abstractmethod
    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg catalog properties."""

    def describe(self) -> str:
        """Where the catalog is, for messages (never credentials)."""
        return self.catalog_properties()["uri"]

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        start_run()  # Arrow's lean allocator; the run's collections skip the loaded modules

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        end_run()

    def load_catalog(self) -> Catalog:
        return open_catalog(self.catalog_properties())

    def identifier(self, suffix: str = "") -> str:
        return f"{self.namespace}.{self.table_name}{suffix}"

    def layout_identifier(self, layout: str = DEFAULT_LAYOUT) -> str:
        """The table of a partition layout: the configured name for wf_month, suffixed otherwise."""
        return table_identifier(self.namespace, self.table_name, layout)

    def existing_table(self, catalog: Catalog, layout: str = DEFAULT_LAYOUT) -> Table | None:
        """The layout's table, or None before its first commit."""
        identifier = self.layout_identifier(layout)
        return load_if_exists(catalog, identifier)

    def ensure_table(self, layout: str = DEFAULT_LAYOUT, catalog: Catalog | None = None) -> Table:
        """Create (or check) the layout's table; pass `catalog` to reuse one already loaded."""
        return ensure_table(catalog or self.load_catalog(), self.layout_identifier(layout), layout)


class SqliteCatalogResource(IcebergCatalogResource):
    """Embedded default: a SQLite `SqlCatalog` and a local warehouse, nothing to start."""

    data_dir: str = Field(description="Directory for catalog.db and warehouse/.")

    def catalog_properties(self) -> dict[str, str]:
        return sqlite_properties(self.data_dir)


class RestCatalogResource(IcebergCatalogResource):
    """An Iceberg REST catalog (Apache Polaris in production) with OAuth2 client credentials."""

    uri: str = Field(description="Catalog endpoint, e.g. https://polaris.example.com/api/catalog")
    credential: str | None = Field(
        default=None, description="OAuth2 client credentials `client_id:client_secret`."
    )
    warehouse: str = Field(description="Catalog (Polaris) or warehouse location to use.")
    scope: str | None = Field(default=None, description="OAuth2 scope, e.g. PRINCIPAL_ROLE:ALL for Polaris.")
    oauth2_server_uri: str | None = Field(
        default=None,
        description="OAuth2 token endpoint; default `<uri>/v1/oauth/tokens` (Polaris' own).",
    )
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint for data files.")
    s3_access_key_id: str | None = Field(default=None, description="S3 key for data files.")
    s3_secret_access_key: str | None = Field(default=None, description="S3 secret.")
    s3_region: str = Field(
        default="us-east-1",
        description="S3 region; always set (pyiceberg otherwise waits ~6 s per call to probe it).",
    )
    s3_path_style: bool = Field(default=False, description="Path-style S3 addressing.")

    @field_validator("uri")
    @classmethod
    def _uri_is_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"WFLOG_CATALOG_URI={value!r} must be an http(s):// URL")
        return value

    def catalog_properties(self) -> dict[str, str]:
        return rest_properties(
            uri=self.uri,
            warehouse=self.warehouse,
            credential=secret(self.credential),
            scope=self.scope,
            oauth2_server_uri=self.oauth2_server_uri,
            s3_endpoint=self.s3_endpoint,
            s3_access_key_id=secret(self.s3_access_key_id),
            s3_secret_access_key=secret(self.s3_secret_access_key),
            s3_region=self.s3_region,
            s3_path_style=self.s3_path_style,
        )


# --------------------------------------------------------------------------- staging


STAGED_BY_RUN = b"wflog.staged_by_run"
# input metadata: the asset handles "nothing staged" itself (it lists and stages afresh)
OPTIONAL_STAGING = "wflog/optional_staging"


def staged_by_run(table: pa.Table) -> str | None:
    """The run that staged a table loaded by `ArrowStagingIOManager`."""
    value = (table.schema.metadata or {}).get(STAGED_BY_RUN)
    return value.decode() if value is not None else None


class ArrowStagingIOManager(dg.ConfigurableIOManager):
    """Stages Arrow tables as Parquet files and a day's sorted runs as a folder of run files
    (locally or on S3), one per asset partition.

    Loading returns a `pyarrow.Table` read back from that file, or the `StagedRuns` (runs on S3
    downloaded once into a local temporary directory), so nothing is pickled.
    """

    root: str = Field(description="Local directory or s3://bucket/prefix for staged files.")
    s3: SourceS3Resource = Field(
        default_factory=SourceS3Resource,
        description="Endpoint and credentials when `root` is on S3.",
    )

    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        if self.root.startswith("s3://"):
            return self.s3.arrow_filesystem(), self.root.removeprefix("s3://").rstrip("/")
        base = Path(self.root).resolve()
        base.mkdir(parents=True, exist_ok=True)
        return pafs.LocalFileSystem(), base.as_posix()

    def _partition_folder(self, context: dg.InputContext | dg.OutputContext, base: str) -> str:
        partition = context.asset_partition_key if context.has_asset_partitions else "all"
        return f"{base}/{partition}"

    def _asset(self, context: dg.InputContext | dg.OutputContext) -> str:
        return "/".join(context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: pa.Table | StagedRuns) -> None:
        """Stage under `<root>/<partition>/<run id>/<asset>`: every run has its own folder, so
        two runs of one day never read each other's files."""
        fs, base = self._fs_and_base()
        run_folder = f"{self._partition_folder(context, base)}/{context.run_id}"
        path = f"{run_folder}/{self._asset(context)}"
        if isinstance(obj, StagedRuns):  # a day's sorted runs: a folder
            started = time.perf_counter()
            size = save_staged(obj, fs, path)
            context.add_output_metadata(
                {
                    "staged_path": self.root.rstrip("/") + path[len(base) :],
                    "staged_runs": len(obj.runs),
                    "staged_bytes": size,
                    "staging_write_s": round(time.perf_counter() - started, 3),
                }
            )
            return
        if not isinstance(obj, pa.Table):
            raise TypeError(f"{type(self).__name__} stages pyarrow Tables or StagedRuns, got {type(obj)}")
        path += ".parquet"
        fs.create_dir(run_folder, recursive=True)
        if isinstance(fs, pafs.LocalFileSystem):  # S3 uploads are atomic by themselves
            tmp = f"{path}.tmp-{os.getpid()}"
            pq.write_table(obj, tmp, filesystem=fs, row_group_size=128 * 1024)
            fs.move(tmp, path)
        else:
            pq.write_table(obj, path, filesystem=fs, row_group_size=128 * 1024)
        context.add_output_metadata({"staged_path": self.root.rstrip("/") + path[len(base) :]})

    def _find(self, context: dg.InputContext, fs: pafs.FileSystem, base: str) -> tuple[str, str]:
        """(run folder, path) of the asset's staging: this run's own if it made one, else the
        newest run's (an asset materialized alone reads what an earlier run staged)."""
        folder, asset = self._partition_folder(context, base), self._asset(context)
        try:
            run_id: str | None = context.step_context.run_id
        except dg.DagsterInvariantViolationError:
            run_id = None
        names = (f"{asset}/{LISTING}", f"{asset}.parquet")
        if run_id is not None:
            for name in names:
                if fs.get_file_info(f"{folder}/{run_id}/{name}").type == pafs.FileType.File:
                    return f"{folder}/{run_id}", f"{folder}/{run_id}/{name}"
        candidates = [
            info
            for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=True))
            if info.type == pafs.FileType.File
            and info.path.endswith(names)
            and info.path.count("/") - folder.count("/") in (2, 3)
        ]
        if not candidates:
            raise FileNotFoundError(
                f"nothing staged for {asset} of {context.asset_partition_key} under {folder}: "
                "materialize the upstream assets of that day first"
            )
        newest = max(candidates, key=lambda info: info.mtime_ns or 0)
        run_folder = folder + "/" + newest.path[len(folder) + 1 :].split("/", 1)[0]
        return run_folder, newest.path

    def load_input(self, context: dg.InputContext) -> pa.Table | StagedRuns | None:
        """What an earlier step of this run staged, or else the newest run's; for an input
        declared with `OPTIONAL_STAGING` metadata, None when nothing is staged."""
        fs, base = self._fs_and_base()
        try:
            run_folder, path = self._find(context, fs, base)
        except FileNotFoundError:
            if (context.definition_metadata or {}).get(OPTIONAL_STAGING):
                return None
            raise
        if path.endswith(LISTING):
            local = tempfile.mkdtemp(prefix="wflog-runs-")
            atexit.register(shutil.rmtree, local, ignore_errors=True)
            started = time.perf_counter()
            staged = load_staged(fs, path.rsplit("/", 1)[0], local)
            staged.location = (fs, run_folder)  # removed whole once the day is committed
            staged.staged_by_run = run_folder.rsplit("/", 1)[1]
            context.log.info(
                f"staged runs of {run_folder} loaded in "
                f"{time.perf_counter() - started:.2f} s ({len(staged.runs)} runs)"
            )
            return staged
        table = pq.read_table(path, filesystem=fs)
        metadata = {**(table.schema.metadata or {}), STAGED_BY_RUN: run_folder.rsplit("/", 1)[1].encode()}
        return table.replace_schema_metadata(metadata)
