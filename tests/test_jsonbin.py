"""Import and export of the JSON+binref format (tensordb.jsonbin), on real files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb
from tensordb.demo import synthetic_samples
from tensordb.jsonbin import ImportReport, export_tree, import_file, import_folder

FIXTURE = Path(__file__).resolve().parents[1] / "examples" / "seed-example"
FIXTURE_JSON = FIXTURE / "bm01-flow-over-cylinder-sample037_510.json"
MiB = 2**20


# -- helpers ---------------------------------------------------------------------------


def decode_arrays(json_path: Path) -> Any:
    """The JSON document with every array object replaced by the ndarray it describes.

    Written independently of tensordb.jsonbin: base64 or ``FILE:OFFSET`` into a
    file beside the JSON file, raw little-endian C-order bytes.
    """
    folder = json_path.parent

    def walk(value: Any) -> Any:
        if isinstance(value, dict) and value.get("object_type") == "array":
            assert list(value) == ["object_type", "shape", "dtype", "data"]
            dtype = np.dtype(value["dtype"]).newbyteorder("<")
            shape = tuple(value["shape"])
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            data = value["data"]
            if data["encoding"] == "base64":
                raw = base64.b64decode(data["buffer"], validate=True)
            else:
                assert data["encoding"] == "binref"
                name, _, offset = data["buffer"].rpartition(":")
                with open(folder / name, "rb") as f:
                    f.seek(int(offset))
                    raw = f.read(nbytes)
            assert len(raw) == nbytes
            return np.frombuffer(raw, dtype=dtype).reshape(shape)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(json.loads(json_path.read_bytes()))


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Same structure (key order included), same scalars and types, arrays equal in dtype, shape, values."""
    if isinstance(a, np.generic):
        a = np.asarray(a)
    if isinstance(b, np.generic):
        b = np.asarray(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype.name == b.dtype.name, (where, a.dtype, b.dtype)
        assert a.dtype.newbyteorder("<") == b.dtype.newbyteorder("<"), where
        assert a.shape == b.shape, (where, a.shape, b.shape)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
        return
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


def snapshot(db: tensordb.Database) -> tuple[list[str], dict[str, Any]]:
    return list(db), db.stats()


def array_object(array: np.ndarray[Any, Any], buffer: str | None = None, encoding: str = "base64") -> dict[str, Any]:
    if buffer is None:
        buffer = base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()
    return {"object_type": "array", "shape": list(array.shape), "dtype": array.dtype.name,
            "data": {"buffer": buffer, "encoding": encoding}}


# -- 1. the seed example ---------------------------------------------------------------


def test_seed_example_round_trip(tmp_path: Path) -> None:
    original = decode_arrays(FIXTURE_JSON)
    with tensordb.open(tmp_path / "a.tdb") as db:
        name = import_file(db, FIXTURE_JSON)
        assert name == FIXTURE_JSON.stem
        tree = db[name]
        assert tree.kind == "list"
        assert tree["/0/data/inlet/object_type"] == "PasteurSurfaceMesh"
        points = tree["/0/data/internal/points"]
        assert isinstance(points, tensordb.Array) and points.shape == (4778, 3) and points.dtype == np.float32
        assert_same(tree.load(), original)  # what was imported is what the files say

        out = tmp_path / "out" / "sample.json"
        out.parent.mkdir()
        export_tree(tree, out)
        assert sorted(os.listdir(out.parent)) == ["sample.bin", "sample.json"]
        exported_doc = json.loads(out.read_text())
        assert exported_doc[0]["data"]["internal"]["points"]["data"]["buffer"].startswith("sample.bin:")
        assert_same(decode_arrays(out), original)

        again = import_file(db, out, name="again")
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
        assert import_file(db, tmp_path / "s.json") == "s"
        assert_same(db["s"].load(), decode_arrays(tmp_path / "s.json"))
        export_tree(db["s"], tmp_path / "out.json", inline_below=100)
        assert_same(decode_arrays(tmp_path / "out.json"), decode_arrays(tmp_path / "s.json"))


# -- 2. many samples: dedup through import ------------------------------------------------


@pytest.mark.slow
def test_folder_of_synthetic_samples_dedups_geometry(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    total = geometry = 0
    unique: dict[bytes, int] = {}
    with tensordb.open(tmp_path / "src.tdb") as src:
        for name, sample in synthetic_samples(20, 10):
            src[name] = sample
            for mesh in sample["data"].values():
                for key, value in [*mesh.items(), *mesh["cell_data"].items(), *mesh["point_data"].items()]:
                    if isinstance(value, np.ndarray):
                        total += value.nbytes
                        if key in ("points", "cell_connectivity", "cell_types"):
                            geometry += value.nbytes
                        digest = hashlib.sha256(value.dtype.str.encode() + str(value.shape).encode()
                                                + value.tobytes()).digest()
                        unique[digest] = value.nbytes
            sim, step = name.rsplit("-", 2)[1:]
            (samples / sim).mkdir(parents=True, exist_ok=True)
            export_tree(src[name], samples / sim / f"{step}.json")
        expected_names = [f"sim{s:03d}/step{t:03d}" for s in range(20) for t in range(10)]

        ticks: list[tuple[int, int, str]] = []
        with tensordb.open(tmp_path / "dst.tdb") as dst:
            report = import_folder(dst, samples, progress=lambda done, n, path: ticks.append((done, n, path)))
            assert isinstance(report, ImportReport)
            assert report.ok and report.failed == []
            assert sorted(report.imported) == expected_names and sorted(dst) == expected_names
            assert [t[:2] for t in ticks] == [(i, 200) for i in range(1, 201)]
            assert_same(dst["sim007/step004"].load(), src["bm01-sim007-step004"].load())

            stats = dst.stats()
            fields = total - geometry
            # geometry appears in 10 time steps of its simulation: stored about once per simulation
            bound = total / (fields + geometry / 10)
            assert stats["dedup_ratio"] >= bound * 0.999, (stats["dedup_ratio"], bound)
            # the fields differ at every step: they are never shared, whatever the chunking
            assert stats["dedup_ratio"] <= total / fields
            # distinct arrays by content, as the importer saw them (inlet and outlet even share geometry)
            assert bound <= total / sum(unique.values()) <= total / fields
            assert stats["logical_bytes"] == total
            assert dst.check().ok


# -- 3. rejections -------------------------------------------------------------------------

GOOD = np.arange(12, dtype="f4").reshape(4, 3)
BIN_BYTES = np.arange(64, dtype="<i4").tobytes()  # data.bin: 256 bytes


def _bad(**changes: Any) -> dict[str, Any]:
    obj = array_object(np.arange(4, dtype="i4"), "data.bin:0", "binref")
    data = changes.pop("data", {})
    obj.update(changes)
    obj["data"] = {**obj["data"], **data} if isinstance(data, dict) else data
    return obj


REJECTIONS: list[tuple[str, Any, str]] = [
    ("dotdot", _bad(data={"buffer": "../outside.bin:0"}), "'..'"),
    ("dotdot-nested", _bad(data={"buffer": "sub/../../outside.bin:0"}), "'..'"),
    ("backslash-dotdot", _bad(data={"buffer": "..\\outside.bin:0"}), "'..'"),
    ("absolute", _bad(data={"buffer": "{outside}:0"}), "absolute"),
    ("symlink-outside", _bad(data={"buffer": "link.bin:0"}), "outside the JSON file's folder"),
    ("folder-itself", _bad(data={"buffer": ".:0"}), "outside the JSON file's folder"),
    ("directory", _bad(data={"buffer": "sub:0"}), "not a regular file"),
    ("missing-file", _bad(data={"buffer": "nope.bin:0"}), "'nope.bin' does not exist"),
    ("no-offset", _bad(data={"buffer": "data.bin"}), "malformed binref"),
    ("empty-offset", _bad(data={"buffer": "data.bin:"}), "is not a non-negative integer"),
    ("text-offset", _bad(data={"buffer": "data.bin:abc"}), "is not a non-negative integer"),
    ("negative-offset", _bad(data={"buffer": "data.bin:-4"}), "is not a non-negative integer"),
    ("float-offset", _bad(data={"buffer": "data.bin:1.5"}), "is not a non-negative integer"),
    ("past-end", _bad(data={"buffer": "data.bin:999999"}),
     "binref offset 999999 is past the end of data.bin (256 bytes)"),
    ("at-end", _bad(data={"buffer": "data.bin:256"}), "past the end of data.bin"),
    ("too-short", _bad(data={"buffer": "data.bin:250"}), "ends before the array does"),
    ("too-short-shape", _bad(shape=[65]), "ends before the array does"),
    ("bad-base64", _bad(data={"buffer": "!!!not base64!!!", "encoding": "base64"}), "invalid base64"),
    ("base64-whitespace", _bad(data={"buffer": "AAAA\nAAAA", "encoding": "base64"}), "invalid base64"),
    ("base64-non-ascii", _bad(data={"buffer": "AAAA\u00e9AAA", "encoding": "base64"}), "invalid base64"),
    ("base64-length", _bad(data={"buffer": base64.b64encode(bytes(12)).decode(), "encoding": "base64"}),
     "decodes to 12 bytes, but shape [4] of int32 needs 16"),
    ("unknown-dtype", _bad(dtype="float33"), "unknown dtype 'float33'"),
    ("object-dtype", _bad(dtype="O"), "object dtype"),
    ("object-dtype-name", _bad(dtype="object"), "object dtype"),
    ("void-dtype", _bad(dtype="V16"), "not supported"),
    ("structured-dtype", _bad(dtype="f4,i4"), "structured"),
    ("subarray-dtype", _bad(dtype="(2,)i4"), "structured or subarray"),
    ("unsized-dtype", _bad(dtype="S"), "has no size"),
    ("unsized-unicode", _bad(dtype="U0"), "has no size"),
    ("deprecated-alias", _bad(dtype="a4"), "unknown dtype"),
    ("non-string-dtype", _bad(dtype=4), "dtype must be a string"),
    ("list-dtype", _bad(dtype=[["a", "f4"]]), "dtype must be a string"),
    ("big-endian-dtype", _bad(dtype=">i4"), "big-endian"),
    ("negative-shape", _bad(shape=[-4]), "shape must be a list of ints >= 0"),
    ("float-shape", _bad(shape=[4.0]), "shape must be a list of ints >= 0"),
    ("bool-shape", _bad(shape=[True]), "shape must be a list of ints >= 0"),
    ("nested-shape", _bad(shape=[[4]]), "shape must be a list of ints >= 0"),
    ("scalar-shape", _bad(shape=4), "shape must be a list of ints >= 0"),
    ("huge-shape", _bad(shape=[10**12, 10**12]), "more than the limit"),
    ("huge-dim", _bad(shape=[0, 10**30]), "larger than"),
    ("unknown-encoding", _bad(data={"encoding": "hex"}), "unknown encoding 'hex'"),
    ("missing-data", {"object_type": "array", "shape": [1], "dtype": "i4"}, "without 'data'"),
    ("extra-key", _bad(name="x"), "unexpected keys 'name'"),
    ("data-not-object", _bad(data=None), "'data' must be an object"),
    ("non-string-buffer", _bad(data={"buffer": 12}), "buffer must be a string"),
]


def _case_folder(tmp_path: Path) -> Path:
    case = tmp_path / "case"
    (case / "sub").mkdir(parents=True)
    (case / "data.bin").write_bytes(BIN_BYTES)
    (case / "sub" / "data.bin").write_bytes(BIN_BYTES)
    (tmp_path / "outside.bin").write_bytes(BIN_BYTES)
    (case / "link.bin").symlink_to(tmp_path / "outside.bin")
    return case


def _write_doc(path: Path, bad: Any, outside: Path) -> None:
    text = json.dumps(bad).replace("{outside}", str(outside).replace("\\", "\\\\"))
    doc = {
        "first": array_object(GOOD),  # a good array before the bad one: it must not be written either
        "ok": array_object(np.arange(4, dtype="i4"), "data.bin:0", "binref"),
        "in a/b": [1, {"bad": json.loads(text)}],
    }
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(("case", "bad", "message"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejected_arrays_write_nothing(tmp_path: Path, case: str, bad: Any, message: str) -> None:
    folder = _case_folder(tmp_path)
    path = folder / "bad.json"
    _write_doc(path, bad, tmp_path / "outside.bin")
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["bad"] = {"old": np.ones(3)}  # an existing tree of the same name survives, even with replace
        db["other"] = [1, 2]
        before = snapshot(db)
        tracemalloc.start()
        try:
            with pytest.raises(tensordb.FormatError) as info:
                import_file(db, path, replace=True)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        text = str(info.value)
        assert str(path) in text and "/in a~1b/1/bad" in text and message in text, text
        assert peak < 8 * MiB  # nothing big was allocated (huge shapes are refused up front)
        assert snapshot(db) == before
        assert_same(db["bad"].load(), {"old": np.ones(3)})


def test_binref_in_a_subfolder_is_allowed(tmp_path: Path) -> None:
    folder = _case_folder(tmp_path)
    path = folder / "good.json"
    _write_doc(path, _bad(data={"buffer": "sub/data.bin:4"}), tmp_path / "outside.bin")
    with tensordb.open(tmp_path / "a.tdb") as db:
        import_file(db, path)
        np.testing.assert_array_equal(db["good"]["/in a~1b/1/bad"][...], np.arange(1, 5, dtype="i4"))


@pytest.mark.parametrize(("text", "where"), [("[1, 2", "line 1, column 6"), ('{\n  "a": 1,\n  "b": }', "line 3")])
def test_invalid_json(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with tensordb.open(tmp_path / "a.tdb") as db:
        before = snapshot(db)
        with pytest.raises(tensordb.FormatError, match="invalid JSON") as info:
            import_file(db, path)
        assert str(path) in str(info.value) and where in str(info.value)
        assert snapshot(db) == before


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"a": "\xe9t\xe9"}')
    with tensordb.open(tmp_path / "a.tdb") as db, pytest.raises(tensordb.FormatError, match="latin.json"):
        import_file(db, path)


def test_deeply_nested_json_is_walked_without_recursion(tmp_path: Path) -> None:
    depth = 200
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' * depth + json.dumps(array_object(GOOD)) + "}" * depth)
    with tensordb.open(tmp_path / "a.tdb") as db:
        import_file(db, path)
        np.testing.assert_array_equal(db["deep"]["/a" * depth][...], GOOD)


def test_import_folder_reports_bad_files_and_imports_the_rest(tmp_path: Path) -> None:
    folder = _case_folder(tmp_path)
    (folder / "sub" / "deeper").mkdir()
    (folder / "sub" / "deeper" / "data.bin").write_bytes(BIN_BYTES)
    good = {"x": array_object(GOOD), "y": array_object(np.arange(4, dtype="i4"), "data.bin:0", "binref")}
    (folder / "a.json").write_text(json.dumps(good))
    (folder / "sub" / "deeper" / "c.json").write_text(json.dumps(good))
    (folder / "sub" / "broken.json").write_text("[1, 2")
    _write_doc(folder / "outside.json", _bad(data={"buffer": "../outside.bin:0"}), tmp_path / "outside.bin")
    _write_doc(folder / "sub" / "short.json", _bad(data={"buffer": "data.bin:250"}), tmp_path / "outside.bin")
    (folder / "notes.txt").write_text("not imported")
    ticks: list[tuple[int, int, str]] = []
    with tensordb.open(tmp_path / "a.tdb") as db:
        report = import_folder(db, folder, progress=lambda *a: ticks.append(a))
        assert not report.ok
        assert sorted(report.imported) == ["a", "sub/deeper/c"] and sorted(db) == ["a", "sub/deeper/c"]
        failed = dict(report.failed)
        assert sorted(failed) == sorted(str(folder / p) for p in ("outside.json", "sub/broken.json", "sub/short.json"))
        assert "invalid JSON" in failed[str(folder / "sub" / "broken.json")]
        assert "'..'" in failed[str(folder / "outside.json")]
        assert "ends before the array does" in failed[str(folder / "sub" / "short.json")]
        assert all(path in message for path, message in report.failed)
        assert [t[:2] for t in ticks] == [(i, 5) for i in range(1, 6)]
        assert sorted(t[2] for t in ticks) == sorted(str(p) for p in folder.rglob("*.json"))
        for name in report.imported:
            assert_same(db[name].load(), {"x": GOOD, "y": np.arange(4, dtype="i4")})
        assert db.check().ok

        only_top = import_folder(db, folder, pattern="*.json", replace=True)
        assert only_top.imported == ["a"] and [Path(p).name for p, _ in only_top.failed] == ["outside.json"]


# -- 4. export -----------------------------------------------------------------------------


def _mixed() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    return {
        "name": "mixed",
        "n": 12345678901234567890,
        "x": 1.5,
        "flags": [True, False, None],
        "nested": {"a/b": {"~": "tilde"}, "empty": {}, "list": []},
        "bool": rng.integers(0, 2, 300).astype(bool),
        "i1": np.arange(-50, 50, dtype="i1"),
        "u2": np.arange(600, dtype="u2").reshape(20, 30),
        "i8": np.arange(1000, dtype="i8") * -(2**40),
        "u8": np.array([0, 2**64 - 1], dtype="u8"),
        "f2": rng.normal(size=40).astype("f2"),
        "f4": rng.normal(size=(30, 20, 3)).astype("f4"),
        "f8": np.array([np.nan, np.inf, -np.inf, -0.0, 1e-300]),
        "c8": (rng.normal(size=64) + 1j * rng.normal(size=64)).astype("c8"),
        "c16": rng.normal(size=(8, 8)) * (1 + 2j),
        "dt": np.arange(20).astype("datetime64[s]"),
        "td": np.arange(5).astype("timedelta64[ms]"),
        "S": np.array([b"ab", b"xyz"], dtype="S3"),
        "zero_d": np.array(3.25, dtype="f8"),
        "empty": np.zeros((0, 3), dtype="i4"),
        "meshes": [{"object_type": "PasteurSurfaceMesh", "points": rng.normal(size=(500, 3)).astype("f4")}],
    }


@pytest.mark.parametrize("inline_below", [0, 1024, 10**12])
def test_export_round_trip(tmp_path: Path, inline_below: int) -> None:
    value = _mixed()
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["mixed"] = value
        out = tmp_path / "out" / "mixed.json"
        out.parent.mkdir()
        export_tree(db["mixed"], out, inline_below=inline_below)
        encodings = []

        def collect(v: Any) -> None:
            if isinstance(v, dict):
                if v.get("object_type") == "array":
                    encodings.append(v["data"]["encoding"])
                for x in v.values():
                    collect(x)
            elif isinstance(v, list):
                for x in v:
                    collect(x)

        collect(json.loads(out.read_text()))
        if inline_below == 0:
            assert set(encodings) == {"binref"}
        elif inline_below == 10**12:
            assert set(encodings) == {"base64"}
        else:
            assert set(encodings) == {"binref", "base64"}
        files = sorted(os.listdir(out.parent))
        assert files == (["mixed.json"] if inline_below == 10**12 else ["mixed.bin", "mixed.json"])
        if "mixed.bin" in files:  # packed back to back
            sizes = sum(a.nbytes for a in value.values() if isinstance(a, np.ndarray) and a.nbytes >= inline_below)
            sizes += value["meshes"][0]["points"].nbytes if value["meshes"][0]["points"].nbytes >= inline_below else 0
            assert (out.parent / "mixed.bin").stat().st_size == sizes
        assert_same(decode_arrays(out), value)
        import_file(db, out, name="back")
        assert_same(db["back"].load(), value)


def test_export_big_endian_as_little_endian(tmp_path: Path) -> None:
    be = (np.arange(2000) / 3).astype(">f8")
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["be"] = {"small": np.arange(3, dtype=">i4"), "big": be}
        assert db["be"]["big"].dtype == np.dtype(">f8")
        export_tree(db["be"], tmp_path / "be.json")
        doc = json.loads((tmp_path / "be.json").read_text())
        assert doc["big"]["dtype"] == "float64" and doc["small"]["dtype"] == "int32"
        assert doc["big"]["data"]["buffer"] == "be.bin:0"
        assert (tmp_path / "be.bin").read_bytes() == be.astype("<f8").tobytes()
        assert base64.b64decode(doc["small"]["data"]["buffer"]) == np.arange(3, dtype="<i4").tobytes()
        import_file(db, tmp_path / "be.json", name="back")
        back = db["back"]["big"]
        assert back.dtype == np.dtype("<f8")
        np.testing.assert_array_equal(back[...], be)


def test_export_node_list_root_array_root_and_plain_values(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["t"] = {"data": {"p": np.arange(10.0), "q": [np.float32(2.5), np.int64(-3)]}}
        export_tree(db["t"]["data"], tmp_path / "node.json", inline_below=0)
        import_file(db, tmp_path / "node.json")
        back = db["node"].load()
        np.testing.assert_array_equal(back["p"], np.arange(10.0))
        assert back["q"][0].dtype == np.float32 and back["q"][0].shape == () and back["q"][0] == 2.5
        assert back["q"][1].dtype == np.int64 and back["q"][1] == -3

        export_tree([np.arange(3), {"k": "v"}], tmp_path / "plain.json")
        import_file(db, tmp_path / "plain.json")
        assert_same(db["plain"].load(), [np.arange(3), {"k": "v"}])

        for size, name in [(10, "small_root"), (6 * MiB // 8, "large_root")]:  # large: streamed at the root
            db[name] = np.arange(size, dtype="f8")
            export_tree(db[name], tmp_path / f"{name}.json", inline_below=0)
            assert json.loads((tmp_path / f"{name}.json").read_text())["object_type"] == "array"
            import_file(db, tmp_path / f"{name}.json", name=f"{name}_back")
            assert db[f"{name}_back"].kind == "array"
            assert_same(db[f"{name}_back"].load(), np.arange(size, dtype="f8"))
        assert db.check().ok


def test_export_refuses_what_the_format_cannot_say(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    out.write_text("previous")
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["s"] = {"ok": np.arange(5000.0), "rec": [np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])]}
        with pytest.raises(TypeError, match="/rec/0: structured dtype"):
            export_tree(db["s"], out, inline_below=0, force=True)
        db["b"] = {"blob": b"raw"}
        with pytest.raises(TypeError, match="/blob: a bytes"):
            export_tree(db["b"], out, force=True)
        db["d"] = {"fake": {"object_type": "array", "shape": [1]}}
        with pytest.raises(TypeError, match="/fake"):
            export_tree(db["d"], out, force=True)
    with pytest.raises(ValueError, match="inline_below"):
        export_tree({}, out, inline_below=-1)
    # nothing half-written: the previous file is intact and no temporary or .bin file is left
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("a.tdb")) == ["x.json"]


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
            export_tree(db["big"], tmp_path / "big.json")
            export_seconds = time.perf_counter() - start
            export_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            start = time.perf_counter()
            import_file(db, tmp_path / "big.json", name="back")
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
            export_tree(db["w"], tmp_path / "w.json")
            export_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            import_file(db, tmp_path / "w.json", name="back")
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
        import_file(db, tmp_path / "m.json")
        tree = db["m"]
        assert list(tree) == list(doc)
        for i in range(n):
            np.testing.assert_array_equal(tree[f"a{i}"][...], np.arange(i * count, (i + 1) * count, dtype="f4"))
        assert tree["last"].load() == [1, 2]


def test_exported_files_get_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        export_tree({"a": np.zeros(1000)}, tmp_path / "perm.json")
    finally:
        os.umask(old)
    for name in ("perm.json", "perm.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
