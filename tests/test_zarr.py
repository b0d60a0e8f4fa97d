"""Zarr v3 export and import (tensordb.zarr), checked with a reader of the documented mapping that uses plain zarr."""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
import struct
import tempfile
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dtype_text import parse_dtype_text
from hypothesis import given, settings
from strategies import assert_tree_equal, trees

import tensordb
from tensordb.jsonbin import import_file

zarr = pytest.importorskip("zarr")
tzarr = pytest.importorskip("tensordb.zarr")

FIXTURE_JSON = (Path(__file__).resolve().parents[1] / "examples" / "seed-example"
                / "bm01-flow-over-cylinder-sample037_510.json")
MiB = 2**20


# -- a reader of docs/zarr.md that knows nothing of tensordb.zarr ------------------------------


def plain_dtype(text: str) -> np.dtype[Any]:
    """A dtype as the marker writes it: numpy's dtype.str, or tensordb's JSON for records."""
    return parse_dtype_text(text)


def plain_value(attr: Any) -> Any:
    """An attribute value with the tagged objects decoded."""
    if isinstance(attr, list):
        return [plain_value(a) for a in attr]
    if not isinstance(attr, dict):
        return attr
    if "tensordb:bytes" in attr:
        return base64.b64decode(attr["tensordb:bytes"])
    if "tensordb:int" in attr:
        return int(attr["tensordb:int"])
    if "tensordb:float" in attr:
        if attr["tensordb:float"] == "NaN":
            return struct.unpack(">d", bytes.fromhex(attr["bits"]))[0]
        return float(attr["tensordb:float"])
    if "tensordb:scalar" in attr:
        dtype = plain_dtype(attr["tensordb:scalar"])
        if "value" in attr:
            return dtype.type(attr["value"])
        raw = base64.b64decode(attr["base64"])
        return dtype.type(raw) if dtype.kind == "S" else np.frombuffer(raw, dtype=dtype)[0]
    return {k: plain_value(v) for k, v in attr.items()}


def plain_read(node: Any) -> Any:
    """The tree a Zarr node written by tensordb stands for, read with plain zarr."""
    attrs = node.attrs.asdict()
    marker = attrs.pop("tensordb", None)
    if isinstance(node, zarr.Array):
        # zarr gives a numpy scalar for a 0-d array, and for a 0-d S/U array one of its content's width
        data = np.asarray(node[...]).astype(node.dtype)
        if marker is None:
            return data
        dtype = plain_dtype(marker["dtype"])
        if marker.get("layout") == "bytes":
            return np.ascontiguousarray(data).view(dtype).reshape(data.shape[:-1])
        return data.astype(dtype)
    members = dict(node.members())

    def item(name: str) -> Any:
        return plain_read(members[name]) if name in members else plain_value(attrs[name])

    if marker["kind"] == "dict":
        names = marker.get("names", {})
        return {key: item(names.get(key, key)) for key in marker["keys"]}
    if marker["kind"] == "list":
        return [item(str(i)) for i in range(marker["length"])]
    return plain_value(attrs["value"])


def zarr_arrays(group: Any) -> dict[str, Any]:
    """Every array below a group by its path."""
    return {path: node for path, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


# -- export, then read with plain zarr, then import back ---------------------------------------


def test_the_fixture_tree_reads_back_with_plain_zarr_and_imports_back(db: tensordb.Database, tmp_path: Path) -> None:
    name = import_file(db, FIXTURE_JSON)
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


def test_a_hierarchy_written_by_plain_zarr_imports(db: tensordb.Database, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    codecs = zarr.codecs
    root = zarr.create_group(tmp_path / "plain.zarr", attributes={"title": "run 7", "n": 3, "sub": "clash",
                                                                  "nested": {"a": [1, 2.5, None]}})
    sub = root.create_group("sub", attributes={"units": "m"})
    deep = sub.create_group("deeper").create_group("deepest")
    blosc = codecs.BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
    arrays = {
        "sub/blosc": (sub.create_array("blosc", shape=(100, 7), chunks=(30, 7), dtype="f4", compressors=blosc),
                      rng.random((100, 7), dtype="f4")),
        "sub/gzip": (sub.create_array("gzip", shape=(50,), chunks=(16,), dtype=">i8",
                                      compressors=codecs.GzipCodec(level=4), attributes={"long_name": "g"}),
                     rng.integers(-100, 100, 50)),
        "zstd": (root.create_array("zstd", shape=(4, 5, 6), chunks=(2, 2, 2), dtype="u2",
                                   compressors=codecs.ZstdCodec(level=1)), rng.integers(0, 1000, (4, 5, 6))),
        "raw": (root.create_array("raw", shape=(9,), chunks=(4,), dtype="c8", compressors=None),
                (rng.random(9) + 1j).astype("c8")),
        "sharded": (root.create_array("sharded", shape=(64, 60), chunks=(8, 8), shards=(32, 32), dtype="f8"),
                    rng.random((64, 60))),
        "sub/deeper/deepest/v2keys": (deep.create_array("v2keys", shape=(10, 10), chunks=(3, 4), dtype="i1",
                                                        chunk_key_encoding={"name": "v2", "separator": "."}),
                                      rng.integers(-5, 5, (10, 10))),
        "text": (root.create_array("text", shape=(4,), chunks=(2,), dtype=str), np.array(["a", "bcd", "", "é"])),
        "scalar": (root.create_array("scalar", shape=(), dtype="f8", fill_value=np.nan), np.array(np.nan)),
    }
    for z, data in arrays.values():
        z[...] = data
    sparse = root.create_array("sparse", shape=(10**12,), chunks=(1000,), dtype="i2", fill_value=-1)
    sparse[5000:5003] = [1, 2, 3]

    tzarr.import_(db, "plain", tmp_path / "plain.zarr")
    tree = db["plain"]
    for path, (z, data) in arrays.items():
        got = tree["/" + path][...]
        np.testing.assert_array_equal(got, z[...])
        np.testing.assert_array_equal(got, data)
        assert tree["/" + path].chunks == z.chunks
    assert tree["/text"].dtype == np.dtype("<U3")
    assert tree["/sparse"].shape == (10**12,) and tree["/sparse"].fill_value == -1
    np.testing.assert_array_equal(tree["/sparse"][4999:5004], [-1, 1, 2, 3, -1])
    assert db.stats()["logical_bytes"] > 10**12  # the sparse array costs what it stores
    assert tree["title"] == "run 7" and tree["/nested/a"].load() == [1, 2.5, None]
    assert tree["@sub"] == "clash"  # an attribute named like a member
    assert tree["/sub/units"] == "m" and tree["/sub/gzip@attrs"].load() == {"long_name": "g"}
    assert list(tree) == ["title", "n", "@sub", "nested", "raw", "scalar", "sharded", "sparse", "sub", "text", "zstd"]


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


def test_export_does_not_overwrite_unless_asked(db: tensordb.Database, tmp_path: Path) -> None:
    db["t"] = {"a": np.arange(3)}
    tzarr.export(db["t"], tmp_path / "o.zarr")
    db["t"] = {"b": 1}
    with pytest.raises(FileExistsError, match=r"o\.zarr: already holds a Zarr hierarchy.*overwrite=True"):
        tzarr.export(db["t"], tmp_path / "o.zarr")
    assert list(zarr.open_group(tmp_path / "o.zarr", mode="r").array_keys()) == ["a"]
    tzarr.export(db["t"], tmp_path / "o.zarr", overwrite=True)
    assert zarr.open_group(tmp_path / "o.zarr", mode="r").attrs["b"] == 1


def test_export_refuses_values_tensordb_cannot_store_before_writing(tmp_path: Path) -> None:
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    for value, message in (({"x": np.arange(3), "a": [1, {1, 2}]}, r"/a/1: values of type set cannot be stored"),
                           ({"x": np.arange(3), "a": {1: 2}}, r"/a: dict keys must be str"),
                           ({"x": np.arange(3), "o": np.array([None])}, r"/o: arrays of dtype object"),
                           (cyclic, r"/a/0: the value contains itself")):
        with pytest.raises(TypeError, match=message):
            tzarr.export(value, tmp_path / "never.zarr")
        assert not (tmp_path / "never.zarr").exists()


def _write_json(path: Path, doc: Any) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "zarr.json").write_text(json.dumps(doc))


def _group(attrs: Any) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attrs}


def _array(shape: list[int], chunks: list[int], attrs: Any = None, dtype: str = "float64") -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "array", "shape": shape, "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "attributes": attrs or {}}


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, r"empty\.zarr: /: "),
        ({"": _group({"tensordb": {"kind": "nonsense"}})}, r"bad\.zarr: /: malformed 'tensordb' attribute"),
        ({"": _group({"tensordb": {"kind": "dict", "keys": ["gone"]}})},
         r"bad\.zarr: /: key 'gone' is neither a member nor an attribute"),
        ({"": _group({"tensordb": {"kind": "list", "length": 10**9}})}, r"malformed 'tensordb' attribute of a list"),
        ({"": _group({"x": {"tensordb:bytes": "not base64!"}})}, r"bad\.zarr: /: malformed tagged value"),
        ({"": _group({}), "a": _array([2**40], [2**40])}, r"bad\.zarr: /a: chunks \(1099511627776,\) hold more"),
        ({"": _group({}), "a": _array([4], [2], {"tensordb": {"dtype": "<i8"}})},
         r"bad\.zarr: /a: the 'tensordb' attribute says int64, but the array holds float64"),
        ({"": _group({}), "a": _array([4], [2], {"tensordb": {"dtype": "<f4", "layout": "bytes"}})},
         r"bad\.zarr: /a: the 'tensordb' attribute says items of float32 stored as bytes"),
        ({"": _group({}), "a": _array([4], [2], {"tensordb": {"dtype": "evil()"}})}, r"bad\.zarr: /a: invalid dtype"),
    ],
)
def test_bad_hierarchies_fail_clearly_and_write_nothing(db: tensordb.Database, tmp_path: Path,
                                                        layout: dict[str, Any], message: str) -> None:
    folder = tmp_path / ("empty.zarr" if not layout else "bad.zarr")
    folder.mkdir()
    for path, doc in layout.items():
        _write_json(folder / path, doc)
    db["keep"] = {"x": 1}
    with pytest.raises(tensordb.FormatError, match=message):
        tzarr.import_(db, "keep", folder, replace=True)
    assert db["keep"].load() == {"x": 1}
    assert db.check().ok


def test_an_existing_tree_is_replaced_only_when_asked(db: tensordb.Database, tmp_path: Path) -> None:
    db["src"] = {"x": np.arange(3)}
    tzarr.export(db["src"], tmp_path / "s.zarr")
    db["keep"] = {"mine": 1}
    with pytest.raises(tensordb.TreeExistsError, match="'keep' exists already"):
        tzarr.import_(db, "keep", tmp_path / "s.zarr")
    assert db["keep"].load() == {"mine": 1}
    tzarr.import_(db, "keep", tmp_path / "s.zarr", replace=True)
    np.testing.assert_array_equal(db["keep"]["/x"][...], np.arange(3))


def test_a_huge_sparse_array_imports_without_allocating_its_size(db: tensordb.Database, tmp_path: Path) -> None:
    folder = tmp_path / "huge.zarr"
    _write_json(folder, _array([2**40, 2**10], [1024, 1024]))
    chunk = folder / "c" / "3" / "0"
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(np.full((1024, 1024), 2.0).tobytes())
    (folder / "c" / "99999999999" / "0").parent.mkdir(parents=True)
    (folder / "c" / "99999999999" / "0").write_bytes(b"outside the grid: ignored")
    tzarr.import_(db, "huge", folder)
    huge = db["huge"].root
    assert huge.shape == (2**40, 2**10)
    assert huge[3 * 1024, 5] == 2.0 and huge[0, 0] == 0.0
    assert db.stats()["chunks"] == 1


def test_import_and_export_stream_in_bounded_memory(db: tensordb.Database, tmp_path: Path) -> None:
    data = np.arange(6_000_000, dtype="f8").reshape(3000, 2000)  # 46 MiB
    db["t"] = {}
    db["t"].set("/big", data, chunks=(250, 2000))
    tracemalloc.start()
    try:
        tzarr.export(db["t"], tmp_path / "big.zarr")
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        tzarr.import_(db, "back", tmp_path / "big.zarr")
        _, import_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = 0.6 * data.nbytes  # blocks of a few MiB, whatever the array size
    assert export_peak < bound and import_peak < bound, (export_peak / MiB, import_peak / MiB)
    assert np.array_equal(db["back"]["/big"][2990:], data[2990:])


def test_import_into_a_read_only_database_is_refused(db_path: Path, tmp_path: Path) -> None:
    tensordb.open(db_path).close()
    with tensordb.open(db_path, mode="r") as db, pytest.raises(tensordb.ReadOnlyError):
        tzarr.import_(db, "x", zarr.storage.MemoryStore())


# -- docs/zarr.md and docs/ecosystem.md stay true ------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


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
