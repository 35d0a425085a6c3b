"""The partition-layout study: the P0 query on each layout's table, measured (no Dagster here).

For a set of workflows (the heaviest, a median one, the tiniest, plus any named), on each
layout's table, two query shapes are timed: `LIMIT n` (what readers do) and all of the
workflow's rows (what the proof of concept's table measured). Each is run cold (table
reloaded from the catalog, pyiceberg's manifest cache cleared) and warm (same table object),
several times; the report keeps the median and the 90th percentile.
"""

from __future__ import annotations

import base64
import io
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import pyarrow.compute as pc
from pyiceberg.table import Table

from wflog_assets.iceberg._compat import clear_manifest_cache
from wflog_assets.iceberg.query import P0Result, p0_query, workflow_row_counts
from wflog_assets.iceberg.schema import LAYOUTS, TIMESTAMP

# The proof of concept's published figures (shared/source-data.md, "The P0 query"): all rows of a
# workflow with 436,985 rows, on the real catalog and S3.
SEED_FIGURES: dict[str, dict[str, float]] = {
    "wf_bucket_month": {"seconds": 1.278, "files": 14, "rows": 436_985},
    "wf_bucket": {"seconds": 1.298, "files": 14, "rows": 436_985},
    "wf_month": {"seconds": 1.399, "files": 9, "rows": 436_985},
}
ALL_ROWS = "all rows"


@dataclass(frozen=True)
class Measurement:
    """One (layout, workflow, query shape): what was read and how long it took."""

    layout: str
    workflow: str
    role: str  # heaviest | median | tiny | listed
    shape: str  # "limit N" | "all rows"
    rows_matched: int  # rows of the workflow in the table
    rows_returned: int
    files_planned: int
    files_read: int
    bytes_planned: int
    bytes_read: int
    rows_scanned: int
    cold_median_s: float
    cold_p90_s: float
    warm_median_s: float
    warm_p90_s: float


def _p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def pick_workflows(table: Table, listed: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(workflow, role): the heaviest, a median one, the tiniest, then the listed ones."""
    counts = workflow_row_counts(table)
    return _roles([n for n in counts.column(0).to_pylist() if n is not None], listed)


def _roles(names: Sequence[str], listed: Sequence[str]) -> list[tuple[str, str]]:
    picked: list[tuple[str, str]] = []
    if names:
        for name, role in ((names[0], "heaviest"), (names[len(names) // 2], "median"), (names[-1], "tiny")):
            if name not in (n for n, _ in picked):
                picked.append((name, role))
    picked += [(name, "listed") for name in listed if name not in (n for n, _ in picked)]
    return picked


def pick_comparable(
    load_table: Callable[[str], Table], layouts: Sequence[str], listed: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], dict[str, dict[str, int]]]:
    """The workflows to measure, among those every layout's table holds with the same rows (a
    layout table loaded for fewer days would look faster for holding less), and the others
    with their rows per layout: what the report left out."""
    rows: dict[str, dict[str, int]] = {}
    for layout in layouts:
        counts = workflow_row_counts(load_table(layout))
        for name, n in zip(counts.column(0).to_pylist(), counts.column(1).to_pylist(), strict=True):
            if name is not None:
                rows.setdefault(name, {})[layout] = n
    for name in listed:
        rows.setdefault(name, {})
    same = {n for n, by in rows.items() if len(by) == len(layouts) and len(set(by.values())) == 1}
    heaviest_first = sorted(same, key=lambda n: (-next(iter(rows[n].values())), n))
    picked = _roles(heaviest_first, [n for n in listed if n in same])
    left_out = {
        n: {layout: by.get(layout, 0) for layout in layouts} for n, by in rows.items() if n not in same
    }
    return picked, left_out


def _measure_one(
    load_table: Callable[[str], Table], layout: str, workflow: str, limit: int | None, repetitions: int
) -> tuple[list[float], list[float], P0Result]:
    cold_times = []
    for _ in range(repetitions):
        clear_manifest_cache()
        cold_times.append(p0_query(load_table(layout), workflow, limit=limit, columns=(TIMESTAMP,)).seconds)
    table = load_table(layout)
    p0_query(table, workflow, limit=limit, columns=(TIMESTAMP,))  # fill caches once
    warm = [p0_query(table, workflow, limit=limit, columns=(TIMESTAMP,)) for _ in range(repetitions)]
    return cold_times, [r.seconds for r in warm], warm[-1]


def measure(
    load_table: Callable[[str], Table],
    workflows: Sequence[tuple[str, str]],
    layouts: Sequence[str] = tuple(LAYOUTS),
    repetitions: int = 5,
    limit: int = 100,
) -> list[Measurement]:
    """Time the P0 query for every (layout, workflow, shape); `load_table(layout)` loads a table."""
    out: list[Measurement] = []
    for layout in layouts:
        for workflow, role in workflows:
            shapes = {}
            for shape_limit in (limit, None):
                shapes[shape_limit] = _measure_one(load_table, layout, workflow, shape_limit, repetitions)
            matched = shapes[None][2].rows.num_rows
            for shape_limit, (cold, warm, result) in shapes.items():
                out.append(
                    Measurement(
                        layout=layout,
                        workflow=workflow,
                        role=role,
                        shape=f"limit {limit}" if shape_limit is not None else ALL_ROWS,
                        rows_matched=matched,
                        rows_returned=result.rows.num_rows,
                        files_planned=result.files_planned,
                        files_read=result.files_read,
                        bytes_planned=result.bytes_planned,
                        bytes_read=result.bytes_read,
                        rows_scanned=result.rows_scanned,
                        cold_median_s=statistics.median(cold),
                        cold_p90_s=_p90(cold),
                        warm_median_s=statistics.median(warm),
                        warm_p90_s=_p90(warm),
                    )
                )
    return out


def newest_first(result: P0Result) -> bool:
    stamps = result.rows.column(TIMESTAMP)
    return result.rows.num_rows < 2 or bool(
        pc.all(pc.greater_equal(stamps.slice(0, len(stamps) - 1), stamps.slice(1))).as_py()
    )


def markdown_table(measurements: Sequence[Measurement]) -> str:
    """The seed-style table, one row per (workflow, shape, layout)."""
    lines = [
        "| workflow | role | query | layout | files planned | files read | bytes read "
        "| rows matched | rows scanned | cold median | cold p90 | warm median | warm p90 |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| `{m.workflow}` | {m.role} | {m.shape} | {m.layout} | {m.files_planned} "
        f"| {m.files_read} | {m.bytes_read:,} | {m.rows_matched:,} | {m.rows_scanned:,} "
        f"| {m.cold_median_s:.3f} s | {m.cold_p90_s:.3f} s "
        f"| {m.warm_median_s:.3f} s | {m.warm_p90_s:.3f} s |"
        for m in measurements
    )
    return "\n".join(lines)


def seed_comparison(measurements: Sequence[Measurement]) -> str:
    """Our heaviest workflow, all rows, cold, next to the proof of concept's published figures."""
    lines = [
        "| layout | seed total time | seed files scanned | seed rows matched "
        "| ours cold median | ours files planned | ours rows matched |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours = {m.layout: m for m in measurements if m.role == "heaviest" and m.shape == ALL_ROWS}
    for layout, seed in SEED_FIGURES.items():
        m = ours.get(layout)
        mine = f"{m.cold_median_s:.3f} s | {m.files_planned} | {m.rows_matched:,}" if m else "n/a | n/a | n/a"
        lines.append(
            f"| {layout} | {seed['seconds']:.3f} s | {int(seed['files'])} | {int(seed['rows']):,} | {mine} |"
        )
    return "\n".join(lines)


def plot_png(measurements: Sequence[Measurement]) -> bytes:
    """Latency (cold and warm medians) and files planned per layout, one group per query."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layouts = list(dict.fromkeys(m.layout for m in measurements))
    groups = list(dict.fromkeys((m.role, m.shape) for m in measurements))
    by_key = {(m.layout, m.role, m.shape): m for m in measurements}
    fig, (ax_time, ax_files) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(layouts))
    for i, layout in enumerate(layouts):
        xs = [g + i * width for g in range(len(groups))]
        cold = [by_key[(layout, r, s)].cold_median_s * 1000 for r, s in groups]
        warm = [by_key[(layout, r, s)].warm_median_s * 1000 for r, s in groups]
        files = [by_key[(layout, r, s)].files_planned for r, s in groups]
        ax_time.bar(xs, cold, width, label=f"{layout} cold")
        ax_time.scatter(
            xs, warm, marker="_", s=200, color="black", label="warm" if i == 0 else None, zorder=3
        )
        ax_files.bar(xs, files, width, label=layout)
    labels = [f"{r}\n{s}" for r, s in groups]
    for ax, title in ((ax_time, "P0 latency, median (ms)"), (ax_files, "files planned")):
        ax.set_xticks([g + width * (len(layouts) - 1) / 2 for g in range(len(groups))], labels, fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    sink = io.BytesIO()
    fig.savefig(sink, format="png", dpi=90)
    plt.close(fig)
    return sink.getvalue()


def png_markdown(png: bytes) -> str:
    return f"![P0 latency and files per layout](data:image/png;base64,{base64.b64encode(png).decode()})"


def figures_json(measurements: Sequence[Measurement]) -> list[dict[str, object]]:
    return [asdict(m) for m in measurements]


def write_report(measurements: Sequence[Measurement], stem: str) -> list[str]:
    """`<stem>.md` (tables + plot link), `<stem>.png`, `<stem>.json`; returns the paths."""
    png_path, json_path, md_path = f"{stem}.png", f"{stem}.json", f"{stem}.md"
    with open(png_path, "wb") as f:
        f.write(plot_png(measurements))
    with open(json_path, "w") as f:
        json.dump(figures_json(measurements), f, indent=2)
    name = png_path.rsplit("/", 1)[-1]
    with open(md_path, "w") as f:
        f.write(
            "# P0 query per partition layout\n\n"
            + markdown_table(measurements)
            + "\n\n## Next to the proof of concept\n\n"
            + seed_comparison(measurements)
            + f"\n\n![P0 latency and files per layout]({name})\n"
        )
    return [md_path, png_path, json_path]
