"""Tree and Node handles: lazy, cheap, and shaped like Python's own containers.

A :class:`Node` designates a dict or list inside a tree (``DictNode`` is a
MutableMapping, ``ListNode`` a MutableSequence); a :class:`Tree` designates
a named tree and acts as its root node. Handles hold ids, not data: every
access reads the current rows through the tree service (:mod:`.service`).
Indexing takes a key (``node["data"]``), a list index (``node[0]``) or a
JSON Pointer relative to the node (``node["/data/points"]``; ``""`` is the
node itself). ``keys()``, ``values()`` and ``items()`` are views, like a
dict's (:mod:`.views`): they read the current children whenever they are used.

Tree and Node share one implementation of the container API, the
:class:`ContainerHandle` base, written over "the row this handle
designates": a node's row for a Node, the root row for a Tree.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, MutableSequence, ValuesView
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, SupportsInt, TypeGuard, cast

from ..errors import CorruptionError, PathNotFoundError, StaleHandleError, TensorDBError, context
from . import paths
from .nodes import ArrayIdRef, NodeRow, NodeTable, SubtreeHandle
from .service import TreeService, array_id_of, list_index
from .values import array_handle_types, numpy_if_loaded
from .views import NodeItemsView, NodeKeysView, NodeValuesView

if TYPE_CHECKING:
    from ..arrays.array import Array
    from ..codec import Codec

__all__ = ["Tree", "Node", "DictNode", "ListNode", "ContainerHandle", "value_of"]


def value_of(service: TreeService, row: NodeRow) -> Any:
    """What indexing returns: a handle for containers and arrays, a Python value for scalars."""
    if row.kind == "dict":
        return DictNode(service, row.node_id)
    if row.kind == "list":
        return ListNode(service, row.node_id)
    if row.kind == "array" and row.dtype is None:
        return service.array_handle(array_id_of(row), row.node_id)
    return service.scalar_of(row)  # numpy scalars are stored as 0-d arrays


class ContainerHandle(SubtreeHandle):
    """The container API shared by :class:`Node` and :class:`Tree`.

    Everything here works on :meth:`_row`, the row of the container the
    handle designates. The dict half (``_keys``, ``_has_key``,
    ``_pairs``) and the list half (``_values``, ``_insert``) are used by
    ``DictNode``/``ListNode`` by their class and by a ``Tree`` by the kind
    of its root.
    """

    __slots__ = ()

    _ops: TreeService

    @abstractmethod
    def _row(self) -> NodeRow:
        """The current row of the designated container (StaleHandleError if gone)."""

    @abstractmethod
    def _locate(self, row: NodeRow | None) -> tuple[str | None, None]:
        """(tree name, None) for error messages: tree operations name the path themselves."""

    def _context(self, row: NodeRow | None = None) -> AbstractContextManager[None]:
        return context(self._ops.filename, locate=lambda: self._locate(row))

    def _subtree_ref(self) -> tuple[NodeTable, int, str]:
        row = self._row()
        return self._ops.nodes, row.tree_id, row.path

    # -- resolving keys ------------------------------------------------------------------

    def _resolve(self, key: object, existing: bool = False) -> tuple[NodeRow, str]:
        """(this container's row, absolute path that ``self[key]`` designates).

        With ``existing``, a pointer-like key of a dict that designates nothing
        falls back to the literal key, so that every key ``iter()`` yields
        (even ``""`` or ``"/x"``) can be read back with ``node[key]``.
        """
        row, path, _ = self._lookup(key, existing)
        return row, path

    def _lookup(self, key: object, existing: bool = True) -> tuple[NodeRow, str, NodeRow | None]:
        """:meth:`_resolve` plus the row found at the path (None if absent or not looked up)."""
        row = self._row()
        if row.kind not in ("dict", "list") and not (isinstance(key, str) and key == ""):
            # a tree's root may be a single value: only "" designates something in it
            raise TypeError(f"{row.path or '(root)'}: a single {row.kind}, not a dict or list, has no children")
        if _is_int(key) and row.kind == "list":
            key = list_index(int(key), self._ops.nodes.count_children(row.node_id), False, row.path)
        path = _pointer(row.path, key, row.kind)
        if not existing:
            return row, path, None
        found = self._ops.nodes.row_at(row.tree_id, path)
        if found is None and row.kind == "dict" and isinstance(key, str) and paths.is_pointer(key):
            literal = paths.child(row.path, key)
            found = self._ops.nodes.row_at(row.tree_id, literal)
            if found is not None:
                return row, literal, found
        return row, path, found

    def _container(self, kind: str) -> NodeRow:
        """This container's row, which must be a ``kind`` (a dict or a list)."""
        row = self._row()
        if row.kind != kind:
            raise TypeError(f"{row.path or '(root)'}: a {row.kind}, not a {kind}")
        return row

    # -- access ----------------------------------------------------------------------------

    def _direct_row(self, key: object) -> NodeRow | None:
        """The row ``self[key]`` designates, when one query can find it (only a Tree can).

        None when it cannot tell (a key that could be a list index or needs
        escaping, no such row): the caller then resolves ``key`` the long
        way, which also names what is wrong.
        """
        return None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            items = self._values()
            return [items[i] for i in range(*key.indices(len(items)))]
        found = self._direct_row(key)
        if found is not None:
            with self._context(found):
                return value_of(self._ops, found)
        row, path, found = self._lookup(key)
        with self._context(row):
            if found is None:
                raise PathNotFoundError(f"{path or '(root)'}: no such path")
            return value_of(self._ops, found)

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def __setitem__(self, key: Any, value: object) -> None:
        row, path = self._resolve(key)
        with self._context(row):
            self._ops.set(row.tree_id, path, value)

    def __delitem__(self, key: Any) -> None:
        row, path = self._resolve(key, existing=True)
        with self._context(row):
            self._ops.delete(row.tree_id, path)

    def __len__(self) -> int:
        row = self._row()
        if row.kind not in ("dict", "list"):
            raise TypeError(f"{row.path or '(root)'}: a single {row.kind} has no length")
        return self._ops.nodes.count_children(row.node_id)

    def load(self, lazy: bool = False) -> Any:
        """This subtree as plain Python values: dicts, lists, scalars and numpy arrays.

        With ``lazy=True`` arrays come back as :class:`tensordb.Array` handles.
        """
        with self._context():  # a deleted tree or node is named too
            row = self._row()
            return self._ops.load(row.tree_id, row.path, lazy)

    def set(self, key: Any, value: object, *, chunks: tuple[int, ...] | None = None,
            codec: Codec | None = None) -> None:
        """Like ``node[key] = value``, with a chunk shape and codec for the arrays in ``value``.

        Example
        -------
        >>> tree.set("/f", data, chunks=(4096,), codec=tensordb.Codec("zstd", level=5, shuffle="bit"))
        """
        row, path = self._resolve(key)
        with self._context(row):
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
        import numpy as np  # deferred: start-up cost (see tensordb.trees.values.numpy_if_loaded)

        row, path = self._resolve(key)
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        with self._context(row), self._ops.transaction():
            meta = self._ops.arrays.create(shape_t, np.dtype(dtype), chunks, codec, fill_value)
            node_id = self._ops.set(row.tree_id, path, ArrayIdRef(meta.array_id))
            return self._ops.array_handle(meta.array_id, node_id)

    # -- the dict half -----------------------------------------------------------------------

    def _keys(self) -> list[str]:
        return [_key(r) for r in self._ops.nodes.children(self._container("dict").node_id)]

    def _has_key(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key)[2] is not None

    def _pairs(self) -> list[tuple[str, Any]]:
        with self._ops.snapshot():
            rows = self._ops.nodes.children(self._container("dict").node_id)
            return [(_key(r), value_of(self._ops, r)) for r in rows]

    # -- the list half -----------------------------------------------------------------------

    def _values(self) -> list[Any]:
        with self._ops.snapshot():
            rows = self._ops.nodes.children(self._container("list").node_id)
            return [value_of(self._ops, r) for r in rows]

    def _insert(self, index: int, value: object) -> None:
        row = self._container("list")
        with self._context(row):
            self._ops.insert_item(row, index, value)

    def _append(self, value: object) -> None:
        row = self._container("list")
        with self._context(row):
            self._ops.insert_item(row, self._ops.nodes.count_children(row.node_id), value)


# -- nodes -------------------------------------------------------------------------------


class Node(ContainerHandle):
    """A dict or list inside a tree (lazy handle). See :class:`DictNode` and :class:`ListNode`."""

    __slots__ = ("_ops", "_node_id")

    def __init__(self, ops: TreeService, node_id: int) -> None:
        self._ops = ops
        self._node_id = node_id

    def _row(self) -> NodeRow:
        self._ops.conn.ensure_usable()
        row = self._ops.nodes.row(self._node_id)
        if row is None:
            raise StaleHandleError("this node was deleted or replaced; get a new handle from the tree")
        return row

    def _locate(self, row: NodeRow | None) -> tuple[str | None, None]:
        found = row or self._ops.nodes.row(self._node_id)
        return (self._ops.tree_name(found.tree_id) if found else None), None

    def __getstate__(self) -> tuple[Any, int]:
        return self._ops.host._reopen_state(), self._node_id

    def __setstate__(self, state: tuple[Any, int]) -> None:
        self._ops = _reopen(state[0])
        self._node_id = state[1]

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
            return _html_node(f'tensordb.Node "{row.path}" in tree "{self._ops.tree_name(row.tree_id)}"', self)
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


class DictNode(Node, MutableMapping[str, Any]):
    """A dict inside a tree: a MutableMapping whose keys keep their insertion order."""

    __slots__ = ()

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __contains__(self, key: object) -> bool:
        return self._has_key(key)

    def keys(self) -> KeysView[str]:
        """A view of the keys, in insertion order, read whenever it is used."""
        return NodeKeysView(self)

    def values(self) -> ValuesView[Any]:
        """A view of the values (handles for containers and arrays), read whenever it is used."""
        return NodeValuesView(self)

    def items(self) -> ItemsView[str, Any]:
        """A view of the ``(key, value)`` pairs, read whenever it is used."""
        return NodeItemsView(self)


class ListNode(Node, MutableSequence[Any]):
    """A list inside a tree: a MutableSequence (append, insert, negative indices, slices, ...)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values())

    def insert(self, index: int, value: object) -> None:
        self._insert(index, value)

    def append(self, value: object) -> None:
        self._append(value)


# -- trees -------------------------------------------------------------------------------


class Tree(ContainerHandle):
    """A named tree of the database (lazy handle; nothing is loaded until asked), acting as its root.

    A tree offers its root's container API (``tree["/a/b"]``, ``len``,
    ``iter``, ``in``, ``keys()``/``values()``/``items()`` for a dict root,
    ``append``/``insert`` for a list root, ``load``, ``set``, assignment and
    deletion), from the same code as a :class:`Node`. It is not itself a
    ``Node``, unlike h5py's ``File``, which is a ``Group``: a tree's root may
    be a dict, a list or a single value, and a handle on the tree follows
    the root when it is replaced (``tree[""] = [...]``, ``db[name] = ...``)
    whereas a Node handle designates one dict or one list for its whole life.
    ``tree.root`` is the root as a Node (or the value of a single-value tree).

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

    def __init__(self, ops: TreeService, tree_id: int) -> None:
        self._ops = ops
        self._tree_id = tree_id

    def _direct_row(self, key: object) -> NodeRow | None:
        if type(key) is not str or not key:
            return None
        if key[0] == "/":  # a pointer: paths are stored in canonical form, so a row at it is its node
            self._ops.conn.ensure_usable()
            return self._ops.nodes.row_at(self._tree_id, key)
        if not key.isdigit() and "/" not in key and "~" not in key:  # only a dict root has an entry "/<key>"
            self._ops.conn.ensure_usable()
            return self._ops.nodes.root_entry(self._tree_id, "/" + key)
        return None

    def _row(self) -> NodeRow:
        self._ops.conn.ensure_usable()
        row = self._ops.nodes.row_at(self._tree_id, "")
        if row is None:
            name = self._ops.tree_name(self._tree_id)
            if name is not None:
                raise CorruptionError(f"{self._ops.filename}: {name}: the tree has no root node")
            raise StaleHandleError("this tree was deleted")
        return row

    def _locate(self, row: NodeRow | None) -> tuple[str | None, None]:
        return self._ops.tree_name(self._tree_id), None

    def __getstate__(self) -> tuple[Any, int]:
        return self._ops.host._reopen_state(), self._tree_id

    def __setstate__(self, state: tuple[Any, int]) -> None:
        self._ops = _reopen(state[0])
        self._tree_id = state[1]

    @property
    def name(self) -> str:
        name = self._ops.tree_name(self._tree_id)
        if name is None:
            raise StaleHandleError("this tree was deleted")
        return name

    @property
    def kind(self) -> str:
        """The kind of the root value (``dict``, ``list``, or a scalar/array kind)."""
        return self._row().kind

    @property
    def root(self) -> Any:
        """The root as indexing returns values: a Node, an Array or a Python scalar."""
        return value_of(self._ops, self._row())

    def __repr__(self) -> str:
        try:
            root = self._row()
            n = self._ops.nodes.count_in_tree(self._tree_id)
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

    # -- the dict or list API, by the kind of the root -----------------------------------

    def __iter__(self) -> Iterator[Any]:
        """The keys of a dict root, the items of a list root."""
        return iter(self._values() if self._row().kind == "list" else self._keys())

    def __contains__(self, key: object) -> bool:
        if self._row().kind == "list":
            return any(v is key or v == key for v in self._values())
        return self._has_key(key)

    def keys(self) -> KeysView[str]:
        """A view of the root dict's keys (TypeError for a list root)."""
        self._container("dict")
        return NodeKeysView(self)

    def values(self) -> ValuesView[Any]:
        """A view of the root dict's values (TypeError for a list root)."""
        self._container("dict")
        return NodeValuesView(self)

    def items(self) -> ItemsView[str, Any]:
        """A view of the root dict's ``(key, value)`` pairs (TypeError for a list root)."""
        self._container("dict")
        return NodeItemsView(self)

    def append(self, value: object) -> None:
        """Append to a list root (TypeError for a dict root)."""
        self._append(value)

    def insert(self, index: int, value: object) -> None:
        """Insert into a list root (TypeError for a dict root)."""
        self._insert(index, value)

    def move(self, src: str, dst: str) -> None:
        """Move the subtree at JSON Pointer ``src`` to ``dst`` (metadata only; no array bytes move).

        Follows JSON Patch: ``dst``'s parent must exist; an existing dict entry
        at ``dst`` is replaced; a list index at ``dst`` inserts there.
        """
        src_path, dst_path = paths.join(paths.split(src)), paths.join(paths.split(dst))
        with self._context():
            self._ops.move(self._tree_id, src_path, dst_path)


def _key(row: NodeRow) -> str:
    if not isinstance(row.key, str):
        raise CorruptionError(f"{row.path}: a dict entry without a str key")
    return row.key


def _reopen(db_state: Any) -> TreeService:
    """The tree service of the read-only database a pickled handle reopens.

    The database (or, if it cannot be reopened, a stand-in whose every use
    raises why) keeps its tree service as ``_trees``.
    """
    reopener, args = db_state  # see arrays.array.reopen
    host: Any = reopener(args)
    return cast(TreeService, host._trees)


def _is_int(key: object) -> TypeGuard[SupportsInt]:
    """Whether ``key`` is a list index: an int or numpy integer, not a bool."""
    if isinstance(key, int):
        return not isinstance(key, bool)
    numpy = numpy_if_loaded()
    return numpy is not None and isinstance(key, numpy.integer)


def _pointer(base: str, key: object, kind: str) -> str:
    """The absolute path that ``node[key]`` designates."""
    if paths.is_pointer(key):
        return base + paths.join(paths.split(str(key)))
    if _is_int(key):
        if kind != "list":
            raise TypeError(f"{base or '(root)'}: a {kind} is indexed by str keys, not ints")
        return paths.child(base, int(key))
    if isinstance(key, str):
        if kind == "list" and not key.isdigit() and key != "-":
            raise TypeError(f"{base or '(root)'}: a list is indexed by ints, not {key!r}")
        return paths.child(base, key)
    raise TypeError(f"invalid index {key!r}: use a str key, an int list index or a JSON Pointer")


# The notebook reprs import html (and its entity table) when first shown, not with the handles.

#: Children listed by a handle's notebook repr before "… N more".
_HTML_CHILDREN = 50


def _html_node(title: str, node: Node) -> str:
    """A collapsed tree: the title, and inside it a table of the node's children."""
    import html

    from ..arrays.html import html_table

    entries: list[tuple[Any, Any]] = node._pairs() if node.kind == "dict" else list(enumerate(node._values()))
    rows = [(key, *_html_cells(value)) for key, value in entries[:_HTML_CHILDREN]]
    more = f"<p>… {len(entries) - _HTML_CHILDREN} more</p>" if len(entries) > _HTML_CHILDREN else ""
    summary = f"{html.escape(title)}: {node.kind} of {len(entries)} items"
    return f"<details><summary>{summary}</summary>{html_table(rows, ('key', 'kind', 'content'))}{more}</details>"


def _html_leaf(title: str, value: Any) -> str:
    import html

    from ..arrays.html import html_table

    return f"<p>{html.escape(title)}</p>" + html_table([_html_cells(value)], ("kind", "content"))


def _html_cells(value: Any) -> tuple[str, str]:
    """(kind, content) of one child as the notebook table shows it."""
    if isinstance(value, Node):
        return value.kind, f"{len(value)} items"
    if isinstance(value, array_handle_types()):
        from ..arrays.html import human_size

        return "array", f"{value.shape} {value.dtype}, {human_size(value.nbytes)}"
    text = repr(value)
    return type(value).__name__, text if len(text) <= 80 else text[:79] + "…"
