"""The Zarr side: the zarr package, naming a store in messages, and finding the chunks a store holds."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import math
import os
from collections.abc import Iterator
from typing import Any

import tensordb

__all__ = ["load_zarr", "describe", "reading", "stored_boxes"]

#: Without a listing of stored chunks, at most this many blocks are visited.
_MAX_BLIND_BLOCKS = 1_000_000


def load_zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise ImportError("tensordb.zarr needs zarr 3.1 or later: pip install 'tensordb[zarr]'") from None
    return zarr


def describe(store: Any) -> str:
    """How messages name a store (node paths inside it follow, from its root)."""
    if isinstance(store, (str, os.PathLike)):
        return os.fspath(store)
    inner = getattr(store, "store", None)  # a zarr Group or Array: its store
    return str(inner if inner is not None and isinstance(getattr(store, "path", None), str) else store)


@contextlib.contextmanager
def reading(where: str) -> Iterator[None]:
    """Report anything that goes wrong while reading ``where`` (store: node) as a FormatError naming it."""
    try:
        yield
    except (tensordb.TensorDBError, MemoryError):
        raise
    except RecursionError:
        raise tensordb.FormatError(f"{where}: metadata nested too deeply") from None
    except Exception as exc:
        raise tensordb.FormatError(f"{where}: {exc}") from exc


def stored_boxes(z: Any, shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int,
                  where: str) -> Iterator[tuple[slice, ...]]:
    """Boxes of whole ``chunks`` (``tensordb.iter_blocks``' size) covering every stored Zarr chunk.

    Stored chunks are found by listing the store, so a huge, sparse array
    costs what it stores, not what its shape claims: dense arrays are read
    in large blocks, sparse ones one stored chunk (or shard) at a time.
    """
    if 0 in shape:
        return
    if not shape:
        yield ()
        return
    first = next(tensordb.iter_blocks(shape, chunks, itemsize))
    block = [s.stop for s in first]
    units = _stored_units(z)
    if units is None:  # no listing: every block, if there are not too many
        grid = [-(-n // b) for n, b in zip(shape, block)]
        if math.prod(grid) > _MAX_BLIND_BLOCKS:
            raise tensordb.FormatError(f"{where}: cannot list the stored chunks of an array of shape {shape}")
        for index in itertools.product(*(range(g) for g in grid)):
            yield tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, shape))
        return
    unit, coords = units
    regions = [tuple(slice(c * u, min((c + 1) * u, n)) for c, u, n in zip(coord, unit, shape)) for coord in coords]
    found: set[tuple[int, ...]] = set()
    for region in regions:  # the blocks each stored unit overlaps
        found.update(itertools.product(*(range(r.start // b, -(-r.stop // b)) for r, b in zip(region, block))))
    if len(regions) * math.prod(unit) * 4 >= len(found) * math.prod(block):
        for index in sorted(found):
            yield tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, shape))
        return
    for region in sorted(regions, key=lambda r: tuple(s.start for s in r)):
        for box in tensordb.iter_blocks(tuple(r.stop - r.start for r in region), chunks, itemsize):
            yield tuple(slice(r.start + b.start, r.start + b.stop) for b, r in zip(box, region))


def _stored_units(z: Any) -> tuple[tuple[int, ...], list[tuple[int, ...]]] | None:
    """(unit shape, coordinates of the stored units): shards if the array is sharded, else chunks."""
    encoding = getattr(z.metadata, "chunk_key_encoding", None)
    if encoding is None:
        return None
    name, separator = getattr(encoding, "name", None), getattr(encoding, "separator", None)
    if name not in ("default", "v2") or separator not in ("/", "."):
        return None
    unit: tuple[int, ...] = tuple(z.shards or z.chunks)
    ndim = len(unit)
    prefix = z.path + "/" if z.path else ""
    grid = [-(-n // u) for n, u in zip(z.shape, unit)]
    keys = _list_keys(z.store, prefix)
    if keys is None:
        return None
    coords = []
    for key in keys:
        coord = _chunk_coord(key[len(prefix):], ndim, "c" + separator if name == "default" else "", separator)
        # a key is a chunk's only if it encodes back to itself (anything else is another tool's file)
        if (coord is not None and all(c < g for c, g in zip(coord, grid))
                and encoding.encode_chunk_key(coord) == key[len(prefix):]):
            coords.append(coord)
    return unit, coords


def _list_keys(store: Any, prefix: str) -> list[str] | None:
    """Every key of ``store`` under ``prefix``; None when the store cannot be listed from here.

    Listing is asynchronous in Zarr's public store interface
    (``Store.list_prefix``), and zarr-python offers no public synchronous
    form of it. It runs on an event loop of its own in a helper thread, so
    it works whether or not the caller is already inside a loop (Jupyter).
    A store tied to another loop (an HTTP session opened on zarr's own) may
    refuse: the caller then visits every block, which reads the same data.
    """
    if not getattr(store, "supports_listing", False):
        return None

    async def listing() -> list[str]:
        return [key async for key in store.list_prefix(prefix)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(lambda: asyncio.run(listing())).result()
        except Exception:
            return None


def _chunk_coord(key: str, ndim: int, head: str, separator: str) -> tuple[int, ...] | None:
    """The grid coordinates a chunk key names, or None if it names none."""
    if ndim == 0:
        return ()
    if not key.startswith(head):
        return None
    parts = key[len(head):].split(separator)
    if len(parts) != ndim or not all(p.isdigit() and len(p) < 20 for p in parts):
        return None
    return tuple(int(p) for p in parts)
