"""keys(), values() and items() of dict nodes and dict-rooted trees: live views, like a dict's."""

from __future__ import annotations

from collections.abc import ItemsView, KeysView, ValuesView
from pathlib import Path

import numpy as np

import tensordb


def test_keys_values_and_items_are_live_views(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "v.tdb") as db:
        db["t"] = {"d": {"a": 1, "b": [2], "c": np.arange(3)}}
        node = db["t"]["d"]
        keys, values, items = node.keys(), node.values(), node.items()
        assert isinstance(keys, KeysView) and isinstance(values, ValuesView) and isinstance(items, ItemsView)
        assert list(keys) == ["a", "b", "c"] and len(keys) == 3 and "a" in keys and "z" not in keys
        assert keys == {"a", "b", "c"} and keys & {"a", "z"} == {"a"} and keys != ["a", "b", "c"]
        assert ("a", 1) in items and ("a", 2) not in items and ("z", 1) not in items and 1 in values
        assert [k for k, _ in items] == list(keys) and isinstance(list(values)[1], tensordb.ListNode)
        node["e"] = "new"  # the views read the current children
        del node["a"]
        assert list(keys) == ["b", "c", "e"] and len(values) == 3 and ("e", "new") in items
        assert repr(keys) == "NodeKeysView(['b', 'c', 'e'])"
        for k1, k2, (k3, v3), v in zip(keys, node, items, values):
            assert k1 == k2 == k3 and type(v) is type(v3)


def test_a_trees_views_follow_its_root(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "t.tdb") as db:
        db["t"] = {"a": 1}
        keys = db["t"].keys()
        db["t"] = {"b": 2, "c": 3}  # the same tree, another root dict
        assert keys == {"b", "c"} and list(db["t"].items()) == [("b", 2), ("c", 3)]
        assert list(db["t"].values()) == [2, 3]
