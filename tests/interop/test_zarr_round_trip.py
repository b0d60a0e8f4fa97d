"""Zarr v3 export then import (tensordb.interop.zarr), checked by a plain-zarr reader of the documented mapping."""

from __future__ import annotations

import importlib.util
import math
import re
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import assert_tree_equal, trees
from zarr_helpers import (
    FIXTURE_JSON,
    plain_read,
    zarr_arrays,
)

import tensordb
import tensordb.io.jsonbin as jsonbin

zarr = pytest.importorskip("zarr")
tzarr = pytest.importorskip("tensordb.interop.zarr")


def test_the_fixture_tree_reads_back_with_plain_zarr_and_imports_back(db: tensordb.Database, tmp_path: Path) -> None:
    name = jsonbin.import_(db, None, FIXTURE_JSON)
    expected = db[name].load()
    out = tmp_path / "fixture.zarr"
    tzarr.export(db[name], zarr.storage.LocalStore(out))

    root = zarr.open_group(out, mode="r")
    assert_tree_equal(plain_read(root), expected)
    assert root["0"]["data"]["internal"].attrs["object_type"] == "PasteurVolumetricMesh"  # scalars are attributes
    arrays = zarr_arrays(root)
    assert arrays
    for path, z in arrays.items():
        stored = db[name]["/" + path]
        assert z.chunks == stored.chunks, path
        (blosc,) = z.compressors
        assert (blosc.cname.value, blosc.clevel, blosc.shuffle.value) == ("zstd", 5, "shuffle")

    assert tzarr.import_(db, "back", out) == "back"
    assert_tree_equal(db["back"].load(), expected)
    assert all(db["back"]["/" + p].chunks == z.chunks for p, z in arrays.items())


@settings(max_examples=25)
@given(value=trees())
def test_generated_trees_read_back_with_plain_zarr_and_import_back(value: Any) -> None:
    with tempfile.TemporaryDirectory() as folder, tensordb.open(Path(folder) / "g.tdb") as db:
        db["t"] = value
        expected = db["t"].load()
        store = zarr.storage.LocalStore(Path(folder) / "g.zarr")
        tzarr.export(db["t"], store)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)
            assert_tree_equal(plain_read(zarr.open(store, mode="r")), expected)
        tzarr.import_(db, "back", store)
        assert_tree_equal(db["back"].load(), expected)


SPECIAL = {
    "": "empty key", "a/b~c": 7, "tensordb": {"x": 1}, "__dunder": {"y": np.arange(3)}, "zarr.json": {},
    ".": [{"z": 1}], "Name": {}, "name": {}, "x" * 300: {"long": True}, "tab\there": {}, "con": {},
    "nan": float("nan"), "payload_nan": struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0],
    "inf": -math.inf, "big": -(2**70) + 3, "bytes": b"\x00\xff", "minus_zero": -0.0,
    "scalars": [np.float32(1.25), np.complex64(1 + 2j), np.datetime64("2020-01-01"), np.str_("hé"),
                np.bytes_(b"xy"), np.uint64(2**64 - 1), np.float16("nan"), np.bool_(True), np.int8(-3)],
    "arrays": [np.array([(1.5, (1, -2))], dtype=[("x", "<f4"), ("y", ">i2", (2,))]), np.array(2.5, ">f8"),
               np.zeros((5, 0), "u1"), np.array(["hé", "wörld"], ">U5"), np.array([b"ab"], "S3"),
               np.arange(6, dtype=">c16").reshape(2, 3), np.array(["2020-01-01"], "M8[m]"), np.zeros(2, "M8")],
    "lists": [1, [2, [3, b"x"]], None, []],
    "mixed": [{"k": 1}, 3, "s", [np.arange(2)]],
}


def test_keys_that_are_not_node_names_and_values_json_cannot_hold(db: tensordb.Database, tmp_path: Path) -> None:
    db["t"] = SPECIAL
    expected = db["t"].load()
    tzarr.export(db["t"], tmp_path / "s.zarr")
    root = zarr.open_group(tmp_path / "s.zarr", mode="r")
    names = {name for name, _ in root.members()}
    kept = {"tensordb", "Name", "arrays", "mixed"}  # the other keys are not portable node names
    assert kept <= names and all(n.startswith("~") for n in names - kept) and len(names) == 11, names
    assert root.attrs["a/b~c"] == 7 and root.attrs[""] == "empty key"
    assert root.attrs["bytes"] == {"tensordb:bytes": "AP8="}
    assert root.attrs["lists"] == [1, [2, [3, {"tensordb:bytes": "eA=="}]], None, []]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)
        assert_tree_equal(plain_read(root), expected)
    tzarr.import_(db, "back", tmp_path / "s.zarr")
    assert_tree_equal(db["back"].load(), expected)


@pytest.mark.parametrize("root", [[1, "x", b"y"], 42, np.arange(5, dtype=">i4"), {"only": np.arange(3)}])
def test_any_root_round_trips(db: tensordb.Database, tmp_path: Path, root: Any) -> None:
    db["r"] = root
    store = zarr.storage.MemoryStore()
    tzarr.export(db["r"], store)
    tzarr.import_(db, "back", store)
    assert_tree_equal(db["back"].load(), db["r"].load())


def test_a_subtree_an_array_handle_and_plain_values_export(db: tensordb.Database, tmp_path: Path) -> None:
    db["t"] = {"data": {"p": np.arange(10.0), "n": 3}}
    data = {"p": np.arange(10.0), "n": 3}
    for what, expected in ((db["t"]["/data"], data),
                           (db["t"]["/data/p"], np.arange(10.0)),
                           ({"plain": np.ones((2, 2), ">f4"), "v": [1]}, {"plain": np.ones((2, 2), ">f4"), "v": [1]}),
                           ({"node": db["t"]["/data"], "in": [db["t"]]}, {"node": data, "in": [{"data": data}]})):
        store = zarr.storage.MemoryStore()
        tzarr.export(what, store)
        assert_tree_equal(tzarr.import_(db, "x", store, replace=True) and db["x"].load(), expected)


# -- any Zarr v3 hierarchy imports ---------------------------------------------------------


def test_an_icechunk_repository_exports_commits_and_imports(db: tensordb.Database, tmp_path: Path) -> None:
    icechunk = pytest.importorskip("icechunk", reason="icechunk is not installed")
    db["t"] = {"time": 51, "data": {"p": np.arange(1000.0).reshape(100, 10), "label": "inlet"}, "l": [1, b"x"]}
    db["t"].set("/data/q", np.arange(300, dtype=">i4"), chunks=(64,))
    expected = db["t"].load()
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    session = repo.writable_session("main")
    tzarr.export(db["t"], session.store)
    snapshot = session.commit("export tree t")

    reader = repo.readonly_session(branch="main")
    assert reader.snapshot_id == snapshot
    assert_tree_equal(plain_read(zarr.open_group(reader.store, mode="r")), expected)
    tzarr.import_(db, "from-icechunk", reader.store)
    assert_tree_equal(db["from-icechunk"].load(), expected)
    assert db["from-icechunk"]["/data/q"].chunks == (64,)


# -- bad input ---------------------------------------------------------------------------------


DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("page", ["zarr.md", "ecosystem.md"])
def test_the_python_examples_of_the_docs_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if page == "ecosystem.md":
        pytest.importorskip("dask.array")
    blocks = re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(encoding="utf-8"), re.S | re.M)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        if "LocalCluster" in code:  # starting a cluster is test_dask.py's job
            continue
        if "import icechunk" in code and importlib.util.find_spec("icechunk") is None:
            continue
        # the multiprocessing example runs under `if __name__ == "__main__"`: here it only defines its function
        exec(compile(code, f"docs/{page} python block {i + 1}", "exec"), {"__name__": "docs_example"})
    with tensordb.open(tmp_path / "runs.tdb", mode="r") as db:
        assert db.check().ok
