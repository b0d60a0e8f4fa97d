"""Errors raised by tensordb.

The hierarchy::

    TensorDBError                         base of every tensordb-specific error
    ├── ReadOnlyError                     a write on a read-only database or through db.sql()
    ├── CorruptionError                   bad checksum, missing pack bytes, malformed rows
    ├── FormatError                       not a tensordb file, or a newer format version
    ├── ClosedError                       the database (or handle) is closed
    ├── StaleHandleError                  a handle whose node/array no longer exists
    ├── StorageError (also OSError)       writing or syncing the database's files failed (I/O error, disk full)
    ├── PathNotFoundError (also KeyError) a missing tree or path
    └── TreeExistsError (also FileExistsError) a tree that would be replaced without being asked to

Builtin errors are used where they fit: ``KeyError`` (through
``PathNotFoundError``) for a missing tree or path, ``TypeError`` for values
tensordb cannot store, ``IndexError`` for out-of-range indexing,
``ValueError`` for bad arguments.

Low layers raise bare messages; :func:`context` adds the file, tree and path
at the boundary so that every message reads
``"runs.tdb: sample037: /data/points: what is wrong"``. SQLite's own
exceptions never get this far: the storage layer's connection turns each one
into one of the errors above, naming the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "TensorDBError",
    "ReadOnlyError",
    "CorruptionError",
    "FormatError",
    "ClosedError",
    "StaleHandleError",
    "StorageError",
    "PathNotFoundError",
    "TreeExistsError",
    "context",
]


class TensorDBError(Exception):
    """Base class of every tensordb-specific error."""


class ReadOnlyError(TensorDBError):
    """A write was attempted on a read-only database or through ``db.sql()``."""


class CorruptionError(TensorDBError):
    """Stored data is damaged: bad checksum, missing pack bytes, malformed rows."""


class FormatError(TensorDBError):
    """The file is not a tensordb database, or was written by a newer format version."""


class ClosedError(TensorDBError):
    """The database has been closed."""


class StaleHandleError(TensorDBError):
    """A handle refers to a node or array that no longer exists (or was replaced)."""


class StorageError(TensorDBError, OSError):
    """Reading, writing or syncing the database's files failed (I/O error, disk full).

    The operation that raised it changed nothing, or (when the failure hit the
    commit itself) either everything or nothing: reopening the database shows
    which. ``errno`` is set when the operating system gave one.
    """


class PathNotFoundError(TensorDBError, KeyError):
    """A tree name or a path inside a tree does not exist."""

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else ""


class TreeExistsError(TensorDBError, FileExistsError):
    """An import, move or copy would replace an existing tree (or two sources would write one tree)."""


def _prefix(file: str | None, tree: str | None, path: str | None) -> str:
    parts = [p for p in (file, tree) if p]
    if path is not None and tree:
        parts.append(path if path else "(root)")
    return ": ".join(parts)


def with_context(
    exc: BaseException, file: str | None, tree: str | None = None, path: str | None = None
) -> BaseException:
    """Return ``exc`` re-created with ``file: tree: path:`` in front of its message.

    Errors that already carry a prefix are returned unchanged, so nested
    boundaries do not stack prefixes.
    """
    prefix = _prefix(file, tree, path)
    message = str(exc)
    if not prefix or getattr(exc, "_tensordb_context", False):
        return exc
    if file and message.startswith(file + ": "):  # a low layer named the file already
        message = message[len(file) + 2:]
    if isinstance(exc, (TensorDBError, KeyError, TypeError, IndexError, ValueError)):
        try:
            new: Any = type(exc)(f"{prefix}: {message}")
        except Exception:  # exotic constructor: keep the original
            return exc
        if isinstance(exc, StorageError):
            new.errno = exc.errno
        new._tensordb_context = True
        new.__cause__ = exc.__cause__
        new.__traceback__ = exc.__traceback__
        return new  # type: ignore[no-any-return]
    return exc


@contextlib.contextmanager
def context(
    file: str | None, tree: str | None = None, path: str | None = None,
    locate: Callable[[], tuple[str | None, str | None]] | None = None,
) -> Iterator[None]:
    """Add ``file: tree: path:`` to errors raised inside the block.

    ``locate`` returns ``(tree, path)`` when an error is actually raised, so
    that a successful operation never pays the queries that name its place.
    """
    try:
        yield
    except (TensorDBError, KeyError, TypeError, IndexError, ValueError) as exc:
        if locate is not None:
            try:
                tree, path = locate()
            except Exception:  # naming the place must never hide the error itself
                tree = path = None
        new = with_context(exc, file, tree, path)
        if new is exc:
            raise
        raise new from exc.__cause__
