"""The node table: insert a value, copy a subtree by reference, delete, move; the queries that read nodes.

This module owns every statement on the ``node`` table (its queries may join
the ``tree`` table to filter by tree name; :mod:`.catalog` owns that table).

Paths are materialised in ``node.path``, so a subtree is one index range
(``path = P OR P || '/' <= path < P || '0'``). Moving or copying a subtree
rewrites at most one row per node and never touches array data: copied
array nodes reference the same array ids (the triggers count the new
references).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import CorruptionError, PathNotFoundError
from ..storage.connection import Connection
from . import paths
from .values import NodeSpec, array_handle_types, flatten

if TYPE_CHECKING:
    import numpy as np

    from ..arrays.array import ArrayStore
    from ..codec import Codec

__all__ = ["NodeRow", "NodeTable", "SubtreeHandle", "SubtreeRef", "ArrayIdRef", "EditSlot", "ManyTrees",
           "NODE_COLUMNS", "glob_sql"]

NODE_COLUMNS = "node_id, tree_id, parent_id, path, key, pos, kind, value, exact, dtype, array_id"
_INSERT = f"INSERT INTO node({NODE_COLUMNS})"
_N_COLUMNS = ", ".join(f"n.{column}" for column in NODE_COLUMNS.split(", "))
# One index range, [path, path + "0"), less what sorts between path and path + "/" (siblings such as
# path + ".x"): an OR of two ranges would be planned as two searches whose rows need sorting.
_IN_SUBTREE = "path >= ? AND path < ? AND (path = ? OR path >= ?)"
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


class ArrayIdRef:
    """A stored array to reference by id (used by create_array)."""

    __slots__ = ("array_id",)

    def __init__(self, array_id: int) -> None:
        self.array_id = array_id


class SubtreeHandle(ABC):
    """Base of what can be assigned elsewhere by reference: the handles (Node, Tree), a :class:`SubtreeRef`."""

    __slots__ = ()

    @abstractmethod
    def _subtree_ref(self) -> tuple[NodeTable, int, str]:
        """(node table, tree id, path) of the subtree this handle designates."""

    @abstractmethod
    def load(self, lazy: bool = False) -> Any:
        """The subtree as plain values (to copy it into another database)."""


class SubtreeRef(SubtreeHandle):
    """A stored subtree to reference by (tree id, path): what one edit of many trees shares."""

    __slots__ = ("nodes", "tree_id", "path")

    def __init__(self, nodes: NodeTable, tree_id: int, path: str) -> None:
        self.nodes = nodes
        self.tree_id = tree_id
        self.path = path

    def _subtree_ref(self) -> tuple[NodeTable, int, str]:
        return self.nodes, self.tree_id, self.path

    def load(self, lazy: bool = False) -> Any:
        raise TypeError("a SubtreeRef is only assigned within its own database")


class EditSlot(NamedTuple):
    """Per tree, for an edit of many trees: where the edited node is and where it goes."""

    tree_id: int
    name: str
    src_id: int | None  # the node at the source path (moves only)
    src_parent_kind: str | None
    parent_id: int | None  # the destination's parent
    parent_kind: str | None
    existing_id: int | None  # a node already at the destination
    existing_pos: int | None
    next_pos: int  # the end of the destination's parent


def _nbytes(text: str) -> int:
    # Paths are cut as bytes: SQLite's text functions stop at a NUL, and keys may hold one.
    return len(text.encode("utf-8"))


def _subtree_params(path: str) -> tuple[str, str, str, str]:
    lo, hi = paths.subtree_bounds(path)
    return path, hi, path, lo


class NodeTable:
    """Node-table operations for one database.

    ``arrays`` gives the database's ArrayStore, which is set up (numpy with
    it) only when a value holds an array.
    """

    def __init__(self, conn: Connection, arrays: Callable[[], ArrayStore]) -> None:
        self.conn = conn
        self._arrays = arrays

    @property
    def arrays(self) -> ArrayStore:
        return self._arrays()

    # -- reading -----------------------------------------------------------------

    def row(self, node_id: int) -> NodeRow | None:
        found = self.conn.one(f"SELECT {NODE_COLUMNS} FROM node WHERE node_id = ?", (node_id,))
        return NodeRow(*found) if found else None

    def row_at(self, tree_id: int, path: str) -> NodeRow | None:
        found = self.conn.one(f"SELECT {NODE_COLUMNS} FROM node WHERE tree_id = ? AND path = ?", (tree_id, path))
        return NodeRow(*found) if found else None

    def root_entry(self, tree_id: int, path: str) -> NodeRow | None:
        """The row at ``path`` if it is an entry of the tree's root and that root is a dict."""
        found = self.conn.one(
            f"SELECT {_N_COLUMNS} FROM node n JOIN node r ON r.node_id = n.parent_id "
            "WHERE n.tree_id = ? AND n.path = ? AND r.tree_id = n.tree_id AND r.path = '' AND r.kind = 'dict'",
            (tree_id, path))
        return NodeRow(*found) if found else None

    def children(self, node_id: int) -> list[NodeRow]:
        cursor = self.conn.execute(f"SELECT {NODE_COLUMNS} FROM node WHERE parent_id = ? ORDER BY pos", (node_id,))
        return list(map(NodeRow._make, cursor))

    def count_children(self, node_id: int) -> int:
        return int(self.conn.scalar("SELECT count(*) FROM node WHERE parent_id = ?", (node_id,)))

    def subtree(self, tree_id: int, path: str) -> list[NodeRow]:
        cursor = self.conn.execute(
            f"SELECT {NODE_COLUMNS} FROM node WHERE tree_id = ? AND {_IN_SUBTREE} ORDER BY path",
            (tree_id, *_subtree_params(path)),
        )
        return list(map(NodeRow._make, cursor))

    def subtree_arrays_sql(self, tree_id: int, path: str, scalars_only: bool = False) -> tuple[str, tuple[Any, ...]]:
        """A subquery selecting the array ids of a subtree (only numpy scalars' with ``scalars_only``)."""
        scalars = " AND dtype IS NOT NULL" if scalars_only else ""
        return (f"SELECT array_id FROM node WHERE tree_id = ? AND {_IN_SUBTREE} AND array_id IS NOT NULL{scalars}",
                (tree_id, *_subtree_params(path)))

    # -- inserting ---------------------------------------------------------------

    def prepare(self, value: object, base: str = "") -> list[NodeSpec]:
        """Validate a value bound for ``base`` and resolve its handles, before anything is written."""
        array_types = array_handle_types()
        specs = flatten(value, (*array_types, SubtreeHandle, ArrayIdRef), base)
        for spec in specs:
            if spec.kind != "handle":
                continue
            handle = spec.payload
            if isinstance(handle, ArrayIdRef):
                spec.kind, spec.payload = "array", ("ref", handle.array_id)
            elif isinstance(handle, array_types):
                if handle._db.arrays.lends_by_id_to(self.arrays):
                    spec.kind, spec.payload = "array", ("ref", handle.array_id)
                else:  # another database: the bytes must be copied in
                    spec.kind, spec.payload = "array", handle.read()
            else:
                owner, tree_id, path = handle._subtree_ref()
                spec.payload = ("subtree", owner, tree_id, path, handle)
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
        ids, store_chunks = self._start_storing_arrays([spec.payload for spec in specs if spec.kind == "array"],
                                                       chunks, codec)
        array_ids = iter(ids)
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
            self.conn.insert_rows(_INSERT, rows)
        store_chunks()  # the pool compressed them while the node rows went in
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

    def _start_storing_arrays(self, payloads: list[Any], chunks: tuple[int, ...] | None, codec: Codec | None
                              ) -> tuple[list[int], Callable[[], None]]:
        """The array ids for array payloads: ("ref", id) is shared, not copied; ndarrays are stored,
        their last chunks when the function returned is called."""
        values: list[np.ndarray[Any, Any]] = [p for p in payloads if not isinstance(p, tuple)]
        if not values:  # references only (or nothing): the ArrayStore is not needed
            return [int(p[1]) for p in payloads], lambda: None
        metas = iter(self.arrays.create_many([
            (data.shape, data.dtype, chunks if chunks is not None and len(chunks) == data.ndim else None, codec, None)
            for data in values
        ]))
        stored = [(next(metas), data) for data in values]
        store_chunks = self.arrays.start_write_arrays(stored)
        by_value = iter(meta.array_id for meta, _ in stored)
        return [int(p[1]) if isinstance(p, tuple) else next(by_value) for p in payloads], store_chunks

    def _insert_copy(self, payload: Any, tree_id: int, parent_id: int | None, path: str, key: str | None,
                     pos: int) -> int:
        owner: NodeTable = payload[1]
        src_tree, src_path, handle = payload[2:]
        if owner is not self:  # another database: copy the values in
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
        _, hi, _, lo = params
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
            FROM node WHERE tree_id = :src_tree AND path >= :p AND path < :hi AND (path = :p OR path >= :lo)""",
            {"delta": delta, "dst_tree": dst_tree, "root": source.node_id, "parent": parent_id,
             "dst_path": dst_path, "src_len": _nbytes(src_path), "key": key, "pos": pos, "src_tree": src_tree,
             "p": src_path, "lo": lo, "hi": hi},
        )
        return source.node_id + delta

    def copy_rows(self, rows_sql: str, dst_tree: int) -> int:
        """Insert the rows of one whole tree that ``rows_sql`` selects (its columns are :data:`NODE_COLUMNS`)
        into ``dst_tree``, with fresh ids and arrays by reference; returns the id shift (old id + shift = new id).
        """
        first = self.conn.scalar(f"SELECT min(node_id) FROM ({rows_sql})")
        if first is None:
            raise CorruptionError("a tree to copy has no node rows")
        delta = self.next_node_id() - int(first)
        self.conn.execute(f"INSERT INTO node({NODE_COLUMNS}) SELECT node_id + {delta}, {int(dst_tree)}, "
                          f"parent_id + {delta}, path, key, pos, kind, value, exact, dtype, array_id FROM ({rows_sql})")
        return delta

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

    def attach(self, node_id: int, parent_id: int | None, key: str | None, pos: int) -> None:
        """Give a subtree root its parent, key and position (``parent_id`` None: detached while parked)."""
        self.conn.execute("UPDATE node SET parent_id = ?, key = ?, pos = ? WHERE node_id = ?",
                          (parent_id, key, pos, node_id))

    def set_array(self, node_id: int, array_id: int) -> None:
        """Make an array node hold another array (its copy-on-write clone)."""
        self.conn.execute("UPDATE node SET array_id = ? WHERE node_id = ?", (array_id, node_id))

    def delete_tree(self, tree_id: int) -> None:
        self.conn.execute("DELETE FROM node WHERE tree_id = ?", (tree_id,))

    def count_in_tree(self, tree_id: int) -> int:
        return int(self.conn.scalar("SELECT count(*) FROM node WHERE tree_id = ?", (tree_id,)))

    def glob(self, pattern: str, trees: str | None = None) -> list[tuple[str, NodeRow]]:
        """``(tree name, row)`` of every node whose path matches a JSON-Pointer pattern (see :func:`glob_sql`)."""
        sql, params, exact = glob_sql(pattern, trees)
        found = []
        for tree_name, *columns in self.conn.execute(sql, params).fetchall():
            row = NodeRow(*columns)
            if type(row.path) is not str or type(tree_name) is not str:
                raise CorruptionError(f"node {row.node_id} has a path or tree name that is not text")
            if exact.fullmatch(row.path):
                found.append((tree_name, row))
        return found

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
                _, owner, src_tree, src_path, _ = spec.payload
                if owner is self and src_tree == tree_id and (_nested(src_path, path) or _nested(path, src_path)):
                    return True
        return False


def _nested(inner: str, outer: str) -> bool:
    return inner == outer or outer == "" or inner.startswith(outer + "/")


# -- one edit in many trees (see bulk.py): a fixed number of statements whatever the number of trees


def _ids(tree_ids: list[int]) -> str:
    return json.dumps(tree_ids)


class ManyTrees:
    """The statements of :mod:`.bulk`: each one edits the same path in many trees."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def slots(self, trees: str, src: str | None, dst: str) -> list[EditSlot]:
        """One query: the rows involved in every tree whose name matches the glob ``trees``."""
        dst_parent, _ = paths.parent(dst)
        rows = self.conn.execute(
            """SELECT t.tree_id, t.name, s.node_id, sp.kind, p.node_id, p.kind, d.node_id, d.pos,
                      (SELECT coalesce(max(c.pos) + 1, 0) FROM node c WHERE c.parent_id = p.node_id)
               FROM tree t
               LEFT JOIN node s ON s.tree_id = t.tree_id AND s.path = :src
               LEFT JOIN node sp ON sp.node_id = s.parent_id
               LEFT JOIN node p ON p.tree_id = t.tree_id AND p.path = :parent
               LEFT JOIN node d ON d.tree_id = t.tree_id AND d.path = :dst
               WHERE t.name GLOB :trees ORDER BY t.tree_id""",
            {"src": src, "parent": dst_parent, "dst": dst, "trees": trees},
        ).fetchall()
        return [EditSlot(*row) for row in rows]

    def delete_subtrees(self, tree_ids: list[int], path: str) -> None:
        self.conn.execute(
            f"DELETE FROM node WHERE tree_id IN (SELECT value FROM json_each(?)) AND {_IN_SUBTREE}",
            (_ids(tree_ids), *_subtree_params(path)),
        )

    def rewrite_prefixes(self, tree_ids: list[int], old: str, new: str) -> None:
        """:meth:`NodeTable.rewrite_prefix` in many trees, one UPDATE."""
        self.conn.execute(
            "UPDATE node SET path = ? || coalesce(CAST(substr(CAST(path AS BLOB), ?) AS TEXT), '') "
            f"WHERE tree_id IN (SELECT value FROM json_each(?)) AND {_IN_SUBTREE}",
            (new, _nbytes(old) + 1, _ids(tree_ids), *_subtree_params(old)),
        )

    def attach(self, key: str | None, moves: list[tuple[int | None, int | None, int]]) -> None:
        """Give each ``(node id, parent id, position)`` its parent and position, and ``key``, one UPDATE."""
        self.conn.execute(
            "UPDATE node SET parent_id = j.value ->> 1, pos = j.value ->> 2, key = ? "
            "FROM json_each(?) AS j WHERE node.node_id = j.value ->> 0",
            (key, json.dumps(moves)),
        )

    def insert_scalar(self, path: str, key: str | None, spec: NodeSpec,
                      places: list[tuple[int, int | None, int]]) -> None:
        """Insert one scalar node at ``path`` for each ``(tree id, parent id, position)``, one INSERT."""
        self.conn.execute(
            "INSERT INTO node(tree_id, parent_id, path, key, pos, kind, value, exact, dtype) "
            "SELECT j.value ->> 0, j.value ->> 1, ?, ?, j.value ->> 2, ?, ?, ?, ? FROM json_each(?) AS j",
            (path, key, spec.kind, spec.value, spec.exact, spec.dtype, json.dumps(places)),
        )


# -- glob over the paths of many trees

def glob_sql(pattern: str, trees: str | None) -> tuple[str, tuple[Any, ...], re.Pattern[str]]:
    """SQL that narrows candidates with GLOB, and the exact regex they must match.

    ``*`` matches within one segment; a ``**`` segment matches zero or more segments.
    """
    if not isinstance(pattern, str) or (pattern and not pattern.startswith("/")):
        raise ValueError(f"glob patterns are JSON Pointers starting with '/', got {pattern!r}")
    segments = pattern[1:].split("/") if pattern else []
    regex = ""
    for seg in segments:
        if seg == "**":
            regex += "(?:/[^/]*)*"
        else:
            regex += "/" + "[^/]*".join(re.escape(p) for p in seg.split("*"))
    params: list[Any]
    literal = re.sub(r"([\[\]?])", r"[\1]", pattern)  # GLOB treats [ ] ? specially
    path_glob = literal.replace("/**", "*")
    if "*" not in pattern:  # no wildcard: one path, an equality on the path index
        where, params = ["n.path = ?"], [pattern]
    else:
        # The literal prefix is an index range (byte comparisons). GLOB only narrows
        # further: SQLite's text functions stop at a NUL, so paths holding one are
        # left to the exact match in Python.
        prefix = pattern[: pattern.index("*")]
        if pattern[len(prefix):].startswith("**") and prefix.endswith("/"):
            prefix = prefix[:-1]  # "**" also matches zero segments: the node itself
        where = ["(n.path GLOB ? OR instr(CAST(n.path AS BLOB), x'00') > 0)"]
        params = [path_glob]
        if prefix:
            where.append("n.path >= ? AND n.path < ?")
            params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
    if "**" not in segments:
        where.append("length(CAST(n.path AS BLOB)) - length(CAST(replace(n.path, '/', '') AS BLOB)) = ?")
        params.append(len(segments))
    last = segments[-1] if segments else "**"
    if "*" in pattern and "*" not in last and not last.isdigit():  # a literal dict key: the (key, value) index finds it
        where.append("n.key = ?")
        params.append(last.replace("~1", "/").replace("~0", "~"))
    if trees is not None:
        where.append("t.name GLOB ?")
        params.append(trees)
    sql = (
        f"SELECT t.name, {', '.join('n.' + c for c in NODE_COLUMNS.split(', '))} "
        "FROM node n JOIN tree t ON t.tree_id = n.tree_id WHERE "
        + " AND ".join(where)
        + " ORDER BY t.tree_id, n.path"
    )
    return sql, tuple(params), re.compile(regex, re.S)
