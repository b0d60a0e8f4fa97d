"""Shared pieces of the benchmark suite: timing, results, targets, disk usage, the machine.

Every figure is measured side by side in one run. A timed operation runs
``repeat`` times (after one untimed warm-up for reads, so that every system
sees a warm page cache); the median is reported and min/max are kept.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The system whose ratio against the best peer each table reports.
TDB = "tensordb"


@dataclass
class Stat:
    """A measured figure: median, min and max of ``n`` samples (``n == 1`` for sizes and counts)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    @classmethod
    def value(cls, v: float) -> Stat:
        return cls(float(v), float(v), float(v), 1)


@dataclass(frozen=True)
class Cond:
    """One condition of a target: tensordb's figure vs a peer's (``peer``) or vs an absolute bound.

    ``factor`` is the bound on ``tensordb / peer`` (or on tensordb's figure when ``peer`` is None);
    ``strict`` means ``<`` instead of ``<=``.
    """

    factor: float
    peer: str | None = None
    strict: bool = False

    def check(self, values: dict[str, Stat | None]) -> bool | None:
        mine = values.get(TDB)
        if mine is None:
            return None
        if self.peer is None:
            bound = self.factor
        else:
            other = values.get(self.peer)
            if other is None:
                return None
            bound = self.factor * other.median
        return mine.median < bound if self.strict else mine.median <= bound


@dataclass(frozen=True)
class Target:
    """The issue's target for one row: its text and the conditions that must all hold."""

    text: str
    conds: tuple[Cond, ...]

    def check(self, values: dict[str, Stat | None]) -> bool | None:
        """True/False when every condition could be evaluated, None if a figure is missing."""
        outcomes = [c.check(values) for c in self.conds]
        if any(o is False for o in outcomes):
            return False
        if any(o is None for o in outcomes):
            return None
        return True


@dataclass
class Row:
    """One operation of a workload: a figure per system (None: not applicable or skipped)."""

    op: str
    unit: str  # "s", "bytes", "count", "x" (a plain ratio)
    values: dict[str, Stat | None] = field(default_factory=dict)
    target: Target | None = None
    note: str = ""

    def best_peer(self) -> tuple[str, Stat] | None:
        """The non-tensordb system with the lowest median (every figure here: lower is better)."""
        peers = [(k, v) for k, v in self.values.items() if k != TDB and v is not None]
        return min(peers, key=lambda kv: kv[1].median) if peers else None

    def ratio(self) -> float | None:
        mine, best = self.values.get(TDB), self.best_peer()
        if mine is None or best is None or best[1].median == 0:
            return None
        return mine.median / best[1].median

    def met(self) -> bool | None:
        return None if self.target is None else self.target.check(self.values)


@dataclass
class Workload:
    """The result of one workload: its rows, systems (column order), scale and notes."""

    key: str
    title: str
    scale: str
    systems: list[str]
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, op: str, unit: str = "s", target: Target | None = None, note: str = "") -> Row:
        """The row named ``op`` (created, in order, on first use)."""
        for r in self.rows:
            if r.op == op:
                return r
        r = Row(op, unit, {s: None for s in self.systems}, target, note)
        self.rows.append(r)
        return r


# -- timing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How many times to run an operation: ``repeat`` times, but stop once ``seconds`` are spent."""

    repeat: int
    seconds: float


def timed(fn: Callable[[], Any], budget: Budget, setup: Callable[[], Any] | None = None,
          warmup: bool = False) -> tuple[Stat, Any]:
    """Run ``fn`` several times (``setup`` untimed before each); return its Stat and last result."""
    if warmup:
        if setup is not None:
            setup()
        fn()
    samples: list[float] = []
    result: Any = None
    spent = 0.0
    while len(samples) < budget.repeat and (not samples or spent < budget.seconds):
        if setup is not None:
            setup()
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
        spent += samples[-1]
    return Stat.of(samples), result


def write_syscall_bytes() -> int:
    """Bytes this process passed to write()-like calls so far (``wchar`` of /proc/self/io), or -1."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def sync() -> None:
    """Flush every dirty page to disk: the final sync of every write operation, for all systems alike."""
    os.sync()


# -- files ---------------------------------------------------------------------------------


def disk_usage(paths: Iterable[Path]) -> tuple[int, int]:
    """(total bytes, number of files) of the given files and folders (missing ones count 0)."""
    total = files = 0
    for path in paths:
        if path.is_dir():
            for root, _, names in os.walk(path):
                for name in names:
                    total += os.path.getsize(os.path.join(root, name))
                    files += 1
        elif path.exists():
            total += path.stat().st_size
            files += 1
    return total, files


def fresh(path: Path) -> None:
    """Remove a file or folder if it exists (so that a write starts from nothing)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def tdb_files(db_path: Path) -> list[Path]:
    """A tensordb database's files: the SQLite file, its -wal/-shm and the pack folder."""
    return [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), Path(f"{db_path}-packs")]


# -- the machine ---------------------------------------------------------------------------


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return "not installed"
    return str(getattr(mod, "__version__", None) or getattr(mod, "version", "?"))


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and library versions, tensordb's commit."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        ram = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    here = Path(__file__).resolve().parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=here, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "../tensordb"], capture_output=True,
                           text=True, cwd=here, check=False).stdout.strip()
    import apsw

    versions = {m: _version(m) for m in ("tensordb", "numpy", "blosc2", "zarr", "h5py", "hdf5plugin")}
    versions["apsw"] = apsw.apsw_version()
    versions["sqlite"] = apsw.sqlite_lib_version()
    try:
        import h5py

        versions["hdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_bytes": ram, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "commit": commit + (" (tensordb/ has uncommitted changes)" if commit and dirty else "")}


def zarr_put(group: Any, value: dict[str, Any], **array_options: Any) -> None:
    """Write nested dicts as Zarr groups: arrays as one-chunk arrays, everything else as group attributes."""
    attrs = {}
    for key, v in value.items():
        if isinstance(v, dict):
            zarr_put(group.create_group(key), v, **array_options)
        elif isinstance(v, np.ndarray):
            group.create_array(key, data=v, chunks=v.shape, **array_options)
        else:
            attrs[key] = v
    if attrs:
        group.attrs.update(attrs)
