"""Importing one JSON+binref file (tensordb.io.jsonbin.reader), on real files: the seed example, streaming."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonbin_helpers import (
    FIXTURE_JSON,
    GOOD,
    MiB,
    array_object,
    assert_same,
    decode_arrays,
    snapshot,
)

import tensordb
from tensordb.io.jsonbin import export, import_

# -- 1. the seed example ---------------------------------------------------------------


def test_seed_example_round_trip(tmp_path: Path) -> None:
    original = decode_arrays(FIXTURE_JSON)
    with tensordb.open(tmp_path / "a.tdb") as db:
        name = import_(db, None, FIXTURE_JSON)
        assert name == FIXTURE_JSON.stem
        tree = db[name]
        assert tree.kind == "list"
        assert tree["/0/data/inlet/object_type"] == "PasteurSurfaceMesh"
        points = tree["/0/data/internal/points"]
        assert isinstance(points, tensordb.Array) and points.shape == (4778, 3) and points.dtype == np.float32
        assert_same(tree.load(), original)  # what was imported is what the files say

        out = tmp_path / "out" / "sample.json"
        out.parent.mkdir()
        export(tree, out)
        assert sorted(os.listdir(out.parent)) == ["sample.bin", "sample.json"]
        exported_doc = json.loads(out.read_text())
        assert exported_doc[0]["data"]["internal"]["points"]["data"]["buffer"].startswith("sample.bin:")
        assert_same(decode_arrays(out), original)

        again = import_(db, "again", out)
        assert again == "again"
        assert_same(db["again"].load(), tree.load())
        assert db.check().ok


def test_fixture_like_layout_without_the_fixture(tmp_path: Path) -> None:
    """The same features as the seed example (list root, meshes, mixed encodings), built here."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3)).astype("f4")
    conn = np.arange(120, dtype="i4")
    (tmp_path / "x.bin").write_bytes(conn.tobytes() + points.tobytes())
    doc = [{"name": "s", "time": 51, "data": {"inlet": {
        "object_type": "PasteurSurfaceMesh",
        "cell_connectivity": array_object(conn, "x.bin:0", "binref"),
        "cell_types": array_object(np.full(24, 7, "i4")),
        "points": array_object(points, "x.bin:480", "binref"),
        "other": {"object_type": "Something", "z": [1, 2.5, None, True, "t"]},
    }}}]
    (tmp_path / "s.json").write_text(json.dumps(doc, indent=4))
    with tensordb.open(tmp_path / "a.tdb") as db:
        assert import_(db, None, tmp_path / "s.json") == "s"
        assert_same(db["s"].load(), decode_arrays(tmp_path / "s.json"))
        export(db["s"], tmp_path / "out.json", inline_below=100)
        assert_same(decode_arrays(tmp_path / "out.json"), decode_arrays(tmp_path / "s.json"))


# -- 2. many samples: dedup through import ------------------------------------------------


@pytest.mark.parametrize(("text", "where"), [("[1, 2", "line 1, column 6"), ('{\n  "a": 1,\n  "b": }', "line 3")])
def test_invalid_json(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with tensordb.open(tmp_path / "a.tdb") as db:
        before = snapshot(db)
        with pytest.raises(tensordb.FormatError, match="invalid JSON") as info:
            import_(db, None, path)
        assert str(path) in str(info.value) and where in str(info.value)
        assert snapshot(db) == before


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"a": "\xe9t\xe9"}')
    with tensordb.open(tmp_path / "a.tdb") as db, pytest.raises(tensordb.FormatError, match="latin.json"):
        import_(db, None, path)


def test_deeply_nested_json_is_walked_without_recursion(tmp_path: Path) -> None:
    depth = 200
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' * depth + json.dumps(array_object(GOOD)) + "}" * depth)
    with tensordb.open(tmp_path / "a.tdb") as db:
        import_(db, None, path)
        np.testing.assert_array_equal(db["deep"]["/a" * depth][...], GOOD)


def test_streaming_64_mib_with_bounded_memory(tmp_path: Path) -> None:
    rows, cols = 2**20, 8  # float64: 64 MiB
    nbytes = rows * cols * 8
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["big"] = {"meta": "64 MiB"}
        arr = db["big"].create_array("/x", (rows, cols), "f8")
        step = arr.chunks[0]
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            arr[r0:r1] = np.arange(r0 * cols, r1 * cols, dtype="f8").reshape(-1, cols)

        tracemalloc.start()
        try:
            start = time.perf_counter()
            export(db["big"], tmp_path / "big.json")
            export_seconds = time.perf_counter() - start
            export_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            start = time.perf_counter()
            import_(db, "back", tmp_path / "big.json")
            import_seconds = time.perf_counter() - start
            import_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (tmp_path / "big.bin").stat().st_size == nbytes
        assert export_peak < nbytes / 4, (export_peak, export_seconds)
        assert import_peak < nbytes / 4, (import_peak, import_seconds)

        back = db["back"]["/x"]
        assert back.shape == (rows, cols) and back.dtype == np.float64
        for r0 in range(0, rows, 2**17):
            expected = np.arange(r0 * cols, (r0 + 2**17) * cols, dtype="f8").reshape(-1, cols)
            np.testing.assert_array_equal(back[r0:r0 + 2**17], expected)
        with open(tmp_path / "big.bin", "rb") as f:
            f.seek(nbytes - 16)
            assert np.frombuffer(f.read(), "<f8").tolist() == [rows * cols - 2.0, rows * cols - 1.0]


@pytest.mark.parametrize("shape", [(2, 3, 1_000_000), (3, 700_000)])
def test_streaming_wide_arrays_chunk_by_chunk(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """Arrays whose chunks split the trailing axes: streamed one chunk at a time, both ways."""
    data = np.arange(int(np.prod(shape)), dtype="f4").reshape(shape)
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["w"] = {"x": data}
        assert db["w"]["x"].chunks[1:] != shape[1:]  # the chunk-box path
        tracemalloc.start()
        try:
            export(db["w"], tmp_path / "w.json")
            export_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            import_(db, "back", tmp_path / "w.json")
            import_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (tmp_path / "w.bin").read_bytes() == data.tobytes()
        assert export_peak < data.nbytes / 2 and import_peak < data.nbytes / 2
        np.testing.assert_array_equal(db["back"]["x"][...], data)


def test_many_medium_binref_arrays(tmp_path: Path) -> None:
    """More small binref arrays than are read up front: the rest are written one by one, in place."""
    n, count = 17, MiB  # 17 arrays of 4 MiB (float32)
    doc: dict[str, Any] = {"first": "kept first"}
    with open(tmp_path / "m.bin", "wb") as f:
        for i in range(n):
            f.write(np.arange(i * count, (i + 1) * count, dtype="<f4").tobytes())
            doc[f"a{i}"] = {"object_type": "array", "shape": [count], "dtype": "float32",
                            "data": {"buffer": f"m.bin:{i * count * 4}", "encoding": "binref"}}
    doc["last"] = [1, 2]
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with tensordb.open(tmp_path / "a.tdb") as db:
        import_(db, None, tmp_path / "m.json")
        tree = db["m"]
        assert list(tree) == list(doc)
        for i in range(n):
            np.testing.assert_array_equal(tree[f"a{i}"][...], np.arange(i * count, (i + 1) * count, dtype="f4"))
        assert tree["last"].load() == [1, 2]
