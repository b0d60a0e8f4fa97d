"""The tree table: the named trees of a database, their root node ids and their stamps.

This module owns every statement that creates, renames, deletes, lists or
stamps a tree; :mod:`.nodes` owns the rows of the trees themselves.
Errors are raised bare: the database adds the file name.

Example
-------
>>> catalog = TreeCatalog(store.conn)
>>> tree_id = catalog.create("sample037")
>>> catalog.id_of("sample037") == tree_id
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..errors import CorruptionError
from ..storage.connection import Connection

__all__ = ["TreeCatalog"]

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


class TreeCatalog:
    """Statements on the ``tree`` table of one database."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- reading -----------------------------------------------------------------

    def id_of(self, name: str) -> int | None:
        """The id of the tree named ``name`` (None if there is none)."""
        if not isinstance(name, str):
            raise TypeError(f"tree names are str, got {type(name).__name__}")
        found = self.conn.scalar("SELECT tree_id FROM tree WHERE name = ?", (name,))
        return None if found is None else int(found)

    def name_of(self, tree_id: int) -> str | None:
        """The name of a tree (None if it was deleted)."""
        name = self.conn.scalar("SELECT name FROM tree WHERE tree_id = ?", (tree_id,))
        return None if name is None else str(name)

    def names(self) -> list[str]:
        """Every tree name, in creation order."""
        names = self.conn.execute("SELECT name FROM tree ORDER BY tree_id").fetchall()
        if not all(type(n) is str for (n,) in names):
            raise CorruptionError("a tree name is not text")
        return [n for (n,) in names]

    def count(self) -> int:
        return int(self.conn.scalar("SELECT count(*) FROM tree"))

    def existing(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` that name a tree (one query)."""
        wanted = list(names)
        marks = ",".join("?" * len(wanted))
        rows = self.conn.execute(f"SELECT name FROM tree WHERE name IN ({marks})", tuple(wanted)).fetchall()
        return {name for (name,) in rows}

    # -- writing -----------------------------------------------------------------

    def create(self, name: str) -> int:
        """Insert a tree without a root yet; returns its id."""
        self.conn.execute(f"INSERT INTO tree(name, created, modified) VALUES (?, {_NOW}, {_NOW})", (name,))
        return self.conn.last_insert_rowid()

    def rename(self, tree_id: int, name: str) -> None:
        self.conn.execute(f"UPDATE tree SET name = ?, modified = {_NOW} WHERE tree_id = ?", (name, tree_id))

    def delete(self, tree_id: int) -> None:
        """Delete the tree row (its node rows go first: :meth:`NodeTable.delete_tree`)."""
        self.conn.execute("DELETE FROM tree WHERE tree_id = ?", (tree_id,))

    def set_root(self, tree_id: int, root_id: int, created: str | None = None) -> None:
        """Point a tree at its root node (``created``: also restore the creation stamp)."""
        self.conn.execute(f"UPDATE tree SET root_id = ?, created = coalesce(?, created), modified = {_NOW} "
                          "WHERE tree_id = ?", (root_id, created, tree_id))

    def touch(self, tree_id: int) -> None:
        """Stamp a tree as modified now."""
        self.conn.execute(f"UPDATE tree SET modified = {_NOW} WHERE tree_id = ?", (tree_id,))

    def touch_many(self, tree_ids: list[int]) -> None:
        """:meth:`touch` for many trees, one statement."""
        self.conn.execute(
            f"UPDATE tree SET modified = {_NOW} WHERE tree_id IN (SELECT value FROM json_each(?))",
            (json.dumps(tree_ids),),
        )
