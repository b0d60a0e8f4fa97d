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

All writes go through the store's :class:`~tensordb.storage.hooks.FileOps`, and each
step of the protocol is reported to its trace hook.

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

from ..errors import CorruptionError, StorageError
from .connection import Connection, storage_error
from .hooks import FileOps

__all__ = ["PackStore", "PacksAppeared", "PACK_NAME", "HEADER", "GATE_NAME"]

HEADER = b"TDBPACK1" + bytes(8)
#: Seconds a reader trusts that the pack folder has no gate file before looking again.
_GATE_RECHECK = 0.05
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
        self.files = conn.hooks.files
        self.trace = conn.hooks.trace
        self.dir = pack_dir_for(db_filename)
        self._dir_fd: int | None = None  # the sidecar folder, for flock(2)
        self._gate_fd: int | None = None  # the gate file in it (see exclusive())
        self._no_gate_until = 0.0  # no gate file was found: look again only after this (monotonic) time
        self._read_locked = False
        self._lockless = False  # inside reading() while there was no folder to lock
        self.max_pack_bytes = MAX_PACK_BYTES
        self._readers: dict[int, tuple[str, BinaryIO]] = {}
        # The size each reader's file had when last looked at: packs only grow while read, so a
        # range inside it needs no fstat (one per read was a tenth of the time of a small read).
        self._reader_sizes: dict[int, int] = {}
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

    def _open_fd(self, path: str, flags: int) -> int:
        """:meth:`_open` for writing through the file seam: a descriptor of a regular file, links not followed."""
        fd = self.files.open(path, flags | _NOFOLLOW | os.O_NONBLOCK | _CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CorruptionError(f"pack file {os.path.basename(path)} in {self.dir} is not a regular file")
            os.set_blocking(fd, True)
        except BaseException:
            self.files.close(fd)
            raise
        return fd

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
            _write_all(self.files, fd, data, offset)
        except OSError as exc:
            self._poison(pack_id)
            raise self._error(pack_id, "writing", exc) from exc
        self.trace("pack-write")
        return pack_id, offset

    def _active_writer(self, incoming: int) -> int:
        pack_id = self._writer
        if pack_id is not None and pack_id not in self._touched:
            # First append of this transaction: another connection (gc) may have
            # rotated to a newer pack or removed this one since our last write.
            if self.conn.scalar("SELECT max(pack_id) FROM pack") != pack_id:
                self._close_fd(pack_id)
                self._writer = pack_id = None
        if pack_id is None:
            row = self.conn.one("SELECT pack_id, name FROM pack ORDER BY pack_id DESC LIMIT 1")
            if row is not None and int(row[0]) not in self._poisoned:
                pack_id = int(row[0])
                if pack_id not in self._fds:
                    try:
                        self._fds[pack_id] = self._open_fd(self.path_of(row[1]), os.O_WRONLY)
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
                if os.path.lexists(self.dir):
                    raise CorruptionError(f"{self.dir} exists and is not a folder")
                self.files.makedirs(self.dir)
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
            fd = self._open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except OSError as exc:
            raise self._error(pack_id, "creating", exc) from exc
        self._fds[pack_id] = fd
        self._created.add(pack_id)
        self._created_dir = True  # the folder entry of the new file must be synced too
        self._first_size[pack_id] = 0
        self._touched.add(pack_id)
        try:
            _write_all(self.files, fd, HEADER, 0)
        except OSError as exc:
            self._poison(pack_id)
            raise self._error(pack_id, "writing", exc) from exc
        self._first_size[pack_id] = len(HEADER)
        self._set_writer(pack_id)
        self.trace("pack-create")
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
                self.files.close(fd)

    def flush(self) -> None:
        """fsync every pack written in this transaction (and the folder if files were created)."""
        for pack_id in sorted(self._touched):
            try:
                self.files.fsync(self._fds[pack_id])
            except OSError as exc:
                self._poison(pack_id)
                raise self._error(pack_id, "fsync", exc) from exc
            self.trace("pack-fsync")
        if self._created_dir:
            try:
                self.files.fsync_dir(self.dir)
                self.files.fsync_dir(os.path.dirname(os.path.abspath(self.dir)))
            except OSError as exc:
                for pack_id in self._created:  # their folder entries may not be durable
                    self._poison(pack_id)
                raise self._error(None, "fsync", exc) from exc
            self.trace("dir-fsync")
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
                    self.files.truncate(self._fds[pack_id], mark.get(pack_id, self._first_size[pack_id]))
                except OSError:
                    self._poison(pack_id)  # the tail stays: unreferenced bytes that gc() cuts
        self.trace("rollback")
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
            self.files.remove(path)

    # -- reading -----------------------------------------------------------------

    def read(self, pack_id: int, offset: int, size: int, name: object = None) -> bytes:
        """Read exactly ``size`` bytes at ``offset``; anything short is a CorruptionError.

        ``name``: the pack's file name when the caller read it with the location (saves a query).
        """
        if self._lockless:
            fd = self._folder_fd()
            if fd is not None:
                self._lockless = False
                self._lock_shared(fd)
                raise PacksAppeared(f"the pack folder {self.dir} appeared during a read")
        name, f = self._reader(pack_id, name)
        if offset < len(HEADER) or size < 0:
            raise CorruptionError(f"pack {name}: invalid range offset={offset} length={size}")
        if offset + size > self._reader_sizes.get(pack_id, 0):
            self._reader_sizes[pack_id] = file_size = os.fstat(f.fileno()).st_size
            if offset + size > file_size:
                raise CorruptionError(
                    f"pack {name}: range {offset}+{size} lies past the end of the file ({file_size} bytes)"
                )
        data = os.pread(f.fileno(), size, offset)
        if len(data) != size:
            raise CorruptionError(f"pack {name}: short read at {offset}")
        return data

    def _reader(self, pack_id: int, name: object = None) -> tuple[str, BinaryIO]:
        cached = self._readers.get(pack_id)
        if cached is not None:
            return cached
        if name is None:
            name = self.name_of(pack_id)
        elif not isinstance(name, str):
            raise CorruptionError(f"invalid pack file name {name!r} in the database")
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
        """Drop cached handles of a pack about to be deleted or rewritten (no more writes to it)."""
        self._reader_sizes.pop(pack_id, None)
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
            fd = self._open_fd(path, os.O_WRONLY)
            try:
                self.files.truncate(fd, max(size, len(HEADER)))
                self.files.fsync(fd)
            finally:
                self.files.close(fd)
        except OSError as exc:
            self._poison(pack_id)
            raise self._error(pack_id, "truncating", exc) from exc

    def delete_file(self, name: str) -> int:
        """Delete a pack file (regular files only; under :meth:`exclusive`); returns the bytes freed."""
        path = self.path_of(name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                return 0
            self.files.remove(path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise storage_error(path, exc, "deleting") from exc
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
            if not create and time.monotonic() < self._no_gate_until:
                return None
            flags = (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY
            try:
                fd = os.open(os.path.join(self.dir, GATE_NAME), flags | _NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, 0o666)
            except OSError:
                # Most folders never get a gate: looking for it before every read cost a failed
                # open(). A gc that creates one waits longer than this for readers to notice it.
                self._no_gate_until = time.monotonic() + _GATE_RECHECK
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
            if self.conn.execute("SELECT 1 FROM pack LIMIT 1").fetchall() == []:
                return
            fd = self._folder_fd()
            if fd is None:
                return  # a pack row without a usable folder: reads report the damage
            # The folder appeared meanwhile: start the snapshot again, under the lock.
            self.conn.execute("COMMIT")
            self.conn.execute("BEGIN DEFERRED")
        self._lock_shared(fd)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Keep pack files as they are (gc waits) for reads made outside a read snapshot.

        Rows read in the block name only files that stay. With no pack folder
        yet, there is nothing to lock; should the block then meet a pack
        chunk (a folder created meanwhile), :meth:`read` locks the folder and
        raises :class:`PacksAppeared`: read the rows again.
        """
        if self._read_locked or self._lockless:  # a snapshot (or an outer block) holds the lock already
            yield
            return
        fd = self._folder_fd()
        if fd is None:
            self._lockless = True
        else:
            self._lock_shared(fd)
        try:
            yield
        finally:
            self._lockless = False
            self._end_read()

    def _lock_shared(self, fd: int) -> None:
        """LOCK_SH on the folder, passing through the gate (see :meth:`exclusive`)."""
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
        self._reader_sizes.clear()
        self._writer = None
        for pack_id in list(self._fds):
            self._close_fd(pack_id)
        self._touched.clear()


class PacksAppeared(Exception):
    """The pack folder appeared during a read that found none to lock: read the rows again."""


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


def _write_all(files: FileOps, fd: int, data: bytes | memoryview, offset: int) -> None:
    """pwrite all of ``data`` at ``offset`` (a short write continues where it stopped)."""
    view = memoryview(data)
    while view:
        written = files.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no space left on device (short write)")
        view = view[written:]
        offset += written
