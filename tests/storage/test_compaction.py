"""Pack compaction and reclaiming on a bare Store: chunk records only, no arrays or trees."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tensordb.codec import Codec
from tensordb.storage.compaction import compact_packs, reclaim, reclaimable_in_pack
from tensordb.storage.packs import HEADER
from tensordb.storage.store import Store

CODEC = Codec("zstd", level=1, shuffle="none")
CHUNKS = [os.urandom(20_000) for _ in range(6)]  # do not compress: each goes to the pack as is


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "c.tdb"), "a", inline_threshold=0)
    try:
        yield s
    finally:
        s.close()


def put_all(store: Store) -> list[int]:
    with store.transaction():
        return [store.chunks.put(raw, CODEC, 1) for raw in CHUNKS]


def drop(store: Store, chunk_ids: list[int]) -> None:
    with store.transaction():
        store.conn.executemany("DELETE FROM chunk WHERE chunk_id = ?", [(c,) for c in chunk_ids])


def read_back(store: Store, chunk_ids: list[int]) -> list[bytes]:
    return [bytes(store.chunks.get(c, CODEC, len(CHUNKS[0]))) for c in chunk_ids]


def test_a_sparse_pack_is_rewritten_its_rows_repointed_and_its_file_reclaimed(store: Store) -> None:
    ids = put_all(store)
    (old,) = store.packs.list_files()
    old_size = os.path.getsize(store.packs.path_of(old))
    drop(store, ids[:4])  # a third of the pack is live: under COMPACT_BELOW
    with store.transaction():
        done = compact_packs(store)
    assert (done.packs_compacted, done.packs_deleted, done.unnamed) == (1, 0, {old})
    live = sum(store.conn.scalar("SELECT size FROM chunk WHERE chunk_id = ?", (c,)) for c in ids[4:])
    assert done.bytes_reclaimed == old_size - live
    assert store.conn.scalar("SELECT count(*) FROM chunk WHERE pack_id = (SELECT pack_id FROM pack WHERE name = ?)",
                             (old,)) == 0
    assert read_back(store, ids[4:]) == CHUNKS[4:]  # checksum-verified reads from the new pack
    assert old in store.packs.list_files()  # the file waits until reclaim
    reclaimed, deferred = reclaim(store, done.unnamed)
    assert deferred == 0 and reclaimed == 0  # counted by the compaction already
    assert old not in store.packs.list_files()
    assert read_back(store, ids[4:]) == CHUNKS[4:]


def test_an_empty_pack_is_dropped_and_a_tail_is_trimmed(store: Store) -> None:
    ids = put_all(store)
    (first,) = store.packs.list_files()
    with store.transaction():
        store.packs.rotate()
        more = [store.chunks.put(os.urandom(20_000), CODEC, 1) for _ in range(3)]
    second = next(n for n in store.packs.list_files() if n != first)
    size = os.path.getsize(store.packs.path_of(second))
    last = store.conn.scalar("SELECT size FROM chunk WHERE chunk_id = ?", (more[-1],))
    drop(store, ids + more[-1:])  # the first pack is empty; the second keeps 2 of 3 chunks, and a dead tail
    with store.transaction():
        done = compact_packs(store)
    assert (done.packs_compacted, done.packs_deleted, done.unnamed) == (0, 1, {first})
    reclaimed, deferred = reclaim(store, done.unnamed)
    assert (reclaimed, deferred) == (last, 0)
    assert store.packs.list_files() == [second]
    assert os.path.getsize(store.packs.path_of(second)) == size - last


def test_reclaimable_bytes_follow_the_compaction_rule() -> None:
    body = 1000
    assert reclaimable_in_pack(len(HEADER) + body, live=400, end=len(HEADER) + 900) == 600  # compacted: all unused
    assert reclaimable_in_pack(len(HEADER) + body, live=600, end=len(HEADER) + 900) == 100  # kept: the tail only
    assert reclaimable_in_pack(len(HEADER) + body, live=1000, end=len(HEADER) + 1000) == 0
