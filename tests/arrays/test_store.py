"""Tests of tensordb.arrays.store: statements per slice, and handle caches that never serve stale data.

A first slice of a fresh handle costs at most 3 SQL statements (1 for an
array of one chunk), a repeated slice of an open handle at most 1 (counted
with an apsw exec tracer, so the property cannot regress silently). Between two reads of one handle, writes
by another connection, another process, this connection, gc's compaction or
a rolled-back transaction must all show (or not) exactly as committed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_io import statements

import tensordb
from tensordb.errors import StaleHandleError

BOX = (slice(5, 37), slice(70, 102))


def _make(path: Path, inline_threshold: int | None = None) -> np.ndarray:
    data = np.random.default_rng(0).standard_normal((128, 128)).astype("f4")
    with tensordb.open(path, inline_threshold=inline_threshold) as db:
        db["t"] = {}
        db["t"].set("/a", data, chunks=(32, 32))
    return data


@pytest.mark.parametrize("inline_threshold", [None, 0], ids=["inline", "packs"])
def test_statements_per_slice(db_path: Path, inline_threshold: int | None) -> None:
    data = _make(db_path, inline_threshold)
    with tensordb.open(db_path, mode="r") as db:
        handle = db["t"]["/a"]
        with statements(db) as first:
            np.testing.assert_array_equal(handle[BOX], data[BOX])
        with statements(db) as repeated:
            np.testing.assert_array_equal(handle[BOX], data[BOX])
        with statements(db) as other_box:
            np.testing.assert_array_equal(handle[100:, :3], data[100:, :3])
        with statements(db) as shape:
            assert handle.shape == data.shape
    assert len(first) <= 3, first
    assert len(repeated) <= 1, repeated
    assert len(other_box) <= 1, other_box
    assert len(shape) <= 1, shape


@pytest.mark.parametrize("inline_threshold", [None, 0], ids=["inline", "packs"])
@pytest.mark.parametrize("written", [True, False], ids=["written", "fill"])
def test_a_one_chunk_array_is_read_with_one_statement(db_path: Path, inline_threshold: int | None,
                                                      written: bool) -> None:
    data = np.arange(12, dtype="f8").reshape(3, 4) if written else np.zeros((3, 4))
    with tensordb.open(db_path, inline_threshold=inline_threshold) as db:
        db["t"] = {"a": data}
    with tensordb.open(db_path, mode="r") as db:
        handle = db["t"]["a"]
        with statements(db) as first:
            np.testing.assert_array_equal(handle[...], data)
        with statements(db) as repeated:
            np.testing.assert_array_equal(handle[1], data[1])
    assert len(first) == 1, first
    assert len(repeated) <= 1, repeated


def test_a_one_chunk_array_with_a_stray_index_row_reads_its_own_chunk(db_path: Path) -> None:
    """A damaged file's second index row for a one-chunk array is not taken for its chunk."""
    import apsw

    data = np.arange(12, dtype="f8").reshape(3, 4)
    with tensordb.open(db_path) as db:
        db["t"] = {"a": data}
        array_id = db["t"]["a"].array_id
    raw = apsw.Connection(str(db_path))
    raw.execute("INSERT INTO chunk_ref(array_id, coord, chunk_id) "
                "SELECT array_id, '9.9', chunk_id FROM chunk_ref WHERE array_id = ?", (array_id,))
    raw.close()
    with tensordb.open(db_path, mode="r") as db:
        np.testing.assert_array_equal(db["t"]["a"][...], data)


def test_a_write_by_another_connection_shows_in_an_open_handle(db_path: Path) -> None:
    data = _make(db_path)
    with tensordb.open(db_path, mode="r") as reader, tensordb.open(db_path) as writer:
        handle = reader["t"]["/a"]
        np.testing.assert_array_equal(handle[BOX], data[BOX])
        writer["t"]["/a"][BOX] = -1.0
        np.testing.assert_array_equal(handle[BOX], np.full((32, 32), -1.0, "f4"))
        writer["t"]["/a"].resize((40, 50))
        with pytest.raises(IndexError):
            handle[45]  # the new shape, not the one read before
        writer["t"]["/a"].resize((140, 50))
        assert handle[139].shape == (50,)
        writer["t"]["/a"].resize((40, 50))
        assert handle.shape == (40, 50)
        np.testing.assert_array_equal(handle[...][:5, :5], data[:5, :5])
        writer["t"]["/b"] = {"x": writer["t"]["/a"]}  # shared: the next write clones the array
        writer["t"]["/a"][0:2, 0:2] = 9.0
        assert handle.array_id != reader["t"]["/b/x"].array_id
        np.testing.assert_array_equal(handle[0:3, 0:3], [[9, 9, data[0, 2]], [9, 9, data[1, 2]], data[2, :3]])
        del writer["t"]["/a"]
        with pytest.raises(StaleHandleError):
            handle[0]


def test_a_write_by_another_process_shows_in_an_open_handle(db_path: Path) -> None:
    data = _make(db_path)
    with tensordb.open(db_path, mode="r") as reader:
        handle = reader["t"]["/a"]
        np.testing.assert_array_equal(handle[BOX], data[BOX])
        script = (
            "import sys, tensordb\n"
            "with tensordb.open(sys.argv[1]) as db:\n"
            "    db['t']['/a'][5:37, 70:102] = 7.0\n"
        )
        subprocess.run([sys.executable, "-c", script, str(db_path)], check=True)
        np.testing.assert_array_equal(handle[BOX], np.full((32, 32), 7.0, "f4"))


def test_writes_of_this_connection_show_in_other_handles(db: tensordb.Database) -> None:
    db["t"] = {}
    db["t"].set("/a", np.zeros((64, 64), "f4"), chunks=(16, 16))
    reader, writer = db["t"]["/a"], db["t"]["/a"]
    assert not reader[...].any()
    writer[3:9, 3:9] = 1.0
    assert reader[...].sum() == 36
    with db.transaction():
        writer[...] = 2.0
        assert (reader[...] == 2.0).all()  # this transaction's own writes
    with pytest.raises(RuntimeError), db.transaction():
        writer[...] = 3.0
        raise RuntimeError("roll back")
    assert (reader[...] == 2.0).all()
    db["t"]["/b"] = {"x": db["t"]["/a"]}  # shared: the next write goes to a copy
    db["t"]["/b/x"][0, 0] = 5.0
    assert reader[0, 0] == 2.0


def test_compaction_by_gc_between_reads(db_path: Path) -> None:
    data = _make(db_path, inline_threshold=0)
    with tensordb.open(db_path) as db:
        db["t"]["/junk"] = np.random.default_rng(1).standard_normal((256, 256))
        del db["t"]["/junk"]
    with tensordb.open(db_path, mode="r") as reader, tensordb.open(db_path) as writer:
        handle = reader["t"]["/a"]
        np.testing.assert_array_equal(handle[BOX], data[BOX])
        writer.gc()  # removes the junk and compacts the pack: chunks move
        np.testing.assert_array_equal(handle[BOX], data[BOX])
        np.testing.assert_array_equal(handle[...], data)
        assert reader.check().ok


def test_handles_from_pickles_and_dask_blocks_read_through_the_cache(db_path: Path) -> None:
    import pickle

    data = _make(db_path)
    with tensordb.open(db_path, mode="r") as db:
        handle: Any = pickle.loads(pickle.dumps(db["t"]["/a"]))
        np.testing.assert_array_equal(handle[BOX], data[BOX])
        np.testing.assert_array_equal(handle[BOX], data[BOX])


def test_a_pack_folder_created_during_a_read_is_locked_and_the_rows_read_again(db_path: Path) -> None:
    data = _make(db_path)  # small chunks, all inline: no pack folder yet
    bigger = np.random.default_rng(2).standard_normal((128, 128)).astype("f4")
    with tensordb.open(db_path, mode="r") as reader, tensordb.open(db_path, inline_threshold=0) as writer:
        handle = reader["t"]["/a"]
        np.testing.assert_array_equal(handle[BOX], data[BOX])
        packs = reader._store.packs
        with packs.reading():  # finds no folder to lock
            writer["t"]["/a"][...] = bigger  # the first pack file, in a new folder
            np.testing.assert_array_equal(handle[BOX], bigger[BOX])
            assert packs._read_locked  # the read locked the folder it met
        assert not packs._read_locked
