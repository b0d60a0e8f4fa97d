"""Versions benchmark: what snapshots, views of the past, diff and history cost (the issue's cost targets).

Five measurements, each against a baseline measured in the same run:

1. **Taking a snapshot** on the 1-million-node database of ``bench/bench_sql.py``
   (its cache; ``--quick``: its 10x smaller one), on a copy: the first snapshot,
   then a snapshot after changing one tree (a scalar and an array slice), and
   the rows that change added to ``node_history``, ``tree_history`` and
   ``snapshot`` per changed node.
2. **Reading as of a snapshot** of a W1 database with 10 snapshots, each after
   rewriting one field in 10% of the samples: open + one leaf, read all, a
   ``nodes`` filter, as of the oldest and of the latest snapshot, against the
   current state of the same file.
3. **The current state with 100 snapshots in the file** against a file without
   history holding the same current state: W1 write, read all, one field,
   restructure, W3 write. (a) the snapshots are of other trees; (b) the latest
   snapshot sees the trees that the restructure or rewrite changes, so the
   engine keeps their old versions: reported apart.
4. **Storage** of the W1 database of (2) after ``close()`` (a checkpoint) against
   the same current state written without history plus the stored bytes of the
   old field versions that the history keeps.
5. **diff** of two snapshots of W1 that differ in 10 trees (a scalar and an
   array re-assigned by reference in each): its time and the chunks it reads.

Figures are medians of ``--repeat`` runs (interleaved with their baseline) on a
warm page cache; ratios are medians over medians. Writes and snapshots commit
(WAL, ``synchronous = FULL``); no ``os.sync()``.

Run:  python -m bench.bench_versions [--quick] [--repeat N] [--workdir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tensordb
from tensordb.demo import synthetic_sample, synthetic_samples

from . import bench_sql
from .common import disk_usage, machine
from .w1_mesh import FIELD_PATH
from .w3_meta import make_tree

# Targets of the issue.
T_FIRST_SNAPSHOT = 0.050
T_NEXT_SNAPSHOT = 0.010
ROWS_PER_CHANGED_NODE = 3.0  # "at most a few rows per changed node"
READ_RATIO = 1.2  # reading as of a snapshot vs the current state
CURRENT_RATIO = 1.1  # the current state with 100 snapshots vs without history
STORAGE_SLACK = 1.05  # history file <= (no history + changed data) * this
T_DIFF = 0.050

ROUNDS = 10  # snapshots of the W1 history file, each after rewriting the field in 10% of the samples
DIFF_TREES = 10
HISTORY_SNAPSHOTS = 100
OTHER_TREES = 10  # the trees whose rewrites the 100 snapshots record in (3a)


@dataclass(frozen=True)
class Scale:
    bench_sql_trees: int  # trees of bench_sql's database used by (1)
    w1: tuple[int, int]  # sims, steps
    w3: tuple[int, int]  # scalar leaves, arrays
    repeat: int  # reads, snapshots, diffs
    write_repeat: int  # W1 and W3 writes and field rewrites of (3)
    history_snapshots: int = HISTORY_SNAPSHOTS


FULL = Scale(10_000, (20, 50), (20_000, 2_000), 7, 3)
QUICK = Scale(1_000, (4, 10), (2_000, 200), 5, 2)


# -- figures ---------------------------------------------------------------------------------

Results = dict[str, dict[str, Any]]


def _figure(samples: list[float] | float, unit: str, target: str | None, met: bool | None,
            **extra: Any) -> dict[str, Any]:
    values = samples if isinstance(samples, list) else [samples]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "unit": unit, "target": target, "met": met, **extra}


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved(fns: dict[str, Callable[[], Any]], repeat: int, warmup: bool = True) -> dict[str, list[float]]:
    """Time each function ``repeat`` times, in turns, so that drift hits them alike."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            times[key].append(_time(fn))
    return times


def _ratio(results: Results, op: str, times: list[float], base: list[float], limit: float,
           baseline: str, **extra: Any) -> None:
    """A row with the ratio of two medians (``times`` over ``base``) and the two medians."""
    ratio = statistics.median(times) / statistics.median(base)
    results[op] = _figure(ratio, "x", f"<= {limit:.2f}x", ratio <= limit, seconds=statistics.median(times),
                          baseline_seconds=statistics.median(base), baseline=baseline, **extra)


def copy_db(src: Path, dst: Path) -> Path:
    """Copy a closed database (file, WAL if any, packs folder if any) to ``dst``."""
    remove_db(dst)
    shutil.copyfile(src, dst)
    for suffix in ("-wal",):
        if Path(str(src) + suffix).exists():
            shutil.copyfile(str(src) + suffix, str(dst) + suffix)
    if Path(str(src) + "-packs").is_dir():
        shutil.copytree(str(src) + "-packs", str(dst) + "-packs")
    return dst


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    shutil.rmtree(str(path) + "-packs", ignore_errors=True)


def db_bytes(path: Path) -> int:
    """Bytes on disk of a closed database: the file and its packs folder."""
    return disk_usage([path, Path(str(path) + "-packs")])[0]


def _run_sql(db: tensordb.Database, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return db.sql(query, params).fetchall()


def _count(db: tensordb.Database, table: str) -> int:
    return int(db.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0])


HISTORY_TABLES = ("node_history", "tree_history", "snapshot")
CLONE_TABLES = ("array", "chunk_ref")


# -- (1) taking a snapshot -------------------------------------------------------------------

def snapshot_cost(source: Path, n_trees: int, work: Path, repeat: int, first_repeat: int,
                  label: str = "", reads: Results | None = None) -> Results:
    """The first snapshot (on ``first_repeat`` fresh copies), then snapshots after changing one tree.

    ``reads`` receives one more row of (2): bench_sql's (key, value) filter as of the first snapshot
    against the current state, on this database."""
    results: Results = {}
    copy = work / "snapshot-cost.tdb"
    first: list[float] = []
    for _ in range(first_repeat):
        copy_db(source, copy)
        with tensordb.open(copy, mode="r+") as db:
            db[bench_sql.tree_name(0)][bench_sql.LEAF]  # opened, schema read: as a user's session would be
            first.append(_time(functools.partial(db.snapshot, "first")))
    results[f"first snapshot{label}"] = _figure(first, "s", f"< {T_FIRST_SNAPSHOT * 1e3:.0f} ms",
                                                statistics.median(first) < T_FIRST_SNAPSHOT, trees=n_trees)

    changes: list[float] = []
    nexts: list[float] = []
    history_rows: list[int] = []
    clone_rows: list[int] = []
    changed_nodes = 2  # a scalar leaf and an array leaf
    with tensordb.open(copy, mode="r+") as db:
        for rep in range(repeat + 1):  # the first round is a warm-up
            tree = db[bench_sql.tree_name((rep * 7919) % n_trees)]
            before = {t: _count(db, t) for t in HISTORY_TABLES + CLONE_TABLES}

            def change(tree: tensordb.Tree = tree, rep: int = rep) -> None:
                with db.transaction():
                    tree["/params/cfl"] = 0.5 + rep
                    tree["/data/internal/point_data/U"][0] = np.full(3, rep, dtype="f4")

            seconds = _time(change)
            previous = db.history()[0]
            snapshot_seconds = _time(functools.partial(db.snapshot, f"change {rep}"))
            after = {t: _count(db, t) for t in HISTORY_TABLES + CLONE_TABLES}
            if rep == 0:
                found = db.diff(previous, db.history()[0])
                assert [d.path for d in found] == ["/data/internal/point_data/U", "/params/cfl"], found
                continue
            changes.append(seconds)
            nexts.append(snapshot_seconds)
            history_rows.append(sum(after[t] - before[t] for t in HISTORY_TABLES))
            clone_rows.append(sum(after[t] - before[t] for t in CLONE_TABLES))
        if reads is not None:
            first_id = db.history()[-1].id
            with tensordb.open(copy, mode="r", at=first_id) as old:
                query = (bench_sql.FILTER_QUERY, (bench_sql.TIME_ABOVE,))
                rows = len(old.sql(*query).fetchall())
                times = _interleaved({"view": lambda: old.sql(*query).fetchall(),
                                      "current": lambda: db.sql(*query).fetchall()}, repeat)
            _ratio(reads, f"nodes filter, as of a snapshot / current, bench_sql's {n_trees:,} trees",
                   times["view"], times["current"], READ_RATIO, "current state, same file", rows=rows)
    results[f"next snapshot, one tree changed{label}"] = _figure(
        nexts, "s", f"< {T_NEXT_SNAPSHOT * 1e3:.0f} ms", statistics.median(nexts) < T_NEXT_SNAPSHOT)
    per_node = statistics.median(history_rows) / changed_nodes
    results[f"history rows per changed node{label}"] = _figure(
        per_node, "rows", f"<= {ROWS_PER_CHANGED_NODE:g}", per_node <= ROWS_PER_CHANGED_NODE,
        rows=statistics.median(history_rows), changed_nodes=changed_nodes)
    results[f"  the change: scalar + array slice, commit{label} (diag.)"] = _figure(changes, "s", None, None)
    results[f"  array + chunk_ref rows of the change{label} (diag.)"] = _figure(
        float(statistics.median(clone_rows)), "rows", None, None)
    remove_db(copy)
    return results


# -- the W1 database with history (2, 4, 5) ---------------------------------------------------

def new_field(field: np.ndarray[Any, Any], rnd: int) -> np.ndarray[Any, Any]:
    """The field of a sample after its rewrite in round ``rnd`` (new values, as compressible as the old)."""
    return (field + np.float32(0.001 * rnd)).astype("f4")


def rewritten_in(i: int) -> int:
    """The round (1..ROUNDS) that rewrites sample ``i``: 10% of the samples in each round."""
    return i % ROUNDS + 1


def _field_of(sample: dict[str, Any]) -> np.ndarray[Any, Any]:
    value: Any = sample
    for key in FIELD_PATH[1:].split("/"):
        value = value[key]
    return value  # type: ignore[no-any-return]


def build_w1_history(path: Path, plain: Path, sims: int, steps: int) -> dict[str, Any]:
    """W1 with ``ROUNDS`` snapshots, each after rewriting the field in 10% of the samples (``path``), and
    the same final state written at once, without history (``plain``). Returns names and byte counts."""
    names: list[str] = []
    fields: list[np.ndarray[Any, Any]] = []
    remove_db(path)
    remove_db(plain)
    with tensordb.open(path, mode="w") as db, tensordb.open(plain, mode="w") as flat:
        with db.transaction(), flat.transaction():
            for i, (name, sample) in enumerate(synthetic_samples(sims, steps)):
                db[name] = sample
                field = _field_of(sample)
                names.append(name)
                fields.append(field)
                sample["data"]["internal"]["point_data"]["p"] = new_field(field, rewritten_in(i))
                flat[name] = sample
        snapshots = []
        for rnd in range(1, ROUNDS + 1):
            with db.transaction():
                for i, name in enumerate(names):
                    if rewritten_in(i) == rnd:
                        db[name][FIELD_PATH] = new_field(fields[i], rnd)
            snapshots.append(db.snapshot(f"round {rnd}").id)
        # round 1's old versions: no snapshot saw them, gc frees them (as it would without history)
        unreferenced = db.stats()["unreferenced_arrays"]
        db.gc()
        # the old versions only the history holds (refcount counts the kept versions' references): the data
        # that changed since the first snapshot
        kept = db.sql("SELECT count(*), coalesce(sum(stored_bytes), 0) FROM arrays WHERE refcount > 0 AND "
                      "array_id NOT IN (SELECT array_id FROM nodes WHERE array_id IS NOT NULL)").fetchall()[0]
    return {"names": names, "snapshots": snapshots, "kept_arrays": int(kept[0]), "kept_bytes": int(kept[1]),
            "unreferenced_arrays": unreferenced}


# -- (2) reading as of a snapshot ------------------------------------------------------------

def _filter_bound(steps: int) -> int:
    """A ``time`` bound that 10% of the samples exceed (time = 5 * step + 1)."""
    return 5 * (steps - max(steps // 10, 1) - 1) + 1


def read_as_of(path: Path, names: list[str], snapshots: list[int], steps: int, repeat: int) -> Results:
    results: Results = {}
    views: dict[str, int | None] = {"current": None, "latest": snapshots[-1], "oldest": snapshots[0]}
    leaf_tree = names[len(names) // 2]

    def opener(at: int | None) -> Callable[[], tensordb.Database]:
        return lambda: tensordb.open(path, mode="r", at=at) if at is not None else tensordb.open(path, mode="r")

    def open_leaf(at: int | None) -> Callable[[], Any]:
        def run() -> Any:
            with opener(at)() as db:
                return db[leaf_tree]["/time"]
        return run

    def read_all(at: int | None) -> Callable[[], Any]:
        def run() -> Any:
            with opener(at)() as db:
                return [db[name].load() for name in db]
        return run

    times = _interleaved({k: open_leaf(at) for k, at in views.items()}, 5 * repeat)
    for k in ("oldest", "latest"):
        _ratio(results, f"open + one leaf, as of the {k} snapshot / current", times[k], times["current"],
               READ_RATIO, "current state, same file")
    times = _interleaved({k: read_all(at) for k, at in views.items()}, repeat)
    for k in ("oldest", "latest"):
        _ratio(results, f"read all (W1), as of the {k} snapshot / current", times[k], times["current"],
               READ_RATIO, "current state, same file", trees=len(names))

    bound = _filter_bound(steps)
    dbs = {k: opener(at)() for k, at in views.items()}
    try:
        counts = {k: len(db.sql(bench_sql.FILTER_QUERY, (bound,)).fetchall()) for k, db in dbs.items()}
        assert len(set(counts.values())) == 1, counts
        times = _interleaved({k: functools.partial(_run_sql, db, bench_sql.FILTER_QUERY, (bound,))
                              for k, db in dbs.items()}, 5 * repeat)
    finally:
        for db in dbs.values():
            db.close()
    for k in ("oldest", "latest"):
        _ratio(results, f"nodes filter (key, value), as of the {k} snapshot / current", times[k],
               times["current"], READ_RATIO, "current state, same file", rows=counts[k])
    return results


# -- (4) storage ------------------------------------------------------------------------------

def storage(path: Path, plain: Path, built: dict[str, Any]) -> Results:
    with_history, without = db_bytes(path), db_bytes(plain)
    allowed = without + built["kept_bytes"]
    ratio = with_history / allowed
    return {
        "bytes on disk: W1 + 10 snapshots / (no history + changed data)": _figure(
            ratio, "x", f"<= {STORAGE_SLACK:.2f}x", ratio <= STORAGE_SLACK, bytes=with_history,
            without_history=without, changed=built["kept_bytes"], kept_arrays=built["kept_arrays"]),
        "  bytes, W1 + 10 snapshots (diag.)": _figure(float(with_history), "bytes", None, None),
        "  bytes, same current state, no history (diag.)": _figure(float(without), "bytes", None, None),
        "  stored bytes of the old field versions kept (diag.)": _figure(float(built["kept_bytes"]), "bytes", None,
                                                                        None, arrays=built["kept_arrays"]),
    }


# -- (5) diff -----------------------------------------------------------------------------------

def _diff_counted(db: tensordb.Database, a: Any, b: Any) -> tuple[list[Any], dict[str, int]]:
    """``db.diff(a, b)`` and the storage counters it moved: the database's and those of the views it opens
    (it reads both states through ``db.at``, each view on its own connection with its own counters)."""
    views: list[tensordb.Database] = []
    at = db.at

    def counting_at(snapshot: Any) -> tensordb.Database:
        view = at(snapshot)
        views.append(view)
        return view

    db.at = counting_at  # type: ignore[method-assign]
    try:
        before = db.counters.snapshot()
        found = db.diff(a, b)
    finally:
        del db.at
    counters = {k: v - before[k] for k, v in db.counters.snapshot().items()}
    for view in views:
        for k, v in view.counters.snapshot().items():
            counters[k] += v
    return found, counters


def diff_cost(path: Path, names: list[str], sims: int, steps: int, repeat: int) -> Results:
    """Two snapshots that differ in ``DIFF_TREES`` trees (a scalar and an array in each), compared with
    ``db.diff``: the array (a) re-assigned by reference to one of the same shape and other values (the next
    time step: the chunk grids match, the chunk keys differ), then (b) replaced by one of another shape
    (from another simulation). Each is compared with the snapshot taken before (a)."""
    results: Results = {}
    index = {name: i for i, name in enumerate(names)}
    chosen = names[:: max(len(names) // DIFF_TREES, 1)][:DIFF_TREES]

    def donor(name: str, same_shape: bool) -> str:
        """A tree the diff leaves alone: the next step of the same simulation, or (another mesh size) of
        the next simulation."""
        i = index[name]
        if same_shape:
            found = names[i + 1 if i % steps < steps - 1 else i - 1]
        else:
            found = names[(i + steps + 1) % len(names)]
        assert found not in chosen, (name, found)
        return found

    kinds = {"same shape, re-assigned by reference": True, "other shape": False}
    with tensordb.open(path, mode="r+") as db:
        base = db.snapshot("before the diff")
        for label, same_shape in kinds.items():
            with db.transaction():
                for name in chosen:
                    other = donor(name, same_shape)
                    db[name]["/time"] = -1 - len(label) - index[name]
                    db[name][FIELD_PATH] = db[other][FIELD_PATH]
            current = db.snapshot(label)
            found, counters = _diff_counted(db, base, current)
            assert len({d.tree for d in found}) == DIFF_TREES and len(found) == 2 * DIFF_TREES, found
            times = _interleaved({"diff": functools.partial(db.diff, base, current)}, repeat)["diff"]
            results[f"diff, {DIFF_TREES} trees differ (array: {label})"] = _figure(
                times, "s", f"< {T_DIFF * 1e3:.0f} ms", statistics.median(times) < T_DIFF, differences=len(found))
            read = counters["chunks_decoded"] + counters["pack_reads"]
            results[f"  chunks decoded + pack reads, {label}"] = _figure(
                float(read), "count", "0", read == 0, counters=counters)
    return results


# -- (3) the current state with 100 snapshots in the file --------------------------------------

def _other_tree(k: int) -> tuple[str, dict[str, Any]]:
    return f"other-{k:03d}", synthetic_sample(100 + k, 0)


def build_history_pair(hist: Path, plain: Path, n_snapshots: int) -> None:
    """``hist``: ``OTHER_TREES`` trees rewritten ``n_snapshots`` times, a snapshot after each rewrite;
    ``plain``: the same writes, no snapshot."""
    others = [_other_tree(k) for k in range(OTHER_TREES)]
    for path, snapshots in ((hist, True), (plain, False)):
        remove_db(path)
        with tensordb.open(path, mode="w") as db:
            with db.transaction():
                for name, sample in others:
                    db[name] = sample
            for rnd in range(1, n_snapshots + 1):
                name, sample = others[rnd % OTHER_TREES]
                with db.transaction():
                    db[name][FIELD_PATH] = new_field(_field_of(sample), rnd)
                    db[name]["/round"] = rnd
                if snapshots:
                    db.snapshot(f"round {rnd}")


def current_state(work: Path, sims: int, steps: int, w3: tuple[int, int], n_snapshots: int,
                  repeat: int, write_repeat: int) -> Results:
    results: Results = {}
    hist, plain = work / "current-history.tdb", work / "current-plain.tdb"
    build_history_pair(hist, plain, n_snapshots)
    samples = list(synthetic_samples(sims, steps))
    names = [name for name, _ in samples]
    pattern = "bm01-*"
    files = {"history": hist, "plain": plain}
    label = f"{n_snapshots} snapshots of other trees"
    base = "same current state, no history"

    def write(path: Path) -> Callable[[], None]:
        def run() -> None:
            with tensordb.open(path, mode="r+") as db, db.transaction():
                for name, sample in samples:
                    db[name] = sample
        return run

    def drop(path: Path) -> None:
        with tensordb.open(path, mode="r+") as db:
            with db.transaction():
                for name in names:
                    del db[name]
            db.gc()

    # W1 write of a fresh batch after the history exists (then dropped, untimed, except the last)
    times: dict[str, list[float]] = {k: [] for k in files}
    for rep in range(write_repeat):
        for k, path in files.items():
            times[k].append(_time(write(path)))
            if rep < write_repeat - 1:
                drop(path)
    _ratio(results, f"W1 write, {label} / none", times["history"], times["plain"], CURRENT_RATIO, base,
           trees=len(names))

    def read_all(path: Path) -> Callable[[], Any]:
        def run() -> Any:
            with tensordb.open(path, mode="r") as db:
                return [db[name].load() for name in db]
        return run

    def read_field(path: Path) -> Callable[[], Any]:
        def run() -> Any:
            with tensordb.open(path, mode="r") as db:
                return [db[name][FIELD_PATH][...] for name in names]
        return run

    times = _interleaved({k: read_all(p) for k, p in files.items()}, repeat)
    _ratio(results, f"W1 read all, {label} / none", times["history"], times["plain"], CURRENT_RATIO, base)
    times = _interleaved({k: read_field(p) for k, p in files.items()}, repeat)
    _ratio(results, f"W1 one field, all samples, {label} / none", times["history"], times["plain"],
           CURRENT_RATIO, base)

    flips = {k: 0 for k in files}

    def restructure(path: Path, key: str, snapshot_first: bool = False) -> Callable[[], None]:
        def run() -> None:
            i = flips[key]
            flips[key] += 1
            src, dst = ("inlet", "inflow") if i % 2 == 0 else ("inflow", "inlet")
            with tensordb.open(path, mode="r+") as db:
                if snapshot_first:
                    db.snapshot(f"before restructure {i}")  # untimed: see below
                start = time.perf_counter()
                with db.transaction():
                    db.move(f"/data/{src}", f"/data/{dst}", trees=pattern)
                    db.set("/reviewed", i, trees=pattern)
                elapsed[key].append(time.perf_counter() - start)
        return run

    elapsed: dict[str, list[float]] = {k: [] for k in files}
    _interleaved({k: restructure(p, k) for k, p in files.items()}, repeat)
    _ratio(results, f"W1 restructure (move + set), {label} / none", elapsed["history"][1:],
           elapsed["plain"][1:], CURRENT_RATIO, base)

    tree = make_tree(*w3)[0]

    def w3_write(path: Path) -> Callable[[], None]:
        def run() -> None:
            with tensordb.open(path, mode="r+") as db:
                if "w3" in db:
                    del db["w3"]  # no snapshot saw it: nothing kept
                start = time.perf_counter()
                db["w3"] = tree
                elapsed[str(path)].append(time.perf_counter() - start)
        return run

    elapsed = {str(p): [] for p in files.values()}
    _interleaved({k: w3_write(p) for k, p in files.items()}, write_repeat)
    _ratio(results, f"W3 write, {label} / none", elapsed[str(hist)][1:], elapsed[str(plain)][1:],
           CURRENT_RATIO, base, leaves=w3[0], arrays=w3[1])

    # (b) the latest snapshot sees the W1 trees: each restructure (or rewrite) keeps their old versions
    elapsed = {k: [] for k in files}
    with tensordb.open(hist, mode="r") as db:
        kept = -_count(db, "node_history")
    _interleaved({"history": restructure(hist, "history", snapshot_first=True),
                  "plain": restructure(plain, "plain")}, repeat)
    with tensordb.open(hist, mode="r") as db:
        kept = (kept + _count(db, "node_history")) // (repeat + 1)
    _ratio(results, "W1 restructure of trees the latest snapshot sees / none", elapsed["history"][1:],
           elapsed["plain"][1:], CURRENT_RATIO, base, kept_node_versions_per_restructure=kept, history_cost=True)

    rewrites = {k: 0 for k in files}

    def rewrite(path: Path, key: str, snapshot_first: bool = False) -> Callable[[], None]:
        def run() -> None:
            rewrites[key] += 1
            with tensordb.open(path, mode="r+") as db:
                if snapshot_first:
                    db.snapshot(f"before rewrite {rewrites[key]}")
                start = time.perf_counter()
                with db.transaction():
                    for name, sample in samples:
                        db[name][FIELD_PATH] = new_field(_field_of(sample), 1000 + rewrites[key])
                elapsed[key].append(time.perf_counter() - start)
        return run

    elapsed = {k: [] for k in files}
    _interleaved({"history": rewrite(hist, "history", snapshot_first=True),
                  "plain": rewrite(plain, "plain")}, write_repeat)
    _ratio(results, "W1 rewrite one field of trees the latest snapshot sees / none", elapsed["history"][1:],
           elapsed["plain"][1:], CURRENT_RATIO, base, history_cost=True)
    with tensordb.open(hist, mode="r") as db:
        results["  snapshots in the history file at the end (diag.)"] = _figure(
            float(len(db.history())), "count", None, None)
    remove_db(hist)
    remove_db(plain)
    return results


# -- the run ----------------------------------------------------------------------------------

def run(work: Path, scale: Scale, sql_workdir: Path, log: Callable[[str], None] = print,
        only: set[str] | None = None) -> dict[str, Results]:
    """Every measurement (``only``: a subset of "snapshot", "read", "current", "storage", "diff")."""
    sections: dict[str, Results] = {}
    work.mkdir(parents=True, exist_ok=True)
    sql_workdir.mkdir(parents=True, exist_ok=True)
    wanted = only or {"snapshot", "read", "current", "storage", "diff"}
    sims, steps = scale.w1
    if sims < 2 or sims * steps < 2 * DIFF_TREES:
        raise ValueError(f"W1 needs 2 simulations and {2 * DIFF_TREES} samples at least, not {sims} x {steps}")
    reads: Results = {}  # the rows of (2) measured on bench_sql's database, shown after the others of (2)
    if "snapshot" in wanted:
        sections["snapshot"] = {}
        sizes = [scale.bench_sql_trees] if scale.bench_sql_trees <= 1_000 else [scale.bench_sql_trees,
                                                                                 scale.bench_sql_trees // 10]
        for n in sizes:
            log(f"(1) snapshot cost on bench_sql's {n:,}-tree database")
            source, info, _ = bench_sql.ensure(sql_workdir, n, False)
            label = f" ({info['nodes']:,} nodes)" if len(sizes) > 1 else ""
            sections["snapshot"].update(snapshot_cost(source, n, work, scale.repeat, 3, label,
                                                      reads if n == sizes[0] else None))
            sections["snapshot"].setdefault("_nodes", {"nodes": info["nodes"], "trees": info["trees"]})
        sections["snapshot"].pop("_nodes")
    if wanted & {"read", "storage", "diff"}:
        log(f"W1 with {ROUNDS} snapshots: {sims} x {steps} samples")
        hist, plain = work / "w1-history.tdb", work / "w1-plain.tdb"
        built = build_w1_history(hist, plain, sims, steps)
        if "storage" in wanted:
            log("(4) storage")
            sections["storage"] = storage(hist, plain, built)
        if "read" in wanted:
            log("(2) reading as of a snapshot")
            sections["read"] = read_as_of(hist, built["names"], built["snapshots"], steps, scale.repeat)
            sections["read"].update(reads)
        if "diff" in wanted:
            log("(5) diff")
            sections["diff"] = diff_cost(hist, built["names"], sims, steps, scale.repeat)
        remove_db(hist)
        remove_db(plain)
    if "current" in wanted:
        log(f"(3) the current state with {scale.history_snapshots} snapshots")
        sections["current"] = current_state(work, sims, steps, scale.w3, scale.history_snapshots, scale.repeat,
                                          scale.write_repeat)
    return sections


TITLES = {
    "snapshot": "(1) Taking a snapshot costs what changed since the previous one",
    "read": "(2) Reading as of a snapshot is as fast as reading the current state",
    "current": "(3) The current state pays almost nothing for history",
    "storage": "(4) Storage: history costs the data that changed",
    "diff": "(5) diff between two snapshots",
}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value * 1e3:.1f} ms"
    if unit == "bytes":
        return f"{value / 2**20:.2f} MiB"
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def print_table(sections: dict[str, Results]) -> None:
    for key, results in sections.items():
        print(f"\n{TITLES[key]}")
        print(f"{'figure':<72}{'median':>11}{'min':>11}{'max':>11}  {'target':<10}{'met?':<5}")
        for op, r in results.items():
            met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
            print(f"{op:<72}{_fmt(r['median'], r['unit']):>11}{_fmt(r['min'], r['unit']):>11}"
                  f"{_fmt(r['max'], r['unit']):>11}  {r['target'] or '-':<10}{met:<5}")
            if "seconds" in r:
                print(f"{'':<8}({r['seconds'] * 1e3:.1f} ms vs {r['baseline_seconds'] * 1e3:.1f} ms)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller data: bench_sql's 1,000-tree database, 40 W1 samples, fewer repetitions")
    parser.add_argument("--repeat", type=int, help="timed repetitions (open + leaf and filters: 5x this)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--sql-workdir", type=Path, default=Path(tempfile.gettempdir()) / "tensordb-bench-sql",
                        help="bench_sql's cache of its databases (built there if missing)")
    parser.add_argument("--only", help="comma-separated: snapshot, read, current, storage, diff")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    if args.repeat:
        scale = dataclasses.replace(scale, repeat=args.repeat)
    only = set(args.only.split(",")) if args.only else None
    args.sql_workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _workdir(args.workdir) as work:
        sections = run(work, scale, args.sql_workdir, only=only)
    info = machine()
    load = os.getloadavg()
    print(f"\n{'quick' if args.quick else 'full'} scale, median of {scale.repeat} (open + leaf, filters: "
          f"{5 * scale.repeat}), warm page cache; {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
          f"SQLite {info['versions']['sqlite']}, commit {info['commit'] or '?'}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {time.perf_counter() - start:.0f} s")
    print_table(sections)
    missed = [op for results in sections.values() for op, r in results.items() if r["met"] is False]
    print(f"\ntargets missed: {', '.join(missed) if missed else 'none'}")
    if args.json:
        figures = {"machine": info, "load": load, "scale": dataclasses.asdict(scale), "sections": sections}
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")


class _workdir:
    """The given folder (created), or a temporary one removed afterwards."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if self.path is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="tensordb-bench-versions-")
            return Path(self.tmp.name)
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


if __name__ == "__main__":
    main()
