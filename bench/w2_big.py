"""W2 big array: one float32 field (smooth + noise), chunks 512 x 512, zstd 5 + shuffle everywhere.

Operations: write; read full; row slab ``[r:r+64, :]``; column slab
``[:, c:c+64]``; 64 x 64 box at 20 random offsets; bytes on disk. Every read
opens, reads and closes. The peak RSS of the slice reads (above the
interpreter's baseline after imports) is measured in a child process,
``python -m bench.w2_big --rss SYSTEM PATH ROWS COLS``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .common import TDB, Budget, Cond, Stat, Target, Workload, disk_usage, fresh, sync, tdb_files, timed

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

TARGETS = {
    "write": Target("<=1.25x blosc2 (>=0.8x its throughput)", (Cond(1.25, "blosc2"),)),
    "read full": Target("<=1.25x blosc2 (>=0.8x its throughput)", (Cond(1.25, "blosc2"),)),
    "row slab [r:r+64, :]": None,
    "column slab [:, c:c+64]": None,
    "64x64 box, 20 offsets (open+read+close)": Target(
        "<=1.5x blosc2, <Zarr, <h5py", (Cond(1.5, "blosc2"), Cond(1.0, "Zarr v3", True), Cond(1.0, "h5py", True))),
    "bytes on disk": Target("<=1.05x blosc2", (Cond(1.05, "blosc2"),)),
    "peak RSS of the slice reads above baseline": Target("<64 MiB", (Cond(64 * 2**20, None, True),)),
}


def rss_of_slices(name: str, path: Path, rows: int, cols: int) -> int:
    """Peak RSS (bytes above the post-import baseline) of the slab and box reads, in a child process."""
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


def run(work: Path, rows: int, cols: int, budget: Budget, write_budget: Budget,
        available: dict[str, str | None], log: Callable[[str], None]) -> Workload:
    """Run W2 for every available system."""
    data = make_field(rows, cols)
    systems = [s for s in PEERS if available.get(s, None) is None]
    w = Workload("W2", "big array", f"float32 {rows:,} x {cols:,} ({data.nbytes / 2**20:,.0f} MiB), chunks 512 x 512, "
                 "zstd 5 + shuffle", systems)
    w.skipped = {s: r for s, r in available.items() if r is not None and s in PEERS}
    for op, target in TARGETS.items():
        w.row(op, "bytes" if "bytes" in op or "RSS" in op else "s", target)
    sl = slices(rows, cols)
    for name in systems:
        log(f"W2 {name}")
        peer = PEERS[name](work)
        w.row("write").values[name], _ = timed(lambda p=peer: p.write(data), write_budget)
        w.row("read full").values[name], back = timed(lambda p=peer: p.read(...), write_budget, warmup=True)
        assert np.array_equal(back, data)
        del back
        w.row("row slab [r:r+64, :]").values[name], got = timed(lambda p=peer: p.read(sl["row"]), budget, warmup=True)
        assert np.array_equal(got, data[sl["row"]])
        w.row("column slab [:, c:c+64]").values[name], got = timed(lambda p=peer: p.read(sl["col"]), budget,
                                                                   warmup=True)
        assert np.array_equal(got, data[sl["col"]])
        box_times: list[float] = []
        for _ in range(max(1, budget.repeat // 2)):
            for key in sl["boxes"]:
                stat, got = timed(lambda p=peer, k=key: p.read(k), Budget(1, 0.0), warmup=True)
                box_times.append(stat.median)
        assert np.array_equal(got, data[sl["boxes"][-1]])
        w.row("64x64 box, 20 offsets (open+read+close)").values[name] = Stat.of(box_times)
        w.row("bytes on disk").values[name] = Stat.value(disk_usage(peer.files())[0])
        w.row("peak RSS of the slice reads above baseline").values[name] = Stat.value(
            rss_of_slices(name, work, rows, cols))
        for f in peer.files():
            fresh(f)
    r, c = sl["row"][0].start, sl["col"][1].start
    w.notes.append(f"Slabs: rows {r}:{r + SLAB}, columns {c}:{c + SLAB}. Every read opens, reads and closes. "
                   "Boxes: each of the 20 offsets is read once untimed, then timed; the median over all is shown.")
    w.notes.append("Peak RSS: a child process imports every library, opens the array once, resets VmHWM "
                   "(/proc/self/clear_refs), reads both slabs and the 20 boxes; VmHWM minus VmRSS before the reads.")
    return w


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--rss":
        _rss_child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("usage: python -m bench.w2_big --rss SYSTEM WORKDIR ROWS COLS")
