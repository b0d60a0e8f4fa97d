"""The physical limit of W3's write: raw apsw inserting W3's node rows into tensordb's node table.

W3 writes 200,000 scalar leaves (plus 20,000 small arrays) into one tree.
This script inserts the same number of node rows straight through apsw, in
one transaction with tensordb's pragmas (WAL, synchronous=FULL) and in
statements of 512 rows as tensordb does, into tensordb's schema (its
triggers too), first with
the node table's five indexes as the schema defines them, then without the
two that serve queries across trees (``node_by_path_across_trees``,
``node_by_key_value``), then with the unique path index alone. No Python
value handling, no arrays: what SQLite alone takes.

Then it inserts the rows of tensordb's own W3 database (written first,
untimed): the dict rows too, and the array nodes, whose reference-count
trigger fires. Once in statements of 512 rows, as tensordb inserts them,
and once a row per statement::

    python -m bench.node_insert_limit [--leaves 200000] [--arrays 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import tempfile
import time
from typing import Any

import apsw

from tensordb.storage import schema
from tensordb.trees.nodes import NODE_COLUMNS

VARIANTS = {
    "every index of the schema": [],
    "without the two cross-tree indexes": ["node_by_path_across_trees", "node_by_key_value"],
    "unique path index only": ["node_by_path_across_trees", "node_by_key_value", "node_by_parent", "node_by_array"],
}


#: tensordb inserts node rows in statements of this many rows (``Connection.insert_rows``).
ROWS_PER_STATEMENT = 512


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


def insert(data: list[tuple[object, ...]], drop: list[str], folder: str, rows_per_statement: int = ROWS_PER_STATEMENT,
           preload: dict[str, list[tuple[object, ...]]] | None = None) -> float:
    """Seconds to insert node rows ``data`` into a fresh database of tensordb's schema, in one transaction,
    ``rows_per_statement`` rows per statement (0: one, through ``executemany``). ``preload``: rows of
    other tables inserted first, untimed (the arrays that array nodes reference)."""
    path = os.path.join(folder, "limit.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
    conn.execute("".join(schema.DDL[1:]))  # every table, index, trigger and view but the meta table
    for name in drop:
        conn.execute(f"DROP INDEX {name}")
    with conn:
        for table, rows_of_table in (preload or {}).items():
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows_of_table[0]))})", rows_of_table)
    one_row = "(" + ", ".join("?" * len(data[0])) + ")"
    start = time.perf_counter()
    with conn:
        if rows_per_statement:
            for i in range(0, len(data), rows_per_statement):
                batch = data[i:i + rows_per_statement]
                conn.execute(f"INSERT INTO node({NODE_COLUMNS}) VALUES {', '.join([one_row] * len(batch))}",
                             tuple(itertools.chain.from_iterable(batch)))
        else:
            conn.executemany(f"INSERT INTO node({NODE_COLUMNS}) VALUES {one_row}", data)
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


def tensordb_rows(leaves: int, arrays: int, folder: str) -> tuple[list[tuple[object, ...]], dict[str, list[Any]]]:
    """The node rows of W3's tree as tensordb writes it, and the tree and array rows they reference."""
    import tensordb

    from .w3_meta import make_tree

    path = os.path.join(folder, "w3.tdb")
    with tensordb.open(path, mode="w") as db:
        db["w3"] = make_tree(leaves, arrays)[0]
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    nodes = conn.execute(f"SELECT {NODE_COLUMNS} FROM node ORDER BY node_id").fetchall()
    preload = {table: conn.execute(f"SELECT * FROM {table}").fetchall() for table in ("tree", "array")}
    conn.close()
    return nodes, preload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=200_000)
    parser.add_argument("--arrays", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.leaves)
    with tempfile.TemporaryDirectory() as folder:
        for label, drop in VARIANTS.items():
            best = min(insert(data, drop, folder) for _ in range(args.repeat))
            print(f"{label}: {best * 1000:.0f} ms for {len(data):,} node rows")
        nodes, preload = tensordb_rows(args.leaves, args.arrays, folder)
        arrays = sum(1 for row in nodes if row[-1] is not None)  # array_id, the last column
        print(f"tensordb's own W3 rows ({len(nodes):,}: dicts, scalars and {arrays:,} array nodes "
              "whose reference-count trigger fires), every index:")
        for label, per in (("512 rows per statement, as tensordb inserts them", ROWS_PER_STATEMENT),
                           ("one row per statement", 0)):
            best = min(insert(nodes, [], folder, per, preload) for _ in range(args.repeat))
            print(f"  {label}: {best * 1000:.0f} ms")


if __name__ == "__main__":
    main()
