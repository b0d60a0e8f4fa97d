"""Pickled handles reopen their database read-only, once per process, or get a stand-in that says why not.

A Tree, Node or Array handle pickles as the path of its file (and the
snapshot of a view) plus its own ids; unpickling, in a worker of a
``multiprocessing`` pool say, calls :func:`reopen_readonly`.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .errors import StaleHandleError, TensorDBError

if TYPE_CHECKING:
    from .arrays.array import ArrayStore
    from .database import Database

__all__ = ["reopen_readonly"]

_REOPENED: dict[tuple[int, str, int | None], Database] = {}


def reopen_readonly(state: tuple[str] | tuple[str, int]) -> Database | Unreachable:
    """The read-only Database a pickled handle uses in this process (opened once).

    Unpickling must not raise: a ``multiprocessing`` pool whose worker fails
    to unpickle a task loses the task and waits forever. A database that
    cannot be opened here (moved, deleted, damaged) gives a stand-in that
    raises the reason when the handle is used.
    """
    at = state[1] if len(state) > 1 else None
    key = (os.getpid(), state[0], at)
    db = _REOPENED.get(key)
    if db is None or db.closed:
        from .database import Database  # which imports this module

        try:
            db = _REOPENED[key] = Database(state[0], mode="r", at=at)
        except (OSError, TensorDBError, KeyError) as exc:
            return Unreachable(state[0], str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    return db


class Unreachable:
    """The database of a pickled handle that could not be reopened: every use raises why."""

    readonly = True

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason

    def _fail(self) -> StaleHandleError:
        reason = self.reason if self.reason.startswith(self.filename) else f"{self.filename}: {self.reason}"
        error = StaleHandleError(
            f"{reason} (a pickled handle reopens its database by path: was the file moved or deleted?)"
        )
        error._tensordb_context = True  # type: ignore[attr-defined]  # names the file already
        return error

    @property
    def _trees(self) -> Any:  # Tree and Node handles reach their database through their tree service
        return self

    @property
    def host(self) -> Any:
        return self

    @property
    def arrays(self) -> ArrayStore:
        raise self._fail()

    def transaction(self) -> AbstractContextManager[None]:
        raise self._fail()

    def _reopen_state(self) -> tuple[Any, tuple[str]]:
        return reopen_readonly, (self.filename,)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # protocol probes (copy, pickle, hasattr) get the usual answer
            raise AttributeError(name)
        raise self._fail()
