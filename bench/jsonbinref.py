"""An independent reader/writer of the JSON+binref format (the format users have today).

Written from the format's description and the published example
(``../shared/fixtures/seed-example/``), not from tensordb's importer: a sample
is one JSON file (indented by 4 spaces, as published) with the same structure
as the value, where every array is an object::

    {"object_type": "array", "shape": [...], "dtype": "float32",
     "data": {"buffer": "...", "encoding": "base64" | "binref"}}

Arrays under 1 KiB are inline base64; larger ones are appended back to back
(raw little-endian C order) to the sample's one ``.bin`` file and referenced
as ``"FILE.bin:OFFSET"``. No compression, no checksums: it does almost nothing,
which is why it is fast.

numpy is imported by the functions that handle arrays only: reading the JSON
documents alone (``read_json``) costs a fresh process no numpy import.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

INLINE_BELOW = 1024


def _is_array(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("object_type") == "array"


class _Bin:
    """The sample's ``.bin`` file, opened on the first binref array."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: Any = None
        self.offset = 0

    def append(self, array: np.ndarray[Any, Any]) -> str:
        import numpy as np

        if self.file is None:
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        ref = f"{self.path.name}:{self.offset}"
        self.file.write(data.data)
        self.offset += data.nbytes
        return ref

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _encode(value: Any, binfile: _Bin, shared: dict[int, str]) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {k: _encode(v, binfile, shared) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, binfile, shared) for v in value]
    if isinstance(value, np.ndarray):
        obj: dict[str, Any] = {"object_type": "array", "shape": list(value.shape), "dtype": value.dtype.name}
        if id(value) in shared:  # a binref into another file (W4: an array written once, referenced)
            obj["data"] = {"buffer": shared[id(value)], "encoding": "binref"}
        elif value.nbytes < INLINE_BELOW:
            raw = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
            obj["data"] = {"buffer": base64.b64encode(raw).decode("ascii"), "encoding": "base64"}
        else:
            obj["data"] = {"buffer": binfile.append(value), "encoding": "binref"}
        return obj
    if isinstance(value, np.generic):
        return value.item()
    return value


def write(folder: Path, stem: str, value: Any, shared: dict[int, str] | None = None) -> int:
    """Write ``value`` as ``folder/stem.json`` (+ ``stem.bin`` if any array is 1 KiB or more).

    ``shared`` maps ``id(array)`` to an existing ``"FILE.bin:OFFSET"`` to reference instead of
    writing the array again. Returns the number of bytes written.
    """
    binfile = _Bin(folder / f"{stem}.bin")
    try:
        doc = _encode(value, binfile, shared or {})
    finally:
        binfile.close()
    text = json.dumps(doc, indent=4).encode()
    (folder / f"{stem}.json").write_bytes(text)
    return len(text) + binfile.offset


def append_bin(path: Path, array: np.ndarray[Any, Any]) -> str:
    """Write one array to its own ``.bin`` file; return its binref (for sharing across samples)."""
    binfile = _Bin(path)
    try:
        return binfile.append(array)
    finally:
        binfile.close()


def _decode_array(obj: dict[str, Any], folder: Path, bins: dict[str, bytes]) -> np.ndarray[Any, Any]:
    import numpy as np

    dtype = np.dtype(obj["dtype"]).newbyteorder("<")
    shape = tuple(obj["shape"])
    data = obj["data"]
    if data["encoding"] == "base64":
        return np.frombuffer(base64.b64decode(data["buffer"]), dtype=dtype).reshape(shape)
    name, offset = data["buffer"].rsplit(":", 1)
    raw = bins.get(name)
    if raw is None:
        raw = bins[name] = (folder / name).read_bytes()  # one read per .bin file
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(raw, dtype=dtype, count=count, offset=int(offset)).reshape(shape)


def _decode(value: Any, folder: Path, bins: dict[str, bytes]) -> Any:
    if isinstance(value, dict):
        if _is_array(value):
            return _decode_array(value, folder, bins)
        return {k: _decode(v, folder, bins) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, folder, bins) for v in value]
    return value


def read_json(path: Path) -> Any:
    """The parsed JSON document (arrays still as array objects)."""
    with open(path, "rb") as f:
        return json.load(f)


def read(path: Path) -> Any:
    """The whole sample: every array decoded (each ``.bin`` read once, arrays view its bytes)."""
    return _decode(read_json(path), path.parent, {})


def read_array(path: Path, pointer: list[str]) -> np.ndarray[Any, Any]:
    """One array of a sample: parse the JSON, then read only that array's bytes."""
    import numpy as np

    obj = read_json(path)
    for key in pointer:
        obj = obj[key]
    data = obj["data"]
    if data["encoding"] == "base64":
        return _decode_array(obj, path.parent, {})
    name, offset = data["buffer"].rsplit(":", 1)
    dtype = np.dtype(obj["dtype"]).newbyteorder("<")
    count = int(np.prod(obj["shape"], dtype=np.int64))
    with open(path.parent / name, "rb") as f:
        f.seek(int(offset))
        return np.fromfile(f, dtype=dtype, count=count).reshape(tuple(obj["shape"]))


def rewrite_json(path: Path, doc: Any) -> int:
    """Replace a sample's JSON file (the ``.bin`` stays as is); returns the bytes written."""
    text = json.dumps(doc, indent=4).encode()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(text)
    os.replace(tmp, path)
    return len(text)
