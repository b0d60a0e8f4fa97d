"""Connection policy: the SQLite version gate, WAL, IMMEDIATE writers, savepoints."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

import tensordb
from tensordb.storage.connection import Connection, check_sqlite_version


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
