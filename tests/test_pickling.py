"""Handles are picklable: a pickled Array reopens the database read-only in the receiving process."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb


def _read_slice(args: tuple[Any, int, int]) -> np.ndarray:
    handle, start, stop = args
    return handle[start:stop]


def _load(handle: Any) -> Any:
    return handle.load()


@pytest.mark.slow
def test_spawned_workers_read_disjoint_slices_of_a_pickled_array(tmp_path: Path) -> None:
    data = np.random.default_rng(0).standard_normal((4000, 64)).astype("f4")
    with tensordb.open(tmp_path / "p.tdb") as db:
        db["t"] = {"x": data}
        handle = db["t"]["/x"]
        bounds = [(handle, i, i + 500) for i in range(0, 4000, 500)]
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            parts = pool.map(_read_slice, bounds)
            tree_value = pool.apply(_load, (db["t"],))
            node_value = pool.apply(_load, (db["t"].root,))
    np.testing.assert_array_equal(np.concatenate(parts), data)
    np.testing.assert_array_equal(tree_value["x"], data)
    np.testing.assert_array_equal(node_value["x"], data)


def _stale_read(handle: Any) -> str:
    """Read a pickled handle that must fail; return the error (raised in the worker, reported here)."""
    try:
        handle[0:5]
    except tensordb.TensorDBError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


@pytest.mark.slow
def test_spawned_workers_get_a_clear_error_for_a_collected_array_or_a_moved_database(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "c.tdb") as db:
        db["t"] = {"x": np.arange(10)}
        collected = pickle.loads(pickle.dumps(db["t"]["/x"]))  # pinned to this version of the array
        del db["t"]["/x"]
        db.gc()
    with tensordb.open(tmp_path / "m.tdb") as db:
        db["t"] = {"y": np.arange(5)}
        moved = db["t"]["/y"]
        (tmp_path / "m.tdb").rename(tmp_path / "elsewhere.tdb")  # the open connection keeps working
        try:
            with multiprocessing.get_context("spawn").Pool(2) as pool:
                # The pool unpickles the handles itself: that must not fail (a lost task hangs the pool).
                gone = pool.apply_async(_stale_read, (collected,))
                away = pool.apply_async(_stale_read, (moved,))
                gone_error, away_error = gone.get(timeout=60), away.get(timeout=60)
        finally:
            (tmp_path / "elsewhere.tdb").rename(tmp_path / "m.tdb")
    assert gone_error.startswith("StaleHandleError: ") and "no longer exists" in gone_error
    assert "c.tdb: t: /x:" in gone_error  # file, tree and path named
    assert away_error.startswith("StaleHandleError: ") and "moved or deleted" in away_error
    assert str(tmp_path / "m.tdb") in away_error


def test_a_handle_to_a_missing_database_unpickles_and_fails_when_used(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "m.tdb") as db:
        db["t"] = {"x": np.arange(10), "d": {"k": 1}}
        payloads = [pickle.dumps(h) for h in (db["t"]["/x"], db["t"], db["t"]["/d"])]
    (tmp_path / "m.tdb").unlink()
    array, tree, node = (pickle.loads(p) for p in payloads)
    for use in (lambda: array[:], lambda: array.shape, lambda: tree.load(), lambda: node["k"]):
        with pytest.raises(tensordb.StaleHandleError, match="no such database"):
            use()
    assert "(deleted or closed)" in repr(tree)
    assert pickle.loads(pickle.dumps(array))._db.filename == str(tmp_path / "m.tdb")  # re-pickles as it came


def test_a_pickled_array_keeps_the_version_it_was_pickled_with(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "v.tdb") as db:
        db["t"] = {"x": np.zeros(10)}
        payload = pickle.dumps(db["t"]["/x"])
        db["t"]["/x"] = np.ones(10)  # the tree now holds another array
        np.testing.assert_array_equal(pickle.loads(payload)[:], np.zeros(10))


def test_a_pickled_handle_to_a_collected_array_fails_clearly(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "g.tdb") as db:
        db["t"] = {"x": np.arange(10)}
        payload = pickle.dumps(db["t"]["/x"])
        del db["t"]
        db.gc()
    handle = pickle.loads(payload)
    with pytest.raises(tensordb.StaleHandleError, match="no longer exists"):
        handle[:]


def test_unpickled_handles_are_read_only(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "r.tdb") as db:
        db["t"] = {"x": np.arange(10)}
        handle = pickle.loads(pickle.dumps(db["t"]["/x"]))
        with pytest.raises(tensordb.ReadOnlyError):
            handle[0] = 5
        assert db["t"]["/x"][0] == 0


def test_a_database_itself_is_not_picklable(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "d.tdb") as db, pytest.raises(TypeError):
        pickle.dumps(db)
