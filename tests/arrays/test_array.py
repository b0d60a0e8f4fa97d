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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tensordb

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


@dataclass
class AxisSel:
    kind: str  # "int" | "slice" | "array" | "bool"
    raw: Any  # what goes into the key
    positions: np.ndarray  # selected positions along the axis, in output order


def _full(n: int) -> AxisSel:
    return AxisSel("slice", slice(None), np.arange(n, dtype=np.intp))


@st.composite
def axis_selectors(draw: st.DrawFn, n: int) -> AxisSel:
    kinds = ["slice", "array", "bool"] + (["int"] if n > 0 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "int":
        i = draw(st.integers(-n, n - 1))
        raw = draw(st.sampled_from([i, np.int64(i), np.intp(i)]))
        return AxisSel("int", raw, np.array([i % n], dtype=np.intp))
    if kind == "slice":
        bound = st.none() | st.integers(-n - 3, n + 3)
        step = st.none() | st.integers(1, 4).flatmap(lambda s: st.sampled_from([s, -s]))
        s = slice(draw(bound), draw(bound), draw(step))
        return AxisSel("slice", s, np.arange(n, dtype=np.intp)[s])
    if kind == "array":
        if n == 0:
            idx = np.empty(0, dtype=np.intp)
        else:
            values = draw(st.lists(st.integers(-n, n - 1), min_size=0, max_size=6))
            idx = np.array(values, dtype=draw(st.sampled_from([np.intp, np.int32, np.int64])))
        return AxisSel("array", idx, (idx.astype(np.intp) % max(n, 1)).astype(np.intp))
    mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return AxisSel("bool", mask, np.flatnonzero(mask).astype(np.intp))


@dataclass
class KeyCase:
    key: Any
    items: list[tuple[str, int]]  # ("axis", i) | ("ellipsis", -1) | ("none", -1)
    axes: list[AxisSel]  # one per array axis (axes not named in the key: full slices)
    ellipsis_axes: tuple[int, int]  # [a, b) axes covered by the ellipsis

    @property
    def final_shape(self) -> tuple[int, ...]:
        out: list[int] = []
        for what, i in self.items:
            if what == "none":
                out.append(1)
            elif what == "ellipsis":
                a, b = self.ellipsis_axes
                out.extend(len(self.axes[j].positions) for j in range(a, b))
            elif self.axes[i].kind != "int":
                out.append(len(self.axes[i].positions))
        # axes omitted at the end of the key are full slices
        named = {i for what, i in self.items if what == "axis"}
        a, b = self.ellipsis_axes
        covered = named | set(range(a, b))
        out.extend(len(self.axes[j].positions) for j in range(len(self.axes)) if j not in covered)
        return tuple(out)

    @property
    def is_scalar(self) -> bool:
        return all(w == "axis" for w, _ in self.items) and all(a.kind == "int" for a in self.axes)

    @property
    def n_arrays(self) -> int:
        return sum(a.kind in ("array", "bool") for a in self.axes)

    @property
    def n_ints(self) -> int:
        return sum(a.kind == "int" for a in self.axes)


@st.composite
def keys_for(draw: st.DrawFn, shape: tuple[int, ...]) -> KeyCase:
    ndim = len(shape)
    axes = [draw(axis_selectors(n)) for n in shape]
    items: list[tuple[str, int]] = [("axis", i) for i in range(ndim)]
    ellipsis_axes = (0, 0)
    mode = draw(st.sampled_from(["plain", "ellipsis", "trailing"]))
    if mode == "ellipsis":
        a = draw(st.integers(0, ndim))
        b = draw(st.integers(a, ndim))
        for j in range(a, b):
            axes[j] = _full(shape[j])
        items = items[:a] + [("ellipsis", -1)] + items[b:]
        ellipsis_axes = (a, b)
    elif mode == "trailing":
        k = draw(st.integers(0, ndim))
        for j in range(k, ndim):
            axes[j] = _full(shape[j])
        items = items[:k]
        ellipsis_axes = (k, k)  # nothing covered by an ellipsis; omitted axes handled in final_shape
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), ("none", -1))
    parts: list[Any] = []
    for what, i in items:
        parts.append(axes[i].raw if what == "axis" else (Ellipsis if what == "ellipsis" else None))
    key: Any = tuple(parts)
    if len(parts) == 1 and draw(st.booleans()):
        key = parts[0]
    if mode == "trailing":
        ellipsis_axes = (0, 0)
    return KeyCase(key, items, axes, ellipsis_axes)


@st.composite
def array_specs(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], np.dtype, int]:
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 7), min_size=ndim, max_size=ndim)))
    # chunks that divide the shape, that do not, and that are bigger than the shape
    chunks = tuple(draw(st.integers(1, n + 3)) for n in shape)
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    return shape, chunks, dtype, seed


# --------------------------------------------------------------------------- reference


def reference_get(arr: np.ndarray, case: KeyCase) -> Any:
    """Apply each axis selector one after another (orthogonal indexing), then add None axes."""
    ref: Any = arr
    for ax in reversed(range(arr.ndim)):  # last axis first: earlier axis numbers stay valid
        sel = case.axes[ax]
        if sel.kind == "int":
            ref = np.take(ref, int(sel.raw), axis=ax)
        elif sel.kind == "slice":
            ref = np.asarray(ref)[(slice(None),) * ax + (sel.raw,)]
        elif sel.kind == "array":
            ref = np.take(ref, sel.raw, axis=ax)
        else:
            ref = np.compress(sel.raw, ref, axis=ax)
    if case.is_scalar:
        return arr[()] if arr.ndim == 0 else ref
    return np.asarray(ref, dtype=arr.dtype).reshape(case.final_shape)


def reference_set(arr: np.ndarray, case: KeyCase, values: np.ndarray) -> np.ndarray:
    """numpy doing the same orthogonal assignment (duplicate indices: the last one wins)."""
    expected = arr.copy()
    positions = [a.positions for a in case.axes]
    block = np.broadcast_to(values, case.final_shape).reshape(tuple(len(p) for p in positions))
    if arr.ndim == 0:
        expected[()] = block.reshape(())
    else:
        expected[np.ix_(*positions)] = block
    return expected


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
                case = data.draw(keys_for(shape), label="key")
                result = handle[case.key]
                expected = reference_get(arr, case)
                assert_exactly(result, expected, dtype)
                if case.n_arrays <= 1 and case.n_ints == 0:
                    # a single index array and no ints: orthogonal == numpy's own indexing
                    own = arr[case.key]
                    assert_exactly(result, own, dtype)
                elif case.n_arrays == 0:
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
            case = data.draw(keys_for(shape), label="key")
            if data.draw(st.booleans(), label="scalar value"):
                values: Any = random_array(rng, (), dtype)[()]
            else:
                values = random_array(rng, case.final_shape, dtype)
            tree["/a"][case.key] = values
            expected = reference_set(arr, case, np.asarray(values, dtype=dtype))
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
