"""Tests of tensordb.arrays.array through a real database.

* slicing and writing properties: random shapes, chunk shapes and dtypes,
  random keys (basic indexing and one index array per axis), compared with a
  numpy reference doing the same orthogonal selection;
* out-of-range keys raise IndexError;
* streaming a 2 GiB array block by block with bounded memory, then append
  and resize (grow, shrink, grow again shows the fill value).
"""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import expected_equals_numpy, orthogonal_keys, orthogonal_reference_get, orthogonal_reference_set

import tensordb
from tensordb.codec import partial_decoding_available

# A few dtypes, one of them big-endian, covering bool, ints, floats and complex.
DTYPES = [np.dtype(s) for s in ("|b1", "|u1", "<i2", ">i4", "<f4", ">f8", "<c8")]


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Random values of ``dtype`` (no NaN, so == comparisons are exact)."""
    if dtype.kind == "b":
        data: np.ndarray = rng.integers(0, 2, size=shape).astype(bool)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -1000), min(info.max, 1000), size=shape, endpoint=True)
    elif dtype.kind == "f":
        data = rng.standard_normal(size=shape) * 100
    else:  # complex
        data = rng.standard_normal(size=shape) + 1j * rng.standard_normal(size=shape)
    return np.asarray(data).astype(dtype)


# --------------------------------------------------------------------------- strategies


@st.composite
def array_specs(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], np.dtype, int]:
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 7), min_size=ndim, max_size=ndim)))
    # chunks that divide the shape, that do not, and that are bigger than the shape
    chunks = tuple(draw(st.integers(1, n + 3)) for n in shape)
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    return shape, chunks, dtype, seed


# --------------------------------------------------------------------------- helpers


def assert_exactly(result: Any, expected: Any, stored: np.dtype) -> None:
    """Same type, shape, dtype (byte order included) and bits."""
    if isinstance(expected, np.generic):
        assert isinstance(result, np.generic), f"expected a numpy scalar, got {type(result).__name__}"
        assert type(result) is type(expected)
        # numpy scalars are always native-endian: same kind and size as the stored dtype
        assert result.dtype == stored.newbyteorder("=")
        assert result.dtype == expected.dtype
        assert result.tobytes() == expected.tobytes()
        return
    assert isinstance(result, np.ndarray), f"expected an ndarray, got {type(result).__name__}"
    assert result.shape == expected.shape
    assert result.dtype == stored  # byte order included
    assert result.dtype.str == stored.str
    assert result.tobytes() == np.ascontiguousarray(expected).tobytes()


def _open_tree(tmp: str, arr: np.ndarray, chunks: tuple[int, ...]) -> tuple[tensordb.Database, Any]:
    db = tensordb.open(Path(tmp) / "t.tdb")
    db["t"] = {}
    tree = db["t"]
    tree.set("/a", arr, chunks=chunks)
    return db, tree


# --------------------------------------------------------------------------- properties


@given(spec=array_specs(), data=st.data())
def test_slicing_matches_numpy(spec: Any, data: st.DataObject) -> None:
    shape, chunks, dtype, seed = spec
    arr = random_array(np.random.default_rng(seed), shape, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        db, tree = _open_tree(tmp, arr, chunks)
        try:
            handle = tree["/a"]
            assert handle.shape == shape and handle.dtype == dtype and handle.chunks == chunks
            for _ in range(data.draw(st.integers(1, 4), label="n_keys")):
                case = data.draw(orthogonal_keys(shape), label="key")
                result = handle[case.key]
                expected = orthogonal_reference_get(arr, case)
                assert_exactly(result, expected, dtype)
                if expected_equals_numpy(case):
                    # no index array, or a single one and no ints: orthogonal == numpy's own indexing
                    assert_exactly(result, arr[case.key], dtype)
        finally:
            db.close()


@given(spec=array_specs(), data=st.data())
def test_writing_matches_numpy(spec: Any, data: st.DataObject) -> None:
    shape, chunks, dtype, seed = spec
    rng = np.random.default_rng(seed)
    arr = random_array(rng, shape, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        db, tree = _open_tree(tmp, arr, chunks)
        try:
            case = data.draw(orthogonal_keys(shape), label="key")
            if data.draw(st.booleans(), label="scalar value"):
                values: Any = random_array(rng, (), dtype)[()]
            else:
                values = random_array(rng, case.final_shape, dtype)
            tree["/a"][case.key] = values
            expected = orthogonal_reference_set(arr, case, np.asarray(values, dtype=dtype))
            whole = tree["/a"][...]
            assert_exactly(whole, expected, dtype)
            assert_exactly(np.asarray(tree["/a"]), expected, dtype)
        finally:
            db.close()
        # what was committed is what a new connection reads
        with tensordb.open(Path(tmp) / "t.tdb", mode="r") as again:
            assert_exactly(again["t"]["/a"][...], expected, dtype)


@st.composite
def out_of_range_keys(draw: st.DrawFn) -> tuple[tuple[int, ...], Any]:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    n = shape[axis]
    bad_int = draw(st.integers(n, n + 5) | st.integers(-n - 5, -n - 1))
    kind = draw(st.sampled_from(["int", "array", "bool", "too_many"]))
    key: list[Any] = [slice(None)] * ndim
    if kind == "int":
        key[axis] = bad_int
    elif kind == "array":
        key[axis] = np.array([0, bad_int] if n else [bad_int], dtype=np.intp)
    elif kind == "bool":
        key[axis] = np.ones(n + draw(st.sampled_from([-1, 1])) if n > 1 else n + 1, dtype=bool)
    else:
        key = [0 if d else slice(None) for d in shape] + [0]
    return shape, tuple(key)


@given(case=out_of_range_keys(), seed=st.integers(0, 2**16))
def test_out_of_range_is_index_error(case: Any, seed: int) -> None:
    shape, key = case
    arr = random_array(np.random.default_rng(seed), shape, np.dtype("<i4"))
    with pytest.raises(IndexError):  # numpy agrees that the key is out of range
        arr[key]
    with tempfile.TemporaryDirectory() as tmp:
        db, tree = _open_tree(tmp, arr, tuple(max(1, s // 2) for s in shape))
        try:
            with pytest.raises(IndexError):
                tree["/a"][key]
            with pytest.raises(IndexError):
                tree["/a"][key] = 0
            # nothing was written by the failed assignment
            assert_exactly(tree["/a"][...], arr, arr.dtype)
        finally:
            db.close()


def test_scalar_results_keep_dtype(db: tensordb.Database) -> None:
    arr = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    db["t"] = {}
    db["t"].set("/a", arr, chunks=(1, 2, 3))
    a = db["t"]["/a"]
    item = a[1, -1, 2]
    assert isinstance(item, np.int32) and item == arr[1, -1, 2]
    assert a[1, 2, 3, ...].shape == () and isinstance(a[1, 2, 3, ...], np.ndarray)
    assert a[1, 2, 3, ...].dtype == np.dtype(">i4")
    assert a[1:2, 2, 3].dtype == np.dtype(">i4")
    assert a[None, 1, 2, 3].shape == (1,)
    # orthogonal, not numpy's broadcast pointwise indexing
    got = a[[0, 1], [0, 2], 1]
    assert got.shape == (2, 2)
    np.testing.assert_array_equal(got, arr[np.ix_([0, 1], [0, 2])][..., 1])


# --------------------------------------------------------------------------- streaming


def _rows(start: int, stop: int) -> np.ndarray:
    """Cheap, compressible, position-dependent rows: value[i, j] = i + j % 16."""
    return np.arange(start, stop, dtype=np.float32)[:, None] + (np.arange(1024) % 16).astype(np.float32)[None, :]


@pytest.mark.slow
def test_big_array_streaming_bounded_memory(db_path: Path) -> None:
    n_rows, n_cols, block = 2**19, 1024, 4096  # 2 GiB of float32, 16 MiB blocks
    with tensordb.open(db_path) as db:
        tracemalloc.start()
        try:
            db["t"] = {}
            big = db["t"].create_array(
                "/big", shape=(n_rows, n_cols), dtype="f4", chunks=(block, n_cols),
                codec=tensordb.Codec("lz4", level=1, shuffle="byte"),
            )
            assert big.nbytes == 2**31
            for start in range(0, n_rows, block):
                big[start:start + block] = _rows(start, start + block)
            again = db["t"]["/big"]
            assert again.shape == (n_rows, n_cols) and again.dtype == np.dtype("f4")
            for start in range(0, n_rows, block):
                got = again[start:start + block]
                if not np.array_equal(got, _rows(start, start + block)):
                    pytest.fail(f"rows {start}:{start + block} read back wrong")
            # a column slice across every chunk
            col = again[:, 5]
            np.testing.assert_array_equal(col, np.arange(n_rows, dtype=np.float32) + 5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 * 2**20, f"peak traced memory {peak / 2**20:.0f} MiB"
        assert db.stats()["stored_bytes"] < 2**31 // 4  # it did compress

        # append keeps what is there and writes the new rows
        big = db["t"]["/big"]
        extra = _rows(n_rows, n_rows + 100)
        big.append(extra, axis=0)
        assert big.shape == (n_rows + 100, n_cols)
        np.testing.assert_array_equal(big[n_rows - 3:], _rows(n_rows - 3, n_rows + 100))
        np.testing.assert_array_equal(big[:3], _rows(0, 3))

        # shrink into the middle of a chunk, then grow: the cut-off part reads as the fill value
        big.resize((n_rows - 10, n_cols))
        assert big.shape == (n_rows - 10, n_cols)
        np.testing.assert_array_equal(big[-5:], _rows(n_rows - 15, n_rows - 10))
        big.resize((n_rows + 50, n_cols))
        np.testing.assert_array_equal(big[n_rows - 12:n_rows - 10], _rows(n_rows - 12, n_rows - 10))
        assert not big[n_rows - 10:].any()  # fill value 0, not the stale rows
        np.testing.assert_array_equal(big[1000:1003], _rows(1000, 1003))
        assert db.check().ok


def test_resize_and_append_expose_fill_value(db: tensordb.Database) -> None:
    db["t"] = {}
    a = db["t"].create_array("/a", shape=(10,), dtype="i4", chunks=(4,), fill_value=-1)
    assert a.fill_value == -1
    np.testing.assert_array_equal(a[...], np.full(10, -1, "i4"))
    a[...] = np.arange(10, dtype="i4")
    a.resize(14)
    np.testing.assert_array_equal(a[...], np.r_[np.arange(10), [-1] * 4].astype("i4"))
    a.resize(6)
    np.testing.assert_array_equal(a[...], np.arange(6, dtype="i4"))
    a.resize(12)  # grows back over data that was cut off: fill, not stale values
    np.testing.assert_array_equal(a[...], np.r_[np.arange(6), [-1] * 6].astype("i4"))
    a.append(np.array([100, 101], "i4"))
    np.testing.assert_array_equal(a[...], np.r_[np.arange(6), [-1] * 6, [100, 101]].astype("i4"))
    assert a.dtype == np.dtype("i4")

    b = db["t"].create_array("/b", shape=(3, 5), dtype=">f8", chunks=(2, 2), fill_value=-1)
    data = np.arange(15, dtype=">f8").reshape(3, 5)
    b[...] = data
    b.resize((2, 3))
    np.testing.assert_array_equal(b[...], data[:2, :3])
    b.resize((4, 6))
    expected = np.full((4, 6), -1, ">f8")
    expected[:2, :3] = data[:2, :3]
    got = b[...]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.dtype(">f8")
    b.append(np.full((4, 1), 7.0), axis=1)
    assert b.shape == (4, 7)
    np.testing.assert_array_equal(b[:, 6], np.full(4, 7.0))
    np.testing.assert_array_equal(b[:, :6], expected)
    with pytest.raises(ValueError):
        b.resize((4,))  # cannot change ndim
    assert db.check().ok
    # persisted
    assert db["t"]["/b"].shape == (4, 7)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_reads_inside_big_chunks_decode_only_the_rows_they_touch(data: st.DataObject) -> None:
    """Chunks of 512 KiB and more hold several Blosc2 blocks: a box inside one decodes only its blocks."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    shape, chunks = data.draw(st.sampled_from([((600, 700), (512, 512)), ((40, 64, 96), (32, 64, 96))]),
                              label="layout")
    arr = (rng.standard_normal(shape) * 3).astype("f4").cumsum(axis=-1)
    with tempfile.TemporaryDirectory() as tmp:
        db, tree = _open_tree(tmp, arr, chunks)
        try:
            handle = tree["/a"]
            for _ in range(3):
                case = data.draw(orthogonal_keys(shape), label="key")
                assert_exactly(handle[case.key], orthogonal_reference_get(arr, case), arr.dtype)
            before = db.counters.chunks_partly_decoded
            lo = data.draw(st.integers(0, chunks[0] - 8), label="row")
            box = (slice(lo, lo + 4), slice(3, 60))
            np.testing.assert_array_equal(handle[box], arr[box])
            if partial_decoding_available():
                assert db.counters.chunks_partly_decoded == before + 1
        finally:
            db.close()


def test_repr_shows_shape_dtype_chunks_codec_and_stored_size(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "r.tdb") as db:
        db["t"] = {}
        db["t"].set("/x", np.zeros((100, 10), "f4"), chunks=(50, 10),
                    codec=tensordb.Codec("lz4", level=3, shuffle="bit"))
        x = db["t"]["x"]
        stored = x.stored_nbytes
        assert repr(x) == (f'<tensordb.Array "/x" (100, 10) float32, chunks (50, 10), lz4 level 3, bit shuffle, '
                           f"stored {stored} B>")
        page = x._repr_html_()
        assert page.startswith("<p><b>tensordb.Array</b> /x</p><table>")
        assert "<td>chunks</td><td>(50, 10)</td>" in page and "<td>size</td><td>3.9 KiB</td>" in page
