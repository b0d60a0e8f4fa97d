"""Fixtures of the crash, power-loss and I/O-fault suites (``--long`` runs the long variants)."""

from __future__ import annotations

import pytest

from crash import seams
from tensordb.storage import hooks


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    """True with ``pytest --long``: run the long variants."""
    return bool(request.config.getoption("--long"))


@pytest.fixture(autouse=True)
def _default_hooks() -> object:
    """Every test ends with the storage hooks (file operations, tracer, VFS) it started with."""
    saved = hooks.installed()
    yield
    seams.restore(saved)
    assert not seams.armed_points(), "a test armed a crash point in its own process"
