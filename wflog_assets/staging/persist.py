"""A staged day on disk or S3: its sorted run files, kept-out records and a listing (no Dagster)."""

from __future__ import annotations

import json
import shutil

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from wflog_assets.iceberg.plan import ReadPlan
from wflog_assets.iceberg.runs import IpcRun, SortedRun
from wflog_assets.staging.pieces import StagedRuns

LISTING = "_runs.json"
KEPT_OUT = "kept_out.parquet"


def save_staged(staged: StagedRuns, filesystem: pafs.FileSystem, directory: str) -> int:
    """Move a day's run files and kept-out records into `directory`; the listing goes last.

    Returns the bytes of the run files.
    """
    filesystem.create_dir(directory, recursive=True)
    filesystem.delete_dir_contents(directory, missing_dir_ok=True)
    local = pafs.LocalFileSystem()
    paths = []
    for run in staged.runs:
        if not isinstance(run, IpcRun):
            raise TypeError(f"only spilled runs can be staged, got {type(run).__name__}")
        paths.append(run.path)
    names = [path.rsplit("/", 1)[1] for path in paths]
    size = sum(local.get_file_info(path).size or 0 for path in paths)
    if isinstance(filesystem, pafs.LocalFileSystem):
        for path, name in zip(paths, names, strict=True):
            shutil.move(path, f"{directory}/{name}")  # a rename on the same disk
    elif paths:
        spill_dir = paths[0].rsplit("/", 1)[0]
        if any(path.rsplit("/", 1)[0] != spill_dir for path in paths):
            raise ValueError("a day's runs must be spilled into one directory")
        # one parallel upload of the folder (it holds only this day's runs)
        pafs.copy_files(
            spill_dir, directory, source_filesystem=local, destination_filesystem=filesystem, use_threads=True
        )
        for path in paths:
            local.delete_file(path)
    pq.write_table(staged.kept_out, f"{directory}/{KEPT_OUT}", filesystem=filesystem)
    listing = {
        "runs": names,
        "accepted_rows": staged.accepted_rows,
        "excluded": sorted(staged.excluded),
        "read": staged.read_keys,
        "planned": staged.planned.to_json() if staged.planned is not None else None,
    }
    with filesystem.open_output_stream(f"{directory}/{LISTING}") as out:
        out.write(json.dumps(listing).encode())
    return size


def load_staged(filesystem: pafs.FileSystem, directory: str, local_dir: str) -> StagedRuns:
    """A staged day back: runs read from where they are, or downloaded once into `local_dir`
    if the staging is remote (read batch by batch, each run is then read sequentially)."""
    with filesystem.open_input_stream(f"{directory}/{LISTING}") as f:
        listing = json.loads(f.read())
    local = pafs.LocalFileSystem()
    if isinstance(filesystem, pafs.LocalFileSystem):
        runs: list[SortedRun] = [IpcRun(filesystem, f"{directory}/{name}") for name in listing["runs"]]
    else:  # one parallel download of the folder
        pafs.copy_files(
            directory, local_dir, source_filesystem=filesystem, destination_filesystem=local, use_threads=True
        )
        runs = [IpcRun(local, f"{local_dir}/{name}") for name in listing["runs"]]
    kept_out = pq.read_table(f"{directory}/{KEPT_OUT}", filesystem=filesystem)
    return StagedRuns(
        runs=runs,
        kept_out=kept_out,
        accepted_rows=int(listing["accepted_rows"]),
        excluded=set(listing.get("excluded", [])),
        read_keys=listing.get("read"),
        planned=ReadPlan.from_json(listing["planned"]) if listing.get("planned") else None,
        location=(filesystem, directory),
    )
