"""W1 mesh samples: ``sims x steps`` samples shaped like the published JSON+binref example.

Operations (each system, same samples): write all (with the final sync);
reopen and read all; read one field (``data/internal/point_data/p``) across
all samples; read the scalar ``time`` of all samples; restructure every
sample (rename ``data/inlet`` to ``data/inflow``, add a scalar) with the
bytes written; bytes on disk and number of files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import tensordb
from tensordb.demo import synthetic_samples

from . import jsonbinref
from .common import (
    TDB,
    Budget,
    Cond,
    Stat,
    Target,
    Workload,
    disk_usage,
    fresh,
    sync,
    tdb_files,
    timed,
    write_syscall_bytes,
    zarr_put,
)

FIELD = ("data", "internal", "point_data", "p")
Samples = list[tuple[str, dict[str, Any]]]


class MeshPeer(Protocol):
    """What every system does in W1."""

    name: str

    def write(self, samples: Samples) -> None:
        """Store every sample (from nothing), synced to disk."""

    def read_all(self) -> list[Any]:
        """Reopen and load every sample fully (numpy arrays, not handles)."""

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        """``data/internal/point_data/p`` of every sample."""

    def read_times(self) -> list[Any]:
        """The scalar ``time`` of every sample."""

    def restructure(self, src: str, dst: str, value: int) -> None:
        """In every sample, rename ``data/src`` to ``data/dst`` and set the scalar ``reviewed``."""

    def files(self) -> list[Path]:
        """Every file and folder the system's data lives in."""


def _walk(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _walk(v, (*prefix, k))]
    return [(prefix, value)]


def _nest(leaves: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, value in leaves.items():
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return root


# -- peers -----------------------------------------------------------------------------------


class TensordbPeer:
    """tensordb with its defaults: ``db[name] = sample``; a bulk import is one transaction."""

    name = TDB

    def __init__(self, work: Path) -> None:
        self.path = work / "w1.tdb"

    def write(self, samples: Samples) -> None:
        with tensordb.open(self.path, mode="w") as db, db.transaction():
            for name, sample in samples:
                db[name] = sample
        sync()

    def write_committing_each(self, samples: Samples) -> None:
        """The same, with one transaction (one fsync of the WAL) per sample."""
        with tensordb.open(self.path, mode="w") as db:
            for name, sample in samples:
                db[name] = sample
        sync()

    def read_all(self) -> list[Any]:
        with tensordb.open(self.path, mode="r") as db:
            return [db[name].load() for name in db]

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        with tensordb.open(self.path, mode="r") as db:
            return [a[...] for _, _, a in db.glob("/" + "/".join(FIELD))]

    def read_times(self) -> list[Any]:
        with tensordb.open(self.path, mode="r") as db:
            return db.sql("SELECT tree, value FROM nodes WHERE path = '/time'").fetchall()

    def restructure(self, src: str, dst: str, value: int) -> None:
        with tensordb.open(self.path, mode="r+") as db:
            before = db.counters.chunk_bytes_written
            with db.transaction():
                for name in db:
                    tree = db[name]
                    tree.move(f"/data/{src}", f"/data/{dst}")
                    tree["reviewed"] = value
            self.array_bytes_written = db.counters.chunk_bytes_written - before

    def files(self) -> list[Path]:
        return tdb_files(self.path)


class JsonBinPeer:
    """The JSON+binref format: one ``.json`` + one ``.bin`` per sample, no compression."""

    name = "JSON+binref"

    def __init__(self, work: Path) -> None:
        self.root = work / "w1-jsonbin"

    def _jsons(self) -> list[Path]:
        return sorted(self.root.glob("*.json"))

    def write(self, samples: Samples) -> None:
        fresh(self.root)
        self.root.mkdir()
        for name, sample in samples:
            jsonbinref.write(self.root, name, sample)
        sync()

    def read_all(self) -> list[Any]:
        return [jsonbinref.read(p) for p in self._jsons()]

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        return [jsonbinref.read_array(p, list(FIELD)) for p in self._jsons()]

    def read_times(self) -> list[Any]:
        return [jsonbinref.read_json(p)["time"] for p in self._jsons()]

    def restructure(self, src: str, dst: str, value: int) -> None:
        for p in self._jsons():
            doc = jsonbinref.read_json(p)
            doc["data"][dst] = doc["data"].pop(src)
            doc["reviewed"] = value
            jsonbinref.rewrite_json(p, doc)
        sync()

    def files(self) -> list[Path]:
        return [self.root]


class NpyPeer:
    """The I/O limit: one raw ``.npy`` per array and a ``meta.json`` of scalars per sample folder."""

    name = ".npy"

    def __init__(self, work: Path) -> None:
        self.root = work / "w1-npy"

    def _folders(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir())

    def write(self, samples: Samples) -> None:
        fresh(self.root)
        for name, sample in samples:
            folder = self.root / name
            folder.mkdir(parents=True)
            scalars: dict[str, Any] = {}
            for path, leaf in _walk(sample):
                if isinstance(leaf, np.ndarray):
                    np.save(folder / ("__".join(path) + ".npy"), leaf)
                else:
                    scalars["/".join(path)] = leaf
            (folder / "meta.json").write_text(json.dumps(scalars))
        sync()

    def read_all(self) -> list[Any]:
        out = []
        for folder in self._folders():
            leaves: dict[tuple[str, ...], Any] = {
                tuple(k.split("/")): v for k, v in json.loads((folder / "meta.json").read_text()).items()}
            for f in folder.glob("*.npy"):
                leaves[tuple(f.stem.split("__"))] = np.load(f)
            out.append(_nest(leaves))
        return out

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        return [np.load(folder / ("__".join(FIELD) + ".npy")) for folder in self._folders()]

    def read_times(self) -> list[Any]:
        return [json.loads((folder / "meta.json").read_text())["time"] for folder in self._folders()]

    def restructure(self, src: str, dst: str, value: int) -> None:
        for folder in self._folders():
            for f in folder.glob(f"data__{src}__*.npy"):
                f.rename(folder / f.name.replace(f"data__{src}__", f"data__{dst}__", 1))
            meta = json.loads((folder / "meta.json").read_text())
            meta = {k.replace(f"data/{src}/", f"data/{dst}/", 1): v for k, v in meta.items()}
            meta["reviewed"] = value
            (folder / "meta.json").write_text(json.dumps(meta))
        sync()

    def files(self) -> list[Path]:
        return [self.root]


class H5Peer:
    """h5py: one file, a group per sample (and per dict), scalars as attributes, arrays as datasets.

    Arrays of 1 KiB or more are chunked (one chunk) and Blosc zstd 5 + shuffle compressed
    (hdf5plugin); smaller ones are contiguous and uncompressed.
    """

    name = "h5py"

    def __init__(self, work: Path) -> None:
        import h5py
        import hdf5plugin

        self.h5py = h5py
        self.blosc = hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
        self.path = work / "w1.h5"

    def _put(self, group: Any, value: dict[str, Any]) -> None:
        for key, v in value.items():
            if isinstance(v, dict):
                self._put(group.create_group(key), v)
            elif isinstance(v, np.ndarray):
                if v.nbytes >= jsonbinref.INLINE_BELOW:
                    group.create_dataset(key, data=v, chunks=v.shape, **self.blosc)
                else:
                    group.create_dataset(key, data=v)
            else:
                group.attrs[key] = v

    def _get(self, group: Any) -> dict[str, Any]:
        out: dict[str, Any] = dict(group.attrs)
        for key, item in group.items():
            out[key] = self._get(item) if isinstance(item, self.h5py.Group) else item[()]
        return out

    def write(self, samples: Samples) -> None:
        with self.h5py.File(self.path, "w") as f:
            for name, sample in samples:
                self._put(f.create_group(name), sample)
        sync()

    def read_all(self) -> list[Any]:
        with self.h5py.File(self.path, "r") as f:
            return [self._get(f[name]) for name in f]

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        with self.h5py.File(self.path, "r") as f:
            return [f[name]["/".join(FIELD)][()] for name in f]

    def read_times(self) -> list[Any]:
        with self.h5py.File(self.path, "r") as f:
            return [f[name].attrs["time"] for name in f]

    def restructure(self, src: str, dst: str, value: int) -> None:
        with self.h5py.File(self.path, "r+") as f:
            for name in f:
                f[name].move(f"data/{src}", f"data/{dst}")
                f[name].attrs["reviewed"] = value
        sync()

    def files(self) -> list[Path]:
        return [self.path]


class ZarrPeer:
    """Zarr v3, ``LocalStore``: a group per sample (and per dict), scalars as attributes, arrays
    as one-chunk arrays compressed with Blosc zstd 5 + shuffle. Zarr cannot move a node
    (``Group.move`` is not implemented), so the restructure renames the folder and edits the
    sample group's attributes."""

    name = "Zarr v3"

    def __init__(self, work: Path) -> None:
        import zarr
        from zarr.codecs import BloscCodec

        self.zarr = zarr
        self.codec = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
        self.root = work / "w1.zarr"

    def _put(self, group: Any, value: dict[str, Any]) -> None:
        zarr_put(group, value, compressors=self.codec)

    def _get(self, group: Any) -> dict[str, Any]:
        out: dict[str, Any] = dict(group.attrs)
        for key, item in group.members():
            out[key] = self._get(item) if isinstance(item, self.zarr.Group) else item[...]
        return out

    def _open(self, mode: str = "r") -> Any:
        return self.zarr.open_group(self.zarr.storage.LocalStore(self.root), mode=mode)

    def write(self, samples: Samples) -> None:
        fresh(self.root)
        root = self.zarr.open_group(self.zarr.storage.LocalStore(self.root), mode="w")
        for name, sample in samples:
            self._put(root.create_group(name), sample)
        sync()

    def read_all(self) -> list[Any]:
        root = self._open()
        return [self._get(root[name]) for name in sorted(root.group_keys())]

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        root = self._open()
        return [root["/".join((name, *FIELD))][...] for name in sorted(root.group_keys())]

    def read_times(self) -> list[Any]:
        root = self._open()
        return [root[name].attrs["time"] for name in sorted(root.group_keys())]

    def restructure(self, src: str, dst: str, value: int) -> None:
        root = self._open("r+")
        for name in sorted(root.group_keys()):
            os.rename(self.root / name / "data" / src, self.root / name / "data" / dst)
            root[name].attrs["reviewed"] = value
        sync()

    def files(self) -> list[Path]:
        return [self.root]


PEERS: dict[str, Callable[[Path], MeshPeer]] = {
    TDB: TensordbPeer, "JSON+binref": JsonBinPeer, "h5py": H5Peer, "Zarr v3": ZarrPeer, ".npy": NpyPeer,
}

TARGETS = {
    "write all (+ final sync)": Target("<=1x JSON+binref, <=0.1x Zarr, <1x h5py",
                                       (Cond(1.0, "JSON+binref"), Cond(0.1, "Zarr v3"), Cond(1.0, "h5py", True))),
    "reopen + read all": Target("<=1.5x JSON+binref, <1x h5py", (Cond(1.5, "JSON+binref"), Cond(1.0, "h5py", True))),
    "one field, all samples": Target("<=1x JSON+binref", (Cond(1.0, "JSON+binref"),)),
    "`time`, all samples": Target("<=1/3x JSON+binref", (Cond(1 / 3, "JSON+binref"),)),
    "restructure all": Target("<=0.1x JSON+binref", (Cond(0.1, "JSON+binref"),)),
    "restructure: array bytes written": Target("0", (Cond(0.0),)),
    "bytes on disk": Target("<=0.4x JSON+binref", (Cond(0.4, "JSON+binref"),)),
    "files": Target("<=3 (+ -wal/-shm)", (Cond(3.0),)),
}


def run(work: Path, sims: int, steps: int, budget: Budget, write_budget: Budget,
        available: dict[str, str | None], log: Callable[[str], None]) -> Workload:
    """Run W1 for every available system; ``available`` maps system -> skip reason (None: run it)."""
    samples: Samples = list(synthetic_samples(sims, steps))
    raw = sum(v.nbytes for _, s in samples for _, v in _walk(s) if isinstance(v, np.ndarray))
    systems = [s for s in PEERS if available.get(s, None) is None]
    w = Workload("W1", "mesh samples", f"{sims} sims x {steps} steps = {len(samples):,} samples, "
                 f"{raw / len(samples) / 1e3:.0f} KB of arrays per sample", systems)
    w.skipped = {s: r for s, r in available.items() if r is not None and s in PEERS}
    for op, target in TARGETS.items():
        unit = "bytes" if "bytes" in op else "count" if op == "files" else "s"
        w.row(op, unit, target)
    w.row("restructure: bytes passed to write()", "bytes")
    w.row("write all, one commit per sample", "s")
    for name in systems:
        log(f"W1 {name}")
        peer = PEERS[name](work)
        if name == TDB:
            w.row("write all, one commit per sample").values[name], _ = timed(
                lambda p=peer: p.write_committing_each(samples), write_budget)  # type: ignore[attr-defined]
        w.row("write all (+ final sync)").values[name], _ = timed(lambda p=peer: p.write(samples), write_budget)
        w.row("reopen + read all").values[name], loaded = timed(peer.read_all, budget, warmup=True)
        assert len(loaded) == len(samples)
        w.row("one field, all samples").values[name], field = timed(peer.read_field, budget, warmup=True)
        assert len(field) == len(samples) and all(f.shape[1] == 1 for f in field)
        w.row("`time`, all samples").values[name], times = timed(peer.read_times, budget, warmup=True)
        assert len(times) == len(samples)
        nbytes, nfiles = disk_usage(peer.files())
        if name == TDB:  # the target counts tensordb's files without SQLite's own -wal/-shm
            nfiles = disk_usage(peer.files()[:1] + peer.files()[3:])[1]
        w.row("bytes on disk").values[name] = Stat.value(nbytes)
        w.row("files").values[name] = Stat.value(nfiles)
        flips = iter(range(1_000_000))

        def restructure(p: MeshPeer = peer, flips: Any = flips) -> int:
            i = next(flips)
            src, dst = ("inlet", "inflow") if i % 2 == 0 else ("inflow", "inlet")
            before = write_syscall_bytes()
            p.restructure(src, dst, i)
            return write_syscall_bytes() - before

        w.row("restructure all").values[name], written = timed(restructure, write_budget)
        w.row("restructure: bytes passed to write()").values[name] = Stat.value(written)
        if name == TDB:
            w.row("restructure: array bytes written").values[name] = Stat.value(peer.array_bytes_written)  # type: ignore[attr-defined]
        for f in peer.files():
            fresh(f)
    w.notes.append("`time` across samples: tensordb runs one SQL query over the `nodes` view "
                   "(`WHERE path = '/time'`); the peers open every sample.")
    w.notes.append("Writes and restructures end with `os.sync()` for every system. tensordb writes all samples "
                   "in one transaction (`with db.transaction():`, `synchronous=FULL`, WAL); the row "
                   "'one commit per sample' commits (and fsyncs) each sample instead. "
                   "Reads follow one untimed warm-up (warm page cache).")
    return w
