"""numpy dtypes <-> their stored text, parsed strictly (no eval, no pickle).

Plain dtypes are stored as numpy's ``dtype.str`` (``"<f4"``, ``">i8"``,
``"<M8[ns]"``, ``"|S5"``). Structured dtypes are stored as JSON:
``{"names": [...], "formats": [...], "offsets": [...], "itemsize": n}``
where each format is itself a plain dtype string, a nested structured
object, or ``{"subarray": [format, [dims...]]}``.

Example
-------
>>> dtype_from_text(dtype_to_text(np.dtype(">f8"))) == np.dtype(">f8")
True
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from ..errors import CorruptionError

__all__ = ["dtype_to_text", "dtype_from_text", "check_storable_dtype", "MAX_ITEMSIZE"]

#: Items larger than this are refused (they would not fit a sensible chunk).
MAX_ITEMSIZE = 1 << 24
_MAX_DEPTH = 8
_MAX_FIELDS = 4096
# 4096 fields with long names and titles: generous, but bounded before parsing.
_MAX_DTYPE_TEXT = 1 << 20
_STRUCT_KEYS = {"names", "formats", "offsets", "itemsize"}
_PLAIN = re.compile(r"\A[<>|][bBiufcmMSUV][0-9]{1,8}(\[[0-9]{0,6}[a-zA-Z]{1,3}\])?\Z")


def check_storable_dtype(dtype: np.dtype[Any]) -> None:
    """Raise TypeError for dtypes tensordb cannot store (objects, variable size)."""
    if dtype.hasobject:
        raise TypeError(f"arrays of dtype {dtype} hold Python objects and cannot be stored")
    if dtype.itemsize == 0 and dtype.kind not in "SUV":
        raise TypeError(f"dtype {dtype} has no fixed size")
    if dtype.itemsize > MAX_ITEMSIZE:
        raise TypeError(f"dtype {dtype} has items of {dtype.itemsize} bytes (limit {MAX_ITEMSIZE})")
    if dtype.kind not in "biufcmMSUV":
        raise TypeError(f"dtype {dtype} is not supported")


def dtype_to_text(dtype: np.dtype[Any]) -> str:
    """The text a dtype is stored as (``arrays.dtype``): ``dtype.str``, or JSON for records and subarrays.

    Example
    -------
    >>> tensordb.dtype_to_text(np.dtype(">i8"))
    '>i8'
    """
    check_storable_dtype(dtype)
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    return json.dumps(_describe(dtype), separators=(",", ":"))


def _describe(dtype: np.dtype[Any]) -> Any:
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return {"subarray": [_describe(base), list(shape)]}
    if dtype.fields is None:
        return dtype.str
    names = list(dtype.names or ())
    fields: Any = dtype.fields
    spec: dict[str, Any] = {
        "names": names,
        "formats": [_describe(fields[n][0]) for n in names],
        "offsets": [int(fields[n][1]) for n in names],
        "itemsize": dtype.itemsize,
    }
    titles = [fields[n][2] if len(fields[n]) > 2 else None for n in names]
    if any(t is not None for t in titles):
        spec["titles"] = titles
    if dtype.isalignedstruct:
        spec["aligned"] = True
    return spec


def dtype_from_text(text: object) -> np.dtype[Any]:
    """Parse a dtype stored as :func:`dtype_to_text` writes it; anything unexpected is a CorruptionError."""
    if not isinstance(text, str):
        raise CorruptionError(f"invalid dtype {text!r}")
    if len(text) > _MAX_DTYPE_TEXT:
        raise CorruptionError(f"dtype description too long ({len(text)} characters)")
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError, too many digits, nesting
            raise CorruptionError(f"invalid dtype description {text[:80]!r}") from None
        dtype = _build(spec, 0)
    else:
        dtype = _plain(text)
    try:
        check_storable_dtype(dtype)
    except TypeError as exc:
        raise CorruptionError(str(exc)) from None
    return dtype


def _plain(text: object) -> np.dtype[Any]:
    if not isinstance(text, str) or not _PLAIN.match(text):
        raise CorruptionError(f"invalid dtype {text!r}")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError, OverflowError):
        raise CorruptionError(f"invalid dtype {text!r}") from None
    if dtype.itemsize > MAX_ITEMSIZE:
        raise CorruptionError(f"dtype {text!r} is too large")
    return dtype


def _build(spec: object, depth: int) -> np.dtype[Any]:
    if depth > _MAX_DEPTH:
        raise CorruptionError("dtype description nests too deeply")
    if isinstance(spec, str):
        return _plain(spec)
    if isinstance(spec, dict) and set(spec) == {"subarray"}:
        sub = spec["subarray"]
        if not (isinstance(sub, list) and len(sub) == 2 and isinstance(sub[1], list)):
            raise CorruptionError(f"invalid subarray dtype {spec!r}")
        dims = sub[1]
        if len(dims) > 32 or not all(isinstance(d, int) and 0 <= d <= MAX_ITEMSIZE for d in dims):
            raise CorruptionError(f"invalid subarray shape {dims!r}")
        base = _build(sub[0], depth + 1)
        if base.itemsize * int(np.prod(dims, dtype=object)) > MAX_ITEMSIZE:
            raise CorruptionError("subarray dtype is too large")
        return np.dtype((base, tuple(dims)))
    if isinstance(spec, dict) and _STRUCT_KEYS <= set(spec) <= _STRUCT_KEYS | {"titles", "aligned"}:
        names, formats, offsets, itemsize = spec["names"], spec["formats"], spec["offsets"], spec["itemsize"]
        titles, aligned = spec.get("titles"), spec.get("aligned", False)
        if not (
            isinstance(names, list)
            and isinstance(formats, list)
            and isinstance(offsets, list)
            and len(names) == len(formats) == len(offsets) <= _MAX_FIELDS
            and all(isinstance(n, str) for n in names)
            and all(isinstance(o, int) and 0 <= o <= MAX_ITEMSIZE for o in offsets)
            and isinstance(itemsize, int)
            and 0 <= itemsize <= MAX_ITEMSIZE
            and (titles is None or (isinstance(titles, list) and len(titles) == len(names)
                                    and all(t is None or isinstance(t, str) for t in titles)))
            and isinstance(aligned, bool)
        ):
            raise CorruptionError(f"invalid structured dtype description {str(spec)[:120]!r}")
        built = [_build(f, depth + 1) for f in formats]
        layout: dict[str, Any] = {"names": names, "formats": built, "offsets": offsets, "itemsize": itemsize}
        if titles is not None:
            layout["titles"] = titles
        try:
            built_dtype: np.dtype[Any] = np.dtype(layout, align=aligned)  # type: ignore[call-overload]
            return built_dtype
        except (TypeError, ValueError, OverflowError, KeyError, IndexError) as exc:
            raise CorruptionError(f"invalid structured dtype: {exc}") from None
    raise CorruptionError(f"invalid dtype description {str(spec)[:120]!r}")
