"""Random mutations of a database, and the long-lived worker process that opens them.

The parent (``test_fuzz.py``) builds one database (:func:`build`), and for
each mutation copies it, damages the copy (:func:`mutate`: bytes of the
SQLite file, bytes of pack files, or one metadata cell through SQL) and asks
a worker to open, load and check it. The worker (``python fuzz_worker.py``)
runs under a 1 GiB address-space limit and answers one JSON line per
request:

* ``error``: a tensordb error (``TensorDBError`` and its subclasses);
* ``intact``: every tree loaded equals what was written;
* ``changed``: the trees differ from what was written, and every array
  returned equals, bit for bit, what an independent reader (the standard
  library's ``sqlite3`` plus Blosc2, verifying every checksum, as
  ``docs/format.md`` describes) decodes from the same damaged file: the
  damage hit metadata the format does not checksum (a scalar, a name, an
  array's shape...), and tensordb returned what the file says;
* ``reported``: as ``changed``, but the independent reader finds other
  array bytes because SQLite's b-trees themselves are damaged (a table and
  its index disagree, or one coordinate appears twice), and ``check()``
  reports that damage (``sqlite-integrity``);
* anything else is a failure: ``other`` (another exception type),
  ``mismatch`` (tensordb returned array bytes the file does not hold).

A crash or a hang of the worker is seen by the parent.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import Any

# -- the database every mutation starts from -----------------------------------------------------

TABLE_COLUMNS = {
    "meta": ["key", "value"],
    "tree": ["tree_id", "name", "root_id", "created", "modified"],
    "node": ["node_id", "tree_id", "parent_id", "path", "key", "pos", "kind", "value", "exact", "dtype", "array_id"],
    "array": ["array_id", "dtype", "shape", "chunks", "codec", "fill_value", "size", "nbytes", "refcount"],
    "pack": ["pack_id", "name"],
    "chunk": ["chunk_id", "hash", "checksum", "raw_size", "size", "refcount", "data", "pack_id", "offset"],
    "chunk_ref": ["array_id", "coord", "chunk_id"],
}


def expected_trees() -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(61)
    points = rng.standard_normal((300, 3)).astype("<f4")
    return {
        "s000": {
            "name": "sample 0",
            "time": 51,
            "big": 2**70,
            "nan": float("nan"),
            "flags": [True, False, None],
            "text": "long " * 20_000,  # over 64 KiB: a zstd payload
            "mesh": {"object_type": "PasteurVolumetricMesh", "points": points,
                     "cells": rng.integers(0, 300, (200, 4)).astype("<i8")},
            "rec": np.array([(1, 2.5, b"ab"), (3, 4.5, b"cd")], dtype=[("a", ">i4"), ("b", "<f8"), ("c", "S2")]),
            "z": np.complex64(1 - 2j),
            "u16": np.uint16(7),
        },
        "s001": {
            "name": "sample 1",
            "time": 52.5,
            "mesh": {"object_type": "PasteurSurfaceMesh", "points": points,  # shared chunks (dedup)
                     "p": rng.standard_normal(2000).astype(">f8")},
            "list": [[1, 2], {"k": "v"}, np.arange(5, dtype="<u1")],
        },
    }


def build(path: Path) -> None:
    import numpy as np

    import tensordb

    trees = expected_trees()
    with tensordb.open(path, mode="x", inline_threshold=512) as db:
        db._store.packs.max_pack_bytes = 8192  # several pack files
        db["s000"] = {**trees["s000"], "mesh": None}
        db["s000"].set("/mesh", trees["s000"]["mesh"], chunks=(100, 3))
        db["s001"] = trees["s001"]
        db["s001"].set("/mesh/p", trees["s001"]["mesh"]["p"], chunks=(250,),
                       codec=tensordb.Codec("lz4", level=1, shuffle="bit"))
        db["s001"]["/mesh/points"] = db["s000"]["/mesh/points"]
        assert np.asarray(db["s001"]["/mesh/points"]).tobytes() == trees["s001"]["mesh"]["points"].tobytes()
        db.gc()  # no dead bytes: damage to a pack hits a live chunk or a pack header
        assert db.check().findings == []


# -- mutations ----------------------------------------------------------------------------------

def copy_database(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True)
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    packs = Path(str(src) + "-packs")
    if packs.is_dir():
        shutil.copytree(packs, Path(str(dst) + "-packs"))
    return dst


def _hostile_value(rng: random.Random, column: str, others: list[Any]) -> Any:
    choice = rng.randrange(14)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([0, 1, -1, 2, 7, 16, 2**31, 2**31 - 1, 2**62, -(2**63), 2**63 - 1])
    if choice == 2:
        return rng.randrange(-1000, 1000)
    if choice == 3:
        return rng.choice([0.0, -0.0, 1.5, 1e308, float("inf"), float("nan")])
    if choice == 4:
        return rng.choice(["", "x", "../x.pack", "/etc/passwd", "00000001.pack", "99999999.pack", "dict", "list",
                           "array", "int", "str", "bytes", "0", "1.2", "0.0"])
    if choice == 5:
        return rng.choice(["|O", "<f4", ">f8", "|V8", "<U3", "|S2", "<M8[ns]", "[('a', 'O')]", "<i3", "|b1",
                           '{"names":["a"],"formats":["|O"],"offsets":[0],"itemsize":8}', "<c8"])
    if choice == 6:
        return rng.choice(["[]", "[0]", "[-1]", "[1e9, 1e9, 1e9]", "[4294967296, 4294967296]", "[3]", "[300, 3]",
                           "[100, 3]", "[2000]", "[[1]]", '{"a": 1}', "[", "null", '"x"', "[1.5]", "[0, 3]",
                           '{"level":5,"name":"zstd","shuffle":"byte"}', '{"level":5,"name":"evil","shuffle":"byte"}',
                           '{"level":99,"name":"lz4","shuffle":"bit"}'])
    if choice == 7:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 4, 8, 16, 32, 100])))
    if choice == 8 and others:
        return rng.choice(others)  # a valid value of the same column, from another row
    if choice == 9:
        return "".join(rng.choice("0123456789.") for _ in range(rng.randrange(0, 8)))
    if choice == 10:
        return rng.choice(["/", "/name", "/mesh", "/mesh/points", "/0", "/list/0", "\x01/x", "/a/b/c"])
    if choice == 11:
        return rng.choice([b"", b"\x00" * 8, os.urandom(8)])
    if choice == 12 and others:
        value = rng.choice(others)
        if isinstance(value, int) and not isinstance(value, bool):
            return value + rng.choice([-1, 1, 2])
        return value
    return rng.choice(["dict", "list", "null", "bool", "int", "float", "str", "bytes", "array"])


def mutate(path: Path, rng: random.Random) -> dict[str, Any]:
    """Damage a database copy in place; returns what was done (for the report)."""
    kind = rng.choices(["sqlite-bytes", "pack-bytes", "row"], weights=[4, 3, 3])[0]
    packs = sorted(Path(str(path) + "-packs").glob("*.pack"))
    if kind == "pack-bytes" and packs:
        target = rng.choice(packs)
        return {"kind": kind, **_mutate_bytes(target, rng)}
    if kind == "row":
        return {"kind": kind, **_mutate_row(path, rng)}
    return {"kind": "sqlite-bytes", **_mutate_bytes(path, rng)}


def _mutate_bytes(target: Path, rng: random.Random) -> dict[str, Any]:
    data = bytearray(target.read_bytes())
    how = rng.choices(["flip", "byte", "run", "truncate", "append"], weights=[5, 5, 2, 1, 1])[0]
    at = rng.randrange(len(data))
    if how == "flip":
        data[at] ^= 1 << rng.randrange(8)
    elif how == "byte":
        for _ in range(rng.randrange(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == "run":
        length = rng.randrange(1, 64)
        data[at:at + length] = bytes(rng.choice([0, 0xFF, rng.randrange(256)]) for _ in range(length))[: len(data) - at]
    elif how == "truncate":
        del data[at:]
    else:
        data += os.urandom(rng.randrange(1, 256))
    target.write_bytes(bytes(data))
    return {"file": target.name, "how": how, "at": at}


def _mutate_row(path: Path, rng: random.Random) -> dict[str, Any]:
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA foreign_keys = OFF")
        con.execute("PRAGMA synchronous = OFF")
        table = rng.choice(list(TABLE_COLUMNS))
        column = rng.choice(TABLE_COLUMNS[table])
        keys = con.execute(f"SELECT rowid FROM {table}").fetchall() if table not in ("meta", "chunk_ref") else None
        others = [r[0] for r in con.execute(f"SELECT {column} FROM {table} LIMIT 200")]
        value = _hostile_value(rng, column, others)
        if keys is not None:
            if not keys:
                return {"table": table, "column": column, "skipped": True}
            rowid = rng.choice(keys)[0]
            where, params = "rowid = ?", (rowid,)
        else:
            pk = ["key"] if table == "meta" else ["array_id", "coord"]
            rows = con.execute(f"SELECT {', '.join(pk)} FROM {table}").fetchall()
            if not rows:
                return {"table": table, "column": column, "skipped": True}
            row = rng.choice(rows)
            where, params = " AND ".join(f"{k} = ?" for k in pk), tuple(row)
        try:
            con.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (value, *params))
            done = True
        except sqlite3.Error as exc:  # a constraint refuses it: the file stays as it was
            done = f"refused: {exc}"
        return {"table": table, "column": column, "value": repr(value)[:60], "done": done}
    finally:
        con.close()


# -- what the worker does with one damaged database ---------------------------------------------------

def canon(value: Any) -> Any:
    """A comparable form: containers kept, arrays and numpy scalars as (type, dtype, shape, bytes)."""
    import numpy as np

    if isinstance(value, dict):
        return {"dict": [[k, canon(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [canon(v) for v in value]}
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        return {type(value).__name__: [str(arr.dtype.descr), list(arr.shape), arr.tobytes().hex()]}
    if isinstance(value, float) and math.isnan(value):
        return {"float": "nan"}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return {type(value).__name__: value}


def array_leaves(value: Any, pointer: str = "") -> dict[str, Any]:
    """{JSON Pointer: ndarray} of every array in a loaded tree (numpy scalars are 0-d arrays too)."""
    import numpy as np

    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(array_leaves(v, pointer + "/" + k.replace("~", "~0").replace("/", "~1")))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(array_leaves(v, f"{pointer}/{i}"))
    elif isinstance(value, np.ndarray) or (isinstance(value, np.generic) and value.dtype.kind in "cmMV"):
        out[pointer] = np.asarray(value)
    return out


class Ambiguous(Exception):
    """The damaged file holds two answers (two chunks at one grid coordinate)."""


def reference_array(con: sqlite3.Connection, db_path: Path, tree: str, pointer: str) -> Any:
    """The array at ``pointer``, decoded as docs/format.md describes, with every checksum verified."""
    import blosc2
    import numpy as np
    import xxhash

    row = con.execute(
        "SELECT a.array_id, a.dtype, a.shape, a.chunks, a.fill_value FROM node n "
        "JOIN tree t ON t.tree_id = n.tree_id JOIN array a ON a.array_id = n.array_id "
        "WHERE t.name = ? AND n.path = ?", (tree, pointer)).fetchone()
    if row is None:
        raise LookupError(f"{tree}:{pointer}: no array row")
    array_id, dtype_text, shape_text, chunks_text, fill = row
    dtype = _parse_dtype(dtype_text)
    shape, chunks = tuple(json.loads(shape_text)), tuple(json.loads(chunks_text))
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks))
    out = np.empty(tuple(g * c for g, c in zip(grid, chunks)), dtype=dtype)
    out[...] = np.frombuffer(fill, dtype=dtype, count=1).reshape(())
    seen: set[str] = set()
    for coord, data, pack_name, offset, size, checksum in con.execute(
            "SELECT r.coord, c.data, p.name, c.offset, c.size, c.checksum FROM chunk_ref r "
            "JOIN chunk c ON c.chunk_id = r.chunk_id LEFT JOIN pack p ON p.pack_id = c.pack_id "
            "WHERE r.array_id = ?", (array_id,)):
        if not isinstance(coord, str) or not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*|", coord):
            continue  # not a grid coordinate: never read
        index = [int(i) for i in coord.split(".")] if coord else []
        if len(index) != len(grid) or any(i >= g for i, g in zip(index, grid)):
            continue  # outside the grid: never read
        if coord in seen:  # only a damaged primary-key b-tree holds a coordinate twice
            raise Ambiguous(f"{tree}:{pointer}: the chunk index holds coordinate {coord!r} twice")
        seen.add(coord)
        if data is None:
            if not re.fullmatch(r"[0-9]{8,19}\.pack", pack_name or ""):
                raise LookupError(f"unexpected pack name {pack_name!r}")
            with open(os.path.join(str(db_path) + "-packs", pack_name), "rb") as f:
                f.seek(offset)
                data = f.read(size)
        if len(data) != size or xxhash.xxh3_64_intdigest(data) != checksum & 0xFFFFFFFFFFFFFFFF:
            raise LookupError(f"{tree}:{pointer}: chunk {coord} fails its checksum")
        raw = blosc2.decompress2(data)
        if len(raw) != math.prod(chunks) * dtype.itemsize:
            raise LookupError(f"{tree}:{pointer}: chunk {coord} holds {len(raw)} bytes")
        block = np.frombuffer(raw, dtype=dtype).reshape(chunks)
        out[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks))] = block
    return out[tuple(slice(0, s) for s in shape) + (...,)].copy()


def _parse_dtype(text: str) -> Any:
    from dtype_text import parse_dtype_text  # this script's folder is on sys.path

    return parse_dtype_text(text)


def examine(path: Path, mode: str, expected: Any) -> dict[str, Any]:
    """Open, load, slice and check one damaged database; classify what happened."""

    import tensordb

    try:
        with tensordb.open(path, mode=mode) as db:
            loaded = {name: db[name].load() for name in db}
            for name in loaded:
                for _, _, handle in db.glob("/**", trees=name):
                    if isinstance(handle, tensordb.Array) and handle.ndim:
                        handle[: max(1, handle.shape[0] // 2)]
            report = db.check()
    except tensordb.TensorDBError as exc:
        return {"outcome": "error", "error": type(exc).__name__, "message": str(exc)[:200]}
    except BaseException as exc:  # anything else is a failure: report it fully
        return {"outcome": "other", "error": type(exc).__name__, "message": str(exc)[:500],
                "traceback": traceback.format_exc()[-3000:]}
    if canon(loaded) == expected:
        return {"outcome": "intact", "check_ok": report.ok}
    # Changed without an error: every array returned must be what the file holds.
    disagreement = _disagreement(path, loaded)
    if disagreement is None:
        return {"outcome": "changed", "check_ok": report.ok}
    # SQLite's b-trees themselves are damaged (a table and its index disagree, a key
    # is out of order): readers taking different access paths get different rows.
    # That is acceptable only when check() reports the damage.
    if any(f.code == "sqlite-integrity" for f in report.findings):
        return {"outcome": "reported", "where": disagreement}
    return {"outcome": "mismatch", "where": disagreement}


def _disagreement(path: Path, loaded: dict[str, Any]) -> str | None:
    """Where tensordb's arrays differ from the independent reader's (None when they agree)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for name, tree in loaded.items():
            for pointer, got in array_leaves(tree).items():
                try:
                    want = reference_array(con, path, name, pointer)
                except Exception as exc:  # the independent reader cannot decode what tensordb returned
                    return f"{name}:{pointer}: reference reader: {type(exc).__name__}: {exc}"[:300]
                if want.dtype != got.dtype or want.shape != got.shape or want.tobytes() != got.tobytes():
                    return f"{name}:{pointer}: tensordb {got.dtype} {got.shape}, file {want.dtype} {want.shape}"
    finally:
        con.close()
    return None


def worker() -> None:
    """Serve requests (one JSON line each on stdin) until stdin closes."""
    import resource

    import tensordb  # noqa: F401  (imported before the limit, like any application would)

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the replies
    expected = canon(expected_trees())
    limit = int(os.environ.get("TENSORDB_FUZZ_RLIMIT_AS", str(1 << 30)))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(json.dumps({"ready": os.getpid(), "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0]}),
          file=replies, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        result = examine(Path(request["path"]), request["mode"], expected)
        print(json.dumps(result), file=replies, flush=True)


if __name__ == "__main__":
    worker()
