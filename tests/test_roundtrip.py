"""Public-API round-trip tests: what you write is exactly what you load."""

from __future__ import annotations

import datetime
import decimal
import fractions
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    arrays,
    assert_tree_equal,
    escape,
    scalars,
    trees,
)

import tensordb

# --------------------------------------------------------------------------- helpers


def _roundtrip(value: Any) -> Any:
    """Write ``value`` as tree "t" of a fresh file, close, reopen, load."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.tdb"
        db = tensordb.open(path)
        try:
            db["t"] = value
        finally:
            db.close()
        db = tensordb.open(path)
        try:
            assert list(db) == ["t"]
            return db["t"].load()
        finally:
            db.close()


def _materialise(value: Any) -> Any:
    """Replace tensordb.Array handles by ndarrays; fail on an ndarray (must be lazy)."""
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialise(v) for v in value]
    if isinstance(value, np.ndarray):
        raise AssertionError("load(lazy=True) returned an ndarray instead of a tensordb.Array")
    if isinstance(value, tensordb.Array):
        a = np.asarray(value)
        assert type(a) is np.ndarray
        assert (value.shape, value.ndim, value.size, value.nbytes) == (a.shape, a.ndim, a.size, a.nbytes)
        assert value.dtype == a.dtype and value.dtype.descr == a.dtype.descr
        return a
    return value


def _all_nodes(value: Any, path: str = "", steps: tuple[Any, ...] = ()) -> list[tuple[str, tuple[Any, ...], Any]]:
    """(pointer, chain of keys/indices, value) of every node, root included."""
    out = [(path, steps, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _all_nodes(v, path + "/" + escape(k), steps + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _all_nodes(v, f"{path}/{i}", steps + (i,))
    return out


def _check_handle(got: Any, expected: Any, where: str) -> None:
    """What node[...] returns: Node for containers, Array for arrays, the value for scalars."""
    if isinstance(expected, dict):
        assert isinstance(got, tensordb.Node), where
        assert isinstance(got, tensordb.DictNode), where
        assert len(got) == len(expected), where
        assert list(got) == list(expected) == list(got.keys()), where
        # keys "" and "/..." are addressed by pointer ("/", "/~1...") so `in` is only
        # unambiguous for the other keys
        assert all(k in got for k in expected if k and not k.startswith("/")), where
        assert_tree_equal(got.load(), expected, path=where)
    elif isinstance(expected, list):
        assert isinstance(got, tensordb.Node), where
        assert len(got) == len(expected), where
        assert_tree_equal(got.load(), expected, path=where)
    elif isinstance(expected, np.ndarray):
        assert isinstance(got, tensordb.Array), where
        assert_tree_equal(np.asarray(got), expected, path=where)
    else:
        assert_tree_equal(got, expected, path=where)


def _snapshot(db: tensordb.Database) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    names = list(db)
    loaded = {n: db[n].load() for n in names}
    st_ = db.stats()
    counts = {k: st_[k] for k in ("trees", "nodes", "arrays", "chunks", "logical_bytes")}
    return names, loaded, counts


def _assert_unchanged(db: tensordb.Database, before: tuple[list[str], dict[str, Any], dict[str, Any]]) -> None:
    names, loaded, counts = _snapshot(db)
    assert names == before[0]
    for n in names:
        assert_tree_equal(loaded[n], before[1][n], path=f"tree {n!r}:")
    assert counts == before[2]


# --------------------------------------------------------------------------- property tests


@given(trees(max_leaves=12))
def test_roundtrip_tree(value: Any) -> None:
    assert_tree_equal(_roundtrip(value), value)


@given(st.one_of(scalars(), arrays()))
def test_roundtrip_scalar_or_array_root(value: Any) -> None:
    assert_tree_equal(_roundtrip(value), value)


@given(st.dictionaries(st.text(max_size=3), arrays(), max_size=4) | st.lists(arrays(), max_size=4))
def test_roundtrip_container_of_arrays(value: Any) -> None:
    assert_tree_equal(_roundtrip(value), value)


@given(trees(max_leaves=8))
def test_lazy_load_gives_array_handles(value: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.tdb"
        with tensordb.open(path) as db:
            db["t"] = value
        with tensordb.open(path) as db:
            lazy = db["t"].load(lazy=True)
            assert_tree_equal(_materialise(lazy), value)


@given(trees(max_leaves=10))
def test_every_node_by_pointer_and_by_chained_keys(value: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        with tensordb.open(Path(d) / "t.tdb") as db:
            db["t"] = value
            tree = db["t"]
            for ptr, steps, expected in _all_nodes(value):
                _check_handle(tree[ptr], expected, f"pointer {ptr!r}")
                node: Any = tree
                for step in steps:
                    if isinstance(step, str) and (step == "" or step.startswith("/")):
                        step = "/" + escape(step)  # such keys only have a pointer form
                    node = node[step]
                if steps:  # (with no steps, node is the Tree itself)
                    _check_handle(node, expected, f"chain {steps!r}")
                if isinstance(expected, list) and expected:
                    _check_handle(tree[ptr][-1], expected[-1], f"{ptr!r}[-1]")
                    _check_handle(tree[ptr][-len(expected)], expected[0], f"{ptr!r}[-len]")
                if isinstance(expected, dict):
                    d_node = tree[ptr]
                    for (k1, v1), k2, v2 in zip(d_node.items(), d_node.keys(), d_node.values()):
                        assert k1 == k2
                        _check_handle(v1, expected[k1], f"{ptr!r}.items()[{k1!r}]")
                        _check_handle(v2, expected[k2], f"{ptr!r}.values()[{k2!r}]")


# --------------------------------------------------------------------------- chunks and codecs

CONCRETE_DTYPES = [
    "|b1",
    "|i1",
    "|u1",
    "<i2",
    ">i2",
    "<i4",
    ">i4",
    "<i8",
    ">i8",
    "<u2",
    ">u2",
    "<u4",
    ">u4",
    "<u8",
    ">u8",
    "<f2",
    ">f2",
    "<f4",
    ">f4",
    "<f8",
    ">f8",
    "<c8",
    ">c8",
    "<c16",
    ">c16",
    "<M8[s]",
    ">M8[s]",
    "<M8[ns]",
    ">M8[D]",
    "<m8[ms]",
    ">m8[us]",
    "S5",
    "<U3",
    ">U3",
    np.dtype([("x", "<f4"), ("y", ">i2"), ("s", "S3")]),
    np.dtype([("x", ">f8"), ("v", "<i4", (3,)), ("n", [("a", "u1"), ("b", ">U2")])], align=True),
]

CODECS = [
    pytest.param(lambda: tensordb.Codec("zstd", level=5, shuffle="byte"), id="zstd5-byte"),
    pytest.param(lambda: tensordb.Codec("lz4", level=1, shuffle="bit"), id="lz4-1-bit"),
    pytest.param(lambda: tensordb.Codec("blosclz", level=9, shuffle="none"), id="blosclz9-none"),
    pytest.param(lambda: tensordb.Codec("zlib", level=3, shuffle="byte"), id="zlib3-byte"),
    pytest.param(lambda: None, id="default"),
]


def make_array(dtype: Any, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Deterministic random array of any supported dtype (valid bools and code points)."""
    dt = np.dtype(dtype)
    if dt.names is not None:
        out = np.zeros(shape, dt)
        for name in dt.names:
            field = dt.fields[name][0]
            out[name] = (
                make_array(field, shape + field.shape, rng)
                if field.subdtype is None
                else make_array(field.base, shape + field.shape, rng)
            )
        return out
    if dt.subdtype is not None:
        return make_array(dt.base, shape + dt.shape, rng)
    n = int(np.prod(shape))
    if dt.kind == "b":
        bools: np.ndarray = (rng.integers(0, 2, size=shape) == 1).astype(dt)
        return bools
    if dt.kind == "U":
        cps = rng.integers(1, 0xD7FF, size=n * (dt.itemsize // 4)).astype("<u4")
        return np.frombuffer(cps.tobytes(), dtype="<U" + str(dt.itemsize // 4)).reshape(shape).astype(dt)
    return np.frombuffer(rng.bytes(n * dt.itemsize), dtype=dt).reshape(shape).copy()


def _read_cases(a: np.ndarray) -> list[tuple[Any, Any]]:
    """(key, expected) pairs: basic and orthogonal indexing of a 2-d array."""
    return [
        ((slice(None),), a[:]),
        ((slice(3, 20), slice(2, 7)), a[3:20, 2:7]),
        ((slice(None, None, 3), slice(1, None, 4)), a[::3, 1::4]),
        ((slice(None, None, -2),), a[::-2]),
        ((slice(-5, None), slice(-3, -1)), a[-5:, -3:-1]),
        ((slice(8, 16), slice(0, 5)), a[8:16, 0:5]),  # exactly one chunk
        ((slice(10, 10),), a[10:10]),  # empty
        ((5,), a[5]),
        ((-1, slice(None)), a[-1, :]),
        ((Ellipsis, 2), a[..., 2]),
        ((None, slice(1, 3)), a[None, 1:3]),
        ((np.array([0, 5, 36, 5]), slice(None)), a[[0, 5, 36, 5], :]),
        ((slice(None), np.arange(11) % 3 == 0), a[:, np.arange(11) % 3 == 0]),
        ((np.array([1, 30]), np.array([0, 10, 4])), a[np.ix_([1, 30], [0, 10, 4])]),  # orthogonal
    ]


def _dtype_id(d: Any) -> str:
    dt = np.dtype(d)
    return dt.str if dt.names is None else f"record{dt.itemsize}"


@pytest.mark.parametrize("codec_factory", CODECS)
@pytest.mark.parametrize("dtype", CONCRETE_DTYPES, ids=_dtype_id)
def test_chunks_and_codecs(db_path: Path, dtype: Any, codec_factory: Any) -> None:
    rng = np.random.default_rng(1234)
    a = make_array(dtype, (37, 11), rng)
    codec = codec_factory()
    chunks = (8, 5)
    with tensordb.open(db_path) as db:
        db["t"] = {}
        db["t"].set("/a", a, chunks=chunks, codec=codec)
        h = db["t"]["/a"]
        assert isinstance(h, tensordb.Array)
        assert h.chunks == chunks
        if codec is not None:
            assert h.codec == codec
    with tensordb.open(db_path) as db:
        h = db["t"]["/a"]
        assert isinstance(h, tensordb.Array)
        assert h.shape == a.shape and h.ndim == 2 and h.size == a.size and h.nbytes == a.nbytes
        assert h.dtype == a.dtype and h.dtype.str == a.dtype.str and h.dtype.descr == a.dtype.descr
        assert h.chunks == chunks
        if codec is not None:
            assert h.codec == codec
        assert_tree_equal(np.asarray(h), a)
        assert_tree_equal(db["t"].load(), {"a": a})
        for key, expected in _read_cases(a):
            got = h[key if len(key) > 1 else key[0]]
            assert_tree_equal(got, expected, path=f"/a[{key!r}]")
        # single elements are numpy scalars, as numpy does
        assert_tree_equal(h[3, 4], a[3, 4])
        assert_tree_equal(h[-1, -1], a[-1, -1])


@pytest.mark.parametrize(
    "shape,chunks",
    [((), ()), ((0,), (4,)), ((0, 3), (2, 3)), ((5, 0, 2), (2, 1, 2)), ((1,), (1,)), ((3,), (100,))],
)
@pytest.mark.parametrize("dtype", ["<f8", ">i2", "S2", np.dtype([("a", ">f4"), ("b", "?")])], ids=str)
def test_edge_shapes_with_explicit_chunks(
    db_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any
) -> None:
    a = make_array(dtype, shape, np.random.default_rng(7))
    with tensordb.open(db_path) as db:
        db["t"] = {"x": 1}
        db["t"].set("/a", a, chunks=chunks, codec=tensordb.Codec("zstd", level=5, shuffle="byte"))
    with tensordb.open(db_path) as db:
        assert_tree_equal(db["t"].load(), {"x": 1, "a": a})
        h = db["t"]["/a"]
        assert h.shape == shape
        assert_tree_equal(np.asarray(h), a)
        assert_tree_equal(h[...], a[...])


@pytest.mark.parametrize("dtype", CONCRETE_DTYPES[:25], ids=_dtype_id)
def test_large_array_spanning_many_chunks(db_path: Path, dtype: Any) -> None:
    """Enough bytes that a pack-file (non-inline) layout is likely used."""
    a = make_array(dtype, (300_000,), np.random.default_rng(3))
    with tensordb.open(db_path) as db:
        db["t"] = {}
        db["t"].set("/a", a, chunks=(65_536,))
    with tensordb.open(db_path) as db:
        h = db["t"]["/a"]
        assert_tree_equal(np.asarray(h), a)
        assert_tree_equal(h[65_000:140_000:7], a[65_000:140_000:7])
        assert db.check().ok


# --------------------------------------------------------------------------- unsupported values


def _cyclic_dict() -> Any:
    d: dict[str, Any] = {"x": 1}
    d["self"] = d
    return d


def _cyclic_list() -> Any:
    lst: list[Any] = [1]
    lst.append(lst)
    return lst


BAD_VALUES = [
    pytest.param(lambda: np.array([1, "a"], dtype=object), id="object-array"),
    pytest.param(lambda: {1, 2}, id="set"),
    pytest.param(lambda: frozenset({1}), id="frozenset"),
    pytest.param(lambda: {1: "x"}, id="int-key"),
    pytest.param(lambda: {"ok": 1, b"k": 2}, id="bytes-key"),
    pytest.param(lambda: {("a",): 1}, id="tuple-key"),
    pytest.param(_cyclic_dict, id="cyclic-dict"),
    pytest.param(_cyclic_list, id="cyclic-list"),
    pytest.param(lambda: object(), id="object"),
    pytest.param(lambda: 1 + 2j, id="complex"),
    pytest.param(lambda: datetime.datetime.now(), id="datetime"),
    pytest.param(lambda: datetime.date(2020, 1, 1), id="date"),
    pytest.param(lambda: bytearray(b"x"), id="bytearray"),
    pytest.param(lambda: decimal.Decimal("1.5"), id="decimal"),
    pytest.param(lambda: fractions.Fraction(1, 3), id="fraction"),
    pytest.param(lambda: np.zeros(2, dtype=[("a", "<i4"), ("o", "O")]), id="record-with-object-field"),
]

GOOD_TREE = {"keep": [1, 2.5, "s", np.arange(6, dtype=">i4").reshape(2, 3)], "n": None}


def _populate(db: tensordb.Database) -> None:
    db["good"] = GOOD_TREE
    db["t"] = {"a": {}}


@pytest.mark.parametrize("make_bad", BAD_VALUES)
def test_unsupported_at_root(db: tensordb.Database, make_bad: Any) -> None:
    _populate(db)
    before = _snapshot(db)
    with pytest.raises(TypeError) as info:
        db["new_tree_name"] = make_bad()
    assert "new_tree_name" in str(info.value)
    _assert_unchanged(db, before)
    # replacing an existing tree by a bad value leaves the old tree in place
    with pytest.raises(TypeError):
        db["good"] = make_bad()
    _assert_unchanged(db, before)
    assert db.check().ok


@pytest.mark.parametrize("make_bad", BAD_VALUES)
def test_unsupported_nested_by_pointer(db: tensordb.Database, make_bad: Any) -> None:
    _populate(db)
    before = _snapshot(db)
    with pytest.raises(TypeError) as info:
        db["t"]["/a/b"] = make_bad()
    assert "/a/b" in str(info.value)
    _assert_unchanged(db, before)
    with pytest.raises(TypeError) as info:
        db["t"]["a"]["b"] = make_bad()
    assert "/a/b" in str(info.value)
    _assert_unchanged(db, before)
    assert db.check().ok


@pytest.mark.parametrize("make_bad", BAD_VALUES)
def test_unsupported_deep_in_new_tree(db: tensordb.Database, make_bad: Any) -> None:
    _populate(db)
    before = _snapshot(db)
    with pytest.raises(TypeError) as info:
        db["t2"] = {"a": [1, {"b": make_bad()}], "arr": np.ones(1000)}
    assert "/a/1/b" in str(info.value)
    _assert_unchanged(db, before)
    with pytest.raises(TypeError) as info:
        db["t"]["/a/c"] = {"z": np.arange(3), "y": [{"w": make_bad()}]}
    assert "/a/c/y/0/w" in str(info.value)
    _assert_unchanged(db, before)
    with pytest.raises(TypeError) as info:
        db["t"]["/a/l"] = [np.zeros(5), make_bad()]
    assert "/a/l/1" in str(info.value)
    _assert_unchanged(db, before)
    assert db.check().ok


@pytest.mark.parametrize("make_bad", BAD_VALUES)
def test_unsupported_in_list_operations(db: tensordb.Database, make_bad: Any) -> None:
    db["t"] = {"l": [0, 1]}
    before = _snapshot(db)
    with pytest.raises(TypeError):
        db["t"]["/l"].append(make_bad())
    _assert_unchanged(db, before)
    with pytest.raises(TypeError):
        db["t"]["/l"].insert(0, {"k": make_bad()})
    _assert_unchanged(db, before)
    with pytest.raises(TypeError):
        db["t"]["/l/1"] = make_bad()
    _assert_unchanged(db, before)


def test_tuples_are_stored_as_lists(db: tensordb.Database) -> None:
    db["t"] = {"a": (1, (2.0, "x"), ()), "b": [()]}
    assert_tree_equal(db["t"].load(), {"a": [1, [2.0, "x"], []], "b": [[]]})


def test_shared_value_twice_is_not_a_cycle(db: tensordb.Database) -> None:
    """The same dict/array object referenced twice (a DAG, not a cycle) is fine."""
    shared = {"v": np.arange(3)}
    arr = np.ones(4, ">f4")
    db["t"] = {"x": shared, "y": [shared, arr, arr]}
    assert_tree_equal(db["t"].load(), {"x": shared, "y": [shared, arr, arr]})
