"""The two backends the tests and benchmarks run on: the embedded default (local directory,
SQLite catalog) and weed mini (real S3 API and Iceberg REST catalog), as resources and as the
environment a separate process would get."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.fs as pafs
from pyiceberg.table import Table

from wflog_assets.definitions import INGEST_JOB, build_definitions
from wflog_assets.defs.resources import (
    ArrowStagingIOManager,
    IcebergCatalogResource,
    LocalLogSource,
    RestCatalogResource,
    S3LogSource,
    SourceS3Resource,
    SqliteCatalogResource,
)
from wflog_assets.source.stores import LocalObjectStore, ObjectStore, S3ObjectStore
from wflog_assets_testing.weed import WeedServer

START = "2025-12-01"


def weed_s3(weed: WeedServer, endpoint: str | None = None) -> SourceS3Resource:
    """weed mini's S3 (`endpoint`: another way to it, e.g. a latency proxy)."""
    return SourceS3Resource(
        endpoint_url=endpoint or weed.s3_endpoint,
        region_name=weed.region,
        path_style=True,
        aws_access_key_id=weed.access_key,
        aws_secret_access_key=weed.secret_key,
    )


@dataclass
class Backend:
    """One complete configuration: where sources go, the catalog, the Dagster resources."""

    name: str
    store: ObjectStore
    catalog: IcebergCatalogResource
    resources: dict[str, Any]

    def definitions(self) -> dg.Definitions:
        return build_definitions(self.resources, START)

    def run_day(
        self,
        day: dt.date | str,
        instance: dg.DagsterInstance,
        staging: dict[str, object] | None = None,
        expect_success: bool = True,
        commit: dict[str, object] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Run the ingest job for `day`; `staging` and `commit`: `StagingConfig` and
        `CommitConfig` fields for this run; `expect_success=False`: return a failed run's
        result instead of raising."""
        job = self.definitions().resolve_job_def(INGEST_JOB)
        key = day if isinstance(day, str) else day.isoformat()
        ops = {
            name: {"config": config}
            for name, config in (("normalized_log_batches", staging), ("workflow_logs", commit))
            if config
        }
        run_config = {"ops": ops} if ops else None
        result = job.execute_in_process(
            partition_key=key, instance=instance, run_config=run_config, raise_on_error=expect_success
        )
        assert result.success or not expect_success
        return result

    def table(self) -> Table:
        return self.catalog.load_catalog().load_table(self.catalog.identifier())

    def staged_files(self) -> list[str]:
        """Every file under the staging IO manager's root (local or on S3)."""
        staging = self.resources["staging_io_manager"]
        if staging.root.startswith("s3://"):
            fs, base = staging.s3.arrow_filesystem(), staging.root.removeprefix("s3://")
        else:
            fs, base = pafs.LocalFileSystem(), staging.root
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def embedded_backend(root: Path) -> Backend:
    store = LocalObjectStore(root / "source")
    catalog = SqliteCatalogResource(data_dir=str(root / "data"))
    return Backend(
        name="embedded",
        store=store,
        catalog=catalog,
        resources={
            "log_source": LocalLogSource(root=str(root / "source")),
            "iceberg": catalog,
            "staging_io_manager": ArrowStagingIOManager(root=str(root / "staging")),
        },
    )


def rest_env(weed: WeedServer, run: str) -> dict[str, str]:
    """The environment variables that point a separate process at weed mini (as in production)."""
    return {
        "WFLOG_SOURCE": "s3",
        "WFLOG_S3_BUCKET": weed.source_bucket,
        "WFLOG_S3_PREFIX": f"logs-{run}/workflows",
        "WFLOG_S3_ENDPOINT_URL": weed.s3_endpoint,
        "WFLOG_S3_REGION": weed.region,
        "WFLOG_S3_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": weed.access_key,
        "AWS_SECRET_ACCESS_KEY": weed.secret_key,
        "WFLOG_STAGING": f"s3://{weed.source_bucket}/staging-{run}",
        "WFLOG_CATALOG": "rest",
        "WFLOG_CATALOG_URI": weed.iceberg_uri,
        "WFLOG_CATALOG_WAREHOUSE": f"s3://{weed.warehouse}",
        "WFLOG_CATALOG_CREDENTIAL": f"{weed.access_key}:{weed.secret_key}",
        "WFLOG_NAMESPACE": f"wflog_{run}",
    }


def rest_backend(weed: WeedServer, run: str | None = None, s3_endpoint: str | None = None) -> Backend:
    """weed mini's S3 and REST catalog; `s3_endpoint`: how runs reach its S3 (source, data
    files and staging), e.g. through a latency proxy (tests write sources directly)."""
    run = run or uuid.uuid4().hex[:10]
    s3 = weed_s3(weed, s3_endpoint)
    prefix = rest_env(weed, run)["WFLOG_S3_PREFIX"]
    catalog = RestCatalogResource(
        uri=weed.iceberg_uri,
        credential=f"{weed.access_key}:{weed.secret_key}",
        warehouse=f"s3://{weed.warehouse}",
        s3_endpoint=s3_endpoint or weed.s3_endpoint,
        s3_access_key_id=weed.access_key,
        s3_secret_access_key=weed.secret_key,
        s3_region=weed.region,
        s3_path_style=True,
        namespace=f"wflog_{run}",
    )
    return Backend(
        name="rest",
        store=S3ObjectStore(weed_s3(weed).get_client(), weed.source_bucket, prefix),
        catalog=catalog,
        resources={
            "log_source": S3LogSource(s3=s3, bucket=weed.source_bucket, prefix=prefix),
            "iceberg": catalog,
            "staging_io_manager": ArrowStagingIOManager(
                root=f"s3://{weed.source_bucket}/staging-{run}", s3=s3
            ),
        },
    )
