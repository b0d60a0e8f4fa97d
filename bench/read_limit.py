"""The physical limit of W1's read-all: what SQLite and Blosc2 alone take to do tensordb's reading.

W1's "reopen + read all" loads every sample with ``db[name].load()``. This
script writes the same samples (tensordb and JSON+binref), then times, in this
process, on a warm page cache, best of ``--repeat``:

- tensordb's whole read, as the benchmark runs it;
- the SQL alone: every statement that read runs (recorded with an apsw exec
  tracer, bindings included), replayed through a raw apsw connection, rows
  fetched and dropped;
- the chunk bytes alone: one ``pread`` per chunk stored in a pack file;
- the decompression alone: one Blosc2 call per array (the C function through
  ctypes, pointers computed beforehand), into buffers allocated beforehand;
- JSON+binref's whole read.

The sum of the middle three is what tensordb cannot go under without
changing its storage layout::

    python -m bench.read_limit [--sims 20 --steps 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import numpy as np

import tensordb
from tensordb.codec import _blosc
from tensordb.demo import synthetic_samples

from . import jsonbinref
from .w1_mesh import JsonBinPeer, TensordbPeer


def best(repeat: int, call: Callable[[], object]) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def recorded_statements(path: Path) -> list[tuple[str, Any]]:
    """Every (SQL, bindings) that reading all samples runs, in order (opening excluded)."""
    seen: list[tuple[str, Any]] = []
    with tensordb.open(path, mode="r") as db:
        names = list(db)
        db._store.conn.conn.exec_trace = lambda _c, sql, bindings: seen.append((sql, bindings)) or True
        for name in names:
            db[name].load()
    return seen


def chunks_per_array(path: Path) -> list[tuple[bytes | None, int | None, int | None, int | None, int]]:
    """(inline bytes, pack id, offset, size, raw size) of the chunk of every array of every tree, in tree order."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    rows = conn.execute(
        "SELECT c.data, c.pack_id, c.offset, c.size, c.raw_size FROM node n "
        "JOIN chunk_ref r ON r.array_id = n.array_id JOIN chunk c ON c.chunk_id = r.chunk_id "
        "ORDER BY n.tree_id, n.path"
    ).fetchall()
    conn.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sims", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    samples = list(synthetic_samples(args.sims, args.steps))
    with tempfile.TemporaryDirectory(prefix="tdb-read-limit-") as tmp:
        work = Path(tmp)
        tdb, peer = TensordbPeer(work), JsonBinPeer(work)
        tdb.write(samples)
        peer.write(samples)

        statements = recorded_statements(tdb.path)
        raw = apsw.Connection(str(tdb.path), flags=apsw.SQLITE_OPEN_READONLY)

        def replay() -> None:
            for sql, bindings in statements:
                raw.execute(sql, bindings).fetchall()

        chunks = chunks_per_array(tdb.path)
        packs = {pack_id: os.open(work / "w1.tdb-packs" / f"{pack_id:08d}.pack", os.O_RDONLY)
                 for pack_id in {c[1] for c in chunks if c[1] is not None}}
        located = [(packs[p], size, offset) for _, p, offset, size, _ in chunks if p is not None]

        def pread_all() -> None:
            for fd, size, offset in located:
                os.pread(fd, size, offset)

        stored = [data if data is not None else os.pread(packs[p], size, offset) for data, p, offset, size, _ in chunks]
        outputs = [np.empty(raw_size, np.uint8) for *_, raw_size in chunks]
        clib = _blosc()  # Blosc2's C library, loaded as tensordb loads it
        decompress, context = clib._lib.blosc2_decompress_ctx, clib._dctx(1)
        calls = [(s, len(s), o.ctypes.data, o.nbytes) for s, o in zip(stored, outputs)]

        def decompress_all() -> None:
            for src, n, dst, m in calls:
                decompress(context, src, n, dst, m)

        figures = {
            "tensordb, reopen + read all": best(args.repeat, tdb.read_all),
            f"SQL alone: the {len(statements):,} statements replayed through raw apsw": best(args.repeat, replay),
            f"chunk bytes alone: {len(located):,} preads from pack files": best(args.repeat, pread_all),
            f"decompression alone: {len(calls):,} Blosc2 calls": best(args.repeat, decompress_all),
            "JSON+binref, read all": best(args.repeat, lambda: [jsonbinref.read(p) for p in peer._jsons()]),
        }
        raw.close()
        for fd in packs.values():
            os.close(fd)
    floor = sum(v for k, v in figures.items() if k.split(":")[0] in ("SQL alone", "chunk bytes alone",
                                                                        "decompression alone"))
    for label, seconds in figures.items():
        print(f"{label}: {seconds * 1000:.0f} ms")
    print(f"SQL + chunk bytes + decompression: {floor * 1000:.0f} ms "
          f"= {floor / figures['JSON+binref, read all']:.2f}x JSON+binref's whole read")


if __name__ == "__main__":
    main()
