"""Shared fixtures and hypothesis profiles.

Profiles (select with the environment variable HYPOTHESIS_PROFILE):

* ``ci`` (default): 100 examples, no deadline;
* ``fast``: 20 examples, no deadline; the default of the fast loop below;
* ``thorough``: 1000 examples, no deadline.

Tests that need more examples than the others ask for a multiple of the
profile's (``10 * settings.default.max_examples``).

``pytest --long`` runs the long versions of the soak, fuzz, crash, power-loss
and I/O-fault tests (a 120 s concurrency soak, 10,000 fuzz mutations, 3,000
random kills, ...) instead of their CI-sized defaults.

``pytest -m "not slow"`` is the fast loop: it leaves out the tests marked
``slow`` (crash, power loss, I/O faults, the concurrency soak, fuzzing, the
state machine, the Dask cluster, worker processes, gigabytes of data), and
runs the property tests with the ``fast`` profile. Plain ``pytest`` and CI
run everything with ``ci``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Make ``import strategies`` work from every test module, whatever the
# rootdir / import mode / presence of __init__.py files.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("fast", parent=settings.get_profile("ci"), max_examples=20)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("ci"),
    max_examples=1000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    # Runs before the test modules are imported, so their @settings see the profile.
    if "HYPOTHESIS_PROFILE" not in os.environ and config.getoption("markexpr", "").replace(" ", "") == "notslow":
        settings.load_profile("fast")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the long soak, fuzz, crash, power-loss and I/O-fault tests")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a database file that does not exist yet."""
    return tmp_path / "t.tdb"


@pytest.fixture
def db(db_path: Path) -> Iterator[Any]:
    """A fresh, open database; closed after the test."""
    import tensordb

    database = tensordb.open(db_path)
    try:
        yield database
    finally:
        database.close()
