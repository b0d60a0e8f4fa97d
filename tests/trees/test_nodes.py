"""The node table: glob SQL (pure), inserting and copying subtrees, the statements of many-tree edits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tensordb
from tensordb.arrays.store import ArrayStore
from tensordb.storage.store import Store
from tensordb.trees.catalog import TreeCatalog
from tensordb.trees.nodes import ManyTrees, NodeTable, glob_sql


@pytest.mark.parametrize(("pattern", "matches", "misses"), [
    ("/data/*/points", ["/data/inlet/points"], ["/data/points", "/data/a/b/points"]),
    ("/data/**/points", ["/data/points", "/data/a/b/points"], ["/other/points"]),
    ("/a[1]?", ["/a[1]?"], ["/a1x"]),
    ("", [""], ["/a"]),
])
def test_glob_patterns_match_whole_segments(pattern: str, matches: list[str], misses: list[str]) -> None:
    sql, params, exact = glob_sql(pattern, trees="bm01-*")
    assert "t.name GLOB ?" in sql and params[-1] == "bm01-*"
    assert all(exact.fullmatch(p) for p in matches) and not any(exact.fullmatch(p) for p in misses)


def test_glob_patterns_are_pointers() -> None:
    with pytest.raises(ValueError, match="glob patterns are JSON Pointers"):
        glob_sql("data/*", None)


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[tuple[Store, TreeCatalog, NodeTable]]:
    store = Store(str(tmp_path / "n.tdb"), "a")
    arrays = ArrayStore(store)
    yield store, TreeCatalog(store.conn), NodeTable(store.conn, lambda: arrays)
    store.close()


def test_a_subtree_is_inserted_copied_and_moved_as_rows(tables: tuple[Store, TreeCatalog, NodeTable]) -> None:
    store, catalog, nodes = tables
    with store.transaction():
        a, b = catalog.create("a"), catalog.create("b")
        for tree in (a, b):
            nodes.insert(nodes.prepare({"d": {}}), tree, None, "", None, 0)
        d = nodes.row_at(a, "/d")
        assert d is not None
        nodes.insert(nodes.prepare({"x": np.arange(3), "y": [1]}, "/d/s"), a, d.node_id, "/d/s", "s", 0)
        copy = nodes.copy_subtree(a, "/d/s", b, "/s", nodes.row_at(b, "").node_id, "s", 1)  # type: ignore[union-attr]
    assert [r.path for r in nodes.subtree(b, "/s")] == ["/s", "/s/x", "/s/y", "/s/y/0"]
    assert nodes.row(copy).key == "s"  # type: ignore[union-attr]
    assert store.conn.scalar("SELECT refcount FROM array") == 2  # the copy references the same array
    with store.transaction():
        ManyTrees(store.conn).rewrite_prefixes([a, b], "/d/s", "/d/t")  # b has no /d/s: left alone
    assert [r.path for r in nodes.subtree(a, "/d")] == ["/d", "/d/t", "/d/t/x", "/d/t/y", "/d/t/y/0"]
    assert [(name, row.path) for name, row in nodes.glob("/**/x")] == [("a", "/d/t/x"), ("b", "/s/x")]


def test_values_from_another_database_are_copied_in(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "1.tdb") as one, tensordb.open(tmp_path / "2.tdb") as two:
        one["t"] = {"p": np.arange(5), "d": {"q": [1]}}
        two["t"] = {"d": one["t"]["d"], "p": one["t"]["p"]}
        assert two["t"].load()["d"] == {"q": [1]} and list(two["t"]["p"][:]) == [0, 1, 2, 3, 4]
        assert two.check().ok


def test_a_write_failing_after_its_node_rows_leaves_nothing(tmp_path: Path) -> None:
    """A tree's chunks are stored after its node rows (the pool compresses them meanwhile): a failure
    there undoes the whole write, node rows included, and what was stored before stays."""
    from tensordb.storage import hooks

    def fail_at_compress(step: str) -> None:
        if step == "compress":
            raise OSError("no space left on device")

    kept = {"a": np.arange(50_000, dtype="f4"), "n": 1}
    with tensordb.open(tmp_path / "f.tdb") as db:
        db["kept"] = kept
    previous = hooks.install(hooks.installed()._replace(trace=fail_at_compress))
    try:
        with tensordb.open(tmp_path / "f.tdb") as db, pytest.raises(OSError, match="no space"):
            db["new"] = {"b": np.arange(60_000, dtype="f8"), "c": [np.ones(7), np.zeros(300)], "s": "x"}
    finally:
        hooks.install(previous)
    with tensordb.open(tmp_path / "f.tdb") as db:
        assert list(db) == ["kept"]
        assert np.array_equal(db["kept"]["a"][...], kept["a"]) and db["kept"]["n"] == 1
        assert db.sql("SELECT count(*) FROM node WHERE tree_id NOT IN (SELECT tree_id FROM tree)").fetchall() == [(0,)]
        assert db.check().ok
