"""Helpers of the JSON+binref tests: a reader written independently of tensordb.io.jsonbin, tree comparison."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

import tensordb

FIXTURE = Path(__file__).resolve().parents[2] / "examples" / "seed-example"
FIXTURE_JSON = FIXTURE / "bm01-flow-over-cylinder-sample037_510.json"
MiB = 2**20


def decode_arrays(json_path: Path) -> Any:
    """The JSON document with every array object replaced by the ndarray it describes.

    Written independently of tensordb.io.jsonbin: base64 or ``FILE:OFFSET`` into a
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


# -- bad array objects ------------------------------------------------------------------


GOOD = np.arange(12, dtype="f4").reshape(4, 3)
BIN_BYTES = np.arange(64, dtype="<i4").tobytes()  # data.bin: 256 bytes


def bad_array(**changes: Any) -> dict[str, Any]:
    obj = array_object(np.arange(4, dtype="i4"), "data.bin:0", "binref")
    data = changes.pop("data", {})
    obj.update(changes)
    obj["data"] = {**obj["data"], **data} if isinstance(data, dict) else data
    return obj


def case_folder(tmp_path: Path) -> Path:
    case = tmp_path / "case"
    (case / "sub").mkdir(parents=True)
    (case / "data.bin").write_bytes(BIN_BYTES)
    (case / "sub" / "data.bin").write_bytes(BIN_BYTES)
    (tmp_path / "outside.bin").write_bytes(BIN_BYTES)
    (case / "link.bin").symlink_to(tmp_path / "outside.bin")
    return case


def write_doc(path: Path, bad: Any, outside: Path) -> None:
    text = json.dumps(bad).replace("{outside}", str(outside).replace("\\", "\\\\"))
    doc = {
        "first": array_object(GOOD),  # a good array before the bad one: it must not be written either
        "ok": array_object(np.arange(4, dtype="i4"), "data.bin:0", "binref"),
        "in a/b": [1, {"bad": json.loads(text)}],
    }
    path.write_text(json.dumps(doc))
