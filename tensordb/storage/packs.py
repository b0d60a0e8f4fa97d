"""Append-only pack files in the sidecar folder next to the database.

``runs.tdb`` keeps its packs in ``runs.tdb-packs/``, named ``00000001.pack``,
``00000002.pack``, ... (the ``pack`` table maps ids to names). A pack starts
with a 16-byte header (``TDBPACK1`` and 8 reserved bytes) followed by chunk
bytes back to back; chunk rows give (pack, offset, length).

Ordering rules that keep every committed row pointing at real bytes:
bytes are appended only inside a write transaction (so one writer at a time),
and fsynced before its ``COMMIT`` (with the folder, when a pack was created);
bytes of a rolled-back (sub)transaction are cut away; files are deleted only
after the commit that stops referencing them. A crash can leave unreferenced
tail bytes or files: ``gc()`` reclaims them.

Failures: a pack whose write, fsync or truncation failed is *poisoned*: this
process never writes to it again (the bytes the failed fsync covered cannot
be trusted). A writer never appends after bytes no committed chunk uses (left
by a crash, a failed commit or a poisoned pack): it starts a new pack
instead, so such bytes stay a tail that ``gc()`` cuts. A new pack never takes
the name of a file already in the folder. If ``COMMIT`` itself fails, its
outcome on disk is unknown, so the bytes it wrote are kept (the flush before
it has already forgotten them).

All writes go through :data:`tensordb.faults.files` (a test seam).

Names read from the database are untrusted: they must match one strict
pattern and resolve inside the sidecar folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from typing import BinaryIO

from .. import faults
from ..errors import CorruptionError, StorageError
from .connection import Connection, storage_error

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
        self._fds: dict[int, int] = {}  # write descriptors, by pack id
        self._writer: int | None = None  # the pack appends go to
        self._touched: set[int] = set()  # packs written in this transaction
        # size of each touched pack before this transaction first appended to it
        self._first_size: dict[int, int] = {}
        self._created: set[int] = set()  # packs created in this transaction
        self._created_dir = False
        # pack sizes at the start of each open (sub)transaction, to undo appends
        self._marks: list[dict[int, int]] = []
        self._poisoned: set[int] = set()
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

    def _error(self, pack_id: int | None, doing: str, exc: OSError) -> StorageError:
        where = os.path.join(self.dir, f"{pack_id:08d}.pack") if pack_id is not None else self.dir
        return storage_error(where, exc, doing)

    # -- writing -----------------------------------------------------------------

    def append(self, data: bytes) -> tuple[int, int]:
        """Append ``data`` to the active pack; returns ``(pack_id, offset)``.

        Must run inside a write transaction.
        """
        pack_id = self._active_writer(len(data))
        fd = self._fds[pack_id]
        offset = os.fstat(fd).st_size
        self._first_size.setdefault(pack_id, offset)
        self._touched.add(pack_id)
        try:
            _write_all(fd, data, offset)
        except OSError as exc:
            self._poison(pack_id)
            raise self._error(pack_id, "writing", exc) from exc
        faults.crashpoint("pack-write")
        return pack_id, offset

    def _active_writer(self, incoming: int) -> int:
        pack_id = self._writer
        if pack_id is None:
            row = self.conn.one("SELECT pack_id, name FROM pack ORDER BY pack_id DESC LIMIT 1")
            if row is not None and int(row[0]) not in self._poisoned:
                pack_id = int(row[0])
                if pack_id not in self._fds:
                    try:
                        self._fds[pack_id] = faults.files.open(self.path_of(row[1]), os.O_WRONLY)
                    except OSError:
                        pack_id = None  # missing or unwritable: start a new pack
                if pack_id is not None:
                    self._set_writer(pack_id)
        if pack_id is not None:
            size = os.fstat(self._fds[pack_id]).st_size
            if (size + incoming <= self.max_pack_bytes or size <= len(HEADER)) and (
                pack_id in self._touched or size == self._committed_end(pack_id)
            ):
                return pack_id
        return self._new_pack()

    def _committed_end(self, pack_id: int) -> int:
        """Where the last chunk of a pack ends according to the rows (the header if none)."""
        end = self.conn.scalar(
            "SELECT offset + size FROM chunk WHERE pack_id = ? ORDER BY offset DESC LIMIT 1", (pack_id,)
        )
        return max(int(end or 0), len(HEADER))

    def rotate(self) -> None:
        """Send the following appends to a new pack (inside a write transaction)."""
        self._new_pack()

    def _new_pack(self) -> int:
        if not os.path.isdir(self.dir):
            try:
                faults.files.makedirs(self.dir)
            except OSError as exc:
                raise self._error(None, "creating the pack folder", exc) from exc
            self._created_dir = True
        # Never take the name of a file already there: it may hold bytes that a
        # commit whose outcome is unknown references. gc() deletes such files.
        highest = max((int(n[:-5]) for n in self.list_files()), default=0)
        seq = self.conn.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'pack'")
        pack_id = max(int(seq or 0), highest) + 1
        name = f"{pack_id:08d}.pack"
        self.conn.execute("INSERT INTO pack(pack_id, name) VALUES (?, ?)", (pack_id, name))
        path = self.path_of(name)
        try:
            fd = faults.files.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except OSError as exc:
            raise self._error(pack_id, "creating", exc) from exc
        self._fds[pack_id] = fd
        self._created.add(pack_id)
        self._created_dir = True  # the folder entry of the new file must be synced too
        self._first_size[pack_id] = 0
        self._touched.add(pack_id)
        try:
            _write_all(fd, HEADER, 0)
        except OSError as exc:
            self._poison(pack_id)
            raise self._error(pack_id, "writing", exc) from exc
        self._first_size[pack_id] = len(HEADER)
        self._set_writer(pack_id)
        faults.crashpoint("pack-create")
        return pack_id

    def _set_writer(self, pack_id: int) -> None:
        old = self._writer
        if old is not None and old != pack_id and old not in self._touched:
            self._close_fd(old)
        self._writer = pack_id

    def _close_fd(self, pack_id: int) -> None:
        fd = self._fds.pop(pack_id, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                faults.files.close(fd)

    def flush(self) -> None:
        """fsync every pack written in this transaction (and the folder if files were created)."""
        if not faults.UNSAFE_NO_PACK_FSYNC:
            for pack_id in sorted(self._touched):
                try:
                    faults.files.fsync(self._fds[pack_id])
                except OSError as exc:
                    self._poison(pack_id)
                    raise self._error(pack_id, "fsync", exc) from exc
                faults.crashpoint("pack-fsync")
            if self._created_dir:
                try:
                    faults.files.fsync_dir(self.dir)
                    faults.files.fsync_dir(os.path.dirname(os.path.abspath(self.dir)))
                except OSError as exc:
                    for pack_id in self._created:  # their folder entries may not be durable
                        self._poison(pack_id)
                    raise self._error(None, "fsync", exc) from exc
                faults.crashpoint("dir-fsync")
        self._created_dir = False
        # Forget this transaction's appends: if COMMIT now fails, its outcome on disk is
        # unknown (the commit record may be in the WAL), so its bytes must stay.
        self._end_transaction()

    def _end_transaction(self) -> None:
        self._touched.clear()
        self._first_size.clear()
        self._created.clear()

    def _poison(self, pack_id: int) -> None:
        """Never write to this pack again in this process."""
        self._poisoned.add(pack_id)
        if self._writer == pack_id:
            self._writer = None

    def _begin(self, level: int) -> None:
        del self._marks[level:]
        self._marks.append({pid: os.fstat(self._fds[pid]).st_size for pid in self._touched})

    def _rollback(self, level: int) -> None:
        mark = self._marks[level] if level < len(self._marks) else {}
        for pack_id in sorted(self._touched):
            if pack_id in self._created and not self._has_row(pack_id):
                # created by the part rolled back: the file is an orphan now
                self._discard(pack_id)
            elif pack_id not in self._poisoned:
                try:
                    faults.files.truncate(self._fds[pack_id], mark.get(pack_id, self._first_size[pack_id]))
                except OSError:
                    self._poison(pack_id)  # the tail stays: unreferenced bytes that gc() cuts
        faults.crashpoint("rollback")
        if level == 0:
            self._end_transaction()
            self._writer = None
        del self._marks[level:]

    def _has_row(self, pack_id: int) -> bool:
        try:
            return self.conn.scalar("SELECT 1 FROM pack WHERE pack_id = ?", (pack_id,)) is not None
        except Exception:  # the connection is in trouble: assume the row may exist
            return True

    def _discard(self, pack_id: int) -> None:
        """Forget a pack created by a rolled-back (sub)transaction and delete its file (no row names it)."""
        self._touched.discard(pack_id)
        self._first_size.pop(pack_id, None)
        self._created.discard(pack_id)
        path = os.path.join(self.dir, f"{pack_id:08d}.pack")
        self.forget(pack_id)
        with contextlib.suppress(OSError):  # left behind, it is an orphan file gc() deletes
            faults.files.remove(path)

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
        """Drop cached handles of a pack about to be deleted or rewritten (no more writes to it)."""
        cached = self._readers.pop(pack_id, None)
        if cached is not None:
            cached[1].close()
        if self._writer == pack_id:
            self._writer = None
        self._touched.discard(pack_id)
        self._first_size.pop(pack_id, None)
        self._close_fd(pack_id)

    def truncate(self, pack_id: int, size: int) -> None:
        """Cut unreferenced tail bytes, durably (inside a write transaction only).

        Poisoned packs are left alone.
        """
        if pack_id in self._poisoned:
            return
        path = self.path_of(self.name_of(pack_id))
        self.forget(pack_id)
        try:
            fd = faults.files.open(path, os.O_WRONLY)
            try:
                faults.files.truncate(fd, max(size, len(HEADER)))
                faults.files.fsync(fd)
            finally:
                faults.files.close(fd)
        except OSError as exc:
            self._poison(pack_id)
            raise self._error(pack_id, "truncating", exc) from exc

    def delete_file(self, name: str) -> None:
        path = self.path_of(name)
        try:
            faults.files.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(path, exc, "deleting") from exc

    def close(self) -> None:
        for _, f in self._readers.values():
            f.close()
        self._readers.clear()
        self._writer = None
        for pack_id in list(self._fds):
            self._close_fd(pack_id)
        self._touched.clear()


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """pwrite all of ``data`` at ``offset`` (a short write continues where it stopped)."""
    view = memoryview(data)
    while view:
        written = faults.files.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no space left on device (short write)")
        view = view[written:]
        offset += written
