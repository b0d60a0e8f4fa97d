"""The apsw connection: open flags per mode, connection policy, nestable transactions.

Policy is a handful of small named functions applied to our own connection
only. Writers start with ``BEGIN IMMEDIATE``: a DEFERRED transaction that
upgrades from read to write can fail with ``BUSY_SNAPSHOT``, which no busy
timeout retries. Nested transactions are savepoints.

The outermost commit is ordered: every row written, then the before-commit
hooks (fsync the pack files), then ``COMMIT``, then the after-commit hooks
(delete replaced files). After an I/O error SQLite may have rolled the whole
transaction back on its own; the connection then refuses further statements
until the outermost transaction block exits. A ``COMMIT`` that fails has an
unknown outcome on disk (the commit record may have reached the WAL): the
before-commit hooks have made the transaction's files durable already, and
nothing undoes them after that.

This module is the error boundary of SQLite: no apsw exception leaves it.
:func:`sqlite_error` maps each one, in one place: a failing disk (I/O error,
disk full) or a lock held past the busy timeout is a
:class:`~tensordb.StorageError`, a damaged file a
:class:`~tensordb.CorruptionError`, a write refused by a read-only file a
:class:`~tensordb.ReadOnlyError`, and anything else a
:class:`~tensordb.TensorDBError`; each names the file. Statements return a
:class:`Cursor` whose rows are mapped the same way as they are fetched.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import apsw

from ..errors import ClosedError, CorruptionError, ReadOnlyError, StorageError, TensorDBError
from .hooks import StorageHooks, installed

__all__ = ["Connection", "Cursor", "check_sqlite_version", "storage_error", "sqlite_error", "sqlite_errors",
           "SQLITE_ERRORS"]

# SQLite before 3.51.3 has a WAL-reset corruption bug hit by two connections
# writing and checkpointing; 3.52.0 was withdrawn.
_MIN_SQLITE = (3, 51, 3)
_WITHDRAWN = {(3, 52, 0)}
BUSY_TIMEOUT_MS = 10_000


def check_sqlite_version(version: str | None = None) -> None:
    """Refuse to run on an SQLite with known corruption bugs."""
    text = version or apsw.sqlite_lib_version()
    parts = tuple(int(p) for p in text.split(".")[:3])
    if parts < _MIN_SQLITE or parts in _WITHDRAWN:
        raise ImportError(
            f"tensordb needs SQLite >= 3.51.3 and not 3.52.0 (bundled with apsw); found {text}: "
            "upgrade apsw"
        )


def _use_wal(conn: apsw.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")


def _durable_commits(conn: apsw.Connection) -> None:
    # FULL: a commit survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous = FULL")


def _enforce_foreign_keys(conn: apsw.Connection) -> None:
    conn.execute("PRAGMA foreign_keys = ON")


def _strict_sql(conn: apsw.Connection) -> None:
    # "double-quoted strings" silently become literals when a column name is mistyped.
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)


def _wait_when_busy(conn: apsw.Connection) -> None:
    # SQLite's own busy timeout sleeps up to 100 ms between attempts, so a writer
    # that commits back to back can starve another one for the whole timeout.
    # Retrying every millisecond or two catches the gaps between its transactions.
    started = [0.0]

    def retry(prior_calls: int) -> bool:
        now = time.monotonic()
        if prior_calls == 0:
            started[0] = now
        if now - started[0] >= BUSY_TIMEOUT_MS / 1000:
            return False
        time.sleep(0.0005 if prior_calls < 20 else 0.002)
        return True

    conn.set_busy_handler(retry)


def _temporary_work_in_memory(conn: apsw.Connection) -> None:
    # Statement journals, two-pass UPDATEs of indexed columns (a move rewrites
    # paths) and sorts would otherwise go through files in the system's
    # temporary folder: writes that no commit needs. Metadata work stays small.
    conn.execute("PRAGMA temp_store = MEMORY")


def _distrust_the_file(conn: apsw.Connection) -> None:
    # Every file is untrusted input: SQL stored in its schema may not call
    # functions with side effects, the schema cannot be edited through SQL,
    # and b-tree cells are bounds-checked as pages are read.
    conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
    conn.execute("PRAGMA cell_size_check = ON")


def _stable_plans(conn: apsw.Connection) -> None:
    # apsw's SQLite is built with STAT4, under which a cached statement whose
    # plan could depend on a bound value (any join with parameters) is
    # compiled again at every execution: 20-60 us each, often more than the
    # query itself. With the planner's stability guarantee a statement keeps
    # the plan it was prepared with. (The flag cannot be switched per query:
    # switching it expires every prepared statement, running ones included.)
    conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 1)


_POLICY_ALL = (_wait_when_busy, _strict_sql, _distrust_the_file, _temporary_work_in_memory, _stable_plans)
_POLICY_WRITER = (_use_wal, _durable_commits, _enforce_foreign_keys)

#: apsw errors that mean the disk failed rather than the SQL.
IO_ERRORS = (apsw.IOError, apsw.FullError)
# SQLITE_CORRUPT and SQLITE_NOTADB mean a damaged file wherever they surface, and
# so does text that is not UTF-8 (apsw decodes every TEXT value; tensordb writes
# only valid UTF-8).
_DAMAGE = (apsw.CorruptError, apsw.NotADBError, UnicodeDecodeError)
#: Every exception SQLite (through apsw) raises that :func:`sqlite_error` maps.
SQLITE_ERRORS = (apsw.Error, UnicodeDecodeError)


def storage_error(filename: str, exc: BaseException, doing: str | None = None, hint: str = "") -> StorageError:
    """A StorageError naming the file (and what was being done) for an apsw I/O error or an OSError."""
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        code = exc.errno
    else:
        what = str(exc)
        code = errno.ENOSPC if isinstance(exc, apsw.FullError) else errno.EIO
    err = StorageError(f"{filename}: {doing + ' failed: ' if doing else ''}{what}{hint}")
    err.errno = code
    return err


def sqlite_error(filename: str, exc: BaseException, doing: str | None = None) -> TensorDBError:
    """The tensordb error, naming the file, for an exception raised by SQLite (see the module docstring)."""
    if isinstance(exc, IO_ERRORS):
        return storage_error(filename, exc, doing)
    if isinstance(exc, apsw.BusyError):
        busy = StorageError(f"{filename}: {doing + ' failed: ' if doing else ''}the database is locked by another "
                            f"connection ({exc})")
        busy.errno = errno.EBUSY
        return busy
    if isinstance(exc, _DAMAGE):
        return CorruptionError(f"{filename}: the database file is damaged ({exc})")
    if isinstance(exc, apsw.ReadOnlyError):
        return ReadOnlyError(f"{filename}: {exc}")
    return TensorDBError(f"{filename}: {doing + ' failed: ' if doing else ''}SQLite error: {exc}")


@contextlib.contextmanager
def sqlite_errors(filename: str, doing: str | None = None) -> Iterator[None]:
    """Turn exceptions SQLite raises inside the block into tensordb errors (:func:`sqlite_error`)."""
    try:
        yield
    except SQLITE_ERRORS as exc:
        raise sqlite_error(filename, exc, doing) from exc


class Cursor:
    """The rows of one statement; SQLite's errors while fetching them are mapped like the statement's."""

    __slots__ = ("_rows", "_filename")

    def __init__(self, rows: Any, filename: str) -> None:
        self._rows = rows
        self._filename = filename

    # Rows are typed Any: their columns are checked where they are used, since
    # everything read from a file is untrusted anyway.
    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._rows
        except SQLITE_ERRORS as exc:
            raise sqlite_error(self._filename, exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return list(self._rows)
        except SQLITE_ERRORS as exc:
            raise sqlite_error(self._filename, exc) from exc

    def fetchone(self) -> Any:
        try:
            return self._rows.fetchone()
        except SQLITE_ERRORS as exc:
            raise sqlite_error(self._filename, exc) from exc


class Connection:
    """One apsw connection with nestable transactions and commit hooks.

    ``transaction()`` is ``BEGIN IMMEDIATE`` when outermost and a ``SAVEPOINT``
    inside. Hooks registered for the outermost transaction run just before
    ``COMMIT`` (flush pack files), just after it (delete replaced files) and
    on rollback of each level (truncate pack bytes nobody references).
    """

    def __init__(self, filename: str, *, readonly: bool, create: bool, hooks: StorageHooks | None = None) -> None:
        self.filename = filename
        self.hooks = installed() if hooks is None else hooks
        self.readonly = readonly
        if readonly:
            flags = apsw.SQLITE_OPEN_READONLY
        else:
            flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
        try:
            self.conn = apsw.Connection(filename, flags=flags, vfs=self.hooks.sqlite_vfs)
        except apsw.CantOpenError as exc:
            raise FileNotFoundError(f"{filename}: cannot open database ({exc})") from None
        except SQLITE_ERRORS as exc:
            raise sqlite_error(filename, exc, "opening") from exc
        self.pid = os.getpid()
        for policy in _POLICY_ALL:
            policy(self.conn)
        self._depth = 0
        self._read_depth = 0
        # Moves whenever this connection starts or ends a (sub)transaction: with
        # SQLite's data_version (which moves on other connections' commits), it
        # tells a cache whether what it read is still current.
        self.write_generation = 0
        self._before_commit: list[Callable[[], None]] = []
        self._after_commit: list[Callable[[], None]] = []
        self._savepoint_hooks: list[tuple[Callable[[int], None], Callable[[int], None]]] = []
        self._snapshot_hooks: list[tuple[Callable[[], None], Callable[[], None]]] = []
        # SQLite rolled the open transaction back after an I/O error: refuse statements until it is left
        self._aborted = False

    def apply_writer_policy(self) -> None:
        with sqlite_errors(self.filename, "opening"):
            for policy in _POLICY_WRITER:
                policy(self.conn)

    # -- state -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.conn is None

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @property
    def in_snapshot(self) -> bool:
        """Inside a write transaction or a read snapshot: every statement sees one commit."""
        return self._depth > 0 or self._read_depth > 0

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it changes when another connection commits."""
        return int(self.scalar("PRAGMA data_version"))

    def ensure_usable(self) -> None:
        if self.closed:
            raise ClosedError(f"{self.filename}: database is closed")
        if os.getpid() != self.pid:
            raise TensorDBError(
                f"{self.filename}: this database handle was opened in another process; "
                "open the database again in this process (pickled handles do this for you)"
            )
        if self._aborted:
            raise StorageError(
                f"{self.filename}: the transaction was rolled back after an I/O error; "
                "leave the transaction block before using the database again"
            )

    @contextlib.contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Statements in the block fail at once with BusyError instead of waiting for a lock."""
        self.ensure_usable()
        self.conn.set_busy_handler(None)
        try:
            yield
        finally:
            if not self.closed:
                _wait_when_busy(self.conn)

    def close(self) -> None:
        if not self.closed:
            try:
                with sqlite_errors(self.filename, "closing"):
                    self.conn.close()
            finally:
                self.conn = None  # type: ignore[assignment]

    # -- SQL -------------------------------------------------------------------

    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Cursor:
        self.ensure_usable()
        try:
            return Cursor(self.conn.execute(sql, params), self.filename)
        except SQLITE_ERRORS as exc:
            raise sqlite_error(self.filename, exc) from exc

    def executemany(self, sql: str, seq: Iterable[tuple[Any, ...]]) -> Cursor:
        self.ensure_usable()
        try:
            return Cursor(self.conn.executemany(sql, seq), self.filename)
        except SQLITE_ERRORS as exc:
            raise sqlite_error(self.filename, exc) from exc

    def insert_rows(self, insert: str, rows: Sequence[Sequence[Any]], upsert: str = "") -> None:
        """Insert ``rows`` with ``insert`` ("INSERT INTO t(a, b)"): one multi-row statement per 512 rows.

        A statement per row (``executemany``) costs SQLite a statement journal
        each time a trigger fires (the reference-count triggers do), which
        doubled the cost of inserting node and chunk-index rows. ``upsert`` is
        an ON CONFLICT clause.
        """
        for start in range(0, len(rows), _MAX_ROWS_PER_INSERT):
            batch = rows[start:start + _MAX_ROWS_PER_INSERT]
            self.execute(_insert_sql(insert, len(batch[0]), len(batch), upsert),
                         tuple(itertools.chain.from_iterable(batch)))

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        for row in self.execute(sql, params):
            return tuple(row)
        return None

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def last_insert_rowid(self) -> int:
        """The rowid of the last row this connection inserted."""
        return int(self.conn.last_insert_rowid())

    def changes(self) -> int:
        """How many rows the last INSERT, UPDATE or DELETE changed."""
        return int(self.conn.changes())

    # -- hooks -----------------------------------------------------------------

    def on_savepoint(self, begin: Callable[[int], None], rollback: Callable[[int], None]) -> None:
        """Call ``begin(level)`` when a (sub)transaction starts and ``rollback(level)`` when it rolls back."""
        self._savepoint_hooks.append((begin, rollback))

    def on_snapshot(self, begin: Callable[[], None], end: Callable[[], None]) -> None:
        """Call ``begin()`` right after an outermost read snapshot's ``BEGIN`` (before its
        first read) and ``end()`` once it has ended."""
        self._snapshot_hooks.append((begin, end))

    def before_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` before every outermost ``COMMIT`` (for example, flush pack files)."""
        self._before_commit.append(fn)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the outermost transaction has committed (now if none is open)."""
        if self._depth == 0:
            fn()
        else:
            self._after_commit.append(fn)

    # -- transactions ------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Atomic block: all or nothing. Nested blocks roll back only their own part."""
        self.ensure_usable()
        if self.readonly:
            raise ReadOnlyError(f"{self.filename}: database is open read-only")
        level = self._depth
        if level == 0:
            if self._read_depth:
                raise TensorDBError("cannot start a write while a read snapshot is open")
            with sqlite_errors(self.filename, "starting a transaction"):
                self.conn.execute("BEGIN IMMEDIATE")
            self.hooks.trace("begin")
        else:
            with sqlite_errors(self.filename, "starting a savepoint"):
                self.conn.execute(f"SAVEPOINT tdb_{level}")
        self._depth += 1
        self.write_generation += 1
        for begin, _ in self._savepoint_hooks:
            begin(level)
        try:
            yield
        except BaseException as exc:
            self._rollback(level)
            # raised by a statement that bypassed execute() (not a UnicodeDecodeError of the caller's code)
            if isinstance(exc, apsw.Error):
                raise sqlite_error(self.filename, exc) from exc
            raise
        else:
            self._commit(level)
        finally:
            self.write_generation += 1

    def _rollback(self, level: int) -> None:
        try:
            with sqlite_errors(self.filename, "rolling back"):
                if self.conn.getautocommit():
                    # SQLite already rolled the whole transaction back (it may, after an I/O error)
                    self._aborted = level > 0
                elif level == 0:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO tdb_{level}; RELEASE tdb_{level}")
        finally:
            self._depth = level
            for _, rollback in self._savepoint_hooks:
                rollback(level)
            if level == 0:
                self._after_commit.clear()
                self._aborted = False

    def _commit(self, level: int) -> None:
        if self._aborted or self.conn.getautocommit():
            self._rollback(level)
            raise StorageError(f"{self.filename}: the transaction was rolled back after an I/O error")
        if level > 0:
            with sqlite_errors(self.filename, "releasing a savepoint"):
                self.conn.execute(f"RELEASE tdb_{level}")
            self._depth = level
            return
        self.hooks.trace("rows-written")
        try:
            for fn in self._before_commit:
                fn()
        except BaseException:
            self._rollback(0)
            raise
        self.hooks.trace("before-commit")
        try:
            self.conn.execute("COMMIT")
        except BaseException as exc:
            # The commit record may have reached the WAL even so (recovery would
            # find it): the rollback hooks must not undo the files it references.
            self._rollback(0)
            if isinstance(exc, IO_ERRORS):
                raise storage_error(
                    self.filename, exc, "commit", "; the transaction is either fully committed or not at all "
                    "(reopen the database to see which)"
                ) from exc
            if isinstance(exc, apsw.Error):
                raise sqlite_error(self.filename, exc, "commit") from exc
            raise
        self.hooks.trace("after-commit")
        self._depth = 0
        hooks, self._after_commit = self._after_commit, []
        for fn in hooks:
            fn()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read view across several statements (no-op inside a transaction)."""
        self.ensure_usable()
        if self._depth or self._read_depth:
            self._read_depth += 1
            try:
                yield
            finally:
                self._read_depth -= 1
            return
        with sqlite_errors(self.filename, "starting a read"):
            self.conn.execute("BEGIN DEFERRED")
        self._read_depth = 1
        started = 0
        try:
            for begin, _ in self._snapshot_hooks:
                begin()
                started += 1
            yield
        finally:
            self._read_depth = 0
            try:
                if not self.closed and not self.conn.getautocommit():
                    with sqlite_errors(self.filename, "ending a read"):
                        self.conn.execute("COMMIT")
            finally:
                for _, end in self._snapshot_hooks[:started]:
                    end()


# Large enough that per-statement costs vanish, small enough for SQLite's limit of 32766 parameters.
_MAX_ROWS_PER_INSERT = 512


@functools.lru_cache(maxsize=256)
def _insert_sql(insert: str, width: int, rows: int, upsert: str) -> str:
    values = "(" + ", ".join("?" * width) + ")"
    return f"{insert} VALUES {', '.join([values] * rows)} {upsert}".rstrip()
