"""Files written before the default codec changed (a format-1 file: before history and upgrades too) read
bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from strategies import assert_tree_equal

import tensordb
from tensordb.codec import DEFAULT_CODEC, Codec
from tensordb.storage import schema
from tests.data.old_file_content import expected
from tests.storage.test_schema import schema_rows

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


def test_old_file_upgrades_and_reads_bit_for_bit_with_its_codec(old_file: Path) -> None:
    with tensordb.open(old_file, mode="a") as db:  # a writable open upgrades, in one transaction
        assert db.history() == []
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


def test_the_upgraded_old_file_has_a_fresh_files_schema_and_keeps_history(old_file: Path, tmp_path: Path) -> None:
    with tensordb.open(old_file) as db:
        first = db.snapshot("after the upgrade")
        db["sample"]["/time"] = -1
        assert db.at(first)["sample"].load()["time"] == _expected_now()["sample"]["time"]
    with tensordb.open(tmp_path / "fresh.tdb", mode="x"):
        pass
    def normalised(path: Path) -> set[tuple[Any, ...]]:  # ALTER TABLE ADD COLUMN spaces the text its own way
        return {(*row[:3], schema.normalise_sql(row[3])) if len(row) == 4 else row for row in schema_rows(path)}

    assert normalised(old_file) == normalised(tmp_path / "fresh.tdb")
    with tensordb.open(old_file, mode="r") as db:
        assert [s.message for s in db.history()] == ["after the upgrade"]
        assert db.check().ok


def test_an_old_file_opened_read_only_asks_for_one_writable_open(old_file: Path) -> None:
    with pytest.raises(tensordb.FormatError, match=r"old\.tdb uses format version 1 and needs an upgrade to"):
        tensordb.open(old_file, mode="r")


def test_arrays_written_with_the_previous_default_keep_it_and_read_bit_for_bit(tmp_path: Path) -> None:
    """LZ4 level 5 with bit shuffle was the default before byte shuffle: such arrays keep their codec."""
    previous = Codec("lz4", level=5, shuffle="bit")
    field = np.random.default_rng(5).standard_normal((600, 500)).astype("f4")
    with tensordb.open(tmp_path / "p.tdb", mode="w") as db:
        db["t"] = {}
        db["t"].set("/f", field, chunks=(300, 500), codec=previous)
    with tensordb.open(tmp_path / "p.tdb") as db:
        stored = db["t"]["/f"]
        assert stored.codec == previous != DEFAULT_CODEC
        assert stored[...].tobytes() == field.tobytes()
        assert stored[290:310, 7:9].tobytes() == field[290:310, 7:9].tobytes()  # partly decoded, across chunks
        db["t"]["/g"] = field
        assert db["t"]["/g"].codec == DEFAULT_CODEC and db["t"]["/g"][...].tobytes() == field.tobytes()
        assert db.check().ok
