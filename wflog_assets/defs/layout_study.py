"""The partition-layout study: the same days in the two other layouts' tables, and the report."""


import warnings
from collections.abc import Sequence

import dagster as dg
import pyarrow as pa
from pydantic import Field
from pyiceberg.table import Table

from wflog_assets.defs.assets import BACKFILL_POLICY, commit_layout_day
from wflog_assets.defs.resources import IcebergCatalogResource
from wflog_assets.report import (
    figures_json,
    markdown_table,
    measure,
    pick_workflows,
    plot_png,
    png_markdown,
    seed_comparison,
)
from wflog_assets.schema import DEFAULT_LAYOUT, LAYOUTS, describe_layout
from wflog_assets.staging import StagedRuns

GROUP = "layout_study"


class LayoutReportConfig(dg.Config):
    """What the layout benchmark measures."""

    workflows: list[str] = Field(
        default_factory=list,
        description="Workflows measured besides the heaviest, a median and the tiniest one.",
    )
    repetitions: int = Field(default=5, ge=1, le=100,
                             description="Timed runs per query, cold and warm each.")
    limit: int = Field(default=100, ge=1, description="Rows of the LIMIT query shape.")


def _layout_asset(layout: str, partitions_def: dg.PartitionsDefinition,
                  raw: dg.AssetsDefinition, normalized: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"workflow_logs_{layout}",
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        group_name=GROUP,
        kinds={"iceberg"},
        ins={"manifest": dg.AssetIn(key=raw.key), "rows": dg.AssetIn(key=normalized.key)},
        description=f"The day's rows in the {layout} table ({describe_layout(layout)}), "
        "one commit per day.",
    )
    def layout_table(context: dg.AssetExecutionContext, manifest: pa.Table, rows: StagedRuns,
                     iceberg: IcebergCatalogResource) -> dg.MaterializeResult:
        # the good rows only (quarantined records never reach a layout's table), in memory:
        # the study re-sorts them for its layout
        return commit_layout_day(context, iceberg, iceberg.load_catalog(), layout, manifest,
                                 rows.good_rows())

    return layout_table


def build_layout_study(
    partitions_def: dg.PartitionsDefinition, log_assets: Sequence[dg.AssetsDefinition]
) -> list[dg.AssetsDefinition]:
    """Tables for the non-production layouts (fed by the same staged batches) and the report."""
    raw, normalized, production = log_assets
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*backfill_policy", category=dg.BetaWarning)
        tables = [_layout_asset(layout, partitions_def, raw, normalized)
                  for layout in LAYOUTS if layout != DEFAULT_LAYOUT]

    @dg.asset(
        group_name=GROUP,
        deps=[production, *tables],
        kinds={"iceberg", "python"},
    )
    def layout_benchmark_report(
        context: dg.AssetExecutionContext, config: LayoutReportConfig,
        iceberg: IcebergCatalogResource,
    ) -> dg.MaterializeResult:
        """P0 query latency, files and bytes per partition layout (cold and warm, median/p90)."""
        catalog = iceberg.load_catalog()

        def load(layout: str) -> Table:
            return catalog.load_table(iceberg.layout_identifier(layout))

        workflows = pick_workflows(load(DEFAULT_LAYOUT), config.workflows)
        context.log.info(f"measuring {len(workflows)} workflow(s) on {len(LAYOUTS)} layouts")
        figures = measure(load, workflows, repetitions=config.repetitions, limit=config.limit)
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.md(markdown_table(figures)),
            "seed_comparison": dg.MetadataValue.md(seed_comparison(figures)),
            "plot": dg.MetadataValue.md(png_markdown(plot_png(figures))),
            "figures": dg.MetadataValue.json(figures_json(figures)),
            "workflows": dg.MetadataValue.json([{"workflow": w, "role": r} for w, r in workflows]),
            "repetitions": dg.MetadataValue.int(config.repetitions),
        })

    return [*tables, layout_benchmark_report]
