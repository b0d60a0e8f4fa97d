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

from typing import Any

from ..errors import PathNotFoundError
from . import paths
from .nodes import EditSlot, SubtreeRef
from .service import TreeService

__all__ = ["move_in_trees", "set_in_trees"]

_ALL_TREES = "*"
# How many offending trees an error names before it says "and N more".
_NAMED = 5


def _refuse(slots: list[EditSlot], what: str, error: type[Exception]) -> None:
    if slots:
        names = ", ".join(repr(s.name) for s in slots[:_NAMED])
        more = f" and {len(slots) - _NAMED} more" if len(slots) > _NAMED else ""
        raise error(f"{what} in tree(s) {names}{more}; nothing was changed")


def _check_destinations(slots: list[EditSlot], dst: str) -> None:
    dst_parent = paths.parent(dst)[0] or "(root)"
    _refuse([s for s in slots if s.parent_id is None], f"{dst_parent}: no such path", PathNotFoundError)
    _refuse([s for s in slots if s.parent_kind not in ("dict", "list")],
            f"{dst_parent}: not a dict or list, so it has no children", TypeError)


def _position(slot: EditSlot) -> int:
    """A replaced entry keeps its place in the dict; a new one goes last."""
    return slot.existing_pos if slot.existing_pos is not None else slot.next_pos


def _ids(slots: list[EditSlot]) -> list[int]:
    return [s.tree_id for s in slots]


def _delete_existing(service: TreeService, slots: list[EditSlot], path: str) -> None:
    replaced = [s for s in slots if s.existing_id is not None]
    if replaced:
        service.many.delete_subtrees(_ids(replaced), path)


def move_in_trees(service: TreeService, trees: str | None, src: str, dst: str) -> int:
    """Move the subtree at ``src`` to ``dst`` in every matching tree; returns how many trees changed.

    All or nothing: a tree without ``src``, or without ``dst``'s parent,
    raises before anything changes, naming the trees.
    """
    if src == "":
        raise ValueError("cannot move the root of a tree")
    if dst.startswith(src + "/"):
        raise ValueError(f"cannot move {src} into itself ({dst})")
    with service.transaction():
        slots = service.many.slots(_ALL_TREES if trees is None else trees, src, dst)
        _refuse([s for s in slots if s.src_id is None], f"{src}: no such path", PathNotFoundError)
        _check_destinations(slots, dst)
        if src == dst:
            return len(slots)
        # Lists renumber positions, and moving a node over its own ancestor parks it first: per tree.
        simple = [s for s in slots if s.parent_kind == "dict" and s.src_parent_kind == "dict"
                  and not src.startswith(dst + "/")]
        for slot in slots:
            if slot not in simple:
                service.move(slot.tree_id, src, dst)
        if not simple:
            return len(slots)
        _delete_existing(service, simple, dst)
        service.many.rewrite_prefixes(_ids(simple), src, dst)
        service.many.attach(paths.parent(dst)[1], [(s.src_id, s.parent_id, _position(s)) for s in simple])
        service.catalog.touch_many(_ids(simple))
        return len(slots)


def set_in_trees(service: TreeService, trees: str | None, path: str, value: object) -> int:
    """Set ``value`` at ``path`` in every matching tree (replacing what is there); returns how many trees.

    Arrays and subtrees in ``value`` are stored once and shared by reference.
    """
    if path == "":
        raise ValueError("db.set() edits a path inside the trees; assign db[name] to replace a whole tree")
    specs = service.nodes.prepare(value, path)
    with service.transaction():
        slots = service.many.slots(_ALL_TREES if trees is None else trees, None, path)
        _check_destinations(slots, path)
        is_scalar = len(specs) == 1 and specs[0].kind not in ("array", "handle", "dict", "list")
        simple = [s for s in slots if s.parent_kind == "dict"] if is_scalar else []
        shared: Any = value
        for slot in slots:
            if slot not in simple:
                node_id = service.set(slot.tree_id, path, shared)
                if shared is value and not is_scalar:
                    # the other trees reference what the first one stored: no second copy of any array
                    stored = service.nodes.row(node_id)
                    if stored is not None:
                        shared = SubtreeRef(service.nodes, slot.tree_id, stored.path)
        if not simple:
            return len(slots)
        _delete_existing(service, simple, path)
        (spec,) = specs
        service.many.insert_scalar(path, paths.parent(path)[1], spec,
                                   [(s.tree_id, s.parent_id, _position(s)) for s in simple])
        service.catalog.touch_many(_ids(simple))
        return len(slots)
