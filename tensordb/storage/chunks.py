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

from dataclasses import dataclass
from typing import Any

import blake3
import xxhash

from .. import faults
from ..codec import Codec
from ..errors import CorruptionError
from .connection import Connection
from .packs import PackStore

__all__ = ["ChunkStore", "Counters", "content_key", "checksum", "DEFAULT_INLINE_THRESHOLD"]

#: Compressed chunks of at most this many bytes are stored inline in SQLite.
DEFAULT_INLINE_THRESHOLD = 64 * 1024


@dataclass
class Counters:
    """Storage events, for tests and tools that must count rather than time.

    ``chunks_decoded``: chunks decompressed; ``chunks_written``: new chunk
    records; ``chunk_bytes_written``: their stored bytes; ``chunks_deduplicated``:
    writes that found an identical chunk already stored; ``pack_bytes_written``
    and ``pack_reads``: pack file traffic.
    """

    chunks_decoded: int = 0
    chunks_written: int = 0
    chunk_bytes_written: int = 0
    chunks_deduplicated: int = 0
    pack_bytes_written: int = 0
    pack_reads: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(vars(self))


def content_key(fingerprint: bytes, raw: Any) -> bytes:
    """BLAKE3-256 of ``fingerprint``, a NUL byte, and the raw chunk bytes."""
    h = blake3.blake3(fingerprint)
    h.update(b"\0")
    h.update(raw)
    return h.digest()


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
        key = content_key(codec.fingerprint(typesize), raw)
        found = self.conn.scalar("SELECT chunk_id FROM chunk WHERE hash = ?", (key,))
        if found is not None:
            self.counters.chunks_deduplicated += 1
            return int(found)
        stored = codec.encode(raw, typesize)
        faults.crashpoint("compress")
        raw_size = memoryview(raw).nbytes
        if len(stored) <= self.inline_threshold:
            self.conn.execute(
                "INSERT INTO chunk(hash, checksum, raw_size, size, data) VALUES (?, ?, ?, ?, ?)",
                (key, checksum(stored), raw_size, len(stored), stored),
            )
        else:
            pack_id, offset = self.packs.append(stored)
            self.counters.pack_bytes_written += len(stored)
            self.conn.execute(
                "INSERT INTO chunk(hash, checksum, raw_size, size, pack_id, offset) VALUES (?, ?, ?, ?, ?, ?)",
                (key, checksum(stored), raw_size, len(stored), pack_id, offset),
            )
        faults.crashpoint("chunk-row")
        self.counters.chunks_written += 1
        self.counters.chunk_bytes_written += len(stored)
        return int(self.conn.conn.last_insert_rowid())

    def stored_bytes(self, chunk_id: int) -> tuple[bytes, int, int]:
        """The stored bytes of a chunk, checksum-verified; also its raw size and hash-free metadata."""
        row = self.conn.one(
            "SELECT data, pack_id, offset, size, checksum, raw_size FROM chunk WHERE chunk_id = ?",
            (chunk_id,),
        )
        if row is None:
            raise CorruptionError(f"chunk {chunk_id} is referenced but has no chunk record")
        data, pack_id, offset, size, expected, raw_size = row
        if data is not None:
            stored = bytes(data)
        elif isinstance(pack_id, int) and isinstance(offset, int) and isinstance(size, int):
            stored = self.packs.read(pack_id, offset, size)
            self.counters.pack_reads += 1
        else:
            raise CorruptionError(f"chunk {chunk_id} has neither inline data nor a valid pack location")
        if len(stored) != size:
            raise CorruptionError(f"chunk {chunk_id}: {len(stored)} stored bytes, the record says {size}")
        if checksum(stored) != expected:
            raise CorruptionError(f"chunk {chunk_id}: checksum mismatch (stored bytes are damaged)")
        return stored, int(raw_size), int(size)

    def get(self, chunk_id: int, codec: Codec, expected_raw: int, out: Any = None) -> Any:
        """Decompress a chunk into ``out`` (a writable buffer of ``expected_raw`` bytes) or a new bytearray."""
        stored, raw_size, _ = self.stored_bytes(chunk_id)
        if raw_size != expected_raw:
            raise CorruptionError(
                f"chunk {chunk_id} holds {raw_size} raw bytes where the array expects {expected_raw}"
            )
        result = codec.decode(stored, expected_raw, out)
        self.counters.chunks_decoded += 1
        return result

    def verify(self, chunk_id: int, codec: Codec, typesize: int) -> None:
        """Full verification for check(): checksum, decompression and content key."""
        stored, raw_size, _ = self.stored_bytes(chunk_id)
        raw = codec.decode(stored, raw_size)
        key = self.conn.scalar("SELECT hash FROM chunk WHERE chunk_id = ?", (chunk_id,))
        if content_key(codec.fingerprint(typesize), raw) != key:
            raise CorruptionError(f"chunk {chunk_id}: content does not match its content key")
