"""Direct tests of the storage layer (no numpy): Store, ChunkStore, PackStore."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tensordb.codec import Codec
from tensordb.errors import CorruptionError, FormatError, ReadOnlyError
from tensordb.storage import chunks
from tensordb.storage.chunks import DEFAULT_INLINE_THRESHOLD, Counters, checksum, content_key
from tensordb.storage.packs import HEADER
from tensordb.storage.store import Store

CODEC = Codec("zstd", level=5, shuffle="byte")
COMPRESSIBLE = b"tensordb " * 2000  # compresses to a few dozen bytes
RANDOM = os.urandom(50_000)  # does not compress


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "s.tdb")


@pytest.fixture
def store(store_path: str):
    s = Store(store_path, "a", inline_threshold=1000)
    try:
        yield s
    finally:
        s.close()


def count(store: Store, sql: str, params: tuple = ()) -> int:
    return int(store.conn.scalar(sql, params))


def pack_file_sizes(store: Store) -> dict[str, int]:
    return {n: os.path.getsize(store.packs.path_of(n)) for n in store.packs.list_files()}


# --------------------------------------------------------------------------- Store


def test_store_creates_a_tensordb_file(store_path: str) -> None:
    s = Store(store_path, "a")
    try:
        assert not s.readonly
        assert s.chunks.inline_threshold == DEFAULT_INLINE_THRESHOLD
        assert isinstance(s.counters, Counters)
        assert s.counters.snapshot() == {
            "chunks_decoded": 0, "chunks_partly_decoded": 0, "chunks_written": 0, "chunk_bytes_written": 0,
            "chunks_deduplicated": 0, "pack_bytes_written": 0, "pack_reads": 0,
        }
        assert s.conn.scalar("PRAGMA journal_mode") == "wal"
        assert s.conn.scalar("PRAGMA user_version") >= 1
        assert s.packs.dir == store_path + "-packs"
    finally:
        s.close()
    with open(store_path, "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"
    # read-only reopen: transactions are refused
    r = Store(store_path, "r")
    try:
        assert r.readonly
        with pytest.raises(ReadOnlyError):
            with r.transaction():
                pass
    finally:
        r.close()


def test_store_modes_and_bad_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.tdb")
    with pytest.raises(FileNotFoundError):
        Store(missing, "r")
    with pytest.raises(FileNotFoundError):
        Store(missing, "r+")
    with pytest.raises(ValueError):
        Store(missing, "q")
    Store(missing, "x").close()
    with pytest.raises(FileExistsError):
        Store(missing, "x")
    garbage = tmp_path / "garbage.tdb"
    garbage.write_bytes(b"\x00\x01garbage" * 500)
    before = garbage.read_bytes()
    for mode in ("a", "r"):
        with pytest.raises(FormatError):
            Store(str(garbage), mode)
    assert garbage.read_bytes() == before


def test_inline_threshold_is_remembered(store_path: str) -> None:
    Store(store_path, "a", inline_threshold=123).close()
    s = Store(store_path, "a")
    try:
        assert s.chunks.inline_threshold == 123
    finally:
        s.close()
    with pytest.raises(ValueError):
        Store(store_path, "a", inline_threshold=-1)


# --------------------------------------------------------------------------- ChunkStore


def test_put_deduplicates(store: Store) -> None:
    with store.transaction():
        first = store.chunks.put(COMPRESSIBLE, CODEC, 1)
        second = store.chunks.put(bytes(COMPRESSIBLE), CODEC, 1)
        other = store.chunks.put(COMPRESSIBLE + b"!", CODEC, 1)
    assert first == second != other
    assert count(store, "SELECT count(*) FROM chunk") == 2
    key = content_key(CODEC.fingerprint(1), COMPRESSIBLE)
    assert count(store, "SELECT count(*) FROM chunk WHERE hash = ?", (key,)) == 1
    assert store.counters.chunks_written == 2
    assert store.counters.chunks_deduplicated == 1
    # a put adds no reference by itself
    assert count(store, "SELECT refcount FROM chunk WHERE chunk_id = ?", (first,)) == 0
    # the same bytes under another codec are another chunk
    with store.transaction():
        third = store.chunks.put(COMPRESSIBLE, Codec("lz4", level=1, shuffle="none"), 1)
    assert third not in (first, other)
    assert bytes(store.chunks.get(first, CODEC, len(COMPRESSIBLE))) == COMPRESSIBLE
    assert bytes(store.chunks.get(third, Codec("lz4", 1, "none"), len(COMPRESSIBLE))) == COMPRESSIBLE
    assert store.counters.chunks_decoded == 2


def test_inline_or_pack_by_threshold(store: Store) -> None:
    with store.transaction():
        small = store.chunks.put(COMPRESSIBLE, CODEC, 1)
        large = store.chunks.put(RANDOM, CODEC, 1)
    data, pack_id, offset, size = store.conn.one(
        "SELECT data, pack_id, offset, size FROM chunk WHERE chunk_id = ?", (small,))
    assert data is not None and pack_id is None and offset is None and size <= 1000
    data, pack_id, offset, size = store.conn.one(
        "SELECT data, pack_id, offset, size FROM chunk WHERE chunk_id = ?", (large,))
    assert data is None and pack_id is not None and offset >= len(HEADER) and size > 1000
    files = pack_file_sizes(store)
    assert len(files) == 1
    assert list(files.values()) == [len(HEADER) + size]
    assert store.counters.pack_bytes_written == size
    with open(store.packs.path_of(next(iter(files))), "rb") as f:
        assert f.read(8) == HEADER[:8]
    assert bytes(store.chunks.get(large, CODEC, len(RANDOM))) == RANDOM
    assert bytes(store.chunks.get(small, CODEC, len(COMPRESSIBLE))) == COMPRESSIBLE
    assert store.counters.pack_reads == 1


def test_threshold_zero_puts_everything_in_packs(store_path: str) -> None:
    s = Store(store_path, "a", inline_threshold=0)
    try:
        with s.transaction():
            cid = s.chunks.put(COMPRESSIBLE, CODEC, 1)
        assert s.conn.scalar("SELECT pack_id FROM chunk WHERE chunk_id = ?", (cid,)) is not None
        assert bytes(s.chunks.get(cid, CODEC, len(COMPRESSIBLE))) == COMPRESSIBLE
    finally:
        s.close()


def test_checksum_mismatch_is_corruption(store: Store) -> None:
    with store.transaction():
        inline = store.chunks.put(COMPRESSIBLE, CODEC, 1)
        packed = store.chunks.put(RANDOM, CODEC, 1)
    # damage the inline copy
    data = bytearray(store.conn.scalar("SELECT data FROM chunk WHERE chunk_id = ?", (inline,)))
    data[len(data) // 2] ^= 0xFF
    store.conn.execute("UPDATE chunk SET data = ? WHERE chunk_id = ?", (bytes(data), inline))
    with pytest.raises(CorruptionError, match="checksum"):
        store.chunks.get(inline, CODEC, len(COMPRESSIBLE))
    with pytest.raises(CorruptionError):
        store.chunks.verify(inline, CODEC, 1, len(COMPRESSIBLE))
    # damage the pack copy
    pack_id, offset, size = store.conn.one("SELECT pack_id, offset, size FROM chunk WHERE chunk_id = ?", (packed,))
    path = store.packs.path_of(store.packs.name_of(pack_id))
    with open(path, "r+b") as f:
        f.seek(offset + size - 1)
        last = f.read(1)
        f.seek(offset + size - 1)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(CorruptionError, match="checksum"):
        store.chunks.get(packed, CODEC, len(RANDOM))
    # a wrong recorded checksum is caught too
    with store.transaction():
        other = store.chunks.put(b"x" * 100, CODEC, 1)
    store.conn.execute("UPDATE chunk SET checksum = checksum + 1 WHERE chunk_id = ?", (other,))
    with pytest.raises(CorruptionError):
        store.chunks.stored_bytes(other)
    # a chunk record that does not exist
    with pytest.raises(CorruptionError):
        store.chunks.get(10_000, CODEC, 10)


def test_checksum_helper() -> None:
    assert checksum(b"abc") == checksum(memoryview(b"abc"))
    assert checksum(b"abc") != checksum(b"abd")
    assert -(2**63) <= checksum(os.urandom(64)) < 2**63


def test_truncated_pack_is_corruption(store: Store) -> None:
    with store.transaction():
        packed = store.chunks.put(RANDOM, CODEC, 1)
    pack_id, offset, size = store.conn.one("SELECT pack_id, offset, size FROM chunk WHERE chunk_id = ?", (packed,))
    path = store.packs.path_of(store.packs.name_of(pack_id))
    with open(path, "r+b") as f:
        f.truncate(offset + size // 2)
    with pytest.raises(CorruptionError):
        store.chunks.get(packed, CODEC, len(RANDOM))
    with pytest.raises(CorruptionError):
        store.packs.read(pack_id, offset, size)


# --------------------------------------------------------------------------- PackStore names


@pytest.mark.parametrize(
    "name",
    [
        "../x.pack",
        "../00000001.pack",
        "00000001.pack/../../x",
        "/etc/passwd",
        "sub/00000001.pack",
        "0000001.pack",
        "00000000000000000001.pack",  # 20 digits: longer than any pack id
        "00000001.pack\n",
        "00000001.packx",
        "0000000a.pack",
        "",
        ".",
        "..",
        None,
        1,
        b"00000001.pack",
    ],
)
def test_pack_names_are_validated(store: Store, name: object) -> None:
    with pytest.raises(CorruptionError):
        store.packs.path_of(name)


def test_pack_name_through_a_symlink_outside_is_refused(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(HEADER + b"secret")
    os.makedirs(store.packs.dir, exist_ok=True)
    os.symlink(outside, os.path.join(store.packs.dir, "00000042.pack"))
    with pytest.raises(CorruptionError):
        store.packs.path_of("00000042.pack")
    assert store.packs.path_of("00000043.pack") == os.path.join(store.packs.dir, "00000043.pack")


def test_bad_pack_name_in_the_database_is_never_followed(store: Store, tmp_path: Path) -> None:
    with store.transaction():
        packed = store.chunks.put(RANDOM, CODEC, 1)
    pack_id = store.conn.scalar("SELECT pack_id FROM chunk WHERE chunk_id = ?", (packed,))
    store.packs.close()  # drop cached readers
    store.conn.execute("UPDATE pack SET name = '../../outside.pack' WHERE pack_id = ?", (pack_id,))
    with pytest.raises(CorruptionError):
        store.chunks.get(packed, CODEC, len(RANDOM))


# --------------------------------------------------------------------------- rollback


def test_rollback_truncates_appended_pack_bytes(store: Store) -> None:
    with store.transaction():
        kept = store.chunks.put(RANDOM, CODEC, 1)
    committed = pack_file_sizes(store)
    assert committed and all(size > len(HEADER) for size in committed.values())

    with pytest.raises(RuntimeError):
        with store.transaction():
            store.chunks.put(os.urandom(40_000), CODEC, 1)
            store.chunks.put(os.urandom(40_000), CODEC, 1)
            assert sum(pack_file_sizes(store).values()) > sum(committed.values()) + 80_000
            raise RuntimeError("abort")
    assert pack_file_sizes(store) == committed
    assert count(store, "SELECT count(*) FROM chunk") == 1
    assert bytes(store.chunks.get(kept, CODEC, len(RANDOM))) == RANDOM

    # a savepoint rolled back inside a committed transaction: only its bytes go
    outer_bytes = os.urandom(30_000)
    with store.transaction():
        outer = store.chunks.put(outer_bytes, CODEC, 1)
        after_outer = pack_file_sizes(store)
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.chunks.put(os.urandom(30_000), CODEC, 1)
                raise RuntimeError("inner")
        assert pack_file_sizes(store) == after_outer
    assert pack_file_sizes(store) == after_outer
    assert count(store, "SELECT count(*) FROM chunk") == 2
    assert bytes(store.chunks.get(outer, CODEC, len(outer_bytes))) == outer_bytes
    # and appends continue right after the live bytes
    with store.transaction():
        later = store.chunks.put(os.urandom(20_000), CODEC, 1)
    end = store.conn.one("SELECT offset FROM chunk WHERE chunk_id = ?", (later,))[0]
    assert end == sum(after_outer.values())


def test_rollback_of_first_pack(store_path: str) -> None:
    """A transaction that created the first pack and rolled back leaves no live pack bytes."""
    s = Store(store_path, "a", inline_threshold=0)
    try:
        with pytest.raises(RuntimeError):
            with s.transaction():
                s.chunks.put(RANDOM, CODEC, 1)
                raise RuntimeError("abort")
        assert count(s, "SELECT count(*) FROM pack") == 0
        assert count(s, "SELECT count(*) FROM chunk") == 0
        assert all(size <= len(HEADER) for size in pack_file_sizes(s).values())
        with s.transaction():
            cid = s.chunks.put(RANDOM, CODEC, 1)
        assert bytes(s.chunks.get(cid, CODEC, len(RANDOM))) == RANDOM
    finally:
        s.close()


def test_put_many_deduplicates_within_the_batch_and_against_stored_chunks(store: Store) -> None:
    """Small chunks and big ones (grouped for the pool), repeated and already stored."""
    rng = np.random.default_rng(7)
    raws = [rng.integers(0, 4, size=n, dtype="uint8").tobytes() for n in (10, 300, 5000, 70_000, 200_000)]
    with store.transaction():
        first = store.chunks.put(raws[3], CODEC, 1)
    items = [(raw, CODEC, 1) for raw in raws + raws[::-1]]
    before = store.counters.snapshot()
    with store.transaction():
        ids = store.chunks.put_many(items)
    assert ids[:5] == ids[5:][::-1] and len(set(ids[:5])) == 5 and ids[3] == first
    assert store.counters.chunks_written - before["chunks_written"] == 4
    assert store.counters.chunks_deduplicated - before["chunks_deduplicated"] == 6
    for chunk_id, raw in zip(ids, raws):
        assert bytes(store.chunks.get(chunk_id, CODEC, len(raw))) == raw
    # the big ones went to pack files (inline threshold 1000), the small ones inline
    assert count(store, "SELECT count(*) FROM chunk WHERE pack_id IS NOT NULL") == 3


@pytest.mark.parametrize("total", [900, 300_000])
def test_put_many_gives_each_chunk_its_own_bytes(store: Store, total: int) -> None:
    """Chunks of different sizes, compressed in the caller (a small write) or by the pool in groups."""
    rng = np.random.default_rng(total)
    sizes = rng.integers(1, 2 * total // 200, size=200)
    raws = [rng.integers(0, 4, size=int(n), dtype="uint8").tobytes() for n in sizes]
    with store.transaction():
        ids = store.chunks.put_many([(raw, CODEC, 1) for raw in raws])
    assert len(set(ids)) == len(set(raws))
    for chunk_id, raw in zip(ids, raws):
        assert bytes(store.chunks.get(chunk_id, CODEC, len(raw))) == raw


@pytest.mark.parametrize(("sizes", "groups"), [
    ([], []),
    ([3, 3, 3, 3], [[0, 1, 2, 3]]),
    ([10, 1, 20], [[0], [1, 2]]),
    ([4, 4, 4, 1], [[0, 1, 2], [3]]),
    ([1, 1], [[0, 1]]),
])
def test_chunks_go_to_the_pool_in_runs_of_a_minimum_size(sizes: list[int], groups: list[list[int]]) -> None:
    assert chunks._grouped(list(range(len(sizes))), sizes, 10) == groups
