"""Chunked array I/O: the one read path (a batched gather) and the one write path (a batched, parallel scatter).

Reading: :func:`gather` copies the selected part of every chunk a selection
touches into the result. Chunk records are looked up a batch at a time
(whoever calls says how: from a query, a cache or records read already), the
stored bytes of each are checksum-verified, and for big chunks the thread pool
verifies and decodes while this thread goes on. A chunk that covers a
contiguous part of the result is decoded straight into it; a selection that
touches a few rows of a chunk decodes only the Blosc2 blocks holding them.

Writing: every write (a whole value, a slice assignment, append, the part of
resize that rewrites edge chunks) builds full chunks and hands them to a
:class:`ChunkWriter`, which stores them a batch at a time: content keys and
compression on the pool, one statement per table, chunks equal to the fill
value everywhere dropped from the index instead of stored.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CorruptionError
from ..storage.chunks import THREADS, ChunkStore, thread_pool
from . import grid as g
from .chunk_index import RECORDS_PER_QUERY, ChunkIndex, ChunkRecord
from .indexing import (
    ChunkProjection,
    Selection,
    chunk_region,
    chunk_valid_sel,
    leading_rows,
    orthogonal_get,
    orthogonal_set,
    rebase_leading,
)
from .meta import ArrayMeta, is_fill

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["ArrayIO", "ChunkWriter", "Lookup", "naming_chunk"]

#: Looks up the records of up to RECORDS_PER_QUERY coord keys; an unwritten chunk is absent or None.
Lookup = Callable[[list[str]], Mapping[str, ChunkRecord | None]]

_ALL = slice(None)
# Writes hand chunks to the chunk store in batches of about this many raw bytes.
_WRITE_BATCH_BYTES = 16 * 1024 * 1024
# Reads of more than two chunks at least this big verify and decode them on every core.
_PARALLEL_CHUNK_BYTES = 256 * 1024


class ArrayIO:
    """Reads and writes the chunks of arrays through one chunk store and chunk index."""

    def __init__(self, chunks: ChunkStore, index: ChunkIndex) -> None:
        self.chunks = chunks
        self.index = index

    # -- reading -------------------------------------------------------------------

    def read(self, meta: ArrayMeta, key: object, lookup: Lookup) -> Any:
        """``array[key]`` as numpy would return it (orthogonal indexing)."""
        if meta.chunks == meta.shape and meta.size and (
            key is Ellipsis or type(key) is slice and key == _ALL and meta.shape  # a 0-d array refuses [:]
        ):
            return self.read_whole(meta, lookup([g.origin_key(len(meta.shape))]))  # all of a one-chunk array
        sel = Selection(key, meta.shape, meta.chunks)
        out = np.empty(sel.out_shape, dtype=meta.dtype)
        self.gather(meta, sel.projections(), out, lookup, parallel=self.worth_parallel(meta, sel.nchunks()))
        result = out.reshape(sel.final_shape)
        return result[()] if sel.is_scalar else result

    def read_whole(self, meta: ArrayMeta, records: Mapping[str, ChunkRecord | None]) -> np.ndarray[Any, Any]:
        """The whole array from all its chunk records (see :meth:`ChunkIndex.with_records_where`; None: unwritten)."""
        out = np.empty(meta.shape, dtype=meta.dtype)
        if len(records) == 1 and meta.chunks == meta.shape and out.size:  # the common case: one chunk, all of it
            record = records.get(g.origin_key(len(meta.shape)))  # the only coordinates inside a 1-chunk grid
            if record is not None:  # decoded straight into the result: no selection to work out
                try:
                    self.chunks.decode(record, meta.codec, out.nbytes, out=out.reshape(-1).view(np.uint8))
                except CorruptionError as exc:
                    raise _named(exc, meta, (0,) * len(meta.shape)) from None
                return out
        grid = meta.grid
        for key in records:
            g.parse_coord_key(key, grid)  # refuse coordinates outside the grid
        sel = Selection(Ellipsis, meta.shape, meta.chunks)
        self.gather(meta, sel.projections(), out, records_lookup(records),
                    parallel=self.worth_parallel(meta, sel.nchunks()))
        return out

    @staticmethod
    def worth_parallel(meta: ArrayMeta, nchunks: int) -> bool:
        return nchunks > 2 and meta.chunk_nbytes >= _PARALLEL_CHUNK_BYTES

    def gather(self, meta: ArrayMeta, projections: Iterable[ChunkProjection], out: np.ndarray[Any, Any],
               lookup: Lookup, parallel: bool) -> None:
        """Copy the selected part of every projected chunk into ``out``.

        This thread looks records up; with ``parallel``, the pool reads,
        verifies and decodes them meanwhile (at most two chunks per worker in
        flight, so memory stays bounded).
        """
        local = threading.local()
        counters = self.chunks.counters

        def place(stored: bytes, p: ChunkProjection) -> bool:
            with naming_chunk(meta, p.coords):
                target = _direct_target(meta, p, out)
                if target is not None:
                    meta.codec.decode(stored, meta.chunk_nbytes, out=target)
                    return False
                part, chunk_sel, partly = _decode_part(meta, stored, p, local)
            orthogonal_set(out, p.out_sel, orthogonal_get(part, chunk_sel))
            return partly

        def done(partly: bool) -> None:
            counters.chunks_decoded += 1
            counters.chunks_partly_decoded += partly

        pool = thread_pool() if parallel else None
        inflight: collections.deque[Future[bool]] = collections.deque()
        remaining = iter(projections)
        try:
            while batch := list(itertools.islice(remaining, RECORDS_PER_QUERY)):
                keys = [g.coord_key(p.coords) for p in batch]
                records = lookup(keys)
                for key, p in zip(keys, batch):
                    record = records.get(key)
                    if record is None:  # never written: reads as the fill value
                        fill = np.broadcast_to(meta.fill_value(), meta.chunks)
                        orthogonal_set(out, p.out_sel, orthogonal_get(fill, p.chunk_sel))
                        continue
                    with naming_chunk(meta, p.coords):
                        stored = self.chunks.stored_for(record, meta.chunk_nbytes)
                    if pool is None:
                        done(place(stored, p))
                    else:
                        inflight.append(pool.submit(place, stored, p))
                        if len(inflight) > 2 * THREADS:
                            done(inflight.popleft().result())
            while inflight:
                done(inflight.popleft().result())
        finally:  # after an error, no worker may write into ``out`` once we have returned
            if inflight:
                from concurrent.futures import wait  # loaded with the pool that ran them

                for future in inflight:
                    future.cancel()
                wait(inflight)

    # -- writing -------------------------------------------------------------------

    def write(self, meta: ArrayMeta, key: object, value: object) -> None:
        """``array[key] = value``: rewrites only the chunks the selection touches, a batch at a time.

        Inside a write transaction (the index is read without a version check).
        """
        sel = Selection(key, meta.shape, meta.chunks)
        source = _source(value, meta, sel)
        writer = ChunkWriter(self, replacing=True)
        for batch in _batched(sel.projections(), _chunks_per_batch(meta)):
            stack = self._current_chunks(meta, meta, [p.coords for p in batch], [not p.complete for p in batch])
            for i, p in enumerate(batch):
                chunk = stack[i, ...]  # a view, 0-d included
                orthogonal_set(chunk, p.chunk_sel, orthogonal_get(source, p.out_sel))
                writer.add(meta, p.coords, chunk)
        writer.flush()

    def start_write_whole(self, pairs: Iterable[tuple[ArrayMeta, np.ndarray[Any, Any]]]) -> Callable[[], None]:
        """Fill new, empty arrays with whole values, in two steps: the last batch's compression
        starts now, and calling the result stores it (see :meth:`ChunkWriter.start_flush`).

        Chunks of many arrays share batches (a source larger than memory, a
        memmap, is streamed a batch at a time).
        """
        writer = ChunkWriter(self, replacing=False)
        for meta, data in pairs:
            if meta.chunks == meta.shape:  # one chunk: the whole value
                writer.add(meta, (0,) * data.ndim, data)
                continue
            for coords in g.iter_grid(meta.grid):
                block = data[chunk_region(coords, meta.shape, meta.chunks) + (Ellipsis,)]  # an array even when 0-d
                if block.shape != meta.chunks:
                    chunk = meta.fill_chunk()
                    chunk[tuple(slice(0, b) for b in block.shape)] = block
                    block = chunk
                writer.add(meta, coords, block)
        return writer.start_flush()

    def clear_outside(self, meta: ArrayMeta, shape: tuple[int, ...], coords: list[tuple[int, ...]]) -> None:
        """Reset what lies outside ``shape`` in these (edge) chunks to the fill value, a batch at a time."""
        new = meta.reshaped(shape)
        writer = ChunkWriter(self, replacing=True)
        for batch in _batched(coords, _chunks_per_batch(meta)):
            stack = self._current_chunks(meta, new, batch, [True] * len(batch))
            for i, c in enumerate(batch):
                writer.add(new, c, stack[i, ...])
        writer.flush()

    def _current_chunks(self, meta: ArrayMeta, bounds: ArrayMeta, coords: list[tuple[int, ...]],
                        read: list[bool]) -> np.ndarray[Any, Any]:
        """A stack of full chunks: where ``read``, the stored content inside ``bounds.shape``.

        The padding of edge chunks holds the fill value; the rest of a chunk
        not read is left for the caller to overwrite whole.
        """
        stack = np.empty((len(coords), *meta.chunks), dtype=meta.dtype)
        wanted = []
        for i, (c, r) in enumerate(zip(coords, read)):
            valid = chunk_valid_sel(c, bounds.shape, meta.chunks)
            edge = any(s.stop != n for s, n in zip(valid, meta.chunks))
            if edge:
                stack[i] = meta.fill_value()
            if r:
                wanted.append(ChunkProjection(c, valid, (slice(i, i + 1), *valid), True))
        if wanted:
            self.gather(meta, wanted, stack, self.index_lookup(meta), parallel=self.worth_parallel(meta, len(wanted)))
        return stack

    def index_lookup(self, meta: ArrayMeta) -> Lookup:
        """A :data:`Lookup` querying the chunk index (inside a snapshot or transaction)."""
        return lambda keys: self.index.records(meta, keys)


class ChunkWriter:
    """Collects new chunk contents and stores them a batch at a time.

    A batch is compressed by the pool while the caller builds the next one;
    it is stored (pack bytes appended, one statement per table) when the
    next batch is sent, or at :meth:`flush`, which every writer ends with.
    ``replacing``: the chunks may have index rows already (a chunk now equal
    to the fill value everywhere must then lose its row). Each chunk of an
    array is added at most once per writer.
    """

    def __init__(self, io: ArrayIO, replacing: bool) -> None:
        self.io = io
        self.replacing = replacing
        self._batch: list[tuple[ArrayMeta, str, np.ndarray[Any, Any]]] = []
        self._fills: list[tuple[int, str]] = []
        self._pending = 0
        self._storing: Callable[[], None] | None = None

    def add(self, meta: ArrayMeta, coords: tuple[int, ...], chunk: np.ndarray[Any, Any]) -> None:
        """A full chunk's new content (the writer may keep a reference to it until the next flush)."""
        raw = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)
        key = g.coord_key(coords)
        if is_fill(raw, meta):
            if self.replacing:
                self._fills.append((meta.array_id, key))
            return
        self._batch.append((meta, key, raw))
        self._pending += raw.nbytes
        if self._pending >= _WRITE_BATCH_BYTES:
            self._send()

    def flush(self) -> None:
        """Store everything added so far."""
        self.start_flush()()

    def start_flush(self) -> Callable[[], None]:
        """:meth:`flush` in two steps: the last batch's compression starts on the pool now, and
        calling the result stores it. In between, the caller may run other statements, but
        store no chunks and change none of the values added."""
        self._send()
        return self._finish

    def _send(self) -> None:
        """Finish storing the batch sent before, then start on this one (hashes and compression on the pool)."""
        self._finish()
        batch, fills = self._batch, self._fills
        self._batch, self._fills, self._pending = [], [], 0
        if fills:
            self.io.index.drop(fills)
        if batch:
            store = self.io.chunks.start_put_many([(raw, meta.codec, meta.itemsize) for meta, _, raw in batch])

            def point() -> None:
                ids = store()
                self.io.index.point((meta.array_id, key, chunk_id) for (meta, key, _), chunk_id in zip(batch, ids))
            self._storing = point

    def _finish(self) -> None:
        storing, self._storing = self._storing, None
        if storing is not None:
            storing()


def records_lookup(records: Mapping[str, ChunkRecord | None]) -> Lookup:
    """A :data:`Lookup` answering from records read already."""
    return lambda keys: records


@contextlib.contextmanager
def naming_chunk(meta: ArrayMeta, coords: tuple[int, ...]) -> Iterator[None]:
    """Name the array and chunk in a CorruptionError raised inside the block."""
    try:
        yield
    except CorruptionError as exc:
        raise _named(exc, meta, coords) from None


def _named(exc: CorruptionError, meta: ArrayMeta, coords: tuple[int, ...]) -> CorruptionError:
    return CorruptionError(f"array {meta.array_id}, chunk {g.coord_key(coords) or '()'}: {exc}")


def _source(value: object, meta: ArrayMeta, sel: Selection) -> np.ndarray[Any, Any]:
    """``value`` as an array shaped like the selection (``sel.out_shape``), in the array's dtype."""
    source = np.asarray(value)
    if source.dtype.hasobject:
        raise TypeError("cannot write Python objects into an array")
    try:
        source = np.broadcast_to(source.astype(meta.dtype, copy=False), sel.final_shape)
    except ValueError:
        raise ValueError(
            f"could not broadcast a value of shape {source.shape} into a selection of shape {sel.final_shape}"
        ) from None
    return source.reshape(sel.out_shape)


def _chunks_per_batch(meta: ArrayMeta) -> int:
    return max(1, _WRITE_BATCH_BYTES // max(meta.chunk_nbytes, 1))


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def _direct_target(meta: ArrayMeta, p: ChunkProjection, out: np.ndarray[Any, Any]) -> Any:
    """The bytes of ``out`` a whole chunk can be decoded into in place, or None.

    That is when the projection takes the whole chunk (no padding, no index
    arrays, no steps) and its place in ``out`` is contiguous.
    """
    if not p.complete or not all(type(s) is slice and s.step is None for s in p.chunk_sel):
        return None
    if not all(type(s) is slice and s.step is None for s in p.out_sel):
        return None
    if any(s.stop - s.start != n for s, n in zip(p.chunk_sel, meta.chunks)):  # type: ignore[union-attr]
        return None
    target = out[(*p.out_sel, Ellipsis)]  # a view, 0-d included
    if not target.flags.c_contiguous or target.nbytes != meta.chunk_nbytes:
        return None
    return target.reshape(-1).view(np.uint8)


def _decode_part(meta: ArrayMeta, stored: bytes, p: ChunkProjection, local: threading.local
                 ) -> tuple[np.ndarray[Any, Any], tuple[Any, ...], bool]:
    """(the rows of a chunk that ``p`` touches, ``p.chunk_sel`` rebased onto them, partly decoded?).

    Only the Blosc2 blocks holding those rows are decompressed; a selection
    spanning the whole first axis decodes the chunk into a buffer of this thread.
    """
    n = meta.chunks[0] if meta.chunks else 1
    lo, hi = leading_rows(p.chunk_sel, n) if meta.chunks else (0, 1)
    if hi - lo < n:
        row_bytes = meta.chunk_nbytes // n
        offset, data = meta.codec.decode_span(stored, meta.chunk_nbytes, lo * row_bytes, hi * row_bytes)
        if len(data) < meta.chunk_nbytes:
            rows = np.frombuffer(data, dtype=meta.dtype, count=(hi - lo) * (row_bytes // meta.itemsize),
                                 offset=lo * row_bytes - offset)
            return rows.reshape((hi - lo, *meta.chunks[1:])), rebase_leading(p.chunk_sel, n, lo), True
        return np.frombuffer(data, dtype=meta.dtype).reshape(meta.chunks), p.chunk_sel, False
    buffer = getattr(local, "buffer", None)
    if buffer is None or buffer.shape != meta.chunks or buffer.dtype != meta.dtype:
        buffer = local.buffer = np.empty(meta.chunks, dtype=meta.dtype)
    meta.codec.decode(stored, meta.chunk_nbytes, out=buffer.reshape(-1).view(np.uint8))
    return buffer, p.chunk_sel, False
