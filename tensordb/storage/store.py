"""The storage facade: one database file, its connection, its packs and its chunk records.

Opening applies the file mode (``r``, ``r+``, ``a``, ``w``, ``x``), the
connection policy and the schema checks, in that order.
"""

from __future__ import annotations

import contextlib
import os

from ..errors import FormatError
from . import schema
from .chunks import DEFAULT_INLINE_THRESHOLD, ChunkStore, Counters
from .connection import Connection, sqlite_errors
from .hooks import StorageHooks, installed
from .packs import GATE_NAME, PACK_NAME, PackStore, pack_dir_for

__all__ = ["Store", "MODES"]

MODES = ("r", "r+", "a", "w", "x")


class Store:
    """Everything below the array layer for one database file.

    ``hooks`` carries the file operations, step tracer and SQLite VFS the
    store does its durable I/O through (:mod:`tensordb.storage.hooks`); by
    default, the ones installed for the process, which make plain system calls.
    """

    def __init__(self, filename: str, mode: str = "a", inline_threshold: int | None = None,
                 hooks: StorageHooks | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"invalid mode {mode!r}; expected one of {', '.join(MODES)}")
        exists = os.path.exists(filename)
        if mode in ("r", "r+") and not exists:
            raise FileNotFoundError(f"{filename}: no such database")
        if mode == "x" and exists:
            raise FileExistsError(f"{filename}: database already exists")
        if os.path.isdir(filename):
            raise IsADirectoryError(f"{filename}: is a folder, not a database file")
        if mode == "w" and exists:
            _remove_database(filename)
        self.filename = filename
        self.mode = mode
        self.readonly = mode == "r"
        self.hooks = installed() if hooks is None else hooks
        self.conn = Connection(filename, readonly=self.readonly, create=mode in ("a", "w", "x"), hooks=self.hooks)
        try:
            # No Python-level open() of the file here: closing any descriptor of a
            # file drops every POSIX lock this process holds on it, including those
            # of other connections. SQLite itself refuses a file that is not SQLite
            # (NotADBError, before writing anything); schema.prepare reports it.
            threshold = DEFAULT_INLINE_THRESHOLD if inline_threshold is None else int(inline_threshold)
            if threshold < 0:
                raise ValueError(f"inline_threshold must be >= 0, got {threshold}")
            with sqlite_errors(filename, "opening"):
                schema.prepare(
                    self.conn.conn,
                    filename,
                    writable=not self.readonly,
                    settings={"inline_threshold": threshold},
                )
            if not self.readonly:  # only once the file is known to be ours: WAL rewrites the header
                self.conn.apply_writer_policy()
            if inline_threshold is None:
                stored = self.conn.scalar("SELECT value FROM meta WHERE key = 'inline_threshold'")
                threshold = stored if isinstance(stored, int) and stored >= 0 else DEFAULT_INLINE_THRESHOLD
        except BaseException:
            self.conn.close()
            raise
        self.packs = PackStore(self.conn, filename)
        self.chunks = ChunkStore(self.conn, self.packs, threshold)

    @property
    def counters(self) -> Counters:
        return self.chunks.counters

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self.conn.transaction()

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        return self.conn.snapshot()

    def close(self) -> None:
        if self.conn.closed:
            return
        self.packs.close()
        if not self.readonly and not self.conn.in_transaction:
            with contextlib.suppress(Exception):
                self.conn.execute("PRAGMA optimize")
        self.conn.close()


def _remove_database(filename: str) -> None:
    """Mode "w": remove the database, its WAL files and its pack files (nothing else).

    Refuses any file that is not a tensordb database (checked from the SQLite
    header: magic string and application_id at offset 68).
    """
    with open(filename, "rb") as f:
        head = f.read(100)
    if head and (len(head) < 100 or head[:16] != b"SQLite format 3\x00"
                 or int.from_bytes(head[68:72], "big") != schema.APPLICATION_ID):
        raise FormatError(f"{filename} is not a tensordb file; refusing to overwrite it")
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(filename + suffix)
    pack_dir = pack_dir_for(filename)
    if os.path.isdir(pack_dir):
        for name in os.listdir(pack_dir):
            if PACK_NAME.match(name) or name == GATE_NAME:
                os.remove(os.path.join(pack_dir, name))
        with contextlib.suppress(OSError):
            os.rmdir(pack_dir)
