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
``"runs.tdb: sample037: /data/points: what is wrong"``. The storage layer
registers the SQLite errors that mean a damaged file
(:func:`register_corruption_errors`); :func:`context` turns them into
:class:`CorruptionError`.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

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
    "register_corruption_errors",
    "guard_corruption",
    "corruption_as_error",
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


# Exception types of lower-level libraries that mean "the file is damaged"
# (SQLite's SQLITE_CORRUPT and SQLITE_NOTADB), registered by the storage layer.
_CORRUPTION_TYPES: tuple[type[BaseException], ...] = ()


def register_corruption_errors(*types: type[BaseException]) -> None:
    """Declare exception types that :func:`context` reports as :class:`CorruptionError`."""
    global _CORRUPTION_TYPES
    _CORRUPTION_TYPES = tuple(dict.fromkeys((*_CORRUPTION_TYPES, *types)))


@contextlib.contextmanager
def context(
    file: str | None, tree: str | None = None, path: str | None = None,
    locate: Callable[[], tuple[str | None, str | None]] | None = None,
) -> Iterator[None]:
    """Add ``file: tree: path:`` to errors raised inside the block.

    ``locate`` returns ``(tree, path)`` when an error is actually raised, so
    that a successful operation never pays the queries that name its place.
    Registered low-level corruption errors become :class:`CorruptionError`.
    """
    try:
        yield
    except Exception as exc:
        corrupt = isinstance(exc, _CORRUPTION_TYPES) and not isinstance(exc, TensorDBError)
        if not corrupt and not isinstance(exc, (TensorDBError, KeyError, TypeError, IndexError, ValueError)):
            raise
        if locate is not None:
            try:
                tree, path = locate()
            except Exception:  # naming the place must never hide the error itself
                tree = path = None
        if corrupt:
            prefix = _prefix(file, tree, path)
            damaged = CorruptionError(f"{prefix + ': ' if prefix else ''}the database file is damaged ({exc})")
            damaged._tensordb_context = True  # type: ignore[attr-defined]
            raise damaged from None
        new = with_context(exc, file, tree, path)
        if new is exc:
            raise
        raise new from exc.__cause__


# -- the last line of defence: public methods never leak a low-level corruption error -------

_C = TypeVar("_C", bound=type)
# Dunder methods that read the database (the others never do).
_GUARDED_DUNDERS = {"__getitem__", "__setitem__", "__delitem__", "__len__", "__iter__", "__contains__", "__array__"}


def _damaged(exc: BaseException, file: object) -> CorruptionError:
    prefix = f"{file}: " if isinstance(file, str) and file else ""
    damaged = CorruptionError(f"{prefix}the database file is damaged ({exc})")
    damaged._tensordb_context = True  # type: ignore[attr-defined]
    return damaged


def guard_corruption(file_of: Callable[[Any], object]) -> Callable[[_C], _C]:
    """Class decorator: public methods, properties and container dunders turn the registered
    low-level corruption errors (raised wherever SQLite reads a damaged page, not only
    inside a :func:`context` block) into :class:`CorruptionError` naming the file."""

    def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(self, *args, **kwargs)
            except Exception as exc:
                if isinstance(exc, _CORRUPTION_TYPES) and not isinstance(exc, TensorDBError):
                    raise _damaged(exc, _safe_file(file_of, self)) from None
                raise
            if isinstance(result, types.GeneratorType):
                return _guard_iteration(result, _safe_file(file_of, self))
            return result

        return guarded

    def decorate(cls: _C) -> _C:
        for name, attr in list(vars(cls).items()):
            if name.startswith("_") and name not in _GUARDED_DUNDERS:
                continue
            if isinstance(attr, property):
                setattr(cls, name, property(attr.fget and guard(attr.fget), attr.fset and guard(attr.fset),
                                            attr.fdel and guard(attr.fdel), attr.__doc__))
            elif isinstance(attr, types.FunctionType):
                setattr(cls, name, guard(attr))
        return cls

    return decorate


@contextlib.contextmanager
def corruption_as_error(file: str | None) -> Iterator[None]:
    """Turn registered low-level corruption errors into :class:`CorruptionError`; nothing else changes."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, _CORRUPTION_TYPES) and not isinstance(exc, TensorDBError):
            raise _damaged(exc, file) from None
        raise


def _safe_file(file_of: Callable[[Any], object], obj: Any) -> object:
    try:
        return file_of(obj)
    except Exception:
        return None


def _guard_iteration(gen: Iterator[Any], file: object) -> Iterator[Any]:
    try:
        yield from gen
    except Exception as exc:
        if isinstance(exc, _CORRUPTION_TYPES) and not isinstance(exc, TensorDBError):
            raise _damaged(exc, file) from None
        raise
