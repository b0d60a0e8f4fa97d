"""One self-contained copy of a database: every pack chunk moved inline, no pack folder.

The copy is built in ``<target>.tmp-bundle`` (``VACUUM INTO``, then every
pack chunk written into its row, checksum-verified), fsynced, renamed into
place and the folder fsynced: ``target`` is either absent or complete, even
after a crash. A leftover temporary file is replaced by the next bundle.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import apsw

from .connection import sqlite_errors, storage_error
from .store import Store

__all__ = ["write_bundle"]


def write_bundle(store: Store, target: str, keep_history: bool = False) -> None:
    """Write the bundle of ``store`` to ``target`` (which must not exist).

    Without ``keep_history`` the bundle forgets every snapshot, tag and kept
    version, and the arrays and chunks only they held.
    """
    if os.path.exists(target):
        raise FileExistsError(f"{target} already exists")
    if os.path.abspath(target) == os.path.abspath(store.filename):
        raise ValueError("cannot bundle a database onto itself")
    tmp = target + ".tmp-bundle"
    for leftover in (tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
    store.conn.execute("VACUUM INTO ?", (tmp,))
    store.hooks.trace("bundle-copy")
    try:
        with sqlite_errors(tmp, "writing the bundle"):
            _inline_pack_chunks(store, tmp, keep_history)
        files = store.hooks.files
        try:
            files.fsync_path(tmp)
            store.hooks.trace("bundle-fsync")
            files.replace(tmp, target)
            store.hooks.trace("bundle-rename")
            files.fsync_dir(os.path.dirname(os.path.abspath(target)))
        except OSError as exc:
            raise storage_error(target, exc, "writing the bundle") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


# Forgetting history: the snapshots first, so that the triggers keep no version of what follows.
_FORGET_HISTORY = """
DELETE FROM tag;
DELETE FROM snapshot;
DELETE FROM node_history;
DELETE FROM tree_history;
UPDATE node SET born = NULL WHERE born IS NOT NULL;
UPDATE tree SET born = NULL WHERE born IS NOT NULL;
DELETE FROM array WHERE NOT EXISTS (SELECT 1 FROM node n WHERE n.array_id = array.array_id);
DELETE FROM chunk WHERE NOT EXISTS (SELECT 1 FROM chunk_ref r WHERE r.chunk_id = chunk.chunk_id);
"""


def _inline_pack_chunks(store: Store, tmp: str, keep_history: bool) -> None:
    out = apsw.Connection(tmp, vfs=store.hooks.sqlite_vfs)
    try:
        out.execute("PRAGMA foreign_keys = ON")  # deleted arrays take their chunk_ref rows (a no-op inside BEGIN)
        # No rollback on failure: closing discards the transaction, and the file goes anyway.
        out.execute("BEGIN")
        if not keep_history:
            out.execute(_FORGET_HISTORY)
        moved: Any = out.execute("SELECT chunk_id FROM chunk WHERE pack_id IS NOT NULL").fetchall()
        for (chunk_id,) in moved:
            data, _, _ = store.chunks.stored_bytes(int(chunk_id))  # checksum-verified
            out.execute("UPDATE chunk SET data = ?, pack_id = NULL, offset = NULL WHERE chunk_id = ?",
                        (data, chunk_id))
        out.execute("DELETE FROM pack")
        out.execute("COMMIT")
        store.hooks.trace("bundle-inline")
        # a rollback journal: the bundle opens read-only even where no -wal/-shm can be created
        out.execute("PRAGMA journal_mode = DELETE")
        out.execute("VACUUM")
    finally:
        out.close()
