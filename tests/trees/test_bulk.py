"""db.move / db.set across trees: the same result as a loop over the trees, atomic, metadata only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb


def sample(i: int) -> dict[str, Any]:
    return {
        "name": f"s{i}",
        "data": {
            "inlet": {"p": np.full(100, i, "f4"), "meta": {"n": i}},
            "outlet": {"p": np.arange(10, dtype="i8")},
            "items": [{"a": 1}, {"b": 2}, {"c": [3, 4]}],
        },
        "time": i * 5,
    }


def build(path: Path, n: int = 6) -> Any:
    db = tensordb.open(path, mode="w")
    with db.transaction():
        for i in range(n):
            db[f"bm01-{i:02d}"] = sample(i)
        db["other"] = sample(99)
    return db


def state(db: Any) -> tuple[Any, ...]:
    """Everything a user can see: each tree's value and the public node rows."""
    rows = db.sql("SELECT tree, path, parent_path, key, idx, kind, value, array_id FROM nodes "
                  "ORDER BY tree, path").fetchall()
    values = {name: db[name].load() for name in db}
    return rows, {k: _plain(v) for k, v in values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, _plain(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return value


MOVES = [
    ("/data/inlet", "/data/inflow"),  # a rename inside one dict
    ("/data/inlet", "/inlet"),  # to another dict
    ("/data/inlet", "/data/outlet"),  # replaces an existing entry, keeping its place
    ("/data/inlet/meta", "/data"),  # over its own ancestor
    ("/data/items/0", "/data/first"),  # out of a list: the list is renumbered
    ("/data/inlet", "/data/items/1"),  # into a list: inserted there
    ("/time", "/time"),  # onto itself: nothing changes
]


@pytest.mark.parametrize(("src", "dst"), MOVES)
def test_move_across_trees_equals_a_loop_of_tree_moves(tmp_path: Path, src: str, dst: str) -> None:
    with build(tmp_path / "bulk.tdb") as bulk, build(tmp_path / "loop.tdb") as loop:
        assert bulk.move(src, dst, trees="bm01-*") == 6
        with loop.transaction():
            for name in loop:
                if name.startswith("bm01-"):
                    loop[name].move(src, dst)
        assert state(bulk) == state(loop)
        assert bulk["other"].load()["data"]["inlet"]["meta"] == {"n": 99}  # not matched: untouched
        assert bulk.check().ok


def test_move_writes_no_array_bytes_and_shows_in_nodes_at_once(tmp_path: Path) -> None:
    with build(tmp_path / "b.tdb") as db:
        array_ids = {i for (i,) in db.sql("SELECT array_id FROM nodes WHERE array_id IS NOT NULL")}
        written = db.counters.chunk_bytes_written
        with db.transaction():
            db.move("/data/inlet", "/data/inflow")
            rows = db.sql("SELECT count(*) FROM nodes WHERE path LIKE '/data/inflow%'").fetchall()
            assert rows == [(7 * 4,)]  # 7 trees x 4 nodes, seen inside the transaction
        assert db.counters.chunk_bytes_written == written
        assert {i for (i,) in db.sql("SELECT array_id FROM nodes WHERE array_id IS NOT NULL")} == array_ids


def test_move_is_all_or_nothing_and_names_the_trees(tmp_path: Path) -> None:
    with build(tmp_path / "b.tdb") as db:
        del db["bm01-03"]["/data/inlet"]
        before = state(db)
        with pytest.raises(KeyError, match=r"/data/inlet: no such path in tree\(s\) 'bm01-03'"):
            db.move("/data/inlet", "/data/inflow", trees="bm01-*")
        with pytest.raises(KeyError, match="/nowhere: no such path"):
            db.move("/data/outlet", "/nowhere/x")
        with pytest.raises(TypeError, match="/time: not a dict or list"):
            db.move("/data/outlet", "/time/x")
        with pytest.raises(ValueError, match="into itself"):
            db.move("/data", "/data/inlet/x")
        assert state(db) == before
        assert db.check().ok


def test_move_inside_a_rolled_back_transaction_leaves_nothing(tmp_path: Path) -> None:
    with build(tmp_path / "b.tdb") as db:
        before = state(db)
        with pytest.raises(RuntimeError), db.transaction():
            db.move("/data/inlet", "/data/inflow")
            raise RuntimeError("roll back")
        assert state(db) == before


def test_a_pattern_matching_nothing_changes_nothing(tmp_path: Path) -> None:
    with build(tmp_path / "b.tdb") as db:
        before = state(db)
        assert db.move("/data/inlet", "/data/inflow", trees="nope-*") == 0
        assert db.set("/x", 1, trees="nope-*") == 0
        assert state(db) == before


@pytest.mark.parametrize("value", [True, None, 3, 2.5, "text", b"\x00\x01", 2**70, float("nan"), "long " * 20_000])
def test_set_across_trees_equals_a_loop(tmp_path: Path, value: Any) -> None:
    with build(tmp_path / "bulk.tdb") as bulk, build(tmp_path / "loop.tdb") as loop:
        bulk.set("/reviewed", value, trees="bm01-*")
        bulk.set("/time", value, trees="bm01-*")  # replaces an existing scalar in place
        with loop.transaction():
            for name in loop:
                if name.startswith("bm01-"):
                    loop[name]["reviewed"] = value
                    loop[name]["time"] = value
        bulk_rows, bulk_values = state(bulk)
        loop_rows, loop_values = state(loop)
        assert repr(bulk_values) == repr(loop_values)  # repr: NaN != NaN
        assert repr(bulk_rows) == repr(loop_rows)
        assert bulk.check().ok


def test_set_shares_one_array_across_trees(tmp_path: Path) -> None:
    with build(tmp_path / "b.tdb") as db:
        mesh = np.arange(5000, dtype="f8")
        assert db.set("/data/mesh", {"points": mesh, "n": 5000}, trees="bm01-*") == 6
        ids = {i for (i,) in db.sql("SELECT array_id FROM nodes WHERE path = '/data/mesh/points'")}
        assert len(ids) == 1
        assert all(np.array_equal(db[f"bm01-{i:02d}"]["/data/mesh/points"], mesh) for i in range(6))
        db.set("/data/items/0", "first", trees="bm01-*")  # into a list: per tree
        assert db["bm01-02"]["/data/items"].load() == ["first", {"b": 2}, {"c": [3, 4]}]
        assert db.check().ok


def test_set_refuses_the_root_and_missing_parents(tmp_path: Path) -> None:
    with build(tmp_path / "b.tdb") as db:
        with pytest.raises(ValueError, match="whole tree"):
            db.set("", 1)
        with pytest.raises(KeyError, match="/missing: no such path"):
            db.set("/missing/x", 1)


def test_bulk_edits_refuse_a_read_only_database(tmp_path: Path) -> None:
    build(tmp_path / "b.tdb").close()
    with tensordb.open(tmp_path / "b.tdb", mode="r") as db:
        with pytest.raises(tensordb.ReadOnlyError):
            db.move("/data/inlet", "/data/inflow")
        with pytest.raises(tensordb.ReadOnlyError):
            db.set("/x", 1)


def _statements(db: Any, action: Any) -> int:
    count = 0

    def tracer(cursor: Any, sql: str, bindings: Any) -> bool:
        nonlocal count
        count += 1
        return True

    raw = db._store.conn.conn
    raw.exec_trace = tracer
    try:
        action()
    finally:
        raw.exec_trace = None
    return count


@pytest.mark.parametrize("n", [3, 30])
def test_statements_do_not_grow_with_the_number_of_trees(tmp_path: Path, n: int) -> None:
    with build(tmp_path / "b.tdb", n) as db:
        moves = _statements(db, lambda: db.move("/data/inlet", "/data/inflow", trees="bm01-*"))
        sets = _statements(db, lambda: db.set("/reviewed", 1, trees="bm01-*"))
        assert moves <= 8 and sets <= 8  # begin, find, update paths, re-attach, touch, commit
