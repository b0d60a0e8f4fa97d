"""A file written before the default codec changed opens and reads bit for bit, with its own codec."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from strategies import assert_tree_equal

import tensordb
from tensordb.codec import DEFAULT_CODEC, Codec
from tests.data.old_file_content import expected

DATA = Path(__file__).parent.parent / "data"
OLD_CODEC = Codec("zstd", level=5, shuffle="byte")


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    """A private copy: opening a WAL database may create its -wal and -shm files."""
    shutil.copy(DATA / "zstd5-v1.tdb", tmp_path / "old.tdb")
    shutil.copytree(DATA / "zstd5-v1.tdb-packs", tmp_path / "old.tdb-packs")
    return tmp_path / "old.tdb"


def _expected_now() -> dict[str, Any]:
    value = expected()
    value["sample"]["data"]["field"][0:10] = 0.0
    value["other"]["shared"] = value["sample"]["data"]["ids"]
    return value


@pytest.mark.parametrize("mode", ["r", "a"])
def test_old_file_reads_bit_for_bit_with_its_codec(old_file: Path, mode: str) -> None:
    with tensordb.open(old_file, mode=mode) as db:
        for name, value in _expected_now().items():
            assert_tree_equal(db[name].load(), value, name)
        field = db["sample"]["/data/field"]
        assert field.codec == OLD_CODEC != DEFAULT_CODEC
        assert field[150:160, 7].tobytes() == _expected_now()["sample"]["data"]["field"][150:160, 7].tobytes()
        assert db.check().ok


def test_new_arrays_in_an_old_file_use_the_new_default(old_file: Path) -> None:
    with tensordb.open(old_file) as db:
        db["sample"]["/data/new"] = np.arange(10_000, dtype="f4")
        db["sample"]["/data/field"][290:300] = 1.0  # copy-on-write into an old array keeps its codec
        assert db["sample"]["/data/new"].codec == DEFAULT_CODEC
        assert db["sample"]["/data/field"].codec == OLD_CODEC
        assert db.check().ok
    with tensordb.open(old_file, mode="r") as db:
        field = np.asarray(db["sample"]["/data/field"])
        want = _expected_now()["sample"]["data"]["field"]
        want[290:300] = 1.0
        assert field.tobytes() == want.tobytes()
        assert np.asarray(db["sample"]["/data/new"]).tobytes() == np.arange(10_000, dtype="f4").tobytes()
