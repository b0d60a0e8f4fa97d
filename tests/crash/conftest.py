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
    """Every test ends with the file operations, VFS and planted-bug switches it started with."""
    from tensordb import faults

    saved = faults.files, faults.sqlite_vfs, faults.UNSAFE_COMMIT_BEFORE_PACK_FLUSH, faults.UNSAFE_NO_PACK_FSYNC
    yield
    (faults.files, faults.sqlite_vfs, faults.UNSAFE_COMMIT_BEFORE_PACK_FLUSH,
     faults.UNSAFE_NO_PACK_FSYNC) = saved
    assert not os.environ.get(faults.ENV_CRASHPOINT), "a test left a crash point armed in its own process"
