"""Versions: snapshots, tags, views of a snapshot, diff, restore, expire (format version 2).

One test (or one parametrised test) per line of the contract in SPEC.md
("Versions") and of the semantics of ``tensordb/versions.py``: a snapshot
never changes afterwards, handles of a view keep reading it, diff names the
highest changed paths and reads no array bytes where content keys match,
restore writes no array bytes and is one transaction, gc never frees what a
snapshot reaches.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from strategies import assert_tree_equal

import tensordb
from tensordb.versions import Snapshot


def sample(time: int = 51, n: int = 100) -> dict[str, Any]:
    return {
        "name": "s037",
        "time": time,
        "data": {"p": np.arange(n, dtype="f8"), "q": np.zeros((4, 3), "f4"), "note": "x"},
        "list": [1, "two", {"three": 3}],
    }


@pytest.fixture
def hist(db: tensordb.Database) -> Iterator[tensordb.Database]:
    """A database with two trees and a tagged snapshot ``raw`` of them."""
    db["a"] = sample()
    db["b"] = {"x": np.arange(10), "y": 2}
    db.tag("raw", db.snapshot("raw import"))
    yield db


def loaded(db: tensordb.Database) -> dict[str, Any]:
    return {name: db[name].load() for name in db}


def delta(db: tensordb.Database, before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in db.counters.snapshot().items()}


# -- snapshot, history ---------------------------------------------------------------------------

def test_snapshot_returns_a_snapshot_with_id_created_message_parent_and_tags(db: tensordb.Database) -> None:
    db["a"] = 1
    s1 = db.snapshot("raw import")
    assert isinstance(s1, Snapshot) and isinstance(s1, tensordb.Snapshot)
    assert (s1.message, s1.parent_id, s1.tags) == ("raw import", None, ())
    assert isinstance(s1.id, int) and isinstance(s1.created, str) and s1.created
    s2 = db.snapshot()
    assert s2.id > s1.id and s2.parent_id == s1.id and s2.message == ""
    assert s2.created >= s1.created
    assert "raw import" in str(s1)


def test_history_lists_snapshots_newest_first(db: tensordb.Database) -> None:
    assert db.history() == []
    made = [db.snapshot(f"m{i}") for i in range(4)]
    assert db.history() == made[::-1]


def test_a_snapshot_message_must_be_text(db: tensordb.Database) -> None:
    with pytest.raises(TypeError):
        db.snapshot(3)  # type: ignore[arg-type]
    assert db.history() == []


def test_a_snapshot_of_an_empty_database_and_of_a_database_emptied_later(db: tensordb.Database) -> None:
    empty = db.snapshot("empty")
    db["a"] = {"x": np.arange(3)}
    full = db.snapshot("full")
    del db["a"]
    with db.at(empty) as old:
        assert len(old) == 0 and list(old) == []
    with db.at(full) as old:
        assert_tree_equal(old["a"].load(), {"x": np.arange(3)})
    assert db.check().ok


# -- tags ----------------------------------------------------------------------------------------

def test_tag_names_a_snapshot_and_tags_lists_them(db: tensordb.Database) -> None:
    s1 = db.snapshot("one")
    db.snapshot("two")
    tagged = db.tag("raw", s1)
    assert tagged.id == s1.id and tagged.tags == ("raw",)
    assert db.tags() == {"raw": tagged}
    assert db.history()[-1].tags == ("raw",)


def test_tag_without_a_snapshot_names_the_latest(db: tensordb.Database) -> None:
    db.snapshot("one")
    s2 = db.snapshot("two")
    assert db.tag("latest").id == s2.id


@pytest.mark.parametrize("how", ["object", "id", "tag"])
def test_tag_accepts_every_kind_of_reference(db: tensordb.Database, how: str) -> None:
    s1 = db.snapshot("one")
    db.snapshot("two")
    db.tag("first", s1)
    ref = {"object": s1, "id": s1.id, "tag": "first"}[how]
    assert db.tag("again", ref).id == s1.id


def test_tags_are_sorted_by_name_and_several_may_name_one_snapshot(db: tensordb.Database) -> None:
    s1 = db.snapshot()
    db.tag("zeta", s1)
    db.tag("alpha", s1)
    assert list(db.tags()) == ["alpha", "zeta"]
    assert db.history()[0].tags == ("alpha", "zeta")


def test_an_existing_tag_name_raises_value_error_and_keeps_the_tag(db: tensordb.Database) -> None:
    s1 = db.snapshot()
    db.snapshot()
    db.tag("raw", s1)
    with pytest.raises(ValueError, match="raw"):
        db.tag("raw")
    assert db.tags()["raw"].id == s1.id


@pytest.mark.parametrize("name", ["", "123", "a\nb", "x" * 201])
def test_invalid_tag_names_raise_value_error(db: tensordb.Database, name: str) -> None:
    db.snapshot()
    with pytest.raises(ValueError):
        db.tag(name)
    assert db.tags() == {}


def test_tag_without_any_snapshot_raises_key_error(db: tensordb.Database) -> None:
    with pytest.raises(KeyError):
        db.tag("raw")


def test_untag_removes_the_tag_not_the_snapshot(db: tensordb.Database) -> None:
    s1 = db.snapshot()
    db.tag("raw", s1)
    db.untag("raw")
    assert db.tags() == {} and db.history() == [s1]
    with pytest.raises(KeyError):
        db.untag("raw")
    db.tag("raw", s1)  # the name is free again
    assert db.tags()["raw"].id == s1.id


# -- unknown references --------------------------------------------------------------------------

def _unknown_refs(db: tensordb.Database) -> list[Any]:
    gone = Snapshot(999, "2020-01-01T00:00:00.000Z", "never", None)
    return ["no-such-tag", 999, "999", gone]


@pytest.mark.parametrize("which", range(4))
@pytest.mark.parametrize("verb", ["at", "tag", "diff", "diff2", "restore", "expire", "open"])
def test_an_unknown_snapshot_or_tag_raises_key_error(hist: tensordb.Database, which: int, verb: str) -> None:
    ref = _unknown_refs(hist)[which]
    before = loaded(hist)
    with pytest.raises(KeyError):
        if verb == "at":
            hist.at(ref)
        elif verb == "tag":
            hist.tag("new", ref)
        elif verb == "diff":
            hist.diff(ref)
        elif verb == "diff2":
            hist.diff("raw", ref)
        elif verb == "restore":
            hist.restore(ref)
        elif verb == "expire":
            hist.expire(before=ref)
        else:
            tensordb.open(hist.filename, mode="r", at=ref)
    assert "new" not in hist.tags() and len(hist.history()) == 1
    assert_tree_equal(loaded(hist), before)


def test_a_snapshot_is_named_by_a_snapshot_object_an_id_or_a_tag_but_nothing_else(hist: tensordb.Database) -> None:
    with pytest.raises(TypeError):
        hist.at(1.0)  # type: ignore[arg-type]


def test_a_tag_made_of_digits_is_refused_so_digits_always_name_ids(hist: tensordb.Database) -> None:
    s1 = hist.history()[0]
    with hist.at(str(s1.id)) as old:
        assert old.snapshot_shown is not None and old.snapshot_shown.id == s1.id


# -- a snapshot never changes --------------------------------------------------------------------

def _mutate(db: tensordb.Database) -> None:
    """Every kind of write, on the current state."""
    a = db["a"]
    a["time"] = 0
    a["/data/p"][0:10] = -1.0
    a["/data/q"] = np.ones((2, 2))
    del a["/data/note"]
    a["/list"].append(4)
    a["/list/2/three"] = "III"
    a.move("/name", "/title")
    db["b"]["/x"].resize((20,))
    db.rename("b", "b2")
    db["c"] = {"new": np.arange(5)}
    db.cp("a", "a-copy")
    db.mv("a-copy/data", "c/moved")


def test_a_snapshot_never_changes_whatever_is_written_afterwards(hist: tensordb.Database) -> None:
    expected = {"a": sample(), "b": {"x": np.arange(10), "y": 2}}
    _mutate(hist)
    hist.snapshot("after")
    hist["a"]["/data/p"][:] = 7.0
    del hist["c"]
    with hist.at("raw") as old:
        assert_tree_equal(loaded(old), expected)
    assert hist.check().ok


def test_the_current_state_is_what_was_written(hist: tensordb.Database) -> None:
    _mutate(hist)
    a = hist["a"].load()
    assert a["time"] == 0 and "title" in a and "name" not in a
    assert_tree_equal(a["data"]["p"][:10], np.full(10, -1.0))
    assert sorted(hist) == ["a", "a-copy", "b2", "c"]
    assert hist.check().ok


def test_each_snapshot_keeps_its_own_state(db: tensordb.Database) -> None:
    states = []
    db["t"] = {"v": 0, "arr": np.zeros(50)}
    for i in range(5):
        db["t"]["v"] = i
        db["t"]["/arr"][i * 10:(i + 1) * 10] = i + 1
        states.append((db.snapshot(f"s{i}"), db["t"].load()))
    db["t"] = "gone"
    for snap, value in states:
        with db.at(snap) as old:
            assert_tree_equal(old["t"].load(), value)
    assert db.check().ok


def test_a_snapshot_taken_in_a_transaction_is_rolled_back_with_it(db: tensordb.Database) -> None:
    db["a"] = 1

    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.transaction():
        db["a"] = 2
        inner = db.snapshot("doomed")
        db.tag("doomed", inner)
        assert [s.id for s in db.history()] == [inner.id]
        raise Abort
    assert db.history() == [] and db.tags() == {}
    assert db["a"].load() == 1
    with pytest.raises(KeyError, match="expired, or taken in a transaction"):
        db.at(inner)
    kept = db.snapshot("kept")
    assert kept.parent_id is None
    assert db.check().ok


def test_a_snapshot_in_a_committed_transaction_sees_the_writes_before_it(db: tensordb.Database) -> None:
    with db.transaction():
        db["a"] = 1
        s = db.snapshot()
        db["a"] = 2
    with db.at(s) as old:
        assert old["a"].load() == 1
    assert db["a"].load() == 2


def test_a_snapshot_in_a_savepoint_rolled_back_leaves_the_outer_transaction(db: tensordb.Database) -> None:
    db["a"] = 1
    with db.transaction():
        outer = db.snapshot("outer")
        try:
            with db.transaction():
                db.snapshot("inner")
                raise RuntimeError
        except RuntimeError:
            pass
    assert db.history() == [outer]
    assert db.check().ok


# -- views ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["object", "id", "tag", "digits"])
def test_at_takes_a_snapshot_its_id_or_a_tag(hist: tensordb.Database, how: str) -> None:
    s1 = hist.tags()["raw"]
    ref = {"object": s1, "id": s1.id, "tag": "raw", "digits": str(s1.id)}[how]
    hist["a"]["time"] = 0
    with hist.at(ref) as old:
        assert old["a"]["time"] == 51
        assert old.snapshot_shown == s1
        assert old.readonly and old.filename == hist.filename
    assert old.closed


def test_a_view_reads_like_a_database(hist: tensordb.Database) -> None:
    hist["a"]["time"] = 0
    hist["new"] = {"z": 1}
    del hist["b"]
    with hist.at("raw") as old:
        assert "a" in old and "b" in old and "new" not in old
        assert len(old) == 2 and list(old) == ["a", "b"]
        assert old["a"]["time"] == 51
        assert old["a"]["/data/note"] == "x"
        assert_tree_equal(old["a"]["/data/p"][0:10], np.arange(10, dtype="f8"))
        assert_tree_equal(old["a"].load(), sample())
        lazy = old["a"].load(lazy=True)
        assert isinstance(lazy["data"]["p"], tensordb.Array)
        found = sorted((name, path) for name, path, _ in old.glob("/**/p"))
        assert found == [("a", "/data/p")]
        stats = old.stats()
        assert stats["trees"] == 2
        assert stats["nodes"] == sum(1 for _ in old.sql("SELECT 1 FROM nodes"))
        with pytest.raises(KeyError):
            old["new"]
        assert "at snapshot" in repr(old)
    with pytest.raises(KeyError):
        hist["b"]


def test_stats_of_a_view_count_the_snapshot(hist: tensordb.Database) -> None:
    with hist.at("raw") as old:
        before = old.stats()
    for i in range(3):
        hist[f"more{i}"] = {"arr": np.arange(1000) + i}
    with hist.at("raw") as old:
        after = old.stats()
    for key in ("trees", "nodes", "logical_bytes"):
        assert before[key] == after[key], key
    assert hist.stats()["trees"] == 5


def test_stats_of_a_view_count_the_arrays_of_the_snapshot(hist: tensordb.Database) -> None:
    for i in range(3):
        hist[f"more{i}"] = {"arr": np.arange(1000) + i}
    with hist.at("raw") as old:
        listed = old.sql("SELECT count(*) FROM arrays").fetchall()[0][0]
        assert listed == 3
        assert old.stats()["arrays"] == listed


def test_sql_on_a_view_answers_as_of_the_snapshot(hist: tensordb.Database) -> None:
    query_nodes = "SELECT tree, path, kind, value, array_id FROM nodes ORDER BY tree, path"
    query_trees = "SELECT name, root_kind, n_nodes, n_arrays, logical_bytes FROM trees ORDER BY name"
    query_arrays = "SELECT array_id, dtype, shape, refcount FROM arrays ORDER BY array_id"
    expected = [list(hist.sql(q)) for q in (query_nodes, query_trees)]
    expected_arrays = [row[:3] for row in hist.sql(query_arrays)]
    _mutate(hist)
    del hist["a"]
    del hist["a-copy"]
    with hist.at("raw") as old:
        assert [list(old.sql(q)) for q in (query_nodes, query_trees)] == expected
        assert [row[:3] for row in old.sql(query_arrays)] == expected_arrays
        rows = list(old.sql("SELECT tree, value FROM nodes WHERE key = ? AND value > ?", ("time", 50)))
        assert rows == [("a", 51)]
    assert list(hist.sql("SELECT tree FROM nodes WHERE key = 'time'")) == []


def test_sql_on_a_view_is_read_only(hist: tensordb.Database) -> None:
    with hist.at("raw") as old, pytest.raises(tensordb.ReadOnlyError):
        list(old.sql("DELETE FROM node"))
    assert hist.check().ok


def test_the_snapshots_relation_lists_history(db: tensordb.Database) -> None:
    s1 = db.snapshot("one")
    s2 = db.snapshot("two")
    db.tag("b-tag", s1)
    db.tag("a-tag", s1)
    rows = list(db.sql("SELECT id, created, message, parent_id, tags FROM snapshots ORDER BY id"))
    assert rows == [(s1.id, s1.created, "one", None, '["a-tag","b-tag"]'), (s2.id, s2.created, "two", s1.id, "[]")]
    assert json.loads(rows[0][4]) == ["a-tag", "b-tag"]
    assert db.sql("SELECT * FROM snapshots").columns == ("id", "created", "message", "parent_id", "tags")


def _write_through(view: tensordb.Database, how: str) -> None:
    if how == "setitem":
        view["z"] = 1
    elif how == "delitem":
        del view["a"]
    elif how == "node-set":
        view["a"]["time"] = 0
    elif how == "node-del":
        del view["a"]["/data/note"]
    elif how == "array-write":
        view["a"]["/data/p"][0:3] = 0
    elif how == "list-append":
        view["a"]["/list"].append(1)
    elif how == "move":
        view["a"].move("/name", "/title")
    elif how == "rename":
        view.rename("a", "z")
    elif how == "snapshot":
        view.snapshot()
    elif how == "tag":
        view.tag("nope")
    elif how == "untag":
        view.untag("raw")
    elif how == "restore":
        view.restore("raw")
    elif how == "expire":
        view.expire(before="raw")
    elif how == "gc":
        view.gc()
    elif how == "transaction":
        with view.transaction():
            pass
    elif how == "mv":
        view.mv("a", "z")
    elif how == "cp":
        view.cp("a", "z")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["setitem", "delitem", "node-set", "node-del", "array-write", "list-append", "move",
                                 "rename", "snapshot", "tag", "untag", "restore", "expire", "gc", "transaction",
                                 "mv", "cp"])
def test_writing_through_a_view_raises_read_only_error(hist: tensordb.Database, how: str) -> None:
    before = loaded(hist)
    with hist.at("raw") as old:
        with pytest.raises(tensordb.ReadOnlyError):
            _write_through(old, how)
        assert_tree_equal(loaded(old), before)
    assert_tree_equal(loaded(hist), before)
    assert list(hist.tags()) == ["raw"] and len(hist.history()) == 1
    assert hist.check().ok


def test_a_view_of_the_latest_snapshot_keeps_its_state_under_writes(hist: tensordb.Database) -> None:
    old = hist.at("raw")
    try:
        _mutate(hist)
        assert_tree_equal(loaded(old), {"a": sample(), "b": {"x": np.arange(10), "y": 2}})
    finally:
        old.close()


@pytest.mark.parametrize("change", ["set", "delete-tree", "replace-tree", "write-in-place", "delete-node", "move",
                                   "restore-other", "rename"])
def test_handles_of_a_view_keep_reading_the_snapshot(hist: tensordb.Database, change: str) -> None:
    """Dict and list nodes, arrays (and slices of them), scalars: all keep the snapshot's values."""
    with hist.at("raw") as old:
        tree = old["a"]
        data = tree["/data"]
        items = tree["/list"]
        p = tree["/data/p"]
        q = data["q"]
        time = tree["time"]
        later = hist.snapshot("later")
        if change == "set":
            hist["a"]["time"] = 0
            hist["a"]["/data"] = {"other": 1}
            hist["a"]["/list"] = []
        elif change == "delete-tree":
            del hist["a"]
        elif change == "replace-tree":
            hist["a"] = [1, 2]
        elif change == "write-in-place":
            hist["a"]["/data/p"][:] = -5.0
            hist["a"]["/data/q"][0] = 9.0
            hist["a"]["/data/p"].resize((3,))
        elif change == "delete-node":
            del hist["a"]["/data"]
            del hist["a"]["/list/0"]
        elif change == "move":
            hist["a"].move("/data", "/moved")
        elif change == "restore-other":
            hist["a"]["time"] = 0
            hist.restore(later, trees="a")
        elif change == "rename":
            hist.rename("a", "a2")
            hist["a"] = {"fresh": True}
        hist.gc()
        assert time == 51
        assert tree["time"] == 51
        assert sorted(data.keys()) == ["note", "p", "q"]
        assert len(items) == 3 and items[1] == "two" and items[2]["three"] == 3
        assert p.shape == (100,)
        assert_tree_equal(p[0:10], np.arange(10, dtype="f8"))
        assert_tree_equal(p[::7], np.arange(100, dtype="f8")[::7])
        assert_tree_equal(np.asarray(p), np.arange(100, dtype="f8"))
        assert_tree_equal(q[...], np.zeros((4, 3), "f4"))
        assert_tree_equal(tree.load(), sample())
    assert hist.check().ok


@pytest.mark.parametrize("mode", ["r", "a", None])
def test_open_at_gives_the_same_view(hist: tensordb.Database, mode: str | None) -> None:
    hist["a"]["time"] = 0
    kwargs = {} if mode is None else {"mode": mode}
    with tensordb.open(hist.filename, at="raw", **kwargs) as old:
        assert old.readonly and old.mode == "r"
        assert old["a"]["time"] == 51
        assert old.snapshot_shown == hist.tags()["raw"]
        with pytest.raises(tensordb.ReadOnlyError):
            old["a"]["time"] = 1


@pytest.mark.parametrize("mode", ["w", "x", "r+"])
def test_open_at_with_a_writing_mode_raises_and_leaves_the_file(hist: tensordb.Database, mode: str) -> None:
    before = loaded(hist)
    with pytest.raises(ValueError, match="read-only"):
        tensordb.open(hist.filename, mode=mode, at="raw")
    assert_tree_equal(loaded(hist), before)
    assert list(hist.tags()) == ["raw"]


def test_open_at_a_missing_file_fails_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises((FileNotFoundError, tensordb.TensorDBError, OSError)):
        tensordb.open(tmp_path / "none.tdb", at=1)
    assert not (tmp_path / "none.tdb").exists()


def test_a_view_of_a_snapshot_expired_meanwhile_says_so(hist: tensordb.Database) -> None:
    first = hist.snapshot("first")
    hist.snapshot("second")
    view = hist.at(first)
    try:
        hist.expire(before=hist.history()[0])
        with pytest.raises(tensordb.TensorDBError, match="expired"):
            view["no-such-tree"]
    finally:
        view.close()
    with pytest.raises(KeyError):
        hist.at(first)


# -- pickling ----------------------------------------------------------------------------------

def test_pickled_handles_of_a_view_reopen_the_same_snapshot(hist: tensordb.Database) -> None:
    with hist.at("raw") as old:
        handles = [old["a"], old["a"]["/data"], old["a"]["/list"], old["a"]["/data/p"], old["b"]["/x"]]
        payloads = [pickle.dumps(h) for h in handles]
    hist["a"]["/data/p"][:] = -1.0
    hist["a"]["/list"].append("more")
    hist["b"]["/x"][0] = 99
    del hist["a"]["/data/note"]
    tree, data, items, p, x = (pickle.loads(b) for b in payloads)
    assert_tree_equal(tree.load(), sample())
    assert sorted(data.keys()) == ["note", "p", "q"]
    assert len(items) == 3
    assert_tree_equal(p[0:10], np.arange(10, dtype="f8"))
    assert_tree_equal(x[...], np.arange(10))
    assert p._db.snapshot_shown is not None and p._db.snapshot_shown.id == hist.tags()["raw"].id
    with pytest.raises(tensordb.ReadOnlyError):
        p[0:1] = 0


def test_pickled_handles_of_the_current_state_still_read_the_current_state(hist: tensordb.Database) -> None:
    payload = pickle.dumps(hist["a"]["/data/p"])
    hist["a"]["time"] = 3
    current = pickle.loads(payload)
    assert current._db.snapshot_shown is None
    assert_tree_equal(current[0:5], np.arange(5, dtype="f8"))


def test_a_pickled_handle_of_an_expired_snapshot_unpickles_and_fails_when_used(hist: tensordb.Database) -> None:
    first = hist.snapshot("first")
    with hist.at(first) as old:
        payload = pickle.dumps(old["a"]["/data/p"])
    hist.snapshot("second")
    hist.expire(before=hist.history()[0])
    hist.gc()
    handle = pickle.loads(payload)  # must not raise
    with pytest.raises(tensordb.TensorDBError):
        handle[0:3]


# -- diff ------------------------------------------------------------------------------------

def changes(db: tensordb.Database, a: Any, b: Any = None) -> list[tuple[str | None, str, str]]:
    return [(c.tree, c.path, c.kind) for c in db.diff(a, b)]


def test_diff_names_the_highest_changed_paths_in_tree_path_order(hist: tensordb.Database) -> None:
    hist["b"]["y"] = 3
    hist["a"]["time"] = 0
    hist["a"]["/data/new"] = {"deep": {"deeper": 1}}
    del hist["a"]["/list/2"]
    hist["a"]["/data/p"][5] = -1.0
    hist["c"] = {"n": 1}
    assert changes(hist, "raw") == [
        ("a", "/data/new", "added"),
        ("a", "/data/p", "changed"),
        ("a", "/list/2", "removed"),
        ("a", "/time", "changed"),
        ("b", "/y", "changed"),
        ("c", "", "added"),
    ]


def test_diff_of_nothing_changed_is_empty(hist: tensordb.Database) -> None:
    assert hist.diff("raw") == []
    s2 = hist.snapshot()
    assert hist.diff("raw", s2) == []
    # a change undone is no change
    hist["a"]["time"] = 0
    hist["a"]["time"] = 51
    assert hist.diff("raw") == []


def test_a_removed_subtree_is_one_removed_change_at_its_root(hist: tensordb.Database) -> None:
    del hist["a"]["/data"]
    assert changes(hist, "raw") == [("a", "/data", "removed")]


def test_an_added_subtree_is_one_added_change_at_its_root(hist: tensordb.Database) -> None:
    hist["a"]["/extra"] = {"x": {"y": [1, 2, np.arange(3)]}}
    assert changes(hist, "raw") == [("a", "/extra", "added")]


def test_a_tree_only_one_side_has_is_one_change_at_path_empty(hist: tensordb.Database) -> None:
    del hist["b"]
    hist["c"] = sample()
    assert changes(hist, "raw") == [("b", "", "removed"), ("c", "", "added")]
    s2 = hist.snapshot()
    assert changes(hist, "raw", s2) == [("b", "", "removed"), ("c", "", "added")]
    assert changes(hist, s2, "raw") == [("b", "", "added"), ("c", "", "removed")]


def test_a_renamed_tree_shows_as_removed_and_added(hist: tensordb.Database) -> None:
    hist.rename("b", "b2")
    assert changes(hist, "raw") == [("b", "", "removed"), ("b2", "", "added")]


def test_a_moved_subtree_shows_as_removed_and_added(hist: tensordb.Database) -> None:
    hist["a"].move("/data", "/moved")
    assert changes(hist, "raw") == [("a", "/data", "removed"), ("a", "/moved", "added")]


def test_diff_of_two_snapshots(hist: tensordb.Database) -> None:
    hist["a"]["time"] = 1
    s2 = hist.snapshot()
    hist["a"]["time"] = 2
    hist["b"]["y"] = 0
    s3 = hist.snapshot()
    hist["a"]["time"] = 51  # the current state matters to neither
    assert changes(hist, "raw", s2) == [("a", "/time", "changed")]
    assert changes(hist, s2, s3) == [("a", "/time", "changed"), ("b", "/y", "changed")]
    assert changes(hist, "raw", s3) == [("a", "/time", "changed"), ("b", "/y", "changed")]
    assert changes(hist, s3, s3) == []
    assert changes(hist, s2.id, s3.id) == changes(hist, s2, s3)


def test_diff_describes_both_sides(hist: tensordb.Database) -> None:
    hist["a"]["time"] = 0
    (change,) = hist.diff("raw")
    assert isinstance(change, tensordb.Difference)
    assert change.change == change.kind == "changed"
    assert "51" in str(change.a) and "0" in str(change.b)
    assert str(change).startswith("~ a/time")


def test_diff_of_snapshots_sharing_arrays_decodes_no_chunk(db: tensordb.Database) -> None:
    big = np.random.default_rng(0).standard_normal((64, 1000))
    db["m"] = {"pts": big, "t": 0, "other": big * 2}
    s1 = db.snapshot()
    db["m"]["t"] = 1
    db["copy"] = {"pts": db["m"]["/pts"]}  # shares the array
    db.mv("m/other", "m/moved")  # same array under another path
    s2 = db.snapshot()
    before = db.counters.snapshot()
    assert changes(db, s1, s2) == [("copy", "", "added"), ("m", "/moved", "added"), ("m", "/other", "removed"),
                                   ("m", "/t", "changed")]
    assert changes(db, s1) == changes(db, s1, s2)
    assert delta(db, before)["chunks_decoded"] == 0


def test_diff_compares_arrays_by_content_keys(db: tensordb.Database) -> None:
    """A copy-on-write array with one rewritten chunk differs; rewriting the same bytes does not."""
    data = np.arange(40_000, dtype="f8")
    db["m"] = {}
    db["m"].set("/x", data, chunks=(10_000,))
    s1 = db.snapshot()
    db["m"]["/x"][0:10] = data[0:10]  # same bytes: a new array whose chunks are the same content
    assert changes(db, s1) == []
    db["m"]["/x"][10_000] = -1.0
    before = db.counters.snapshot()
    assert changes(db, s1) == [("m", "/x", "changed")]
    assert delta(db, before)["chunks_decoded"] <= 2  # only the chunk whose key differs, on each side


def test_diff_of_two_tree_addresses_still_compares_trees(hist: tensordb.Database) -> None:
    hist["a2"] = sample(time=52)
    got = [(c.path, c.kind) for c in hist.diff("a", "a2")]
    assert got == [("/time", "changed")]
    assert all(c.tree is None for c in hist.diff("a", "a2"))
    assert [(c.path, c.kind) for c in hist.diff("a/data", "a2/data")] == []


def test_diff_refuses_names_that_are_both_trees_and_snapshots(hist: tensordb.Database) -> None:
    hist.snapshot()
    hist.tag("a")  # a tag named like a tree
    with pytest.raises(ValueError, match="both"):
        hist.diff("a", "raw")
    assert changes(hist, hist.tags()["a"], "raw") == []


# -- restore ---------------------------------------------------------------------------------

def test_restore_of_matching_trees_returns_them_by_reference(db: tensordb.Database) -> None:
    for i in range(3):
        db[f"bm01-{i}"] = {"p": np.full(1000, i, "f4"), "v": i}
    db["bm02-0"] = {"p": np.zeros(10), "v": 0}
    raw = db.snapshot()
    for name in list(db):
        db[name]["v"] = -1
        db[name]["/p"][0:10] = 5
    expected = {name: db[name].load() for name in db}
    before = db.counters.snapshot()
    assert db.restore(raw, trees="bm01-*") == ["bm01-0", "bm01-1", "bm01-2"]
    moved = delta(db, before)
    assert moved["chunks_written"] == 0 and moved["chunk_bytes_written"] == 0 and moved["pack_bytes_written"] == 0
    assert moved["chunks_decoded"] == 0
    with db.at(raw) as old:
        for i in range(3):
            assert_tree_equal(db[f"bm01-{i}"].load(), old[f"bm01-{i}"].load())
            assert db[f"bm01-{i}"]["/p"].array_id == old[f"bm01-{i}"]["/p"].array_id  # the same array
    assert_tree_equal(db["bm02-0"].load(), expected["bm02-0"])
    assert db.check().ok


def test_restore_of_the_whole_database_removes_trees_created_since(hist: tensordb.Database) -> None:
    _mutate(hist)
    before = hist.counters.snapshot()
    names = hist.restore("raw")
    assert names == sorted(names) and set(names) == {"a", "a-copy", "b", "b2", "c"}
    assert delta(hist, before)["chunks_written"] == 0
    assert sorted(hist) == ["a", "b"]
    assert_tree_equal(loaded(hist), {"a": sample(), "b": {"x": np.arange(10), "y": 2}})
    assert hist.diff("raw") == []
    assert hist.check().ok


def test_restore_returns_only_the_trees_that_changed(hist: tensordb.Database) -> None:
    assert hist.restore("raw") == []
    hist["a"]["time"] = 0
    assert hist.restore("raw") == ["a"]
    assert hist.restore("raw", trees="nothing-*") == []


@pytest.mark.parametrize("how", ["restored-twice", "change-undone"])
def test_restore_returns_no_tree_whose_content_is_already_the_snapshots(hist: tensordb.Database, how: str) -> None:
    hist["a"]["time"] = 0
    if how == "restored-twice":
        assert hist.restore("raw") == ["a"]
    else:
        hist["a"]["time"] = 51
    assert hist.diff("raw") == []
    assert hist.restore("raw") == []


def test_restore_brings_back_a_deleted_tree_and_deletes_a_created_one(hist: tensordb.Database) -> None:
    del hist["a"]
    hist["new"] = 1
    assert hist.restore("raw", trees="a") == ["a"]
    assert_tree_equal(hist["a"].load(), sample())
    assert "new" in hist
    assert hist.restore("raw", trees="new") == ["new"]
    assert "new" not in hist
    assert hist.check().ok


def test_restore_is_a_transaction(hist: tensordb.Database) -> None:
    hist["a"]["time"] = 0
    hist["c"] = 3

    class Abort(Exception):
        pass

    with pytest.raises(Abort), hist.transaction():
        hist.restore("raw")
        assert "c" not in hist and hist["a"]["time"] == 51
        raise Abort
    assert hist["a"]["time"] == 0 and hist["c"].load() == 3
    assert hist.check().ok


def test_restored_trees_are_independent_of_the_snapshot(hist: tensordb.Database) -> None:
    hist["a"]["/data/p"][0] = -1.0
    hist.restore("raw")
    hist["a"]["/data/p"][0:5] = 42.0  # copy-on-write: the snapshot keeps its values
    hist["a"]["/list"].append("x")
    with hist.at("raw") as old:
        assert_tree_equal(old["a"].load(), sample())
    assert hist["a"]["/data/p"][0] == 42.0
    assert hist.check().ok


def test_a_restore_then_a_snapshot_then_more_changes(hist: tensordb.Database) -> None:
    hist["a"]["time"] = 1
    s2 = hist.snapshot()
    hist.restore("raw")
    s3 = hist.snapshot()
    hist["a"]["time"] = 3
    with hist.at(s2) as v2, hist.at(s3) as v3:
        assert v2["a"]["time"] == 1 and v3["a"]["time"] == 51
    assert changes(hist, "raw", s3) == []
    assert hist.check().ok


# -- expire and gc ---------------------------------------------------------------------------

def test_gc_never_frees_what_a_snapshot_reaches(db: tensordb.Database) -> None:
    db["a"] = {"big": np.arange(50_000, dtype="f8"), "small": np.arange(5)}
    s1 = db.snapshot()
    db["a"]["/big"][0:100] = -1
    del db["a"]["/small"]
    s2 = db.snapshot()
    del db["a"]
    stats = db.gc()
    assert stats["arrays_removed"] == 0 and stats["chunks_removed"] == 0
    with db.at(s1) as v1, db.at(s2) as v2:
        assert_tree_equal(v1["a"].load(), {"big": np.arange(50_000, dtype="f8"), "small": np.arange(5)})
        expected = np.arange(50_000, dtype="f8")
        expected[:100] = -1
        assert_tree_equal(v2["a"].load(), {"big": expected})
    assert db.check().ok


def test_expire_forgets_untagged_older_snapshots_and_gc_then_frees_their_data(db: tensordb.Database) -> None:
    rng = np.random.default_rng(1)
    db["a"] = {"x": rng.standard_normal(10_000)}
    s1 = db.snapshot("one")
    db["a"] = {"x": rng.standard_normal(10_000)}
    s2 = db.snapshot("two")
    db.tag("keep", s2)
    db["a"] = {"x": rng.standard_normal(10_000)}
    s3 = db.snapshot("three")
    db["a"] = {"x": rng.standard_normal(10_000)}
    s4 = db.snapshot("four")
    current = db["a"].load()
    with db.at(s2) as v:
        kept = v["a"].load()
    with db.at(s4) as v:
        newest = v["a"].load()
    assert db.expire(before=s4) == 2  # s1 and s3; s2 is tagged
    assert [s.id for s in db.history()] == [s4.id, s2.id]
    assert db.history()[0].parent_id == s2.id and db.history()[1].parent_id is None
    for gone in (s1, s3):
        with pytest.raises(KeyError):
            db.at(gone)
    stats = db.gc()
    assert stats["arrays_removed"] == 2 and stats["chunks_removed"] >= 2
    with db.at("keep") as v:
        assert_tree_equal(v["a"].load(), kept)
    with db.at(s4) as v:
        assert_tree_equal(v["a"].load(), newest)
    assert_tree_equal(db["a"].load(), current)
    assert db.check().ok
    assert db.expire(before=s4) == 0


def test_expire_of_everything_but_the_latest_then_gc_keeps_the_current_state(hist: tensordb.Database) -> None:
    _mutate(hist)
    last = hist.snapshot()
    hist.untag("raw")
    assert hist.expire(before=last) == 1
    hist.gc()
    assert [s.id for s in hist.history()] == [last.id]
    current = loaded(hist)
    hist.expire(before=last)
    assert_tree_equal(loaded(hist), current)
    with hist.at(last) as v:
        assert_tree_equal(loaded(v), current)
    assert hist.check().ok


def test_expire_in_a_rolled_back_transaction_changes_nothing(hist: tensordb.Database) -> None:
    hist.untag("raw")
    last = hist.snapshot()
    with pytest.raises(RuntimeError), hist.transaction():
        assert hist.expire(before=last) == 1
        raise RuntimeError
    assert len(hist.history()) == 2
    assert hist.check().ok


def test_history_survives_reopening(hist: tensordb.Database, db_path: Path) -> None:
    hist["a"]["time"] = 0
    hist.snapshot("second")
    tags, history = hist.tags(), hist.history()
    hist.close()
    with tensordb.open(db_path) as again:
        assert again.tags() == tags and again.history() == history
        with again.at("raw") as old:
            assert old["a"]["time"] == 51
        assert again.check().ok


def test_check_is_clean_after_a_mixed_history(hist: tensordb.Database) -> None:
    _mutate(hist)
    for i in range(3):
        hist["a"]["time"] = i
        hist[f"t{i}"] = {"arr": np.arange(100) * i}
        hist.snapshot(f"s{i}")
        hist.restore("raw", trees="a")
    hist.expire(before=hist.history()[1])
    hist.gc()
    report = hist.check()
    assert report.ok, report.findings
    assert not report.findings, report.findings


# -- handles of a view in the current state; bundles --------------------------------------------

def test_assigning_handles_of_a_view_stores_the_snapshots_values(hist: tensordb.Database) -> None:
    hist["a"]["/data/p"][0:5] = -1.0
    hist["a"]["time"] = 0
    before = hist.counters.snapshot()
    with hist.at("raw") as old:
        hist["back"] = old["a"]
        hist["a"]["/old-data"] = old["a"]["/data"]
        hist["a"]["/old-p"] = old["a"]["/data/p"]
    assert delta(hist, before)["chunks_written"] == 0  # identical chunks: stored once
    assert_tree_equal(hist["back"].load(), sample())
    assert_tree_equal(hist["a"]["/old-data"].load(), sample()["data"])
    assert_tree_equal(hist["a"]["/old-p"][...], np.arange(100, dtype="f8"))
    hist["back"]["/data/p"][0] = 7.0
    with hist.at("raw") as old:
        assert_tree_equal(old["a"].load(), sample())
    assert hist.check().ok


def test_assigning_an_array_of_a_view_stores_it_by_reference(hist: tensordb.Database) -> None:
    hist["a"]["/data/p"][0:5] = -1.0
    before = hist.counters.snapshot()
    with hist.at("raw") as old:
        hist["a"]["/old-p"] = old["a"]["/data/p"]
        assert hist["a"]["/old-p"].array_id == old["a"]["/data/p"].array_id
    moved = delta(hist, before)
    assert moved["chunks_decoded"] == 0 and moved["chunks_deduplicated"] == 0


@pytest.mark.parametrize("history", [False, True])
def test_a_bundle_carries_history_only_when_asked(hist: tensordb.Database, tmp_path: Path, history: bool) -> None:
    hist["a"]["/data/p"][0:5] = -1.0
    del hist["b"]
    hist.snapshot("second")
    hist["c"] = {"new": np.arange(3)}
    current = loaded(hist)
    target = tmp_path / "share.tdb"
    hist.bundle(target, history=history)
    with tensordb.open(target, mode="r") as copy:
        assert_tree_equal(loaded(copy), current)
        assert copy.check().ok and not copy.check().findings
        if history:
            assert copy.history() == hist.history() and copy.tags() == hist.tags()
            with copy.at("raw") as old:
                assert_tree_equal(loaded(old), {"a": sample(), "b": {"x": np.arange(10), "y": 2}})
        else:
            assert copy.history() == [] and copy.tags() == {}
            assert copy.stats()["arrays"] == len(list(copy.sql("SELECT 1 FROM arrays")))


def test_handles_of_the_current_state_after_a_restore(hist: tensordb.Database) -> None:
    """A Tree handle reads the restored tree; node and array handles of the replaced rows say they are stale."""
    tree, data, p = hist["a"], hist["a"]["/data"], hist["a"]["/data/p"]
    hist["a"]["/data/p"][0] = -1.0
    hist["a"]["/data/note"] = "changed"
    hist.restore("raw")
    assert_tree_equal(tree.load(), sample())
    for use in (lambda: data.load(), lambda: p[0:3], lambda: p.__setitem__(0, 5.0)):
        with pytest.raises(tensordb.StaleHandleError):
            use()
    assert_tree_equal(hist["a"].load(), sample())
    assert hist.check().ok


@pytest.mark.parametrize("write", ["resize", "append", "whole", "create_array", "set-with-codec"])
def test_the_first_write_after_a_snapshot_never_changes_the_snapshots_array(db: tensordb.Database,
                                                                            write: str) -> None:
    db["t"] = {"p": np.arange(10.0)}
    snap = db.snapshot()
    handle = db["t"]["/p"]
    if write == "resize":
        handle.resize((3,))
    elif write == "append":
        handle.append(np.ones(2), axis=0)
    elif write == "whole":
        handle[...] = 9.0
    elif write == "create_array":
        db["t"].create_array("/p", shape=(4,), dtype="f8", fill_value=1)
    else:
        db["t"].set("/p", np.zeros(3), codec=tensordb.Codec("zstd", level=5, shuffle="bit"))
    with db.at(snap) as old:
        assert_tree_equal(old["t"]["/p"][...], np.arange(10.0))
    assert db.check().ok


ROOTS = [5, "text", None, [], {}, [1, [2, {"x": np.arange(3)}]], np.arange(6).reshape(2, 3), b"bytes", 2**80]


@pytest.mark.parametrize("before", ROOTS, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("after", [7, {"k": np.zeros(2)}, [None]], ids=lambda v: type(v).__name__)
def test_roots_of_every_kind_through_snapshot_diff_and_restore(db: tensordb.Database, before: Any,
                                                                after: Any) -> None:
    db["r"] = before
    snap = db.snapshot()
    db["r"] = after
    with db.at(snap) as old:
        assert_tree_equal(old["r"].load(), before)
    found = db.diff(snap)
    assert found and all(c.tree == "r" for c in found)
    assert db.restore(snap) == ["r"]
    assert_tree_equal(db["r"].load(), before)
    assert db.diff(snap) == []
    assert db.check().ok


def _history_rows(path: str) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (con.execute("SELECT count(*) FROM tree_history").fetchone()[0],
                con.execute("SELECT count(*) FROM node_history").fetchone()[0])
    finally:
        con.close()


def test_a_snapshot_costs_one_row_and_a_change_keeps_only_what_changed(db: tensordb.Database) -> None:
    db["big"] = {f"k{i}": {"v": i, "arr": np.full(3, i)} for i in range(300)}
    db["other"] = {"v": 1}
    nodes = sum(1 for _ in db.sql("SELECT 1 FROM nodes"))
    db.snapshot()
    assert _history_rows(db.filename) == (0, 0)
    db["big"]["/k7/v"] = -1
    trees, kept = _history_rows(db.filename)
    assert trees <= 1 and kept == 1  # the old version of /k7/v (and of the tree row, whose modified time changed)
    db["big"]["/k7/v"] = -2  # a second change of the same row in the same epoch keeps nothing more
    db["big"]["/k8/arr"][0] = 5  # copy-on-write: the node now names a new array
    assert _history_rows(db.filename)[1] == 2
    db.snapshot()
    assert sum(1 for _ in db.sql("SELECT 1 FROM nodes")) == nodes
    assert db.check().ok
