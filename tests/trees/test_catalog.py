"""The tree table: names, ids, roots and stamps, on a bare storage Store (no Database, no numpy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tensordb.errors import CorruptionError
from tensordb.storage.store import Store
from tensordb.trees.catalog import TreeCatalog


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "c.tdb"), "a")
    yield s
    s.close()


def _stamps(store: Store, tree_id: int) -> tuple[str, str]:
    created, modified = store.conn.one("SELECT created, modified FROM tree WHERE tree_id = ?", (tree_id,))
    return created, modified


def test_trees_are_created_listed_renamed_and_deleted(store: Store) -> None:
    catalog = TreeCatalog(store.conn)
    with store.transaction():
        a, b = catalog.create("a"), catalog.create("sim/b")
    assert catalog.names() == ["a", "sim/b"] and catalog.count() == 2
    assert catalog.id_of("a") == a and catalog.name_of(b) == "sim/b" and catalog.id_of("z") is None
    assert catalog.existing(["sim/b/x", "sim/b", "sim", "a"]) == {"sim/b", "a"}
    with store.transaction():
        catalog.rename(a, "c")
        catalog.delete(b)
    assert catalog.names() == ["c"] and catalog.name_of(b) is None and catalog.id_of("a") is None
    with pytest.raises(TypeError, match="tree names are str"):
        catalog.id_of(3)  # type: ignore[arg-type]


def test_roots_and_edits_stamp_the_tree(store: Store) -> None:
    catalog = TreeCatalog(store.conn)
    with store.transaction():
        a, b = catalog.create("a"), catalog.create("b")
    created, modified = _stamps(store, a)
    assert created == modified and created.endswith("Z")
    store.conn.execute("UPDATE tree SET modified = '2000-01-01T00:00:00.000Z'")
    with store.transaction():
        catalog.set_root(a, 7)
    assert store.conn.scalar("SELECT root_id FROM tree WHERE tree_id = ?", (a,)) == 7
    assert _stamps(store, a)[1] > "2000" and _stamps(store, b)[1].startswith("2000")
    with store.transaction():
        catalog.touch_many([b])
    assert _stamps(store, b)[1] > "2000"


def test_a_tree_name_that_is_not_text_is_corruption(store: Store) -> None:
    store.conn.execute("INSERT INTO tree(name, created, modified) VALUES (x'00ff', 'x', 'x')")
    with pytest.raises(CorruptionError, match="not text"):
        TreeCatalog(store.conn).names()
