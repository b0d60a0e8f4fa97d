"""The tree service: the edits and reads behind the handles, over the tree and node tables.

One :class:`TreeService` per database. It is given what it works on, the
storage :class:`~tensordb.storage.store.Store`, and the host that
:class:`~tensordb.arrays.array.Array` handles live in, whose ``arrays`` is the
database's :class:`~tensordb.arrays.store.ArrayStore` (set up, and numpy
imported, on first use: scalars and structure never need it). It knows nothing of
the Tree and Node handles (:mod:`.handles`) built on it. Statements go
through the two tables' modules: :mod:`.catalog` (the ``tree`` table) and
:mod:`.nodes` (the ``node`` table). Errors are raised bare; handles add the
file and tree.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..errors import CorruptionError, PathNotFoundError, ReadOnlyError, StaleHandleError
from ..storage.store import Store
from . import paths
from .catalog import TreeCatalog
from .nodes import ManyTrees, NodeRow, NodeTable
from .values import NodeSpec, collector_paused, decode_scalar

if TYPE_CHECKING:
    import numpy as np

    from ..arrays.array import Array, ArrayHost
    from ..arrays.store import ArrayRef, ArrayStore
    from ..codec import Codec

__all__ = ["TreeService", "NodeOwner", "array_id_of", "list_index"]


class TreeService:
    """Tree-level operations shared by the handles of one database."""

    def __init__(self, store: Store, host: ArrayHost) -> None:
        self.store = store
        self.conn = store.conn
        self.filename = store.filename
        self.host = host
        self.catalog = TreeCatalog(store.conn)
        self.nodes = NodeTable(store.conn, lambda: host.arrays)
        self.many = ManyTrees(store.conn)

    @property
    def arrays(self) -> ArrayStore:
        """The database's ArrayStore (its host sets it up on first use)."""
        return self.host.arrays

    def transaction(self) -> AbstractContextManager[None]:
        """An atomic block (a savepoint when nested); ReadOnlyError in a read-only database."""
        if self.store.readonly:
            raise ReadOnlyError(f"{self.filename}: database is open read-only")
        return self.store.transaction()

    def snapshot(self) -> AbstractContextManager[None]:
        """A read transaction: every read inside sees one commit."""
        return self.store.snapshot()

    def tree_name(self, tree_id: int) -> str | None:
        return self.catalog.name_of(tree_id)

    def touch(self, tree_id: int) -> None:
        self.catalog.touch(tree_id)

    # -- whole trees ---------------------------------------------------------------

    def assign(self, name: str, value: object) -> int:
        """Store ``value`` as the tree ``name``, created or replaced; returns its id."""
        with self.transaction():
            tree_id = self.catalog.id_of(name)
            if tree_id is None:
                tree_id = self.catalog.create(name)
            self.set(tree_id, "", value)
            return tree_id

    def delete_tree(self, tree_id: int) -> None:
        with self.transaction():
            self.nodes.delete_tree(tree_id)
            self.catalog.delete(tree_id)

    # -- values ------------------------------------------------------------------

    def array_handle(self, array_id: int, node_id: int) -> Array:
        """The lazy handle on the array a node holds."""
        from ..arrays.array import Array  # deferred, with numpy: start-up cost (see the module docstring)

        return Array(self.host, array_id, NodeOwner(self, node_id))

    def scalar_of(self, row: NodeRow) -> Any:
        """The Python value of a scalar node, or the numpy scalar stored as a 0-d array."""
        if row.kind == "array":
            with self.snapshot():  # metadata and chunks from one commit
                return self.arrays.read(self.arrays.meta(array_id_of(row)), ())
        return decode_scalar(row.kind, row.value, row.exact, row.dtype)

    def load(self, tree_id: int, path: str, lazy: bool) -> Any:
        """The subtree at ``path`` as plain Python values.

        One query for the structure; if it holds arrays to read (unless
        ``lazy``: numpy scalars only), one for their records and chunk records.
        """
        with self.snapshot():
            rows = self.nodes.subtree(tree_id, path)
            if not rows:
                raise PathNotFoundError(f"{path or '(root)'}: no such path")
            if rows[0].path != path:
                raise CorruptionError(f"{path or '(root)'}: the node rows of this subtree have no root")
            to_read = any(row.kind == "array" and (not lazy or row.dtype is not None) for row in rows)
            arrays = self._read_arrays(tree_id, path, lazy) if to_read else {}
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
                    value = arrays.get(array_id_of(row))
                    if value is None:
                        raise CorruptionError(f"{row.path or '(root)'}: array {row.array_id} does not exist")
                    if row.dtype is not None:
                        value = value[()]
                elif row.kind == "array":
                    value = self.array_handle(array_id_of(row), row.node_id)
                else:
                    value = decode_scalar(row.kind, row.value, row.exact, row.dtype)
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
        return self.arrays.read_where(ids_sql, params)

    # -- edits -------------------------------------------------------------------

    def set(self, tree_id: int, path: str, value: object, chunks: tuple[int, ...] | None = None,
            codec: Codec | None = None) -> int:
        """Set or replace the value at ``path`` (its parent must exist); returns the node id."""
        with collector_paused():
            return self._set(tree_id, path, value, chunks, codec)

    def _set(self, tree_id: int, path: str, value: object, chunks: tuple[int, ...] | None,
             codec: Codec | None) -> int:
        specs = self.nodes.prepare(value, path)
        with self.transaction():
            if path == "":
                return self._replace_root(tree_id, specs, chunks, codec)
            parent, key, pos, existing, path = self.slot(tree_id, path)
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

    def _replace_root(self, tree_id: int, specs: list[NodeSpec], chunks: tuple[int, ...] | None,
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
        self.catalog.set_root(tree_id, root_id)
        return root_id

    def slot(self, tree_id: int, path: str) -> tuple[NodeRow, str | None, int, NodeRow | None, str]:
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
            index = list_index(token, n, allow_end=True, where=parent_path)
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
        with self.transaction():
            n = self.nodes.count_children(list_row.node_id)
            index = max(0, min(n, index + n if index < 0 else index))
            self.nodes.shift_list(list_row, index, +1)
            self.nodes.insert(specs, list_row.tree_id, list_row.node_id, paths.child(list_row.path, index), None, index)
            self.touch(list_row.tree_id)

    def delete(self, tree_id: int, path: str) -> None:
        with self.transaction():
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
        with self.transaction():
            row = self.require(tree_id, src)
            old_parent = self.nodes.row(row.parent_id)
            if old_parent is not None and old_parent.kind == "dict" and not src.startswith(dst + "/"):
                # No list renumbering can shift the destination: one pass over the subtree.
                parent, key, pos, existing, dst = self.slot(tree_id, dst)
                if parent.kind == "dict":
                    if existing is not None:
                        self.nodes.delete_subtree(tree_id, dst)
                    self.nodes.rewrite_prefix(tree_id, src, dst)
                    self._attach(row, parent, key, pos)
                    return
            scratch = self.nodes.scratch_path(src)
            self.nodes.rewrite_prefix(tree_id, src, scratch)
            # detached while parked, so that renumbering the lists involved leaves it alone
            self.nodes.attach(row.node_id, None, row.key, row.pos)
            if old_parent is not None and old_parent.kind == "list":
                self.nodes.shift_list(old_parent, row.pos + 1, -1)
            parent, key, pos, existing, dst = self.slot(tree_id, dst)
            if parent.kind == "list":
                self.nodes.shift_list(parent, pos, +1)
            elif existing is not None:
                self.nodes.delete_subtree(tree_id, dst)
            self.nodes.rewrite_prefix(tree_id, scratch, dst)
            self._attach(row, parent, key, pos)

    def _attach(self, row: NodeRow, parent: NodeRow, key: str | None, pos: int) -> None:
        """Give a moved subtree root its new parent, key and position."""
        self.nodes.attach(row.node_id, parent.node_id, key, pos)
        self.touch(row.tree_id)


class NodeOwner:
    """The node that holds an array: follows it for reads, clones the array before a shared write."""

    __slots__ = ("service", "node_id")

    def __init__(self, service: TreeService, node_id: int) -> None:
        self.service = service
        self.node_id = node_id

    def _row(self) -> NodeRow:
        row = self.service.nodes.row(self.node_id)
        if row is None or row.array_id is None:
            raise StaleHandleError("the array's node was deleted or replaced; get a new handle from the tree")
        return row

    def current_array(self) -> int:
        return int(self._row().array_id)

    def exclusive_array(self) -> int:
        row = self._row()
        array_id = int(row.array_id)
        arrays = self.service.arrays
        if arrays.must_copy_before_write(array_id):
            array_id = arrays.clone(arrays.meta(array_id)).array_id
            self.service.nodes.set_array(self.node_id, array_id)
        self.service.touch(row.tree_id)
        return array_id

    def array_ref(self) -> ArrayRef:
        return "SELECT array_id FROM node WHERE node_id = ?", (self.node_id,)

    def location(self) -> tuple[str | None, str | None]:
        row = self.service.nodes.row(self.node_id)
        if row is None:
            return None, None
        return self.service.tree_name(row.tree_id), row.path


def _check_child(row: NodeRow, made: dict[int, Any], made_paths: dict[int, str]) -> None:
    """A loaded row must be a dict entry or list item of a container loaded before it, at the right path."""
    parent = made.get(row.parent_id) if type(row.parent_id) is int and type(row.pos) is int else None
    key = row.key
    if type(parent) is dict and type(key) is str:
        # Most keys need no escaping: skip paths.child's two replaces for them.
        token = key if "~" not in key and "/" not in key else paths.escape(key)
    elif type(parent) is list and key is None:
        token = str(row.pos)
    else:
        raise CorruptionError(f"{row.path}: node {row.node_id} does not hang under a dict or list of its subtree")
    if row.path != made_paths[row.parent_id] + "/" + token:
        expected = made_paths[row.parent_id] + "/" + token
        raise CorruptionError(f"{row.path}: node {row.node_id} should be at {expected} (parent, key and path disagree)")


def array_id_of(row: NodeRow) -> int:
    """The array id of an array node (CorruptionError if the row holds no valid one)."""
    if type(row.array_id) is not int:
        raise CorruptionError(f"{row.path or '(root)'}: an array node without a valid array id")
    return row.array_id


def list_index(token: str | int, n: int, allow_end: bool, where: str) -> int:
    """The index a list of length ``n`` gives ``token`` (``-``, the end, with ``allow_end``)."""
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
