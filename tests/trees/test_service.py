"""The tree service works from what it is given: a storage Store and a host holding its ArrayStore."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tensordb.arrays.store import ArrayStore
from tensordb.errors import PathNotFoundError, ReadOnlyError
from tensordb.storage.store import Store
from tensordb.trees.nodes import SubtreeRef
from tensordb.trees.service import TreeService


class Host:
    """The least an Array handle needs from its database."""

    def __init__(self, store: Store, arrays: ArrayStore) -> None:
        self.filename, self.readonly, self.arrays, self._store = store.filename, store.readonly, arrays, store

    def transaction(self) -> AbstractContextManager[None]:
        return self._store.transaction()

    def _reopen_state(self) -> Any:
        return (self.filename,)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[TreeService]:
    store = Store(str(tmp_path / "s.tdb"), "a")
    arrays = ArrayStore(store)
    yield TreeService(store, Host(store, arrays))
    store.close()


def test_trees_are_assigned_edited_and_loaded_without_a_database(service: TreeService) -> None:
    tree = service.assign("t", {"a": {"b": 1}, "l": [1, 2], "p": np.arange(4)})
    assert service.assign("t", {"a": {"b": 2}, "l": [1, 2], "p": np.arange(4)}) == tree  # replaced in place
    service.move(tree, "/a", "/l/0")
    service.insert_item(service.require(tree, "/l"), -1, "x")
    service.delete(tree, "/l/1")
    loaded = service.load(tree, "", lazy=False)
    assert list(loaded) == ["l", "p"] and loaded["l"] == [{"b": 2}, "x", 2]
    handle = service.load(tree, "/p", lazy=True)
    np.testing.assert_array_equal(handle[1:], [1, 2, 3])
    handle[0] = 10  # through its owner node: the service's NodeOwner
    assert service.load(tree, "/p", lazy=False)[0] == 10
    with pytest.raises(PathNotFoundError):
        service.load(tree, "/a", lazy=False)


def test_a_subtree_ref_shares_arrays_between_trees(service: TreeService) -> None:
    a = service.assign("a", {"m": {"p": np.arange(1000)}})
    b = service.assign("b", {})
    service.set(b, "/m", SubtreeRef(service.nodes, a, "/m"))
    assert service.conn.scalar("SELECT count(*) FROM array") == 1
    np.testing.assert_array_equal(service.load(b, "/m/p", lazy=False), np.arange(1000))
    service.delete_tree(a)
    assert service.catalog.names() == ["b"] and service.nodes.count_in_tree(a) == 0


def test_a_read_only_store_refuses_edits(tmp_path: Path) -> None:
    Store(str(tmp_path / "r.tdb"), "a").close()
    store = Store(str(tmp_path / "r.tdb"), "r")
    arrays = ArrayStore(store)
    with pytest.raises(ReadOnlyError, match="r.tdb: database is open read-only"):
        TreeService(store, Host(store, arrays)).assign("t", 1)
    store.close()
