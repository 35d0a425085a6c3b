"""The daily asset graph: raw_log_chunks -> normalized_log_batches -> workflow_logs.

Each asset's body is a module-level function of the same name (reachable from an IDE, a test
or a tool); `build_log_assets` wraps them with the partitioning, which comes from the
environment when the definitions load and so cannot be fixed at import.
"""

import atexit
import datetime as dt
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import Field
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException

from wflog_assets.defs.metadata import (
    check_results,
    column_schema,
    commit_metadata,
    log_kept_out,
    manifest_metadata,
    staged_metadata,
    vanished_metadata,
)
from wflog_assets.defs.partitions import partition_day
from wflog_assets.defs.resources import (
    OPTIONAL_STAGING,
    IcebergCatalogResource,
    LogSourceResource,
    staged_by_run,
)
from wflog_assets.errors import CompactionConflictError, SourceListingError
from wflog_assets.iceberg.commit import CommitResult, commit_day, identity_values
from wflog_assets.iceberg.maintenance import (
    OPEN_DAY_MAX_FILES,
    CompactionResult,
    compact_crowded,
    expire_by_policy,
)
from wflog_assets.iceberg.plan import DEFAULT_MAX_VANISHED_FRACTION, VanishedRule, plan_reads
from wflog_assets.iceberg.runs import SortedRun
from wflog_assets.iceberg.schema import DEFAULT_LAYOUT, TABLE_SCHEMA, WORKFLOW_NAME, sort_for_table
from wflog_assets.manifest import Manifest
from wflog_assets.quality.checks import CHECKS, DuplicateFinder, day_checks
from wflog_assets.quality.quarantine import (
    QUARANTINE_SUFFIX,
    day_quarantine,
    ensure_quarantine_table,
    summarize,
    write_quarantine,
)
from wflog_assets.source.listing import has_year_folders, list_day
from wflog_assets.staging.pieces import (
    DEFAULT_FETCH_WORKERS,
    DEFAULT_PART_ROWS,
    DEFAULT_PIECE_ROWS,
    DEFAULT_READ_WORKERS,
    StagedRuns,
    stage_in_pieces,
)

GROUP = "workflow_logs"
STAGING_IO_MANAGER = "staging_io_manager"
# One run per day: each day is one commit and one Dagster run, so a backfill's days fail,
# retry and show status independently; the run queue decides how many days run at once.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


class StagingConfig(dg.Config):
    """How `normalized_log_batches` plans, reads and stages a day, per run: what to do with
    files gone from the source, and memory against speed."""

    vanished_files: Literal["keep", "delete"] = Field(
        default="keep",
        description="Committed files the listing no longer finds: `keep` their rows (the table "
        "is the archive) or `delete` them. A changed ETag always replaces the file's rows.",
    )
    max_vanished_fraction: float = Field(
        default=DEFAULT_MAX_VANISHED_FRACTION,
        ge=0.0,
        le=1.0,
        description="A listing that misses more than this fraction of the files the table holds "
        "for the day fails the run before anything is committed (a wrong or empty source root). "
        "Set 1.0 to run a day whose files really are gone.",
    )

    read_workers: int = Field(
        default=DEFAULT_READ_WORKERS,
        ge=1,
        le=64,
        description="Files read and normalized in parallel (each holds its compressed bytes "
        "and up to two parts of `part_rows` rows in memory).",
    )
    piece_rows: int = Field(
        default=DEFAULT_PIECE_ROWS,
        ge=256,
        le=64 * 1024 * 1024,
        description="Rows screened, sorted and spilled as one sorted run at a time: with "
        "`part_rows` and `read_workers` it bounds memory, whatever the size of the day.",
    )
    part_rows: int = Field(
        default=DEFAULT_PART_ROWS,
        ge=256,
        le=16 * 1024 * 1024,
        description="Rows of a Parquet file decoded and normalized at a time.",
    )
    fetch_workers: int = Field(
        default=DEFAULT_FETCH_WORKERS,
        ge=1,
        le=256,
        description="GETs in flight for batches of small files (hides the per-object latency "
        "of S3; each holds one small object in memory).",
    )


class CommitConfig(dg.Config):
    """How `workflow_logs` judges a day after its commit, per run."""

    checks: Literal["auto", "run", "day"] = Field(
        default="auto",
        description="`run`: the checks judge the data files this run added, from their "
        "statistics (a day committed all day costs each run only what it wrote); `day`: the "
        "whole day as the table holds it (reads the day's file statistics, and files that hold "
        "other days). `auto`: `run` for today and yesterday (UTC), `day` for older days.",
    )


def _expected_rows(result: CommitResult, accepted: int, by_run: bool) -> int | None:
    """What `row_count_parity` expects: the rows accepted from the files the run wrote (judged
    by the run), or the rows the day holds after the commit (judged by the day)."""
    unchanged = result.outcome == "unchanged"
    if by_run:
        return 0 if unchanged else accepted
    return result.day_rows if unchanged else result.rows_kept + accepted


def _checks_scope(config: CommitConfig, day: str) -> str:
    if config.checks != "auto":
        return config.checks
    today = dt.datetime.now(dt.UTC).date()
    return "run" if partition_day(day) >= today - dt.timedelta(days=1) else "day"


def commit_layout_day(
    context: dg.AssetExecutionContext,
    iceberg: IcebergCatalogResource,
    catalog: Catalog,
    layout: str,
    manifest: pa.Table,
    rows: pa.Table | list[SortedRun],
    observe: Callable[[pa.Table], None] | None = None,
    staged: StagedRuns | None = None,
) -> tuple[dg.MaterializeResult[None], CommitResult]:
    """Commit one day's good rows (a table, or sorted runs) to `layout`'s table in one snapshot."""
    started = time.monotonic()
    day_manifest = Manifest.from_arrow(manifest)
    identifier = iceberg.layout_identifier(layout)
    iceberg.ensure_table(layout, catalog)
    if isinstance(rows, pa.Table) and layout != DEFAULT_LAYOUT:  # ordered for production
        rows = sort_for_table(rows, layout)
    result = commit_day(
        lambda: catalog.load_table(identifier),
        day_manifest,
        rows,
        observe=observe,
        # only what this run read (all of the manifest when read_keys is None), and only the
        # removals it planned: a concurrent run's newer files are never taken for gone ones
        staged=None if staged is None else _read_keys(staged, day_manifest),
        planned=None if staged is None else staged.planned,
        accepted=None if staged is None else staged.read_keys,
    )
    context.log.info(
        f"{result.day} -> {identifier}: {result.outcome}, {result.rows_written} "
        f"rows written, {result.rows_deleted} deleted, snapshot {result.snapshot_id}"
    )
    metadata = commit_metadata(result, day_manifest, identifier, layout, time.monotonic() - started)
    if staged is not None and staged.planned is not None:
        metadata.update(vanished_metadata(staged.planned, result))
    return dg.MaterializeResult(metadata=metadata), result


def _read_keys(staged: StagedRuns, manifest: Manifest) -> list[str]:
    """The files a staging read (every file of the manifest when it names none)."""
    if staged.read_keys is None:
        return [e.key for e in manifest.entries]
    return list(staged.read_keys)


def list_source_day(
    log: dg.DagsterLogManager, log_source: LogSourceResource, partition_key: str
) -> tuple[Manifest, dict[str, dg.MetadataValue]]:
    """List a day's chunk files; warn of a source root one level off and of ignored objects."""
    store = log_source.object_store()
    manifest = list_day(store, partition_day(partition_key))
    log.info(
        f"{len(manifest.entries)} files, {manifest.total_bytes} bytes for "
        f"{manifest.day} in {log_source.describe()}"
    )
    root_ok = bool(manifest.entries) or has_year_folders(store)
    if not root_ok:
        log.warning(
            f"{log_source.describe()} holds no year= folder: the source root looks one level off "
            "(WFLOG_SOURCE_DIR or WFLOG_S3_PREFIX must name the folder right above year=YYYY)"
        )
    if manifest.ignored:
        log.warning(
            f"{len(manifest.ignored)} object(s) under the day are not chunk files "
            f"(.parquet / .json.gz) and were not read: {list(manifest.ignored)[:20]}"
        )
    metadata = manifest_metadata(manifest, log_source.describe())
    metadata["source_root_has_days"] = dg.MetadataValue.bool(root_ok)
    return manifest, metadata


def stage_day(
    log: dg.DagsterLogManager,
    config: StagingConfig,
    manifest: Manifest,
    log_source: LogSourceResource,
    iceberg: IcebergCatalogResource,
) -> tuple[StagedRuns, dict[str, dg.MetadataValue]]:
    """Plan against the table (failing before any commit if the listing misses most of the
    day), then read and stage the day's new and changed files as sorted runs."""
    started = time.monotonic()
    rule = VanishedRule.of(config.vanished_files, config.max_vanished_fraction)
    try:
        planned = plan_reads(iceberg.existing_table(iceberg.load_catalog()), manifest, rule)
    except SourceListingError as exc:
        raise dg.Failure(
            description=f"{exc} Source: {log_source.describe()}.",
            metadata={
                "source": dg.MetadataValue.text(log_source.describe()),
                "files_listed": dg.MetadataValue.int(exc.listed),
                "files_in_table": dg.MetadataValue.int(exc.committed),
                "files_missing": dg.MetadataValue.int(len(exc.gone)),
            },
            allow_retries=False,
        ) from exc
    plan = planned.plan
    wanted = set(plan.write_keys)
    to_read = Manifest.build(manifest.day, (e for e in manifest.entries if e.key in wanted))
    log.info(
        f"{len(to_read.entries)} of {len(manifest.entries)} files to read "
        f"({len(plan.added)} new, {len(plan.changed)} changed), {len(planned.vanished)} gone "
        f"({'their rows deleted' if plan.removed else 'their rows kept'})"
    )
    spill = tempfile.mkdtemp(prefix="wflog-spill-")
    atexit.register(shutil.rmtree, spill, ignore_errors=True)
    staged = stage_in_pieces(
        log_source.object_store(),
        to_read,
        pafs.LocalFileSystem(),
        spill,
        max_workers=config.read_workers,
        piece_rows=config.piece_rows,
        part_rows=config.part_rows,
        fetch_workers=config.fetch_workers,
    )
    staged.planned = planned
    summary = staged.summary()
    log_kept_out(log, staged, summary)
    metadata = staged_metadata(manifest, to_read, staged, summary)
    metadata["duration_s"] = dg.MetadataValue.float(round(time.monotonic() - started, 3))
    return staged, metadata


def raw_log_chunks(
    context: dg.AssetExecutionContext, log_source: LogSourceResource
) -> dg.MaterializeResult[pa.Table]:
    """Manifest of the day's chunk files in the source (key, size, ETag, last-modified)."""
    manifest, metadata = list_source_day(context.log, log_source, context.partition_key)
    return dg.MaterializeResult(value=manifest.to_arrow(), metadata=metadata)


def normalized_log_batches(
    context: dg.AssetExecutionContext,
    config: StagingConfig,
    raw_log_chunks: pa.Table,
    log_source: LogSourceResource,
    iceberg: IcebergCatalogResource,
) -> dg.MaterializeResult[StagedRuns]:
    """The rows of the day's new and changed files as sorted runs, plus everything kept out."""
    manifest = Manifest.from_arrow(raw_log_chunks)
    staged, metadata = stage_day(context.log, config, manifest, log_source, iceberg)
    return dg.MaterializeResult(value=staged, metadata=metadata)


def workflow_logs(
    context: dg.AssetExecutionContext,
    config: CommitConfig,
    manifest: pa.Table | None,
    normalized_log_batches: StagedRuns | None,
    log_source: LogSourceResource,
    iceberg: IcebergCatalogResource,
) -> dg.MaterializeResult:  # type: ignore[type-arg]  # Dagster rejects a parameterized one with checks
    """The Iceberg table of workflow logs: the day committed in one snapshot."""
    staged_runs = normalized_log_batches
    runs = {
        None if manifest is None else staged_by_run(manifest),
        None if staged_runs is None else staged_runs.staged_by_run,
    }
    if manifest is None or staged_runs is None or runs != {context.run.run_id}:
        # Materialized alone (a partial selection, a re-execution from failure): the staged
        # listing and rows may be older than the source, or come from two different runs.
        # Commit only what this run listed and read itself.
        context.log.warning(
            f"the staged listing and rows of {context.partition_key} come from run(s) "
            f"{sorted(str(r) for r in runs)}, not this run: listing and staging the day afresh"
        )
        fresh, _ = list_source_day(context.log, log_source, context.partition_key)
        staged_runs, _ = stage_day(context.log, StagingConfig(), fresh, log_source, iceberg)
        manifest = fresh.to_arrow()
    catalog = iceberg.load_catalog()
    quarantined = staged_runs.kept_out
    day = Manifest.from_arrow(manifest).day
    # The quarantine first, then the data: a crash between the two commits leaves the data
    # uncommitted, so the re-run reads the day's files again and writes both (the quarantine
    # write replaces the records of the files it read, so writing it twice is harmless).
    quarantine_id = iceberg.identifier(QUARANTINE_SUFFIX)
    planned = staged_runs.planned
    replaced = (
        None
        if staged_runs.read_keys is None
        else set(staged_runs.read_keys) | set(planned.plan.removed if planned is not None else ())
    )
    quarantine = ensure_quarantine_table(catalog, quarantine_id)
    snapshot = write_quarantine(quarantine, day, quarantined, replaced)
    seen = DuplicateFinder()  # fed by the write's own pass over the rows
    committed, result = commit_layout_day(
        context,
        iceberg,
        catalog,
        DEFAULT_LAYOUT,
        manifest,
        staged_runs.readable(),
        observe=seen.add,
        staged=staged_runs,
    )
    crowded = _compact_crowded_partitions(context, catalog, iceberg, result)
    expired = _expire_old_snapshots(context, catalog, iceberg)
    accepted = staged_runs.accepted_in(result.files_added + result.files_changed)
    by_run = _checks_scope(config, day) == "run"
    outcomes = day_checks(
        catalog.load_table(iceberg.layout_identifier()),
        day,
        staged_runs.summary(),
        staged_runs.readable(),
        seen=seen,
        expected_rows=_expected_rows(result, accepted, by_run),
        kept=summarize(day_quarantine(quarantine, day)),
        written=result.data_files if by_run else None,
    )
    staged_runs.discard()  # committed: the table holds the rows now
    metadata = {
        **(committed.metadata or {}),
        "quarantine_table": dg.MetadataValue.text(quarantine_id),
        "quarantined_records": dg.MetadataValue.int(quarantined.num_rows),
        "quarantine_snapshot_id": dg.MetadataValue.text(str(snapshot)),
        "snapshots_expired": dg.MetadataValue.int(expired),
        "partitions_compacted": dg.MetadataValue.int(crowded.partitions_compacted),
        "files_compacted": dg.MetadataValue.int(crowded.files_before),
    }
    return dg.MaterializeResult(metadata=metadata, check_results=check_results(outcomes, day))


def _compact_crowded_partitions(
    context: dg.AssetExecutionContext,
    catalog: Catalog,
    iceberg: IcebergCatalogResource,
    result: CommitResult,
) -> CompactionResult:
    """The open day's rolling compaction (`maintenance.compact_crowded`): once a partition this
    commit added a file to holds more than OPEN_DAY_MAX_FILES files of the day, the day's
    crowded partitions become one file each, in one commit."""
    identifier = iceberg.layout_identifier()
    table = catalog.load_table(identifier)
    workflows = identity_values(table, result.data_files, WORKFLOW_NAME)
    nothing = CompactionResult(result.day, 0, 0, 0, 0, 0, None, 0)
    if not workflows:
        return nothing
    try:
        compacted = compact_crowded(
            lambda: catalog.load_table(identifier), partition_day(result.day), {str(w) for w in workflows}
        )
    except CompactionConflictError as exc:
        context.log.info(f"compaction of crowded partitions left to the next run: {exc}")
        return nothing
    if compacted.partitions_compacted:
        context.log.info(
            f"{result.day}: {compacted.partitions_compacted} partition(s) past {OPEN_DAY_MAX_FILES} "
            f"files compacted ({compacted.files_before} -> {compacted.files_after} files)"
        )
    return compacted


def _expire_old_snapshots(
    context: dg.AssetExecutionContext, catalog: Catalog, iceberg: IcebergCatalogResource
) -> int:
    """Expire what the table's retention properties call old (a table committed all day keeps
    its metadata bounded); a concurrent commit makes it wait for the next run."""
    try:
        return expire_by_policy(catalog.load_table(iceberg.layout_identifier()), dt.datetime.now(dt.UTC))
    except (CommitFailedException, CommitStateUnknownException) as exc:
        context.log.info(f"snapshot expiry left to the next run: {exc}")
        return 0


def _daily(
    compute: Callable[..., object], partitions_def: dg.PartitionsDefinition, **kwargs: Any
) -> dg.AssetsDefinition:
    """`compute` as a daily asset of the group: one run per day in backfills."""
    with warnings.catch_warnings():
        # backfill_policy is beta in Dagster 1.13; we use it deliberately (one run per day)
        warnings.filterwarnings("ignore", message=".*backfill_policy", category=dg.BetaWarning)
        asset: dg.AssetsDefinition = dg.asset(
            partitions_def=partitions_def, backfill_policy=BACKFILL_POLICY, group_name=GROUP, **kwargs
        )(compute)
        return asset


def build_log_assets(
    partitions_def: dg.PartitionsDefinition, source_kind: str = "s3"
) -> Sequence[dg.AssetsDefinition]:
    """The three daily assets, sharing `partitions_def`; `source_kind`: where the chunk files
    are (`s3`, or `file` for a directory), the kind the UI shows on `raw_log_chunks`."""
    raw = _daily(
        raw_log_chunks,
        partitions_def,
        io_manager_key=STAGING_IO_MANAGER,
        kinds={source_kind, "parquet", "json"},
    )
    normalized = _daily(
        normalized_log_batches,
        partitions_def,
        io_manager_key=STAGING_IO_MANAGER,
        kinds={"pyarrow", "parquet"},
    )
    with warnings.catch_warnings():
        # partitioned checks are a preview in Dagster 1.13: each result is the check of its day
        warnings.filterwarnings(
            "ignore", message=".*partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
        )
        checks = [
            dg.AssetCheckSpec(
                name, asset="workflow_logs", description=description, partitions_def=partitions_def
            )
            for name, (_, description) in CHECKS.items()
        ]
    table = _daily(
        workflow_logs,
        partitions_def,
        kinds={"iceberg"},
        metadata={"dagster/column_schema": column_schema(TABLE_SCHEMA)},
        check_specs=checks,
        ins={
            "manifest": dg.AssetIn(key=raw.key, metadata={OPTIONAL_STAGING: True}),
            "normalized_log_batches": dg.AssetIn(key=normalized.key, metadata={OPTIONAL_STAGING: True}),
        },
    )
    return [raw, normalized, table]
