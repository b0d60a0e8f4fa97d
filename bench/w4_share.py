"""W4 sharing: ``n_trees`` trees that each reference the same big float32 array plus their own small fields.

Each system shares the array its own way: tensordb assigns the first tree's
Array handle (``db[name] = {"big": first["/big"], ...}``: a reference, no bytes
copied); JSON+binref writes the array once to ``shared.bin`` and every sample's
JSON points at ``"shared.bin:0"``; h5py hard-links one dataset into every
group. Zarr v3 has no references between arrays (it would store every copy) and
is skipped. Measured: write time and bytes on disk vs one raw copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import tensordb

from . import jsonbinref
from .common import Budget, Stat, Workload, disk_usage, timed
from .systems import TDB, fresh, h5py_blosc, sync, tdb_files
from .w2_big import make_field


def small_fields(i: int) -> dict[str, Any]:
    """The fields of tree ``i`` besides the shared array (a few scalars, two small arrays)."""
    rng = np.random.default_rng(i)
    return {"id": i, "name": f"variant-{i:04d}", "params": {"alpha": float(rng.random()), "steps": int(i * 3)},
            "weights": rng.random(16).astype("f4"), "mask": (rng.random(64) > 0.5).astype("u1")}


class SharePeer(Protocol):
    """What every system does in W4."""

    name: str

    def write(self, big: np.ndarray[Any, Any], n_trees: int) -> None:
        """Store ``n_trees`` trees sharing ``big``, from nothing, synced."""

    def files(self) -> list[Path]:
        """Every file and folder the data lives in."""


class TensordbPeer:
    """tensordb: the first tree stores the array, the others reference its handle."""

    name = TDB

    def __init__(self, work: Path) -> None:
        self.path = work / "w4.tdb"

    def write(self, big: np.ndarray[Any, Any], n_trees: int) -> None:
        with tensordb.open(self.path, mode="w") as db:
            db["t0000"] = {"big": big, **small_fields(0)}
            shared = db["t0000"]["/big"]
            for i in range(1, n_trees):
                db[f"t{i:04d}"] = {"big": shared, **small_fields(i)}
        sync()

    def files(self) -> list[Path]:
        return tdb_files(self.path)


class JsonBinPeer:
    """JSON+binref: ``shared.bin`` written once; every sample's JSON holds ``"shared.bin:0"``."""

    name = "JSON+binref"

    def __init__(self, work: Path) -> None:
        self.root = work / "w4-jsonbin"

    def write(self, big: np.ndarray[Any, Any], n_trees: int) -> None:
        fresh(self.root)
        self.root.mkdir()
        shared = {id(big): jsonbinref.append_bin(self.root / "shared.bin", big)}
        for i in range(n_trees):
            jsonbinref.write(self.root, f"t{i:04d}", {"big": big, **small_fields(i)}, shared)
        sync()

    def files(self) -> list[Path]:
        return [self.root]


class H5Peer:
    """h5py: one chunked dataset, Blosc compressed with tensordb's default codec, hard-linked into every
    tree's group."""

    name = "h5py"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.path = work / "w4.h5"

    def write(self, big: np.ndarray[Any, Any], n_trees: int) -> None:
        import h5py

        with h5py.File(self.path, "w") as f:
            dset = f.create_dataset("shared", data=big, chunks=(512, 512),
                                    **h5py_blosc(self.work))
            for i in range(n_trees):
                g = f.create_group(f"t{i:04d}")
                g["big"] = dset  # a hard link
                for key, v in small_fields(i).items():
                    if isinstance(v, dict):
                        g.create_group(key).attrs.update(v)
                    elif isinstance(v, np.ndarray):
                        g.create_dataset(key, data=v)
                    else:
                        g.attrs[key] = v
        sync()

    def files(self) -> list[Path]:
        return [self.path]


PEERS: dict[str, Callable[[Path], SharePeer]] = {TDB: TensordbPeer, "JSON+binref": JsonBinPeer, "h5py": H5Peer}


def run(work: Path, n_trees: int, mib: int, write_budget: Budget, available: dict[str, str | None],
        log: Callable[[str], None]) -> Workload:
    """Run W4 for every available system."""
    side = int(np.sqrt(mib * 2**20 / 4))
    big = make_field(side, side, seed=4)
    small = sum(v.nbytes for i in range(n_trees) for v in small_fields(i).values() if isinstance(v, np.ndarray))
    one_copy = big.nbytes + small
    systems = [s for s in PEERS if available.get(s, None) is None]
    w = Workload("W4", "sharing", f"{n_trees:,} trees referencing one float32 {side:,} x {side:,} array "
                 f"({big.nbytes / 2**20:.0f} MiB) + their own small fields", systems)
    w.skipped = {s: r for s, r in available.items() if r is not None and s in PEERS}
    w.skipped["Zarr v3"] = "no references between arrays: every tree would store its own copy"
    w.row("write all trees")
    w.row("bytes on disk", "bytes")
    w.row("bytes on disk / one raw copy (array + small fields)", "x")
    for name in systems:
        log(f"W4 {name}")
        peer = PEERS[name](work)
        w.row("write all trees").values[name], _ = timed(lambda p=peer: p.write(big, n_trees), write_budget)
        nbytes = disk_usage(peer.files())[0]
        w.row("bytes on disk").values[name] = Stat.value(nbytes)
        w.row("bytes on disk / one raw copy (array + small fields)").values[name] = Stat.value(nbytes / one_copy)
        for f in peer.files():
            fresh(f)
    w.notes.append(f"One raw copy: {big.nbytes:,} bytes of the shared array + {small:,} bytes of small arrays.")
    return w
