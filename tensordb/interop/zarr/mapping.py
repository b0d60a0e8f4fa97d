"""The mapping of docs/zarr.md: the ``"tensordb"`` attribute, tagged attribute values, dtypes.

Values JSON cannot hold exactly (bytes, big ints, NaN and infinities, numpy
scalars) are written as tagged objects and read back to what they stand
for; dtypes Zarr v3 cannot say are stored as raw bytes along a trailing axis.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from typing import Any

import numpy as np

import tensordb
from tensordb import pointer

__all__ = ["MARKER", "encode", "decode", "zarr_dtype", "is_array", "child_pointer"]

#: The attribute holding tensordb's own metadata on groups and arrays.
MARKER = "tensordb"
_INT64 = (-(2**63), 2**63 - 1)
# Tagged objects: how attribute values that JSON cannot hold exactly are written.
_BYTES, _BIGINT, _FLOAT, _SCALAR = "tensordb:bytes", "tensordb:int", "tensordb:float", "tensordb:scalar"


def is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, tensordb.Array))


def child_pointer(parent: str, key: str | int) -> str:
    """The JSON Pointer of member ``key`` (a dict key or a list index) of the node at ``parent``."""
    return f"{parent}/{key}" if isinstance(key, int) else f"{parent}/{pointer.escape(key)}"


def encode(value: Any, pointer: str) -> Any:
    """An attribute value: JSON as is when exact, a tagged object otherwise."""
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if _INT64[0] <= value <= _INT64[1] else {_BIGINT: str(value)}
    if kind is float:
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return {_FLOAT: "NaN", "bits": struct.pack(">d", value).hex()}
        return {_FLOAT: "Infinity" if value > 0 else "-Infinity"}
    if kind is bytes:
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return _encode_numpy_scalar(value)
    if isinstance(value, (list, tuple)):
        return [encode(item, f"{pointer}/{i}") for i, item in enumerate(value)]
    raise TypeError(f"{pointer or '(root)'}: values of type {type(value).__name__} cannot be stored")


def _encode_numpy_scalar(value: np.generic) -> dict[str, Any]:
    dtype = value.dtype
    tag = {_SCALAR: tensordb.dtype_to_text(dtype)}
    if dtype.kind == "b":
        return {**tag, "value": bool(value)}
    if dtype.kind in "iu":
        return {**tag, "value": int(value)}
    if dtype.kind == "f" and dtype.itemsize <= 8 and math.isfinite(float(value)):
        return {**tag, "value": float(value)}
    if dtype.kind == "U":
        return {**tag, "value": str(value)}
    raw = value.item() if dtype.kind == "S" else value.tobytes()  # b"" is an S0 scalar of no bytes
    return {**tag, "base64": base64.b64encode(raw).decode("ascii")}


def zarr_dtype(dtype: np.dtype[Any]) -> tuple[np.dtype[Any], bool]:
    """(dtype of the Zarr array, whether items are stored as a trailing axis of raw bytes).

    Records and raw bytes have no stable Zarr v3 data type: their items are
    stored as ``uint8`` along an extra last axis. Other dtypes are written
    little-endian (Zarr reads them back so; the marker keeps the byte order).
    """
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind == "V" or dtype.itemsize == 0:
        return np.dtype("u1"), True
    if dtype.kind in "Mm" and np.datetime_data(dtype)[0] == "generic":
        return np.dtype("u1"), True  # Zarr's datetime types need a unit
    if dtype.byteorder == ">":
        return dtype.newbyteorder("<"), False
    return dtype, False


def decode(value: Any, where: str) -> Any:
    """The Python value of an attribute (tagged objects back to what they stand for)."""
    if isinstance(value, list):
        return [decode(item, where) for item in value]
    if not isinstance(value, dict):
        return value
    tagged = _decode_tagged(value, where)
    if tagged is not _NOT_TAGGED:
        return tagged
    return {str(k): decode(v, where) for k, v in value.items()}


_NOT_TAGGED = object()


def _decode_tagged(value: dict[str, Any], where: str) -> Any:
    """The value a tagged object stands for; _NOT_TAGGED for an ordinary JSON object."""
    keys = set(value)
    if not keys & {_BYTES, _BIGINT, _FLOAT, _SCALAR}:
        return _NOT_TAGGED
    try:
        if keys == {_BYTES}:
            return base64.b64decode(value[_BYTES], validate=True)
        if keys == {_BIGINT} and re.fullmatch(r"-?[0-9]{1,4000}", value[_BIGINT]):
            return int(value[_BIGINT])
        if keys == {_FLOAT}:
            return {"Infinity": math.inf, "-Infinity": -math.inf}[value[_FLOAT]]
        if keys == {_FLOAT, "bits"} and value[_FLOAT] == "NaN" and len(value["bits"]) == 16:
            result = struct.unpack(">d", bytes.fromhex(value["bits"]))[0]
            if math.isnan(result):
                return result
        if keys in ({_SCALAR, "value"}, {_SCALAR, "base64"}):
            return _decode_numpy_scalar(value)
    except (KeyError, TypeError, ValueError, struct.error, tensordb.CorruptionError):
        pass
    raise tensordb.FormatError(f"{where}: malformed tagged value {str(value)[:200]}")


def _decode_numpy_scalar(value: dict[str, Any]) -> Any:
    dtype = tensordb.dtype_from_text(value[_SCALAR])
    if "value" in value:
        if dtype.kind not in "biufU" or isinstance(value["value"], (dict, list)):
            raise ValueError("no JSON form for this dtype")
        return dtype.type(value["value"])
    raw = base64.b64decode(value["base64"], validate=True)
    if len(raw) != dtype.itemsize:
        raise ValueError("wrong number of bytes")
    return dtype.type(raw) if dtype.kind == "S" else np.frombuffer(raw, dtype=dtype)[0]

