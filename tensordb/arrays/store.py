"""The arrays of one database: records, chunk index and chunk I/O behind one facade.

Reads through a handle (:meth:`ArrayStore.read_current`) keep what they read
in a :class:`~tensordb.arrays.chunk_index.CachedArray` and trust it only while
nothing was committed since (one ``PRAGMA data_version``, or the version that
comes with any record looked up), so a repeated slice of an open handle costs
one statement and a first slice two: the array record, with the array id the
owner names, and the chunk records. No read transaction is needed for that:
every statement reports the commit it saw, and a read whose statements saw
different commits starts again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np

from ..codec import Codec
from ..storage.packs import PacksAppeared
from ..storage.store import Store
from . import grid as g
from .chunk_index import CachedArray, ChunkIndex, ChunkRecord
from .io import ArrayIO
from .meta import ArrayMeta, ArrayRecords, ArraySpec

__all__ = ["ArrayStore", "ArrayRef"]

#: How a handle names its array: a SQL subquery yielding the array id, and its parameters.
ArrayRef = tuple[str, tuple[Any, ...]]

# A read that keeps meeting new commits falls back to a read snapshot after this many tries.
_ATTEMPTS = 3


class _Changed(Exception):
    """Something was committed while a read without snapshot was under way."""


class ArrayStore:
    """Array records, their chunk index and their chunks, on top of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        self.chunks = store.chunks
        self.records = ArrayRecords(store.conn)
        self.index = ChunkIndex(store.conn, store.chunks)
        self.io = ArrayIO(store.chunks, self.index)
        # One apsw connection must not be used by two threads at once (Dask's
        # threaded scheduler reads blocks concurrently): reads take turns.
        self.read_lock = threading.RLock()
        #: True when every array this store reads is frozen (a view of a snapshot, format version 2):
        #: another store of the same file may then take them by id.
        self.frozen = False

    def lends_by_id_to(self, other: ArrayStore) -> bool:
        """Whether ``other`` may reference this store's arrays by id: the same store, or frozen ones of its file."""
        return other is self or (self.frozen and os.path.abspath(self.store.filename)
                                 == os.path.abspath(other.store.filename))

    # -- records -----------------------------------------------------------------

    def create(self, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...] | None = None,
               codec: Codec | None = None, fill_value: object = None) -> ArrayMeta:
        """Insert an empty array record (every chunk reads as ``fill_value``)."""
        return self.records.create_many([(shape, dtype, chunks, codec, fill_value)])[0]

    def create_many(self, specs: Sequence[ArraySpec]) -> list[ArrayMeta]:
        """:meth:`create` for many ``(shape, dtype, chunks, codec, fill_value)``, in one statement."""
        return self.records.create_many(specs)

    def meta(self, array_id: int) -> ArrayMeta:
        """Read and validate an array record (its fields are untrusted input)."""
        return self.records.get(array_id)

    def must_copy_before_write(self, array_id: int) -> bool:
        return self.records.must_copy_before_write(array_id)

    def clone(self, meta: ArrayMeta) -> ArrayMeta:
        """A new array record sharing every chunk of ``meta`` (copy-on-write)."""
        return self.records.clone(meta)

    def stored_nbytes(self, array_id: int) -> int:
        return self.records.stored_nbytes(array_id)

    def chunk_coords(self, meta: ArrayMeta) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Every (coord key, coords) with a stored chunk."""
        return self.index.stored_coords(meta)

    # -- reading -----------------------------------------------------------------

    def read(self, meta: ArrayMeta, key: object) -> Any:
        """``array[key]`` in the current snapshot or transaction (the caller holds one)."""
        return self.io.read(meta, key, self.io.index_lookup(meta))

    def read_where(self, array_ids_sql: str, params: tuple[Any, ...]) -> dict[int, np.ndarray[Any, Any]]:
        """{array id: whole array} for the arrays a SQL subquery selects (records and chunks: one query)."""
        return {array_id: self.io.read_whole(meta, records)
                for array_id, (meta, records) in self.index.with_records_where(array_ids_sql, params).items()}

    def read_current(self, cached: CachedArray | None, ref: ArrayRef, key: object,
                     missing: Callable[[], NoReturn]) -> tuple[Any, CachedArray | None]:
        """``array[key]`` of the array ``ref`` names now, and what to cache for the next read.

        ``missing`` raises the error to give when ``ref`` names no array.
        """
        if self.conn.in_snapshot:  # every statement sees one commit already
            return self.read(self._meta_of(ref, missing), key), None
        with self.store.packs.reading():
            for _ in range(_ATTEMPTS):
                try:
                    cached, fresh = self._current(cached, ref, missing)
                    return self._read_cached(cached, key, checked=fresh), cached
                except (_Changed, PacksAppeared):
                    cached = None
        with self.store.snapshot():  # other connections kept committing meanwhile: take a snapshot
            return self.read(self._meta_of(ref, missing), key), None

    def meta_current(self, cached: CachedArray | None, ref: ArrayRef, missing: Callable[[], NoReturn]
                     ) -> tuple[ArrayMeta, CachedArray | None]:
        """The record of the array ``ref`` names now (one statement), and what to cache."""
        if self.conn.in_snapshot:
            return self._meta_of(ref, missing), None
        if cached is not None and cached.generation == self.conn.write_generation:
            if self.conn.data_version() == cached.version:
                return cached.meta, cached
        cached, _ = self._current(None, ref, missing)
        return cached.meta, cached

    def _current(self, cached: CachedArray | None, ref: ArrayRef, missing: Callable[[], NoReturn]
                 ) -> tuple[CachedArray, bool]:
        """(a cache of the array ``ref`` names, whether it was read just now) (unchecked when reused)."""
        generation = self.conn.write_generation
        if cached is not None and cached.generation == generation:
            return cached, False
        meta, version, prefetched = self.index.meta_versioned(*ref)
        if meta is None:
            missing()
        cached = CachedArray(meta, version, generation)
        cached.remember(list(prefetched), {k: r for k, r in prefetched.items() if r is not None})
        return cached, True

    def _read_cached(self, cached: CachedArray, key: object, checked: bool) -> Any:
        """Read through the cache; _Changed when a commit since it was filled shows up."""
        meta = cached.meta
        conn = self.conn

        def lookup(keys: list[str]) -> dict[str, ChunkRecord | None]:
            nonlocal checked
            if missing := cached.missing(keys):
                found, version = self.index.records_versioned(meta, missing)
                if version != cached.version:
                    raise _Changed
                cached.remember(missing, found)
            elif not checked and conn.data_version() != cached.version:
                raise _Changed
            checked = True
            return {key: cached.records.get(key) for key in keys}

        try:
            result = self.io.read(meta, key, lookup)
        except Exception:
            # an IndexError against a shape that changed meanwhile is no answer either
            if not checked and conn.data_version() != cached.version:
                raise _Changed from None
            raise
        if not checked and conn.data_version() != cached.version:  # no chunk looked up: the shape must be current
            raise _Changed
        return result

    def _meta_of(self, ref: ArrayRef, missing: Callable[[], NoReturn]) -> ArrayMeta:
        meta, _, _ = self.index.meta_versioned(*ref)
        if meta is None:
            missing()
        return meta

    # -- writing -----------------------------------------------------------------

    def start_write_arrays(self, pairs: Iterable[tuple[ArrayMeta, np.ndarray[Any, Any]]]) -> Callable[[], None]:
        """Fill new, empty arrays with whole values (chunks of many arrays share batches); the last
        batch is stored when the result is called (see :meth:`ArrayIO.start_write_whole`)."""
        return self.io.start_write_whole(pairs)

    def write(self, meta: ArrayMeta, key: object, value: object) -> None:
        """``array[key] = value``: rewrites only the chunks the selection touches."""
        self.io.write(meta, key, value)

    def resize(self, meta: ArrayMeta, shape: tuple[int, ...]) -> ArrayMeta:
        """Change the shape; data inside both shapes is kept, new space reads as the fill value."""
        shape = g.check_shape(shape, meta.itemsize)
        if len(shape) != len(meta.shape):
            raise ValueError(f"resize cannot change the number of dimensions ({meta.shape} -> {shape})")
        if all(n >= old for n, old in zip(shape, meta.shape)):  # growing: the padding holds the fill value already
            return self.records.set_shape(meta, shape)
        new_grid = meta.reshaped(shape).grid
        outside, shrunk = [], []
        for key, coords in self.index.stored_coords(meta):
            if any(c >= n for c, n in zip(coords, new_grid)):
                outside.append((meta.array_id, key))
            elif any(s < old and (c + 1) * n > s for c, n, s, old in zip(coords, meta.chunks, shape, meta.shape)):
                shrunk.append(coords)  # an edge chunk that shrank: what now lies outside must read as fill
        self.index.drop(outside)
        self.io.clear_outside(meta, shape, shrunk)
        return self.records.set_shape(meta, shape)
