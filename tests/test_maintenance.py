"""Tests of tensordb.maintenance: gc(), pack compaction, check() against
deliberate damage ("mayhem"), stats() and bundle()."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from strategies import assert_tree_equal

import tensordb

MiB = 2**20


def disk_bytes(path: Path) -> int:
    """Database file + WAL + every file in the pack folder."""
    total = 0
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    packs = Path(str(path) + "-packs")
    if packs.is_dir():
        total += sum(f.stat().st_size for f in packs.iterdir())
    return total


def pack_dir_bytes(path: Path) -> int:
    packs = Path(str(path) + "-packs")
    return sum(f.stat().st_size for f in packs.iterdir()) if packs.is_dir() else 0


def load_all(db: tensordb.Database) -> dict[str, Any]:
    return {name: db[name].load() for name in db}


# --------------------------------------------------------------------------- 11. gc


def test_gc_after_deleting_trees(db_path: Path) -> None:
    rng = np.random.default_rng(11)
    with tensordb.open(db_path) as db:
        for i in range(6):
            db[f"s{i}"] = {
                "time": i,
                "big": rng.standard_normal(150_000),  # pack chunks
                "small": rng.integers(0, 10, 2000).astype("i1"),  # inline chunks
                "shared": np.arange(1000.0),  # the same in every tree
            }
        keep = {name: db[name].load() for name in ("s1", "s4")}
    size_before = disk_bytes(db_path)

    with tensordb.open(db_path) as db:
        for name in ("s0", "s2", "s3", "s5"):
            del db[name]
        result = db.gc()
        assert result["arrays_removed"] == 4 * 3
        assert result["chunks_removed"] > 0
        assert result["bytes_reclaimed"] > 0
        assert_tree_equal(load_all(db), keep)
        report = db.check()
        assert report.ok, str(report)
        assert report.reclaimable_bytes == 0
        stats = db.stats()
        assert stats["arrays"] == 6 and stats.get("unreferenced_arrays", 0) == 0
        # a second gc has nothing left to do
        again = db.gc()
        assert again["arrays_removed"] == again["chunks_removed"] == again["bytes_reclaimed"] == 0
    size_after = disk_bytes(db_path)
    assert size_after < size_before * 0.6, (size_before, size_after)

    with tensordb.open(db_path, mode="r") as db:
        assert sorted(db) == ["s1", "s4"]
        assert_tree_equal(load_all(db), keep)
        assert db.check().ok


def test_gc_truncates_pack_tail_and_frees_inline_chunks(db_path: Path) -> None:
    """Deleting the newest trees leaves dead bytes at the end of the pack: gc cuts them."""
    rng = np.random.default_rng(113)
    with tensordb.open(db_path) as db:
        for i in range(5):
            db[f"s{i}"] = {"big": rng.standard_normal(100_000), "small": rng.integers(0, 5, 3000).astype("i1")}
        keep = {name: db[name].load() for name in ("s0", "s1", "s2")}
    size_before = disk_bytes(db_path)
    packs_before = pack_dir_bytes(db_path)
    with tensordb.open(db_path) as db:
        del db["s3"]
        del db["s4"]
        assert db.check().reclaimable_bytes == 0  # nothing is garbage before gc: arrays are only unreferenced
        result = db.gc()
        assert result["arrays_removed"] == 4
        assert result["chunks_removed"] > 0
        assert result["bytes_reclaimed"] > 0
        assert_tree_equal(load_all(db), keep)
        report = db.check()
        assert report.ok and report.reclaimable_bytes == 0, str(report)
    assert pack_dir_bytes(db_path) < packs_before * 0.7
    assert disk_bytes(db_path) < size_before
    with tensordb.open(db_path, mode="r") as db:
        assert_tree_equal(load_all(db), keep)
        assert db.check().ok


def test_gc_compacts_sparse_packs(db_path: Path) -> None:
    rng = np.random.default_rng(111)
    keep: dict[str, Any] = {}
    with tensordb.open(db_path) as db:
        db["dead"] = {}
        db["live"] = {}
        # interleave the chunks of both trees in the same pack file; 60% of the bytes die
        for i in range(10):
            db["dead"].set(f"/d{i}", rng.standard_normal(3 * 16_384), chunks=(16_384,))
            if i % 3 != 2:
                data = rng.standard_normal(2 * 16_384)
                db["live"].set(f"/l{i}", data, chunks=(16_384,))
                keep[f"l{i}"] = data
        stats = db.stats()
        assert stats["inline_bytes"] == 0  # every chunk is a pack chunk
        assert stats["pack_files"] >= 1
    packs_before = pack_dir_bytes(db_path)
    with tensordb.open(db_path) as db:
        live_bytes = sum(db["live"][f"/{k}"].stored_nbytes for k in keep)
        del db["dead"]
        result = db.gc()
        assert result["arrays_removed"] == 10
        assert result["chunks_removed"] == 30
        assert result["bytes_reclaimed"] > 0
        assert_tree_equal(db["live"].load(), keep)
        report = db.check()
        assert report.ok, str(report)
    packs_after = pack_dir_bytes(db_path)
    assert packs_after < packs_before
    assert packs_after <= live_bytes + 16 * 4  # only live chunks (and pack headers) remain
    with tensordb.open(db_path, mode="r") as db:
        assert_tree_equal(db["live"].load(), keep)
        assert db.check().ok


def test_gc_keeps_everything_referenced(db: tensordb.Database) -> None:
    rng = np.random.default_rng(112)
    x = rng.standard_normal(100_000)
    db["a"] = {"x": x}
    db["b"] = {"x": db["a"]["/x"]}  # shared
    db["a"]["/x"][0:10] = 0.0  # a gets its own copy of chunk 0
    del db["a"]
    result = db.gc()
    assert result["arrays_removed"] == 1
    np.testing.assert_array_equal(db["b"]["/x"][...], x)
    assert db.check().ok


# --------------------------------------------------------------------------- 12. check()


@pytest.fixture
def damaged(db_path: Path) -> dict[str, Any]:
    """A closed database with pack and inline chunks, and its expected content."""
    rng = np.random.default_rng(12)
    with tensordb.open(db_path) as db:
        db["t"] = {"meta": {"n": 1}, "data": {}}
        db["t"].set("/data/big", rng.standard_normal(200_000), chunks=(25_000,))  # 8 pack chunks
        db["t"].set("/data/small", np.arange(300, dtype="i4"), chunks=(100,))  # 3 inline chunks
        db["u"] = {"other": rng.standard_normal(50_000)}
        report = db.check()
        assert report.ok and report.findings == [], str(report)
        assert db.stats()["pack_bytes"] > 0 and db.stats()["inline_bytes"] > 0
        expected = load_all(db)
    return {"path": db_path, "expected": expected}


def _pack_chunk(path: Path, array_path: str = "/data/big") -> tuple[int, int, int, int, int]:
    """(array id, chunk id, pack id, offset, size) of one live pack chunk of ``array_path`` in tree t."""
    with tensordb.open(path, mode="r") as db:
        array_id = db["t"][array_path].array_id
        rows = db._store.conn.execute(
            "SELECT c.chunk_id, c.pack_id, c.offset, c.size FROM chunk c JOIN chunk_ref r ON r.chunk_id = c.chunk_id "
            "WHERE r.array_id = ? AND c.pack_id IS NOT NULL ORDER BY c.offset", (array_id,)
        ).fetchall()
        assert len(rows) >= 2
        chunk_id, pack_id, offset, size = rows[len(rows) // 2]
        name = db._store.conn.execute("SELECT name FROM pack WHERE pack_id = ?", (pack_id,)).fetchall()[0][0]
        assert os.path.exists(os.path.join(db.pack_dir, name))
    return array_id, chunk_id, pack_id, offset, size


def _pack_file(path: Path, pack_id: int) -> Path:
    with tensordb.open(path, mode="r") as db:
        name = db._store.conn.execute("SELECT name FROM pack WHERE pack_id = ?", (pack_id,)).fetchall()[0][0]
        return Path(db.pack_dir) / name


def _errors_naming(report: Any, array_id: int, chunk_id: int | None) -> list[Any]:
    return [
        f for f in report.findings
        if f.severity == "error" and f.array_id == array_id and (chunk_id is None or f.chunk_id == chunk_id)
    ]


def _assert_other_data_intact(db: tensordb.Database, expected: dict[str, Any]) -> None:
    assert_tree_equal(db["u"].load(), expected["u"])
    np.testing.assert_array_equal(db["t"]["/data/small"][...], expected["t"]["data"]["small"])
    assert db["t"]["/meta/n"] == 1


def test_check_flipped_byte_in_pack(damaged: dict[str, Any]) -> None:
    path, expected = damaged["path"], damaged["expected"]
    array_id, chunk_id, pack_id, offset, size = _pack_chunk(path)
    pack = _pack_file(path, pack_id)
    with open(pack, "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0x40]))
    with tensordb.open(path) as db:
        report = db.check()
        assert not report.ok
        found = _errors_naming(report, array_id, chunk_id)
        assert found, str(report)
        assert any(f.tree == "t" and f.path == "/data/big" for f in found), str(report)
        big = db["t"]["/data/big"]
        with pytest.raises(tensordb.CorruptionError):
            big[...]
        with pytest.raises(tensordb.CorruptionError):
            db["t"].load()
        # chunks that are not damaged still read
        np.testing.assert_array_equal(big[:25_000], expected["t"]["data"]["big"][:25_000])
        _assert_other_data_intact(db, expected)


def test_check_truncated_pack(damaged: dict[str, Any]) -> None:
    path, expected = damaged["path"], damaged["expected"]
    array_id, chunk_id, pack_id, offset, size = _pack_chunk(path)
    pack = _pack_file(path, pack_id)
    with open(pack, "r+b") as f:
        f.truncate(offset + size // 2)  # cuts this chunk and every one after it
    with tensordb.open(path) as db:
        report = db.check()
        assert not report.ok
        assert _errors_naming(report, array_id, chunk_id), str(report)
        with pytest.raises(tensordb.CorruptionError):
            db["t"]["/data/big"][...]
        np.testing.assert_array_equal(db["t"]["/data/big"][:1000], expected["t"]["data"]["big"][:1000])


def test_check_missing_pack_file(damaged: dict[str, Any]) -> None:
    path = damaged["path"]
    array_id, chunk_id, pack_id, _, _ = _pack_chunk(path)
    _pack_file(path, pack_id).unlink()
    with tensordb.open(path) as db:
        report = db.check()
        assert not report.ok
        assert _errors_naming(report, array_id, chunk_id), str(report)
        with pytest.raises(tensordb.CorruptionError):
            db["t"]["/data/big"][...]


def test_check_chunk_refcount_off_by_one(damaged: dict[str, Any]) -> None:
    path, expected = damaged["path"], damaged["expected"]
    array_id, chunk_id, _, _, _ = _pack_chunk(path)
    with tensordb.open(path) as db:
        db._store.conn.execute("UPDATE chunk SET refcount = refcount + 1 WHERE chunk_id = ?", (chunk_id,))
        report = db.check()
        assert not report.ok
        found = _errors_naming(report, array_id, chunk_id)
        assert found, str(report)
        assert any(f.tree == "t" and f.path == "/data/big" for f in found)
        # the chunk bytes are intact: reading gives the right data, never wrong data
        np.testing.assert_array_equal(db["t"]["/data/big"][...], expected["t"]["data"]["big"])


def test_check_array_refcount_off_by_one(damaged: dict[str, Any]) -> None:
    path, expected = damaged["path"], damaged["expected"]
    with tensordb.open(path) as db:
        array_id = db["t"]["/data/small"].array_id
        db._store.conn.execute("UPDATE array SET refcount = refcount + 1 WHERE array_id = ?", (array_id,))
        report = db.check()
        assert not report.ok
        found = _errors_naming(report, array_id, None)
        assert found, str(report)
        assert any(f.tree == "t" and f.path == "/data/small" for f in found), str(report)
        np.testing.assert_array_equal(db["t"]["/data/small"][...], expected["t"]["data"]["small"])


@pytest.mark.parametrize("where", ["pack", "inline"])
def test_check_missing_chunk_record(damaged: dict[str, Any], where: str) -> None:
    path, expected = damaged["path"], damaged["expected"]
    array_path = "/data/big" if where == "pack" else "/data/small"
    with tensordb.open(path, mode="r") as db:
        array_id = db["t"][array_path].array_id
        chunk_id = db._store.conn.execute(
            "SELECT chunk_id FROM chunk_ref WHERE array_id = ? ORDER BY coord LIMIT 1", (array_id,)
        ).fetchall()[0][0]
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys = OFF")
    con.execute("DELETE FROM chunk WHERE chunk_id = ?", (chunk_id,))
    con.commit()
    con.close()
    with tensordb.open(path) as db:
        report = db.check()
        assert not report.ok
        found = _errors_naming(report, array_id, chunk_id)
        assert found, str(report)
        assert any(f.tree == "t" and f.path == array_path for f in found), str(report)
        with pytest.raises(tensordb.CorruptionError):
            db["t"][array_path][...]
        if where == "pack":
            _assert_other_data_intact(db, expected)
        else:
            np.testing.assert_array_equal(db["t"]["/data/big"][...], expected["t"]["data"]["big"])
        assert_tree_equal(db["u"].load(), expected["u"])


def test_check_flipped_byte_inline(damaged: dict[str, Any]) -> None:
    path = damaged["path"]
    with tensordb.open(path) as db:
        array_id = db["t"]["/data/small"].array_id
        chunk_id, data = db._store.conn.execute(
            "SELECT c.chunk_id, c.data FROM chunk c JOIN chunk_ref r ON r.chunk_id = c.chunk_id "
            "WHERE r.array_id = ? LIMIT 1", (array_id,)
        ).fetchall()[0]
        damaged_bytes = bytearray(data)
        damaged_bytes[len(damaged_bytes) // 2] ^= 1
        db._store.conn.execute("UPDATE chunk SET data = ? WHERE chunk_id = ?", (bytes(damaged_bytes), chunk_id))
        report = db.check()
        assert _errors_naming(report, array_id, chunk_id), str(report)
        with pytest.raises(tensordb.CorruptionError):
            db["t"]["/data/small"][...]


def test_healthy_database_checks_ok(damaged: dict[str, Any]) -> None:
    with tensordb.open(damaged["path"], mode="r") as db:
        report = db.check()
        assert report.ok
        assert not [f for f in report.findings if f.severity == "error"]
        assert report.chunks_checked == db.stats()["chunks"]


# --------------------------------------------------------------------------- 8. bundle


def test_bundle_is_self_contained(tmp_path: Path) -> None:
    src = tmp_path / "src" / "runs.tdb"
    src.parent.mkdir()
    rng = np.random.default_rng(8)
    with tensordb.open(src) as db:
        db["small"] = {"a": np.arange(100, dtype="i2"), "s": "text", "n": None}
        db["large"] = {"a": rng.standard_normal(400_000), "list": [1, 2.5, {"b": rng.standard_normal(30_000)}]}
        db["copy"] = db["large"]
        assert db.stats()["pack_bytes"] > 0 and os.listdir(db.pack_dir)
        expected = load_all(db)
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        db.bundle(out_dir / "share.tdb")
        assert sorted(os.listdir(out_dir)) == ["share.tdb"]  # one file, no pack folder
        with pytest.raises(FileExistsError):
            db.bundle(out_dir / "share.tdb")
    shutil.rmtree(str(src) + "-packs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = Path(shutil.move(str(out_dir / "share.tdb"), str(elsewhere / "moved.tdb")))
    with tensordb.open(moved) as db:
        assert sorted(db) == sorted(expected)
        assert_tree_equal(load_all(db), expected)
        report = db.check()
        assert report.ok, str(report)
        stats = db.stats()
        assert stats["pack_bytes"] == 0 and stats["inline_bytes"] == stats["stored_bytes"] > 0
        assert db["copy"]["/a"].array_id == db["large"]["/a"].array_id  # sharing survives
    # the original, without its packs, is now damaged, and says so
    with tensordb.open(src) as db:
        assert not db.check().ok
        with pytest.raises(tensordb.CorruptionError):
            db["large"]["/a"][...]


def test_gc_dry_run_changes_nothing_and_predicts_gc(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "dry.tdb") as db:
        rng = np.random.default_rng(3)
        shared = rng.standard_normal(50_000)
        db["a"] = {"x": shared, "y": rng.standard_normal(70_000)}
        db["b"] = {"x": shared}
        del db["a"]
        before = db.stats()
        preview = db.gc(dry_run=True)
        assert db.stats() == before
        assert preview["arrays_removed"] == 2 and preview["chunks_removed"] == 1  # "x" is still used by "b"
        done = db.gc()
        assert done["arrays_removed"] == preview["arrays_removed"]
        assert done["chunks_removed"] == preview["chunks_removed"]
        assert db.check().ok


def test_bundle_is_one_file_that_reads_without_creating_others(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rng = np.random.default_rng(5)
    value = {"big": rng.standard_normal(300_000), "small": np.arange(5)}
    with tensordb.open(src / "a.tdb") as db:
        db["t"] = value
        assert os.listdir(db.pack_dir)  # the big array lives in a pack
        db.bundle(out_dir / "share.tdb")
    assert os.listdir(out_dir) == ["share.tdb"]
    with tensordb.open(out_dir / "share.tdb", mode="r") as db:
        assert_tree_equal(db["t"].load(), value)
    assert os.listdir(out_dir) == ["share.tdb"]
