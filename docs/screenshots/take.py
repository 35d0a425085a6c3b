"""Screenshots of the Dagster UI for the docs, from the demo's instance.

    bash .ci/demo
    .venv/bin/pip install -e ".[docs]"          # Playwright's Python package; no browser download
    apt-get install chromium                    # Debian's Chromium, driven by Playwright
    .venv/bin/python docs/screenshots/take.py

Materializes the layout study and its report for the demo's days, starts dagster-webserver and
dagster-daemon on the demo's DAGSTER_HOME (`WFLOG_END_DATE` = the demo's last day, as the demo
prints), backfills the demo's days from the asset graph's assets, and saves PNGs of the pages a
user looks at next to this file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from wflog_assets_testing.dagster_stack import DagsterStack

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # headless on a machine without a network beyond loopback
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DAY = "2025-12-01"


def _prepare(env: dict[str, str]) -> None:
    """The layout tables and the report, so that every page has something to show."""
    cli = [str(BIN / "wflog-assets"), "materialize", "--start", DAY, "--days", "3", "--layouts"]
    subprocess.run(cli, cwd=ROOT, env=env, check=True, capture_output=True)
    report = [str(BIN / "dagster"), "asset", "materialize", "--select", "layout_benchmark_report"]
    report += ["-m", "wflog_assets.definitions"]
    subprocess.run(report, cwd=ROOT, env=env, check=True, capture_output=True)


def _shoot(page: Page, url: str, name: str, wait_for: str, show_markdown_of: str | None = None) -> None:
    """A PNG of the page once `wait_for` shows; `show_markdown_of`: a metadata row whose
    markdown to open first."""
    page.goto(url)
    page.locator(f"text={wait_for} >> visible=true").first.wait_for(timeout=60_000)
    if show_markdown_of is not None:
        label = page.locator("td", has_text=re.compile(f"^{show_markdown_of}$"))
        page.locator("tr", has=label).get_by_text("[Show Markdown]").click()
    time.sleep(2)  # let the page finish drawing (graphs lay out after the data arrives)
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"{name}.png  <- {url}")


def main() -> None:
    home = ROOT / ".wflog" / "dagster_home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "WFLOG_END_DATE": "2025-12-03"}
    _prepare(env)
    # the instance the demo wrote, served by a webserver and a daemon (the backfill runs)
    stack = DagsterStack(home, env, (home / "dagster.yaml").read_text())
    try:
        stack.wait_ready()
        days = ["2025-12-01", "2025-12-02", "2025-12-03"]
        assets = ["raw_log_chunks", "normalized_log_batches", "workflow_logs"]
        backfill = stack.launch_asset_backfill(assets, days)
        stack.wait_backfill(backfill, timeout_s=600)
        base = stack.url.removesuffix("/graphql")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            group = f"{base}/locations/{stack.location}/asset-groups/workflow_logs"
            _shoot(page, group, "lineage", "raw_log_chunks")
            asset = f"{base}/assets/workflow_logs"
            _shoot(page, f"{asset}?view=partitions", "partitions", "Materialized")
            _shoot(page, f"{asset}?view=events&partition={DAY}", "materialization", "day_rows")
            _shoot(page, f"{asset}?view=checks", "checks", "row_count_parity")
            report = f"{base}/assets/layout_benchmark_report?view=events"
            _shoot(page, report, "report_plot", "plot", show_markdown_of="plot")
            _shoot(page, f"{base}/runs/b/{backfill}", "backfill", "100% completed")
            browser.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
