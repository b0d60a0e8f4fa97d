"""W3 metadata scale: one tree of ``n_leaves`` scalar leaves in 3-level nested dicts plus
``n_arrays`` arrays of 16 float32.

Operations (each one starts from a closed file): write; reopen and read one deep
leaf; list all leaf paths; find all int leaves > 900. The write runs in fresh
processes (``python -m bench.run_op W3 write SYSTEM DIR LEAVES ARRAYS``: start-up
and imports included, the generation of the tree excluded) and in the benchmark's
process; the reads in the benchmark's process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import jsonbinref
from .systems import TDB, fresh, sync, tdb_files, zarr_put

if TYPE_CHECKING:
    from .common import Budget, Workload

TOP = 20  # level-1 dicts
PER_DICT = 100  # leaves per level-3 dict (scalars)
ARRAYS_PER_DICT = 10


def make_tree(n_leaves: int, n_arrays: int) -> tuple[dict[str, Any], list[str], int]:
    """(the tree, the deep leaf's path, the number of int leaves > 900).

    Scalars live at ``/gII/sJJJ/kKKK`` (KKK % 10: 0 float, 1 str, 2 bool, else int in
    [0, 1000)); arrays at ``/arrays/aII/bJJJ/cK``.
    """
    rng = np.random.default_rng(3)
    mid = max(1, n_leaves // (TOP * PER_DICT))
    ints = rng.integers(0, 1000, size=TOP * mid * PER_DICT)
    tree: dict[str, Any] = {}
    hits = 0
    n = 0
    for i in range(TOP):
        level1: dict[str, Any] = {}
        for j in range(mid):
            leaves: dict[str, Any] = {}
            for k in range(PER_DICT):
                kind = k % 10
                if kind == 0:
                    leaves[f"k{k:03d}"] = float(ints[n]) / 7.0
                elif kind == 1:
                    leaves[f"k{k:03d}"] = f"label-{ints[n]}"
                elif kind == 2:
                    leaves[f"k{k:03d}"] = bool(ints[n] % 2)
                else:
                    leaves[f"k{k:03d}"] = int(ints[n])
                    hits += int(ints[n]) > 900
                n += 1
            level1[f"s{j:03d}"] = leaves
        tree[f"g{i:02d}"] = level1
    amid = max(1, n_arrays // (TOP * ARRAYS_PER_DICT))
    values = rng.random((TOP * amid * ARRAYS_PER_DICT, 16)).astype("f4")
    tree["arrays"] = {f"a{i:02d}": {f"b{j:03d}": {f"c{k}": values[(i * amid + j) * ARRAYS_PER_DICT + k]
                                                   for k in range(ARRAYS_PER_DICT)}
                                    for j in range(amid)} for i in range(TOP)}
    deep = ["g07", f"s{mid // 2:03d}", "k043"]
    return tree, deep, hits


class MetaPeer(Protocol):
    """What every system does in W3."""

    name: str

    def write(self, tree: dict[str, Any]) -> None:
        """Store the tree from nothing, synced."""

    def leaf(self, path: list[str]) -> Any:
        """Open, read one scalar leaf, close."""

    def leaf_paths(self) -> list[str]:
        """Open, list the path of every leaf (scalars and arrays), close."""

    def ints_over(self, bound: int) -> list[tuple[str, int]]:
        """Open, find every int leaf greater than ``bound``, close."""

    def files(self) -> list[Path]:
        """Every file and folder the data lives in."""


class TensordbPeer:
    """tensordb: ``db["w3"] = tree``; queries through ``db.sql`` over the ``nodes`` view."""

    name = TDB

    def __init__(self, work: Path) -> None:
        self.path = work / "w3.tdb"

    def write(self, tree: dict[str, Any]) -> None:
        import tensordb

        with tensordb.open(self.path, mode="w") as db:
            db["w3"] = tree
        sync()

    def leaf(self, path: list[str]) -> Any:
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return db["w3"]["/" + "/".join(path)]

    def leaf_paths(self) -> list[str]:
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return [p for (p,) in db.sql("SELECT path FROM nodes WHERE tree = 'w3' AND kind NOT IN ('dict', 'list')")]

    def ints_over(self, bound: int) -> list[tuple[str, int]]:
        import tensordb

        with tensordb.open(self.path, mode="r") as db:
            return db.sql("SELECT path, value FROM nodes WHERE tree = 'w3' AND kind = 'int' AND value > ?",
                          (bound,)).fetchall()

    def files(self) -> list[Path]:
        return tdb_files(self.path)


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and not jsonbinref._is_array(value):
        return [item for k, v in value.items() for item in _leaves(v, f"{prefix}/{k}")]
    return [(prefix, value)]


class JsonBinPeer:
    """JSON+binref: one JSON file (every array is under 1 KiB: base64 inline, no ``.bin``)."""

    name = "JSON+binref"

    def __init__(self, work: Path) -> None:
        self.root = work / "w3-jsonbin"

    def write(self, tree: dict[str, Any]) -> None:
        fresh(self.root)
        self.root.mkdir()
        jsonbinref.write(self.root, "w3", tree)
        sync()

    def leaf(self, path: list[str]) -> Any:
        value = jsonbinref.read_json(self.root / "w3.json")
        for key in path:
            value = value[key]
        return value

    def leaf_paths(self) -> list[str]:
        return [p for p, _ in _leaves(jsonbinref.read_json(self.root / "w3.json"))]

    def ints_over(self, bound: int) -> list[tuple[str, int]]:
        return [(p, v) for p, v in _leaves(jsonbinref.read_json(self.root / "w3.json"))
                if type(v) is int and v > bound]

    def files(self) -> list[Path]:
        return [self.root]


class H5Peer:
    """h5py: nested groups, scalars as attributes, arrays as (small, contiguous) datasets."""

    name = "h5py"

    def __init__(self, work: Path) -> None:
        import h5py

        self.h5py = h5py
        self.path = work / "w3.h5"

    def _put(self, group: Any, value: dict[str, Any]) -> None:
        for key, v in value.items():
            if isinstance(v, dict):
                self._put(group.create_group(key), v)
            elif isinstance(v, np.ndarray):
                group.create_dataset(key, data=v)
            else:
                group.attrs[key] = v

    def write(self, tree: dict[str, Any]) -> None:
        with self.h5py.File(self.path, "w") as f:
            self._put(f, tree)
        sync()

    def leaf(self, path: list[str]) -> Any:
        with self.h5py.File(self.path, "r") as f:
            return f["/".join(path[:-1])].attrs[path[-1]]

    def _visit(self, fn: Callable[[str, Any], None]) -> None:
        with self.h5py.File(self.path, "r") as f:
            def visit(name: str, item: Any) -> None:
                if isinstance(item, self.h5py.Group):
                    for key, value in item.attrs.items():
                        fn(f"/{name}/{key}", value)
                else:
                    fn(f"/{name}", item)
            f.visititems(visit)

    def leaf_paths(self) -> list[str]:
        out: list[str] = []
        self._visit(lambda p, v: out.append(p))
        return out

    def ints_over(self, bound: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []

        def check(path: str, value: Any) -> None:
            if isinstance(value, np.integer) and value > bound:
                out.append((path, int(value)))
        self._visit(check)
        return out

    def files(self) -> list[Path]:
        return [self.path]


class ZarrPeer:
    """Zarr v3 (``LocalStore``): nested groups, scalars as group attributes, arrays as one-chunk arrays."""

    name = "Zarr v3"

    def __init__(self, work: Path) -> None:
        import zarr

        self.zarr = zarr
        self.root = work / "w3.zarr"

    def _put(self, group: Any, value: dict[str, Any]) -> None:
        zarr_put(group, value)

    def _open(self, path: str = "") -> Any:
        return self.zarr.open_group(self.zarr.storage.LocalStore(self.root, read_only=True), path=path, mode="r")

    def write(self, tree: dict[str, Any]) -> None:
        fresh(self.root)
        self._put(self.zarr.open_group(self.zarr.storage.LocalStore(self.root), mode="w"), tree)
        sync()

    def leaf(self, path: list[str]) -> Any:
        return self._open("/".join(path[:-1])).attrs[path[-1]]

    def _visit(self, fn: Callable[[str, Any], None]) -> None:
        def visit(group: Any, prefix: str) -> None:
            for key, value in group.attrs.items():
                fn(f"{prefix}/{key}", value)
            for key, item in group.members():
                if isinstance(item, self.zarr.Group):
                    visit(item, f"{prefix}/{key}")
                else:
                    fn(f"{prefix}/{key}", item)
        visit(self._open(), "")

    def leaf_paths(self) -> list[str]:
        out: list[str] = []
        self._visit(lambda p, v: out.append(p))
        return out

    def ints_over(self, bound: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        self._visit(lambda p, v: out.append((p, v)) if type(v) is int and v > bound else None)
        return out

    def files(self) -> list[Path]:
        return [self.root]


PEERS: dict[str, Callable[[Path], MetaPeer]] = {
    TDB: TensordbPeer, "JSON+binref": JsonBinPeer, "h5py": H5Peer, "Zarr v3": ZarrPeer,
}


def fresh_op(op: str, system: str, work: Path, args: list[str]) -> dict[str, float]:
    """The W3 write of ``system`` in this (fresh) process; its figures (see bench.run_op)."""
    if op != "write":
        raise ValueError(f"unknown W3 operation {op!r}")
    start = time.perf_counter()
    tree = make_tree(int(args[0]), int(args[1]))[0]
    excluded = time.perf_counter() - start
    PEERS[system](work).write(tree)
    return {"excluded": excluded}


def run(work: Path, n_leaves: int, n_arrays: int, budget: Budget, write_budget: Budget,
        available: dict[str, str | None], log: Callable[[str], None]) -> Workload:
    """Run W3 for every available system."""
    from .common import Stat, Workload, disk_usage, time_both, timed

    tree, deep, hits = make_tree(n_leaves, n_arrays)
    expected = _leaves(tree)
    systems = [s for s in PEERS if available.get(s, None) is None]
    w = Workload("W3", "metadata scale", f"{len(expected) - n_arrays:,} scalar leaves in 3-level dicts + "
                 f"{n_arrays:,} arrays of 16 float32, one tree", systems)
    w.skipped = {s: r for s, r in available.items() if r is not None and s in PEERS}
    leaf, paths, over = ("reopen + one deep leaf, in-process", "list all leaf paths (open included), in-process",
                         "int leaves > 900 (open included), in-process")
    for op in ("write", "write, in-process", leaf, paths, over):
        w.row(op)
    w.row("bytes on disk", "bytes")
    for name in systems:
        log(f"W3 {name}")
        peer = PEERS[name](work)
        time_both(w, "write", name, ["W3", "write", name, str(work), str(n_leaves), str(n_arrays)],
                  lambda p=peer: p.write(tree), write_budget, False)
        w.row(leaf).values[name], got = timed(lambda p=peer: p.leaf(deep), budget, warmup=True)
        assert got == tree[deep[0]][deep[1]][deep[2]], (name, got)
        w.row(paths).values[name], found_paths = timed(peer.leaf_paths, budget, warmup=True)
        assert len(found_paths) == len(expected), (name, len(found_paths), len(expected))
        w.row(over).values[name], found = timed(lambda p=peer: p.ints_over(900), budget, warmup=True)
        assert len(found) == hits, (name, len(found), hits)
        w.row("bytes on disk").values[name] = Stat.value(disk_usage(peer.files())[0])
        for f in peer.files():
            fresh(f)
    w.notes.append(f"Deep leaf: /{'/'.join(deep)}. tensordb lists and filters with `db.sql` over the `nodes` view; "
                   "JSON+binref parses the whole file; h5py and Zarr walk groups and attributes.")
    w.notes.append("`write`: the wall time of fresh processes, start-up and imports included, the generation of "
                   "the tree excluded; `in-process`: the same code in the benchmark's process.")
    return w
