"""Read-only SQL for ``db.sql()``: one statement, checked before it runs and authorised while it steps.

The statement is prepared first, without running it: more than one
statement, or one that is not read-only, is refused. While it is prepared or
stepped, an authoriser allows reads only, so that nothing the query runs
(a view, a pragma) can write. Errors name the database file.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

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
# Statements that write, by their first keyword (after a WITH clause, the main one).
_WRITE_VERBS = {
    "INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "CREATE", "DROP", "ALTER", "ATTACH", "DETACH", "VACUUM",
    "REINDEX", "ANALYZE", "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE",
}
_VERBS_AFTER_WITH = {"SELECT", "VALUES", "INSERT", "UPDATE", "DELETE", "REPLACE"}
_SQL_TOKEN = re.compile(r"""--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?|"""
                        r"""[A-Za-z_][A-Za-z_0-9$]*|[()]|.""", re.S)


def _verb(query: str) -> str:
    """The statement's kind in upper case (its first keyword; after a WITH clause, the main one).

    Used only where SQLite cannot prepare the statement, to tell a refused
    write from a mistaken read.
    """
    depth = 0
    first = ""
    token: str
    for token in _SQL_TOKEN.findall(query):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0 and (token[0].isalpha() or token[0] == "_"):
            word = token.upper()
            if not first:
                first = word
                if word != "WITH":
                    return word
            elif word in _VERBS_AFTER_WITH:
                return word
    return first


def _deny_writes(action: int, p1: str | None, p2: str | None, dbname: str | None, trigger: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_PRAGMA:
        name = (p1 or "").lower()
        if name in _DESCRIBE_PRAGMAS or (p2 is None and name in _READ_PRAGMAS):
            return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


class _Prepared(NamedTuple):
    """What SQLite says of the first statement of a query, prepared but not run."""

    first: str
    remaining: str | None  # the text after the first statement
    is_readonly: bool
    has_vdbe: bool  # False for blanks, comments and semicolons alone
    description: tuple[tuple[str, str | None], ...]


def _prepare_first(conn: apsw.Connection, query: str, params: Any = None) -> _Prepared:
    """Prepare the first statement of ``query`` without running it.

    apsw calls a cursor's exec tracer once a statement is prepared and
    bound; returning False stops it before the first step. (That is how
    ``apsw.ext.query_info`` works; importing apsw.ext costs 30 ms.)
    """
    found: list[_Prepared] = []

    def tracer(cursor: apsw.Cursor, first: str, bindings: Any) -> bool:
        remaining = query[len(first):] if len(query) > len(first) else None
        found.append(_Prepared(first, remaining, cursor.is_readonly, cursor.has_vdbe, cursor.get_description()))
        return False

    cursor = conn.cursor()
    cursor.exec_trace = tracer
    try:
        cursor.execute(query, params, can_cache=False)
    except apsw.ExecTraceAbort:
        pass
    return found[0]


def _has_statement(conn: apsw.Connection, sql: str) -> bool:
    """Whether ``sql`` holds anything but blanks, semicolons and comments."""
    while sql:
        try:
            prepared = _prepare_first(conn, sql)
        except apsw.BindingsError:  # it has parameters: a statement
            return True
        if prepared.has_vdbe:
            return True
        sql = prepared.remaining or ""
    return False


class ReadOnlyQuery:
    """The rows of one read-only statement, streamed; ``columns`` names them."""

    def __init__(self, conn: Connection, query: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> None:
        conn.ensure_usable()
        self._conn = conn.conn
        self._filename = conn.filename
        with self._read_only(query):
            details = _prepare_first(self._conn, query, params or None)
            if details.remaining and _has_statement(self._conn, details.remaining):
                raise TensorDBError(f"{self._filename}: SQL runs one statement at a time")
            if not details.is_readonly:
                raise ReadOnlyError(f"{self._filename}: SQL runs read-only queries only ({_verb(query)} writes)")
            self._cursor = self._conn.cursor()
            self._rows = self._cursor.execute(query, params)
            self.columns = self._columns(details)

    def _columns(self, details: _Prepared) -> tuple[str, ...]:
        try:
            return tuple(d[0] for d in self._cursor.get_description())
        except apsw.ExecutionCompleteError:  # no rows: the prepared statement still names its columns
            return tuple(d[0] for d in details.description or ())

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        # The authoriser is consulted when a statement is prepared, which can
        # happen while stepping: guard each batch, not each row.
        while True:
            with self._read_only():
                batch = list(itertools.islice(self._rows, _BATCH))
            yield from batch
            if len(batch) < _BATCH:
                return

    def _read_only(self, query: str | None = None) -> _ReadOnly:
        return _ReadOnly(self._conn, self._filename, query)


class _ReadOnly:
    """Authorise only reads inside the block; map SQLite's errors to tensordb's."""

    def __init__(self, conn: apsw.Connection, filename: str, query: str | None = None) -> None:
        self.conn = conn
        self.filename = filename
        self.query = query  # given while the statement is prepared

    def __enter__(self) -> None:
        self.saved = self.conn.authorizer
        self.conn.authorizer = _deny_writes

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.conn.authorizer = self.saved
        if isinstance(exc, apsw.AuthError):
            raise ReadOnlyError(f"{self.filename}: SQL runs read-only queries only ({exc})") from None
        if isinstance(exc, apsw.ReadOnlyError):
            raise ReadOnlyError(f"{self.filename}: {exc}") from None
        if isinstance(exc, apsw.SQLError) and self.query is not None and _verb(self.query) in _WRITE_VERBS:
            # SQLite rejects some writes before the authoriser sees them ("cannot modify trees because
            # it is a view", "no such table"): a write is refused as a write whatever it targets.
            raise ReadOnlyError(f"{self.filename}: SQL runs read-only queries only "
                                f"({_verb(self.query)} writes; {exc})") from None
        if isinstance(exc, apsw.SQLError):
            raise TensorDBError(f"{self.filename}: SQL error: {exc}") from None
        if isinstance(exc, SQLITE_ERRORS):
            raise sqlite_error(self.filename, exc) from None
