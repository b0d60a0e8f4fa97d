"""Read-only SQL for ``db.sql()``: one statement, checked before it runs and authorised while it steps.

The statement is inspected first (``apsw.ext.query_info``): more than one
statement, or one that is not read-only, is refused. While it is prepared or
stepped, an authoriser allows reads only, so that nothing the query runs
(a view, a pragma) can write. Errors name the database file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import apsw

from ..errors import ReadOnlyError, TensorDBError
from .connection import SQLITE_ERRORS, Connection, sqlite_error

__all__ = ["ReadOnlyQuery"]

_ALLOWED_ACTIONS = {apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_FUNCTION, apsw.SQLITE_RECURSIVE}
# Pragmas whose argument names what to describe (never a value to set).
_DESCRIBE_PRAGMAS = {
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list", "table_list",
}
# Pragmas that only read when called without an argument.
_READ_PRAGMAS = {
    "user_version", "application_id", "page_count", "page_size", "freelist_count", "compile_options",
    "function_list", "pragma_list", "collation_list", "data_version", "module_list", "database_list",
}
# Rows are fetched in batches, each under the authoriser.
_BATCH = 1024


def _deny_writes(action: int, p1: str | None, p2: str | None, dbname: str | None, trigger: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_PRAGMA:
        name = (p1 or "").lower()
        if name in _DESCRIBE_PRAGMAS or (p2 is None and name in _READ_PRAGMAS):
            return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _has_statement(conn: apsw.Connection, sql: str) -> bool:
    """Whether ``sql`` holds anything but blanks, semicolons and comments."""
    import apsw.ext  # 30-60 ms to import: only db.sql() needs it

    while sql:
        details = apsw.ext.query_info(conn, sql)
        if details.has_vdbe:
            return True
        sql = details.query_remaining or ""
    return False


class ReadOnlyQuery:
    """The rows of one read-only statement, streamed; ``columns`` names them."""

    def __init__(self, conn: Connection, query: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> None:
        conn.ensure_usable()
        self._conn = conn.conn
        self._filename = conn.filename
        with self._read_only():
            import apsw.ext  # 30-60 ms to import: only db.sql() needs it

            details = apsw.ext.query_info(self._conn, query, params or None)
            if details.query_remaining and _has_statement(self._conn, details.query_remaining):
                raise TensorDBError(f"{self._filename}: db.sql() runs one statement at a time")
            if not details.is_readonly:
                raise ReadOnlyError(f"{self._filename}: db.sql() runs read-only queries only")
            self._cursor = self._conn.cursor()
            self._rows = self._cursor.execute(query, params)
            self.columns = self._columns()

    def _columns(self) -> tuple[str, ...]:
        try:
            return tuple(d[0] for d in self._cursor.get_description())
        except apsw.ExecutionCompleteError:
            return ()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        # The authoriser is consulted when a statement is prepared, which can
        # happen while stepping: guard each batch, not each row.
        while True:
            with self._read_only():
                batch = list(itertools.islice(self._rows, _BATCH))
            yield from batch
            if len(batch) < _BATCH:
                return

    def _read_only(self) -> _ReadOnly:
        return _ReadOnly(self._conn, self._filename)


class _ReadOnly:
    """Authorise only reads inside the block; map SQLite's errors to tensordb's."""

    def __init__(self, conn: apsw.Connection, filename: str) -> None:
        self.conn = conn
        self.filename = filename

    def __enter__(self) -> None:
        self.saved = self.conn.authorizer
        self.conn.authorizer = _deny_writes

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.conn.authorizer = self.saved
        if isinstance(exc, apsw.AuthError):
            raise ReadOnlyError(f"{self.filename}: db.sql() runs read-only queries only ({exc})") from None
        if isinstance(exc, apsw.SQLError):
            raise TensorDBError(f"{self.filename}: SQL error: {exc}") from None
        if isinstance(exc, SQLITE_ERRORS):
            raise sqlite_error(self.filename, exc) from None
