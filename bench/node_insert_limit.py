"""The physical limit of W3's write: raw apsw inserting W3's node rows into tensordb's node table.

W3 writes 200,000 scalar leaves (plus 20,000 small arrays) into one tree.
This script inserts the same number of node rows straight through apsw, in
one transaction with tensordb's pragmas (WAL, synchronous=FULL), first with
the node table's five indexes as the schema defines them, then without the
two that serve queries across trees (``node_by_path_across_trees``,
``node_by_key_value``), then with the unique path index alone. No Python
value handling, no arrays: what SQLite alone takes::

    python -m bench.node_insert_limit [--leaves 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import apsw

from tensordb.storage import schema
from tensordb.trees.nodes import NODE_COLUMNS

VARIANTS = {
    "every index of the schema": [],
    "without the two cross-tree indexes": ["node_by_path_across_trees", "node_by_key_value"],
    "unique path index only": ["node_by_path_across_trees", "node_by_key_value", "node_by_parent", "node_by_array"],
}


def rows(leaves: int) -> list[tuple[object, ...]]:
    """A root, then ``/gII/sJJJ/kKKK`` int leaves as W3 lays them out (the dict rows are left out)."""
    rng = random.Random(3)
    out: list[tuple[object, ...]] = [(1, 1, None, "", None, 0, "dict", None, None, None, None)]
    per_group = max(1, leaves // 2000)
    for n in range(leaves):
        i, j, k = n // (per_group * 100), n // 100 % per_group, n % 100
        out.append((n + 2, 1, 1, f"/g{i:02d}/s{j:03d}/k{k:03d}", f"k{k:03d}", k, "int", rng.randrange(1000),
                    None, None, None))
    return out


def insert(data: list[tuple[object, ...]], drop: list[str], folder: str) -> float:
    path = os.path.join(folder, "limit.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
    conn.execute(schema.TREE + schema.ARRAY + schema.NODE + schema.HISTORY)  # the history's partial index too
    for name in drop:
        conn.execute(f"DROP INDEX {name}")
    start = time.perf_counter()
    with conn:
        conn.executemany(f"INSERT INTO node({NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", data)
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.leaves)
    with tempfile.TemporaryDirectory() as folder:
        for label, drop in VARIANTS.items():
            best = min(insert(data, drop, folder) for _ in range(args.repeat))
            print(f"{label}: {best * 1000:.0f} ms for {len(data):,} node rows")


if __name__ == "__main__":
    main()
