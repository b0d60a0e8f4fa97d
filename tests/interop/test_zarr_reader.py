"""Reading Zarr v3 hierarchies (tensordb.interop.zarr.reader): foreign ones, bad ones, huge sparse ones."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zarr_helpers import (
    MiB,
    array_doc,
    group_doc,
    write_json,
)

import tensordb

zarr = pytest.importorskip("zarr")
tzarr = pytest.importorskip("tensordb.interop.zarr")


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


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, r"empty\.zarr: /: "),
        ({"": group_doc({"tensordb": {"kind": "nonsense"}})}, r"bad\.zarr: /: malformed 'tensordb' attribute"),
        ({"": group_doc({"tensordb": {"kind": "dict", "keys": ["gone"]}})},
         r"bad\.zarr: /: key 'gone' is neither a member nor an attribute"),
        ({"": group_doc({"tensordb": {"kind": "list", "length": 10**9}})}, r"malformed 'tensordb' attribute of a list"),
        ({"": group_doc({"x": {"tensordb:bytes": "not base64!"}})}, r"bad\.zarr: /: malformed tagged value"),
        ({"": group_doc({}), "a": array_doc([2**40], [2**40])}, r"bad\.zarr: /a: chunks \(1099511627776,\) hold more"),
        ({"": group_doc({}), "a": array_doc([4], [2], {"tensordb": {"dtype": "<i8"}})},
         r"bad\.zarr: /a: the 'tensordb' attribute says int64, but the array holds float64"),
        ({"": group_doc({}), "a": array_doc([4], [2], {"tensordb": {"dtype": "<f4", "layout": "bytes"}})},
         r"bad\.zarr: /a: the 'tensordb' attribute says items of float32 stored as bytes"),
        ({"": group_doc({}), "a": array_doc([4], [2], {"tensordb": {"dtype": "evil()"}})},
         r"bad\.zarr: /a: invalid dtype"),
    ],
)
def test_bad_hierarchies_fail_clearly_and_write_nothing(db: tensordb.Database, tmp_path: Path,
                                                        layout: dict[str, Any], message: str) -> None:
    folder = tmp_path / ("empty.zarr" if not layout else "bad.zarr")
    folder.mkdir()
    for path, doc in layout.items():
        write_json(folder / path, doc)
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
    write_json(folder, array_doc([2**40, 2**10], [1024, 1024]))
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
