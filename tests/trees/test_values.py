"""Value flattening: deep nesting without recursion, cycles named by path, exact scalar storage."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import tensordb
from tensordb.trees.values import flatten


def _nested(depth: int) -> list[object]:
    value: list[object] = ["leaf"]
    for _ in range(depth):
        value = [value]
    return value


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list) and value and isinstance(value[0], list):
        value, depth = value[0], depth + 1
    return depth


def test_deep_nesting_round_trips_without_recursion(tmp_path: Path) -> None:
    depth = sys.getrecursionlimit() + 500  # deeper than any recursive walk could go
    with tensordb.open(tmp_path / "deep.tdb") as db:
        db["deep"] = _nested(depth)
        loaded = db["deep"].load()
    assert _depth(loaded) == depth
    leaf = loaded
    for _ in range(depth + 1):
        leaf = leaf[0]
    assert leaf == "leaf"


def test_cycles_are_type_errors_naming_the_path() -> None:
    inner: dict[str, object] = {}
    value = {"a": [1, inner]}
    inner["back"] = value
    with pytest.raises(TypeError, match=r"/a/1/back: the value contains itself"):
        flatten(value)


def test_shared_but_acyclic_values_are_stored_twice() -> None:
    shared = {"x": 1}
    specs = flatten({"a": shared, "b": shared})
    assert [s.path for s in specs] == ["", "/a", "/a/x", "/b", "/b/x"]


@pytest.mark.parametrize(
    "value, kind, sql_value",
    [
        (None, "null", None),
        (True, "bool", 1),
        (2**63 - 1, "int", 2**63 - 1),
        (2**63, "int", float(2**63)),
        (float("nan"), "float", None),
        (-0.0, "float", -0.0),
        ("x" * 10, "str", "x" * 10),
        ("x" * 100_000, "str", None),  # large payloads are compressed out of the queryable column
        (b"\x00\x01", "bytes", b"\x00\x01"),
        (np.float32(1.5), "float", 1.5),
        (np.uint64(2**64 - 1), "int", float(2**64 - 1)),
    ],
    ids=repr,
)
def test_scalars_are_native_in_sql_and_exact_on_load(tmp_path: Path, value: object, kind: str,
                                                     sql_value: object) -> None:
    with tensordb.open(tmp_path / "s.tdb") as db:
        db["t"] = {"v": value}
        row = db.sql("SELECT kind, value FROM nodes WHERE tree = 't' AND path = '/v'").fetchall()[0]
        assert row[0] == kind
        assert row[1] == sql_value or (row[1] is None and sql_value is None)
        loaded = db["t"]["v"]
        assert type(loaded) is type(value)
        if isinstance(value, float) and value != value:
            assert loaded != loaded
        else:
            assert loaded == value


class _ArrayLike:
    """Stands in for torch tensors and xarray DataArrays: anything numpy converts through ``__array__``."""

    def __init__(self, data: object) -> None:
        self.data = data

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return np.asarray(self.data, dtype=dtype)


def test_array_likes_are_stored_as_numpy_arrays(tmp_path: Path) -> None:
    points = np.arange(12, dtype="f4").reshape(4, 3)
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["t"] = {"points": _ArrayLike(points), "list": [_ArrayLike([1, 2, 3])], "zero_d": _ArrayLike(2.5)}
        db["t"]["later"] = _ArrayLike(np.ones(3, ">i2"))
        stored = db["t"]["points"]
        assert isinstance(stored, tensordb.Array) and stored.dtype == np.float32
        np.testing.assert_array_equal(stored[...], points)
        loaded = db["t"].load()
        np.testing.assert_array_equal(loaded["list"][0], [1, 2, 3])
        assert loaded["zero_d"].shape == () and loaded["zero_d"] == 2.5
        assert loaded["later"].dtype == np.dtype(">i2")


@pytest.mark.parametrize("data", [np.array([1, "a", None], dtype=object), [{"a": 1}, 2]])
def test_array_likes_converting_to_objects_are_refused(tmp_path: Path, data: object) -> None:
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["t"] = {"kept": 1}
        with pytest.raises(TypeError, match="/x: a value of type _ArrayLike converts to an object array"):
            db["t"]["x"] = _ArrayLike(data)
        assert db["t"].load() == {"kept": 1} and db.check().ok


@pytest.mark.parametrize("make", [lambda: np.ma.masked_array([1.0, 2.0], mask=[False, True]),
                                  lambda: np.matrix([[1, 2], [3, 4]])], ids=["masked", "matrix"])
def test_masked_arrays_and_matrices_are_refused(tmp_path: Path, make: Callable[[], object]) -> None:
    with tensordb.open(tmp_path / "m.tdb") as db:
        db["t"] = {"kept": 1}
        with pytest.raises(TypeError, match="/x: .* cannot be stored exactly; pass a plain numpy array"):
            db["t"]["x"] = make()
        assert db["t"].load() == {"kept": 1}


@pytest.mark.parametrize("enabled", [True, False])
def test_a_write_leaves_the_garbage_collector_as_it_found_it(db: tensordb.Database, enabled: bool) -> None:
    import gc

    (gc.enable if enabled else gc.disable)()
    try:
        db["t"] = {"a": [1, 2, {"b": np.arange(3)}]}
        assert gc.isenabled() is enabled
        with pytest.raises(TypeError):
            db["t"]["/a/0"] = {"bad": object()}
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
