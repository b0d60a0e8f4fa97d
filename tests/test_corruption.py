"""Corruption detection: every single-bit flip in a stored chunk is a CorruptionError on read and a finding of check().

Three chunks are flipped bit by bit, each one through another read path:
one inline in the SQLite file (an array slice), one in a pack file (a whole
tree load), and the inline 0-d chunk that holds a complex numpy scalar (read
as a scalar value).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb

SEED = 8


@dataclass
class Target:
    """One stored chunk to damage, and how a user would read it."""

    name: str
    chunk_id: int
    size: int
    read: Callable[[tensordb.Database], Any]


def _build(path: Path) -> None:
    rng = np.random.default_rng(SEED)
    with tensordb.open(path, mode="x", inline_threshold=256) as db:
        db["inline"] = {"a": rng.integers(0, 4, 40).astype("<i4")}  # compresses to well under 256 bytes
        db["packed"] = {"b": rng.standard_normal(60)}  # 480 incompressible bytes: a pack
        db["scalar"] = {"z": np.complex128(1.5 - 2.25j)}  # a 0-d array, inline


def _chunk_of(con: sqlite3.Connection, tree: str, path: str) -> tuple[int, int, bool]:
    row = con.execute(
        "SELECT c.chunk_id, c.size, c.data IS NOT NULL FROM nodes n JOIN chunk_ref r ON r.array_id = n.array_id "
        "JOIN chunk c ON c.chunk_id = r.chunk_id WHERE n.tree = ? AND n.path = ?", (tree, path)
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), bool(row[2])


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, sqlite3.Connection, list[Target]]]:
    path = tmp_path_factory.mktemp("flips") / "c.tdb"
    _build(path)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous = OFF")  # the attacker's edits need no durability
    targets = []
    for name, tree, ptr, inline, read in [
        ("inline", "inline", "/a", True, lambda db: db["inline"]["/a"][5:9]),
        ("pack", "packed", "/b", False, lambda db: db["packed"].load()["b"]),
        ("scalar", "scalar", "/z", True, lambda db: db["scalar"]["z"]),
    ]:
        chunk_id, size, is_inline = _chunk_of(con, tree, ptr)
        assert is_inline == inline, name
        targets.append(Target(name, chunk_id, size, read))
    yield path, con, targets
    con.close()


def _flips(con: sqlite3.Connection, path: Path, target: Target) -> Iterator[int]:
    """Flip every bit of the target's stored bytes in turn (restoring each), yielding the bit index."""
    data, pack, offset = con.execute(
        "SELECT c.data, p.name, c.offset FROM chunk c LEFT JOIN pack p ON p.pack_id = c.pack_id "
        "WHERE c.chunk_id = ?", (target.chunk_id,)).fetchone()
    if data is not None:
        original = bytes(data)
        for bit in range(len(original) * 8):
            damaged = bytearray(original)
            damaged[bit // 8] ^= 1 << (bit % 8)
            con.execute("UPDATE chunk SET data = ? WHERE chunk_id = ?", (bytes(damaged), target.chunk_id))
            yield bit
        con.execute("UPDATE chunk SET data = ? WHERE chunk_id = ?", (original, target.chunk_id))
        return
    fd = os.open(os.path.join(str(path) + "-packs", pack), os.O_RDWR)
    try:
        original = os.pread(fd, target.size, offset)
        for bit in range(len(original) * 8):
            byte = original[bit // 8] ^ (1 << (bit % 8))
            os.pwrite(fd, bytes([byte]), offset + bit // 8)
            yield bit
            os.pwrite(fd, original[bit // 8: bit // 8 + 1], offset + bit // 8)
    finally:
        os.close(fd)


@pytest.mark.parametrize("which", ["inline", "pack", "scalar"])
def test_every_bit_flip_is_detected_on_read_and_by_check(
    damaged: tuple[Path, sqlite3.Connection, list[Target]], which: str
) -> None:
    path, con, targets = damaged
    target = next(t for t in targets if t.name == which)
    with tensordb.open(path, mode="r") as db:
        good = target.read(db)
        assert db.check().ok
        flipped = 0
        for bit in _flips(con, path, target):
            with pytest.raises(tensordb.CorruptionError, match="checksum") as info:
                target.read(db)
            assert str(path) in str(info.value), bit
            report = db.check()
            hits = [f for f in report.findings if f.code == "chunk-corrupt" and f.chunk_id == target.chunk_id]
            assert not report.ok and hits, (which, bit, report.findings)
            assert hits[0].tree is not None and hits[0].array_id is not None, hits[0]
            flipped += 1
        assert flipped == target.size * 8 > 0
        # restored: the same bytes come back, and check() is clean again
        again = target.read(db)
        assert np.asarray(again).tobytes() == np.asarray(good).tobytes()
        assert db.check().ok
