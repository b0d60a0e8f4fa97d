"""The public, lazy :class:`Array` handle.

A handle names an array through its *owner* (the node holding it) and reads
only what a slice touches. What it read (the array record and chunk records)
is kept for the next slice while no commit has happened since (see
:mod:`tensordb.arrays.store`). Before a write, the owner makes sure the array
is not shared with any other node, cloning the chunk index if it is
(copy-on-write at chunk level: the clone shares every chunk record until a
chunk is rewritten).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, NoReturn, Protocol

import numpy as np

from ..codec import Codec
from ..errors import ReadOnlyError, StaleHandleError, context
from .chunk_index import CachedArray
from .grid import BLOCK_BYTES, iter_blocks
from .html import html_table, human_size
from .meta import ArrayMeta
from .store import ArrayRef, ArrayStore

__all__ = ["Array", "ArrayOwner", "ArrayStore"]


class ArrayOwner(Protocol):
    """What an :class:`Array` handle needs from the node that holds it."""

    def current_array(self) -> int:
        """The id of the array the node holds now (StaleHandleError if it holds none)."""

    def exclusive_array(self) -> int:
        """Make the owning node hold an array no other node shares; return its id."""

    def location(self) -> tuple[str | None, str | None]:
        """(tree name, JSON Pointer) of the owning node, for messages and reprs."""

    def array_ref(self) -> ArrayRef:
        """A SQL subquery yielding the id of the array the node holds now (no row if it holds none)."""


class ArrayHost(Protocol):
    """What an :class:`Array` handle needs from its database."""

    filename: str
    readonly: bool

    @property
    def arrays(self) -> ArrayStore: ...

    def transaction(self) -> Any: ...

    def _reopen_state(self) -> Any: ...


def reopen(db_state: Any) -> ArrayHost:
    """The read-only host a pickled handle reopens.

    ``db_state`` is what the host's ``_reopen_state()`` gave: the database
    layer's reopening function and its arguments. The function is pickled by
    reference, so unpickling imports the layer above without this one naming it.
    """
    reopener, args = db_state
    host: ArrayHost = reopener(args)
    return host


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

    __slots__ = ("_db", "_array_id", "_owner", "_cache", "__weakref__")

    def __init__(self, db: ArrayHost, array_id: int, owner: ArrayOwner | None = None) -> None:
        self._db = db
        self._array_id = array_id
        self._owner = owner
        self._cache: CachedArray | None = None

    # -- metadata ------------------------------------------------------------------

    def _current_id(self) -> int:
        if self._owner is not None:
            self._array_id = self._owner.current_array()
        return self._array_id

    def _ref(self) -> ArrayRef:
        return self._owner.array_ref() if self._owner is not None else ("SELECT ?", (self._array_id,))

    def _missing(self) -> NoReturn:
        """Raise the error for a handle whose array is gone (the owner's, if it holds no array now)."""
        raise StaleHandleError(f"array {self._current_id()} no longer exists (deleted and garbage-collected)")

    def _keep(self, cache: CachedArray | None) -> None:
        self._cache = cache
        if cache is not None:
            self._array_id = cache.meta.array_id

    def _meta(self) -> ArrayMeta:
        arrays = self._db.arrays
        with arrays.read_lock, self._context():
            meta, cache = arrays.meta_current(self._cache, self._ref(), self._missing)
            self._keep(cache)
            return meta

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
        import html  # deferred: notebooks only

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
        # the node's array, its metadata and its chunks from the same commit
        with arrays.read_lock, self._context():
            result, cache = arrays.read_current(self._cache, self._ref(), key, self._missing)
            self._keep(cache)
            return result

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

    def iter_blocks(self, max_bytes: int = BLOCK_BYTES) -> Iterator[tuple[slice, ...]]:
        """Boxes tiling the array in C order, each whole chunks of at most ``max_bytes`` (one chunk at least).

        Like h5py's ``Dataset.iter_chunks``: reading or writing box by box
        streams the array through chunk-aligned I/O in bounded memory.

        Example
        -------
        >>> for box in big.iter_blocks(64 * 2**20):
        ...     total += big[box].sum()
        """
        return iter_blocks(self.shape, self.chunks, self.dtype.itemsize, max_bytes)

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
        import secrets  # deferred with dask: 3 ms of start-up otherwise

        pinned = Array(self._db, array_id, _DetachedOwner(tree, path, array_id))
        # A fresh name per call: an array written in place keeps its id, so a
        # name derived from the id could let Dask reuse blocks computed before.
        return da.from_array(  # type: ignore[no-untyped-call]
            pinned,
            chunks=meta.chunks if chunks is None else chunks,
            name=f"tensordb-{array_id}-{secrets.token_hex(16)}",
            meta=np.empty((0,) * len(meta.shape), dtype=meta.dtype),
        )

    # -- writing -------------------------------------------------------------------

    def _writable_meta(self) -> ArrayMeta:
        if self._db.readonly:
            raise ReadOnlyError("database is open read-only")
        if self._owner is None:
            raise ReadOnlyError("this array handle is not attached to a tree and cannot be written")
        self._cache = None
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
        self._cache = None


class _DetachedOwner(NamedTuple):
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

    def array_ref(self) -> ArrayRef:
        return "SELECT ?", (self.array_id,)
