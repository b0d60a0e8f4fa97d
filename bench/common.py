"""Shared pieces of the benchmark suite: timing, results, targets, disk usage, the machine.

Every figure is measured side by side in one run. A timed operation runs
``repeat`` times, in fresh processes (:func:`timed_op`: the wall time of
``python -m bench.run_op ...`` from spawn to exit) and, for the in-process rows,
in this process (:func:`timed`, reads after one untimed warm-up); the median is
reported and min/max are kept.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .run_op import parse_figures
from .systems import TDB


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
    ``strict`` means ``<`` instead of ``<=``; ``minimum`` turns the bound into a floor (``>=``, or
    ``>`` when strict), for figures where more is better.
    """

    factor: float
    peer: str | None = None
    strict: bool = False
    minimum: bool = False

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
        if self.minimum:
            return mine.median > bound if self.strict else mine.median >= bound
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

    def row(self, op: str, unit: str = "s", note: str = "") -> Row:
        """The row named ``op`` (created, in order, on first use; targets are attached after the run)."""
        for r in self.rows:
            if r.op == op:
                return r
        r = Row(op, unit, {s: None for s in self.systems}, None, note)
        self.rows.append(r)
        return r


# -- timing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How many times to run an operation: ``repeat`` times, but stop once ``seconds`` are spent.

    ``in_process``: time an operation of the fresh-process rows in the benchmark's process too.
    """

    repeat: int
    seconds: float
    in_process: bool = True


def _repeat(measure: Callable[[], tuple[float, Any]], budget: Budget, warmup: bool) -> tuple[Stat, Any]:
    """Take samples of ``measure`` (it returns its seconds and a result) within ``budget``."""
    if warmup:
        measure()
    samples: list[float] = []
    result: Any = None
    while len(samples) < budget.repeat and (not samples or sum(samples) < budget.seconds):
        seconds, result = measure()
        samples.append(seconds)
    return Stat.of(samples), result


def timed(fn: Callable[[], Any], budget: Budget, warmup: bool = False) -> tuple[Stat, Any]:
    """Run ``fn`` in this process several times; return its Stat and last result."""
    def measure() -> tuple[float, Any]:
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result

    return _repeat(measure, budget, warmup)


#: The repository's root: the working folder of every child process, so that ``-m bench...`` resolves.
ROOT = Path(__file__).resolve().parent.parent


# Child processes may cache compiled modules, as on a user's machine (pip compiles them at install):
# an environment that forbids it (PYTHONDONTWRITEBYTECODE) would time every library's compilation.
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_process(argv: list[str]) -> tuple[float, str]:
    """Run a command to its exit: (seconds from spawn to exit, as a user waits for it; its stdout)."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False, env=_CHILD_ENV)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with status {done.returncode}:\n{done.stderr}")
    return seconds, done.stdout


def timed_command(argv: list[str], budget: Budget) -> Stat:
    """A command's wall time, each run a fresh process (after one untimed run: page cache, .pyc files)."""
    return _repeat(lambda: run_process(argv), budget, warmup=True)[0]


def run_op(args: list[str]) -> tuple[float, dict[str, float]]:
    """One operation in a fresh worker process (``python -m bench.run_op ARGS``).

    Returns its wall time from spawn to exit, less the loading of its input that the worker
    reports (``excluded``), and the worker's other figures (counts to check, bytes).
    """
    seconds, out = run_process([sys.executable, "-m", "bench.run_op", *args])
    figures = parse_figures(out.strip().splitlines()[-1])
    return seconds - figures.pop("excluded"), figures


def timed_op(args: list[str] | Callable[[], list[str]], budget: Budget,
             warmup: bool = False) -> tuple[Stat, dict[str, float]]:
    """Run an operation several times, each in a fresh process; ``args`` may be made anew for each run."""
    make = args if callable(args) else lambda: args
    return _repeat(lambda: run_op(make()), budget, warmup)


#: An operation whose fresh-process runs take longer than this (seconds) is not repeated in-process:
#: start-up is then a small part of it, and the run stays short.
IN_PROCESS_UNDER = 30.0


def in_process_row(op: str) -> str:
    """The name of the extra row that times ``op`` inside the benchmark's process."""
    return f"{op}, in-process"


def time_both(w: Workload, op: str, system: str, args: list[str] | Callable[[], list[str]],
              fn: Callable[[], Any], budget: Budget, warmup: bool) -> tuple[dict[str, float], Any]:
    """Time an operation in fresh processes (row ``op``), then in this process (its in-process row,
    after one untimed run if ``warmup``: imports, caches).

    Returns the last worker's figures and the in-process result (None when skipped: see
    :data:`IN_PROCESS_UNDER` and :attr:`Budget.in_process`).
    """
    stat, figures = timed_op(args, budget)  # the page cache holds what the write before wrote
    w.row(op).values[system] = stat
    result = None
    if budget.in_process and stat.median < IN_PROCESS_UNDER:
        w.row(in_process_row(op)).values[system], result = timed(fn, budget, warmup)
    return figures, result


def write_syscall_bytes() -> int:
    """Bytes this process passed to write()-like calls so far (``wchar`` of /proc/self/io), or -1."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


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
