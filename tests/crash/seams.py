"""Crash points and planted bugs, plugged into the storage hooks of tensordb.

The engine reports every step of its write, gc, compaction and bundle
protocols to a trace function and does its durable I/O through a FileOps
object (``tensordb.storage.hooks``); both do nothing special by default. This
module turns them into what the crash suites need:

* crash points: :func:`arm` with ``crash_at="after-commit:2"`` (several
  separated by commas) kills the process with SIGKILL the n-th time the step
  is reached; :func:`hits` tells how often each armed step was reached (arm a
  step with a huge n to count it);
* planted bugs, which the harnesses prove they catch:
  ``commit-before-pack-flush`` (pack fsyncs asked for before a COMMIT run only
  when the next write transaction begins) and ``no-pack-fsync`` (pack files
  and their folder are never fsynced);
* :func:`use`: other file operations (recording, journalling, failing ones)
  or an apsw VFS for every store opened afterwards in this process.

Forked workers call :func:`arm` in the child, before opening the database; a
worker that is a fresh interpreter imports this module and does the same.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from tensordb.storage import hooks
from tensordb.storage.hooks import TRACE_STEPS, FileOps, StorageHooks

__all__ = ["PLANTED_BUGS", "arm", "armed_points", "hits", "use", "restore", "Delegating", "NoPackFsync",
           "CommitBeforePackFlush"]

PLANTED_BUGS = ("commit-before-pack-flush", "no-pack-fsync")


def use(**changes: Any) -> StorageHooks:
    """Replace fields (``files``, ``trace``, ``sqlite_vfs``) of the installed hooks; returns the previous hooks."""
    return hooks.install(hooks.installed()._replace(**changes))


def restore(previous: StorageHooks) -> None:
    """Install ``previous`` again, closing what the hooks it replaces still hold."""
    left = hooks.install(previous)
    if isinstance(left.files, CommitBeforePackFlush):
        left.files.forget_owed()


# -- crash points ------------------------------------------------------------------------------------

def parse_crash_points(spec: str) -> dict[str, int]:
    """``"name:n,name:n"`` -> {name: n} (n defaults to 1); unknown steps are refused."""
    targets: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        if name not in TRACE_STEPS:
            raise ValueError(f"unknown crash point {name!r}; known: {', '.join(TRACE_STEPS)}")
        targets[name] = int(count or 1)
    return targets


class CrashPoints:
    """A trace function that dies (SIGKILL) at the n-th hit of each armed step."""

    def __init__(self, targets: dict[str, int]) -> None:
        self.targets = targets
        self.hits: dict[str, int] = {}

    def __call__(self, step: str) -> None:
        if step in self.targets:
            self.hits[step] = self.hits.get(step, 0) + 1
            if self.hits[step] == self.targets[step]:
                os.kill(os.getpid(), signal.SIGKILL)


_armed = CrashPoints({})


def armed_points() -> dict[str, int]:
    """The steps armed by the last :func:`arm`, with the hit each one dies at."""
    return dict(_armed.targets)


def hits() -> dict[str, int]:
    """How often each step armed by the last :func:`arm` was reached."""
    return dict(_armed.hits)


# -- planted bugs --------------------------------------------------------------------------------------

class Delegating(FileOps):
    """File operations passed on to another FileOps (planted bugs override some of them)."""

    def __init__(self, inner: FileOps) -> None:
        self.inner = inner

    def makedirs(self, path: str) -> None:
        self.inner.makedirs(path)

    def open(self, path: str, flags: int) -> int:
        return self.inner.open(path, flags)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return self.inner.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self.inner.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        self.inner.truncate(fd, size)

    def close(self, fd: int) -> None:
        self.inner.close(fd)

    def remove(self, path: str) -> None:
        self.inner.remove(path)

    def replace(self, src: str, dst: str) -> None:
        self.inner.replace(src, dst)

    def fsync_dir(self, path: str) -> None:
        self.inner.fsync_dir(path)


class NoPackFsync(Delegating):
    """Planted bug: nothing is ever fsynced."""

    def fsync(self, fd: int) -> None:
        return None

    def fsync_dir(self, path: str) -> None:
        return None


class CommitBeforePackFlush(Delegating):
    """Planted bug: the fsyncs asked for before a COMMIT run only once the next write transaction has begun.

    Install :meth:`trace` as (part of) the trace function: it runs the owed
    fsyncs at the step ``begin``.
    """

    def __init__(self, inner: FileOps) -> None:
        super().__init__(inner)
        self.owed: list[tuple[str, Any]] = []

    def fsync(self, fd: int) -> None:
        # The engine may close the descriptor before the next transaction: keep a copy of it.
        copy = os.dup(fd)
        paths = getattr(self.inner, "paths", None)
        if isinstance(paths, dict) and fd in paths:
            paths[copy] = paths[fd]  # the recording shims log a sync under the file's name
        self.owed.append(("file", copy))

    def fsync_dir(self, path: str) -> None:
        self.owed.append(("dir", path))

    def forget_owed(self) -> None:
        """Close the descriptors kept for fsyncs that will never run (the process goes on without the store)."""
        owed, self.owed = self.owed, []
        for kind, target in owed:
            if kind == "file":
                os.close(target)

    def trace(self, step: str) -> None:
        if step == "begin":
            owed, self.owed = self.owed, []
            for kind, target in owed:
                if kind == "dir":
                    self.inner.fsync_dir(target)
                else:
                    self.inner.fsync(target)
                    self.inner.close(target)


# -- arming ---------------------------------------------------------------------------------------------

def _chain(*traces: Callable[[str], None]) -> Callable[[str], None]:
    def trace(step: str) -> None:
        for fn in traces:
            fn(step)
    return trace


def arm(crash_at: str = "", planted: str | None = None, files: FileOps | None = None) -> StorageHooks:
    """Install crash points, a planted bug and file operations for every store opened from now on.

    ``files`` defaults to the plain operations; a planted bug wraps them. Returns the previous hooks.
    """
    global _armed
    if planted is not None and planted not in PLANTED_BUGS:
        raise ValueError(f"unknown planted bug {planted!r}; known: {', '.join(PLANTED_BUGS)}")
    _armed = CrashPoints(parse_crash_points(crash_at))
    files = FileOps() if files is None else files
    traces: list[Callable[[str], None]] = []
    if planted == "no-pack-fsync":
        files = NoPackFsync(files)
    elif planted == "commit-before-pack-flush":
        files = CommitBeforePackFlush(files)
        traces.append(files.trace)
    traces.append(_armed)
    return use(files=files, trace=_chain(*traces))
