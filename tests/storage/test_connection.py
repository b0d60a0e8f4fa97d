"""Connection policy: the SQLite version gate, WAL, IMMEDIATE writers, savepoints, the error boundary."""

from __future__ import annotations

import errno
from pathlib import Path

import apsw
import pytest

import tensordb
from tensordb.errors import CorruptionError, ReadOnlyError, StorageError, TensorDBError
from tensordb.storage import connection
from tensordb.storage.connection import Connection, check_sqlite_version, sqlite_error


@pytest.mark.parametrize("version", ["3.51.2", "3.45.0", "3.52.0"])
def test_sqlite_with_known_corruption_bugs_is_refused(version: str) -> None:
    with pytest.raises(ImportError, match=version):
        check_sqlite_version(version)


@pytest.mark.parametrize("version", ["3.51.3", "3.52.1", "3.54.1"])
def test_fixed_sqlite_is_accepted(version: str) -> None:
    check_sqlite_version(version)


def test_bundled_sqlite_is_accepted() -> None:
    check_sqlite_version(apsw.sqlite_lib_version())


def test_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "w.tdb") as db:
        conn = db._store.conn
        assert conn.scalar("PRAGMA journal_mode") == "wal"
        assert conn.scalar("PRAGMA synchronous") == 2  # FULL
        assert conn.scalar("PRAGMA foreign_keys") == 1


@pytest.mark.parametrize("mode", ["a", "r"])
def test_a_cached_join_with_parameters_is_not_compiled_again(tmp_path: Path, mode: str) -> None:
    # SQLite asks the authoriser while it compiles: a statement run again from
    # the cache must not ask. (Built with STAT4, SQLite recompiles such
    # statements at every run unless the planner's stability guarantee is on.)
    with tensordb.open(tmp_path / "j.tdb") as db:
        db["t"] = {"a": 1, "b": 2}
        db.sql("SELECT 1").fetchall()  # PRAGMA optimize at close leaves stat1/stat4 behind
    join = "SELECT n.path FROM node n JOIN node r ON r.node_id = n.parent_id WHERE n.tree_id = ? AND n.path = ?"
    with tensordb.open(tmp_path / "j.tdb", mode) as db:
        conn = db._store.conn
        compiled: list[int] = []
        conn.conn.authorizer = lambda *args: compiled.append(args[0]) or apsw.SQLITE_OK  # expires the cache
        try:
            assert conn.one(join, (1, "/a")) == ("/a",)
            assert compiled, "the first run compiles the statement"
            compiled.clear()
            assert conn.one(join, (1, "/b")) == ("/b",)
        finally:
            conn.conn.authorizer = None
        assert compiled == []


def test_writers_hold_the_write_lock_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "lock.tdb"
    with tensordb.open(path) as db:
        db["a"] = 1
        other = apsw.Connection(str(path))
        other.set_busy_timeout(0)
        with db.transaction():
            db["b"] = 2
            # BEGIN IMMEDIATE: another writer cannot start until we commit
            with pytest.raises(apsw.BusyError):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()


def test_savepoints_roll_back_only_their_part(tmp_path: Path) -> None:
    conn = Connection(str(tmp_path / "sp.db"), readonly=False, create=True)
    conn.execute("CREATE TABLE t(x)")
    with conn.transaction():
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError):
            with conn.transaction():
                conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError
        conn.execute("INSERT INTO t VALUES (3)")
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3]
    conn.close()


# -- the error boundary -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raised", "expected", "errno_"), [
    (apsw.IOError("disk I/O error"), StorageError, errno.EIO),
    (apsw.FullError("database or disk is full"), StorageError, errno.ENOSPC),
    (apsw.BusyError("database is locked"), StorageError, errno.EBUSY),
    (apsw.CorruptError("database disk image is malformed"), CorruptionError, None),
    (apsw.NotADBError("file is not a database"), CorruptionError, None),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), CorruptionError, None),
    (apsw.ReadOnlyError("attempt to write a readonly database"), ReadOnlyError, None),
    (apsw.ConstraintError("UNIQUE constraint failed"), TensorDBError, None),
])
def test_every_sqlite_error_becomes_a_tensordb_error_naming_the_file(raised: BaseException, expected: type,
                                                                      errno_: int | None) -> None:
    mapped = sqlite_error("runs.tdb", raised)
    assert type(mapped) is expected
    assert str(mapped).startswith("runs.tdb: ") and str(raised) in str(mapped)
    if errno_ is not None:
        assert mapped.errno == errno_  # type: ignore[attr-defined]


def test_statements_and_their_rows_raise_tensordb_errors(tmp_path: Path) -> None:
    conn = Connection(str(tmp_path / "e.db"), readonly=False, create=True)
    try:
        conn.execute("CREATE TABLE t(x TEXT)")
        conn.execute("INSERT INTO t VALUES (CAST(x'ff' AS TEXT))")  # not UTF-8: apsw fails to decode it
        with pytest.raises(TensorDBError, match=r"e\.db: SQLite error: no such table: missing"):
            conn.execute("SELECT * FROM missing")
        rows = conn.execute("SELECT x FROM t")  # the error comes only when the row is fetched
        with pytest.raises(CorruptionError, match=r"e\.db: the database file is damaged"):
            list(rows)
        with pytest.raises(CorruptionError):
            conn.execute("SELECT x FROM t").fetchall()
        with pytest.raises(CorruptionError):
            conn.scalar("SELECT x FROM t")
    finally:
        conn.close()


def test_a_lock_held_past_the_busy_timeout_is_a_storage_error(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "busy.tdb"
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_MS", 10)
    with tensordb.open(path) as db, tensordb.open(path) as other, db.transaction():
        db["a"] = 1
        with pytest.raises(StorageError, match=r"busy\.tdb: .*locked by another connection") as raised:
            other["b"] = 2
        assert raised.value.errno == errno.EBUSY


def test_the_callers_own_errors_inside_a_transaction_are_left_alone(tmp_path: Path) -> None:
    """Only SQLite's errors are mapped: a UnicodeDecodeError of the caller's code is no damaged file."""
    conn = Connection(str(tmp_path / "u.db"), readonly=False, create=True)
    try:
        with pytest.raises(UnicodeDecodeError), conn.transaction():
            b"\xff".decode()
    finally:
        conn.close()
