"""Set-based restructures: one edit applied to many trees with a few statements.

``db.move(src, dst, trees=PATTERN)`` and ``db.set(path, value, trees=PATTERN)``
do in one transaction what a loop over ``tree.move`` / ``tree[path] = value``
does, but the common case (a dict entry moved to, or a scalar set in, a dict)
costs a fixed number of statements whatever the number of trees: one query
finds every tree's rows, one ``UPDATE`` rewrites the paths of every moved
node, one more re-attaches the roots. Trees where the edit
involves a list (positions must be renumbered) take the per-tree path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import PathNotFoundError
from . import paths
from .nodes import _IN_SUBTREE, _nbytes, _subtree_params

if TYPE_CHECKING:
    from .tree import TreeOps

__all__ = ["move_in_trees", "set_in_trees"]

_ALL_TREES = "*"
# How many offending trees an error names before it says "and N more".
_NAMED = 5


class _Slot(NamedTuple):
    """Per tree: where the edited node is and where it goes."""

    tree_id: int
    name: str
    src_id: int | None  # the node at the source path (moves only)
    src_parent_kind: str | None
    parent_id: int | None  # the destination's parent
    parent_kind: str | None
    existing_id: int | None  # a node already at the destination
    existing_pos: int | None
    next_pos: int  # the end of the destination's parent


def _slots(ops: TreeOps, trees: str | None, src: str | None, dst: str) -> list[_Slot]:
    """One query: the rows involved in every tree whose name matches ``trees``."""
    dst_parent, _ = paths.parent(dst)
    rows = ops.conn.execute(
        """SELECT t.tree_id, t.name, s.node_id, sp.kind, p.node_id, p.kind, d.node_id, d.pos,
                  (SELECT coalesce(max(c.pos) + 1, 0) FROM node c WHERE c.parent_id = p.node_id)
           FROM tree t
           LEFT JOIN node s ON s.tree_id = t.tree_id AND s.path = :src
           LEFT JOIN node sp ON sp.node_id = s.parent_id
           LEFT JOIN node p ON p.tree_id = t.tree_id AND p.path = :parent
           LEFT JOIN node d ON d.tree_id = t.tree_id AND d.path = :dst
           WHERE t.name GLOB :trees ORDER BY t.tree_id""",
        {"src": src, "parent": dst_parent, "dst": dst, "trees": _ALL_TREES if trees is None else trees},
    ).fetchall()
    return [_Slot(*row) for row in rows]


def _refuse(slots: list[_Slot], what: str, error: type[Exception]) -> None:
    if slots:
        names = ", ".join(repr(s.name) for s in slots[:_NAMED])
        more = f" and {len(slots) - _NAMED} more" if len(slots) > _NAMED else ""
        raise error(f"{what} in tree(s) {names}{more}; nothing was changed")


def _check_destinations(slots: list[_Slot], dst: str) -> None:
    dst_parent = paths.parent(dst)[0] or "(root)"
    _refuse([s for s in slots if s.parent_id is None], f"{dst_parent}: no such path", PathNotFoundError)
    _refuse([s for s in slots if s.parent_kind not in ("dict", "list")],
            f"{dst_parent}: not a dict or list, so it has no children", TypeError)


def _position(slot: _Slot) -> int:
    """A replaced entry keeps its place in the dict; a new one goes last."""
    return slot.existing_pos if slot.existing_pos is not None else slot.next_pos


def _ids(slots: list[_Slot]) -> str:
    return json.dumps([s.tree_id for s in slots])


def _touch(ops: TreeOps, slots: list[_Slot]) -> None:
    ops.conn.execute(
        "UPDATE tree SET modified = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
        "WHERE tree_id IN (SELECT value FROM json_each(?))", (_ids(slots),)
    )


def _delete_existing(ops: TreeOps, slots: list[_Slot], path: str) -> None:
    replaced = [s for s in slots if s.existing_id is not None]
    if replaced:
        ops.conn.execute(
            f"DELETE FROM node WHERE tree_id IN (SELECT value FROM json_each(?)) AND {_IN_SUBTREE}",
            (_ids(replaced), *_subtree_params(path)),
        )


def move_in_trees(ops: TreeOps, trees: str | None, src: str, dst: str) -> int:
    """Move the subtree at ``src`` to ``dst`` in every matching tree; returns how many trees changed.

    All or nothing: a tree without ``src``, or without ``dst``'s parent,
    raises before anything changes, naming the trees.
    """
    if src == "":
        raise ValueError("cannot move the root of a tree")
    if dst.startswith(src + "/"):
        raise ValueError(f"cannot move {src} into itself ({dst})")
    with ops.db.transaction():
        slots = _slots(ops, trees, src, dst)
        _refuse([s for s in slots if s.src_id is None], f"{src}: no such path", PathNotFoundError)
        _check_destinations(slots, dst)
        if src == dst:
            return len(slots)
        # Lists renumber positions, and moving a node over its own ancestor parks it first: per tree.
        simple = [s for s in slots if s.parent_kind == "dict" and s.src_parent_kind == "dict"
                  and not src.startswith(dst + "/")]
        for slot in slots:
            if slot not in simple:
                ops.move(slot.tree_id, src, dst)
        if not simple:
            return len(slots)
        _delete_existing(ops, simple, dst)
        ops.conn.execute(
            "UPDATE node SET path = ? || coalesce(CAST(substr(CAST(path AS BLOB), ?) AS TEXT), '') "
            f"WHERE tree_id IN (SELECT value FROM json_each(?)) AND {_IN_SUBTREE}",
            (dst, _nbytes(src) + 1, _ids(simple), *_subtree_params(src)),
        )
        ops.conn.execute(
            "UPDATE node SET parent_id = j.value ->> 1, pos = j.value ->> 2, key = ? "
            "FROM json_each(?) AS j WHERE node.node_id = j.value ->> 0",
            (paths.parent(dst)[1], json.dumps([[s.src_id, s.parent_id, _position(s)] for s in simple])),
        )
        _touch(ops, simple)
        return len(slots)


def set_in_trees(ops: TreeOps, trees: str | None, path: str, value: object) -> int:
    """Set ``value`` at ``path`` in every matching tree (replacing what is there); returns how many trees.

    Arrays and subtrees in ``value`` are stored once and shared by reference.
    """
    if path == "":
        raise ValueError("db.set() edits a path inside the trees; assign db[name] to replace a whole tree")
    specs = ops.nodes.prepare(value, path)
    with ops.db.transaction():
        slots = _slots(ops, trees, None, path)
        _check_destinations(slots, path)
        is_scalar = len(specs) == 1 and specs[0].kind not in ("array", "handle", "dict", "list")
        simple = [s for s in slots if s.parent_kind == "dict"] if is_scalar else []
        shared: Any = value
        for slot in slots:
            if slot not in simple:
                node_id = ops.set(slot.tree_id, path, shared)
                if shared is value and not is_scalar:
                    # the other trees reference what the first one stored: no second copy of any array
                    shared = ops.value_of(ops.nodes.row(node_id))  # type: ignore[arg-type]
        if not simple:
            return len(slots)
        _delete_existing(ops, simple, path)
        (spec,) = specs
        ops.conn.execute(
            "INSERT INTO node(tree_id, parent_id, path, key, pos, kind, value, exact, dtype) "
            "SELECT j.value ->> 0, j.value ->> 1, ?, ?, j.value ->> 2, ?, ?, ?, ? FROM json_each(?) AS j",
            (path, paths.parent(path)[1], spec.kind, spec.value, spec.exact, spec.dtype,
             json.dumps([[s.tree_id, s.parent_id, _position(s)] for s in simple])),
        )
        _touch(ops, simple)
        return len(slots)
