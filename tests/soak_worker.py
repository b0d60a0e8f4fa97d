"""Processes of the concurrency soak (``test_concurrency.py``): a writer, readers, gc, counters.

``python soak_worker.py ROLE DB SECONDS SEED [INCREMENTS]`` runs one role
until the time is up (a counter: until it has done its increments) and
prints one JSON line of counts. Every tree the writer commits
carries a ``checksum`` scalar over its ``seq`` and ``data``, and every
``data`` array ends with a checksum of its own other elements, so a reader
can tell a torn read (parts of two commits) from a consistent one, whether
it loads the whole tree or reads the array through a handle.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from typing import Any

import numpy as np
import xxhash

import tensordb
from tensordb.storage import connection

# The soak runs with a busy timeout of 5 s (half the default): no writer or
# reader may give up even then.
connection.BUSY_TIMEOUT_MS = 5_000

TREES = 8
ROWS = 4096  # float64: 32 KiB of incompressible data per tree, in 4 KiB chunks (pack files)
CHUNKS = (512,)


def sealed(rng: np.random.Generator, rows: int = ROWS) -> np.ndarray:
    """Random data whose last element holds a checksum of the others."""
    data = rng.standard_normal(rows)
    return seal(data)


def seal(data: np.ndarray) -> np.ndarray:
    data = data.copy()
    data[-1] = 0.0
    data[-1] = np.frombuffer(xxhash.xxh3_64_digest(data[:-1].tobytes()), dtype="<f8")[0]
    return data


def is_sealed(data: np.ndarray) -> bool:
    expected = np.frombuffer(xxhash.xxh3_64_digest(data[:-1].tobytes()), dtype="<f8")[0]
    return data[-1].tobytes() == expected.tobytes()


def tree_checksum(seq: int, data: np.ndarray) -> str:
    return xxhash.xxh3_64_hexdigest(seq.to_bytes(8, "little") + data.tobytes())


def tree_value(seq: int, data: tensordb.Array | None, model: np.ndarray) -> dict[str, Any]:
    return {"seq": seq, "data": data, "meta": {"rows": ROWS, "writer": os.getpid()},
            "checksum": tree_checksum(seq, model)}


def put(db: tensordb.Database, name: str, seq: int, data: np.ndarray) -> None:
    """A whole new tree whose data is stored in small chunks (inside the caller's transaction)."""
    db[name] = tree_value(seq, None, data)
    db[name].set("/data", data, chunks=CHUNKS)


def setup(path: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with tensordb.open(path, mode="x", inline_threshold=1024) as db:
        for k in range(TREES):
            with db.transaction():
                put(db, f"t{k}", 0, sealed(rng))
        db["counter"] = {"n": 0, "w0": 0, "w1": 0}


def writer(db: tensordb.Database, deadline: float, seed: int) -> dict[str, Any]:
    """Replace trees, rewrite slices (copy-on-write when shared), share arrays, delete and recreate."""
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    model = {f"t{k}": (0, np.asarray(db[f"t{k}"]["/data"])) for k in range(TREES)}
    counts = {"ops": 0, "replace": 0, "slice": 0, "share": 0, "recreate": 0, "errors": 0}
    errors: list[str] = []
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        name = f"t{pyrng.randrange(TREES)}"
        op = pyrng.choice(["replace", "slice", "slice", "share", "recreate"])
        try:
            if op == "replace":
                data = sealed(rng)
                with db.transaction():
                    put(db, name, seq, data)
            elif op == "slice":
                data = model[name][1].copy()
                start = pyrng.randrange(0, ROWS - 600)
                data[start:start + 600] = rng.standard_normal(600)
                data = seal(data)
                with db.transaction():
                    handle = db[name]["/data"]
                    handle[start:start + 600] = data[start:start + 600]
                    handle[ROWS - 1:] = data[ROWS - 1:]
                    db[name]["/seq"] = seq
                    db[name]["/checksum"] = tree_checksum(seq, data)
            elif op == "share":
                other = f"t{pyrng.randrange(TREES)}"
                data = model[other][1]
                db[name] = tree_value(seq, db[other]["/data"], data)
            else:
                data = sealed(rng)
                with db.transaction():
                    del db[name]
                    put(db, name, seq, data)
            model[name] = (seq, data)
            counts[op] += 1
            counts["ops"] += 1
        except Exception as exc:
            counts["errors"] += 1
            errors.append(f"{op}: {type(exc).__name__}: {exc}: {traceback.format_exc()[-1500:]}")
    final = {name: tree_checksum(s, d) for name, (s, d) in model.items()}
    return {**counts, "error_samples": errors[:5], "final": final}


def reader(db: tensordb.Database, deadline: float, seed: int) -> dict[str, Any]:
    """Load whole trees (checked against their checksum) and read arrays through handles (self-checked).

    Some reads use a freshly opened database (no pack file open yet), and some
    hold their read snapshot for a few milliseconds before reading, as a slow
    reader would: gc compacts and deletes packs meanwhile.
    """
    pyrng = random.Random(seed)
    counts = {"loads": 0, "array_reads": 0, "fresh_loads": 0, "slow_loads": 0, "torn": 0, "missing_pack": 0,
              "corruption": 0, "busy": 0, "other": 0, "vanished": 0}
    samples: list[str] = []

    def check_tree(name: str, value: dict[str, Any]) -> None:
        if tree_checksum(value["seq"], value["data"]) != value["checksum"] or not is_sealed(value["data"]):
            counts["torn"] += 1
            samples.append(f"torn load of {name} at seq {value['seq']}")

    while time.monotonic() < deadline:
        name = f"t{pyrng.randrange(TREES)}"
        how = pyrng.random()
        try:
            if how < 0.4:
                check_tree(name, db[name].load())
                counts["loads"] += 1
            elif how < 0.6:
                data = np.asarray(db[name]["/data"])
                counts["array_reads"] += 1
                if not is_sealed(data):
                    counts["torn"] += 1
                    samples.append(f"torn array read of {name}")
            elif how < 0.8:
                with tensordb.open(db.filename, mode="r") as fresh:
                    check_tree(name, fresh[name].load())
                counts["fresh_loads"] += 1
            else:
                with tensordb.open(db.filename, mode="r") as fresh:
                    with fresh._store.snapshot():  # one read transaction, held while "working"
                        tree = fresh[name]
                        time.sleep(pyrng.uniform(0.0, 0.03))
                        check_tree(name, tree.load())
                counts["slow_loads"] += 1
        except (KeyError, tensordb.StaleHandleError):
            counts["vanished"] += 1  # the writer deleted the tree between two calls: a legitimate race
        except tensordb.CorruptionError as exc:
            counts["missing_pack" if "missing" in str(exc) or "past the end" in str(exc) else "corruption"] += 1
            samples.append(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            counts["busy" if "busy" in str(exc).lower() or "locked" in str(exc).lower() else "other"] += 1
            samples.append(f"{type(exc).__name__}: {exc}")
    return {**counts, "samples": samples[:5]}


def collector(db: tensordb.Database, deadline: float, seed: int) -> dict[str, Any]:
    """gc with pack compaction, again and again."""
    pyrng = random.Random(seed)
    counts = {"runs": 0, "packs_compacted": 0, "packs_deleted": 0, "deferred_runs": 0, "errors": 0,
              "arrays_removed": 0}
    samples: list[str] = []
    while time.monotonic() < deadline:
        try:
            result = db.gc()
            counts["runs"] += 1
            counts["packs_compacted"] += result["packs_compacted"]
            counts["packs_deleted"] += result["packs_deleted"]
            counts["arrays_removed"] += result["arrays_removed"]
            counts["deferred_runs"] += result["files_deferred"] > 0
        except Exception as exc:
            counts["errors"] += 1
            samples.append(f"{type(exc).__name__}: {exc}: {traceback.format_exc()[-1500:]}")
        time.sleep(pyrng.uniform(0.05, 0.3))
    return {**counts, "samples": samples[:5]}


def counter(db: tensordb.Database, deadline: float, seed: int, increments: int) -> dict[str, Any]:
    """Read-modify-write increments in write transactions; no update may be lost."""
    mine = f"w{seed % 2}"
    done, errors = 0, []
    for _ in range(increments):
        try:
            with db.transaction():
                tree = db["counter"]
                tree["/n"] = tree["n"] + 1
                tree["/" + mine] = tree[mine] + 1
            done += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"done": done, "errors": len(errors), "samples": errors[:5]}


def main() -> None:
    role, path, seconds, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    increments = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    if role == "setup":
        setup(path, seed)
        print(json.dumps({"role": role}), flush=True)
        return
    deadline = time.monotonic() + seconds
    mode = "r" if role == "reader" else "a"
    try:
        with tensordb.open(path, mode=mode) as db:
            if role == "writer":
                result = writer(db, deadline, seed)
            elif role == "reader":
                result = reader(db, deadline, seed)
            elif role == "gc":
                result = collector(db, deadline, seed)
            else:
                result = counter(db, deadline, seed, increments)
    except Exception as exc:
        result = {"fatal": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    print(json.dumps({"role": role, "seed": seed, **result}), flush=True)


if __name__ == "__main__":
    main()
