"""The code location: what `dagster dev` loads from workspace.yaml, configured from the environment."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from wflog_assets.definitions import INGEST_JOB, defs
from wflog_assets.defs import settings
from wflog_assets.defs.resources import (
    LocalLogSource,
    RestCatalogResource,
    S3LogSource,
    SqliteCatalogResource,
)

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ["raw_log_chunks", "normalized_log_batches", "workflow_logs"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for setting in settings.ENV_SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_default_definitions_are_the_embedded_graph_with_lineage_and_daily_partitions():
    d = defs()
    graph = d.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(ASSETS) <= keys
    assert graph.get(dg.AssetKey("normalized_log_batches")).parent_keys == {dg.AssetKey("raw_log_chunks")}
    assert graph.get(dg.AssetKey("workflow_logs")).parent_keys == {
        dg.AssetKey("raw_log_chunks"),
        dg.AssetKey("normalized_log_batches"),
    }
    for name in ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.partitions_def.get_first_partition_key() == "2025-12-01"
        assert node.partitions_def.timezone == "UTC"
        assert node.description  # the asset's docstring, shown in the UI
    assert len({id(graph.get(dg.AssetKey(n)).partitions_def) for n in ASSETS}) == 1
    assert d.resolve_job_def(INGEST_JOB)
    resources = d.resources
    assert isinstance(resources["log_source"], LocalLogSource)
    assert isinstance(resources["iceberg"], SqliteCatalogResource)
    assert graph.get(dg.AssetKey("raw_log_chunks")).kinds == {"file", "parquet", "json"}  # a directory


def test_start_date_and_production_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WFLOG_START_DATE", "2024-06-01")
    monkeypatch.setenv("WFLOG_SOURCE", "s3")
    monkeypatch.setenv("WFLOG_S3_BUCKET", "logs-bucket")
    monkeypatch.setenv("WFLOG_S3_PREFIX", "workflows")
    monkeypatch.setenv("WFLOG_CATALOG", "rest")
    monkeypatch.setenv("WFLOG_CATALOG_URI", "https://polaris.example.com/api/catalog")
    monkeypatch.setenv("WFLOG_CATALOG_WAREHOUSE", "logs")
    monkeypatch.setenv("WFLOG_CATALOG_CREDENTIAL", "client-id:very-secret-value")
    d = defs()
    node = d.resolve_asset_graph().get(dg.AssetKey("workflow_logs"))
    assert node.partitions_def.get_first_partition_key() == "2024-06-01"
    source, catalog = d.resources["log_source"], d.resources["iceberg"]
    assert isinstance(source, S3LogSource)
    assert source.bucket == "logs-bucket"
    assert isinstance(catalog, RestCatalogResource)
    # the secret stays an environment-variable reference until run time
    assert isinstance(catalog.credential, dg.EnvVar)
    assert "very-secret-value" not in repr(catalog)


def test_an_end_date_gives_a_fixed_range_of_days_ending_on_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WFLOG_END_DATE", "2025-12-03")  # what the demo prints for `dagster dev`
    node = defs().resolve_asset_graph().get(dg.AssetKey("workflow_logs"))
    assert node.partitions_def.get_partition_keys() == ["2025-12-01", "2025-12-02", "2025-12-03"]
    monkeypatch.delenv("WFLOG_END_DATE")
    node = defs().resolve_asset_graph().get(dg.AssetKey("workflow_logs"))
    assert node.partitions_def.get_last_partition_key() == dt.datetime.now(dt.UTC).date().isoformat()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WFLOG_START_DATE": "01/12/2025"}, "WFLOG_START_DATE='01/12/2025' is not a date"),
        ({"WFLOG_END_DATE": "tomorrow"}, "WFLOG_END_DATE='tomorrow' is not a date"),
        ({"WFLOG_END_DATE": "2025-11-30"}, "WFLOG_END_DATE=2025-11-30 is before WFLOG_START_DATE=2025-12-01"),
        ({"WFLOG_SOURCE": "ftp"}, "WFLOG_SOURCE='ftp': use one of local, s3"),
        ({"WFLOG_SOURCE": "s3"}, "WFLOG_S3_BUCKET is not set"),
        ({"WFLOG_CATALOG": "rest"}, "WFLOG_CATALOG_URI is not set"),
        (
            {"WFLOG_CATALOG": "rest", "WFLOG_CATALOG_URI": "polaris:8181", "WFLOG_CATALOG_WAREHOUSE": "w"},
            "must be an http(s):// URL",
        ),
        ({"WFLOG_S3_PATH_STYLE": "maybe"}, "WFLOG_S3_PATH_STYLE='maybe': use true or false"),
    ],
)
def test_bad_settings_say_what_to_fix(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        defs()


def test_dagster_loads_the_workspace_file():
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            str(ROOT / "workspace.yaml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_readme_documents_every_environment_variable_and_the_ci_test_command():
    readme = (ROOT / "README.md").read_text()
    for setting in settings.ENV_SETTINGS:
        assert f"| `{setting.name}` | {setting.configures}" in readme, setting.name
    assert "bash .ci/test" in readme
    assert "bash .ci/test" in (ROOT / ".ci" / "run").read_text()


def test_the_embedded_instance_monitors_runs_without_telemetry_and_keeps_an_operators_yaml(tmp_path: Path):
    from wflog_assets.cli import _instance

    with _instance(tmp_path / "home") as instance:
        assert instance.run_monitoring_enabled
        assert not instance.telemetry_enabled
        assert instance.run_monitoring_settings["start_timeout_seconds"] == 180
        assert instance.run_monitoring_settings["cancel_timeout_seconds"] == 180
        assert instance.run_launcher.supports_check_run_worker_health  # a dead worker is seen
        sensor_ticks = instance.get_settings("retention")["sensor"]["purge_after_days"]
        assert sensor_ticks == {"skipped": 1, "success": 7, "failure": 30}
    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    with _instance(own) as instance:
        assert instance.telemetry_enabled
        assert not instance.run_monitoring_enabled


def test_a_source_root_one_level_off_is_an_error_of_the_cli_and_a_warning_of_the_asset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from wflog_assets.cli import main as cli_main

    logs = tmp_path / "bucket" / "logs"
    assert (
        cli_main(
            ["generate", "--dest", str(logs), "--start", "2025-12-01", "--days", "1", "--rows-per-day", "200"]
        )
        == 0
    )
    monkeypatch.setenv("WFLOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WFLOG_SOURCE_DIR", str(logs.parent))  # one level above year=
    assert cli_main(["materialize", "--start", "2025-12-01"]) == 3
    assert "holds no year= folder" in capsys.readouterr().err
    monkeypatch.setenv("WFLOG_SOURCE_DIR", str(logs))
    assert cli_main(["materialize", "--start", "2025-12-01"]) == 0
    assert "rows_written=    200" in capsys.readouterr().out
    # the day committed, the wrong root again: the run fails before committing, the rows stay
    from wflog_assets.defs import settings

    table = settings.iceberg_catalog().ensure_table()
    snapshot = table.current_snapshot().snapshot_id
    monkeypatch.setenv("WFLOG_SOURCE_DIR", str(logs.parent))
    with pytest.raises(SystemExit) as failed:
        cli_main(["materialize", "--start", "2025-12-01"])
    message = str(failed.value.code)
    assert message.startswith("error: run of ingest_workflow_logs for 2025-12-01 failed: 2025-12-01:")
    assert "nothing was committed" in message
    assert str(logs.parent.resolve()) in message
    assert "\n" not in message
    table = table.refresh()
    assert (table.current_snapshot().snapshot_id, table.scan().count()) == (snapshot, 200)


@pytest.mark.parametrize(
    ("chosen", "backend"), [(None, "jemalloc"), ("mimalloc", "mimalloc"), ("system", "system")]
)
def test_a_run_allocates_from_the_lean_pool_unless_the_operator_chose_one(chosen: str | None, backend: str):
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    code = (
        "import pyarrow as pa; from wflog_assets.process import use_lean_allocator; "
        "print(use_lean_allocator(), pa.default_memory_pool().backend_name)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [backend, backend]
    # the `wflog-assets` command names it before Arrow loads: Arrow's own first choice too
    code = (
        "import os; from wflog_assets.process import prepare_command; prepare_command(); "
        "import pyarrow as pa; "
        "print(os.environ['ARROW_DEFAULT_MEMORY_POOL'], pa.default_memory_pool().backend_name)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [backend, backend]


def test_importing_the_package_changes_no_process_setting():
    code = (
        "import gc, os, sys\n"
        "before = (dict(os.environ), gc.get_freeze_count(), gc.get_threshold(), gc.isenabled())\n"
        "import wflog_assets, wflog_assets.definitions, wflog_assets.cli, wflog_assets.defs.launcher\n"
        "after = (dict(os.environ), gc.get_freeze_count(), gc.get_threshold(), gc.isenabled())\n"
        "print(before == after, after[1], 'pyarrow' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "0", "True"]  # pyarrow loaded, nothing frozen or set


def test_a_run_keeps_the_loaded_modules_out_of_its_collections_and_gives_them_back_after(tmp_path: Path):
    code = (
        "import gc, dagster as dg\n"
        "from wflog_assets.defs.resources import SqliteCatalogResource\n"
        "loaded = gc.get_freeze_count()\n"
        "resource, context = SqliteCatalogResource(data_dir='catalog'), dg.build_init_resource_context()\n"
        "resource.setup_for_execution(context)\n"
        "during = gc.get_freeze_count()\n"
        "resource.teardown_after_execution(context)\n"
        "print(loaded, during, gc.get_freeze_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    loaded, during, after = map(int, out.stdout.split())
    assert loaded == 0  # importing froze nothing
    # Dagster's and pyiceberg's modules: hundreds of thousands of objects no collection walks
    assert during > 100_000
    assert after == 0  # the run's end puts everything back under the collector


def test_the_docs_stay_short_and_their_links_resolve():
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert sum(len(p.read_text()) for p in docs) <= 50_000  # a reader looks for one fact
    anchors = {
        p.name: {
            re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in p.read_text().splitlines()
            if line.startswith("#")
        }
        for p in [*docs, ROOT / "README.md"]
    }
    for page in [*docs, ROOT / "README.md"]:
        for target, anchor in re.findall(
            r"\]\((?:docs/|\.\./)?([A-Za-z-]+\.md)#([a-z0-9-]+)\)", page.read_text()
        ):
            assert anchor in anchors[target], f"{page.name} links to {target}#{anchor}"
