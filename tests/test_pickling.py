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
