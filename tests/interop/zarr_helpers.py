"""A reader of docs/zarr.md that knows nothing of tensordb.interop.zarr, and writers of raw Zarr metadata."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dtype_text import parse_dtype_text

zarr = pytest.importorskip("zarr")
tzarr = pytest.importorskip("tensordb.interop.zarr")

FIXTURE_JSON = (Path(__file__).resolve().parents[2] / "examples" / "seed-example"
                / "bm01-flow-over-cylinder-sample037_510.json")
MiB = 2**20


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



def write_json(path: Path, doc: Any) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "zarr.json").write_text(json.dumps(doc))


def group_doc(attrs: Any) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attrs}


def array_doc(shape: list[int], chunks: list[int], attrs: Any = None, dtype: str = "float64") -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "array", "shape": shape, "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "attributes": attrs or {}}

