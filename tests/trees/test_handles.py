"""Tree and Node handles: indexing rules, mapping and sequence protocols, the Tree as its root."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import tensordb


def test_keys_that_look_like_pointers_read_back_through_the_mapping(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "k.tdb") as db:
        db["t"] = {"d": {"/": 1, "~": 2, "a/b": 3, "/x": 4}}
        node = db["t"]["d"]
        assert list(node) == ["/", "~", "a/b", "/x"]
        assert {k: node[k] for k in node} == {"/": 1, "~": 2, "a/b": 3, "/x": 4}
        assert all(k in node for k in node)
        assert db["t"]["/d/a~1b"] == 3 and db["t"]["/d/~0"] == 2 and db["t"]["/d/~1x"] == 4
        del node["/x"]  # the literal key: there is no key "x"
        assert list(node) == ["/", "~", "a/b"]


def test_pointer_beats_literal_key_when_both_exist(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "k.tdb") as db:
        db["t"] = {"": "empty key", "/": "slash key"}
        root = db["t"].root
        assert root["/"] == "empty key"  # "/" is the JSON Pointer to the key ""
        assert root["/~1"] == "slash key"
        assert root[""] == root  # "" designates the node itself
        assert db["t"][""]["/"] == "empty key"


def test_list_nodes_are_mutable_sequences(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "l.tdb") as db:
        db["t"] = {"l": [1, 2, 3]}
        items = db["t"]["l"]
        items.append(4)
        items.insert(0, 0)
        items.insert(-1, 3.5)
        del items[1]
        items[-1] = "last"
        assert items.load() == [0, 2, 3, 3.5, "last"]
        assert items[1:3] == [2, 3] and items[-2] == 3.5 and len(items) == 5
        assert 3.5 in items and items.index(3) == 2
        items.extend([7, 8])
        assert items.pop() == 8
        with pytest.raises(IndexError):
            items[10]
        with pytest.raises(TypeError):
            db["t"]["l"]["x"] = 1
        assert db.check().ok


def test_missing_paths_name_file_tree_and_path(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "m.tdb") as db:
        db["run"] = {"data": {}}
        with pytest.raises(KeyError) as info:
            db["run"]["/data/points"]
        message = str(info.value)
        assert "m.tdb" in message and "run" in message and "/data/points" in message
        with pytest.raises(KeyError, match="no tree named 'nope'"):
            db["nope"]


def test_node_handles_are_equal_when_they_designate_the_same_node(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "eq.tdb") as db:
        db["t"] = {"d": {"a": 1}, "l": [1, 2], "e": {"a": 1}}
        db["u"] = {"d": {"a": 1}}
        tree = db["t"]
        assert tree["d"] == db["t"]["/d"] and tree["l"] == tree["l"]
        assert hash(tree["d"]) == hash(db["t"]["d"]) and {tree["d"]: 1}[db["t"]["/d"]] == 1
        assert tree["d"] != tree["e"]  # same content, another path
        assert tree["d"] != db["u"]["d"]  # same path, another tree
        assert tree["d"] != {"a": 1} and tree["l"] != [1, 2]
        node = tree["d"]
        tree.move("/d", "/moved")
        assert node == tree["moved"] and node != tree["e"]
        with tensordb.open(tmp_path / "eq.tdb", mode="r") as other:
            assert other["t"]["moved"] != node  # another database handle


def test_notebook_reprs_are_collapsed_trees_and_tables(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "html.tdb") as db:
        db["t<&>"] = {"points": np.zeros((4, 3), "f4"), "mesh": {"kind": "<b>"}, "steps": list(range(60))}
        db["leaf"] = 5
        page = db["t<&>"]._repr_html_()
        assert page.startswith("<details><summary>tensordb.Tree &quot;t&lt;&amp;&gt;&quot;: dict of 3 items</summary>")
        assert "<td>points</td><td>array</td><td>(4, 3) float32, 48 B</td>" in page
        assert "<td>mesh</td><td>dict</td><td>1 items</td>" in page and "<b>" not in page.replace("<b>tensordb", "")
        steps = db["t<&>"]["steps"]._repr_html_()
        assert steps.count("<tr>") == 51 and "… 10 more" in steps  # header and 50 rows
        assert "<td>int</td><td>5</td>" in db["leaf"]._repr_html_()


def test_a_tree_shares_the_container_api_of_its_root(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "r.tdb") as db:
        db["t"] = {"a": {"b": 1}, "l": [1]}
        tree = db["t"]
        assert isinstance(tree, tensordb.Tree) and not isinstance(tree, tensordb.Node)
        assert list(tree.keys()) == ["a", "l"] and tree.keys() == tree.root.keys()
        assert dict(tree.items())["a"] == tree["a"] and len(tree.values()) == 2
        assert tree["a"]["b"] == tree["/a/b"] == 1 and "a" in tree and len(tree) == 2 and list(tree) == ["a", "l"]
        with pytest.raises(TypeError, match="not a list"):
            tree.append(1)
        tree[""] = [1, 2, 3]  # the handle follows the replaced root; a Node handle would be stale
        assert tree.kind == "list" and list(tree) == [1, 2, 3] and tree[1:] == [2, 3] and 3 in tree
        tree.append(4)
        tree.insert(0, 0)
        assert tree.load() == [0, 1, 2, 3, 4] and tree[-1] == 4
        with pytest.raises(TypeError, match="not a dict"):
            tree.keys()
        db["s"] = 5  # a single value: indexing "" only
        assert db["s"][""] == 5 and db["s"].load() == 5 and db["s"].root == 5
        with pytest.raises(TypeError, match="single int"):
            db["s"]["x"]
        with pytest.raises(TypeError):
            len(db["s"])


def test_trees_and_nodes_pickle_and_reopen_read_only(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "p.tdb") as db:
        db["t"] = {"a": {"b": [1, 2]}}
        tree, node = pickle.loads(pickle.dumps(db["t"])), pickle.loads(pickle.dumps(db["t"]["/a/b"]))
        assert list(tree.keys()) == ["a"] and tree.load() == {"a": {"b": [1, 2]}} and list(node) == [1, 2]
        with pytest.raises(tensordb.ReadOnlyError):
            node.append(3)


@pytest.mark.parametrize("key", ["time", "/time", "/data/x", "/data/items/1"])
def test_a_tree_reads_a_key_or_a_pointer_with_one_statement(db: tensordb.Database, key: str) -> None:
    db["t"] = {"time": 1.5, "data": {"x": "a", "items": [1, 2]}}
    tree = db["t"]
    seen: list[str] = []
    raw = db._store.conn.conn
    raw.exec_trace = lambda _cursor, sql, _bindings: seen.append(sql) or True
    try:
        value = tree[key]
    finally:
        raw.exec_trace = None
    assert value == {"time": 1.5, "/time": 1.5, "/data/x": "a", "/data/items/1": 2}[key]
    assert len(seen) == 1, seen


@pytest.mark.parametrize(("root", "key", "expected"), [
    ({"/x": 1}, "/x", 1),  # a pointer that designates nothing falls back to the literal key
    ({"x": {"y": 2}, "x/y": 3}, "x/y", 3),  # a key with a slash is a key, not a pointer
    ({"a~b": 4}, "a~b", 4),
    ({"7": 5}, "7", 5),  # a digit key of a dict root
])
def test_keys_that_one_query_cannot_resolve_still_resolve(db: tensordb.Database, root: dict[str, object],
                                                          key: str, expected: object) -> None:
    db["t"] = root
    assert db["t"][key] == expected
