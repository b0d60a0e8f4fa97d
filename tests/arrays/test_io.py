"""Tests of tensordb.arrays.io: every public write goes through the batched scatter, every read through the gather.

For each write entry point (``tree[...] = value``, ``tree.set``, slice
assignment, ``append``, ``resize``, ``create_array`` streaming): the data read
back, copy-on-write against a tree sharing the array, and the number of SQL
statements, which must not grow with the number of chunks written (chunks are
stored a batch at a time, one statement per table). Reads: a subtree
``load()``, ``np.asarray`` and slices decode each chunk once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb

CODEC = tensordb.Codec("lz4", level=1, shuffle="byte")


@contextlib.contextmanager
def statements(db: tensordb.Database) -> Iterator[list[str]]:
    """Every SQL statement the database's connection runs inside the block."""
    seen: list[str] = []
    conn = db._store.conn.conn

    def trace(_cursor: Any, sql: str, _bindings: Any) -> bool:
        seen.append(sql)
        return True

    conn.exec_trace = trace
    try:
        yield seen
    finally:
        conn.exec_trace = None


def _field(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype("f4")


def _count_write(db: tensordb.Database, write: Any) -> int:
    """Statements a write runs, an ``executemany`` (one execution per row, same text) counting once."""
    with statements(db) as seen:
        write()
    return sum(1 for i, sql in enumerate(seen) if i == 0 or seen[i - 1] != sql)


# --------------------------------------------------------------------------- whole values


@pytest.fixture
def inline_db(db_path: Path) -> Iterator[tensordb.Database]:
    """A database storing every chunk inline: the first chunk stored in a pack costs a statement of its own."""
    with tensordb.open(db_path, inline_threshold=1 << 20) as database:
        yield database


@pytest.mark.parametrize("how", ["setitem", "set"])
def test_whole_value_writes_store_chunks_in_batches(inline_db: tensordb.Database, how: str) -> None:
    db = inline_db
    db["t"] = {}
    tree = db["t"]

    def write(path: str, data: np.ndarray) -> None:
        if how == "setitem":
            tree[path] = data
        else:
            tree.set(path, data, chunks=(8, 8), codec=CODEC)

    small, big = _field(16, 16, 1), _field(64, 64, 2)
    n_small = _count_write(db, lambda: write("/small", small))
    n_big = _count_write(db, lambda: write("/big", big))
    assert n_big == n_small  # 4 chunks or 64 (setitem: one chunk each): the same statements
    np.testing.assert_array_equal(tree["/small"][...], small)
    np.testing.assert_array_equal(tree["/big"][...], big)


# --------------------------------------------------------------------------- slice assignment


def _shared_pair(db: tensordb.Database, data: np.ndarray, chunks: tuple[int, ...]) -> tuple[Any, Any]:
    """Trees "a" and "b" holding one shared array (b copies a's subtree)."""
    db["a"] = {}
    db["a"].set("/x", data, chunks=chunks, codec=CODEC)
    db["b"] = {"x": db["a"]["/x"]}
    return db["a"]["/x"], db["b"]["/x"]


def test_slice_assignment_is_batched_and_copy_on_write(db: tensordb.Database) -> None:
    data = _field(64, 64)
    a, b = _shared_pair(db, data, (8, 8))
    block = _field(16, 64, 3)
    expected = data.copy()

    # two chunk rows (16 chunks), then four (32 chunks), partly covered at both ends
    n_two = _count_write(db, lambda: a.__setitem__((slice(4, 20), slice(None)), block))
    expected[4:20] = block
    n_four = _count_write(db, lambda: a.__setitem__((slice(20, 52), slice(None)), np.vstack([block, block])))
    expected[20:52] = np.vstack([block, block])
    assert n_four <= n_two  # the first write also cloned the shared array
    np.testing.assert_array_equal(a[...], expected)
    np.testing.assert_array_equal(b[...], data)  # the other tree still sees the original
    assert db.check().ok


def test_slice_assignment_compresses_only_the_chunks_it_changes(db: tensordb.Database) -> None:
    data = _field(64, 64)
    db["t"] = {}
    db["t"].set("/x", data, chunks=(8, 8), codec=CODEC)
    a = db["t"]["/x"]
    before = db.counters.chunks_written
    a[0:8, 0:24] = 1.0  # three whole chunks
    assert db.counters.chunks_written - before == 1  # the same content three times: stored once
    a[8:9, :] = data[8:9, :]  # rewrites eight chunks with their own content: all deduplicated
    assert db.counters.chunks_written - before == 1
    expected = data.copy()
    expected[0:8, 0:24] = 1.0
    np.testing.assert_array_equal(a[...], expected)


def test_writing_the_fill_value_drops_chunks(db: tensordb.Database) -> None:
    db["t"] = {}
    a = db["t"].create_array("/x", shape=(32, 32), dtype="i4", chunks=(8, 8), fill_value=7)
    a[...] = np.arange(32 * 32, dtype="i4").reshape(32, 32)
    assert len(list(db.arrays.chunk_coords(db.arrays.meta(a.array_id)))) == 16
    with statements(db) as seen:
        a[0:16, :] = 7
    assert sum(sql.startswith("DELETE FROM chunk_ref") for sql in seen) == 1  # eight index rows, one statement
    assert len(list(db.arrays.chunk_coords(db.arrays.meta(a.array_id)))) == 8
    np.testing.assert_array_equal(a[0:16, :], np.full((16, 32), 7, "i4"))
    np.testing.assert_array_equal(a[16:, :], np.arange(16 * 32, 32 * 32, dtype="i4").reshape(16, 32))
    assert db.check().ok  # the chunks' reference counts followed


# --------------------------------------------------------------------------- streaming


def test_create_array_streaming_is_batched(db: tensordb.Database) -> None:
    db["t"] = {}
    rows, cols = 256, 128
    data = _field(rows, cols)
    a = db["t"].create_array("/s", shape=(rows, cols), dtype="f4", chunks=(16, 16), codec=CODEC)
    counts = []
    for start in range(0, rows, 64):  # 4 chunk rows of 8 chunks per block
        block = slice(start, start + 64)
        counts.append(_count_write(db, lambda block=block: a.__setitem__(block, data[block])))
    bigger = db["t"].create_array("/s2", shape=(rows, cols), dtype="f4", chunks=(16, 16), codec=CODEC)
    other = _field(128, cols, 9)  # not stored yet: no chunk deduplicated
    whole_block = _count_write(db, lambda: bigger.__setitem__(slice(0, 128), other))  # 64 chunks
    assert max(counts) == min(counts) == whole_block
    np.testing.assert_array_equal(a[...], data)
    np.testing.assert_array_equal(np.asarray(bigger[:128]), other)


# --------------------------------------------------------------------------- append and resize


def test_append_is_batched_and_copy_on_write(db: tensordb.Database) -> None:
    data = _field(16, 64)
    a, b = _shared_pair(db, data, (8, 8))
    more = _field(20, 64, 4)
    a.append(more)  # fills the shrunken edge and two new chunk rows
    n_small = _count_write(db, lambda: a.append(more[:8]))
    n_large = _count_write(db, lambda: a.append(np.vstack([more, more])))
    assert n_large == n_small
    np.testing.assert_array_equal(a[...], np.vstack([data, more, more[:8], more, more]))
    np.testing.assert_array_equal(b[...], data)
    assert db.check().ok


def test_resize_rewrites_shrunk_edge_chunks_in_one_batch(db: tensordb.Database) -> None:
    data = _field(64, 64)
    a, b = _shared_pair(db, data, (8, 8))
    n_one_row = _count_write(db, lambda: a.resize((63, 60)))  # 8 edge chunks in the last row, 8 in the last column
    data_copy = data[:63, :60]
    np.testing.assert_array_equal(a[...], data_copy)
    n_again = _count_write(db, lambda: a.resize((45, 30)))
    assert n_again <= n_one_row  # the first resize also cloned the shared array
    a.resize((64, 64))
    expected = np.zeros((64, 64), "f4")
    expected[:45, :30] = data[:45, :30]
    np.testing.assert_array_equal(a[...], expected)  # what was cut off reads as the fill value
    np.testing.assert_array_equal(b[...], data)


def test_growing_rewrites_no_chunk(db: tensordb.Database) -> None:
    db["t"] = {}
    db["t"].set("/x", _field(60, 60), chunks=(8, 8), codec=CODEC)
    a = db["t"]["/x"]
    before = db.counters.snapshot()
    with statements(db) as seen:
        a.resize((100, 100))
    after = db.counters.snapshot()
    assert not any("chunk_ref" in sql for sql in seen)  # not even a look at the chunk index
    assert after["chunks_decoded"] == before["chunks_decoded"]
    assert after["chunks_written"] == before["chunks_written"]


# --------------------------------------------------------------------------- reads


def test_load_decodes_each_chunk_once_into_place(db: tensordb.Database) -> None:
    data = {"a": _field(64, 64), "b": [_field(10, 3, 5), np.arange(5)], "s": np.float32(2.5)}
    db["t"] = {}
    db["t"].set("/d", data, chunks=(16, 16), codec=CODEC)
    before = db.counters.chunks_decoded
    with statements(db) as seen:
        loaded = db["t"]["/d"].load()
    assert db.counters.chunks_decoded - before == 16 + 1 + 1  # "s" is kept in its node row
    assert sum(s.startswith("SELECT") and "chunk_ref" in s for s in seen) == 1
    np.testing.assert_array_equal(loaded["a"], data["a"])
    np.testing.assert_array_equal(loaded["b"][0], data["b"][0])
    np.testing.assert_array_equal(loaded["b"][1], data["b"][1])
    assert loaded["s"] == data["s"]


@pytest.mark.parametrize("key", [(slice(None), slice(None)), (slice(3, 61), slice(None, None, -3)), (5, [0, 9, 3])])
def test_reads_decode_each_chunk_once(db: tensordb.Database, key: Any) -> None:
    data = _field(64, 64)
    db["t"] = {}
    db["t"].set("/x", data, chunks=(16, 16), codec=CODEC)
    a = db["t"]["/x"]
    before = db.counters.chunks_decoded
    got = a[key]
    touched = len({(r // 16, c // 16) for r in np.arange(64)[key[0]].reshape(-1)
                   for c in np.arange(64)[key[1]].reshape(-1)})
    assert db.counters.chunks_decoded - before == touched
    expected = data[key[0]][:, key[1]] if not isinstance(key[0], int) else data[key[0]][key[1]]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.asarray(a), data)



WHOLE_READS = [(value, key) for value in (np.arange(12.0).reshape(3, 4), np.arange(7, dtype="i2"),
                                          np.array(2.5, "f8"), np.zeros((2, 0), "u1"))
               for key in (Ellipsis, slice(None)) if value.ndim or key is Ellipsis]  # no [:] of a 0-d array


@pytest.mark.parametrize(("value", "key"), WHOLE_READS, ids=lambda v: f"{v.ndim}-d{v.shape}" if isinstance(
    v, np.ndarray) else ("..." if v is Ellipsis else ":"))
def test_a_whole_one_chunk_array_reads_like_numpy(db: tensordb.Database, value: np.ndarray, key: Any) -> None:
    db["t"] = {"x": value, "unwritten": None}
    db["t"].create_array("/unwritten", value.shape, value.dtype, fill_value=3)
    a, fresh = db["t"]["x"], db["t"]["unwritten"]
    before = db.counters.chunks_decoded
    got = a[key]
    assert type(got) is np.ndarray and got.dtype == value.dtype and got.shape == value[key].shape
    np.testing.assert_array_equal(got, value[key])
    assert db.counters.chunks_decoded - before == (1 if value.size else 0)
    got[...] = 0  # a copy of its own
    np.testing.assert_array_equal(a[key], value[key])
    np.testing.assert_array_equal(fresh[key], np.full(value.shape, 3, value.dtype)[key])


def test_a_0d_array_refuses_a_slice_like_numpy(db: tensordb.Database) -> None:
    db["t"] = {"x": np.array(2.5)}
    with pytest.raises(IndexError):
        np.array(2.5)[:]
    with pytest.raises(IndexError):
        db["t"]["x"][:]
    assert db["t"]["x"][...] == np.array(2.5)
