"""Dask helpers: lazy Dask arrays over tensordb arrays (needs the ``tensordb[dask]`` extra).

One array becomes a Dask array with :meth:`tensordb.Array.to_dask` (or
``dask.array.from_array(arr, chunks=arr.chunks)``); :func:`from_glob`
stacks one field of many trees into one Dask array. Every block is read by
a pickled, read-only :class:`tensordb.Array` handle, so the tasks run on
threads, on processes or on a ``distributed`` cluster alike.

Example
-------
>>> import tensordb, tensordb.interop.dask
>>> db = tensordb.open("runs.tdb")
>>> p = tensordb.interop.dask.from_glob(db, "/data/p", trees="sim01/*")   # shape (n_trees, *field_shape)
>>> p.mean(axis=0).compute()
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tensordb

__all__ = ["from_glob"]


def from_glob(db: tensordb.Database, pattern: str, trees: str | None = None) -> Any:
    """Stack the arrays matching a JSON-Pointer pattern, across trees, into one lazy Dask array.

    The arrays are those :meth:`tensordb.Database.glob` yields, in the same
    order (tree creation order, then path), stacked along a new axis 0. Each
    keeps its stored chunks as Dask blocks; nothing is read until computed.
    ``[(t, p) for t, p, _ in db.glob(pattern, trees)]`` labels axis 0.

    Parameters
    ----------
    db : tensordb.Database
        The database to search.
    pattern : str
        A JSON Pointer where ``*`` matches within one segment and ``**`` any
        number of segments (as for :meth:`tensordb.Database.glob`).
    trees : str, optional
        A glob over tree names (``"sim01/*"``); all trees by default.

    Returns
    -------
    dask.array.Array
        Shape ``(n_matches, *shape)`` of the common shape and dtype.

    Raises
    ------
    tensordb.PathNotFoundError
        When nothing matches.
    TypeError
        When a match is not an array (naming the tree and pointer).
    ValueError
        When shapes or dtypes differ (naming both trees and pointers).

    Example
    -------
    >>> p = from_glob(db, "/data/internal/point_data/p", trees="bm01-*")
    >>> float(p.mean().compute())
    """
    try:
        import dask.array as da
    except ImportError:
        raise ImportError("tensordb.interop.dask needs dask: pip install 'tensordb[dask]'") from None
    blocks: list[Any] = []
    first: tuple[str, str, tuple[int, ...], np.dtype[Any]] | None = None
    for name, pointer, value in db.glob(pattern, trees):
        where = f"{db.filename}: {name}: {pointer or '(root)'}"
        if not isinstance(value, tensordb.Array):
            raise TypeError(f"{where}: holds {_kind(value)}, not an array; from_glob stacks arrays only")
        shape, dtype = value.shape, value.dtype
        if first is None:
            first = (name, pointer, shape, dtype)
        else:
            _check_like(where, shape, dtype, first)
        blocks.append(value.to_dask())
    if not blocks:
        among = f" in trees matching {trees!r}" if trees is not None else ""
        raise tensordb.PathNotFoundError(f"{db.filename}: no array matches {pattern!r}{among}")
    return da.stack(blocks, axis=0)  # type: ignore[no-untyped-call]


def _check_like(where: str, shape: tuple[int, ...], dtype: np.dtype[Any],
                first: tuple[str, str, tuple[int, ...], np.dtype[Any]]) -> None:
    """ValueError unless an array has the shape and dtype (byte order included) of the first match."""
    other = f"{first[0]}: {first[1] or '(root)'}"
    if shape != first[2]:
        problem = f"shape {shape} differs from {other} {first[2]}"
    elif dtype != first[3] or dtype.str != first[3].str:
        problem = f"dtype {dtype.str} differs from {other} ({first[3].str})"
    else:
        return
    raise ValueError(f"{where}: {problem}; from_glob stacks arrays of one shape and dtype")


def _kind(value: object) -> str:
    if isinstance(value, tensordb.Node):
        return f"a {value.kind}"
    if isinstance(value, np.generic):
        return f"a numpy scalar ({value.dtype})"
    return f"a {type(value).__name__}"
