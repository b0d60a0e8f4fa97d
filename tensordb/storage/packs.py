"""Append-only pack files in the sidecar folder next to the database.

``runs.tdb`` keeps its packs in ``runs.tdb-packs/``, named ``00000001.pack``,
``00000002.pack``, ... (the ``pack`` table maps ids to names). A pack starts
with a 16-byte header (``TDBPACK1`` and 8 reserved bytes) followed by chunk
bytes back to back; chunk rows give (pack, offset, length).

Ordering rules that keep every committed row pointing at real bytes:
bytes are appended only inside a write transaction (so one writer at a time),
and fsynced before its ``COMMIT``; bytes of a rolled-back (sub)transaction are
truncated away; files are deleted only after the commit that stops
referencing them. A crash can leave unreferenced tail bytes: ``gc()`` reclaims them.

Names read from the database are untrusted: they must match one strict
pattern and resolve inside the sidecar folder.
"""

from __future__ import annotations

import os
import re
from typing import BinaryIO

from ..errors import CorruptionError
from .connection import Connection

__all__ = ["PackStore", "PACK_NAME", "HEADER"]

HEADER = b"TDBPACK1" + bytes(8)
PACK_NAME = re.compile(r"\A[0-9]{8,19}\.pack\Z")
#: A pack is closed for appends once it reaches this size.
MAX_PACK_BYTES = 1 << 30


def pack_dir_for(db_filename: str) -> str:
    return db_filename + "-packs"


class PackStore:
    """Pack files of one database: safe names, appends, bounded reads, removal."""

    def __init__(self, conn: Connection, db_filename: str) -> None:
        self.conn = conn
        self.dir = pack_dir_for(db_filename)
        self.max_pack_bytes = MAX_PACK_BYTES
        self._readers: dict[int, tuple[str, BinaryIO]] = {}
        self._writer: tuple[int, BinaryIO] | None = None
        self._touched: dict[int, BinaryIO] = {}
        # size of each touched pack before this transaction first appended to it
        self._first_size: dict[int, int] = {}
        self._created_dir = False
        # pack sizes at the start of each open (sub)transaction, to undo appends
        self._marks: list[dict[int, int]] = []
        conn.on_savepoint(self._begin, self._rollback)
        conn.before_commit(self.flush)

    # -- names -------------------------------------------------------------------

    def path_of(self, name: object) -> str:
        """The file of a pack name read from the database, refusing anything unsafe."""
        if not isinstance(name, str) or not PACK_NAME.match(name):
            raise CorruptionError(f"invalid pack file name {name!r} in the database")
        path = os.path.join(self.dir, name)
        real_dir = os.path.realpath(self.dir)
        if os.path.dirname(os.path.realpath(path)) != real_dir:
            raise CorruptionError(f"pack file {name!r} resolves outside {self.dir}")
        return path

    def name_of(self, pack_id: int) -> str:
        name = self.conn.scalar("SELECT name FROM pack WHERE pack_id = ?", (pack_id,))
        if name is None:
            raise CorruptionError(f"pack {pack_id} is referenced but has no row in the pack table")
        return str(name)

    # -- writing -----------------------------------------------------------------

    def append(self, data: bytes) -> tuple[int, int]:
        """Append ``data`` to the active pack; returns ``(pack_id, offset)``.

        Must run inside a write transaction.
        """
        pack_id, f = self._active_writer(len(data))
        offset = os.fstat(f.fileno()).st_size
        self._first_size.setdefault(pack_id, offset)
        f.write(data)
        f.flush()
        self._touched[pack_id] = f
        return pack_id, offset

    def _active_writer(self, incoming: int) -> tuple[int, BinaryIO]:
        if self._writer is not None:
            pack_id, f = self._writer
            size = os.fstat(f.fileno()).st_size
            if size + incoming <= self.max_pack_bytes or size <= len(HEADER):
                return self._writer
        row = self.conn.one("SELECT pack_id, name FROM pack ORDER BY pack_id DESC LIMIT 1")
        if row is not None:
            pack_id, name = int(row[0]), str(row[1])
            path = self.path_of(name)
            if os.path.exists(path) and os.path.getsize(path) + incoming <= self.max_pack_bytes:
                self._set_writer(pack_id, open(path, "ab"))
                return self._writer  # type: ignore[return-value]
        return self._new_pack()

    def rotate(self) -> None:
        """Send the following appends to a new pack (inside a write transaction)."""
        self._new_pack()

    def _set_writer(self, pack_id: int, f: BinaryIO) -> None:
        if self._writer is not None and self._writer[1] is not f and self._writer[0] not in self._touched:
            self._writer[1].close()
        self._writer = (pack_id, f)

    def _new_pack(self) -> tuple[int, BinaryIO]:
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, exist_ok=True)
            self._created_dir = True
        self.conn.execute("INSERT INTO pack(name) VALUES ('')")
        pack_id = int(self.conn.conn.last_insert_rowid())
        name = f"{pack_id:08d}.pack"
        self.conn.execute("UPDATE pack SET name = ? WHERE pack_id = ?", (name, pack_id))
        # A file of that name can only be left over from a rolled-back or crashed
        # transaction (no committed row names it): start it afresh.
        f = open(self.path_of(name), "wb")
        f.write(HEADER)
        f.flush()
        self._created_dir = True  # the folder entry of the new file must be synced too
        self._touched[pack_id] = f
        self._first_size[pack_id] = len(HEADER)
        self._set_writer(pack_id, f)
        return pack_id, f

    def flush(self) -> None:
        """fsync every pack written in this transaction (and the folder if files were created)."""
        for f in self._touched.values():
            f.flush()
            os.fsync(f.fileno())
        if self._created_dir:
            _fsync_dir(self.dir)
            _fsync_dir(os.path.dirname(os.path.abspath(self.dir)))
            self._created_dir = False
        self._touched.clear()
        self._first_size.clear()

    def _begin(self, level: int) -> None:
        del self._marks[level:]
        self._marks.append({pid: os.fstat(f.fileno()).st_size for pid, f in self._touched.items()})

    def _rollback(self, level: int) -> None:
        mark = self._marks[level] if level < len(self._marks) else {}
        for pack_id, f in list(self._touched.items()):
            f.flush()
            f.truncate(mark.get(pack_id, self._first_size[pack_id]))
        if level == 0:
            self._touched.clear()
            self._first_size.clear()
            self._writer = None
        del self._marks[level:]

    # -- reading -----------------------------------------------------------------

    def read(self, pack_id: int, offset: int, size: int) -> bytes:
        """Read exactly ``size`` bytes at ``offset``; anything short is a CorruptionError."""
        name, f = self._reader(pack_id)
        if offset < len(HEADER) or size < 0:
            raise CorruptionError(f"pack {name}: invalid range offset={offset} length={size}")
        file_size = os.fstat(f.fileno()).st_size
        if offset + size > file_size:
            raise CorruptionError(
                f"pack {name}: range {offset}+{size} lies past the end of the file ({file_size} bytes)"
            )
        data = os.pread(f.fileno(), size, offset)
        if len(data) != size:
            raise CorruptionError(f"pack {name}: short read at {offset}")
        return data

    def _reader(self, pack_id: int) -> tuple[str, BinaryIO]:
        cached = self._readers.get(pack_id)
        if cached is not None:
            return cached
        name = self.name_of(pack_id)
        path = self.path_of(name)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise CorruptionError(f"pack file {name} is missing from {self.dir}") from None
        if f.read(len(HEADER))[:8] != HEADER[:8]:
            f.close()
            raise CorruptionError(f"pack file {name} has no tensordb pack header")
        self._readers[pack_id] = (name, f)
        return name, f

    def file_size(self, pack_id: int) -> int | None:
        try:
            return os.path.getsize(self.path_of(self.name_of(pack_id)))
        except FileNotFoundError:
            return None

    # -- maintenance ---------------------------------------------------------------

    def list_files(self) -> list[str]:
        """Names of the pack files present in the folder (files matching the pattern only)."""
        try:
            return sorted(n for n in os.listdir(self.dir) if PACK_NAME.match(n))
        except FileNotFoundError:
            return []

    def forget(self, pack_id: int) -> None:
        """Drop cached handles of a pack about to be deleted or rewritten."""
        cached = self._readers.pop(pack_id, None)
        if cached is not None:
            cached[1].close()
        if self._writer is not None and self._writer[0] == pack_id:
            self._writer[1].close()
            self._writer = None

    def truncate(self, pack_id: int, size: int) -> None:
        """Cut unreferenced tail bytes (inside a write transaction only)."""
        path = self.path_of(self.name_of(pack_id))
        self.forget(pack_id)
        with open(path, "r+b") as f:
            f.truncate(max(size, len(HEADER)))
            f.flush()
            os.fsync(f.fileno())

    def delete_file(self, name: str) -> None:
        path = self.path_of(name)
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        for _, f in self._readers.values():
            f.close()
        self._readers.clear()
        if self._writer is not None:
            self._writer[1].close()
            self._writer = None
        for f in self._touched.values():
            f.close()
        self._touched.clear()


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
