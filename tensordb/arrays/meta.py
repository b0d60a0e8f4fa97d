"""The array record: dtype, shape, chunk shape, codec and fill value (a row of the ``array`` table).

:class:`ArrayMeta` is the validated, immutable form of a record;
:class:`ArrayRecords` creates, reads, clones and reshapes records. Every field
read from a file is untrusted and checked before use.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..codec import DEFAULT_CODEC, Codec
from ..errors import CorruptionError, StaleHandleError
from ..storage.connection import Connection
from . import grid as g
from .dtypes import check_storable_dtype, dtype_from_text, dtype_to_text
from .indexing import grid_shape

__all__ = ["ArrayMeta", "ArrayRecords", "ArraySpec", "META_COLUMNS", "meta_from_row", "is_fill"]

#: ``(shape, dtype, chunks, codec, fill_value)`` of an array to create (None: the defaults).
ArraySpec = tuple[tuple[int, ...], np.dtype[Any], tuple[int, ...] | None, Codec | None, object]

#: The columns of an array record, in the order :func:`meta_from_row` reads them.
META_COLUMNS = "array_id, dtype, shape, chunks, codec, fill_value, size, nbytes"


class ArrayMeta(NamedTuple):
    """The metadata of one stored array (a row of the ``array`` table).

    A named tuple rather than a frozen dataclass: a whole-tree read builds one
    per array, and a tuple is built in a third of the time.
    """

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

    def reshaped(self, shape: tuple[int, ...]) -> ArrayMeta:
        return ArrayMeta(self.array_id, self.dtype, shape, self.chunks, self.codec, self.fill)


class ArrayRecords:
    """Rows of the ``array`` table: create, read, clone, reshape."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def create_many(self, specs: Sequence[ArraySpec]) -> list[ArrayMeta]:
        """Insert empty array records (every chunk reads as the fill value), in one statement."""
        next_id = int(self.conn.scalar(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'array'), 0), "
            "coalesce((SELECT max(array_id) FROM array), 0)) + 1"
        ))
        metas = [_new_meta(next_id + i, *spec) for i, spec in enumerate(specs)]
        self.conn.insert_rows(
            "INSERT INTO array(array_id, dtype, shape, chunks, codec, fill_value, size, nbytes)",
            [(m.array_id, *_record_text(m.dtype, m.shape, m.chunks, m.codec), m.fill, m.size, m.nbytes)
             for m in metas],
        )
        return metas

    def get(self, array_id: int) -> ArrayMeta:
        """Read and validate an array record."""
        row = self.conn.one(f"SELECT {META_COLUMNS} FROM array WHERE array_id = ?", (array_id,))
        if row is None:
            raise StaleHandleError(f"array {array_id} no longer exists (deleted and garbage-collected)")
        return meta_from_row(row)

    def must_copy_before_write(self, array_id: int) -> bool:
        """Whether a write must go to a copy: another node holds the array, or a snapshot may see it.

        Arrays created before the latest snapshot are never written in place
        again (format version 2): that keeps every snapshot's arrays as they
        were without any history of chunk indexes.
        """
        value = self.conn.scalar(
            "SELECT refcount > 1 OR array_id <= coalesce("
            "(SELECT array_mark FROM snapshot ORDER BY snapshot_id DESC LIMIT 1), 0) "
            "FROM array WHERE array_id = ?", (array_id,))
        if value is None:
            raise StaleHandleError(f"array {array_id} no longer exists")
        return bool(value)

    def clone(self, meta: ArrayMeta) -> ArrayMeta:
        """A new array record sharing every chunk of ``meta`` (copy-on-write)."""
        (new_id,), = self.conn.execute(
            "INSERT INTO array(dtype, shape, chunks, codec, fill_value, size, nbytes) "
            "SELECT dtype, shape, chunks, codec, fill_value, size, nbytes FROM array WHERE array_id = ? "
            "RETURNING array_id",
            (meta.array_id,),
        ).fetchall()
        self.conn.execute(
            "INSERT INTO chunk_ref(array_id, coord, chunk_id) "
            "SELECT ?, coord, chunk_id FROM chunk_ref WHERE array_id = ?",
            (new_id, meta.array_id),
        )
        return ArrayMeta(int(new_id), meta.dtype, meta.shape, meta.chunks, meta.codec, meta.fill)

    def set_shape(self, meta: ArrayMeta, shape: tuple[int, ...]) -> ArrayMeta:
        size = math.prod(shape)
        self.conn.execute(
            "UPDATE array SET shape = ?, size = ?, nbytes = ? WHERE array_id = ?",
            (json.dumps(shape), size, size * meta.itemsize, meta.array_id),
        )
        return meta.reshaped(shape)

    def stored_nbytes(self, array_id: int) -> int:
        return int(
            self.conn.scalar(
                "SELECT coalesce(sum(c.size), 0) FROM chunk_ref r JOIN chunk c ON c.chunk_id = r.chunk_id "
                "WHERE r.array_id = ?",
                (array_id,),
            )
        )


def _new_meta(array_id: int, shape: tuple[int, ...], dtype: np.dtype[Any], chunks: tuple[int, ...] | None,
              codec: Codec | None, fill_value: object) -> ArrayMeta:
    codec = codec or DEFAULT_CODEC
    if not isinstance(codec, Codec):
        raise TypeError(f"codec must be a tensordb.Codec, got {type(codec).__name__}")
    try:
        shape, chunks = _layout(dtype, shape, chunks)
    except TypeError:  # unhashable: a list given as shape or chunks
        shape, chunks = _layout.__wrapped__(dtype, shape, chunks)
    return ArrayMeta(array_id, dtype, shape, chunks, codec, _fill_bytes(dtype, fill_value))


@functools.lru_cache(maxsize=4096)
def _layout(dtype: np.dtype[Any], shape: Sequence[int], chunks: Sequence[int] | None
            ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The validated shape and chunk shape of a new array (cached: a bulk write repeats a few layouts)."""
    check_storable_dtype(dtype)
    dims = g.check_shape(shape, dtype.itemsize)
    return dims, g.auto_chunks(dims, dtype.itemsize) if chunks is None else g.check_chunks(chunks, dims, dtype.itemsize)


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


def meta_from_row(row: tuple[Any, ...]) -> ArrayMeta:
    """An :class:`ArrayMeta` from the columns ``META_COLUMNS``, every field validated."""
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


@functools.lru_cache(maxsize=4096)
def _record_text(dtype: np.dtype[Any], shape: tuple[int, ...], chunks: tuple[int, ...], codec: Codec
                 ) -> tuple[str, str, str, str]:
    """The text columns of an array record (cached: many arrays share dtype, shape and codec)."""
    return dtype_to_text(dtype), json.dumps(shape), json.dumps(chunks), codec.to_json()


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


def is_fill(raw: np.ndarray[Any, Any], meta: ArrayMeta) -> bool:
    """Whether a chunk's raw bytes hold nothing but the fill value (such chunks are not stored)."""
    if raw.size and raw[0] != meta.fill[0]:  # most data chunks: decided by their first byte
        return False
    if not any(meta.fill):
        return not raw.any()
    pattern = np.frombuffer(meta.fill, dtype=np.uint8)
    return bool((raw.reshape(-1, len(pattern)) == pattern).all())
