"""Content-addressed chunk records: hashing, dedup, inline-or-pack placement, verified reads.

A chunk's **content key** is BLAKE3-256 over the codec fingerprint and the
chunk's raw (uncompressed) bytes, so identical data written with the same
codec is stored once, whoever writes it and whatever Blosc2's (not
byte-deterministic) output looks like. A chunk's **checksum** is xxh3-64 of
its stored (compressed) bytes, verified on every read before decompression.

Compressed chunks up to ``inline_threshold`` bytes live in the ``chunk.data``
BLOB; larger ones are appended to a pack file. Nothing here knows about
arrays' shapes or trees: a chunk is bytes with a reference count.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import blake3
import xxhash

from ..errors import CorruptionError
from .connection import Connection
from .packs import PackStore

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from ..codec import Codec

__all__ = ["ChunkStore", "Counters", "content_key", "checksum", "thread_pool", "THREADS",
           "DEFAULT_INLINE_THRESHOLD"]

#: Compressed chunks of at most this many bytes are stored inline in SQLite.
DEFAULT_INLINE_THRESHOLD = 4096


class Counters:
    """Storage events, for tests and tools that must count rather than time.

    ``chunks_decoded``: chunks decompressed (``chunks_partly_decoded``: of
    which only the blocks a selection touches); ``chunks_written``: new chunk
    records; ``chunk_bytes_written``: their stored bytes; ``chunks_deduplicated``:
    writes that found an identical chunk already stored; ``pack_bytes_written``
    and ``pack_reads``: pack file traffic.
    """

    def __init__(self) -> None:
        self.chunks_decoded = 0
        self.chunks_partly_decoded = 0
        self.chunks_written = 0
        self.chunk_bytes_written = 0
        self.chunks_deduplicated = 0
        self.pack_bytes_written = 0
        self.pack_reads = 0

    def snapshot(self) -> dict[str, int]:
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"Counters({', '.join(f'{name}={value}' for name, value in vars(self).items())})"


# Look-ups of content keys are batched (SQLite allows 32,766 parameters).
_KEYS_PER_QUERY = 500
# Chunks go to the pool (Blosc2 releases the GIL) in groups of at least this many
# raw bytes: a hand-off to a thread costs about as much as compressing a few KiB,
# so a write smaller than one group is compressed in the calling thread.
_POOL_TASK_BYTES = 32 * 1024
# Chunks this big are hashed by the pool (BLAKE3 releases the GIL for big inputs).
_PARALLEL_HASH_BYTES = 256 * 1024
#: Threads of the (de)compression pool.
THREADS = min(8, os.cpu_count() or 1)
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _start_compressing(items: list[tuple[Any, Codec, int]]) -> Callable[[], list[bytes]]:
    """Compress chunks ``(raw, codec, typesize)`` on the pool, from now on; the result waits for them.

    Every chunk is handed over, small ones grouped, so that the caller's
    next statements (the node rows of the same write, say) run meanwhile.
    """
    sizes = [memoryview(raw).nbytes for raw, _, _ in items]
    if sum(sizes) < _POOL_TASK_BYTES:
        done = _encode_all(items)
        return lambda: done
    pool = thread_pool()
    futures = [pool.submit(_encode_all, group) for group in _grouped(items, sizes, _POOL_TASK_BYTES)]
    return lambda: [stored for future in futures for stored in future.result()]


def _encode_all(items: Sequence[tuple[Any, Codec, int]]) -> list[bytes]:
    return [codec.encode(raw, typesize) for raw, codec, typesize in items]


def _grouped(items: Sequence[Any], sizes: Sequence[int], min_size: int) -> list[Sequence[Any]]:
    """``items`` in order, cut into runs of at least ``min_size`` in total (the last run may hold less)."""
    groups, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        total += size
        if total >= min_size:
            groups.append(items[start:i + 1])
            start, total = i + 1, 0
    if start < len(items):
        groups.append(items[start:])
    return groups


def _content_keys(items: Sequence[tuple[Any, Codec, int]]) -> list[bytes]:
    """The content key of every chunk ``(raw, codec, typesize)``, big ones hashed by the pool."""
    def key(item: tuple[Any, Codec, int]) -> bytes:
        raw, codec, typesize = item
        return content_key(codec.fingerprint(typesize), raw)

    if len(items) > 1 and memoryview(items[0][0]).nbytes >= _PARALLEL_HASH_BYTES:
        return list(thread_pool().map(key, items))
    return [key(item) for item in items]


def thread_pool() -> ThreadPoolExecutor:
    """The threads that (de)compress chunks in parallel (Blosc2 releases the GIL).

    One pool per process: a pool inherited through fork() has no threads.
    """
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor  # (and logging with it) only once threads are needed

        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=THREADS,
                                                 thread_name_prefix="tensordb-codec"))
    return _pool[1]


def content_key(fingerprint: bytes, raw: Any) -> bytes:
    """BLAKE3-256 of ``fingerprint``, a NUL byte, and the raw chunk bytes."""
    h: blake3.blake3 = _hashed_prefix(fingerprint).copy()
    h.update(raw)
    return h.digest()


@functools.lru_cache(maxsize=64)
def _hashed_prefix(fingerprint: bytes) -> blake3.blake3:
    """The hasher state after ``fingerprint`` and its NUL byte (a few codecs and item sizes repeat)."""
    return blake3.blake3(fingerprint + b"\0")


def checksum(stored: bytes | memoryview) -> int:
    """xxh3-64 of stored bytes, as a signed 64-bit integer (SQLite's INTEGER)."""
    value = xxhash.xxh3_64_intdigest(stored)
    return value - (1 << 64) if value >= (1 << 63) else value


class ChunkStore:
    """Put and get chunk records; reference counts are kept by SQL triggers."""

    def __init__(self, conn: Connection, packs: PackStore, inline_threshold: int) -> None:
        self.conn = conn
        self.packs = packs
        self.inline_threshold = inline_threshold
        self.counters = Counters()

    def put(self, raw: Any, codec: Codec, typesize: int) -> int:
        """Store one chunk's raw bytes (or find it stored already); return its chunk id.

        The returned record's refcount is unchanged: referencing it from
        ``chunk_ref`` is what counts.
        """
        return self.put_many([(raw, codec, typesize)])[0]

    def put_many(self, items: Sequence[tuple[Any, Codec, int]]) -> list[int]:
        """:meth:`put` for many chunks ``(raw, codec, typesize)``: a few statements, parallel compression.

        Chunks already stored (or repeated in ``items``) are found by content
        key and not compressed again.
        """
        return self.start_put_many(items)()

    def start_put_many(self, items: Sequence[tuple[Any, Codec, int]]) -> Callable[[], list[int]]:
        """:meth:`put_many` in two steps: compression starts on the pool now, and calling the
        result waits for it and stores the chunks (the caller prepares more work meanwhile).

        The chunks' buffers must stay unchanged until then, and nothing else
        may be stored in between (deduplication looks at stored chunks now).
        """
        keys = _content_keys(items)
        ids = self._stored_ids(keys)
        new: dict[bytes, tuple[Any, Codec, int]] = {}
        for key, item in zip(keys, items):
            if key in ids or key in new:
                self.counters.chunks_deduplicated += 1
            else:
                new[key] = item
        compressing = _start_compressing(list(new.values())) if new else None

        def store() -> list[int]:
            if compressing is not None:
                self._insert(new, compressing(), ids)
            return [ids[key] for key in keys]
        return store

    def _insert(self, new: dict[bytes, tuple[Any, Codec, int]], compressed: list[bytes], ids: dict[bytes, int]
                ) -> None:
        """Store compressed chunks (inline or in a pack) and note their new ids in ``ids``."""
        self.conn.hooks.trace("compress")
        next_id = int(self.conn.scalar("SELECT coalesce(max(chunk_id), 0) + 1 FROM chunk"))
        rows: list[tuple[Any, ...]] = []
        for (key, (raw, _, _)), stored in zip(new.items(), compressed):
            ids[key] = chunk_id = next_id + len(rows)
            location: tuple[Any, Any, Any] = (stored, None, None)
            if len(stored) > self.inline_threshold:
                location = (None, *self.packs.append(stored))
                self.counters.pack_bytes_written += len(stored)
            rows.append((chunk_id, key, checksum(stored), memoryview(raw).nbytes, len(stored), *location))
            self.counters.chunks_written += 1
            self.counters.chunk_bytes_written += len(stored)
        self.conn.insert_rows(
            "INSERT INTO chunk(chunk_id, hash, checksum, raw_size, size, data, pack_id, offset)", rows)
        self.conn.hooks.trace("chunk-row")

    def _stored_ids(self, keys: list[bytes]) -> dict[bytes, int]:
        """{content key: chunk id} for the keys already stored."""
        found: dict[bytes, int] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _KEYS_PER_QUERY):
            batch = unique[i:i + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(batch))
            for key, chunk_id in self.conn.execute(
                f"SELECT hash, chunk_id FROM chunk WHERE hash IN ({marks})", tuple(batch)
            ):
                found[bytes(key)] = int(chunk_id)
        return found

    #: What reading needs from a chunk record ``c``: a row is (chunk id, *these), see :meth:`verified_bytes`.
    #: The pack's file name comes along, so reading a pack chunk needs no further query.
    DATA_COLUMNS = ("c.data, c.pack_id, c.offset, c.size, c.checksum, c.raw_size, "
                    "(SELECT p.name FROM pack p WHERE p.pack_id = c.pack_id)")

    def stored_bytes(self, chunk_id: int) -> tuple[bytes, int, int]:
        """The stored bytes of a chunk, checksum-verified; also its raw size and hash-free metadata."""
        return self.verified_bytes(self._record(chunk_id))

    def _record(self, chunk_id: int) -> tuple[Any, ...]:
        row = self.conn.one(f"SELECT c.chunk_id, {self.DATA_COLUMNS} FROM chunk c WHERE chunk_id = ?", (chunk_id,))
        if row is None:
            raise CorruptionError(f"chunk {chunk_id} is referenced but has no chunk record")
        return row

    def verified_bytes(self, row: tuple[Any, ...]) -> tuple[bytes, int, int]:
        """(stored bytes, raw size, stored size) of a record read with (chunk id, :attr:`DATA_COLUMNS`)."""
        chunk_id, data, pack_id, offset, size, expected, raw_size, pack_name = row
        if size is None and expected is None:  # a LEFT JOIN from chunk_ref found no record
            raise CorruptionError(f"chunk {chunk_id} is referenced but has no chunk record")
        if type(size) is not int or type(raw_size) is not int or type(expected) is not int:
            raise CorruptionError(f"chunk {chunk_id}: malformed size, raw size or checksum")
        if data is not None:
            if not isinstance(data, bytes):  # bytes(10**12) would allocate: accept BLOBs only
                raise CorruptionError(f"chunk {chunk_id}: inline data is {type(data).__name__}, not a BLOB")
            stored = data
        elif isinstance(pack_id, int) and isinstance(offset, int) and isinstance(size, int):
            stored = self.packs.read(pack_id, offset, size, pack_name)
            self.counters.pack_reads += 1
        else:
            raise CorruptionError(f"chunk {chunk_id} has neither inline data nor a valid pack location")
        if len(stored) != size:
            raise CorruptionError(f"chunk {chunk_id}: {len(stored)} stored bytes, the record says {size}")
        if checksum(stored) != expected:
            raise CorruptionError(f"chunk {chunk_id}: checksum mismatch (stored bytes are damaged)")
        return stored, raw_size, size

    def get(self, chunk_id: int, codec: Codec, expected_raw: int, out: Any = None) -> Any:
        """Decompress a chunk into ``out`` (a writable buffer of ``expected_raw`` bytes) or a new bytearray."""
        return self.decode(self._record(chunk_id), codec, expected_raw, out)

    def decode(self, row: tuple[Any, ...], codec: Codec, expected_raw: int, out: Any = None) -> Any:
        """:meth:`get` for a record already read as (chunk id, :attr:`DATA_COLUMNS`)."""
        stored = self.stored_for(row, expected_raw)
        result = codec.decode(stored, expected_raw, out)
        self.counters.chunks_decoded += 1
        return result

    def stored_for(self, row: tuple[Any, ...], expected_raw: int) -> bytes:
        """The verified stored bytes of a record whose chunk must hold ``expected_raw`` raw bytes."""
        stored, raw_size, _ = self.verified_bytes(row)
        if raw_size != expected_raw:
            raise CorruptionError(
                f"chunk {row[0]} holds {raw_size} raw bytes where the array expects {expected_raw}"
            )
        return stored

    def verify(self, chunk_id: int, codec: Codec, typesize: int, expected_raw: int) -> None:
        """Full verification for check(): checksum, decompression and content key."""
        raw = codec.decode(self.stored_for(self._record(chunk_id), expected_raw), expected_raw)
        key = self.conn.scalar("SELECT hash FROM chunk WHERE chunk_id = ?", (chunk_id,))
        if content_key(codec.fingerprint(typesize), raw) != key:
            raise CorruptionError(f"chunk {chunk_id}: content does not match its content key")
