"""The apsw connection: open flags per mode, connection policy, nestable transactions.

Policy is a handful of small named functions applied to our own connection
only. Writers start with ``BEGIN IMMEDIATE``: a DEFERRED transaction that
upgrades from read to write can fail with ``BUSY_SNAPSHOT``, which no busy
timeout retries. Nested transactions are savepoints.

The outermost commit is ordered: every row written, then the before-commit
hooks (fsync the pack files), then ``COMMIT``, then the after-commit hooks
(delete replaced files). SQLite errors that mean the disk failed (I/O error,
disk full) become :class:`~tensordb.StorageError`. After such an error SQLite
may have rolled the whole transaction back on its own; the connection then
refuses further statements until the outermost transaction block exits. A
``COMMIT`` that fails has an unknown outcome on disk (the commit record may
have reached the WAL): the before-commit hooks have made the transaction's
files durable already, and nothing undoes them after that.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import apsw

from .. import faults
from ..errors import ClosedError, ReadOnlyError, StorageError, TensorDBError, register_corruption_errors

__all__ = ["Connection", "check_sqlite_version", "storage_error", "io_errors"]

# SQLITE_CORRUPT and SQLITE_NOTADB mean a damaged file wherever they surface, and
# so does text that is not UTF-8 (apsw decodes every TEXT value; tensordb writes
# only valid UTF-8).
register_corruption_errors(apsw.CorruptError, apsw.NotADBError, UnicodeDecodeError)

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


_POLICY_ALL = (_wait_when_busy, _strict_sql, _distrust_the_file, _temporary_work_in_memory)
_POLICY_WRITER = (_use_wal, _durable_commits, _enforce_foreign_keys)

#: apsw errors that mean the disk failed rather than the SQL.
IO_ERRORS = (apsw.IOError, apsw.FullError)


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


@contextlib.contextmanager
def io_errors(filename: str, doing: str | None = None) -> Iterator[None]:
    """Turn apsw I/O errors raised inside the block into StorageError."""
    try:
        yield
    except IO_ERRORS as exc:
        raise storage_error(filename, exc, doing) from exc


class Connection:
    """One apsw connection with nestable transactions and commit hooks.

    ``transaction()`` is ``BEGIN IMMEDIATE`` when outermost and a ``SAVEPOINT``
    inside. Hooks registered for the outermost transaction run just before
    ``COMMIT`` (flush pack files), just after it (delete replaced files) and
    on rollback of each level (truncate pack bytes nobody references).
    """

    def __init__(self, filename: str, *, readonly: bool, create: bool) -> None:
        self.filename = filename
        self.readonly = readonly
        if readonly:
            flags = apsw.SQLITE_OPEN_READONLY
        else:
            flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
        try:
            self.conn = apsw.Connection(filename, flags=flags, vfs=faults.sqlite_vfs)
        except apsw.CantOpenError as exc:
            raise FileNotFoundError(f"{filename}: cannot open database ({exc})") from None
        except IO_ERRORS as exc:
            raise storage_error(filename, exc, "opening") from exc
        self.pid = os.getpid()
        for policy in _POLICY_ALL:
            policy(self.conn)
        self._depth = 0
        self._read_depth = 0
        self._before_commit: list[Callable[[], None]] = []
        self._after_commit: list[Callable[[], None]] = []
        self._savepoint_hooks: list[tuple[Callable[[int], None], Callable[[int], None]]] = []
        self._snapshot_hooks: list[tuple[Callable[[], None], Callable[[], None]]] = []
        # SQLite rolled the open transaction back after an I/O error: refuse statements until it is left
        self._aborted = False
        # planted bug only (faults.UNSAFE_COMMIT_BEFORE_PACK_FLUSH): a pack flush owed after a COMMIT
        self._flush_owed = False

    def apply_writer_policy(self) -> None:
        with io_errors(self.filename, "opening"):
            for policy in _POLICY_WRITER:
                policy(self.conn)

    # -- state -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.conn is None

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

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
                with io_errors(self.filename, "closing"):
                    self.conn.close()
            finally:
                self.conn = None  # type: ignore[assignment]

    # -- SQL -------------------------------------------------------------------

    # Rows are typed Any: their columns are checked where they are used, since
    # everything read from a file is untrusted anyway.
    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        self.ensure_usable()
        try:
            return self.conn.execute(sql, params)
        except IO_ERRORS as exc:
            raise storage_error(self.filename, exc) from exc

    def executemany(self, sql: str, seq: Any) -> Any:
        self.ensure_usable()
        try:
            return self.conn.executemany(sql, seq)
        except IO_ERRORS as exc:
            raise storage_error(self.filename, exc) from exc

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        for row in self.execute(sql, params):
            return tuple(row)
        return None

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

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
            if self._flush_owed:
                self._flush_owed = False
                for fn in self._before_commit:
                    fn()
            with io_errors(self.filename, "starting a transaction"):
                self.conn.execute("BEGIN IMMEDIATE")
            faults.crashpoint("begin")
        else:
            with io_errors(self.filename, "starting a savepoint"):
                self.conn.execute(f"SAVEPOINT tdb_{level}")
        self._depth += 1
        for begin, _ in self._savepoint_hooks:
            begin(level)
        try:
            yield
        except BaseException as exc:
            self._rollback(level)
            if isinstance(exc, IO_ERRORS):  # raised by a statement that bypassed execute()
                raise storage_error(self.filename, exc) from exc
            raise
        else:
            self._commit(level)

    def _rollback(self, level: int) -> None:
        try:
            with io_errors(self.filename, "rolling back"):
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
            with io_errors(self.filename, "releasing a savepoint"):
                self.conn.execute(f"RELEASE tdb_{level}")
            self._depth = level
            return
        faults.crashpoint("rows-written")
        if faults.UNSAFE_COMMIT_BEFORE_PACK_FLUSH:
            self._commit_before_flush()
        else:
            try:
                for fn in self._before_commit:
                    fn()
            except BaseException:
                self._rollback(0)
                raise
            faults.crashpoint("before-commit")
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
                raise
        faults.crashpoint("after-commit")
        self._depth = 0
        hooks, self._after_commit = self._after_commit, []
        for fn in hooks:
            fn()

    def _commit_before_flush(self) -> None:
        """The planted ordering bug (tests only): COMMIT now, fsync the packs when the next transaction begins."""
        self.conn.execute("COMMIT")
        self._flush_owed = True

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
        with io_errors(self.filename, "starting a read"):
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
                    with io_errors(self.filename, "ending a read"):
                        self.conn.execute("COMMIT")
            finally:
                for _, end in self._snapshot_hooks[:started]:
                    end()
