"""The chunk grid: automatic chunk shapes, chunk coordinate keys, bounds checks.

Every stored chunk is a full ``chunks``-shaped block; the part of an edge
chunk that lies outside the array always holds the fill value, so growing an
array never exposes stale data.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator, Sequence

from ..codec import MAX_CHUNK_BYTES
from ..errors import CorruptionError
from .indexing import normalize_chunks

__all__ = [
    "auto_chunks",
    "coord_key",
    "parse_coord_key",
    "iter_grid",
    "iter_blocks",
    "BLOCK_BYTES",
    "check_shape",
    "MAX_NDIM",
    "MAX_NBYTES",
    "TARGET_CHUNK_BYTES",
]

#: Automatic chunks aim at about this many uncompressed bytes.
TARGET_CHUNK_BYTES = 1 << 20
MAX_NDIM = 32
#: No array may claim more logical bytes than this (a guard against hostile shapes).
MAX_NBYTES = 1 << 60


def check_shape(shape: Sequence[int], itemsize: int, what: str = "shape") -> tuple[int, ...]:
    """Validate a shape (ints >= 0, bounded total size); ValueError otherwise."""
    dims = _ints(shape, what)
    if len(dims) > MAX_NDIM:
        raise ValueError(f"{what} has {len(dims)} dimensions (at most {MAX_NDIM})")
    if any(d < 0 for d in dims):
        raise ValueError(f"{what} {dims} has a negative dimension")
    if math.prod(dims) * max(itemsize, 1) > MAX_NBYTES:
        raise ValueError(f"{what} {dims} is too large ({math.prod(dims) * itemsize} bytes)")
    return dims


def _ints(values: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        if isinstance(values, (str, bytes)) or any(isinstance(v, bool) for v in values):
            raise TypeError
        return tuple(operator.index(v) for v in values)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of ints, got {values!r}") from None


def check_chunks(chunks: Sequence[int], shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Validate an explicit chunk shape for ``shape`` and bound its size in bytes; ValueError otherwise."""
    dims = normalize_chunks(chunks, shape)
    if math.prod(dims) * itemsize > MAX_CHUNK_BYTES:
        raise ValueError(f"chunks {dims} hold {math.prod(dims) * itemsize} bytes (limit {MAX_CHUNK_BYTES})")
    return dims


def auto_chunks(shape: tuple[int, ...], itemsize: int, target: int = TARGET_CHUNK_BYTES) -> tuple[int, ...]:
    """A chunk shape of roughly ``target`` bytes; the whole array when it is smaller.

    Halves the longest chunk axis until the chunk fits, which gives squarish
    chunks that serve row, column and box reads alike.
    """
    chunks = [max(d, 1) for d in shape]
    itemsize = max(itemsize, 1)
    while math.prod(chunks) * itemsize > target:
        axis = max(range(len(chunks)), key=lambda i: chunks[i])
        if chunks[axis] == 1:
            break  # a single item larger than the target: one item per chunk
        chunks[axis] = (chunks[axis] + 1) // 2
    return tuple(chunks)


def coord_key(coords: Sequence[int]) -> str:
    """The ``chunk_ref.coord`` text of a chunk: grid coordinates joined by dots ("" for 0-d)."""
    return ".".join(str(c) for c in coords)


def origin_key(ndim: int) -> str:
    """``coord_key((0,) * ndim)``: the key of the first chunk (the only one of a single-chunk grid)."""
    return _ORIGIN_KEYS[ndim] if ndim < len(_ORIGIN_KEYS) else ".".join("0" * ndim)


_ORIGIN_KEYS = tuple(".".join("0" * n) for n in range(33))


def parse_coord_key(key: object, grid: tuple[int, ...]) -> tuple[int, ...]:
    """Parse a stored coord key and check it lies inside ``grid``; CorruptionError otherwise."""
    if not isinstance(key, str):
        raise CorruptionError(f"invalid chunk coordinate {key!r}")
    parts = key.split(".") if key else []
    if len(parts) != len(grid) or not all(p.isdigit() and len(p) < 20 for p in parts):
        raise CorruptionError(f"invalid chunk coordinate {key!r} for a grid of {len(grid)} dimensions")
    coords = tuple(int(p) for p in parts)
    if any(c >= g for c, g in zip(coords, grid)):
        raise CorruptionError(f"chunk coordinate {key!r} lies outside the grid {grid}")
    return coords


def iter_grid(grid: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Every chunk coordinate of a grid in C order."""
    return itertools.product(*(range(g) for g in grid))


#: Blocks of chunk-aligned streaming aim at this many raw bytes by default.
BLOCK_BYTES = 4 * 2**20


def iter_blocks(shape: Sequence[int], chunks: Sequence[int], itemsize: int,
                max_bytes: int = BLOCK_BYTES) -> Iterator[tuple[slice, ...]]:
    """Boxes tiling an array in C order, each a whole number of chunks of at most ``max_bytes``.

    A box is grown from the last axis (whole trailing rows while they fit),
    so it covers a contiguous run of chunks; one chunk is the smallest box,
    even when it alone is larger than ``max_bytes``. Reading or writing box by
    box streams an array with chunk-aligned I/O in bounded memory.

    Example
    -------
    >>> list(tensordb.iter_blocks((4, 6), (2, 3), 8, max_bytes=100))
    [(slice(0, 2, None), slice(0, 6, None)), (slice(2, 4, None), slice(0, 6, None))]
    """
    shape, chunks = tuple(shape), tuple(chunks)
    if len(chunks) != len(shape):
        raise ValueError(f"chunks {chunks} do not match shape {shape}")
    if 0 in shape:
        return
    block = [max(1, min(c, n)) for c, n in zip(chunks, shape)]
    for axis in reversed(range(len(shape))):
        others = math.prod(block[:axis] + block[axis + 1:]) * max(itemsize, 1)
        step = max(1, chunks[axis])
        block[axis] = max(block[axis], min(shape[axis], max(1, max_bytes // (others * step)) * step))
        if block[axis] < shape[axis]:
            break
    counts = [-(-n // b) for n, b in zip(shape, block)]
    for index in _lazy_c_order(counts):  # a shape may be huge and sparse: no list of the boxes
        yield tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, shape))


def _lazy_c_order(counts: list[int]) -> Iterator[tuple[int, ...]]:
    """Every index below ``counts`` in C order, one at a time (itertools.product lists its inputs first)."""
    index = [0] * len(counts)
    while True:
        yield tuple(index)
        for axis in reversed(range(len(counts))):
            index[axis] += 1
            if index[axis] < counts[axis]:
                break
            index[axis] = 0
        else:
            return
