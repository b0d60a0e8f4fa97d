"""W2 big array: one float32 field (smooth + noise), chunks 512 x 512, zstd 5 + shuffle everywhere.

Operations: write; read full; row slab ``[r:r+64, :]``; column slab
``[:, c:c+64]``; 64 x 64 box at 20 random offsets; tensordb's streaming write
(``create_array``, then blocks of rows assigned in order); bytes on disk. Every
read opens, reads and closes. Each operation runs in fresh processes
(``python -m bench.run_op W2 ...``: start-up and imports included, the loading
of a write's input excluded) and again in the benchmark's process. The peak RSS
of the slice reads (above the interpreter's baseline after imports) is measured
in a child process, ``python -m bench.w2_big --rss SYSTEM PATH ROWS COLS``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .systems import TDB, fresh, sync, tdb_files

if TYPE_CHECKING:
    from .common import Budget, Workload

CHUNKS = (512, 512)
SLAB = 64
N_BOXES = 20


def make_field(rows: int, cols: int, seed: int = 0) -> np.ndarray[Any, Any]:
    """A smooth field plus a little noise (compressible like simulation output, not trivially)."""
    y = np.linspace(0.0, 6.0, rows, dtype="f4")[:, None]
    x = np.linspace(0.0, 9.0, cols, dtype="f4")[None, :]
    out = np.sin(y) * np.cos(x)
    out += np.random.default_rng(seed).normal(0.0, 0.01, size=(rows, cols)).astype("f4")
    return out


def slices(rows: int, cols: int) -> dict[str, Any]:
    """The row slab, the column slab and the 20 boxes for an array of this shape."""
    r, c = min(4000, rows - SLAB), min(8000, cols - SLAB)
    rng = np.random.default_rng(42)
    corners = zip(rng.integers(0, rows - SLAB, N_BOXES), rng.integers(0, cols - SLAB, N_BOXES))
    boxes = [(int(i), int(j)) for i, j in corners]
    return {"row": (slice(r, r + SLAB), slice(None)), "col": (slice(None), slice(c, c + SLAB)),
            "box": (slice(r, r + SLAB), slice(c, c + SLAB)),
            "boxes": [(slice(i, i + SLAB), slice(j, j + SLAB)) for i, j in boxes]}


class BigPeer(Protocol):
    """What every system does in W2."""

    name: str

    def write(self, data: np.ndarray[Any, Any]) -> None:
        """Store the array from nothing, synced to disk."""

    def read(self, key: Any) -> np.ndarray[Any, Any]:
        """Open, read ``array[key]`` (``...``: all of it), close."""

    def files(self) -> list[Path]:
        """Every file and folder the data lives in."""


class TensordbPeer:
    """tensordb: ``tree.set("/a", data, chunks=(512, 512), codec=Codec("zstd", 5, "byte"))``."""

    name = TDB

    def __init__(self, work: Path) -> None:
        self.path = work / "w2.tdb"

    def write(self, data: np.ndarray[Any, Any]) -> None:
        import tensordb

        with tensordb.open(self.path, mode="w") as db:
            db["w2"] = {}
            db["w2"].set("/a", data, chunks=CHUNKS, codec=tensordb.Codec("zstd", level=5, shuffle="byte"))
        sync()

    def write_streaming(self, data: np.ndarray[Any, Any], block_rows: int) -> None:
        """``create_array``, then blocks of ``block_rows`` rows assigned in order, as data arrive."""
        import tensordb

        with tensordb.open(self.path, mode="w") as db:
            db["w2"] = {}
            array = db["w2"].create_array("/a", data.shape, data.dtype, chunks=CHUNKS,
                                          codec=tensordb.Codec("zstd", level=5, shuffle="byte"))
            for start in range(0, data.shape[0], block_rows):
                array[start:start + block_rows] = data[start:start + block_rows]
        sync()

    def read(self, key: Any) -> np.ndarray[Any, Any]:
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return np.asarray(db["w2"]["/a"][key])

    def files(self) -> list[Path]:
        return tdb_files(self.path)


class Blosc2Peer:
    """python-blosc2 native: an NDArray saved to disk (``.b2nd``), chunks 512 x 512, default blocks."""

    name = "blosc2"

    def __init__(self, work: Path) -> None:
        self.path = work / "w2.b2nd"

    def write(self, data: np.ndarray[Any, Any]) -> None:
        import blosc2

        fresh(self.path)
        cparams = blosc2.CParams(codec=blosc2.Codec.ZSTD, clevel=5, filters=[blosc2.Filter.SHUFFLE])
        blosc2.asarray(data, urlpath=str(self.path), mode="w", chunks=CHUNKS, cparams=cparams)
        sync()

    def read(self, key: Any) -> np.ndarray[Any, Any]:
        import blosc2

        return np.asarray(blosc2.open(str(self.path), mode="r")[key])

    def files(self) -> list[Path]:
        return [self.path]


class ZarrPeer:
    """Zarr v3, ``LocalStore``, chunks 512 x 512, Blosc zstd 5 + shuffle."""

    name = "Zarr v3"

    def __init__(self, work: Path) -> None:
        self.root = work / "w2.zarr"

    def write(self, data: np.ndarray[Any, Any]) -> None:
        import zarr
        from zarr.codecs import BloscCodec

        fresh(self.root)
        arr = zarr.create_array(zarr.storage.LocalStore(self.root), shape=data.shape, dtype=data.dtype,
                                chunks=CHUNKS, compressors=BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"))
        arr[...] = data
        sync()

    def read(self, key: Any) -> np.ndarray[Any, Any]:
        import zarr

        return np.asarray(zarr.open_array(zarr.storage.LocalStore(self.root, read_only=True), mode="r")[key])

    def files(self) -> list[Path]:
        return [self.root]


class H5Peer:
    """h5py: one dataset, chunks 512 x 512, Blosc zstd 5 + shuffle (hdf5plugin)."""

    name = "h5py"

    def __init__(self, work: Path) -> None:
        self.path = work / "w2.h5"

    def write(self, data: np.ndarray[Any, Any]) -> None:
        import h5py
        import hdf5plugin

        with h5py.File(self.path, "w") as f:
            f.create_dataset("a", data=data, chunks=CHUNKS,
                             **hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
        sync()

    def read(self, key: Any) -> np.ndarray[Any, Any]:
        import h5py
        import hdf5plugin  # noqa: F401 - registers the Blosc filter

        with h5py.File(self.path, "r") as f:
            return np.asarray(f["a"][key])

    def files(self) -> list[Path]:
        return [self.path]


class NpyPeer:
    """The I/O limit: a raw ``.npy``; slices through ``np.load(mmap_mode="r")``."""

    name = ".npy"

    def __init__(self, work: Path) -> None:
        self.path = work / "w2.npy"

    def write(self, data: np.ndarray[Any, Any]) -> None:
        np.save(self.path, data)
        sync()

    def read(self, key: Any) -> np.ndarray[Any, Any]:
        if key is Ellipsis:
            return np.load(self.path)
        return np.array(np.load(self.path, mmap_mode="r")[key])

    def files(self) -> list[Path]:
        return [self.path]


PEERS: dict[str, Callable[[Path], BigPeer]] = {
    TDB: TensordbPeer, "blosc2": Blosc2Peer, "Zarr v3": ZarrPeer, "h5py": H5Peer, ".npy": NpyPeer,
}

WRITE, READ_FULL, ROW, COL = "write", "read full", "row slab [r:r+64, :]", "column slab [:, c:c+64]"
BOX = "64x64 box (open+read+close)"
STREAM_RATIO = "streaming write: throughput / whole-array write's"
INPUT = "w2-input.npy"


def _key(name: str, rows: int, cols: int) -> Any:
    """A read's selection by name: ``full``, ``row``, ``col`` or ``box<i>`` (the i-th box offset)."""
    if name == "full":
        return ...
    sl = slices(rows, cols)
    return sl["boxes"][int(name[3:])] if name.startswith("box") else sl[name]


def _load_input(work: Path) -> tuple[np.ndarray[Any, Any], float]:
    start = time.perf_counter()
    data: np.ndarray[Any, Any] = np.load(work / INPUT)
    return data, time.perf_counter() - start


def fresh_op(op: str, system: str, work: Path, args: list[str]) -> dict[str, float]:
    """One W2 operation of ``system`` in this (fresh) process; its figures (see bench.run_op)."""
    if op == "read":
        rows, cols, key = args
        return {"excluded": 0.0, "n": PEERS[system](work).read(_key(key, int(rows), int(cols))).size}
    data, excluded = _load_input(work)
    if op == "write":
        PEERS[system](work).write(data)
    elif op == "stream":
        TensordbPeer(work).write_streaming(data, int(args[0]))
    else:
        raise ValueError(f"unknown W2 operation {op!r}")
    return {"excluded": excluded, "n": data.size}


def rss_of_slices(name: str, path: Path, rows: int, cols: int) -> int:
    """Peak RSS (bytes above the post-import baseline) of the slab and box reads, in a child process."""
    import subprocess

    out = subprocess.run([sys.executable, "-m", "bench.w2_big", "--rss", name, str(path), str(rows), str(cols)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_above_baseline"])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _rss_child(name: str, work: Path, rows: int, cols: int) -> None:
    import blosc2  # noqa: F401 - every library the peers use, imported before the baseline

    import tensordb  # noqa: F401

    for module in ("zarr", "h5py", "hdf5plugin"):
        try:
            __import__(module)
        except ImportError:
            pass
    peer = PEERS[name](work)
    sl = slices(rows, cols)
    peer.read(sl["box"])  # open once: lazily imported code and caches belong to the baseline
    baseline = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    for key in (sl["row"], sl["col"], *sl["boxes"]):
        peer.read(key)
    peak = _status_kib("VmHWM")
    print(json.dumps({"baseline": baseline * 1024, "peak_above_baseline": (peak - baseline) * 1024}))


def run(work: Path, rows: int, cols: int, stream_mib: int, fresh_boxes: int, budget: Budget,
        write_budget: Budget, available: dict[str, str | None], log: Callable[[str], None]) -> Workload:
    """Run W2 for every available system (``fresh_boxes`` box offsets are read in fresh processes)."""
    from .common import Budget, Stat, Workload, disk_usage, in_process_row, run_op, time_both, timed, timed_op

    data = make_field(rows, cols)
    np.save(work / INPUT, data)
    sync()  # so that the first write's sync does not flush the input too
    block_rows = max(1, stream_mib * 2**20 // (cols * data.itemsize))
    systems = [s for s in PEERS if available.get(s, None) is None]
    w = Workload("W2", "big array", f"float32 {rows:,} x {cols:,} ({data.nbytes / 2**20:,.0f} MiB), chunks 512 x 512, "
                 "zstd 5 + shuffle", systems)
    w.skipped = {s: r for s, r in available.items() if r is not None and s in PEERS}
    stream = f"streaming write (`create_array` + {stream_mib} MiB blocks in order)"
    timed_rows = [WRITE, READ_FULL, ROW, COL, BOX]
    for op in [*timed_rows, stream]:
        w.row(op)
    w.row(STREAM_RATIO, "x")
    w.row("bytes on disk", "bytes")
    w.row("peak RSS of the slice reads above baseline", "bytes")
    for op in timed_rows:
        w.row(in_process_row(op))
    sl = slices(rows, cols)
    for name in systems:
        log(f"W2 {name}")
        peer = PEERS[name](work)

        def op_args(op: str, *extra: str, system: str = name) -> list[str]:
            return ["W2", op, system, str(work), *extra]

        time_both(w, WRITE, name, op_args("write"), lambda p=peer: p.write(data), write_budget, False)
        figures, back = time_both(w, READ_FULL, name, op_args("read", str(rows), str(cols), "full"),
                                  lambda p=peer: p.read(...), write_budget, True)
        assert figures["n"] == data.size and (back is None or np.array_equal(back, data)), name
        del back
        for key, op in (("row", ROW), ("col", COL)):
            figures, got = time_both(w, op, name, op_args("read", str(rows), str(cols), key),
                                     lambda p=peer, k=sl[key]: p.read(k), budget, True)
            assert figures["n"] == data[sl[key]].size and (got is None or np.array_equal(got, data[sl[key]]))
        if budget.in_process:
            box_times: list[float] = []
            for _ in range(max(1, budget.repeat // 2)):
                for key in sl["boxes"]:
                    stat, got = timed(lambda p=peer, k=key: p.read(k), Budget(1, 0.0), warmup=True)
                    box_times.append(stat.median)
            assert np.array_equal(got, data[sl["boxes"][-1]])
            w.row(in_process_row(BOX)).values[name] = Stat.of(box_times)
        w.row(BOX).values[name] = Stat.of(
            [run_op(op_args("read", str(rows), str(cols), f"box{i}"))[0] for i in range(fresh_boxes)])
        w.row("bytes on disk").values[name] = Stat.value(disk_usage(peer.files())[0])
        w.row("peak RSS of the slice reads above baseline").values[name] = Stat.value(
            rss_of_slices(name, work, rows, cols))
        if name == TDB:
            streamed, _ = timed_op(op_args("stream", str(block_rows)), write_budget)
            assert np.array_equal(peer.read(...), data), "the streamed array differs"
            whole = w.row(WRITE).values[name]
            assert whole is not None
            w.row(stream).values[name] = streamed
            w.row(STREAM_RATIO).values[name] = Stat.value(whole.median / streamed.median)
        for f in peer.files():
            fresh(f)
    fresh(work / INPUT)
    r, c = sl["row"][0].start, sl["col"][1].start
    w.notes.append(f"Slabs: rows {r}:{r + SLAB}, columns {c}:{c + SLAB}. Every read opens, reads and closes. "
                   "Rows without `in-process`: the wall time of fresh processes (`python -m bench.run_op W2 ...`), "
                   "start-up and imports included, the loading of a write's input array excluded; in-process reads "
                   f"follow one untimed warm-up. Boxes: one fresh process for each of the first {fresh_boxes} offsets "
                   "(after the other reads: a warm page cache); in-process, each of the 20 offsets "
                   "is read once untimed, then timed; the median over all is shown.")
    w.notes.append(f"Streaming write: `create_array`, then blocks of {block_rows:,} rows ({stream_mib} MiB) "
                   "assigned in order, each committed, in fresh processes; its throughput over the whole-array "
                   "write's is the ratio of their fresh-process medians.")
    w.notes.append("Peak RSS: a child process imports every library, opens the array once, resets VmHWM "
                   "(/proc/self/clear_refs), reads both slabs and the 20 boxes; VmHWM minus VmRSS before the reads.")
    return w


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--rss":
        _rss_child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("usage: python -m bench.w2_big --rss SYSTEM WORKDIR ROWS COLS")
