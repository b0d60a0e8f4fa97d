"""File-system shims for the crash suites, plugged into tensordb's storage hooks.

The hooks' ``files`` (a ``tensordb.storage.hooks.FileOps``) carry every
write, fsync, truncation, creation and removal of pack files and bundles;
their ``sqlite_vfs`` names the apsw VFS new SQLite connections use (see
``crash.seams``). Three shims plug into them:

* :class:`JournalFS` (packs) logs each operation to an append-only journal
  before doing it, so that after a SIGKILL the parent can undo everything that
  was not yet durable (:func:`lose_unsynced`): a crash that is also a power
  loss for pack files;
* :class:`Recorder` with :class:`RecordingFS` (packs) and :class:`RecordingVFS`
  (SQLite) keeps every write with its bytes, every sync and every folder change
  in one ordered log, from which :func:`power_cut` rebuilds the files as a
  power loss at any point could have left them;
* :class:`FaultRule` with :class:`FaultFS` and :class:`FaultVFS` fails the n-th
  operation of one kind with EIO or ENOSPC, once or from then on.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apsw

from tensordb.storage.hooks import FileOps

__all__ = [
    "JournalFS", "lose_unsynced", "Recorder", "RecordingFS", "RecordingVFS", "power_cut", "FaultRule", "FaultFS",
    "FaultVFS", "snapshot_files",
]


# -- journal (SIGKILL + loss of what was not durable) -----------------------------------------------

class JournalFS(FileOps):
    """Pack file operations, each journalled before it runs (after it, for syncs)."""

    def __init__(self, journal: str) -> None:
        self.fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.paths: dict[int, str] = {}

    def _log(self, *record: Any) -> None:
        os.write(self.fd, (json.dumps(record) + "\n").encode())

    def makedirs(self, path: str) -> None:
        if not os.path.isdir(path):
            self._log("mkdir", path)
        super().makedirs(path)

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_CREAT and not os.path.exists(path):
            self._log("create", path)
        fd = super().open(path, flags)
        self.paths[fd] = path
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self._log("write", self.paths[fd], offset, len(data), os.fstat(fd).st_size)
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        self._log("sync", self.paths[fd])

    def truncate(self, fd: int, size: int) -> None:
        self._log("truncate", self.paths[fd], os.fstat(fd).st_size, size)
        super().truncate(fd, size)

    def close(self, fd: int) -> None:
        self.paths.pop(fd, None)
        super().close(fd)

    def fsync_dir(self, path: str) -> None:
        super().fsync_dir(path)
        self._log("dirsync", os.path.abspath(path))


def _records(journal: str) -> list[list[Any]]:
    records = []
    with open(journal) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line: that operation never ran
                break
    return records


def lose_unsynced(journal: str) -> int:
    """Undo every journalled change that no later fsync made durable; returns how many.

    Appends not followed by an fsync of their file are cut off; truncations not
    followed by one are undone (the cut bytes come back as zeros, which no
    committed row may need anyway); files and folders whose creation was not
    followed by an fsync of the folder that holds them disappear. Removals
    and renames are taken as durable.
    """
    if not os.path.exists(journal):
        return 0
    records = _records(journal)
    last_sync: dict[str, int] = {}
    last_dirsync: dict[str, int] = {}
    for i, record in enumerate(records):
        if record[0] == "sync":
            last_sync[record[1]] = i
        elif record[0] == "dirsync":
            last_dirsync[record[1]] = i
    undone = 0
    for i in range(len(records) - 1, -1, -1):
        kind, path, *rest = records[i]
        folder = os.path.dirname(os.path.abspath(path))
        if kind == "write" and last_sync.get(path, -1) < i:
            offset, _, size_before = rest
            if offset < size_before:
                raise AssertionError(f"{path}: an overwrite at {offset} (pack files are append-only)")
            if os.path.exists(path) and os.path.getsize(path) > size_before:
                os.truncate(path, size_before)
            undone += 1
        elif kind == "truncate" and last_sync.get(path, -1) < i:
            old_size, _ = rest
            if os.path.exists(path) and os.path.getsize(path) < old_size:
                os.truncate(path, old_size)
            undone += 1
        elif kind == "create" and last_dirsync.get(folder, -1) < i:
            if os.path.exists(path):
                os.remove(path)
            undone += 1
        elif kind == "mkdir" and last_dirsync.get(folder, -1) < i:
            shutil.rmtree(path, ignore_errors=True)
            undone += 1
    return undone


# -- recording with data (power loss at any I/O) ------------------------------------------------------

@dataclass
class Recorder:
    """One ordered log of file operations of SQLite and pack files, plus markers."""

    ops: list[tuple[Any, ...]] = field(default_factory=list)
    enabled: bool = True

    def log(self, *op: Any) -> None:
        if self.enabled:
            self.ops.append(op)

    def io_positions(self) -> list[int]:
        """Indexes of the operations a cut can happen before (every I/O, not the markers)."""
        return [i for i, op in enumerate(self.ops) if op[0] != "mark"]


class RecordingFS(FileOps):
    """Pack file operations, recorded with their bytes."""

    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder
        self.paths: dict[int, str] = {}

    def makedirs(self, path: str) -> None:
        if not os.path.isdir(path):
            self.rec.log("mkdir", os.path.abspath(path))
        super().makedirs(path)

    def open(self, path: str, flags: int) -> int:
        path = os.path.abspath(path)
        if flags & os.O_CREAT and not os.path.exists(path):
            self.rec.log("create", path)
        fd = super().open(path, flags)
        self.paths[fd] = path
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        written = super().pwrite(fd, data, offset)
        self.rec.log("write", self.paths[fd], offset, bytes(memoryview(data)[:written]))
        return written

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        self.rec.log("sync", self.paths[fd])

    def truncate(self, fd: int, size: int) -> None:
        super().truncate(fd, size)
        self.rec.log("truncate", self.paths[fd], size)

    def close(self, fd: int) -> None:
        self.paths.pop(fd, None)
        super().close(fd)

    def remove(self, path: str) -> None:
        super().remove(path)
        self.rec.log("remove", os.path.abspath(path))

    def replace(self, src: str, dst: str) -> None:
        super().replace(src, dst)
        self.rec.log("rename", os.path.abspath(src), os.path.abspath(dst))

    def fsync_dir(self, path: str) -> None:
        super().fsync_dir(path)
        self.rec.log("dirsync", os.path.abspath(path))


def _vfs_name(name: Any) -> str | None:
    if name is None:
        return None
    return os.path.abspath(name.filename() if isinstance(name, apsw.URIFilename) else name)


class _RecordingFile(apsw.VFSFile):
    def __init__(self, rec: Recorder, name: Any, flags: list[int]) -> None:
        self.rec = rec
        self.path = _vfs_name(name)
        if self.path is not None and flags[0] & apsw.SQLITE_OPEN_CREATE and not os.path.exists(self.path):
            rec.log("create", self.path)
        super().__init__("", name, flags)

    def xWrite(self, data: Any, offset: int) -> None:
        super().xWrite(data, offset)
        if self.path is not None:
            self.rec.log("write", self.path, offset, bytes(data))

    def xSync(self, flags: int) -> None:
        super().xSync(flags)
        if self.path is not None:
            # SQLite's unix VFS fsyncs the folder on the first sync of a new WAL or journal
            self.rec.log("sync", self.path)
            self.rec.log("entry", self.path)

    def xTruncate(self, newsize: int) -> None:
        super().xTruncate(newsize)
        if self.path is not None:
            self.rec.log("truncate", self.path, newsize)


class RecordingVFS(apsw.VFS):
    """SQLite's default VFS, with every write, sync, truncation, creation and deletion recorded."""

    def __init__(self, name: str, recorder: Recorder) -> None:
        self.rec = recorder
        self.registered_name = name
        super().__init__(name, "")

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        return _RecordingFile(self.rec, name, flags)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        super().xDelete(filename, syncdir)
        path = os.path.abspath(filename)
        self.rec.log("remove", path)
        if syncdir:
            self.rec.log("dirsync", os.path.dirname(path))


def snapshot_files(root: str) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``, by absolute path."""
    out: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.join(folder, d)] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[path] = f.read()
    return out


@dataclass
class _File:
    durable: bytearray
    pending: list[tuple[Any, ...]] = field(default_factory=list)
    entry_durable: bool = True  # the folder entry survives a power loss
    removed: bool = False  # removed, but the removal is not durable yet


def _apply(image: bytearray, op: tuple[Any, ...]) -> None:
    if op[0] == "write":
        offset, data = op[2], op[3]
        if len(image) < offset:
            image.extend(bytes(offset - len(image)))
        image[offset:offset + len(data)] = data
    elif op[0] == "truncate":
        size = op[2]
        if len(image) > size:
            del image[size:]
        else:
            image.extend(bytes(size - len(image)))


def power_cut(base: dict[str, bytes | None], ops: list[tuple[Any, ...]], cut: int, old_root: str, new_root: str,
              rng: random.Random) -> None:
    """Write under ``new_root`` the files as a power loss just before ``ops[cut]`` may leave them.

    Each file is its last synced image plus a random subset (kept in order) of
    the writes and truncations since; a file or folder created or removed
    since the last fsync of its folder may or may not be there. ``base`` is
    every file under ``old_root`` when recording began (all durable); SQLite's
    -shm file is dropped (SQLite rebuilds it).
    """
    files: dict[str, _File] = {}
    folders: dict[str, bool] = {}  # folder -> its entry is durable
    for path, content in base.items():
        if content is None:
            folders[path] = True
        else:
            files[path] = _File(bytearray(content))
    for op in ops[:cut]:
        kind = op[0]
        if kind == "mark":
            continue
        path = op[1]
        if kind == "mkdir":
            folders[path] = False
        elif kind == "create":
            files[path] = _File(bytearray(), entry_durable=False)
        elif kind in ("write", "truncate"):
            f = files.setdefault(path, _File(bytearray(), entry_durable=False))
            f.pending.append(op)
        elif kind == "sync":
            f = files[path]
            for pending in f.pending:
                _apply(f.durable, pending)
            f.pending.clear()
        elif kind == "entry":
            files[path].entry_durable = True
        elif kind == "remove":
            if path in files:
                files[path].removed = True
        elif kind == "rename":
            files[op[2]] = files.pop(path)
            files[op[2]].entry_durable = False
        elif kind == "dirsync":
            for other, f in list(files.items()):
                if os.path.dirname(other) == path:
                    if f.removed:
                        del files[other]
                    else:
                        f.entry_durable = True
            for folder in folders:
                if os.path.dirname(folder) == path:
                    folders[folder] = True
    lost_folders = {folder for folder, durable in folders.items() if not durable and rng.random() < 0.5}
    for folder in sorted(folders):
        if folder not in lost_folders and os.path.dirname(folder) not in lost_folders:
            os.makedirs(_moved(folder, old_root, new_root), exist_ok=True)
        else:
            lost_folders.add(folder)
    for path, f in files.items():
        if path.endswith("-shm") or os.path.dirname(path) in lost_folders:
            continue
        if (f.removed or not f.entry_durable) and rng.random() < 0.5:
            continue  # the creation (or the removal) reached the disk, or not
        image = bytearray(f.durable)
        for op in f.pending:
            if rng.random() < 0.5:
                _apply(image, op)
        target = _moved(path, old_root, new_root)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(image)


def _moved(path: str, old_root: str, new_root: str) -> str:
    return os.path.join(new_root, os.path.relpath(path, old_root))


# -- injected failures ------------------------------------------------------------------------------

@dataclass
class FaultRule:
    """Fail the n-th operation of one kind (and every later one when ``persistent``)."""

    kind: str | None = None  # None: count only
    n: int = 1
    err: int = errno.EIO
    persistent: bool = False
    armed: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    fired: int = 0

    def hit(self, kind: str) -> bool:
        if not self.armed:
            return False
        self.counts[kind] = self.counts.get(kind, 0) + 1
        count = self.counts[kind]
        if kind == self.kind and (count == self.n or (self.persistent and count > self.n)):
            self.fired += 1
            return True
        return False

    def os_error(self, kind: str) -> OSError:
        return OSError(self.err, f"{os.strerror(self.err)} (injected: {kind} #{self.counts[kind]})")

    def sqlite_error(self, kind: str) -> apsw.Error:
        cls = apsw.FullError if self.err == errno.ENOSPC else apsw.IOError
        return cls(f"injected {os.strerror(self.err)}: {kind} #{self.counts[kind]}")


class FaultFS(FileOps):
    """Pack file operations that fail as a FaultRule says: kinds pack-create, pack-write,
    pack-fsync, pack-truncate, pack-remove, dir-fsync."""

    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule

    def _check(self, kind: str) -> None:
        if self.rule.hit(kind):
            raise self.rule.os_error(kind)

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_CREAT:
            self._check("pack-create")
        return super().open(path, flags)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.rule.hit("pack-write"):
            # a failing write may still have written part of the data
            super().pwrite(fd, memoryview(data)[: len(data) // 2], offset)
            raise self.rule.os_error("pack-write")
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._check("pack-fsync")
        super().fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        self._check("pack-truncate")
        super().truncate(fd, size)

    def remove(self, path: str) -> None:
        self._check("pack-remove")
        super().remove(path)

    def fsync_dir(self, path: str) -> None:
        self._check("dir-fsync")
        super().fsync_dir(path)


class _FaultFile(apsw.VFSFile):
    def __init__(self, vfs: FaultVFS, name: Any, flags: list[int]) -> None:
        self.vfs = vfs
        super().__init__("", name, flags)

    def _check(self, kind: str) -> None:
        rule = self.vfs.rule
        if rule.hit(kind):
            raise rule.sqlite_error(kind)

    def xWrite(self, data: Any, offset: int) -> None:
        self._check("sqlite-write")
        super().xWrite(data, offset)

    def xSync(self, flags: int) -> None:
        self._check("sqlite-sync")
        super().xSync(flags)

    def xTruncate(self, newsize: int) -> None:
        self._check("sqlite-truncate")
        super().xTruncate(newsize)

    def excepthook(self, etype: Any, evalue: Any, etraceback: Any) -> bool:
        return True  # an injected failure SQLite chose not to report (a best-effort step): not news


class FaultVFS(apsw.VFS):
    """SQLite's default VFS whose writes, syncs and truncations fail as a FaultRule says."""

    def __init__(self, name: str) -> None:
        self.rule = FaultRule(armed=False)
        self.registered_name = name
        super().__init__(name, "")

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        return _FaultFile(self, name, flags)

    def excepthook(self, etype: Any, evalue: Any, etraceback: Any) -> bool:
        return True  # injected failures are expected: do not print them


def iter_kinds() -> Iterator[str]:
    yield from ("sqlite-write", "sqlite-sync", "sqlite-truncate", "pack-create", "pack-write", "pack-fsync",
                "pack-truncate", "pack-remove", "dir-fsync")
