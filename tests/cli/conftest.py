"""Fixtures of the command-line tests: small databases to run the commands on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tensordb
from cli.helpers import FIELD, NOISY, POINTS


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A database with a dict tree, a tree named by a prefix of another's name, and a shared array."""
    path = tmp_path / "s.tdb"
    with tensordb.open(path) as db:
        db["s1"] = {"name": "n" * 200, "time": 51, "data": {"l": [1, 2.5, None, True], "a/b": "slash key"},
                    "z": np.float32(3.5)}
        db["s1"].set("/data/points", POINTS, chunks=(16, 3))
        db["s1"].set("/data/noisy", NOISY, chunks=(5,))
        db["sim01"] = {"kind": "parent", "data": {"p": "not the one"}}
        db["sim01/step003"] = {"time": 3, "data": {"p": FIELD}}
        db["geom"] = {"pts": db["s1"]["/data/points"]}  # by reference: the array is shared
    return path


@pytest.fixture
def steps(tmp_path: Path) -> Path:
    """Two simulations of three steps: the geometry is written anew at every step (same bytes), fields differ."""
    path = tmp_path / "steps.tdb"
    rng = np.random.default_rng(5)
    with tensordb.open(path) as db:
        for sim in ("sim01", "sim02"):
            geometry = rng.random((5000, 3))
            for step in range(3):
                db[f"{sim}/step{step}"] = {"points": geometry.copy(), "p": rng.random(5000)}
    return path
