"""W1 mesh samples: ``sims x steps`` samples shaped like the published JSON+binref example.

Operations (each system, same samples): write all (with the final sync);
reopen and read all; read one field (``data/internal/point_data/p``) of every
sample through the system's own handles; read the scalar ``time`` of every
sample (tensordb: through ``db[name]["time"]`` and through SQL); restructure
every sample (rename ``data/inlet`` to ``data/inflow``, add a scalar; tensordb:
across trees at once and tree by tree) with the bytes written; bytes on disk
and number of files. The peers that compress (h5py, Zarr) use tensordb's
default codec.

Each operation runs in fresh processes (``python -m bench.run_op W1 ...``, the
figures of the targets) and again in the benchmark's process (the in-process
rows). numpy and tensordb are imported where an operation uses them, so that a
fresh process pays for its own system's imports only (reading every ``time``
of JSON+binref needs ``json`` alone).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import jsonbinref
from .systems import TDB, fresh, h5py_blosc, sync, tdb_files, zarr_blosc, zarr_put

if TYPE_CHECKING:
    import numpy as np

    from .common import Budget, Workload

FIELD = ("data", "internal", "point_data", "p")
FIELD_PATH = "/" + "/".join(FIELD)
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
        self.array_bytes_written = 0

    def write(self, samples: Samples) -> None:
        import tensordb

        with tensordb.open(self.path, mode="w") as db, db.transaction():
            for name, sample in samples:
                db[name] = sample
        sync()

    def write_committing_each(self, samples: Samples) -> None:
        """The same, with one transaction (one fsync of the WAL) per sample."""
        import tensordb

        with tensordb.open(self.path, mode="w") as db:
            for name, sample in samples:
                db[name] = sample
        sync()

    def read_all(self) -> list[Any]:
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return [db[name].load() for name in db]

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return [db[name][FIELD_PATH][...] for name in db]

    def read_times(self) -> list[Any]:
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return [db[name]["time"] for name in db]

    def read_times_sql(self) -> list[Any]:
        """``time`` of every sample in one query over the ``nodes`` view."""
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return db.sql("SELECT tree, value FROM nodes WHERE path = '/time'").fetchall()

    def restructure(self, src: str, dst: str, value: int) -> None:
        """Across every tree at once: ``db.move`` and ``db.set``, in one transaction."""
        import tensordb

        with tensordb.open(self.path, mode="r+") as db:
            before = db.counters.chunk_bytes_written
            with db.transaction():
                db.move(f"/data/{src}", f"/data/{dst}")
                db.set("/reviewed", value)
            self.array_bytes_written = db.counters.chunk_bytes_written - before
        sync()

    def restructure_each(self, src: str, dst: str, value: int) -> None:
        """Tree by tree: ``tree.move`` and ``tree[key] = value`` in each, in one transaction."""
        import tensordb

        with tensordb.open(self.path, mode="r+") as db, db.transaction():
            for name in db:
                tree = db[name]
                tree.move(f"/data/{src}", f"/data/{dst}")
                tree["reviewed"] = value
        sync()

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
        import numpy as np

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
        import numpy as np

        out = []
        for folder in self._folders():
            leaves: dict[tuple[str, ...], Any] = {
                tuple(k.split("/")): v for k, v in json.loads((folder / "meta.json").read_text()).items()}
            for f in folder.glob("*.npy"):
                leaves[tuple(f.stem.split("__"))] = np.load(f)
            out.append(_nest(leaves))
        return out

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        import numpy as np

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

    Arrays of 1 KiB or more are chunked (one chunk) and Blosc compressed (hdf5plugin) with
    tensordb's default codec; smaller ones are contiguous and uncompressed.
    """

    name = "h5py"

    def __init__(self, work: Path) -> None:
        import h5py
        import numpy as np

        self.h5py = h5py
        self.ndarray = np.ndarray
        self.work = work
        self.path = work / "w1.h5"

    def _put(self, group: Any, value: dict[str, Any], blosc: Any) -> None:
        for key, v in value.items():
            if isinstance(v, dict):
                self._put(group.create_group(key), v, blosc)
            elif isinstance(v, self.ndarray):
                if v.nbytes >= jsonbinref.INLINE_BELOW:
                    group.create_dataset(key, data=v, chunks=v.shape, **blosc)
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
        blosc = h5py_blosc(self.work)
        with self.h5py.File(self.path, "w") as f:
            for name, sample in samples:
                self._put(f.create_group(name), sample, blosc)
        sync()

    def read_all(self) -> list[Any]:
        import hdf5plugin  # noqa: F401 - registers the Blosc filter (reading attributes alone does without)

        with self.h5py.File(self.path, "r") as f:
            return [self._get(f[name]) for name in f]

    def read_field(self) -> list[np.ndarray[Any, Any]]:
        import hdf5plugin  # noqa: F401 - registers the Blosc filter

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
    as one-chunk arrays, Blosc compressed with tensordb's default codec. Zarr cannot move a node
    (``Group.move`` is not implemented), so the restructure renames the folder and edits the
    sample group's attributes."""

    name = "Zarr v3"

    def __init__(self, work: Path) -> None:
        import zarr

        self.zarr = zarr
        self.work = work
        self.root = work / "w1.zarr"

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
        codec = zarr_blosc(self.work)
        for name, sample in samples:
            zarr_put(root.create_group(name), sample, compressors=codec)
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

# The rows timed in fresh processes (each also has an in-process row), in table order.
WRITE = "write all (one transaction + sync)"
READ_ALL = "reopen + read all"
READ_FIELD = "one field, all samples (handles)"
TIMES = '`time`, all samples: `db[name]["time"]`'
TIMES_SQL = "`time`, all samples: SQL"
RESTRUCTURE = "restructure all (move + scalar)"
RESTRUCTURE_EACH = "restructure all, tree by tree (`tree.move`)"
#: fresh-process operation -> (row, the peer's method)
READS = {"read-all": (READ_ALL, "read_all"), "read-field": (READ_FIELD, "read_field"),
         "read-times": (TIMES, "read_times"), "read-times-sql": (TIMES_SQL, "read_times_sql")}
RESTRUCTURES = {"restructure": (RESTRUCTURE, "restructure"), "restructure-each": (RESTRUCTURE_EACH, "restructure_each")}
#: tensordb's second way of an operation -> its first: the peers have one way, shown in both rows
SECOND_WAYS = {TIMES_SQL: TIMES, RESTRUCTURE_EACH: RESTRUCTURE}
INPUT = "w1-input"
COUNTING_VFS = "bench-counting"


# -- fresh processes -------------------------------------------------------------------------


def save_input(work: Path, samples: Samples) -> None:
    """The samples, for the writes in fresh processes to load (in the JSON+binref format: numpy only)."""
    folder = work / INPUT
    fresh(folder)
    folder.mkdir()
    for name, sample in samples:
        jsonbinref.write(folder, name, sample)
    sync()  # so that the first write's sync does not flush the input too


def _owned(value: Any) -> Any:
    """``value`` with every array copied: aligned and writeable, as arrays a program computed are."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _owned(v) for k, v in value.items()}
    return np.array(value) if isinstance(value, np.ndarray) else value


def load_input(work: Path) -> Samples:
    """The samples :func:`save_input` wrote."""
    return [(p.stem, _owned(jsonbinref.read(p))) for p in sorted((work / INPUT).glob("*.json"))]


def restructure_io(work: Path, src: str, dst: str, value: int) -> dict[str, float]:
    """Bytes tensordb's restructure writes: array bytes (its counter), and what SQLite writes, durable
    (database, WAL, journals) and to temporary files (statement journals, temporary tables and
    indexes), counted by an apsw VFS that every connection of tensordb uses (``storage.hooks.install``)."""
    import apsw

    from tensordb.storage import hooks

    written = {"durable": 0, "temporary": 0}
    durable = (apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_WAL | apsw.SQLITE_OPEN_MAIN_JOURNAL
               | apsw.SQLITE_OPEN_SUPER_JOURNAL)

    class CountingFile(apsw.VFSFile):
        def __init__(self, name: Any, flags: list[int]) -> None:
            self.kind = "durable" if flags[0] & durable else "temporary"
            super().__init__("", name, flags)

        def xWrite(self, data: Any, offset: int) -> None:
            super().xWrite(data, offset)
            written[self.kind] += memoryview(data).nbytes

    class CountingVFS(apsw.VFS):
        def __init__(self) -> None:
            super().__init__(COUNTING_VFS, "")

        def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
            return CountingFile(name, flags)

    vfs = CountingVFS()  # noqa: F841 - registered while it lives: until this process ends
    hooks.install(hooks.StorageHooks(sqlite_vfs=COUNTING_VFS))
    peer = TensordbPeer(work)
    peer.restructure(src, dst, value)
    return {"arrays": float(peer.array_bytes_written), **{k: float(v) for k, v in written.items()}}


def fresh_op(op: str, system: str, work: Path, args: list[str]) -> dict[str, float]:
    """One W1 operation of ``system`` in this (fresh) process; its figures (see bench.run_op)."""
    if op == "write":
        import numpy  # noqa: F401 - a script's data are numpy arrays before it writes them: counted

        start = time.perf_counter()
        samples = load_input(work)
        excluded = time.perf_counter() - start
        PEERS[system](work).write(samples)
        return {"excluded": excluded, "n": len(samples)}
    if op in RESTRUCTURES:
        src, dst, value = args
        getattr(PEERS[system](work), RESTRUCTURES[op][1])(src, dst, int(value))
        return {"excluded": 0.0}
    if op == "restructure-io":
        src, dst, value = args
        return {"excluded": 0.0, **restructure_io(work, src, dst, int(value))}
    return {"excluded": 0.0, "n": len(getattr(PEERS[system](work), READS[op][1])())}


# -- the workload ----------------------------------------------------------------------------


def run(work: Path, sims: int, steps: int, budget: Budget, write_budget: Budget,
        available: dict[str, str | None], log: Callable[[str], None]) -> Workload:
    """Run W1 for every available system; ``available`` maps system -> skip reason (None: run it)."""
    import numpy as np

    from tensordb.demo import synthetic_samples

    from .common import (
        IN_PROCESS_UNDER,
        Stat,
        Workload,
        disk_usage,
        in_process_row,
        run_op,
        time_both,
        timed,
        write_syscall_bytes,
    )

    samples: Samples = list(synthetic_samples(sims, steps))
    save_input(work, samples)
    raw = sum(v.nbytes for _, s in samples for _, v in _walk(s) if isinstance(v, np.ndarray))
    systems = [s for s in PEERS if available.get(s, None) is None]
    w = Workload("W1", "mesh samples", f"{sims} sims x {steps} steps = {len(samples):,} samples, "
                 f"{raw / len(samples) / 1e3:.0f} KB of arrays per sample", systems)
    w.skipped = {s: r for s, r in available.items() if r is not None and s in PEERS}
    timed_rows = [WRITE, READ_ALL, READ_FIELD, TIMES, TIMES_SQL, RESTRUCTURE, RESTRUCTURE_EACH]
    for op in timed_rows:
        w.row(op)
    w.row("bytes on disk", "bytes")
    w.row("files", "count")
    w.row("restructure: durable bytes per tree (database + WAL)", "bytes")
    w.row("restructure: temporary-file bytes", "bytes")
    w.row("restructure: array bytes written", "bytes")
    w.row("restructure: bytes passed to write()", "bytes")
    for op in timed_rows:
        w.row(in_process_row(op))
    w.row("write all, one commit per sample, in-process")
    for name in systems:
        log(f"W1 {name}")
        peer = PEERS[name](work)
        flips = itertools.count()

        def flip(flips: Iterator[int] = flips) -> list[str]:
            """The next restructure's arguments: back and forth between the two names."""
            i = next(flips)
            return ["inlet", "inflow", str(i)] if i % 2 == 0 else ["inflow", "inlet", str(i)]

        def op_args(op: str, system: str = name) -> list[str]:
            return ["W1", op, system, str(work)]

        if name == TDB and write_budget.in_process:
            w.row("write all, one commit per sample, in-process").values[name], _ = timed(
                lambda p=peer: p.write_committing_each(samples), write_budget)  # type: ignore[attr-defined]
        figures, _ = time_both(w, WRITE, name, op_args("write"), lambda p=peer: p.write(samples), write_budget, False)
        assert figures["n"] == len(samples), (name, figures)
        for op, (row, method) in READS.items():
            if row in SECOND_WAYS and name != TDB:
                continue
            figures, result = time_both(w, row, name, op_args(op), getattr(peer, method), budget, True)
            assert figures["n"] == len(samples) and (result is None or len(result) == len(samples)), (name, op)
            if op == "read-field" and result is not None:
                assert all(f.shape[1] == 1 for f in result), name
        nbytes, nfiles = disk_usage(peer.files())
        if name == TDB:  # the target counts tensordb's files without SQLite's own -wal/-shm
            nfiles = disk_usage(peer.files()[:1] + peer.files()[3:])[1]
        w.row("bytes on disk").values[name] = Stat.value(nbytes)
        w.row("files").values[name] = Stat.value(nfiles)

        def restructure_in_process(method: str, p: MeshPeer = peer) -> int:
            src, dst, value = flip()
            before = write_syscall_bytes()
            getattr(p, method)(src, dst, int(value))
            return write_syscall_bytes() - before

        for op, (row, method) in RESTRUCTURES.items():
            if row in SECOND_WAYS and name != TDB:
                continue
            _, written = time_both(w, row, name, lambda op=op: op_args(op) + flip(),
                                   lambda method=method: restructure_in_process(method), write_budget, False)
            if written is not None and op == "restructure":
                w.row("restructure: bytes passed to write()").values[name] = Stat.value(written)
        if name != TDB:
            for second, first in SECOND_WAYS.items():
                w.row(second).values[name] = w.row(first).values[name]
                w.row(in_process_row(second)).values[name] = w.row(in_process_row(first)).values[name]
        if name == TDB:
            _, io = run_op(op_args("restructure-io") + flip())
            w.row("restructure: array bytes written").values[name] = Stat.value(io["arrays"])
            w.row("restructure: durable bytes per tree (database + WAL)").values[name] = Stat.value(
                io["durable"] / len(samples))
            w.row("restructure: temporary-file bytes").values[name] = Stat.value(io["temporary"])
        for f in peer.files():
            fresh(f)
    fresh(work / INPUT)
    w.notes.append("Every row without `in-process` is the wall time of fresh processes (`python -m bench.run_op "
                   "W1 OP SYSTEM DIR`), from spawn to exit: interpreter start-up and the system's imports "
                   "included, the loading of a write's input samples excluded. The `in-process` rows time the "
                   "same code in the benchmark's process, after its imports; they are left out for an "
                   f"operation whose fresh-process runs take over {IN_PROCESS_UNDER:g} s.")
    w.notes.append("`time` across samples: tensordb reads `db[name][\"time\"]` of every tree, and runs one SQL "
                   "query over the `nodes` view (`WHERE path = '/time'`); the peers have one way, shown in both "
                   "rows: open every sample.")
    w.notes.append("Restructure: tensordb moves `/data/inlet` and sets `/reviewed` in every tree at once "
                   "(`db.move`, `db.set`, one transaction); the row 'tree by tree' does it with `tree.move` and "
                   "`tree[key] = value` in each tree (one transaction). The peers have one way, shown in both rows.")
    w.notes.append("Restructure bytes: `durable` and `temporary-file` bytes are what SQLite writes through an "
                   "apsw VFS that counts by kind of file (database and WAL; statement journals, temporary "
                   "tables and indexes), in one more fresh-process restructure; `bytes passed to write()` is "
                   "the `wchar` of /proc/self/io over the in-process restructure, for every system.")
    w.notes.append("Writes and restructures end with `os.sync()` for every system. tensordb writes all samples "
                   "in one transaction (`with db.transaction():`, `synchronous=FULL`, WAL); the row "
                   "'one commit per sample' commits (and fsyncs) each sample instead. Fresh-process reads run "
                   "after the write, on a warm page cache; in-process reads follow one untimed warm-up.")
    return w
