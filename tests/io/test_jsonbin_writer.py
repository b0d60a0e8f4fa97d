"""Exporting trees, nodes and plain values as JSON+binref files (tensordb.io.jsonbin.writer)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonbin_helpers import (
    MiB,
    assert_same,
    decode_arrays,
)

import tensordb
from tensordb.io.jsonbin import export, import_


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
        export(db["mixed"], out, inline_below=inline_below)
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
        import_(db, "back", out)
        assert_same(db["back"].load(), value)


def test_export_big_endian_as_little_endian(tmp_path: Path) -> None:
    be = (np.arange(2000) / 3).astype(">f8")
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["be"] = {"small": np.arange(3, dtype=">i4"), "big": be}
        assert db["be"]["big"].dtype == np.dtype(">f8")
        export(db["be"], tmp_path / "be.json")
        doc = json.loads((tmp_path / "be.json").read_text())
        assert doc["big"]["dtype"] == "float64" and doc["small"]["dtype"] == "int32"
        assert doc["big"]["data"]["buffer"] == "be.bin:0"
        assert (tmp_path / "be.bin").read_bytes() == be.astype("<f8").tobytes()
        assert base64.b64decode(doc["small"]["data"]["buffer"]) == np.arange(3, dtype="<i4").tobytes()
        import_(db, "back", tmp_path / "be.json")
        back = db["back"]["big"]
        assert back.dtype == np.dtype("<f8")
        np.testing.assert_array_equal(back[...], be)


def test_export_node_list_root_array_root_and_plain_values(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["t"] = {"data": {"p": np.arange(10.0), "q": [np.float32(2.5), np.int64(-3)]}}
        export(db["t"]["data"], tmp_path / "node.json", inline_below=0)
        import_(db, None, tmp_path / "node.json")
        back = db["node"].load()
        np.testing.assert_array_equal(back["p"], np.arange(10.0))
        assert back["q"][0].dtype == np.float32 and back["q"][0].shape == () and back["q"][0] == 2.5
        assert back["q"][1].dtype == np.int64 and back["q"][1] == -3

        export([np.arange(3), {"k": "v"}], tmp_path / "plain.json")
        import_(db, None, tmp_path / "plain.json")
        assert_same(db["plain"].load(), [np.arange(3), {"k": "v"}])

        for size, name in [(10, "small_root"), (6 * MiB // 8, "large_root")]:  # large: streamed at the root
            db[name] = np.arange(size, dtype="f8")
            export(db[name], tmp_path / f"{name}.json", inline_below=0)
            assert json.loads((tmp_path / f"{name}.json").read_text())["object_type"] == "array"
            import_(db, f"{name}_back", tmp_path / f"{name}.json")
            assert db[f"{name}_back"].kind == "array"
            assert_same(db[f"{name}_back"].load(), np.arange(size, dtype="f8"))
        assert db.check().ok


def test_export_refuses_what_the_format_cannot_say(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    out.write_text("previous")
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["s"] = {"ok": np.arange(5000.0), "rec": [np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])]}
        with pytest.raises(TypeError, match="/rec/0: structured dtype"):
            export(db["s"], out, inline_below=0, force=True)
        db["b"] = {"blob": b"raw"}
        with pytest.raises(TypeError, match="/blob: a bytes"):
            export(db["b"], out, force=True)
        db["d"] = {"fake": {"object_type": "array", "shape": [1]}}
        with pytest.raises(TypeError, match="/fake"):
            export(db["d"], out, force=True)
    with pytest.raises(ValueError, match="inline_below"):
        export({}, out, inline_below=-1)
    # nothing half-written: the previous file is intact and no temporary or .bin file is left
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("a.tdb")) == ["x.json"]


def test_exported_files_get_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        export({"a": np.zeros(1000)}, tmp_path / "perm.json")
    finally:
        os.umask(old)
    for name in ("perm.json", "perm.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
