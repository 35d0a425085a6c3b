"""The partition-layout study: the same days in the two other layouts' tables, and the report."""

import warnings
from collections.abc import Sequence

import dagster as dg
from pydantic import Field
from pyiceberg.table import Table

from wflog_assets.defs.assets import BACKFILL_POLICY, commit_layout_day
from wflog_assets.defs.partitions import partition_day
from wflog_assets.defs.resources import IcebergCatalogResource
from wflog_assets.iceberg.plan import committed_day
from wflog_assets.iceberg.schema import DEFAULT_LAYOUT, LAYOUTS, describe_layout
from wflog_assets.tools.report import (
    figures_json,
    markdown_table,
    measure,
    pick_comparable,
    plot_png,
    png_markdown,
    seed_comparison,
)

GROUP = "layout_study"


class LayoutReportConfig(dg.Config):
    """What the layout benchmark measures."""

    workflows: list[str] = Field(
        default_factory=list,
        description="Workflows measured besides the heaviest, a median and the tiniest one.",
    )
    repetitions: int = Field(default=5, ge=1, le=100, description="Timed runs per query, cold and warm each.")
    limit: int = Field(default=100, ge=1, description="Rows of the LIMIT query shape.")


def _layout_asset(
    layout: str, partitions_def: dg.PartitionsDefinition, production: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"workflow_logs_{layout}",
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        group_name=GROUP,
        kinds={"iceberg"},
        deps=[production],
        description=f"The day's rows in the {layout} table ({describe_layout(layout)}), "
        "copied from the production table, one commit per day.",
    )
    def layout_table(
        context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource
    ) -> dg.MaterializeResult[None]:
        # the production table is the truth for the day (staging holds only what a run read):
        # its rows, in memory, re-sorted for this layout; its files stand for the manifest
        catalog = iceberg.load_catalog()
        source = catalog.load_table(iceberg.layout_identifier(DEFAULT_LAYOUT))
        day = partition_day(context.partition_key)
        manifest, rows = committed_day(source, day)
        result, _ = commit_layout_day(context, iceberg, catalog, layout, manifest.to_arrow(), rows)
        return result

    return layout_table


def build_layout_study(
    partitions_def: dg.PartitionsDefinition, log_assets: Sequence[dg.AssetsDefinition]
) -> list[dg.AssetsDefinition]:
    """Tables for the non-production layouts (copied from the production table) and the report."""
    production = log_assets[-1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*backfill_policy", category=dg.BetaWarning)
        tables = [
            _layout_asset(layout, partitions_def, production)
            for layout in LAYOUTS
            if layout != DEFAULT_LAYOUT
        ]

    @dg.asset(
        group_name=GROUP,
        deps=[production, *tables],
        kinds={"iceberg", "python"},
    )
    def layout_benchmark_report(
        context: dg.AssetExecutionContext,
        config: LayoutReportConfig,
        iceberg: IcebergCatalogResource,
    ) -> dg.MaterializeResult[None]:
        """P0 query latency, files and bytes per partition layout (cold and warm, median/p90)."""
        catalog = iceberg.load_catalog()

        def load(layout: str) -> Table:
            return catalog.load_table(iceberg.layout_identifier(layout))

        workflows, left_out = pick_comparable(load, list(LAYOUTS), config.workflows)
        context.log.info(f"measuring {len(workflows)} workflow(s) on {len(LAYOUTS)} layouts")
        if left_out:
            context.log.warning(
                f"{len(left_out)} workflow(s) left out: the layouts' tables hold different rows for "
                f"them (load the same days into every layout): {dict(list(left_out.items())[:5])}"
            )
        figures = measure(load, workflows, repetitions=config.repetitions, limit=config.limit)
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.md(markdown_table(figures)),
                "seed_comparison": dg.MetadataValue.md(seed_comparison(figures)),
                "plot": dg.MetadataValue.md(png_markdown(plot_png(figures))),
                "figures": dg.MetadataValue.json(figures_json(figures)),
                "workflows": dg.MetadataValue.json([{"workflow": w, "role": r} for w, r in workflows]),
                "repetitions": dg.MetadataValue.int(config.repetitions),
                "workflows_left_out": dg.MetadataValue.int(len(left_out)),
                "left_out_examples": dg.MetadataValue.json(dict(list(left_out.items())[:20])),
            }
        )

    return [*tables, layout_benchmark_report]
