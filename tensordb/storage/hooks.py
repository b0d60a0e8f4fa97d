"""What the storage layer does its durable I/O through: file operations, a step tracer, a VFS.

A :class:`Store` takes a :class:`StorageHooks`: the :class:`FileOps` that
every pack-file and bundle write, fsync, truncation, creation, rename and
removal goes through, a ``trace`` function called with the name of each step
of the write, gc, compaction and bundle protocols as it is reached, and the
name of the apsw VFS its SQLite connections open files with. The defaults do
the plain operating-system calls, trace nothing and use SQLite's default VFS.

Tools that record, fail or interrupt I/O (crash and power-loss harnesses)
pass their own, either to one store or, for every store the process opens
afterwards, with :func:`install`. Reads do not go through the hooks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["FileOps", "StorageHooks", "TRACE_STEPS", "install", "installed"]

#: Every step ``trace`` is called with, in protocol order, with the state the files are in at that moment.
TRACE_STEPS = {
    "begin": "BEGIN IMMEDIATE of an outermost write transaction has run",
    "compress": "a chunk has been compressed, nothing of it stored yet",
    "pack-create": "a new pack file exists with its header, its row is not committed",
    "pack-write": "chunk bytes have been written to a pack file, not fsynced",
    "chunk-row": "a chunk record has been inserted (not committed)",
    "rows-written": "every row of the transaction is written; packs not yet fsynced",
    "pack-fsync": "one pack file written by the transaction has been fsynced",
    "dir-fsync": "the pack folder (and its parent) has been fsynced after a pack was created",
    "before-commit": "pack files are durable, COMMIT has not run",
    "after-commit": "COMMIT has returned; post-commit work has not run",
    "rollback": "a rolled-back (sub)transaction's pack bytes have been cut",
    "compact-copy": "gc copied one live chunk into the new pack (not committed)",
    "compact-commit": "gc's transaction has committed; old packs still exist",
    "compact-unlink": "gc deleted one pack file its commit stopped referencing",
    "trim": "gc cut the unreferenced tail of one pack file",
    "bundle-copy": "bundle: VACUUM INTO wrote the temporary file",
    "bundle-inline": "bundle: every pack chunk is inline in the temporary file",
    "bundle-fsync": "bundle: the temporary file is complete and fsynced, not renamed",
    "bundle-rename": "bundle: renamed into place, folder not yet fsynced",
}


class FileOps:
    """The file operations that write pack files and bundles, on file descriptors."""

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o666)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def remove(self, path: str) -> None:
        os.remove(path)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync_path(self, path: str) -> None:
        """fsync a file by name (a finished bundle)."""
        fd = self.open(path, os.O_RDONLY)
        try:
            self.fsync(fd)
        finally:
            self.close(fd)


def _trace_nothing(step: str) -> None:
    return None


class StorageHooks(NamedTuple):
    """The file operations, step tracer and SQLite VFS of a store (see the module docstring)."""

    files: FileOps = FileOps()  # stateless: one instance serves every store
    trace: Callable[[str], None] = _trace_nothing
    sqlite_vfs: str | None = None


_installed = StorageHooks()


def installed() -> StorageHooks:
    """The hooks a store opened without explicit ones uses."""
    return _installed


def install(hooks: StorageHooks) -> StorageHooks:
    """Make ``hooks`` the default of every store opened from now on; returns the previous default."""
    global _installed
    previous, _installed = _installed, hooks
    return previous
