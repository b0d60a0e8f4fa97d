"""Arrays: metadata records, chunked reads and writes, copy-on-write, resize.

An array is a row of the ``array`` table (dtype, shape, chunk shape, codec,
fill value) plus a chunk index (``chunk_ref``: grid coordinate -> chunk
record). Chunks never written, or written with nothing but the fill value,
have no index row and read as the fill value.

:class:`ArrayStore` does the work on array ids; :class:`Array` is the public,
lazy handle. A handle that came from a tree has an *owner* (the node holding
it): before a write, the owner makes sure the array is not shared with any
other node, cloning the chunk index if it is (copy-on-write at chunk level:
the clone shares every chunk record until a chunk is rewritten).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import html
import importlib
import itertools
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..codec import DEFAULT_CODEC, Codec
from ..errors import CorruptionError, ReadOnlyError, StaleHandleError, context, guard_corruption
from ..storage.chunks import THREADS, thread_pool
from ..storage.store import Store
from . import grid as g
from .dtypes import check_storable_dtype, dtype_from_text, dtype_to_text
from .html import html_table, human_size
from .indexing import (
    ChunkProjection,
    Selection,
    chunk_region,
    chunk_valid_sel,
    grid_shape,
    leading_rows,
    orthogonal_get,
    orthogonal_set,
    rebase_leading,
)

__all__ = ["ArrayMeta", "ArrayStore", "Array", "ArrayOwner"]


# Whole-value writes hand chunks to the chunk store in batches of about this many raw bytes.
_WRITE_BATCH_BYTES = 16 * 1024 * 1024
# Reads of more than two chunks at least this big decode them on every core.
_PARALLEL_CHUNK_BYTES = 256 * 1024
# Chunk records are looked up this many at a time (at most 16 MiB of inline chunks).
_RECORDS_PER_QUERY = 256


@dataclass(frozen=True)
class ArrayMeta:
    """The metadata of one stored array (a row of the ``array`` table)."""

    array_id: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    codec: Codec
    fill: bytes  # one element's raw bytes

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.chunks) * self.itemsize

    @property
    def grid(self) -> tuple[int, ...]:
        return grid_shape(self.shape, self.chunks)

    def fill_value(self) -> np.ndarray[Any, Any]:
        return np.frombuffer(self.fill, dtype=self.dtype, count=1).reshape(())

    def fill_chunk(self) -> np.ndarray[Any, Any]:
        chunk = np.empty(self.chunks, dtype=self.dtype)
        chunk[...] = self.fill_value()
        return chunk


def _fill_bytes(dtype: np.dtype[Any], fill_value: object) -> bytes:
    if fill_value is None:
        return bytes(dtype.itemsize)
    value = np.asarray(fill_value)
    if value.dtype != dtype:
        try:
            value = value.astype(dtype, casting="same_kind" if value.dtype.kind != "V" else "unsafe")
        except TypeError:
            value = np.array(fill_value, dtype=dtype)
    if value.shape != ():
        raise ValueError(f"fill_value must be a scalar, got shape {value.shape}")
    return value.tobytes()


class ArrayStore:
    """Array records and their chunk index, on top of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        self.chunks = store.chunks
        # One apsw connection must not be used by two threads at once (Dask's
        # threaded scheduler reads blocks concurrently): reads take turns.
        self.read_lock = threading.RLock()

    # -- records -----------------------------------------------------------------

    def create(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        chunks: tuple[int, ...] | None = None,
        codec: Codec | None = None,
        fill_value: object = None,
    ) -> ArrayMeta:
        """Insert an empty array record (every chunk reads as ``fill_value``)."""
        return self.create_many([(shape, dtype, chunks, codec, fill_value)])[0]

    def create_many(self, specs: Sequence[tuple[tuple[int, ...], np.dtype[Any], tuple[int, ...] | None,
                                                Codec | None, object]]) -> list[ArrayMeta]:
        """:meth:`create` for many ``(shape, dtype, chunks, codec, fill_value)``, in one statement."""
        metas = []
        next_id = int(self.conn.scalar(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'array'), 0), "
            "coalesce((SELECT max(array_id) FROM array), 0)) + 1"
        ))
        for i, (shape, dtype, chunks, codec, fill_value) in enumerate(specs):
            check_storable_dtype(dtype)
            shape = g.check_shape(shape, dtype.itemsize)
            if chunks is None:
                chunks = g.auto_chunks(shape, dtype.itemsize)
            else:
                chunks = g.check_chunks(chunks, shape, dtype.itemsize)
            codec = codec or DEFAULT_CODEC
            if not isinstance(codec, Codec):
                raise TypeError(f"codec must be a tensordb.Codec, got {type(codec).__name__}")
            metas.append(ArrayMeta(next_id + i, dtype, shape, chunks, codec, _fill_bytes(dtype, fill_value)))
        self.conn.executemany(
            "INSERT INTO array(array_id, dtype, shape, chunks, codec, fill_value, size, nbytes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(m.array_id, dtype_to_text(m.dtype), json.dumps(m.shape), json.dumps(m.chunks), m.codec.to_json(),
              m.fill, m.size, m.nbytes) for m in metas],
        )
        return metas

    _META_COLUMNS = "array_id, dtype, shape, chunks, codec, fill_value, size, nbytes"

    def meta(self, array_id: int) -> ArrayMeta:
        """Read and validate an array record (its fields are untrusted input)."""
        row = self.conn.one(f"SELECT {self._META_COLUMNS} FROM array WHERE array_id = ?", (array_id,))
        if row is None:
            raise StaleHandleError(f"array {array_id} no longer exists (deleted and garbage-collected)")
        return _meta_from_row(row)

    def metas_where(self, array_ids_sql: str, params: tuple[Any, ...]) -> dict[int, ArrayMeta]:
        """The validated records of the arrays whose ids a SQL subquery selects, in one query."""
        rows = self.conn.execute(
            f"SELECT {self._META_COLUMNS} FROM array WHERE array_id IN ({array_ids_sql})", params
        ).fetchall()
        return {int(row[0]): _meta_from_row(row) for row in rows}

    def chunk_records_where(self, array_ids_sql: str, params: tuple[Any, ...]
                            ) -> dict[int, dict[str, tuple[Any, ...]]]:
        """{array id: {coord key: chunk record}} for the arrays a SQL subquery selects, in one query.

        Records are (chunk id, ChunkStore.DATA_COLUMNS): inline chunks come
        with their bytes, pack chunks with their location only.
        """
        records: dict[int, dict[str, tuple[Any, ...]]] = {}
        cursor = self.conn.execute(
            f"SELECT r.array_id, r.coord, r.chunk_id, {self.chunks.DATA_COLUMNS} FROM chunk_ref r "
            f"LEFT JOIN chunk c ON c.chunk_id = r.chunk_id WHERE r.array_id IN ({array_ids_sql})",
            params,
        )
        for array_id, coord, *record in cursor:
            records.setdefault(array_id, {})[coord] = tuple(record)
        return records

    def refcount(self, array_id: int) -> int:
        value = self.conn.scalar("SELECT refcount FROM array WHERE array_id = ?", (array_id,))
        if value is None:
            raise StaleHandleError(f"array {array_id} no longer exists")
        return int(value)

    def clone(self, meta: ArrayMeta) -> ArrayMeta:
        """A new array record sharing every chunk of ``meta`` (copy-on-write)."""
        self.conn.execute(
            "INSERT INTO array(dtype, shape, chunks, codec, fill_value, size, nbytes) "
            "SELECT dtype, shape, chunks, codec, fill_value, size, nbytes FROM array WHERE array_id = ?",
            (meta.array_id,),
        )
        new_id = int(self.conn.conn.last_insert_rowid())
        self.conn.execute(
            "INSERT INTO chunk_ref(array_id, coord, chunk_id) "
            "SELECT ?, coord, chunk_id FROM chunk_ref WHERE array_id = ?",
            (new_id, meta.array_id),
        )
        return ArrayMeta(new_id, meta.dtype, meta.shape, meta.chunks, meta.codec, meta.fill)

    def stored_nbytes(self, array_id: int) -> int:
        return int(
            self.conn.scalar(
                "SELECT coalesce(sum(c.size), 0) FROM chunk_ref r JOIN chunk c ON c.chunk_id = r.chunk_id "
                "WHERE r.array_id = ?",
                (array_id,),
            )
        )

    # -- chunks ------------------------------------------------------------------

    def _chunk_record(self, meta: ArrayMeta, coords: tuple[int, ...]) -> tuple[Any, ...] | None:
        """The chunk record at ``coords`` (chunk id, then ChunkStore.DATA_COLUMNS); None if never written."""
        return self._chunk_records(meta, [g.coord_key(coords)]).get(g.coord_key(coords))

    def _chunk_records(self, meta: ArrayMeta, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        """{coord key: chunk record} for the written chunks among ``keys``, in one query."""
        marks = ", ".join("?" * len(keys))
        cursor = self.conn.execute(
            f"SELECT r.coord, r.chunk_id, {self.chunks.DATA_COLUMNS} FROM chunk_ref r "
            f"LEFT JOIN chunk c ON c.chunk_id = r.chunk_id WHERE r.array_id = ? AND r.coord IN ({marks})",
            (meta.array_id, *keys),
        )
        return {coord: tuple(record) for coord, *record in cursor}

    def read_chunk(self, meta: ArrayMeta, coords: tuple[int, ...], out: np.ndarray[Any, Any] | None = None
                   ) -> np.ndarray[Any, Any]:
        """One full chunk as an array of shape ``meta.chunks`` (fill value if never written)."""
        record = self._chunk_record(meta, coords)
        if out is None:
            out = np.empty(meta.chunks, dtype=meta.dtype)
        if record is None:
            out[...] = meta.fill_value()
            return out
        with _naming_chunk(meta, coords):
            self.chunks.decode(record, meta.codec, meta.chunk_nbytes, out=out.reshape(-1).view(np.uint8))
        return out

    def write_chunk(self, meta: ArrayMeta, coords: tuple[int, ...], chunk: np.ndarray[Any, Any]) -> None:
        """Store one full chunk; a chunk equal to the fill value everywhere is simply dropped."""
        key = g.coord_key(coords)
        raw = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)
        if _is_fill(raw, meta):
            self.conn.execute("DELETE FROM chunk_ref WHERE array_id = ? AND coord = ?", (meta.array_id, key))
            return
        self._reference_chunks([(meta, key, raw)])

    def _reference_chunks(self, batch: list[tuple[ArrayMeta, str, np.ndarray[Any, Any]]]) -> None:
        """Store chunks ``(array, coord key, raw bytes)`` and point the arrays' chunk index at them."""
        if not batch:
            return
        ids = self.chunks.put_many([(raw, meta.codec, meta.itemsize) for meta, _, raw in batch])
        self.conn.executemany(
            "INSERT INTO chunk_ref(array_id, coord, chunk_id) VALUES (?, ?, ?) "
            "ON CONFLICT(array_id, coord) DO UPDATE SET chunk_id = excluded.chunk_id",
            [(meta.array_id, key, chunk_id) for (meta, key, _), chunk_id in zip(batch, ids)],
        )

    def chunk_coords(self, meta: ArrayMeta) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Every (coord key, coords) with a stored chunk."""
        grid = meta.grid
        rows = self.conn.execute("SELECT coord FROM chunk_ref WHERE array_id = ?", (meta.array_id,)).fetchall()
        for (key,) in rows:
            yield key, g.parse_coord_key(key, grid)

    # -- whole arrays ------------------------------------------------------------

    def write_arrays(self, pairs: Iterable[tuple[ArrayMeta, np.ndarray[Any, Any]]]) -> None:
        """Fill new, empty arrays with whole values, chunk by chunk.

        Chunks go to the chunk store in batches of about ``_WRITE_BATCH_BYTES``
        (a few statements and parallel compression per batch), so a source
        larger than memory (a memmap) is streamed.
        """
        batch: list[tuple[ArrayMeta, str, np.ndarray[Any, Any]]] = []
        pending = 0
        for meta, data in pairs:
            for coords in g.iter_grid(meta.grid):
                block = data[chunk_region(coords, meta.shape, meta.chunks) + (Ellipsis,)]  # an array even when 0-d
                if block.shape != meta.chunks:
                    chunk = meta.fill_chunk()
                    chunk[tuple(slice(0, b) for b in block.shape)] = block
                    block = chunk
                raw = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
                if _is_fill(raw, meta):  # a new array has no chunk to drop
                    continue
                batch.append((meta, g.coord_key(coords), raw))
                pending += raw.nbytes
                if pending >= _WRITE_BATCH_BYTES:
                    self._reference_chunks(batch)
                    batch, pending = [], 0
        self._reference_chunks(batch)

    def read(self, meta: ArrayMeta, key: object) -> Any:
        """``array[key]`` as numpy would return it (orthogonal indexing)."""
        sel = Selection(key, meta.shape, meta.chunks)
        out = np.empty(sel.out_shape, dtype=meta.dtype)
        nchunks = sel.nchunks()
        # one statement needs no snapshot to be consistent
        with self.store.snapshot() if nchunks > 1 else contextlib.nullcontext():
            self._gather(meta, sel.projections(), out,
                         parallel=nchunks > 2 and meta.chunk_nbytes >= _PARALLEL_CHUNK_BYTES)
        result = out.reshape(sel.final_shape)
        return result[()] if sel.is_scalar else result

    def _gather(self, meta: ArrayMeta, projections: Iterable[ChunkProjection], out: np.ndarray[Any, Any],
                parallel: bool) -> None:
        """Copy the selected part of every projected chunk into ``out``.

        This thread runs the queries and reads stored bytes; with ``parallel``,
        the pool decodes them meanwhile (at most two chunks per worker in
        flight, so memory stays bounded).
        """
        local = threading.local()
        counters = self.chunks.counters

        def place(stored: bytes, p: ChunkProjection) -> bool:
            part, chunk_sel, partly = self._decode_part(meta, stored, p, local)
            orthogonal_set(out, p.out_sel, orthogonal_get(part, chunk_sel))
            return partly

        def done(partly: bool) -> None:
            counters.chunks_decoded += 1
            counters.chunks_partly_decoded += partly

        pool = thread_pool() if parallel else None
        inflight: collections.deque[Future[bool]] = collections.deque()
        remaining = iter(projections)
        try:
            while batch := list(itertools.islice(remaining, _RECORDS_PER_QUERY)):
                records = self._chunk_records(meta, [g.coord_key(p.coords) for p in batch])
                for p in batch:
                    record = records.get(g.coord_key(p.coords))
                    if record is None:  # never written: reads as the fill value
                        fill = np.broadcast_to(meta.fill_value(), meta.chunks)
                        orthogonal_set(out, p.out_sel, orthogonal_get(fill, p.chunk_sel))
                        continue
                    with _naming_chunk(meta, p.coords):
                        stored = self.chunks.stored_for(record, meta.chunk_nbytes)
                    if pool is None:
                        done(place(stored, p))
                        continue
                    inflight.append(pool.submit(place, stored, p))
                    if len(inflight) > 2 * THREADS:
                        done(inflight.popleft().result())
            while inflight:
                done(inflight.popleft().result())
        finally:  # after an error, no worker may write into ``out`` once we have returned
            for future in inflight:
                future.cancel()
            futures.wait(inflight)

    def _decode_part(self, meta: ArrayMeta, stored: bytes, p: ChunkProjection, local: threading.local
                     ) -> tuple[np.ndarray[Any, Any], tuple[Any, ...], bool]:
        """(the rows of a chunk that ``p`` touches, ``p.chunk_sel`` rebased onto them, partly decoded?).

        Only the Blosc2 blocks holding those rows are decompressed; a selection
        spanning the whole first axis decodes the chunk into a buffer of this thread.
        """
        n = meta.chunks[0] if meta.chunks else 1
        lo, hi = leading_rows(p.chunk_sel, n) if meta.chunks else (0, 1)
        with _naming_chunk(meta, p.coords):
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

    def read_whole(self, meta: ArrayMeta, records: dict[str, tuple[Any, ...]]) -> np.ndarray[Any, Any]:
        """The whole array from its chunk records (see :meth:`chunk_records_where`).

        A chunk that lies whole inside the array and is contiguous in it (every
        axis but the first spans the array) is decompressed straight into the
        result; others go through one chunk buffer.
        """
        out = np.empty(meta.shape, dtype=meta.dtype)
        if out.size == 0:
            return out
        if meta.chunks == meta.shape and len(records) == 1:  # the common case: one chunk, the whole array
            coords = (0,) * len(meta.shape)
            record = records.get(g.coord_key(coords))
            if record is not None:
                with _naming_chunk(meta, coords):
                    self.chunks.decode(record, meta.codec, meta.chunk_nbytes, out=out.reshape(-1).view(np.uint8))
                return out
        grid = meta.grid
        for key in records:
            g.parse_coord_key(key, grid)  # refuse coordinates outside the grid
        slabs = meta.chunks[1:] == meta.shape[1:]
        buffer: np.ndarray[Any, Any] | None = None
        for coords in g.iter_grid(grid):
            region = chunk_region(coords, meta.shape, meta.chunks) + (Ellipsis,)  # a view even when 0-d
            record = records.get(g.coord_key(coords))
            if record is None:
                out[region] = meta.fill_value()
                continue
            target = out[region]
            direct = slabs and target.shape == meta.chunks
            if not direct and buffer is None:
                buffer = np.empty(meta.chunks, dtype=meta.dtype)
            into = target if direct else buffer
            assert into is not None
            with _naming_chunk(meta, coords):
                self.chunks.decode(record, meta.codec, meta.chunk_nbytes, out=into.reshape(-1).view(np.uint8))
            if not direct:
                target[...] = into[chunk_valid_sel(coords, meta.shape, meta.chunks)]
        return out

    def write(self, meta: ArrayMeta, key: object, value: object) -> None:
        """``array[key] = value``: rewrites only the chunks the selection touches."""
        sel = Selection(key, meta.shape, meta.chunks)
        source = np.asarray(value)
        if source.dtype.hasobject:
            raise TypeError("cannot write Python objects into an array")
        try:
            source = np.broadcast_to(source.astype(meta.dtype, copy=False), sel.final_shape)
        except ValueError:
            raise ValueError(
                f"could not broadcast a value of shape {source.shape} into a selection of shape {sel.final_shape}"
            ) from None
        source = source.reshape(sel.out_shape)
        buffer = np.empty(meta.chunks, dtype=meta.dtype)
        for p in sel.projections():
            if p.complete:
                chunk = buffer
                chunk[...] = meta.fill_value()
            else:
                chunk = self.read_chunk(meta, p.coords, out=buffer)
            orthogonal_set(chunk, p.chunk_sel, orthogonal_get(source, p.out_sel))
            self.write_chunk(meta, p.coords, chunk)

    def resize(self, meta: ArrayMeta, shape: tuple[int, ...]) -> ArrayMeta:
        """Change the shape; data inside both shapes is kept, new space reads as the fill value."""
        shape = g.check_shape(shape, meta.itemsize)
        if len(shape) != len(meta.shape):
            raise ValueError(f"resize cannot change the number of dimensions ({meta.shape} -> {shape})")
        new = ArrayMeta(meta.array_id, meta.dtype, shape, meta.chunks, meta.codec, meta.fill)
        new_grid = new.grid
        for key, coords in list(self.chunk_coords(meta)):
            if any(c >= n for c, n in zip(coords, new_grid)):
                self.conn.execute(
                    "DELETE FROM chunk_ref WHERE array_id = ? AND coord = ?", (meta.array_id, key)
                )
            elif any((c + 1) * n > s for c, n, s in zip(coords, meta.chunks, shape)):
                # An edge chunk that shrank: reset what now lies outside to the fill value.
                chunk = self.read_chunk(meta, coords)
                valid = chunk_valid_sel(coords, shape, meta.chunks)
                kept = chunk[valid].copy()
                chunk[...] = meta.fill_value()
                chunk[valid] = kept
                self.write_chunk(new, coords, chunk)
        size = math.prod(shape)
        self.conn.execute(
            "UPDATE array SET shape = ?, size = ?, nbytes = ? WHERE array_id = ?",
            (json.dumps(shape), size, size * meta.itemsize, meta.array_id),
        )
        return new


@contextlib.contextmanager
def _naming_chunk(meta: ArrayMeta, coords: tuple[int, ...]) -> Iterator[None]:
    """Name the array and chunk in a CorruptionError raised inside the block."""
    try:
        yield
    except CorruptionError as exc:
        raise CorruptionError(f"array {meta.array_id}, chunk {g.coord_key(coords) or '()'}: {exc}") from None


def _meta_from_row(row: tuple[Any, ...]) -> ArrayMeta:
    """An :class:`ArrayMeta` from the columns ``_META_COLUMNS``, every field validated."""
    array_id, *fields = row
    try:
        return ArrayMeta(array_id, *_parse_meta(*fields))
    except (CorruptionError, TypeError) as exc:  # TypeError: an unhashable (malformed) cell
        raise CorruptionError(f"array {array_id}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _parse_meta(dtype_text: Any, shape_text: Any, chunks_text: Any, codec_text: Any, fill: Any, size: Any,
                nbytes: Any) -> tuple[np.dtype[Any], tuple[int, ...], tuple[int, ...], Codec, bytes]:
    """The validated fields of an array record (cached: many arrays share dtype, shape and codec)."""
    dtype = dtype_from_text(dtype_text)
    shape = _json_dims(shape_text, "shape")
    chunks = _json_dims(chunks_text, "chunks")
    try:
        g.check_shape(shape, dtype.itemsize)
        g.check_chunks(chunks, shape, dtype.itemsize)
    except ValueError as exc:
        raise CorruptionError(str(exc)) from None
    if size != math.prod(shape) or nbytes != size * dtype.itemsize:
        raise CorruptionError(
            f"size {size!r} and nbytes {nbytes!r} disagree with shape {list(shape)} of {dtype.itemsize}-byte items"
        )
    codec = Codec.from_json(codec_text)
    if not isinstance(fill, bytes) or len(fill) != dtype.itemsize:
        raise CorruptionError("fill value does not match its dtype")
    return dtype, shape, chunks, codec, fill


def _json_dims(text: object, what: str) -> tuple[int, ...]:
    if not isinstance(text, str) or len(text) > _MAX_DIMS_TEXT:
        raise CorruptionError(f"malformed {what} {str(text)[:80]!r}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits, nesting
        raise CorruptionError(f"malformed {what} {text[:80]!r}") from None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CorruptionError(f"malformed {what} {text!r}")
    return tuple(value)


# 32 dimensions of 20 digits each, with separators, fit easily.
_MAX_DIMS_TEXT = 1024


def _is_fill(raw: np.ndarray[Any, Any], meta: ArrayMeta) -> bool:
    if not any(meta.fill):
        return not raw.any()
    pattern = np.frombuffer(meta.fill, dtype=np.uint8)
    return bool((raw.reshape(-1, len(pattern)) == pattern).all())


class ArrayOwner(Protocol):
    """What an :class:`Array` handle needs from the node that holds it."""

    def current_array(self) -> int:
        """The id of the array the node holds now (StaleHandleError if it holds none)."""

    def exclusive_array(self) -> int:
        """Make the owning node hold an array no other node shares; return its id."""

    def location(self) -> tuple[str | None, str | None]:
        """(tree name, JSON Pointer) of the owning node, for messages and reprs."""


class ArrayHost(Protocol):
    """What an :class:`Array` handle needs from its database."""

    filename: str
    readonly: bool

    @property
    def arrays(self) -> ArrayStore: ...

    def transaction(self) -> Any: ...

    def _reopen_state(self) -> Any: ...


#: Set by the database layer: turns a pickled database state into a read-only host.
reopen_host: Callable[[Any], ArrayHost] | None = None


def reopen(db_state: Any) -> ArrayHost:
    """The read-only host a pickled handle reopens (in a worker, the database layer may not be imported yet)."""
    if reopen_host is None:
        importlib.import_module("tensordb.database")  # its import sets reopen_host
    if reopen_host is None:
        raise RuntimeError("tensordb is not fully imported")
    return reopen_host(db_state)


@guard_corruption(lambda handle: handle._db.filename)
class Array:
    """A lazy handle on a stored array: metadata on demand, chunks read only when sliced.

    Obtain one from a tree (``tree["/data/points"]``) or from
    :meth:`tensordb.Tree.create_array`. Slicing reads only the chunks it
    touches; assignment rewrites only those chunks, copy-on-write if the
    array is shared with another tree.

    Example
    -------
    >>> pts = db["sample"]["/data/points"]
    >>> pts.shape, pts.dtype
    ((4778, 3), dtype('float32'))
    >>> pts[100:200, :2].shape
    (100, 2)
    """

    __slots__ = ("_db", "_array_id", "_owner", "__weakref__")

    def __init__(self, db: ArrayHost, array_id: int, owner: ArrayOwner | None = None) -> None:
        self._db = db
        self._array_id = array_id
        self._owner = owner

    # -- metadata ------------------------------------------------------------------

    def _current_id(self) -> int:
        if self._owner is not None:
            self._array_id = self._owner.current_array()
        return self._array_id

    def _meta(self) -> ArrayMeta:
        with self._context():
            return self._db.arrays.meta(self._current_id())

    def _context(self) -> Any:
        owner = self._owner
        return context(self._db.filename, locate=owner.location if owner else None)

    @property
    def array_id(self) -> int:
        """The id of the stored array this handle reads now (``arrays.array_id`` in SQL)."""
        with self._context():
            return self._current_id()

    @property
    def shape(self) -> tuple[int, ...]:
        return self._meta().shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._meta().dtype

    @property
    def ndim(self) -> int:
        return len(self._meta().shape)

    @property
    def size(self) -> int:
        return self._meta().size

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return self._meta().nbytes

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._meta().chunks

    @property
    def codec(self) -> Codec:
        return self._meta().codec

    @property
    def fill_value(self) -> Any:
        return self._meta().fill_value()[()]

    @property
    def stored_nbytes(self) -> int:
        """Compressed bytes of the chunks this array references (shared chunks included)."""
        with self._context():
            return self._db.arrays.stored_nbytes(self._current_id())

    @property
    def path(self) -> str | None:
        return self._owner.location()[1] if self._owner else None

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d array")
        return shape[0]

    def __repr__(self) -> str:
        try:
            facts = self._facts()
        except Exception:
            return f"<tensordb.Array {self._array_id} (unavailable)>"
        where = f'"{self.path}" ' if self.path is not None else ""
        return (f"<tensordb.Array {where}{facts['shape']} {facts['dtype']}, chunks {facts['chunks']}, "
                f"{facts['codec']}, stored {facts['stored']}>")

    def _repr_html_(self) -> str:
        try:
            facts = self._facts()
        except Exception:
            return f"<p>tensordb.Array {self._array_id} (unavailable)</p>"
        where = html.escape(self.path) if self.path is not None else ""
        return f"<p><b>tensordb.Array</b> {where}</p>" + html_table(list(facts.items()))

    def _facts(self) -> dict[str, str]:
        """What the reprs show: shape, dtype, chunks, codec, logical and stored size."""
        array_id = self._current_id()
        meta = self._db.arrays.meta(array_id)
        codec = meta.codec
        return {
            "shape": str(meta.shape), "dtype": str(meta.dtype), "chunks": str(meta.chunks),
            "codec": f"{codec.name} level {codec.level}, {codec.shuffle} shuffle",
            "size": human_size(meta.nbytes), "stored": human_size(self._db.arrays.stored_nbytes(array_id)),
        }

    # -- reading -------------------------------------------------------------------

    def __getitem__(self, key: object) -> Any:
        arrays = self._db.arrays
        # one snapshot: the node's array, its metadata and its chunks from the same commit
        with arrays.read_lock, self._context(), arrays.store.snapshot():
            return arrays.read(arrays.meta(self._current_id()), key)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        if copy is False:
            raise ValueError("a tensordb.Array cannot be viewed without a copy (copy=False)")
        data = np.asarray(self[...])
        return data if dtype is None else data.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def read(self) -> np.ndarray[Any, Any]:
        """The whole array as a numpy array."""
        return np.asarray(self[...])

    def to_dask(self, chunks: Any = None) -> Any:
        """This array as a lazy ``dask.array.Array``, one block per stored chunk (needs ``tensordb[dask]``).

        The Dask array reads the version of the array this handle holds now,
        even if the tree is changed later. Its tasks carry pickled read-only
        handles, so they run on threads, on processes or on a ``distributed``
        cluster alike.

        Parameters
        ----------
        chunks : optional
            Dask block shape (any form ``dask.array.from_array`` takes);
            defaults to the stored chunk shape. Multiples of it read best.

        Example
        -------
        >>> x = tree["/data/p"].to_dask()
        >>> float(x.mean().compute())
        0.25
        """
        try:
            import dask.array as da
        except ImportError:
            raise ImportError("Array.to_dask() needs dask: pip install 'tensordb[dask]'") from None
        with self._context():
            array_id = self._current_id()
            meta = self._db.arrays.meta(array_id)
        tree, path = self._owner.location() if self._owner else (None, None)
        pinned = Array(self._db, array_id, _DetachedOwner(tree, path, array_id))
        # A fresh name per call: an array written in place keeps its id, so a
        # name derived from the id could let Dask reuse blocks computed before.
        return da.from_array(  # type: ignore[no-untyped-call]
            pinned,
            chunks=meta.chunks if chunks is None else chunks,
            name=f"tensordb-{array_id}-{uuid.uuid4().hex}",
            meta=np.empty((0,) * len(meta.shape), dtype=meta.dtype),
        )

    # -- writing -------------------------------------------------------------------

    def _writable_meta(self) -> ArrayMeta:
        if self._db.readonly:
            raise ReadOnlyError("database is open read-only")
        if self._owner is None:
            raise ReadOnlyError("this array handle is not attached to a tree and cannot be written")
        self._array_id = self._owner.exclusive_array()
        return self._db.arrays.meta(self._array_id)

    def __setitem__(self, key: object, value: object) -> None:
        with self._context(), self._db.transaction():
            meta = self._writable_meta()
            self._db.arrays.write(meta, key, value)

    def resize(self, shape: tuple[int, ...] | int) -> None:
        """Change the shape in place; kept data is unchanged, new space reads as the fill value."""
        new_shape = (shape,) if isinstance(shape, int) else tuple(shape)
        with self._context(), self._db.transaction():
            self._db.arrays.resize(self._writable_meta(), new_shape)

    def append(self, values: object, axis: int = 0) -> None:
        """Grow along ``axis`` and write ``values`` into the new space."""
        data = np.asarray(values)
        with self._context(), self._db.transaction():
            meta = self._writable_meta()
            if not meta.shape:
                raise ValueError("cannot append to a 0-d array")
            axis = axis + len(meta.shape) if axis < 0 else axis
            if not 0 <= axis < len(meta.shape):
                raise ValueError(f"axis {axis} out of range for {len(meta.shape)} dimensions")
            if data.ndim != len(meta.shape):
                raise ValueError(f"appended values have {data.ndim} dimensions, the array has {len(meta.shape)}")
            old = meta.shape[axis]
            new_shape = list(meta.shape)
            new_shape[axis] += data.shape[axis]
            meta = self._db.arrays.resize(meta, tuple(new_shape))
            region = tuple(slice(old, None) if i == axis else slice(None) for i in range(len(new_shape)))
            self._db.arrays.write(meta, region, data)

    # -- pickling ------------------------------------------------------------------

    def __getstate__(self) -> tuple[Any, ...]:
        tree, path = self._owner.location() if self._owner else (None, None)
        return (self._db._reopen_state(), self._current_id(), tree, path)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        db_state, array_id, tree, path = state
        self._db = reopen(db_state)
        self._array_id = array_id
        self._owner = _DetachedOwner(tree, path, array_id)


@dataclass(frozen=True)
class _DetachedOwner:
    """The location of a handle that was pickled: good for messages, not for writes."""

    tree: str | None
    path: str | None
    array_id: int

    def current_array(self) -> int:
        return self.array_id

    def exclusive_array(self) -> int:
        raise ReadOnlyError("an unpickled array handle is read-only")

    def location(self) -> tuple[str | None, str | None]:
        return self.tree, self.path
