"""The command line: help, demo, error boundary; one real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tensordb
from tensordb.cli import main


def test_help_lists_demo_with_an_example() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
    demo_help = CliRunner().invoke(main, ["demo", "--help"])
    assert demo_help.exit_code == 0 and "Example" in demo_help.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and tensordb.__version__ in result.output


def test_demo_builds_a_healthy_database(tmp_path: Path) -> None:
    path = tmp_path / "demo.tdb"
    result = CliRunner().invoke(main, ["demo", str(path), "--sims", "3", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "0 array bytes written" in result.output
    with tensordb.open(path, mode="r") as db:
        assert len(db) == 12
        assert all("inflow" in db[name]["data"] and db[name]["reviewed"] is True for name in db)
        stats = db.stats()
        # geometry (points, connectivity, cell types of 5 meshes) is shared by the 4 steps of a simulation
        assert stats["dedup_ratio"] > 1.5
        assert db.check().ok


def test_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.tdb"
    content = b"hello, this is not SQLite" * 10
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["demo", str(bad)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {bad} is not a tensordb file; refusing to overwrite it"]
    assert bad.read_bytes() == content


def test_demo_in_a_real_subprocess(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tensordb", "demo", str(tmp_path / "d.tdb"), "--sims", "2", "--steps", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "check() ok" in out.stdout


def test_installed_console_script_runs_the_demo(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tensordb"
    if not script.exists():
        pytest.skip("the tensordb console script is not installed (run: pip install .)")
    out = subprocess.run([str(script), "demo", str(tmp_path / "d.tdb"), "--sims", "2", "--steps", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "0 array bytes written" in out.stdout
