"""Orthogonal indexing of chunked arrays: which chunks a key touches, and where.

Pure maths on shapes, chunk grids and keys (numpy only, no I/O).

A stored array has a ``shape`` and a regular chunk grid ``chunks``. The chunk
at grid coordinates ``c`` covers ``[c[i]*chunks[i], min((c[i]+1)*chunks[i],
shape[i]))`` along each axis and is stored as a full ``chunks``-shaped array
(edge chunks are padded; the padding is never read into results nor written
from values).

Keys use *orthogonal* indexing (like zarr's ``oindex`` or h5py): ints
(negative allowed), slices with any non-zero step, at most one ``Ellipsis``,
``None`` (a new axis of length 1) and at most one 1-d integer or boolean array
per axis. Every axis's selector applies independently, so ``key = ([0, 2],
[1, 3])`` selects a 2x2 block, not numpy's two broadcast points.

A reader::

    sel = Selection(key, shape, chunks)
    out = np.empty(sel.out_shape, dtype)
    for p in sel.projections():
        chunk = read_chunk(p.coords)            # full chunks-shaped array
        orthogonal_set(out, p.out_sel, orthogonal_get(chunk, p.chunk_sel))
    result = out.reshape(sel.final_shape)
    if sel.is_scalar: result = result[()]     # numpy scalar

A writer::

    value = np.broadcast_to(np.asarray(v, dtype), sel.final_shape).reshape(sel.out_shape)
    for p in sel.projections():
        chunk = fresh_fill_chunk() if p.complete else read_chunk(p.coords)
        orthogonal_set(chunk, p.chunk_sel, orthogonal_get(value, p.out_sel))
        write_chunk(p.coords, chunk)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from itertools import product
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "leading_rows",
    "rebase_leading",
    "ChunkProjection",
    "Selection",
    "orthogonal_get",
    "orthogonal_set",
    "normalize_chunks",
    "grid_shape",
    "chunk_region",
    "chunk_valid_sel",
]

IntArray: TypeAlias = npt.NDArray[np.intp]
#: A per-axis selector into a concrete array: int (drops the axis), slice or 1-d index array.
Selector: TypeAlias = int | slice | IntArray

_VALID_INDICES = (
    "only integers, slices (`:`), ellipsis (`...`), None (`numpy.newaxis`) "
    "and 1-d integer or boolean arrays are valid indices"
)


# ---------------------------------------------------------------------------
# Shapes and chunk grids
# ---------------------------------------------------------------------------


def _as_dims(values: object, what: str, minimum: int) -> tuple[int, ...]:
    """Validate a sequence of ints >= ``minimum``; ValueError otherwise."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"{what} must be a sequence of integers, got {values!r}")
    dims: list[int] = []
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{what} must contain integers, got {values!r}")
        try:
            d = operator.index(v)
        except TypeError:
            raise ValueError(f"{what} must contain integers, got {values!r}") from None
        if d < minimum:
            raise ValueError(f"{what} entries must be >= {minimum}, got {values!r}")
        dims.append(d)
    return tuple(dims)


def normalize_chunks(chunks: object, shape: Sequence[int]) -> tuple[int, ...]:
    """Validate an explicit chunk shape for an array of ``shape``.

    Returns the chunk shape as a tuple of Python ints. Raises ``ValueError``
    unless ``chunks`` is a sequence of ints >= 1 with as many entries as
    ``shape`` has dimensions (or if ``shape`` itself is not a valid shape).
    """
    shp = _as_dims(shape, "shape", 0)
    chk = _as_dims(chunks, "chunks", 1)
    if len(chk) != len(shp):
        raise ValueError(
            f"chunks {chk} have {len(chk)} dimensions but the array shape {shp} has {len(shp)}"
        )
    return chk


def grid_shape(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """Number of chunks along each axis: ``ceil(shape[i] / chunks[i])``."""
    return tuple(-(-int(n) // int(c)) for n, c in zip(shape, chunks, strict=True))


def _check_coords(
    coords: Sequence[int], shape: Sequence[int], chunks: Sequence[int]
) -> tuple[int, ...]:
    grid = grid_shape(shape, chunks)
    crd = tuple(int(c) for c in coords)
    if len(crd) != len(grid) or any(not 0 <= c < g for c, g in zip(crd, grid)):
        raise IndexError(f"chunk coordinates {crd} are outside the chunk grid {grid}")
    return crd


def chunk_region(
    coords: Sequence[int], shape: Sequence[int], chunks: Sequence[int]
) -> tuple[slice, ...]:
    """The region of the array that the chunk at ``coords`` covers, clipped to ``shape``.

    Raises ``IndexError`` if ``coords`` is not inside the chunk grid.
    """
    crd = _check_coords(coords, shape, chunks)
    return tuple(slice(c * k, min((c + 1) * k, int(n))) for c, n, k in zip(crd, shape, chunks))


def chunk_valid_sel(
    coords: Sequence[int], shape: Sequence[int], chunks: Sequence[int]
) -> tuple[slice, ...]:
    """The in-bounds part of the chunk at ``coords``, as slices into the full chunk array.

    For shape ``(10, 10)``, chunks ``(4, 5)`` and coords ``(2, 1)`` this is
    ``(slice(0, 2), slice(0, 5))``. Raises ``IndexError`` if ``coords`` is not
    inside the chunk grid.
    """
    crd = _check_coords(coords, shape, chunks)
    return tuple(slice(0, min(int(k), int(n) - c * int(k))) for c, n, k in zip(crd, shape, chunks))


# ---------------------------------------------------------------------------
# Per-axis indexers
# ---------------------------------------------------------------------------


class _AxisChunk(NamedTuple):
    chunk: int  # chunk index along the axis
    chunk_sel: Selector  # selector into the full chunk along the axis
    out_sel: slice | IntArray | None  # selector into the output axis; None for int-indexed axes
    complete: bool  # chunk_sel covers the chunk's whole in-bounds extent along the axis


def _out_of_bounds(index: int, axis: int, dim: int) -> IndexError:
    return IndexError(f"index {index} is out of bounds for axis {axis} with size {dim}")


def _extent(j: int, dim: int, chunk: int) -> int:
    """In-bounds length of chunk ``j`` along an axis."""
    return min(chunk, dim - j * chunk)


class _IntIndexer:
    """An int on one axis: one chunk, the axis is dropped from the output."""

    def __init__(self, index: int, axis: int, dim: int, chunk: int) -> None:
        if not -dim <= index < dim:
            raise _out_of_bounds(index, axis, dim)
        if index < 0:
            index += dim
        self.j, self.local = divmod(index, chunk)
        self.complete = _extent(self.j, dim, chunk) == 1
        self.count = 1

    def __iter__(self) -> Iterator[_AxisChunk]:
        yield _AxisChunk(self.j, self.local, None, self.complete)


class _SliceIndexer:
    """A slice on one axis, walked in ascending index order chunk by chunk.

    A negative step is mapped to the same elements in ascending order; the
    output selectors are then reversed slices, so every chunk selector stays a
    plain ascending slice and nothing proportional to the axis is allocated.
    """

    def __init__(self, slc: slice, dim: int, chunk: int) -> None:
        start, stop, step = slc.indices(dim)
        r = range(start, stop, step)
        self.length = m = len(r)
        self.dim = dim
        self.chunk = chunk
        self.reverse = step < 0 and m > 1
        if m <= 1:
            self.first, self.step = (start, 1)
        elif step > 0:
            self.first, self.step = (start, step)
        else:
            self.first, self.step = (r[-1], -step)
        if m == 0:
            self.count = 0
        elif self.step >= chunk:
            # Consecutive elements are at least a chunk apart: all in distinct chunks.
            self.count = m
        else:
            # A step below the chunk size cannot jump over a whole chunk.
            last = self.first + (m - 1) * self.step
            self.count = last // chunk - self.first // chunk + 1

    def _out(self, k0: int, k1: int) -> slice:
        if not self.reverse:
            return slice(k0, k1)
        m = self.length
        stop = m - 1 - k1
        return slice(m - 1 - k0, stop if stop >= 0 else None, -1)

    def __iter__(self) -> Iterator[_AxisChunk]:
        a, s, m, c, dim = self.first, self.step, self.length, self.chunk, self.dim
        k = 0
        while k < m:
            x = a + k * s
            j = x // c
            end = min((j + 1) * c, dim)  # first index past this chunk
            k_end = min(m, k + (end - 1 - x) // s + 1)
            n = k_end - k
            lo = x - j * c
            if n == 1:
                chunk_sel = slice(lo, lo + 1)
            else:
                chunk_sel = slice(lo, lo + (n - 1) * s + 1, s if s != 1 else None)
            yield _AxisChunk(j, chunk_sel, self._out(k, k_end), n == _extent(j, dim, c))
            k = k_end


class _ArrayIndexer:
    """A 1-d integer array (already bounds-checked and non-negative) on one axis.

    The array is split per chunk once, with a stable argsort of the chunk ids
    when it is not already sorted, so duplicates keep their relative order
    (a write with duplicate indices then behaves like numpy's: last one wins).
    """

    def __init__(self, idx: IntArray, dim: int, chunk: int) -> None:
        self.length = n_idx = int(idx.shape[0])
        cid = idx // chunk
        order: IntArray | None = None
        if n_idx > 1 and bool(np.any(idx[1:] < idx[:-1])):
            order = np.argsort(cid, kind="stable").astype(np.intp, copy=False)
            idx = idx[order]
            cid = cid[order]
        bounds = np.flatnonzero(cid[1:] != cid[:-1]) + 1
        starts = np.concatenate(([0], bounds)).tolist() if n_idx else []
        ends = np.concatenate((bounds, [n_idx])).tolist() if n_idx else []
        self.parts: list[_AxisChunk] = []
        for s, e in zip(starts, ends):
            j = int(cid[s])
            local = idx[s:e] - j * chunk
            extent = _extent(j, dim, chunk)
            chunk_sel: Selector
            lo, hi = int(local[0]), int(local[-1])
            if hi - lo == e - s - 1 and (e - s == 1 or bool(np.all(np.diff(local) == 1))):
                chunk_sel = slice(lo, hi + 1)
                complete = lo == 0 and hi == extent - 1
            else:
                chunk_sel = local
                complete = e - s >= extent and int(np.unique(local).size) == extent
            out_sel: slice | IntArray
            if order is None:
                out_sel = slice(s, e)
            else:
                # The stable sort keeps a group's positions ascending, so the
                # group is a contiguous run of the output iff its span matches.
                grp = order[s:e]
                first, last = int(grp[0]), int(grp[-1])
                out_sel = slice(first, last + 1) if last - first == e - s - 1 else grp
            self.parts.append(_AxisChunk(j, chunk_sel, out_sel, complete))
        self.count = len(self.parts)

    def __iter__(self) -> Iterator[_AxisChunk]:
        return iter(self.parts)


_Indexer: TypeAlias = _IntIndexer | _SliceIndexer | _ArrayIndexer


# ---------------------------------------------------------------------------
# Key parsing
# ---------------------------------------------------------------------------


def _slice_part(v: Any) -> int | None:
    if v is None:
        return None
    try:
        return operator.index(v)
    except TypeError:
        raise IndexError(
            f"slice indices must be integers or None, got {type(v).__name__}"
        ) from None


def _parse_item(item: object) -> int | slice | np.ndarray[Any, Any] | None:
    """Classify one key entry: int, slice, raw 1-d index array, or None (new axis).

    Ellipsis is handled by the caller.
    """
    if item is None:
        return None
    if isinstance(item, (bool, np.bool_)):
        raise IndexError("boolean scalar indices are not supported")
    if isinstance(item, (int, np.integer)):
        return int(item)
    if isinstance(item, slice):
        return slice(_slice_part(item.start), _slice_part(item.stop), _slice_part(item.step))
    if isinstance(item, (list, tuple, range, np.ndarray)):
        if isinstance(item, np.ndarray):
            arr = item
        elif len(item) == 0:
            # numpy reads an empty list as an empty integer index.
            arr = np.empty(0, dtype=np.intp)
        else:
            try:
                arr = np.asarray(item)
            except (ValueError, TypeError):
                raise IndexError(f"{_VALID_INDICES}; got {item!r}") from None
        if arr.dtype == np.bool_:
            if arr.ndim == 0:
                raise IndexError("boolean scalar indices are not supported")
        elif not np.issubdtype(arr.dtype, np.integer):
            raise IndexError(
                f"arrays used as indices must be of integer (or boolean) type, got {arr.dtype}"
            )
        if arr.ndim == 0:
            return int(arr)
        if arr.ndim != 1:
            raise IndexError(
                f"index arrays must be 1-dimensional in orthogonal indexing, got shape {arr.shape}"
            )
        return arr
    try:
        return operator.index(item)  # type: ignore[arg-type]
    except TypeError:
        raise IndexError(f"{_VALID_INDICES}; got {type(item).__name__}") from None


def _index_array(arr: np.ndarray[Any, Any], axis: int, dim: int) -> IntArray:
    """Bounds-check a raw 1-d int/bool index array and return non-negative intp indices."""
    if arr.dtype == np.bool_:
        if arr.shape[0] != dim:
            raise IndexError(
                f"boolean index did not match indexed array along axis {axis}; "
                f"size of axis is {dim} but size of corresponding boolean axis is {arr.shape[0]}"
            )
        return np.flatnonzero(arr).astype(np.intp, copy=False)
    if arr.size == 0:
        return np.empty(0, dtype=np.intp)
    # Compare in 64 bits: a narrow dtype cannot hold the axis length.
    if arr.dtype.kind == "u":
        wide = arr.astype(np.uint64, copy=False)
        bad = wide >= np.uint64(dim)
    else:
        wide = arr.astype(np.int64, copy=False)
        bad = (wide >= dim) | (wide < -dim)
    if bool(np.any(bad)):
        raise _out_of_bounds(int(arr[np.argmax(bad)]), axis, dim)
    idx = wide.astype(np.intp, copy=False)
    if arr.dtype.kind != "u":
        idx = np.where(idx < 0, idx + dim, idx)
    return idx


# ---------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------


class ChunkProjection(NamedTuple):
    """How one chunk contributes to a selection.

    ``chunk_sel`` has one selector per array axis (int, slice or 1-d ``np.intp``
    array) into the full ``chunks``-shaped chunk array; it never reaches into
    the padding. ``out_sel`` has one selector per axis of ``Selection.out_shape``
    (slice or 1-d ``np.intp`` array). ``complete`` is True iff ``chunk_sel``
    covers every in-bounds element of the chunk, so a write need not read the
    old chunk first.
    """

    coords: tuple[int, ...]
    chunk_sel: tuple[Selector, ...]
    out_sel: tuple[slice | IntArray, ...]
    complete: bool


class Selection:
    """An orthogonal-indexing key resolved against an array's shape and chunk grid.

    Attributes:
        shape: the array shape.
        chunks: the chunk shape.
        out_shape: the result shape without ``None`` axes (int-indexed axes dropped);
            this is the shape that ``ChunkProjection.out_sel`` indexes.
        final_shape: the result shape as numpy would return it (``None`` axes included).
        is_scalar: True iff the result is a single element that numpy would return
            as a scalar: every axis is indexed by an int and the key has neither
            ``None`` nor ``Ellipsis`` (``a[1, 2, ...]`` is a 0-d array in numpy).

    Raises ``IndexError`` for invalid or out-of-range keys and ``ValueError``
    for an invalid shape or chunk shape.
    """

    def __init__(self, key: object, shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
        self.shape: tuple[int, ...] = _as_dims(shape, "shape", 0)
        self.chunks: tuple[int, ...] = normalize_chunks(chunks, self.shape)
        ndim = len(self.shape)
        items = key if isinstance(key, tuple) else (key,)

        parsed: list[int | slice | np.ndarray[Any, Any] | None] = []
        ellipsis_at: int | None = None
        for item in items:
            if item is Ellipsis:
                if ellipsis_at is not None:
                    raise IndexError("an index can only have a single ellipsis ('...')")
                ellipsis_at = len(parsed)
                continue
            parsed.append(_parse_item(item))
        consumed = sum(p is not None for p in parsed)
        if consumed > ndim:
            raise IndexError(
                f"too many indices for array: array is {ndim}-dimensional, "
                f"but {consumed} were indexed"
            )
        fill: list[int | slice | np.ndarray[Any, Any] | None] = [slice(None)] * (ndim - consumed)
        if ellipsis_at is None:
            parsed.extend(fill)
        else:
            parsed[ellipsis_at:ellipsis_at] = fill

        self._indexers: list[_Indexer] = []
        final: list[int] = []
        out: list[int] = []
        all_int = True
        axis = 0
        for p in parsed:
            if p is None:
                final.append(1)
                continue
            dim, chunk = self.shape[axis], self.chunks[axis]
            if isinstance(p, int):
                self._indexers.append(_IntIndexer(p, axis, dim, chunk))
            else:
                all_int = False
                ix: _SliceIndexer | _ArrayIndexer
                if isinstance(p, slice):
                    ix = _SliceIndexer(p, dim, chunk)
                else:
                    ix = _ArrayIndexer(_index_array(p, axis, dim), dim, chunk)
                self._indexers.append(ix)
                final.append(ix.length)
                out.append(ix.length)
            axis += 1
        self.out_shape: tuple[int, ...] = tuple(out)
        self.final_shape: tuple[int, ...] = tuple(final)
        self.is_scalar: bool = all_int and ellipsis_at is None and len(final) == 0

    def __repr__(self) -> str:
        return (
            f"Selection(shape={self.shape}, chunks={self.chunks}, "
            f"out_shape={self.out_shape}, final_shape={self.final_shape})"
        )

    def nchunks(self) -> int:
        """Number of chunks the selection touches (= number of projections), without iterating."""
        return math.prod(ix.count for ix in self._indexers)

    def projections(self) -> Iterator[ChunkProjection]:
        """Yield one :class:`ChunkProjection` per touched chunk, in C order of ``coords``.

        Yields nothing when the selection is empty.
        """
        indexers = self._indexers
        if not indexers:
            yield ChunkProjection((), (), (), True)
            return
        if any(ix.count == 0 for ix in indexers):
            return
        # Every axis touches >= 1 chunk here, so materialising the inner axes
        # costs no more than the projections themselves; the outer axis stays lazy.
        inner = [list(ix) for ix in indexers[1:]]
        for first in indexers[0]:
            for rest in product(*inner):
                parts = (first, *rest)
                yield ChunkProjection(
                    coords=tuple(p.chunk for p in parts),
                    chunk_sel=tuple(p.chunk_sel for p in parts),
                    out_sel=tuple(p.out_sel for p in parts if p.out_sel is not None),
                    complete=all(p.complete for p in parts),
                )


# ---------------------------------------------------------------------------
# Applying per-axis selectors to in-memory arrays
# ---------------------------------------------------------------------------


def _decompose(
    ndim: int, sel: tuple[Any, ...]
) -> tuple[tuple[Any, ...], list[tuple[int, IntArray]]]:
    """Split ``sel`` into a basic-indexing key and the index arrays to apply after it.

    Returns the basic key (ints and slices; index-array axes as full slices,
    plus a trailing Ellipsis so the result is always an array view) and the
    index arrays with their axis positions in that view.
    """
    if len(sel) > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {len(sel)} were indexed"
        )
    basic: list[Any] = []
    arrays: list[tuple[int, IntArray]] = []
    pos = 0
    for s in sel:
        if isinstance(s, slice):
            basic.append(s)
            pos += 1
        elif isinstance(s, (np.ndarray, list)):
            arr = np.asarray(s)
            if arr.dtype == np.bool_:
                arr = np.flatnonzero(arr)
            arrays.append((pos, arr.astype(np.intp, copy=False)))
            basic.append(slice(None))
            pos += 1
        else:
            basic.append(operator.index(s))
    basic.append(Ellipsis)
    return tuple(basic), arrays


def _ix(shape: tuple[int, ...], arrays: list[tuple[int, IntArray]]) -> tuple[IntArray, ...]:
    full: list[IntArray] = [np.arange(n, dtype=np.intp) for n in shape]
    for pos, arr in arrays:
        full[pos] = arr
    return np.ix_(*full)


def orthogonal_get(array: np.ndarray[Any, Any], sel: tuple[Any, ...]) -> np.ndarray[Any, Any]:
    """Apply per-axis selectors (int, slice or 1-d int array) orthogonally.

    Ints drop their axis; missing trailing selectors mean full slices. The
    result is always an ndarray (0-d when every axis is int-indexed) and may
    be a view of ``array`` when ``sel`` holds no index arrays.
    """
    basic, arrays = _decompose(array.ndim, sel)
    view: np.ndarray[Any, Any] = array[basic]
    if not arrays:
        return view
    if len(arrays) == 1:
        pos, arr = arrays[0]
        taken: np.ndarray[Any, Any] = np.take(view, arr, axis=pos)
        return taken
    result: np.ndarray[Any, Any] = view[_ix(view.shape, arrays)]
    return result


def orthogonal_set(array: np.ndarray[Any, Any], sel: tuple[Any, ...], value: npt.ArrayLike) -> None:
    """Assign ``value`` into ``array`` in place at the orthogonal selection ``sel``.

    ``value`` must be shaped like ``orthogonal_get(array, sel)`` (or broadcast
    to it). With duplicate indices the last value wins, as in numpy.
    """
    basic, arrays = _decompose(array.ndim, sel)
    view = array[basic]  # basic indexing: a view, so the assignments below are in place
    if not arrays:
        view[...] = value
    elif len(arrays) == 1:
        pos, arr = arrays[0]
        view[(slice(None),) * pos + (arr,)] = value
    else:
        view[_ix(view.shape, arrays)] = value


def leading_rows(sel: tuple[Any, ...], n: int) -> tuple[int, int]:
    """The rows ``[lo, hi)`` along the first axis (of length ``n``) that per-axis selectors touch."""
    first = sel[0] if sel else slice(None)
    if isinstance(first, slice):
        rows = range(*first.indices(n))
        return (min(rows[0], rows[-1]), max(rows[0], rows[-1]) + 1) if rows else (0, 0)
    if isinstance(first, np.ndarray):
        return (int(first.min()), int(first.max()) + 1) if first.size else (0, 0)
    i = operator.index(first)
    return i, i + 1


def rebase_leading(sel: tuple[Any, ...], n: int, lo: int) -> tuple[Any, ...]:
    """``sel`` (over a first axis of length ``n``) for the same elements of the rows from ``lo`` on."""
    if not sel:
        return sel
    first = sel[0]
    if isinstance(first, slice):
        start, stop, step = first.indices(n)
        if step > 0:
            first = slice(start - lo, max(stop - lo, 0), step)
        else:
            first = np.arange(start, stop, step, dtype=np.intp) - lo
    elif isinstance(first, np.ndarray):
        first = first - lo
    else:
        first = operator.index(first) - lo
    return (first, *sel[1:])
