"""Tree and Node handles: indexing rules, mapping and sequence protocols."""

from __future__ import annotations

from pathlib import Path

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
