"""Differences between two trees or subtrees: paths added, removed and changed.

Structure and scalars come from one metadata query per side. Arrays are
compared by their stored content keys first: the same array, or the same
chunk grid whose chunks have the same keys, is equal without reading a
byte. Only chunks whose keys differ (another codec, say) are read and
compared, bit for bit.

Example
-------
>>> for d in db.diff("sim01/step000", "sim01/step001"):
...     print(d)
~ /time: 1 -> 6
~ /data/internal/point_data/p: array values differ
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import grid as g
from .arrays.array import Array
from .trees.handles import Node, Tree

__all__ = ["Difference", "diff"]

#: Largest slab (bytes per side) compared at once when two arrays' chunk grids differ.
_BLOCK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Difference:
    """One difference: ``change`` (also ``kind``) is ``"added"``, ``"removed"`` or ``"changed"``.

    ``path`` is the JSON Pointer below the two compared nodes; ``a`` and
    ``b`` describe the value on each side (None where it is missing).
    ``tree`` names the tree when states of the whole database are compared.
    """

    path: str
    change: str
    a: str | None
    b: str | None
    tree: str | None = None

    @property
    def kind(self) -> str:
        return self.change

    def __str__(self) -> str:
        where = (self.path or "(root)") if self.tree is None else f"{self.tree}{self.path}"
        if self.change == "added":
            return f"+ {where}: {self.b}"
        if self.change == "removed":
            return f"- {where}: {self.a}"
        return f"~ {where}: {self.a} -> {self.b}"


def diff(a: Any, b: Any) -> list[Difference]:
    """The differences from ``a`` to ``b`` (trees, nodes, arrays or plain values), in document order.

    Dict entries are matched by key, list items by index. Two values of
    different kinds (an int and a float, a dict and a list) differ. Arrays
    differ in shape, dtype or values; NaNs compare bit for bit.
    """
    found: list[Difference] = []
    # Each entry is a pair to compare or a difference found; popping them in order keeps document order.
    stack: list[tuple[str, Any, Any] | Difference] = [("", _loaded(a), _loaded(b))]
    while stack:
        entry = stack.pop()
        if isinstance(entry, Difference):
            found.append(entry)
            continue
        path, x, y = entry
        todo: list[tuple[str, Any, Any] | Difference]
        if isinstance(x, dict) and isinstance(y, dict):
            todo = [(_child(path, k), v, y[k]) if k in y else Difference(_child(path, k), "removed", _describe(v), None)
                    for k, v in x.items()]
            todo += [Difference(_child(path, k), "added", None, _describe(v)) for k, v in y.items() if k not in x]
        elif isinstance(x, list) and isinstance(y, list):
            common = min(len(x), len(y))
            todo = [(_child(path, i), x[i], y[i]) for i in range(common)]
            todo += [Difference(_child(path, i), "removed", _describe(x[i]), None) for i in range(common, len(x))]
            todo += [Difference(_child(path, i), "added", None, _describe(y[i])) for i in range(common, len(y))]
        else:
            change = _leaf_change(x, y)
            todo = [] if change is None else [Difference(path, "changed", *change)]
        stack.extend(reversed(todo))
    return found


def _loaded(value: Any) -> Any:
    """Plain dicts and lists with lazy Array handles (one query per tree)."""
    return value.load(lazy=True) if isinstance(value, (Tree, Node)) else value


def _child(path: str, key: str | int) -> str:
    return f"{path}/{key}" if isinstance(key, int) else path + "/" + key.replace("~", "~0").replace("/", "~1")


def _describe(value: Any) -> str:
    """A short description of a value: its kind, and its shape and dtype or its text."""
    if isinstance(value, (Array, np.ndarray)):
        return f"array {tuple(value.shape)} {value.dtype}"
    if isinstance(value, dict):
        return f"dict ({len(value)} items)"
    if isinstance(value, list):
        return f"list ({len(value)} items)"
    if isinstance(value, np.generic):
        return f"{value.dtype} {value!s}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _leaf_change(x: Any, y: Any) -> tuple[str, str] | None:
    """None when two leaves are equal, else how each side reads."""
    if isinstance(x, (Array, np.ndarray)) and isinstance(y, (Array, np.ndarray)):
        if _same_stored_array(x, y):
            return None  # before any metadata is read: most arrays of two states of a tree are shared
        if x.shape != y.shape or x.dtype != y.dtype:
            return _describe(x), _describe(y)
        return None if arrays_equal(x, y) else (_describe(x), f"{_describe(y)} (values differ)")
    if type(x) is not type(y) or isinstance(x, (dict, list)) or not _same_scalar(x, y):
        return _describe(x), _describe(y)
    return None


def _same_scalar(x: Any, y: Any) -> bool:
    if isinstance(x, np.generic):
        return bool(x.dtype == y.dtype) and x.tobytes() == y.tobytes()
    if isinstance(x, float):  # as arrays compare: NaN equals NaN, 0.0 and -0.0 differ
        return (x == y and math.copysign(1.0, x) == math.copysign(1.0, y)) or (math.isnan(x) and math.isnan(y))
    return bool(x == y)


def arrays_equal(x: Array | np.ndarray[Any, Any], y: Array | np.ndarray[Any, Any]) -> bool:
    """Whether two arrays of one shape and dtype hold the same bytes; reads only chunks whose keys differ."""
    if _same_stored_array(x, y):
        return True
    if isinstance(x, Array) and isinstance(y, Array) and _file_of(x) == _file_of(y) is not None:
        if x.chunks == y.chunks:
            return _chunks_equal(x, y)
    return _blocks_equal(x, y)


def _same_stored_array(x: object, y: object) -> bool:
    """Whether two handles read one stored array of one file (array ids, chunk ids and keys are the file's)."""
    return (isinstance(x, Array) and isinstance(y, Array) and _file_of(x) == _file_of(y) is not None
            and x.array_id == y.array_id)


def _file_of(array: Array) -> str | None:
    filename = getattr(array._db, "filename", None)
    return None if filename is None else os.path.abspath(filename)


def _chunks_equal(x: Array, y: Array) -> bool:
    """Compare chunk by chunk: equal keys are equal chunks; only the others are read."""
    keys_x, keys_y = _content_keys(x), _content_keys(y)
    grid = tuple(-(-n // c) for n, c in zip(x.shape, x.chunks))
    written = keys_x.keys() | keys_y.keys()
    same_fill = np.asarray(x.fill_value).tobytes() == np.asarray(y.fill_value).tobytes()
    if not same_fill and len(written) < math.prod(grid):
        return False  # a chunk neither side wrote holds each side's (different) fill value
    # A key hashes the codec, the dtype's size and the raw chunk, edge chunks padded with the fill value:
    # under one codec and one fill value, different keys are different bytes.
    keys_decide = same_fill and x.codec == y.codec
    for key in sorted(written):
        key_x, key_y = keys_x.get(key), keys_y.get(key)
        if key_x == key_y:
            continue
        if keys_decide and key_x is not None and key_y is not None:
            return False
        coords = g.parse_coord_key(key, grid)
        box = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, x.chunks, x.shape))
        if not _bytes_equal(np.asarray(x[box]), np.asarray(y[box])):
            return False
    return True


def _content_keys(array: Array) -> dict[str, bytes]:
    """{coord key: content key} of the chunks an array references."""
    rows = array._db.arrays.conn.execute(
        "SELECT r.coord, c.hash FROM chunk_ref r JOIN chunk c ON c.chunk_id = r.chunk_id WHERE r.array_id = ?",
        (array.array_id,),
    ).fetchall()
    return {str(coord): bytes(key) for coord, key in rows}


def _blocks_equal(x: Array | np.ndarray[Any, Any], y: Array | np.ndarray[Any, Any]) -> bool:
    """Compare two arrays slab by slab along the first axis (bounded memory)."""
    shape = tuple(x.shape)
    if not shape or 0 in shape:
        return _bytes_equal(np.asarray(x[...]), np.asarray(y[...]))
    row = max(1, math.prod(shape[1:]) * x.dtype.itemsize)
    step = max(1, _BLOCK_BYTES // row)
    return all(_bytes_equal(np.asarray(x[i:i + step]), np.asarray(y[i:i + step])) for i in range(0, shape[0], step))


def _bytes_equal(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> bool:
    """Bit for bit: NaNs of the same bits are equal, 0.0 and -0.0 are not."""
    return np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()
