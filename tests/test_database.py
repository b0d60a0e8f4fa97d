"""Tests of tensordb.database: laziness, value semantics with sharing, dedup,
metadata-only restructuring, inline vs pack placement, transactions,
read-only mode, file formats and modes, read-only SQL."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from strategies import assert_tree_equal

import tensordb
from tensordb.storage import schema

MiB = 2**20


# --------------------------------------------------------------------------- helpers


def pack_sizes(db: tensordb.Database) -> dict[str, int]:
    """Size of every file in the pack folder (empty if there is none)."""
    if not os.path.isdir(db.pack_dir):
        return {}
    return {n: os.path.getsize(os.path.join(db.pack_dir, n)) for n in sorted(os.listdir(db.pack_dir))}


def chunk_rows(db: tensordb.Database) -> int:
    return int(db._store.conn.execute("SELECT count(*) FROM chunk").fetchall()[0][0])


def load_all(db: tensordb.Database) -> dict[str, Any]:
    return {name: db[name].load() for name in db}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chunks_intersected(key: tuple[slice, ...], shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """Number of chunks a box selection of step-1 slices touches."""
    count = 1
    for s, n, c in zip(key, shape, chunks):
        start, stop, _ = s.indices(n)
        if stop <= start:
            return 0
        count *= (stop - 1) // c - start // c + 1
    return count


# --------------------------------------------------------------------------- 4. laziness


def test_reads_are_lazy(db_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = rng.standard_normal((2048, 2048), dtype=np.float32)  # 16 MiB, no all-zero chunk
    with tensordb.open(db_path) as db:
        db["t"] = {"meta": {"time": 51}}
        db["t"].set("/a", data, chunks=(256, 256))
        assert db.counters.chunks_written == 64

    db = tensordb.open(db_path)
    try:
        assert db.counters.snapshot() == {k: 0 for k in db.counters.snapshot()}
        assert "t" in db and list(db) == ["t"] and len(db) == 1
        tree = db["t"]
        assert tree["/meta/time"] == 51
        arr = tree["/a"]
        assert arr.shape == (2048, 2048)
        assert arr.dtype == np.dtype("f4")
        assert arr.chunks == (256, 256)
        assert arr.nbytes == data.nbytes and arr.ndim == 2 and arr.size == data.size
        assert arr.stored_nbytes > 0
        tree.load(lazy=True)
        db.stats()
        assert db.counters.chunks_decoded == 0
        assert db.counters.pack_reads == 0

        key = (slice(10, 20), slice(300, 700))
        expected = chunks_intersected(key, arr.shape, arr.chunks)
        assert expected == 2
        np.testing.assert_array_equal(arr[key], data[key])
        assert db.counters.chunks_decoded == expected

        before = db.counters.chunks_decoded
        key = (slice(250, 1100), slice(0, 2048))
        expected = chunks_intersected(key, arr.shape, arr.chunks)
        assert expected == 5 * 8
        np.testing.assert_array_equal(arr[key], data[key])
        assert db.counters.chunks_decoded - before == expected

        before = db.counters.chunks_decoded
        assert arr[1000, 1000] == data[1000, 1000]
        assert db.counters.chunks_decoded - before == 1
        # reading never writes
        assert db.counters.chunks_written == 0 and db.counters.pack_bytes_written == 0
    finally:
        db.close()


def test_unwritten_chunks_are_not_decoded(db: tensordb.Database) -> None:
    db["t"] = {}
    a = db["t"].create_array("/a", shape=(100, 100), dtype="i2", chunks=(10, 10), fill_value=7)
    a[0:10, 0:10] = 1
    before = db.counters.chunks_decoded
    got = a[...]
    assert db.counters.chunks_decoded - before == 1  # the 99 other chunks are never stored
    expected = np.full((100, 100), 7, "i2")
    expected[:10, :10] = 1
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- 5. value semantics


def test_tree_copy_is_a_value_with_shared_chunks(db: tensordb.Database) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(1000)
    db["a"] = {"name": "a", "x": np.zeros(0)}
    db["a"].set("/x", x, chunks=(100,))
    n_chunks = db.stats()["chunks"]
    assert n_chunks == 10

    db["b"] = db["a"]
    assert db.stats()["chunks"] == n_chunks  # nothing copied
    assert db["b"]["/x"].array_id == db["a"]["/x"].array_id

    db["a"]["/x"][0:10] = 42.0
    new_x = x.copy()
    new_x[0:10] = 42.0
    np.testing.assert_array_equal(db["a"]["/x"][...], new_x)
    np.testing.assert_array_equal(db["b"]["/x"][...], x)  # b unchanged
    assert_tree_equal(db["b"].load(), {"name": "a", "x": x})
    assert db["a"]["/x"].array_id != db["b"]["/x"].array_id

    stats = db.stats()
    assert stats["chunks"] == n_chunks + 1  # only the rewritten chunk is new
    assert stats["dedup_ratio"] > 1
    assert stats["dedup_ratio"] == pytest.approx(20 / 11)
    assert db.check().ok


def test_subtree_handle_assignment_shares_then_diverges(db: tensordb.Database) -> None:
    rng = np.random.default_rng(55)
    x = rng.standard_normal((50, 4))
    y = rng.integers(0, 100, 300).astype("i8")
    db["a"] = {"x": x, "sub": {"y": y, "label": "s"}}
    db["c"] = {"p": db["a"]["/x"], "s": db["a"]["/sub"]}
    a_x, c_p = db["a"]["/x"], db["c"]["/p"]
    assert c_p.array_id == a_x.array_id
    assert db["c"]["/s/y"].array_id == db["a"]["/sub/y"].array_id
    assert db["c"]["/s/label"] == "s"
    chunks_before = db.stats()["chunks"]

    c_p[5] = -1.0  # write through c: a must not see it
    np.testing.assert_array_equal(db["a"]["/x"][...], x)
    expected_c = x.copy()
    expected_c[5] = -1.0
    np.testing.assert_array_equal(db["c"]["/p"][...], expected_c)
    assert db["c"]["/p"].array_id != db["a"]["/x"].array_id

    db["a"]["/sub/y"][0:3] = [7, 8, 9]  # write through a: c must not see it
    np.testing.assert_array_equal(db["c"]["/s/y"][...], y)
    np.testing.assert_array_equal(db["a"]["/sub/y"][:4], [7, 8, 9, y[3]])
    db["a"]["/x"][...] = 0.0
    np.testing.assert_array_equal(db["c"]["/p"][...], expected_c)
    assert db.stats()["chunks"] > chunks_before
    assert db.check().ok


# --------------------------------------------------------------------------- 6. dedup


def test_same_array_in_fifty_trees_is_stored_once(db: tensordb.Database) -> None:
    data = np.random.default_rng(6).random(MiB, dtype=np.float32)  # 4 MiB, barely compressible
    db["s0"] = {"time": 0, "points": data}
    first = db.stats()
    assert first["stored_bytes"] > 3 * MiB
    for i in range(1, 50):
        db[f"s{i}"] = {"time": i, "points": data}
    last = db.stats()
    assert last["trees"] == 50
    assert last["stored_bytes"] - first["stored_bytes"] < 0.01 * first["stored_bytes"]
    assert last["chunks"] == first["chunks"]
    assert last["logical_bytes"] == 50 * data.nbytes
    assert last["dedup_ratio"] == pytest.approx(50)
    assert db.counters.chunks_deduplicated >= 49 * first["chunks"]
    np.testing.assert_array_equal(db["s37"]["/points"][...], data)


# --------------------------------------------------------------------------- 7. restructuring


def test_restructuring_writes_no_chunks(db: tensordb.Database) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(200_000)  # pack chunks
    small = np.arange(50, dtype="i4")  # inline
    db["a"] = {"data": {"x": x, "small": small, "inlet": {"p": x[:1000]}}, "list": [1, small]}
    assert pack_sizes(db) and db.stats()["pack_bytes"] > 0
    expected = db["a"].load()

    def unchanged(action: Any) -> None:
        counters = db.counters.snapshot()
        packs = pack_sizes(db)
        rows = chunk_rows(db)
        n = db.stats()["chunks"]
        action()
        after = db.counters.snapshot()
        assert after["chunks_written"] == counters["chunks_written"]
        assert after["chunk_bytes_written"] == counters["chunk_bytes_written"]
        assert after["pack_bytes_written"] == counters["pack_bytes_written"]
        assert pack_sizes(db) == packs
        assert chunk_rows(db) == rows
        assert db.stats()["chunks"] == n

    tree = db["a"]
    unchanged(lambda: tree.move("/data/inlet", "/data/inflow"))
    unchanged(lambda: db.rename("a", "b"))
    tree = db["b"]
    unchanged(lambda: db.__setitem__("copy", db["b"]))
    unchanged(lambda: tree.__setitem__("/new", tree["/data"]))
    unchanged(lambda: tree.__delitem__("/data/x"))
    unchanged(lambda: db.__delitem__("copy"))
    unchanged(lambda: tree.move("/list/0", "/list/1"))

    assert sorted(db) == ["b"]
    got = db["b"].load()
    np.testing.assert_array_equal(got["new"]["x"], x)
    np.testing.assert_array_equal(got["new"]["inflow"]["p"], x[:1000])
    assert "x" not in got["data"] and "inflow" in got["data"] and "inlet" not in got["data"]
    np.testing.assert_array_equal(got["data"]["small"], expected["data"]["small"])
    assert got["list"][1] == 1
    np.testing.assert_array_equal(got["list"][0], small)
    assert db.check().ok


@pytest.mark.parametrize("src, dst, expected", [
    ("/list/1", "/list/0", ["b", "a", "c"]),
    ("/list/2", "/list/0", ["c", "a", "b"]),
    ("/list/0", "/list/2", ["b", "c", "a"]),
    ("/list/2", "/list/1", ["a", "c", "b"]),
])
def test_move_within_a_list(db: tensordb.Database, src: str, dst: str, expected: list[str]) -> None:
    db["t"] = {"list": ["a", "b", "c"]}
    db["t"].move(src, dst)
    assert db["t"].load() == {"list": expected}
    assert [db["t"][f"/list/{i}"] for i in range(3)] == expected
    rows = db.sql("SELECT path, value FROM nodes WHERE tree = 't' AND kind = 'str' ORDER BY idx").fetchall()
    assert rows == [(f"/list/{i}", v) for i, v in enumerate(expected)]
    assert db.check().ok


# --------------------------------------------------------------------------- 8. inline vs packs


def test_inline_and_pack_placement(db_path: Path) -> None:
    small = np.arange(1000, dtype="i4")  # compresses to far below 64 KiB
    large = np.random.default_rng(8).standard_normal(500_000)  # ~1 MiB chunks, incompressible
    with tensordb.open(db_path) as db:
        db["small"] = {"a": small}
        stats = db.stats()
        assert stats["inline_bytes"] > 0 and stats["pack_bytes"] == 0
        assert pack_sizes(db) == {}
        db["large"] = {"a": large}
        stats = db.stats()
        assert stats["pack_bytes"] > 0
        assert stats["pack_bytes"] >= 0.5 * large.nbytes  # random doubles hardly compress
        files = pack_sizes(db)
        assert files and all(re.fullmatch(r"\d{8}\.pack", n) for n in files)
        assert sum(files.values()) >= stats["pack_bytes"]
        np.testing.assert_array_equal(db["small"]["/a"][...], small)
        np.testing.assert_array_equal(db["large"]["/a"][...], large)
        assert db.check().ok
    with tensordb.open(db_path, mode="r") as db:
        np.testing.assert_array_equal(db["small"]["/a"][...], small)
        np.testing.assert_array_equal(db["large"]["/a"][...], large)


@pytest.mark.parametrize("threshold, where", [(0, "pack"), (64 * MiB, "inline")])
def test_inline_threshold_option(tmp_path: Path, threshold: int, where: str) -> None:
    arr = np.random.default_rng(88).standard_normal(100_000)
    with tensordb.open(tmp_path / "t.tdb", inline_threshold=threshold) as db:
        db["t"] = {"a": arr, "b": np.arange(10)}
        stats = db.stats()
        if where == "pack":
            assert stats["inline_bytes"] == 0 and stats["pack_bytes"] == stats["stored_bytes"] > 0
            assert pack_sizes(db)
        else:
            assert stats["pack_bytes"] == 0 and stats["inline_bytes"] == stats["stored_bytes"] > 0
            assert pack_sizes(db) == {}
        np.testing.assert_array_equal(db["t"]["/a"][...], arr)
    # the threshold chosen at creation is kept by the file
    with tensordb.open(tmp_path / "t.tdb") as db:
        db["u"] = {"a": arr + 1}
        stats = db.stats()
        assert (stats["pack_bytes"] if where == "pack" else stats["inline_bytes"]) == stats["stored_bytes"]


# --------------------------------------------------------------------------- 10. transactions


def _populate(db: tensordb.Database) -> None:
    rng = np.random.default_rng(10)
    db["a"] = {"x": rng.standard_normal(300_000), "n": 1, "l": [1, 2]}
    db["b"] = {"y": np.arange(100)}


def _state(db: tensordb.Database) -> tuple[dict[str, Any], dict[str, Any]]:
    stats = db.stats()
    return load_all(db), stats


def test_failed_transaction_leaves_database_unchanged(db: tensordb.Database) -> None:
    _populate(db)
    trees, stats = _state(db)
    packs = pack_sizes(db)
    rng = np.random.default_rng(100)

    with pytest.raises(RuntimeError, match="boom"):
        with db.transaction():
            db["a"]["/x"][0:1000] = 5.0
            db["a"]["/n"] = 2
            db["a"]["/l"].append(3)
            db["new"] = {"big": rng.standard_normal(400_000)}  # new pack bytes
            del db["b"]
            db.rename("a", "renamed")
            db["renamed"].move("/x", "/moved")
            assert pack_sizes(db) != packs  # the pack really grew inside the transaction
            raise RuntimeError("boom")

    assert sorted(db) == ["a", "b"]
    assert_tree_equal(load_all(db), trees)
    after = db.stats()
    for key in ("trees", "nodes", "arrays", "chunks", "logical_bytes", "stored_bytes", "inline_bytes",
                "pack_bytes", "dedup_ratio"):
        assert after[key] == stats[key], key
    assert pack_sizes(db) == packs  # appended pack bytes were truncated away
    report = db.check()
    assert report.ok, str(report)
    assert report.reclaimable_bytes == 0
    # and the database still works
    db["c"] = {"z": np.ones(3)}
    assert db.check().ok


def test_nested_transaction_rolls_back_only_its_part(db: tensordb.Database) -> None:
    _populate(db)
    rng = np.random.default_rng(101)
    outer_data = rng.standard_normal(300_000)
    inner_data = rng.standard_normal(300_000)
    with db.transaction():
        db["outer"] = {"v": outer_data}
        with pytest.raises(ValueError, match="inner"):
            with db.transaction():
                db["inner"] = {"v": inner_data}
                db["a"]["/n"] = 99
                del db["b"]
                raise ValueError("inner")
        db["a"]["/l"].append(3)
    assert sorted(db) == ["a", "b", "outer"]
    np.testing.assert_array_equal(db["outer"]["/v"][...], outer_data)
    assert db["a"]["/n"] == 1
    assert db["a"]["/l"].load() == [1, 2, 3]
    stats = db.stats()
    report = db.check()
    assert report.ok, str(report)
    # the inner block's pack bytes were cut: every pack byte is a live chunk's
    assert report.reclaimable_bytes == 0
    assert sum(pack_sizes(db).values()) == stats["pack_bytes"] + 16 * stats["pack_files"]


def test_transaction_commits_together(db: tensordb.Database) -> None:
    with db.transaction():
        db["a"] = 1
        db["b"] = [np.arange(3)]
        assert list(db.sql("SELECT name FROM trees ORDER BY name")) == [("a",), ("b",)]
    assert sorted(db) == ["a", "b"]


# --------------------------------------------------------------------------- 13. read-only


def _readonly_fixture(path: Path) -> None:
    with tensordb.open(path) as db:
        db["t"] = {"x": np.arange(100.0), "l": [1, 2], "k": "v", "d": {"e": 1}}
        db["u"] = {"y": np.random.default_rng(13).standard_normal(200_000)}


def test_read_only_rejects_every_write(db_path: Path) -> None:
    _readonly_fixture(db_path)
    digest = file_digest(db_path)
    packs = sorted(os.listdir(str(db_path) + "-packs"))
    pack_digests = {n: file_digest(Path(str(db_path) + "-packs") / n) for n in packs}
    writes = {
        "setitem": lambda db: db.__setitem__("new", 1),
        "replace tree": lambda db: db.__setitem__("t", {}),
        "delitem": lambda db: db.__delitem__("t"),
        "rename": lambda db: db.rename("t", "t2"),
        "tree setitem": lambda db: db["t"].__setitem__("/k", "w"),
        "tree set": lambda db: db["t"].set("/z", np.arange(3), chunks=(2,)),
        "tree delitem": lambda db: db["t"].__delitem__("/k"),
        "node setitem": lambda db: db["t"]["/d"].__setitem__("e", 2),
        "move": lambda db: db["t"].move("/k", "/k2"),
        "list append": lambda db: db["t"]["/l"].append(3),
        "list insert": lambda db: db["t"]["/l"].insert(0, 0),
        "array write": lambda db: db["t"]["/x"].__setitem__(slice(0, 3), 1.0),
        "array append": lambda db: db["t"]["/x"].append(np.ones(3)),
        "array resize": lambda db: db["t"]["/x"].resize(10),
        "create_array": lambda db: db["t"].create_array("/c", shape=(3,), dtype="f4"),
        "transaction": lambda db: db.transaction().__enter__(),
        "gc": lambda db: db.gc(),
    }
    with tensordb.open(db_path, mode="r") as db:
        assert db.readonly
        for name, write in writes.items():
            with pytest.raises(tensordb.ReadOnlyError):
                write(db)
                pytest.fail(f"{name} did not raise")
        # reads still work
        np.testing.assert_array_equal(db["t"]["/x"][...], np.arange(100.0))
        assert db["t"]["/l"].load() == [1, 2] and db["t"]["/k"] == "v"
        assert db.check().ok
    assert file_digest(db_path) == digest
    assert sorted(os.listdir(str(db_path) + "-packs")) == packs
    assert {n: file_digest(Path(str(db_path) + "-packs") / n) for n in packs} == pack_digests


# --------------------------------------------------------------------------- 13. formats and modes


def _plain_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people(name TEXT, age INTEGER)")
    con.execute("INSERT INTO people VALUES ('ann', 31)")
    con.commit()
    con.close()


@pytest.mark.parametrize("mode", ["a", "r", "r+"])
@pytest.mark.parametrize("kind", ["plain-sqlite", "random-bytes", "empty-sqlite-header"])
def test_foreign_files_are_format_errors_and_untouched(tmp_path: Path, mode: str, kind: str) -> None:
    path = tmp_path / "foreign.db"
    if kind == "plain-sqlite":
        _plain_sqlite(path)
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(131).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    else:
        path.write_bytes(b"not SQLite format 3 at all, " * 100)
    digest = file_digest(path)
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(tensordb.FormatError):
        tensordb.open(path, mode=mode)
    assert file_digest(path) == digest
    assert sorted(os.listdir(tmp_path)) == listing  # no -wal, -shm or -packs left behind
    if kind == "plain-sqlite":
        con = sqlite3.connect(path)
        assert con.execute("SELECT name, age FROM people").fetchall() == [("ann", 31)]
        con.close()


def test_mode_w_refuses_to_replace_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    path.write_bytes(os.urandom(4096))
    digest = file_digest(path)
    with pytest.raises(tensordb.FormatError):
        tensordb.open(path, mode="w")
    assert file_digest(path) == digest


@pytest.mark.parametrize("mode", ["a", "r", "r+"])
def test_newer_format_version_is_a_format_error(db_path: Path, mode: str) -> None:
    with tensordb.open(db_path) as db:
        db["t"] = {"x": 1}
    newer = schema.SCHEMA_VERSION + 41
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {newer}")
    con.commit()
    con.close()
    digest = file_digest(db_path)
    with pytest.raises(tensordb.FormatError) as info:
        tensordb.open(db_path, mode=mode)
    message = str(info.value)
    assert re.search(rf"\b{newer}\b", message), message
    assert re.search(rf"\b{schema.SCHEMA_VERSION}\b", message), message
    assert file_digest(db_path) == digest


def test_modes(tmp_path: Path) -> None:
    path = tmp_path / "m.tdb"
    with pytest.raises(FileNotFoundError):
        tensordb.open(path, mode="r")
    with pytest.raises(FileNotFoundError):
        tensordb.open(path, mode="r+")
    assert not path.exists()
    with tensordb.open(path, mode="x") as db:
        db["old"] = {"a": np.random.default_rng(1).standard_normal(200_000)}
        assert os.listdir(db.pack_dir)
    with pytest.raises(FileExistsError):
        tensordb.open(path, mode="x")
    with tensordb.open(path, mode="r+") as db:
        assert list(db) == ["old"]
        db["more"] = 1
    with tensordb.open(path, mode="a") as db:
        assert list(db) == ["old", "more"]
    with tensordb.open(path, mode="w") as db:
        assert len(db) == 0 and list(db) == []
        assert db.stats()["chunks"] == 0
        assert not os.path.isdir(db.pack_dir) or not os.listdir(db.pack_dir)
        db["new"] = {"b": 2}
    with tensordb.open(path, mode="r") as db:
        assert list(db) == ["new"] and db["new"]["b"] == 2
        assert db.check().ok
    with pytest.raises(ValueError):
        tensordb.open(path, mode="rw")


# --------------------------------------------------------------------------- 13. db.sql()


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO tree(name, created, modified) VALUES ('x', '', '')",
        "UPDATE node SET value = 5",
        "DELETE FROM node",
        "DROP TABLE chunk_ref",
        "DROP VIEW nodes",
        "CREATE TABLE evil(x)",
        "CREATE TEMP TABLE evil(x)",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA user_version = 5",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA foreign_keys = OFF",
    ],
)
def test_sql_is_read_only(db: tensordb.Database, statement: str) -> None:
    db["t"] = {"time": 51, "x": np.arange(4)}
    before = load_all(db)
    version = db.sql("PRAGMA user_version").fetchall()
    with pytest.raises(tensordb.ReadOnlyError):
        db.sql(statement).fetchall()
    assert db.sql("PRAGMA user_version").fetchall() == version
    assert_tree_equal(load_all(db), before)
    assert db.check().ok
    db["u"] = 1  # the connection is still usable for writes through the API


def test_sql_reads_public_relations_and_sees_open_transaction(db: tensordb.Database) -> None:
    db["s1"] = {"time": 51, "points": np.zeros((10, 3), "f4")}
    db["s2"] = {"time": 20}
    rows = db.sql("SELECT tree, value FROM nodes WHERE key = ? AND value > ?", ("time", 50))
    assert rows.columns == ("tree", "value")
    assert rows.fetchall() == [("s1", 51)]
    with db.transaction():
        db["s3"] = {"time": 99}
        db["s1"]["time"] = 1
        got = db.sql("SELECT tree, value FROM nodes WHERE key = 'time' ORDER BY tree").fetchall()
        assert got == [("s1", 1), ("s2", 20), ("s3", 99)]
        assert db.sql("SELECT count(*) FROM trees").fetchall() == [(3,)]
    shape = db.sql("SELECT shape, dtype FROM arrays").fetchall()
    assert len(shape) == 1 and shape[0][0].replace(" ", "") == "[10,3]"


def test_handles_to_deleted_things_fail_instead_of_finding_new_ones(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "ids.tdb") as db:
        db["a"] = {"x": {"y": 1}, "arr": np.arange(10)}
        old_tree, old_node, old_array = db["a"], db["a"]["x"], db["a"]["arr"]
        del db["a"]
        db.gc()
        db["b"] = {"x": {"y": 2}, "arr": np.arange(10, 20)}  # would take the freed ids if they were reused
        for use in (lambda: old_tree.load(), lambda: old_node.load(), lambda: old_array[:]):
            with pytest.raises(tensordb.StaleHandleError):
                use()
        assert db["b"]["/x/y"] == 2


def test_ints_beyond_float_range_round_trip(tmp_path: Path) -> None:
    huge = [10**400, -(10**400), 2**64, -(2**63) - 1]
    with tensordb.open(tmp_path / "ints.tdb") as db:
        db["t"] = {"v": huge}
        assert db["t"].load() == {"v": huge}
        rows = db.sql("SELECT value FROM nodes WHERE tree = 't' AND kind = 'int' ORDER BY idx").fetchall()
        assert [r[0] for r in rows] == [float("inf"), float("-inf"), float(2**64), float(-(2**63) - 1)]


def test_sql_runs_one_statement_and_allows_describing_pragmas(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "q.tdb") as db:
        db["a"] = {"time": 51}
        with pytest.raises(tensordb.TensorDBError, match="one statement"):
            db.sql("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
        columns = [r[1] for r in db.sql("PRAGMA table_info(nodes)")]
        assert columns == ["tree", "path", "parent_path", "key", "idx", "kind", "value", "array_id"]
        assert [r[0] for r in db.sql("SELECT name FROM pragma_table_info('arrays')")][:2] == ["array_id", "dtype"]
        assert db.sql("PRAGMA user_version").fetchall() == [(schema.SCHEMA_VERSION,)]
        for write in ("PRAGMA user_version = 5", "VACUUM INTO 'copy.tdb'", "PRAGMA journal_mode = DELETE"):
            with pytest.raises(tensordb.ReadOnlyError):
                db.sql(write)
        assert db.sql("PRAGMA user_version").fetchall() == [(schema.SCHEMA_VERSION,)]
        assert not (tmp_path / "copy.tdb").exists()
        assert db.check().ok


# --------------------------------------------------------------------------- missing packs are said at open


def test_a_database_copied_without_its_packs_warns_at_open(tmp_path: Path) -> None:
    path = tmp_path / "orig.tdb"
    with tensordb.open(path) as db:
        db["a"] = {"x": np.random.default_rng(0).random(300_000), "small": 1}
    copy = tmp_path / "copy.tdb"
    shutil.copy(path, copy)  # the packs folder stays behind
    with pytest.warns(tensordb.MissingPacksWarning, match=r"copy.tdb: 1 pack file\(s\) missing \(or not regular "
                                                          r"files\) in .*copy.tdb-packs: 00000001.pack; reading the "
                                                          r"arrays stored there will fail"):
        db = tensordb.open(copy, mode="r")
    with db:
        assert db["a"]["small"] == 1  # what is inline still reads
        with pytest.raises(tensordb.CorruptionError, match="00000001.pack is missing"):
            db["a"]["x"][:10]
        assert any(f.code == "pack-missing" for f in db.check().findings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensordb.open(path, mode="r").close()  # a complete database opens silently
