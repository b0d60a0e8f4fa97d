"""What the JSON+binref format says: array objects, the dtype names it uses, the byte layout.

An array object is ``{"object_type": "array", "shape": [...], "dtype":
NAME, "data": {"buffer": ..., "encoding": "base64" | "binref"}}``; its
bytes are little-endian, C order, ``prod(shape) * itemsize`` long. The
format names dtypes as numpy does (``"float32"``, ``"datetime64[s]"``,
``"<U5"``); these names are the format's own, not tensordb's stored dtype
text (:func:`tensordb.dtype_to_text`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from tensordb import limits, pointer

__all__ = [
    "Problem", "ARRAY_KEYS", "DATA_KEYS", "is_array_object", "child_pointer", "short",
    "parse_dtype", "dtype_name", "le_bytes", "runs", "block_bytes",
]

ARRAY_KEYS = ("object_type", "shape", "dtype", "data")
DATA_KEYS = ("buffer", "encoding")
_SUPPORTED_KINDS = "biufcmMSU"
_MAX_DTYPE_TEXT = 64


class Problem(Exception):
    """What is wrong with one array object (the caller adds the file and the pointer)."""


def is_array_object(value: object) -> bool:
    return isinstance(value, dict) and value.get("object_type") == "array"


def child_pointer(parent: str, key: str | int) -> str:
    """The JSON Pointer of member ``key`` (a dict key or a list index) of the node at ``parent``."""
    return f"{parent}/{key}" if isinstance(key, int) else f"{parent}/{pointer.escape(key)}"


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_dtype(text: object) -> np.dtype[Any]:
    """A dtype from a plain numpy name; structured, object, void and unsized dtypes are refused."""
    if not isinstance(text, str):
        raise Problem(f"dtype must be a string such as 'float32', got {short(text)}")
    if not text or len(text) > _MAX_DTYPE_TEXT or not text.isascii():
        raise Problem(f"unknown dtype {short(text)}")
    if text[0] in ">!":
        raise Problem(f"big-endian dtype {text!r}: the format stores little-endian bytes "
                      f"(write it as {'<' + text[1:]!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dtype = np.dtype(text)
    except Exception:
        raise Problem(f"unknown dtype {text!r}") from None
    if dtype.fields is not None or dtype.subdtype is not None:
        raise Problem(f"structured or subarray dtype {text!r} is not supported")
    if dtype.kind == "O":
        raise Problem(f"object dtype {text!r} is not supported")
    if dtype.kind not in _SUPPORTED_KINDS:
        raise Problem(f"dtype {text!r} ({dtype}) is not supported")
    if dtype.itemsize == 0:
        raise Problem(f"dtype {text!r} has no size")
    return dtype.newbyteorder("<")


def dtype_name(dtype: np.dtype[Any], where: str) -> str:
    """The name the format uses for ``dtype`` ("float32", "datetime64[s]", "|S5", ...)."""
    where = where or "(root)"
    if dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"{where}: structured dtype {dtype} cannot be expressed in the JSON+binref format")
    if dtype.kind not in _SUPPORTED_KINDS or dtype.itemsize == 0:
        raise TypeError(f"{where}: dtype {dtype} cannot be expressed in the JSON+binref format")
    name = dtype.name if dtype.kind in "biufcmM" else dtype.newbyteorder("<").str
    if np.dtype(name).newbyteorder("<") != dtype.newbyteorder("<"):
        name = dtype.newbyteorder("<").str
    return name


def le_bytes(data: np.ndarray[Any, Any], le: np.dtype[Any]) -> memoryview:
    """The raw little-endian C-order bytes of ``data`` (no copy when already so)."""
    return np.ascontiguousarray(data.astype(le, copy=False)).reshape(-1).view(np.uint8).data


def runs(shape: tuple[int, ...], box: tuple[slice, ...]) -> Iterator[tuple[int, int]]:
    """``(first element, element count)`` of the contiguous C-order runs of ``box``, in order.

    A box of ``tensordb.iter_blocks`` maps to these ranges of the array's
    bytes in a ``.bin`` file (times the item size).
    """
    if not shape:
        yield 0, 1
        return
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    t = len(shape) - 1
    while t > 0 and box[t].start == 0 and box[t].stop == shape[t]:
        t -= 1  # axes after t are whole: one run spans them
    count = (box[t].stop - box[t].start) * strides[t]
    if count == 0:
        return
    for prefix in itertools.product(*(range(s.start, s.stop) for s in box[:t])):
        yield sum(i * s for i, s in zip(prefix, strides)) + box[t].start * strides[t], count


def block_bytes(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int) -> int:
    """The ``max_bytes`` an array is streamed with (``Array.iter_blocks``) to or from a ``.bin`` file.

    Whole rows of chunks, several while they fit :data:`tensordb.limits.BLOCK_BYTES`:
    each box is then one contiguous range of the file. When a single row of
    chunks is larger (a wide array whose chunks split the trailing axes), one
    chunk at a time, which holds less than a part of that row would.
    """
    row = chunks[0] * math.prod(shape[1:]) * itemsize if shape else itemsize
    return limits.BLOCK_BYTES if row <= limits.BLOCK_BYTES else 1
