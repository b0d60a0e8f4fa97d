"""The ``tensordb`` script and ``python -m tensordb``: --version without loading the commands, real subprocesses."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import tensordb


def test_version_is_answered_without_loading_the_commands() -> None:
    code = ("import sys; sys.argv = ['tensordb', '--version']; from tensordb.cli.entry import main; main(); "
            "print(sorted(m for m in ('numpy', 'click', 'rich', 'tensordb.cli.app', 'tensordb.database') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"tensordb, version {tensordb.__version__}", "[]"]


def test_python_m_tensordb_goes_through_the_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "tensordb", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"tensordb, version {tensordb.__version__}\n"


def test_the_script_is_the_entry_point() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["tensordb"] == "tensordb.cli.entry:main"


def test_the_entry_point_hands_everything_else_to_the_commands() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['tensordb', '--help'];"
                           "from tensordb.cli.entry import main; main()"], capture_output=True, text=True)
    assert done.returncode == 0 and "Commands:" in done.stdout


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
    installed = [e.value for e in entry_points(group="console_scripts", name="tensordb")]
    if installed != ["tensordb.cli.entry:main"]:
        pytest.skip(f"the installed tensordb script runs {installed}, an older layout (run: pip install -e .)")
    out = subprocess.run([str(script), "demo", str(tmp_path / "d.tdb"), "--sims", "2", "--steps", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "0 array bytes written" in out.stdout
