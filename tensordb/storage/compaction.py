"""Pack compaction and reclaiming: rewrite sparse packs, then delete and trim what no row references.

Two phases, on either side of a commit. :func:`compact_packs` runs inside
the write transaction that deleted chunk rows: it copies the live chunks of
sparse packs to a new pack, repoints their rows, and drops the rows of packs
left empty. :func:`reclaim` runs after that commit: once every reader uses a
snapshot that includes it, it deletes the pack files no row names and cuts
the bytes after each pack's last chunk, then gives free pages back to the file
system. Files are deleted and cut only while no read snapshot is open in any
connection (readers hold a shared lock on the pack folder, see
``PackStore.exclusive``).
"""

from __future__ import annotations

import contextlib
import errno
import time
from dataclasses import dataclass, field

from ..errors import StorageError, TensorDBError
from .packs import HEADER
from .store import Store

__all__ = ["COMPACT_BELOW", "RECLAIM_WAIT", "SNAPSHOT_WAIT", "Compaction", "compact_packs", "reclaim",
           "reclaimable_in_pack"]

#: Packs whose live bytes fall below this fraction of their size are rewritten.
COMPACT_BELOW = 0.5
#: How long reclaiming waits for concurrent read snapshots to end before leaving files for the next time.
RECLAIM_WAIT = 1.0
#: How long reclaiming waits for readers on snapshots older than the compaction's commit.
SNAPSHOT_WAIT = 5.0


@dataclass
class Compaction:
    """What :func:`compact_packs` did: packs rewritten or dropped, their bytes, the files now unnamed."""

    packs_compacted: int = 0
    packs_deleted: int = 0
    bytes_reclaimed: int = 0
    unnamed: set[str] = field(default_factory=set)  # files whose rows were deleted (their bytes are counted)


def compact_packs(store: Store) -> Compaction:
    """Rewrite sparse packs and drop the rows of empty ones (inside a write transaction).

    A pack whose live chunks fill less than :data:`COMPACT_BELOW` of it has
    them copied to a new pack and their rows repointed; its row goes, and its
    file waits for :func:`reclaim`.
    """
    conn, packs = store.conn, store.packs
    done = Compaction()
    rotated = False
    for pack_id, name in conn.execute("SELECT pack_id, name FROM pack ORDER BY pack_id").fetchall():
        size = packs.file_size(pack_id) or 0
        live = int(conn.scalar("SELECT coalesce(sum(size), 0) FROM chunk WHERE pack_id = ?", (pack_id,)))
        if live and live >= COMPACT_BELOW * (size - len(HEADER)):
            continue
        if live:
            if not rotated:  # never copy chunks into a pack that is itself being compacted
                packs.rotate()
                rotated = True
            _move_chunks(store, pack_id)
            done.packs_compacted += 1
        else:
            done.packs_deleted += 1
        conn.execute("DELETE FROM pack WHERE pack_id = ?", (pack_id,))
        packs.forget(pack_id)
        done.unnamed.add(str(name))
        done.bytes_reclaimed += size - live
    return done


def _move_chunks(store: Store, pack_id: int) -> None:
    """Copy the live chunks of a pack to the active pack and repoint their rows."""
    conn = store.conn
    rows = conn.execute("SELECT chunk_id, offset, size FROM chunk WHERE pack_id = ? ORDER BY offset",
                        (pack_id,)).fetchall()
    for chunk_id, offset, size in rows:
        data = store.packs.read(pack_id, offset, size)
        new_pack, new_offset = store.packs.append(data)
        store.counters.pack_bytes_written += len(data)
        conn.execute("UPDATE chunk SET pack_id = ?, offset = ? WHERE chunk_id = ?", (new_pack, new_offset, chunk_id))
        store.hooks.trace("compact-copy")


def reclaim(store: Store, counted: set[str]) -> tuple[int, int]:
    """After a compaction's commit: delete unnamed pack files, trim tails, shrink the database file.

    Returns (bytes reclaimed, files left for a later time because readers
    stayed); the files in ``counted`` were counted by the compaction already.
    """
    store.hooks.trace("compact-commit")
    # Files and tail bytes go only once no committed row points at them and
    # no reader's snapshot can still see such a row: every snapshot older than
    # this commit has ended (any SQLite reader, an open db.sql() cursor too),
    # and no tensordb read snapshot is open (the pack folder lock).
    if _old_snapshots_ended(store):
        reclaimed, deferred = _reclaim_files(store, counted)
    else:
        reclaimed, deferred = 0, len(counted)
    _shrink_file(store)
    return reclaimed, deferred


def _is_busy(exc: TensorDBError) -> bool:
    return isinstance(exc, StorageError) and exc.errno == errno.EBUSY


def _old_snapshots_ended(store: Store) -> bool:
    """Wait until every reader of every connection uses a snapshot that includes the last commit.

    A reader on an older snapshot keeps a checkpoint from copying the WAL
    frames after it, so a PASSIVE checkpoint that copies the whole WAL proves
    that no such reader is left. Unlike RESTART, PASSIVE never blocks other
    writers, so this polls it, for at most ``SNAPSHOT_WAIT`` seconds (False: a
    reader is still behind; the files stay for the next time).
    """
    deadline = time.monotonic() + SNAPSHOT_WAIT
    while True:
        try:
            row = store.conn.one("PRAGMA wal_checkpoint(PASSIVE)")
        except StorageError as exc:
            if not _is_busy(exc):
                raise
            row = None
        if row is not None and row[0] == 0 and row[1] == row[2]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _reclaim_files(store: Store, counted: set[str]) -> tuple[int, int]:
    """Delete pack files no row names and cut bytes past each pack's last chunk.

    Runs in a write transaction (no writer creates or appends to a pack
    meanwhile), and only while no read snapshot is open anywhere (see
    PackStore.exclusive); if readers stay, everything is left for later.
    Returns (bytes reclaimed, files in ``counted`` not counted again; number
    of files left for later).
    """
    packs = store.packs
    reclaimed = 0
    with store.transaction(), packs.exclusive(RECLAIM_WAIT) as free:
        known = {str(n) for (n,) in store.conn.execute("SELECT name FROM pack").fetchall()}
        orphans = [n for n in packs.list_files() if n not in known]
        if not free:
            return 0, len(orphans)
        for name in orphans:
            freed = packs.delete_file(name)
            store.hooks.trace("compact-unlink")
            reclaimed += 0 if name in counted else freed
        for pack_id, end in store.conn.execute(
            "SELECT p.pack_id, coalesce(max(c.offset + c.size), 0) FROM pack p "
            "LEFT JOIN chunk c ON c.pack_id = p.pack_id GROUP BY p.pack_id"
        ).fetchall():
            size = packs.file_size(pack_id)
            end = max(int(end), len(HEADER))
            if size is not None and size > end:
                packs.truncate(pack_id, end)
                reclaimed += size - end
                store.hooks.trace("trim")
    return reclaimed, 0


def _shrink_file(store: Store) -> None:
    # best effort: the space comes back the next time if not now
    with contextlib.suppress(TensorDBError):
        store.conn.execute("PRAGMA incremental_vacuum")
    # A TRUNCATE checkpoint waits for every reader to leave the log and blocks new
    # writers meanwhile: try it only if nobody is busy, never wait for it.
    with contextlib.suppress(TensorDBError), store.conn.without_waiting():
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def reclaimable_in_pack(size: int, live: int, end: int) -> int:
    """Bytes of a pack file that compaction and reclaiming give back.

    The bytes after the last chunk (trimmed) and, in a pack that is compacted
    (live bytes under COMPACT_BELOW of the body), every unused byte. Smaller
    gaps between chunks stay by design: rewriting a mostly-live pack is not
    worth it.
    """
    body = size - len(HEADER)
    unused = body - live
    return unused if live < COMPACT_BELOW * body else max(0, size - max(end, len(HEADER)))
