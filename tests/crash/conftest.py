"""Fixtures of the crash, power-loss and I/O-fault suites (``--long`` runs the long variants)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    """True with ``pytest --long``: run the long variants."""
    return bool(request.config.getoption("--long"))


@pytest.fixture(autouse=True)
def _default_seams() -> object:
    """Every test starts and ends with tensordb's real file operations and SQLite's default VFS."""
    from tensordb import faults

    saved = faults.files, faults.sqlite_vfs
    yield
    faults.files, faults.sqlite_vfs = saved
    assert not os.environ.get(faults.ENV_CRASHPOINT), "a test left a crash point armed in its own process"
