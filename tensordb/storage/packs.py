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
pattern and resolve inside the sidecar folder, which must itself be a real
folder (not a symbolic link); pack files are opened without following
symbolic links and must be regular files (never a FIFO, device or folder).

Readers and gc coordinate through ``flock(2)`` on the sidecar folder: every
read snapshot holds a shared lock on it from before its first read to its
end, and gc deletes or truncates pack files only while it holds the
exclusive lock, so a reader never sees pack bytes vanish under its
snapshot. When readers keep the lock busy, gc leaves the files for the next
gc (they are then orphans no row names).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import CorruptionError
from .connection import Connection

__all__ = ["PackStore", "PACK_NAME", "HEADER", "GATE_NAME"]

HEADER = b"TDBPACK1" + bytes(8)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# open() errors that mean "this name is a link, a FIFO without writer/reader, a folder..."
_NOT_A_FILE = {errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EMLINK, errno.ENODEV, errno.ENOTDIR}
PACK_NAME = re.compile(r"\A[0-9]{8,19}\.pack\Z")
#: The lock file gc creates in the pack folder when it has to wait for readers (see PackStore.exclusive).
GATE_NAME = "gc.lock"
#: A pack is closed for appends once it reaches this size.
MAX_PACK_BYTES = 1 << 30


def pack_dir_for(db_filename: str) -> str:
    return db_filename + "-packs"


class PackStore:
    """Pack files of one database: safe names, appends, bounded reads, removal."""

    def __init__(self, conn: Connection, db_filename: str) -> None:
        self.conn = conn
        self.dir = pack_dir_for(db_filename)
        self._dir_fd: int | None = None  # the sidecar folder, for flock(2)
        self._gate_fd: int | None = None  # the gate file in it (see exclusive())
        self._read_locked = False
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
        conn.on_snapshot(self._begin_read, self._end_read)

    # -- names -------------------------------------------------------------------

    def path_of(self, name: object) -> str:
        """The file of a pack name read from the database, refusing anything unsafe."""
        if not isinstance(name, str) or not PACK_NAME.match(name):
            raise CorruptionError(f"invalid pack file name {name!r} in the database")
        if os.path.islink(self.dir):
            raise CorruptionError(f"the pack folder {self.dir} is a symbolic link; it must be a real folder")
        path = os.path.join(self.dir, name)
        real_dir = os.path.realpath(self.dir)
        if os.path.dirname(os.path.realpath(path)) != real_dir:
            raise CorruptionError(f"pack file {name!r} resolves outside {self.dir}")
        return path

    def _open(self, name: str, flags: int, mode: str) -> BinaryIO:
        """Open a pack file without following links or blocking, refusing anything but a regular file."""
        path = self.path_of(name)
        try:
            fd = os.open(path, flags | _NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, 0o666)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in _NOT_A_FILE:
                raise CorruptionError(
                    f"pack file {name} in {self.dir} is not a regular file ({exc.strerror})"
                ) from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CorruptionError(f"pack file {name} in {self.dir} is not a regular file")
            os.set_blocking(fd, True)
            f: BinaryIO = os.fdopen(fd, mode)  # type: ignore[assignment]
            return f
        except BaseException:
            os.close(fd)
            raise

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
        if self._writer is not None and self._writer[0] not in self._touched:
            # First append of this transaction: another connection (gc) may have
            # rotated to a newer pack or removed this one since our last write.
            newest = self.conn.scalar("SELECT max(pack_id) FROM pack")
            if newest != self._writer[0]:
                self._writer[1].close()
                self._writer = None
        if self._writer is not None:
            pack_id, f = self._writer
            size = os.fstat(f.fileno()).st_size
            if size + incoming <= self.max_pack_bytes or size <= len(HEADER):
                return self._writer
        row = self.conn.one("SELECT pack_id, name FROM pack ORDER BY pack_id DESC LIMIT 1")
        if row is not None:
            pack_id, name = int(row[0]), row[1]
            found: BinaryIO | None
            try:
                found = self._open(name, os.O_WRONLY | os.O_APPEND, "ab")
            except FileNotFoundError:
                found = None
            if found is not None:
                if os.fstat(found.fileno()).st_size + incoming <= self.max_pack_bytes:
                    self._set_writer(pack_id, found)
                    return self._writer  # type: ignore[return-value]
                found.close()
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
            try:
                os.makedirs(self.dir, exist_ok=True)
            except FileExistsError:
                raise CorruptionError(f"{self.dir} exists and is not a folder") from None
            self._created_dir = True
        self.conn.execute("INSERT INTO pack(name) VALUES ('')")
        pack_id = int(self.conn.conn.last_insert_rowid())
        name = f"{pack_id:08d}.pack"
        self.conn.execute("UPDATE pack SET name = ? WHERE pack_id = ?", (name, pack_id))
        # A file of that name can only be left over from a rolled-back or crashed
        # transaction (no committed row names it): start it afresh.
        f = self._open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "wb")
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
        try:
            f = self._open(name, os.O_RDONLY, "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise CorruptionError(f"pack file {name} is missing from {self.dir}") from None
        if f.read(len(HEADER))[:8] != HEADER[:8]:
            f.close()
            raise CorruptionError(f"pack file {name} has no tensordb pack header")
        self._readers[pack_id] = (name, f)
        return name, f

    def file_size(self, pack_id: int) -> int | None:
        """The size of a pack's file, None when it does not exist (CorruptionError if it is no regular file)."""
        name = self.name_of(pack_id)
        try:
            st = os.lstat(self.path_of(name))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise CorruptionError(f"pack file {name} in {self.dir} is not a regular file")
        return st.st_size

    # -- maintenance ---------------------------------------------------------------

    def list_files(self) -> list[str]:
        """Names of the pack files present in the folder (files matching the pattern only)."""
        try:
            return sorted(n for n in os.listdir(self.dir) if PACK_NAME.match(n))
        except (FileNotFoundError, NotADirectoryError):
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
        """Cut unreferenced tail bytes (inside a write transaction, under :meth:`exclusive`)."""
        name = self.name_of(pack_id)
        self.forget(pack_id)
        with self._open(name, os.O_RDWR, "r+b") as f:
            f.truncate(max(size, len(HEADER)))
            f.flush()
            os.fsync(f.fileno())

    def delete_file(self, name: str) -> int:
        """Delete a pack file (regular files only; under :meth:`exclusive`); returns the bytes freed."""
        path = self.path_of(name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                return 0
            os.remove(path)
        except FileNotFoundError:
            return 0
        return st.st_size

    # -- readers and gc ------------------------------------------------------------
    #
    # The pack folder itself is the lock: every read snapshot holds flock(LOCK_SH)
    # on it, and pack files are deleted or truncated only under LOCK_EX. A second
    # lock, the file GATE_NAME in the folder (created by the first gc that has to
    # wait), keeps a stream of readers from starving gc: readers pass through it
    # (LOCK_SH, momentarily) before locking the folder, so while gc holds it
    # exclusively, new snapshots wait and the open ones drain.

    def _folder_fd(self) -> int | None:
        if self._dir_fd is None:
            try:
                self._dir_fd = os.open(self.dir, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
            except OSError:
                return None
        return self._dir_fd

    def _gate(self, create: bool) -> int | None:
        """The gate file's descriptor (a regular file, never followed through a link), or None."""
        if self._gate_fd is None:
            flags = (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY
            try:
                fd = os.open(os.path.join(self.dir, GATE_NAME), flags | _NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, 0o666)
            except OSError:
                return None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            self._gate_fd = fd
        return self._gate_fd

    def _begin_read(self) -> None:
        """Called right after ``BEGIN DEFERRED``, before the snapshot's first read."""
        fd = self._folder_fd()
        if fd is None:
            # No pack folder yet. Establish the snapshot: if it names no pack,
            # no pack file can go missing under it.
            if self.conn.conn.execute("SELECT 1 FROM pack LIMIT 1").fetchall() == []:
                return
            fd = self._folder_fd()
            if fd is None:
                return  # a pack row without a usable folder: reads report the damage
            # The folder appeared meanwhile: start the snapshot again, under the lock.
            self.conn.conn.execute("COMMIT")
            self.conn.conn.execute("BEGIN DEFERRED")
        gate = self._gate(create=False)
        try:
            if gate is not None:
                fcntl.flock(gate, fcntl.LOCK_SH)  # waits while a gc holds the gate
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            finally:
                if gate is not None:
                    fcntl.flock(gate, fcntl.LOCK_UN)
        except OSError:
            return  # no flock on this file system: gc cannot see readers either way
        self._read_locked = True

    def _end_read(self) -> None:
        if self._read_locked and self._dir_fd is not None:
            self._read_locked = False
            with contextlib.suppress(OSError):
                fcntl.flock(self._dir_fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self, wait: float = 1.0) -> Iterator[bool]:
        """Try, for up to ``wait`` seconds, to make sure that no read snapshot is open anywhere.

        Yields True while that holds (readers that start meanwhile wait), so
        pack files can be deleted or truncated; False when readers kept the
        folder busy all along: leave the files for a later gc.
        """
        fd = self._folder_fd()
        if fd is None:
            yield True  # no folder, no pack file to protect
            return
        deadline = time.monotonic() + wait
        locked: list[int] = []
        try:
            if _try_lock(fd, deadline=None):  # the common case: no reader at all
                locked.append(fd)
            else:
                gate = self._gate(create=True)
                if gate is not None and _try_lock(gate, deadline):
                    locked.append(gate)
                if _try_lock(fd, deadline):
                    locked.append(fd)
                else:
                    yield False
                    return
            yield True
        except _NoLocks:
            yield True  # no flock on this file system: nothing to coordinate with
        finally:
            for held in reversed(locked):
                with contextlib.suppress(OSError):
                    fcntl.flock(held, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._gate_fd is not None:
            os.close(self._gate_fd)
            self._gate_fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
            self._read_locked = False
        for _, f in self._readers.values():
            f.close()
        self._readers.clear()
        if self._writer is not None:
            self._writer[1].close()
            self._writer = None
        for f in self._touched.values():
            f.close()
        self._touched.clear()


class _NoLocks(Exception):
    """flock(2) is not available on this file system."""


def _try_lock(fd: int, deadline: float | None) -> bool:
    """LOCK_EX on ``fd``: once (deadline None) or polling until ``deadline``."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if deadline is None or time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        except OSError:
            raise _NoLocks from None


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
