"""The `wflog-assets` command meets a user's mistakes with one line that says what to fix and an
exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from wflog_assets.cli import main as cli_main


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded default under tmp_path, its partitions from 2025-12-01 to 2025-12-03."""
    monkeypatch.setenv("WFLOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WFLOG_SOURCE_DIR", str(tmp_path / "source"))
    monkeypatch.setenv("WFLOG_START_DATE", "2025-12-01")
    monkeypatch.setenv("WFLOG_END_DATE", "2025-12-03")
    return tmp_path


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(("error:", "wflog-assets"))]
    assert lines, err
    return lines[-1]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["materialize", "--start", "2025-13-01"], "'2025-13-01' is not a calendar day: use YYYY-MM-DD"),
        (["materialize", "--start", "2025-12-01", "--days", "0"], "'0': use a number of days, 1 or more"),
        (["generate", "--dest", "x", "--start", "yesterday"], "'yesterday' is not a calendar day"),
    ],
)
def test_a_bad_argument_is_a_usage_error_naming_it(
    data: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
):
    with pytest.raises(SystemExit) as exited:
        cli_main(argv)
    assert exited.value.code == 2
    assert says in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("start", "days", "says"),
    [
        ("2025-11-30", "1", "2025-11-30 is before WFLOG_START_DATE=2025-12-01"),
        ("2025-12-03", "2", "2025-12-04 is after WFLOG_END_DATE=2025-12-03"),
    ],
)
def test_days_outside_the_partitions_name_the_setting_and_run_nothing(
    data: Path, capsys: pytest.CaptureFixture[str], start: str, days: str, says: str
):
    assert cli_main(["materialize", "--start", start, "--days", days]) == 2
    assert says in _one_line_error(capsys)
    assert not (data / "data" / "dagster_home").exists()  # no run, no instance


def test_a_wrong_setting_is_one_line_with_what_to_use(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WFLOG_SOURCE", "ftp")
    assert cli_main(["materialize", "--start", "2025-12-01"]) == 2
    assert _one_line_error(capsys) == "error: WFLOG_SOURCE='ftp': use one of local, s3"
    monkeypatch.setenv("WFLOG_SOURCE", "local")
    monkeypatch.setenv("WFLOG_START_DATE", "2025-12")  # read by the range check, before any run
    assert cli_main(["materialize", "--start", "2025-12-01"]) == 2
    assert "WFLOG_START_DATE='2025-12' is not a date: use YYYY-MM-DD" in _one_line_error(capsys)


def test_a_query_for_an_unknown_workflow_says_so(data: Path, capsys: pytest.CaptureFixture[str]):
    assert cli_main(["generate", "--dest", str(data / "source"), "--start", "2025-12-01", "--days", "1"]) == 0
    assert cli_main(["materialize", "--start", "2025-12-01"]) == 0
    capsys.readouterr()
    assert cli_main(["query", "--workflow", "does-not-exist"]) == 1
    assert "no workflow named 'does-not-exist'" in _one_line_error(capsys)
