"""SQL benchmark: metadata queries over 1 million nodes (issue 4, criterion 5).

Builds a database of N mesh-sample trees of 100 nodes each (default 10,000
trees = 1,000,000 nodes, plus one tree holding a 10,101-node subtree) and a
10x smaller one built the same way, caches both in a work folder, and times:

- open + read one leaf (``tensordb.open(p, mode="r")``, one scalar, close), on
  both databases, to show that it does not depend on the database size;
- a (key, value) filter through ``db.sql`` (``key = 'time' AND value > ?``);
- a path-prefix query across all trees through ``db.sql`` (``path GLOB '/data/inlet/*'``);
- ``list(db.glob("/data/*/point_data/p"))`` across all trees;
- moving the 10,101-node subtree (``tree.move("/big", "/moved")`` and back),
  each in its own transaction, commit included.

Figures are the median (and min/max) of several repetitions on a warm page
cache, after one untimed warm-up run; every row prints its target and whether
it is met. Diagnostic rows (no target) run the same SQL on the raw apsw
connection, to separate SQLite's time from tensordb's Python layer.

Run:  python -m bench.bench_sql [--trees 10000] [--repeat 15] [--workdir DIR]
                                [--rebuild] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import tensordb

from .common import machine

#: Bump when the generated layout changes, so cached databases are rebuilt.
LAYOUT_VERSION = 1
STEPS_PER_SIM = 100
BATCH = 500  # trees per transaction while building
BIG_TREE = "big-subtree"
BIG_DICTS, BIG_KEYS = 100, 100  # /big/<100 dicts>/<100 keys>: 10,101 nodes with /big itself
LEAF = "/data/internal/n_points"
TIME_ABOVE = 450  # time = 5 * step + 1 in 1..496: steps 90..99, 10% of the trees
PREFIX_QUERY = "SELECT tree, path, kind, value FROM nodes WHERE path GLOB '/data/inlet/*'"
FILTER_QUERY = "SELECT tree, value FROM nodes WHERE key = 'time' AND value > ?"
# The same rows and columns, counted inside SQLite (on the base tables, so that the plan is the
# query's own: an aggregate over the view would add the parent join): its cost before rows reach Python.
PREFIX_ENGINE_ONLY = ("SELECT count(t.name), count(n.path), count(n.kind), count(n.value)"
                      " FROM node n JOIN tree t ON t.tree_id = n.tree_id WHERE n.path GLOB '/data/inlet/*'")
GLOB_PATTERN = "/data/*/point_data/p"

#: mesh -> object_type (five meshes per sample, as in tensordb.demo)
MESHES = {
    "inlet": "PasteurSurfaceMesh",
    "outlet": "PasteurSurfaceMesh",
    "wall": "PasteurSurfaceMesh",
    "obstacle": "PasteurSurfaceMesh",
    "internal": "PasteurVolumetricMesh",
}

# Targets (seconds) from issue 4, criterion 5.
T_OPEN, T_FILTER, T_GLOB, T_MOVE = 0.005, 0.100, 0.500, 0.200
SIZE_RATIO_LIMIT = 1.25  # "independent of size": full / small median at most this


# -- data ------------------------------------------------------------------------------

def tree_name(i: int) -> str:
    return f"bm01-sim{i // STEPS_PER_SIM:03d}-step{i % STEPS_PER_SIM:03d}"


def sample(i: int) -> dict[str, Any]:
    """One mesh sample of exactly 100 nodes (root included), 20 of them small arrays.

    root, name, time, params (+15 scalars), data (+5 meshes x 16 nodes):
    1 + 2 + 16 + 1 + 80 = 100.
    """
    sim, step = divmod(i, STEPS_PER_SIM)
    rng = np.random.default_rng(i)
    t = 5 * step + 1
    params = {
        "reynolds": 100.0 + sim, "viscosity": 1e-3, "density": 1.0, "inlet_velocity": 1.0 + 0.01 * sim,
        "outlet_pressure": 0.0, "cfl": 0.8, "dt": 0.01, "end_time": 500.0, "n_iterations": 1000 + step,
        "solver": "pimpleFoam", "turbulence_model": "kOmegaSST", "scheme": "linearUpwind",
        "converged": bool(step % 7), "residual": float(rng.uniform(1e-7, 1e-5)), "seed": i,
    }
    data: dict[str, Any] = {}
    for m, (mesh, object_type) in enumerate(MESHES.items()):
        n_points = 50 + m * 40 + (sim * 389) % 2200
        p = rng.random(4).astype("f4")
        u = rng.random((2, 3)).astype("f4")
        data[mesh] = {
            "object_type": object_type,
            "n_points": n_points,
            "n_cells": n_points // 2,
            "cell_type": 12 if mesh == "internal" else 7,
            "cell_data": {"p": rng.random(4).astype("f4"), "U": rng.random((2, 3)).astype("f4")},
            "point_data": {"p": p, "U": u},
            "stats": {"p_min": float(p.min()), "p_max": float(p.max()), "p_mean": float(p.mean()),
                      "U_max": float(np.abs(u).max())},
        }
    return {"name": tree_name(i), "time": t, "params": params, "data": data}


def big_sample() -> dict[str, Any]:
    """A sample plus ``/big``: 100 dicts of 100 int leaves (10,101 nodes to move)."""
    value = sample(0)
    value["name"] = BIG_TREE
    value["big"] = {f"d{i:03d}": {f"k{j:03d}": i * BIG_KEYS + j for j in range(BIG_KEYS)} for i in range(BIG_DICTS)}
    return value


def build(path: Path, n_trees: int) -> dict[str, Any]:
    """Build the database at ``path`` (written aside, renamed when complete) and describe it."""
    tmp = path.with_name(path.name + ".building")
    start = time.perf_counter()
    with tensordb.open(tmp, mode="w") as db:
        for first in range(0, n_trees, BATCH):
            with db.transaction():
                for i in range(first, min(first + BATCH, n_trees)):
                    db[tree_name(i)] = sample(i)
        with db.transaction():
            db[BIG_TREE] = big_sample()
        stats = db.stats()
    seconds = time.perf_counter() - start  # close included (it runs PRAGMA optimize)
    packs = Path(str(tmp) + "-packs")
    if packs.exists():  # never expected (every chunk is tiny), but keep the pair together
        os.replace(packs, str(path) + "-packs")
    os.replace(tmp, path)
    info = {"layout": LAYOUT_VERSION, "trees": stats["trees"], "nodes": stats["nodes"],
            "arrays": stats["arrays"], "file_bytes": path.stat().st_size, "build_seconds": seconds}
    Path(str(path) + ".json").write_text(json.dumps(info))
    return info


def ensure(workdir: Path, n_trees: int, rebuild: bool) -> tuple[Path, dict[str, Any], bool]:
    """The cached database of ``n_trees`` trees (built if missing); returns (path, info, built now)."""
    path = workdir / f"sql-bench-{n_trees}.tdb"
    meta = Path(str(path) + ".json")
    if not rebuild and path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("layout") == LAYOUT_VERSION:
            with tensordb.open(path, mode="r+") as db:  # repair an interrupted move benchmark
                tree = db[BIG_TREE]
                if "moved" in tree and "big" not in tree:
                    tree.move("/moved", "/big")
            return path, info, False
    for suffix in ("", "-wal", "-shm", ".json"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path, build(path, n_trees), True


# -- timing ----------------------------------------------------------------------------

def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _summary(times: list[float], target: float | None, **extra: Any) -> dict[str, Any]:
    median = statistics.median(times)
    return {"median": median, "min": min(times), "max": max(times), "n": len(times), "target": target,
            "met": None if target is None else median < target, **extra}


def _series(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm-up: page cache, prepared-statement cache
    return [_time(fn) for _ in range(repeat)]


def _open_leaf(path: Path, name: str) -> Callable[[], Any]:
    def run() -> Any:
        db = tensordb.open(path, mode="r")
        try:
            return db[name][LEAF]
        finally:
            db.close()
    return run


def measure(full: Path, small: Path, n_full: int, n_small: int, repeat: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}

    # (a) open + one leaf, interleaved so that drift hits both databases alike
    runs = {"full": _open_leaf(full, tree_name(n_full // 2)), "small": _open_leaf(small, tree_name(n_small // 2))}
    open_times: dict[str, list[float]] = {"full": [], "small": []}
    for fn in runs.values():
        fn()
    for _ in range(5 * repeat):
        for key, fn in runs.items():
            open_times[key].append(_time(fn))
    results[f"open + one leaf ({n_full:,} trees)"] = _summary(open_times["full"], T_OPEN)
    results[f"open + one leaf ({n_small:,} trees)"] = _summary(open_times["small"], T_OPEN)
    ratio = statistics.median(open_times["full"]) / statistics.median(open_times["small"])
    results["open + one leaf: full / small"] = {
        "median": ratio, "min": None, "max": None, "n": None, "target": SIZE_RATIO_LIMIT,
        "met": ratio <= SIZE_RATIO_LIMIT, "unit": "x"}

    with tensordb.open(full, mode="r") as db:
        raw = db._store.conn.conn  # the apsw connection, for the diagnostic rows only

        # (b) (key, value) filter
        rows = db.sql(FILTER_QUERY, (TIME_ABOVE,)).fetchall()
        results["(key, value) filter, db.sql"] = _summary(
            _series(lambda: db.sql(FILTER_QUERY, (TIME_ABOVE,)).fetchall(), repeat), T_FILTER, rows=len(rows))
        results["  filter SQL on raw apsw (diagnostic)"] = _summary(
            _series(lambda: raw.execute(FILTER_QUERY, (TIME_ABOVE,)).fetchall(), repeat), None, rows=len(rows))

        # (c) path prefix across all trees
        rows = db.sql(PREFIX_QUERY).fetchall()
        results["path-prefix query, db.sql"] = _summary(
            _series(lambda: db.sql(PREFIX_QUERY).fetchall(), repeat), T_FILTER, rows=len(rows))
        results["  prefix SQL on raw apsw (diagnostic)"] = _summary(
            _series(lambda: raw.execute(PREFIX_QUERY).fetchall(), repeat), None, rows=len(rows))
        results["  prefix SQL, SQLite only: no rows out (diag.)"] = _summary(
            _series(lambda: raw.execute(PREFIX_ENGINE_ONLY).fetchall(), repeat), None, rows=len(rows))

        # (d) glob across all trees
        found = list(db.glob(GLOB_PATTERN))
        results[f'glob("{GLOB_PATTERN}")'] = _summary(
            _series(lambda: list(db.glob(GLOB_PATTERN)), repeat), T_GLOB, rows=len(found))
        glob_sql, glob_params, _ = tensordb.database._glob_sql(GLOB_PATTERN, None)
        results["  glob's SQL on raw apsw (diagnostic)"] = _summary(
            _series(lambda: raw.execute(glob_sql, glob_params).fetchall(), repeat), None, rows=len(found))

    # (e) move the 10,101-node subtree there and back, each in its own transaction
    there: list[float] = []
    back: list[float] = []
    with tensordb.open(full, mode="r+") as db:
        tree = db[BIG_TREE]
        moved_nodes = db.sql("SELECT count(*) FROM nodes WHERE tree = ? AND (path = '/big' OR path GLOB '/big/*')",
                             (BIG_TREE,)).fetchall()[0][0]

        def move(src: str, dst: str) -> None:
            with db.transaction():
                tree.move(src, dst)

        move("/big", "/moved")  # warm-up
        move("/moved", "/big")
        for _ in range(repeat):
            there.append(_time(lambda: move("/big", "/moved")))
            back.append(_time(lambda: move("/moved", "/big")))
    results[f"move {moved_nodes:,}-node subtree /big -> /moved"] = _summary(there, T_MOVE, rows=moved_nodes)
    results[f"move {moved_nodes:,}-node subtree /moved -> /big"] = _summary(back, T_MOVE, rows=moved_nodes)
    return results


def query_plans(path: Path) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of each benchmarked query (the detail column, indented by depth)."""
    glob_sql, glob_params, _ = tensordb.database._glob_sql(GLOB_PATTERN, None)
    queries: dict[str, tuple[str, tuple[Any, ...]]] = {
        "filter": (FILTER_QUERY, (TIME_ABOVE,)),
        "prefix": (PREFIX_QUERY, ()),
        "prefix, SQLite only": (PREFIX_ENGINE_ONLY, ()),
        "glob": (glob_sql, glob_params),
    }
    plans: dict[str, list[str]] = {}
    with tensordb.open(path, mode="r") as db:
        conn = db._store.conn
        for label, (sql, params) in queries.items():
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            depth: dict[int, int] = {0: 0}
            lines = []
            for node_id, parent, _, detail in rows:
                depth[node_id] = depth.get(parent, 0) + 1
                lines.append("  " * (depth[node_id] - 1) + detail)
            plans[label] = lines
    return plans


# -- report ----------------------------------------------------------------------------

def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if unit == "x" else f"{value * 1e3:.1f} ms"


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'operation':<46}{'median':>11}{'min':>11}{'max':>11}{'rows':>9}  {'target':<10}{'met?':<5}")
    for op, r in results.items():
        unit = r.get("unit", "s")
        target = "-" if r["target"] is None else (
            f"<= {r['target']:.2f}x" if unit == "x" else f"< {r['target'] * 1e3:.0f} ms")
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        rows = f"{r['rows']:,}" if r.get("rows") is not None else "-"
        print(f"{op:<46}{_fmt(r['median'], unit):>11}{_fmt(r['min'], unit):>11}"
              f"{_fmt(r['max'], unit):>11}{rows:>9}  {target:<10}{met:<5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=10_000, help="trees in the full database (100 nodes each)")
    parser.add_argument("--repeat", type=int, default=15, help="timed repetitions (open + leaf: 5x this)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tensordb-bench-sql",
                        help="where the databases are cached between runs")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached databases")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if args.trees < 10 or args.repeat < 1:
        parser.error("--trees must be >= 10 and --repeat >= 1")

    args.workdir.mkdir(parents=True, exist_ok=True)
    n_small = max(args.trees // 10, 1)
    builds = {}
    for n in (args.trees, n_small):
        path, info, built = ensure(args.workdir, n, args.rebuild)
        builds[n] = {"path": str(path), "built_now": built, **info}
        how = "built" if built else "cached; built earlier"
        print(f"{path}: {info['trees']:,} trees, {info['nodes']:,} nodes, {info['arrays']:,} arrays, "
              f"{info['file_bytes'] / 2**20:.0f} MiB ({how} in {info['build_seconds']:.1f} s)")

    full, small = Path(builds[args.trees]["path"]), Path(builds[n_small]["path"])
    results = measure(full, small, args.trees, n_small, args.repeat)
    plans = query_plans(full)
    info = machine()

    print()
    print(f"{builds[args.trees]['nodes']:,} nodes in {builds[args.trees]['trees']:,} trees; "
          f"median of {args.repeat} (open + leaf: {5 * args.repeat}), warm page cache; "
          f"{info['cores']} cores, {info['cpu']}, Python {info['python']}, SQLite {info['versions']['sqlite']}, "
          f"commit {info['commit'] or '?'}")
    print_table(results)
    print()
    for label, lines in plans.items():
        print(f"EXPLAIN QUERY PLAN ({label}):")
        for line in lines:
            print(f"  {line}")

    if args.json:
        args.json.write_text(json.dumps(
            {"machine": info, "args": {"trees": args.trees, "repeat": args.repeat},
             "builds": {str(k): v for k, v in builds.items()}, "results": results, "plans": plans},
            indent=2) + "\n")
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
