"""Helpers of the command-line tests: running a command in-process or in a subprocess, sample inputs."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner, Result

import tensordb
from tensordb.cli.app import main

README = Path(__file__).resolve().parents[2] / "README.md"


FIXTURE = Path(__file__).resolve().parents[2] / "examples" / "seed-example"


FIXTURE_TREE = "bm01-flow-over-cylinder-sample037_510"


COMMANDS = {"demo", "import", "export", "ls", "tree", "show", "sql", "stats", "gc", "check", "bundle", "rm", "mv", "cp",
            "snapshot", "log", "tag", "restore", "expire",
            "diff"}


POINTS = np.arange(300, dtype="f4").reshape(100, 3)


FIELD = np.linspace(-1.0, 1.0, 50)


NOISY = np.array([1.5, np.nan, -2.0, 4.0, np.nan, 0.25] * 7, dtype="f4")


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: Any) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def fails(*args: Any, code: int = 1) -> str:
    """Run a command that must fail; return its one-line error (stderr), checked to have no traceback.

    Usage errors (code 2: a bad option value, a missing argument) are click's: usage, hint, then the error line.
    """
    result = run(*args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    if code == 2:
        assert lines[0].startswith("Usage: ") and lines[-1].startswith("Error: "), result.stderr
        return lines[-1]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def table(output: str) -> list[list[str]]:
    """The rows of a table printed to a pipe, cut at the columns of its header (the first line of
    lower-case column names), up to a blank line or the end."""
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if re.fullmatch(r"[a-z_]+(  +[a-z_]+)*", line))
    starts = [m.start() for m in re.finditer(r"\S+", lines[header])]
    rows = []
    for line in itertools.takewhile(str.strip, lines[header + 1:]):
        rows.append([line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])])
    return rows


def array_object(data: np.ndarray, buffer: str | None = None) -> dict[str, Any]:
    if buffer is None:
        encoded = {"buffer": base64.b64encode(data.tobytes()).decode(), "encoding": "base64"}
    else:
        encoded = {"buffer": buffer, "encoding": "binref"}
    return {"object_type": "array", "shape": list(data.shape), "dtype": str(data.dtype), "data": encoded}


def write_sample(folder: Path, stem: str, time: int, binref: str | None = None) -> Path:
    """A JSON+binref file: one base64 array and one binref array (into STEM.bin unless told otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    points = POINTS + time
    (folder / f"{stem}.bin").write_bytes(b"\0" * 8 + points.tobytes())
    doc = {"name": stem, "time": time,
           "mesh": {"object_type": "PasteurSurfaceMesh", "types": array_object(np.full(4, 7, "i4")),
                    "points": array_object(points, binref or f"{stem}.bin:8")}}
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(doc))
    return path


def state(db: Path) -> tuple[dict[str, Any], bool]:
    """Every tree, loaded, and whether check() passes: what a refused command must leave unchanged."""
    with tensordb.open(db, mode="r") as database:
        return {name: _plain_tree(database[name].load()) for name in database}, database.check().ok


def cli(*args: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensordb", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def _plain_tree(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_tree(v) for v in value]
    return (type(value).__name__, repr(value))
