"""Dask over tensordb: Array.to_dask(), dask.array.from_array on a handle, from_glob, a distributed cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb

da = pytest.importorskip("dask.array")
tdask = pytest.importorskip("tensordb.interop.dask")

DATA = np.random.default_rng(7).standard_normal((1000, 12)).astype("f4")


@pytest.fixture
def tree(db: tensordb.Database) -> tensordb.Tree:
    db["t"] = {}
    db["t"].set("/x", DATA, chunks=(64, 5))
    return db["t"]


def test_to_dask_blocks_are_the_stored_chunks(tree: tensordb.Tree) -> None:
    x = tree["/x"].to_dask()
    assert x.shape == DATA.shape and x.dtype == DATA.dtype
    assert x.chunksize == (64, 5)
    assert x.numblocks == (16, 3)
    np.testing.assert_array_equal(x.compute(scheduler="sync"), DATA)
    np.testing.assert_allclose(float(x.sum().compute()), float(DATA.astype("f8").sum()), rtol=1e-5)


def test_from_array_on_a_handle_reads_concurrently_on_threads(tree: tensordb.Tree) -> None:
    arr = tree["/x"]
    x = da.from_array(arr, chunks=arr.chunks)
    for _ in range(5):  # threads share one connection: reads must take turns, not collide
        np.testing.assert_array_equal(x.compute(scheduler="threads", num_workers=8), DATA)
    np.testing.assert_array_equal(tree["/x"].to_dask().compute(scheduler="threads", num_workers=8), DATA)
    tree["/x"][0] = 5  # the handle's database is still usable for writes afterwards
    assert tree["/x"][0, 0] == 5


def test_to_dask_reads_the_version_it_was_made_from(tree: tensordb.Tree) -> None:
    x = tree["/x"].to_dask()
    tree["/x"] = np.zeros((3, 3))  # the tree now holds another array
    np.testing.assert_array_equal(x.compute(), DATA)


def test_to_dask_of_zero_d_and_empty_arrays(db: tensordb.Database) -> None:
    db["t"] = {"scalar": np.array(2.5, ">f8"), "empty": np.zeros((4, 0), "i2")}
    scalar = db["t"]["/scalar"].to_dask()
    assert scalar.shape == () and scalar.compute() == 2.5
    empty = db["t"]["/empty"].to_dask()
    assert empty.compute().shape == (4, 0) and empty.dtype == np.dtype("i2")


def test_to_dask_chunks_can_be_chosen(tree: tensordb.Tree) -> None:
    x = tree["/x"].to_dask(chunks=(128, 12))
    assert x.chunksize == (128, 12)
    np.testing.assert_array_equal(x.compute(), DATA)


def _samples(db: tensordb.Database, n: int) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(3)
    fields = [rng.random((200, 3)) for _ in range(n)]
    with db.transaction():
        for i, field in enumerate(fields):
            db[f"sim/{i:03d}"] = {"time": i, "data": {"p": field, "label": "x"}}
    return fields


def test_from_glob_stacks_one_field_in_glob_order(db: tensordb.Database) -> None:
    fields = _samples(db, 6)
    db["other"] = {"data": {"p": np.ones((200, 3))}}
    stacked = tdask.from_glob(db, "/data/p", trees="sim/*")
    assert stacked.shape == (6, 200, 3)
    assert [name for name, _, _ in db.glob("/data/p", trees="sim/*")] == [f"sim/{i:03d}" for i in range(6)]
    np.testing.assert_array_equal(stacked.compute(), np.stack(fields))
    np.testing.assert_allclose(stacked.mean(axis=0).compute(), np.mean(fields, axis=0))
    assert tdask.from_glob(db, "/data/p").shape == (7, 200, 3)  # every tree


def test_from_glob_errors_name_the_tree_and_pointer(db: tensordb.Database) -> None:
    _samples(db, 2)
    with pytest.raises(TypeError, match=r"sim/000: /data/label: holds a str, not an array"):
        tdask.from_glob(db, "/data/*")
    db["sim/bad"] = {"data": {"p": np.zeros((199, 3))}}
    with pytest.raises(ValueError, match=r"sim/bad: /data/p: shape \(199, 3\) differs from sim/000: /data/p"):
        tdask.from_glob(db, "/data/p")
    db["sim/bad"] = {"data": {"p": np.zeros((200, 3), ">f8")}}
    with pytest.raises(ValueError, match=r"sim/bad: /data/p: dtype >f8 differs from sim/000: /data/p \(<f8\)"):
        tdask.from_glob(db, "/data/p")
    with pytest.raises(tensordb.PathNotFoundError, match=r"no array matches '/nothing' in trees matching 'x\*'"):
        tdask.from_glob(db, "/nothing", trees="x*")


@pytest.mark.slow
def test_a_distributed_cluster_of_processes_computes_what_numpy_does(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with tensordb.open(tmp_path / "c.tdb") as db:
        db["big"] = {}
        db["big"].set("/x", DATA, chunks=(100, 12))
        fields = _samples(db, 50)
        arr = db["big"]["/x"]
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            total = client.compute(arr.to_dask().sum()).result()
            exact = client.compute(arr.to_dask().astype("f8").sum()).result()
            direct = client.compute(da.from_array(arr, chunks=arr.chunks).max()).result()
            mean = client.compute(tdask.from_glob(db, "/data/p", trees="sim/*").mean(axis=0)).result()
            pids = client.run(os.getpid)
    assert len(pids) == 2 and os.getpid() not in pids.values()  # two worker processes did the reading
    np.testing.assert_allclose(total, DATA.sum(), rtol=1e-5)  # float32 sums in another order
    np.testing.assert_allclose(exact, DATA.astype("f8").sum(), rtol=1e-12)
    assert direct == DATA.max()
    np.testing.assert_allclose(mean, np.mean(fields, axis=0), rtol=1e-12)
