"""Operations on the node table: insert a value, copy a subtree by reference, delete, move.

Paths are materialised in ``node.path``, so a subtree is one index range
(``path = P OR P || '/' <= path < P || '0'``). Moving or copying a subtree
rewrites at most one row per node and never touches array data: copied
array nodes reference the same array ids (the triggers count the new
references).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..arrays.array import Array, ArrayStore
from ..codec import Codec
from ..errors import PathNotFoundError
from ..storage.connection import Connection
from . import paths
from .values import NodeSpec, flatten

__all__ = ["NodeRow", "NodeTable", "SubtreeHandle", "ArrayIdRef", "NODE_COLUMNS"]

NODE_COLUMNS = "node_id, tree_id, parent_id, path, key, pos, kind, value, exact, dtype, array_id"
_INSERT = f"INSERT INTO node({NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_IN_SUBTREE = "(path = ? OR (path >= ? AND path < ?))"
# Paths of real nodes are "" or start with "/": this prefix can never collide.
_SCRATCH = "\x01"


class NodeRow(NamedTuple):
    """One row of the node table (a tuple: built for every row a query returns)."""

    node_id: int
    tree_id: int
    parent_id: Any
    path: str
    key: str | None
    pos: int
    kind: str
    value: Any
    exact: Any
    dtype: str | None
    array_id: Any


@dataclass(frozen=True)
class ArrayIdRef:
    """A stored array to reference by id (used by create_array)."""

    array_id: int


class SubtreeHandle(ABC):
    """Base of handles (Node, Tree) that can be assigned elsewhere by reference."""

    __slots__ = ()

    @abstractmethod
    def _subtree_ref(self) -> tuple[Any, int, str]:
        """(database, tree id, path) of the subtree this handle designates."""


def _nbytes(text: str) -> int:
    # Paths are cut as bytes: SQLite's text functions stop at a NUL, and keys may hold one.
    return len(text.encode("utf-8"))


def _subtree_params(path: str) -> tuple[str, str, str]:
    lo, hi = paths.subtree_bounds(path)
    return path, lo, hi


class NodeTable:
    """Node-table operations for one database."""

    def __init__(self, db: Any, conn: Connection, arrays: ArrayStore) -> None:
        self.db = db
        self.conn = conn
        self.arrays = arrays

    # -- reading -----------------------------------------------------------------

    def row(self, node_id: int) -> NodeRow | None:
        found = self.conn.one(f"SELECT {NODE_COLUMNS} FROM node WHERE node_id = ?", (node_id,))
        return NodeRow(*found) if found else None

    def row_at(self, tree_id: int, path: str) -> NodeRow | None:
        found = self.conn.one(f"SELECT {NODE_COLUMNS} FROM node WHERE tree_id = ? AND path = ?", (tree_id, path))
        return NodeRow(*found) if found else None

    def children(self, node_id: int) -> list[NodeRow]:
        cursor = self.conn.execute(f"SELECT {NODE_COLUMNS} FROM node WHERE parent_id = ? ORDER BY pos", (node_id,))
        return [NodeRow(*r) for r in cursor]

    def count_children(self, node_id: int) -> int:
        return int(self.conn.scalar("SELECT count(*) FROM node WHERE parent_id = ?", (node_id,)))

    def subtree(self, tree_id: int, path: str) -> list[NodeRow]:
        cursor = self.conn.execute(
            f"SELECT {NODE_COLUMNS} FROM node WHERE tree_id = ? AND {_IN_SUBTREE} ORDER BY path",
            (tree_id, *_subtree_params(path)),
        )
        return [NodeRow(*r) for r in cursor]

    def subtree_arrays_sql(self, tree_id: int, path: str, scalars_only: bool = False) -> tuple[str, tuple[Any, ...]]:
        """A subquery selecting the array ids of a subtree (only numpy scalars' with ``scalars_only``)."""
        scalars = " AND dtype IS NOT NULL" if scalars_only else ""
        return (f"SELECT array_id FROM node WHERE tree_id = ? AND {_IN_SUBTREE} AND array_id IS NOT NULL{scalars}",
                (tree_id, *_subtree_params(path)))

    # -- inserting ---------------------------------------------------------------

    def prepare(self, value: object, base: str = "") -> list[NodeSpec]:
        """Validate a value bound for ``base`` and resolve its handles, before anything is written."""
        from .tree import Node, Tree  # handles live one module up in this layer

        specs = flatten(value, (Array, Node, Tree, ArrayIdRef), base)
        for spec in specs:
            if spec.kind != "handle":
                continue
            handle = spec.payload
            if isinstance(handle, ArrayIdRef):
                spec.kind, spec.payload = "array", ("ref", handle.array_id)
            elif isinstance(handle, Array):
                if handle._db is self.db:
                    spec.kind, spec.payload = "array", ("ref", handle.array_id)
                else:  # another database: the bytes must be copied in
                    spec.kind, spec.payload = "array", np.asarray(handle)
            else:
                db, tree_id, path = handle._subtree_ref()
                spec.payload = ("subtree", db, tree_id, path, handle)
        return specs

    def insert(
        self,
        specs: list[NodeSpec],
        tree_id: int,
        parent_id: int | None,
        path: str,
        key: str | None,
        pos: int,
        chunks: tuple[int, ...] | None = None,
        codec: Codec | None = None,
    ) -> int:
        """Write prepared specs as the subtree at ``path``; returns the new root node id."""
        base = self.next_node_id()
        array_ids = iter(self._store_arrays([spec.payload for spec in specs if spec.kind == "array"], chunks, codec))
        rows = []
        copies: list[NodeSpec] = []
        for i, spec in enumerate(specs):
            is_root = spec.parent < 0
            node_parent = parent_id if is_root else base + spec.parent
            node_key = key if is_root else spec.key
            node_pos = pos if is_root else spec.pos
            if spec.kind == "handle":
                copies.append(spec)
                continue
            array_id = next(array_ids) if spec.kind == "array" else None
            rows.append((base + i, tree_id, node_parent, path + spec.path, node_key, node_pos, spec.kind,
                         spec.value, spec.exact, spec.dtype, array_id))
        if rows:
            self.conn.executemany(_INSERT, rows)
        root_id = base
        for spec in copies:
            is_root = spec.parent < 0
            new_id = self._insert_copy(
                spec.payload, tree_id, parent_id if is_root else base + spec.parent, path + spec.path,
                key if is_root else spec.key, pos if is_root else spec.pos,
            )
            if is_root:
                root_id = new_id
        return root_id

    def _store_arrays(self, payloads: list[Any], chunks: tuple[int, ...] | None, codec: Codec | None) -> list[int]:
        """The array ids for array payloads: ("ref", id) is shared, not copied; ndarrays are stored."""
        values: list[np.ndarray[Any, Any]] = [p for p in payloads if not isinstance(p, tuple)]
        metas = iter(self.arrays.create_many([
            (data.shape, data.dtype, chunks if chunks is not None and len(chunks) == data.ndim else None, codec, None)
            for data in values
        ]) if values else [])
        stored = [(next(metas), data) for data in values]
        self.arrays.write_arrays(stored)
        by_value = iter(meta.array_id for meta, _ in stored)
        return [int(p[1]) if isinstance(p, tuple) else next(by_value) for p in payloads]

    def _insert_copy(self, payload: Any, tree_id: int, parent_id: int | None, path: str, key: str | None,
                     pos: int) -> int:
        _, db, src_tree, src_path, handle = payload
        if db is not self.db:  # another database: copy the values in
            specs = self.prepare(handle.load(lazy=True))
            return self.insert(specs, tree_id, parent_id, path, key, pos)
        return self.copy_subtree(src_tree, src_path, tree_id, path, parent_id, key, pos)

    def copy_subtree(self, src_tree: int, src_path: str, dst_tree: int, dst_path: str, parent_id: int | None,
                     key: str | None, pos: int) -> int:
        """Copy node rows (one per node, arrays by reference); returns the new root id."""
        source = self.row_at(src_tree, src_path)
        if source is None:
            raise PathNotFoundError(f"{src_path or '(root)'}: the source subtree no longer exists")
        params = _subtree_params(src_path)
        min_id = int(self.conn.scalar(
            f"SELECT min(node_id) FROM node WHERE tree_id = ? AND {_IN_SUBTREE}", (src_tree, *params)
        ))
        delta = self.next_node_id() - min_id
        self.conn.execute(
            f"""INSERT INTO node({NODE_COLUMNS})
            SELECT node_id + :delta, :dst_tree,
                   CASE WHEN node_id = :root THEN :parent ELSE parent_id + :delta END,
                   :dst_path || coalesce(CAST(substr(CAST(path AS BLOB), :src_len + 1) AS TEXT), ''),
                   CASE WHEN node_id = :root THEN :key ELSE key END,
                   CASE WHEN node_id = :root THEN :pos ELSE pos END,
                   kind, value, exact, dtype, array_id
            FROM node WHERE tree_id = :src_tree AND (path = :p OR (path >= :lo AND path < :hi))""",
            {"delta": delta, "dst_tree": dst_tree, "root": source.node_id, "parent": parent_id,
             "dst_path": dst_path, "src_len": _nbytes(src_path), "key": key, "pos": pos, "src_tree": src_tree,
             "p": params[0], "lo": params[1], "hi": params[2]},
        )
        return source.node_id + delta

    def next_node_id(self) -> int:
        """The first id never used by a node (ids of deleted nodes are not reused)."""
        return int(self.conn.scalar(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'node'), 0), "
            "coalesce((SELECT max(node_id) FROM node), 0)) + 1"
        ))

    # -- structure edits -----------------------------------------------------------

    def delete_subtree(self, tree_id: int, path: str) -> None:
        self.conn.execute(f"DELETE FROM node WHERE tree_id = ? AND {_IN_SUBTREE}", (tree_id, *_subtree_params(path)))

    def rewrite_prefix(self, tree_id: int, old: str, new: str) -> None:
        """Give the subtree at ``old`` the path ``new`` (one UPDATE over its rows)."""
        self.conn.execute(
            f"UPDATE node SET path = ? || coalesce(CAST(substr(CAST(path AS BLOB), ?) AS TEXT), '') "
            f"WHERE tree_id = ? AND {_IN_SUBTREE}",
            (new, _nbytes(old) + 1, tree_id, *_subtree_params(old)),
        )

    def shift_list(self, parent: NodeRow, start: int, delta: int) -> None:
        """Renumber the items of a list from index ``start`` on by ``delta`` (+1 or -1)."""
        items = [r for r in self.children(parent.node_id) if r.pos >= start]
        if delta > 0:
            items.reverse()  # move the last one first so no two paths collide
        for item in items:
            new_pos = item.pos + delta
            self.rewrite_prefix(parent.tree_id, item.path, paths.child(parent.path, new_pos))
            self.conn.execute("UPDATE node SET pos = ? WHERE node_id = ?", (new_pos, item.node_id))

    def next_pos(self, parent_id: int) -> int:
        return int(self.conn.scalar(
            "SELECT coalesce(max(pos) + 1, 0) FROM node WHERE parent_id = ?", (parent_id,)
        ))

    def scratch_path(self, path: str) -> str:
        return _SCRATCH + path

    def overlaps(self, specs: list[NodeSpec], tree_id: int, path: str) -> bool:
        """Whether a subtree handle in ``specs`` designates a subtree that contains or is inside ``path``."""
        for spec in specs:
            if spec.kind == "handle":
                _, db, src_tree, src_path, _ = spec.payload
                if db is self.db and src_tree == tree_id and (_nested(src_path, path) or _nested(path, src_path)):
                    return True
        return False


def _nested(inner: str, outer: str) -> bool:
    return inner == outer or outer == "" or inner.startswith(outer + "/")
