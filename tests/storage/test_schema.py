"""The format version and its upgrades: one record (``user_version``), ordered steps, newer files refused."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb
from tensordb.errors import CorruptionError, FormatError
from tensordb.storage import schema

# What the version after the current one adds, for the tests: a table and an index on an existing one.
NEXT_DDL = """
CREATE TABLE label(tree_id INTEGER NOT NULL REFERENCES tree(tree_id) ON DELETE CASCADE, text TEXT NOT NULL);
CREATE INDEX tree_by_modified ON tree(modified);
"""


def schema_rows(path: Path) -> set[tuple[Any, ...]]:
    """The file's schema objects (SQLite's own tables aside) and its version."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = set(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema "
                               "WHERE name NOT LIKE 'sqlite_%'"))
        rows.add(("user_version", *con.execute("PRAGMA user_version").fetchone()))
    finally:
        con.close()
    return rows


def user_version(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def make_current_file(path: Path) -> np.ndarray:
    data = np.arange(200_000, dtype="i8")  # large enough for a pack file
    with tensordb.open(path, mode="x") as db:
        db["t"] = {"x": data, "note": "kept"}
    return data


@contextlib.contextmanager
def next_version() -> Iterator[list[int]]:
    """This code as the next format version would be: its DDL and an upgrade step to it (calls are counted)."""
    calls: list[int] = []
    current = schema.SCHEMA_VERSION
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schema, "SCHEMA_VERSION", current + 1)
        patch.setattr(schema, "DDL", (*schema.DDL, NEXT_DDL))
        patch.setattr(schema, "UPGRADES", dict(schema.UPGRADES))

        @schema.upgrade_step(current)
        def add_labels(conn: Any) -> None:
            calls.append(current)
            conn.execute(NEXT_DDL)

        yield calls


def test_a_new_file_records_its_version_once(tmp_path: Path) -> None:
    path = tmp_path / "new.tdb"
    make_current_file(path)
    assert user_version(path) == schema.SCHEMA_VERSION
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT key FROM meta").fetchall() == [("inline_threshold",)]
    finally:
        con.close()


def test_a_file_with_the_old_meta_version_row_still_opens(tmp_path: Path) -> None:
    """Files written before user_version became the only record carry a meta row format_version: ignored."""
    path = tmp_path / "old.tdb"
    data = make_current_file(path)
    con = sqlite3.connect(path)
    with con:
        con.execute("INSERT INTO meta(key, value) VALUES ('format_version', 1)")
    con.close()
    for mode in ("r", "a"):
        with tensordb.open(path, mode=mode) as db:
            np.testing.assert_array_equal(db["t"]["/x"][:], data)


def test_an_upgrade_step_brings_an_old_file_to_a_fresh_files_schema(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.tdb", tmp_path / "fresh.tdb"
    data = make_current_file(old)
    with next_version() as calls:
        with tensordb.open(old) as db:  # a writable open upgrades
            np.testing.assert_array_equal(db["t"]["/x"][:], data)
            assert db["t"]["/note"] == "kept"
            db["u"] = {"y": data[:10]}
            assert db.check().ok
        assert calls == [schema.SCHEMA_VERSION - 1]
        make_current_file(fresh)
        assert schema_rows(old) == schema_rows(fresh)
        assert ("index", "tree_by_modified", "tree", "CREATE INDEX tree_by_modified ON tree(modified)"
                ) in schema_rows(old)
        with tensordb.open(old, mode="r") as db:  # upgraded once, the file opens read-only too
            assert sorted(db) == ["t", "u"]
        assert calls == [schema.SCHEMA_VERSION - 1]
        assert user_version(old) == schema.SCHEMA_VERSION


def test_an_old_file_opened_read_only_is_refused_and_left_alone(tmp_path: Path) -> None:
    old = tmp_path / "old.tdb"
    make_current_file(old)
    before = schema_rows(old)
    with next_version() as calls:
        with pytest.raises(FormatError, match=r"old\.tdb uses format version \d+ and needs an upgrade .* writable"):
            tensordb.open(old, mode="r")
        assert calls == []
    assert schema_rows(old) == before


def test_a_failing_or_wrong_upgrade_step_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "old.tdb"
    make_current_file(old)
    before = schema_rows(old)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setattr(schema, "DDL", (*schema.DDL, NEXT_DDL))

    def fails(conn: Any) -> None:
        conn.execute(NEXT_DDL)
        raise RuntimeError("step failed")

    def forgets_the_index(conn: Any) -> None:
        conn.execute(NEXT_DDL.split(";")[0])

    monkeypatch.setattr(schema, "UPGRADES", {})
    with pytest.raises(FormatError, match=r"old\.tdb: no upgrade path from format version \d+"):
        tensordb.open(old)
    assert schema_rows(old) == before
    monkeypatch.setattr(schema, "UPGRADES", {schema.SCHEMA_VERSION - 1: fails})
    with pytest.raises(RuntimeError, match="step failed"):
        tensordb.open(old)
    assert schema_rows(old) == before
    monkeypatch.setattr(schema, "UPGRADES", {schema.SCHEMA_VERSION - 1: forgets_the_index})
    with pytest.raises(CorruptionError, match="lacks the index 'tree_by_modified'"):
        tensordb.open(old)
    assert schema_rows(old) == before


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.tdb"
    make_current_file(path)
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    con.close()
    for mode in ("r", "r+", "a"):
        with pytest.raises(FormatError, match=rf"newer\.tdb uses tensordb format version {schema.SCHEMA_VERSION + 1}"
                                               r".*upgrade tensordb"):
            tensordb.open(path, mode=mode)
    assert user_version(path) == schema.SCHEMA_VERSION + 1


def test_an_upgrade_step_is_registered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "UPGRADES", {})
    schema.upgrade_step(7)(lambda conn: None)
    with pytest.raises(ValueError, match="from format version 7 is already registered"):
        schema.upgrade_step(7)(lambda conn: None)
