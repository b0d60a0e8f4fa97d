"""Seams for the crash, power-loss and I/O-fault tests; inert in normal use.

Crash points
    ``TENSORDB_TEST_CRASHPOINT="name:n"`` (several separated by commas) kills
    the process with SIGKILL the n-th time the named step of the write, gc,
    compaction or bundle protocol is reached. :data:`CRASHPOINTS` lists the
    steps. The variable is read once, at import; when it is unset,
    :func:`crashpoint` returns at once. :func:`hits` tells how often each
    armed point was reached (arm a point with a huge n to count its hits).

Planted bugs (tests prove that their harnesses catch them; never set them otherwise)
    ``TENSORDB_TEST_UNSAFE_COMMIT_BEFORE_PACK_FLUSH=1``: the outermost COMMIT
    runs before the transaction's pack files are fsynced; they are fsynced
    only when the next write transaction begins.
    ``TENSORDB_TEST_UNSAFE_NO_PACK_FSYNC=1``: pack files and their folder are
    never fsynced.

File operations
    Pack files and bundles are written through :data:`files`, a
    :class:`FileOps`, and new SQLite connections use the apsw VFS named by
    :data:`sqlite_vfs` (SQLite's default when ``None``). Tests substitute a
    FileOps subclass or register a VFS that records or fails
    operations. Reads do not go through the seam.

A test process forked after import sets the environment and calls
:func:`reload`.
"""

from __future__ import annotations

import os
import signal

__all__ = [
    "CRASHPOINTS",
    "FileOps",
    "crashpoint",
    "files",
    "hits",
    "reload",
    "sqlite_vfs",
]

ENV_CRASHPOINT = "TENSORDB_TEST_CRASHPOINT"
ENV_COMMIT_BEFORE_PACK_FLUSH = "TENSORDB_TEST_UNSAFE_COMMIT_BEFORE_PACK_FLUSH"
ENV_NO_PACK_FSYNC = "TENSORDB_TEST_UNSAFE_NO_PACK_FSYNC"

#: Every crash point, in protocol order, with the state the process dies in.
CRASHPOINTS = {
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

_targets: dict[str, int] = {}
_hits: dict[str, int] = {}
#: Planted bug: COMMIT before the pack flush (see the module docstring).
UNSAFE_COMMIT_BEFORE_PACK_FLUSH = False
#: Planted bug: no pack fsync at all.
UNSAFE_NO_PACK_FSYNC = False


def _parse(spec: str) -> dict[str, int]:
    targets: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        if name not in CRASHPOINTS:
            raise ValueError(f"{ENV_CRASHPOINT}: unknown crash point {name!r}; known: {', '.join(CRASHPOINTS)}")
        targets[name] = int(count or 1)
    return targets


def reload() -> None:
    """Read the environment variables again (for test processes forked after import)."""
    global UNSAFE_COMMIT_BEFORE_PACK_FLUSH, UNSAFE_NO_PACK_FSYNC
    _targets.clear()
    _targets.update(_parse(os.environ.get(ENV_CRASHPOINT, "")))
    _hits.clear()
    UNSAFE_COMMIT_BEFORE_PACK_FLUSH = os.environ.get(ENV_COMMIT_BEFORE_PACK_FLUSH) == "1"
    UNSAFE_NO_PACK_FSYNC = os.environ.get(ENV_NO_PACK_FSYNC) == "1"


def crashpoint(name: str) -> None:
    """Die here (SIGKILL) if ``name`` is armed and this is its n-th hit."""
    if _targets and name in _targets:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] == _targets[name]:
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def hits() -> dict[str, int]:
    """How often each armed crash point was reached (for tests that arm points they never reach)."""
    return dict(_hits)


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


#: The file operations in use (tests replace this object).
files = FileOps()
#: The apsw VFS name new connections use; None for SQLite's default.
sqlite_vfs: str | None = None

reload()
