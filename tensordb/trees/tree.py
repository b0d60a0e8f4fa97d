"""Tree and Node handles: lazy, cheap, and shaped like Python's own containers.

A :class:`Tree` designates a named tree; a :class:`Node` a dict or list
inside one (``DictNode`` is a MutableMapping, ``ListNode`` a
MutableSequence). Handles hold ids, not data: every access reads the current
rows. Indexing takes a key (``node["data"]``), a list index (``node[0]``) or
a JSON Pointer relative to the node (``node["/data/points"]``; ``""`` is the
node itself).
"""

from __future__ import annotations

import html
from collections.abc import Iterator, MutableMapping, MutableSequence
from typing import Any

import numpy as np

from ..arrays import array as array_module
from ..arrays.array import Array
from ..arrays.html import html_table, human_size
from ..codec import Codec
from ..errors import CorruptionError, PathNotFoundError, StaleHandleError, TensorDBError, context
from . import paths
from .nodes import ArrayIdRef, NodeRow, NodeTable, SubtreeHandle
from .values import CONTAINER_KINDS, decode_scalar

__all__ = ["Tree", "Node", "DictNode", "ListNode", "TreeOps"]

_MISSING = object()


class NodeOwner:
    """The node that holds an array: follows it for reads, clones the array before a shared write."""

    __slots__ = ("ops", "node_id")

    def __init__(self, ops: TreeOps, node_id: int) -> None:
        self.ops = ops
        self.node_id = node_id

    def _row(self) -> NodeRow:
        row = self.ops.nodes.row(self.node_id)
        if row is None or row.array_id is None:
            raise StaleHandleError("the array's node was deleted or replaced; get a new handle from the tree")
        return row

    def current_array(self) -> int:
        return int(self._row().array_id)

    def exclusive_array(self) -> int:
        row = self._row()
        array_id = int(row.array_id)
        arrays = self.ops.arrays
        if arrays.must_copy_before_write(array_id):
            array_id = arrays.clone(arrays.meta(array_id)).array_id
            self.ops.conn.execute("UPDATE node SET array_id = ? WHERE node_id = ?", (array_id, self.node_id))
        self.ops.touch(row.tree_id)
        return array_id

    def array_ref(self) -> tuple[str, tuple[Any, ...]]:
        return "SELECT array_id FROM node WHERE node_id = ?", (self.node_id,)

    def location(self) -> tuple[str | None, str | None]:
        row = self.ops.nodes.row(self.node_id)
        if row is None:
            return None, None
        return self.ops.tree_name(row.tree_id), row.path


class TreeOps:
    """Tree-level operations shared by the handles of one database."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.conn = db._store.conn
        self.arrays = db.arrays
        self.nodes = NodeTable(db, self.conn, self.arrays)

    def tree_name(self, tree_id: int) -> str | None:
        name = self.conn.scalar("SELECT name FROM tree WHERE tree_id = ?", (tree_id,))
        return None if name is None else str(name)

    def touch(self, tree_id: int) -> None:
        self.conn.execute(
            "UPDATE tree SET modified = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE tree_id = ?", (tree_id,)
        )

    # -- values ------------------------------------------------------------------

    def value_of(self, row: NodeRow) -> Any:
        """What indexing returns: a handle for containers and arrays, a Python value for scalars."""
        if row.kind == "dict":
            return DictNode(self, row.node_id)
        if row.kind == "list":
            return ListNode(self, row.node_id)
        if row.kind == "array":
            if row.dtype is not None:  # a numpy scalar stored as a 0-d array
                with self.db._store.snapshot():  # metadata and chunks from one commit
                    return self.arrays.read(self.arrays.meta(_array_id(row)), ())
            return Array(self.db, _array_id(row), NodeOwner(self, row.node_id))
        return decode_scalar(row.kind, row.value, row.exact, row.dtype)

    def load(self, tree_id: int, path: str, lazy: bool) -> Any:
        """The subtree at ``path`` as plain Python values.

        One query for the structure; unless ``lazy``, one for the records of
        its arrays and one for their chunk records.
        """
        with self.db._store.snapshot():
            rows = self.nodes.subtree(tree_id, path)
            if not rows:
                raise PathNotFoundError(f"{path or '(root)'}: no such path")
            if rows[0].path != path:
                raise CorruptionError(f"{path or '(root)'}: the node rows of this subtree have no root")
            arrays = self._read_arrays(tree_id, path, lazy)
            made: dict[int, Any] = {}
            made_paths: dict[int, str] = {}
            children: dict[int, list[tuple[int, str | None, Any]]] = {}
            for row in rows:  # ordered by path: parents before children
                if row.path != path:  # rows are untrusted: each must hang under a container made before it
                    _check_child(row, made, made_paths)
                if row.kind == "dict":
                    value: Any = {}
                elif row.kind == "list":
                    value = []
                elif row.kind == "array" and (not lazy or row.dtype is not None):
                    value = arrays.get(_array_id(row))
                    if value is None:
                        raise CorruptionError(f"{row.path or '(root)'}: array {row.array_id} does not exist")
                    if row.dtype is not None:
                        value = value[()]
                else:
                    value = self.value_of(row)
                made[row.node_id] = value
                made_paths[row.node_id] = row.path
                if row.path != path:
                    children.setdefault(row.parent_id, []).append((row.pos, row.key, value))
        for parent_id, items in children.items():
            container = made[parent_id]
            items.sort(key=lambda item: item[0])
            if isinstance(container, dict):
                for _, key, value in items:
                    container[key] = value
                if len(container) != len(items):
                    raise CorruptionError(f"{made_paths[parent_id] or '(root)'}: a dict holds a key twice")
            else:
                if [pos for pos, _, _ in items] != list(range(len(items))):
                    raise CorruptionError(f"{made_paths[parent_id] or '(root)'}: list items are not numbered 0..n-1")
                container.extend(value for _, _, value in items)
        return made[rows[0].node_id]

    def _read_arrays(self, tree_id: int, path: str, lazy: bool) -> dict[int, np.ndarray[Any, Any]]:
        """{array id: values} for the arrays of a subtree (only numpy scalars when ``lazy``)."""
        ids_sql, params = self.nodes.subtree_arrays_sql(tree_id, path, scalars_only=lazy)
        metas = self.arrays.metas_where(ids_sql, params)
        records = self.arrays.chunk_records_where(ids_sql, params)
        return {array_id: self.arrays.read_whole(meta, records.get(array_id, {}))
                for array_id, meta in metas.items()}

    # -- edits -------------------------------------------------------------------

    def set(self, tree_id: int, path: str, value: object, chunks: tuple[int, ...] | None = None,
            codec: Codec | None = None) -> int:
        """Set or replace the value at ``path`` (its parent must exist); returns the node id."""
        specs = self.nodes.prepare(value, path)
        with self.db.transaction():
            if path == "":
                return self._replace_root(tree_id, specs, chunks, codec)
            parent, key, pos, existing, path = self._slot(tree_id, path)
            if existing is None:
                node_id = self.nodes.insert(specs, tree_id, parent.node_id, path, key, pos, chunks, codec)
            elif self.nodes.overlaps(specs, tree_id, path):
                # the new value references part of what it replaces: build it aside first
                scratch = self.nodes.scratch_path(path)
                node_id = self.nodes.insert(specs, tree_id, parent.node_id, scratch, key, pos, chunks, codec)
                self.nodes.delete_subtree(tree_id, path)
                self.nodes.rewrite_prefix(tree_id, scratch, path)
            else:
                self.nodes.delete_subtree(tree_id, path)
                node_id = self.nodes.insert(specs, tree_id, parent.node_id, path, key, pos, chunks, codec)
            self.touch(tree_id)
            return node_id

    def _replace_root(self, tree_id: int, specs: list[Any], chunks: tuple[int, ...] | None,
                      codec: Codec | None) -> int:
        old_root = self.nodes.row_at(tree_id, "")
        if old_root is not None and self.nodes.overlaps(specs, tree_id, ""):
            scratch = self.nodes.scratch_path("")
            root_id = self.nodes.insert(specs, tree_id, None, scratch, None, 0, chunks, codec)
            self.nodes.delete_subtree(tree_id, "")
            self.nodes.rewrite_prefix(tree_id, scratch, "")
        else:
            if old_root is not None:
                self.nodes.delete_subtree(tree_id, "")
            root_id = self.nodes.insert(specs, tree_id, None, "", None, 0, chunks, codec)
        self.conn.execute("UPDATE tree SET root_id = ? WHERE tree_id = ?", (root_id, tree_id))
        self.touch(tree_id)
        return root_id

    def _slot(self, tree_id: int, path: str) -> tuple[NodeRow, str | None, int, NodeRow | None, str]:
        """(parent row, key, position, existing row, canonical path) for setting ``path``.

        In a list, the index may equal the length or be ``-`` (JSON Patch): the end.
        """
        parent_path, token = paths.parent(path)
        parent = self.require(tree_id, parent_path)
        if parent.kind == "dict":
            existing = self.nodes.row_at(tree_id, path)
            pos = existing.pos if existing else self.nodes.next_pos(parent.node_id)
            return parent, token, pos, existing, path
        if parent.kind == "list":
            n = self.nodes.count_children(parent.node_id)
            index = _list_index(token, n, allow_end=True, where=parent_path)
            path = paths.child(parent_path, index)
            existing = self.nodes.row_at(tree_id, path) if index < n else None
            return parent, None, index, existing, path
        raise TypeError(f"{parent_path or '(root)'}: a {parent.kind} has no children")

    def require(self, tree_id: int, path: str) -> NodeRow:
        row = self.nodes.row_at(tree_id, path)
        if row is None:
            raise PathNotFoundError(f"{path or '(root)'}: no such path")
        return row

    def insert_item(self, list_row: NodeRow, index: int, value: object) -> None:
        specs = self.nodes.prepare(value, paths.child(list_row.path, index))
        with self.db.transaction():
            n = self.nodes.count_children(list_row.node_id)
            index = max(0, min(n, index + n if index < 0 else index))
            self.nodes.shift_list(list_row, index, +1)
            self.nodes.insert(specs, list_row.tree_id, list_row.node_id, paths.child(list_row.path, index), None, index)
            self.touch(list_row.tree_id)

    def delete(self, tree_id: int, path: str) -> None:
        with self.db.transaction():
            row = self.require(tree_id, path)
            if row.parent_id is None:
                raise ValueError("cannot delete the root of a tree; delete the tree itself (del db[name])")
            self.nodes.delete_subtree(tree_id, path)
            parent = self.nodes.row(row.parent_id)
            if parent is not None and parent.kind == "list":
                self.nodes.shift_list(parent, row.pos + 1, -1)
            self.touch(tree_id)

    def move(self, tree_id: int, src: str, dst: str) -> None:
        """JSON-Patch move: remove the subtree at ``src``, then add it at ``dst``. Metadata only."""
        if src == dst:
            self.require(tree_id, src)
            return
        if dst.startswith(src + "/") or src == "":
            raise ValueError(f"cannot move {src or '(root)'} into itself ({dst})")
        with self.db.transaction():
            row = self.require(tree_id, src)
            old_parent = self.nodes.row(row.parent_id)
            if old_parent is not None and old_parent.kind == "dict" and not src.startswith(dst + "/"):
                # No list renumbering can shift the destination: one pass over the subtree.
                parent, key, pos, existing, dst = self._slot(tree_id, dst)
                if parent.kind == "dict":
                    if existing is not None:
                        self.nodes.delete_subtree(tree_id, dst)
                    self.nodes.rewrite_prefix(tree_id, src, dst)
                    self._attach(row, parent, key, pos)
                    return
            scratch = self.nodes.scratch_path(src)
            self.nodes.rewrite_prefix(tree_id, src, scratch)
            # detached while parked, so that renumbering the lists involved leaves it alone
            self.conn.execute("UPDATE node SET parent_id = NULL WHERE node_id = ?", (row.node_id,))
            if old_parent is not None and old_parent.kind == "list":
                self.nodes.shift_list(old_parent, row.pos + 1, -1)
            parent, key, pos, existing, dst = self._slot(tree_id, dst)
            if parent.kind == "list":
                self.nodes.shift_list(parent, pos, +1)
            elif existing is not None:
                self.nodes.delete_subtree(tree_id, dst)
            self.nodes.rewrite_prefix(tree_id, scratch, dst)
            self._attach(row, parent, key, pos)

    def _attach(self, row: NodeRow, parent: NodeRow, key: str | None, pos: int) -> None:
        """Give a moved subtree root its new parent, key and position."""
        self.conn.execute(
            "UPDATE node SET parent_id = ?, key = ?, pos = ? WHERE node_id = ?",
            (parent.node_id, key, pos, row.node_id),
        )
        self.touch(row.tree_id)


def _check_child(row: NodeRow, made: dict[int, Any], made_paths: dict[int, str]) -> None:
    """A loaded row must be a dict entry or list item of a container loaded before it, at the right path."""
    parent = made.get(row.parent_id) if type(row.parent_id) is int and type(row.pos) is int else None
    if isinstance(parent, dict) and isinstance(row.key, str):
        expected = paths.child(made_paths[row.parent_id], row.key)
    elif isinstance(parent, list) and row.key is None:
        expected = paths.child(made_paths[row.parent_id], row.pos)
    else:
        raise CorruptionError(f"{row.path}: node {row.node_id} does not hang under a dict or list of its subtree")
    if row.path != expected:
        raise CorruptionError(f"{row.path}: node {row.node_id} should be at {expected} (parent, key and path disagree)")


def _array_id(row: NodeRow) -> int:
    if type(row.array_id) is not int:
        raise CorruptionError(f"{row.path or '(root)'}: an array node without a valid array id")
    return row.array_id


def _reopen_ops(db_state: Any) -> TreeOps:
    """The tree operations of the read-only database a pickled handle reopens."""
    return array_module.reopen(db_state)._ops  # type: ignore[attr-defined,no-any-return]


def _list_index(token: str | int, n: int, allow_end: bool, where: str) -> int:
    if isinstance(token, int):
        index = token + n if token < 0 else token
    elif token == "-" and allow_end:
        index = n
    elif token.isdigit() and (token == "0" or not token.startswith("0")):
        index = int(token)
    else:
        raise PathNotFoundError(f"{where or '(root)'}: {token!r} is not a list index")
    if not 0 <= index < n + (1 if allow_end else 0):
        raise IndexError(f"{where or '(root)'}: list index {token} out of range (length {n})")
    return index


def _pointer(base: str, key: object, kind: str) -> str:
    """The absolute path that ``node[key]`` designates."""
    if paths.is_pointer(key):
        return base + paths.join(paths.split(str(key)))
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if kind != "list":
            raise TypeError(f"{base or '(root)'}: a {kind} is indexed by str keys, not ints")
        return paths.child(base, int(key))
    if isinstance(key, str):
        if kind == "list" and not key.isdigit() and key != "-":
            raise TypeError(f"{base or '(root)'}: a list is indexed by ints, not {key!r}")
        return paths.child(base, key)
    raise TypeError(f"invalid index {key!r}: use a str key, an int list index or a JSON Pointer")


class Node(SubtreeHandle):
    """A dict or list inside a tree (lazy handle). See :class:`DictNode` and :class:`ListNode`."""

    __slots__ = ("_ops", "_node_id")

    def __init__(self, ops: TreeOps, node_id: int) -> None:
        self._ops = ops
        self._node_id = node_id

    def _row(self) -> NodeRow:
        self._ops.conn.ensure_usable()
        row = self._ops.nodes.row(self._node_id)
        if row is None:
            raise StaleHandleError("this node was deleted or replaced; get a new handle from the tree")
        return row

    def _context(self, row: NodeRow | None = None, path: str | None = None) -> Any:
        # tree operations name the path in their own messages: add the file and tree only
        def locate() -> tuple[str | None, None]:
            found = row or self._ops.nodes.row(self._node_id)
            return (self._ops.tree_name(found.tree_id) if found else None), None

        return context(self._ops.db.filename, locate=locate)

    def _subtree_ref(self) -> tuple[Any, int, str]:
        row = self._row()
        return self._ops.db, row.tree_id, row.path

    def __getstate__(self) -> tuple[Any, int]:
        return self._ops.db._reopen_state(), self._node_id

    def __setstate__(self, state: tuple[Any, int]) -> None:
        self._ops = _reopen_ops(state[0])
        self._node_id = state[1]

    def _resolve(self, key: object, existing: bool = False) -> tuple[NodeRow, str]:
        """(this node's row, absolute path that ``self[key]`` designates).

        With ``existing``, a pointer-like key of a dict that designates nothing
        falls back to the literal key, so that every key ``iter()`` yields
        (even ``""`` or ``"/x"``) can be read back with ``node[key]``.
        """
        row, path, _ = self._lookup(key, existing)
        return row, path

    def _lookup(self, key: object, existing: bool = True, row: NodeRow | None = None
                ) -> tuple[NodeRow, str, NodeRow | None]:
        """:meth:`_resolve` plus the row found at the path (None if absent or not looked up).

        ``row`` is this node's row when the caller has just read it (a tree reading its root).
        """
        row = row or self._row()
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and row.kind == "list":
            key = _list_index(int(key), self._ops.nodes.count_children(row.node_id), False, row.path)
        path = _pointer(row.path, key, row.kind)
        if not existing:
            return row, path, None
        found = self._ops.nodes.row_at(row.tree_id, path)
        if found is None and row.kind == "dict" and paths.is_pointer(key):
            literal = paths.child(row.path, key)  # type: ignore[arg-type]
            found = self._ops.nodes.row_at(row.tree_id, literal)
            if found is not None:
                return row, literal, found
        return row, path, found

    # -- properties ----------------------------------------------------------------

    @property
    def path(self) -> str:
        """The JSON Pointer of this node in its tree."""
        return self._row().path

    @property
    def kind(self) -> str:
        return self._row().kind

    @property
    def tree(self) -> Tree:
        return Tree(self._ops, self._row().tree_id)

    def __repr__(self) -> str:
        try:
            row = self._row()
        except TensorDBError:
            return "<tensordb.Node (deleted or closed)>"
        n = self._ops.nodes.count_children(row.node_id)
        return f'<tensordb.Node "{row.path}" {row.kind} of {n} items in tree "{self._ops.tree_name(row.tree_id)}">'

    def _repr_html_(self) -> str:
        try:
            row = self._row()
            title = f'tensordb.Node "{row.path}" in tree "{self._ops.tree_name(row.tree_id)}"'
            return _html_node(title, self)
        except TensorDBError:
            return "<p>tensordb.Node (deleted or closed)</p>"

    def __eq__(self, other: object) -> bool:
        """Handles are equal when they designate the same node: same database, tree and path."""
        if not isinstance(other, Node) or other._ops is not self._ops:
            return False
        if other._node_id == self._node_id:
            return True
        try:
            mine, theirs = self._row(), other._row()
        except TensorDBError:
            return False
        return (mine.tree_id, mine.path) == (theirs.tree_id, theirs.path)

    def __hash__(self) -> int:
        try:
            return hash((id(self._ops), self._row().tree_id))  # the path may change with a move
        except TensorDBError:
            return hash(id(self._ops))

    # -- access ----------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        return self._get(key)

    def _get(self, key: Any, row: NodeRow | None = None) -> Any:
        row, path, found = self._lookup(key, row=row)
        with self._context(row, path):
            if found is None:
                raise PathNotFoundError(f"{path or '(root)'}: no such path")
            return self._ops.value_of(found)

    def __setitem__(self, key: Any, value: object) -> None:
        row, path = self._resolve(key)
        with self._context(row, path):
            self._ops.set(row.tree_id, path, value)

    def __delitem__(self, key: Any) -> None:
        row, path = self._resolve(key, existing=True)
        with self._context(row, path):
            self._ops.delete(row.tree_id, path)

    def __len__(self) -> int:
        return self._ops.nodes.count_children(self._row().node_id)

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def load(self, lazy: bool = False) -> Any:
        """This subtree as plain Python values (``lazy=True``: Array handles instead of ndarrays)."""
        row = self._row()
        with self._context(row):
            return self._ops.load(row.tree_id, row.path, lazy)

    def set(self, key: Any, value: object, *, chunks: tuple[int, ...] | None = None,
            codec: Codec | None = None) -> None:
        """Like ``node[key] = value``, with a chunk shape and codec for the arrays in ``value``."""
        row, path = self._resolve(key)
        with self._context(row, path):
            self._ops.set(row.tree_id, path, value, chunks, codec)

    def create_array(self, key: Any, shape: tuple[int, ...] | int, dtype: Any = "f8", *,
                     chunks: tuple[int, ...] | None = None, fill_value: object = None,
                     codec: Codec | None = None) -> Array:
        """Create an empty array (every element reads as ``fill_value``) to fill chunk by chunk.

        Example
        -------
        >>> arr = tree.create_array("/big", shape=(100_000, 512), dtype="f4", chunks=(1024, 512))
        >>> arr[0:1024] = np.ones((1024, 512), "f4")
        """
        row, path = self._resolve(key)
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        with self._context(row, path), self._ops.db.transaction():
            meta = self._ops.arrays.create(shape_t, np.dtype(dtype), chunks, codec, fill_value)
            node_id = self._ops.set(row.tree_id, path, ArrayIdRef(meta.array_id))
            return Array(self._ops.db, meta.array_id, NodeOwner(self._ops, node_id))


class DictNode(Node, MutableMapping[str, Any]):
    """A dict inside a tree: a MutableMapping whose keys keep their insertion order."""

    __slots__ = ()

    def __iter__(self) -> Iterator[str]:
        return iter([r.key for r in self._ops.nodes.children(self._row().node_id)])  # type: ignore[misc]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self._lookup(key)[2] is not None

    def keys(self) -> list[str]:  # type: ignore[override]
        return list(self)

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        with self._ops.db._store.snapshot():
            return [(r.key, self._ops.value_of(r)) for r in self._ops.nodes.children(self._row().node_id)]  # type: ignore[misc]

    def values(self) -> list[Any]:  # type: ignore[override]
        return [v for _, v in self.items()]


class ListNode(Node, MutableSequence[Any]):
    """A list inside a tree: a MutableSequence (append, insert, negative indices, ...)."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            items = self._items()
            return [items[i] for i in range(*key.indices(len(items)))]
        return super().__getitem__(key)

    def _items(self) -> list[Any]:
        with self._ops.db._store.snapshot():
            return [self._ops.value_of(r) for r in self._ops.nodes.children(self._row().node_id)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def insert(self, index: int, value: object) -> None:
        row = self._row()
        with self._context(row):
            self._ops.insert_item(row, index, value)

    def append(self, value: object) -> None:
        row = self._row()
        with self._context(row):
            self._ops.insert_item(row, self._ops.nodes.count_children(row.node_id), value)


class Tree(SubtreeHandle):
    """A named tree of the database (lazy handle; nothing is loaded until asked).

    Example
    -------
    >>> tree = db["sample037"]
    >>> tree["time"]
    51
    >>> tree["/data/points"][:2]
    array([[0., 0., 0.], [1., 0., 0.]], dtype=float32)
    >>> tree.move("/data/inlet", "/data/inflow")
    """

    __slots__ = ("_ops", "_tree_id")

    def __init__(self, ops: TreeOps, tree_id: int) -> None:
        self._ops = ops
        self._tree_id = tree_id

    def _root(self) -> NodeRow:
        self._ops.conn.ensure_usable()
        row = self._ops.nodes.row_at(self._tree_id, "")
        if row is None:
            name = self._ops.tree_name(self._tree_id)
            if name is not None:
                raise CorruptionError(f"{self._ops.db.filename}: {name}: the tree has no root node")
            raise StaleHandleError("this tree was deleted")
        return row

    def _node(self) -> Node:
        return self._container(self._root())

    def _container(self, root: NodeRow) -> Node:
        if root.kind not in CONTAINER_KINDS:
            raise TypeError(f"tree {self.name!r} holds a single {root.kind}, not a dict or list")
        return self._ops.value_of(root)  # type: ignore[no-any-return]

    def _subtree_ref(self) -> tuple[Any, int, str]:
        self._root()
        return self._ops.db, self._tree_id, ""

    def __getstate__(self) -> tuple[Any, int]:
        return self._ops.db._reopen_state(), self._tree_id

    def __setstate__(self, state: tuple[Any, int]) -> None:
        self._ops = _reopen_ops(state[0])
        self._tree_id = state[1]

    def _context(self, path: str | None = None) -> Any:
        return context(self._ops.db.filename, locate=lambda: (self._ops.tree_name(self._tree_id), None))

    @property
    def name(self) -> str:
        name = self._ops.tree_name(self._tree_id)
        if name is None:
            raise StaleHandleError("this tree was deleted")
        return name

    @property
    def kind(self) -> str:
        """The kind of the root value (``dict``, ``list``, or a scalar/array kind)."""
        return self._root().kind

    @property
    def root(self) -> Any:
        """The root as indexing returns values: a Node, an Array or a Python scalar."""
        return self._ops.value_of(self._root())

    def __repr__(self) -> str:
        try:
            root = self._root()
            n = self._ops.conn.scalar("SELECT count(*) FROM node WHERE tree_id = ?", (self._tree_id,))
            return f'<tensordb.Tree "{self.name}" {root.kind} root, {n} nodes>'
        except TensorDBError:
            return "<tensordb.Tree (deleted or closed)>"

    def _repr_html_(self) -> str:
        try:
            root = self.root
            title = f'tensordb.Tree "{self.name}"'
            return _html_node(title, root) if isinstance(root, Node) else _html_leaf(title, root)
        except TensorDBError:
            return "<p>tensordb.Tree (deleted or closed)</p>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tree) and other._ops is self._ops and other._tree_id == self._tree_id

    def __hash__(self) -> int:
        return hash((id(self._ops), self._tree_id))

    # -- container protocol, delegated to the root node -----------------------------

    def __getitem__(self, key: Any) -> Any:
        if key == "":
            return self.root
        root = self._root()
        return self._container(root)._get(key, root)  # the root row is read once

    def __setitem__(self, key: Any, value: object) -> None:
        if key == "":
            with self._context(""):
                self._ops.set(self._tree_id, "", value)
            return
        self._node()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._node()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._node()  # type: ignore[operator]

    def __len__(self) -> int:
        return len(self._node())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._node())

    def keys(self) -> list[str]:
        return self._node().keys()  # type: ignore[attr-defined,no-any-return]

    def values(self) -> list[Any]:
        return self._node().values()  # type: ignore[attr-defined,no-any-return]

    def items(self) -> list[tuple[str, Any]]:
        return self._node().items()  # type: ignore[attr-defined,no-any-return]

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def append(self, value: object) -> None:
        self._node().append(value)  # type: ignore[attr-defined]

    def insert(self, index: int, value: object) -> None:
        self._node().insert(index, value)  # type: ignore[attr-defined]

    # -- whole-tree operations -------------------------------------------------------

    def load(self, lazy: bool = False) -> Any:
        """The whole tree as plain Python values: dicts, lists, scalars and numpy arrays.

        With ``lazy=True`` arrays come back as :class:`tensordb.Array` handles.
        """
        with self._context(""):
            self._root()  # a deleted tree is a stale handle, not a missing path
            return self._ops.load(self._tree_id, "", lazy)

    def set(self, path: str, value: object, *, chunks: tuple[int, ...] | None = None,
            codec: Codec | None = None) -> None:
        """Set ``value`` at ``path`` with a chunk shape and/or codec for its arrays.

        Example
        -------
        >>> tree.set("/f", data, chunks=(4096,), codec=tensordb.Codec("zstd", level=5, shuffle="bit"))
        """
        if path == "":
            with self._context(""):
                self._ops.set(self._tree_id, "", value, chunks, codec)
            return
        self._node().set(path, value, chunks=chunks, codec=codec)

    def create_array(self, path: str, shape: tuple[int, ...] | int, dtype: Any = "f8", *,
                     chunks: tuple[int, ...] | None = None, fill_value: object = None,
                     codec: Codec | None = None) -> Array:
        """Create an array at ``path`` to be written chunk by chunk (see :meth:`Node.create_array`)."""
        return self._node().create_array(path, shape, dtype, chunks=chunks, fill_value=fill_value, codec=codec)

    def move(self, src: str, dst: str) -> None:
        """Move the subtree at JSON Pointer ``src`` to ``dst`` (metadata only; no array bytes move).

        Follows JSON Patch: ``dst``'s parent must exist; an existing dict entry
        at ``dst`` is replaced; a list index at ``dst`` inserts there.
        """
        src_path, dst_path = paths.join(paths.split(src)), paths.join(paths.split(dst))
        with self._context(src_path):
            self._ops.move(self._tree_id, src_path, dst_path)


#: Children listed by a handle's notebook repr before "… N more".
_HTML_CHILDREN = 50


def _html_node(title: str, node: Node) -> str:
    """A collapsed tree: the title, and inside it a table of the node's children."""
    entries: list[tuple[Any, Any]] = []
    if isinstance(node, DictNode):
        entries = list(node.items())
    elif isinstance(node, ListNode):
        entries = list(enumerate(node._items()))
    rows = [(key, *_html_cells(value)) for key, value in entries[:_HTML_CHILDREN]]
    more = f"<p>… {len(entries) - _HTML_CHILDREN} more</p>" if len(entries) > _HTML_CHILDREN else ""
    summary = f"{html.escape(title)}: {node.kind} of {len(entries)} items"
    return f"<details><summary>{summary}</summary>{html_table(rows, ('key', 'kind', 'content'))}{more}</details>"


def _html_leaf(title: str, value: Any) -> str:
    return f"<p>{html.escape(title)}</p>" + html_table([_html_cells(value)], ("kind", "content"))


def _html_cells(value: Any) -> tuple[str, str]:
    """(kind, content) of one child as the notebook table shows it."""
    if isinstance(value, Node):
        return value.kind, f"{len(value)} items"
    if isinstance(value, Array):
        return "array", f"{value.shape} {value.dtype}, {human_size(value.nbytes)}"
    text = repr(value)
    return type(value).__name__, text if len(text) <= 80 else text[:79] + "…"
