"""Writing a tree, subtree, array or plain value as a Zarr v3 hierarchy.

Dicts become groups, arrays Zarr arrays with the same chunk shape (Blosc
zstd level 5 with byte shuffle), scalars and lists without arrays or dicts
attributes, lists holding arrays or dicts groups whose members are named
``"0"``, ``"1"``, ... Everything is checked before anything is written.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import tensordb

from .mapping import MARKER, child_pointer, encode, is_array, zarr_dtype
from .stores import describe, load_zarr

__all__ = ["export"]

# Keys used as node names as they are; anything else gets a generated "~N" name.
_UNPORTABLE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_RESERVED_ON_WINDOWS = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)
_MAX_NAME_BYTES = 120


def export(tree_or_node: Any, target: Any, *, overwrite: bool = False) -> None:
    """Write a tree, subtree, array or plain value as a Zarr v3 hierarchy.

    Parameters
    ----------
    tree_or_node : tensordb.Tree, tensordb.Node, tensordb.Array or value
        What to write. A dict or list becomes the root group; an array the
        root array; a scalar a root group holding it as an attribute.
    target : zarr store or path
        Any ``zarr.abc.store.Store`` (``LocalStore``, ``MemoryStore``, an
        Icechunk ``session.store``), or a folder path for a ``LocalStore``.
    overwrite : bool
        Replace what the store already holds. Without it, a store that
        already holds a hierarchy is an error and nothing is written.

    Raises
    ------
    FileExistsError
        The store already holds a Zarr node and ``overwrite`` is false.
    TypeError
        A plain value holds something tensordb cannot store (naming its path).

    Example
    -------
    >>> tensordb.interop.zarr.export(db["sample037"], "sample037.zarr")
    >>> tensordb.interop.zarr.export(db["sample037"]["/data"], zarr.storage.MemoryStore())
    """
    zarr = load_zarr()
    where = describe(target)
    steps = _plan_hierarchy(tree_or_node)  # everything is checked before anything is written
    with _existing(where), warnings.catch_warnings():
        # Fixed-width strings have no Zarr v3 specification yet; zarr-python still writes them.
        warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)
        nodes: list[Any] = []
        for step in steps:
            parent = nodes[step.parent] if step.parent >= 0 else None
            if step.array is not None:
                _write_array(parent, step.name, step.array, target, overwrite)
                nodes.append(None)  # arrays have no members
            elif parent is None:
                nodes.append(zarr.create_group(target, overwrite=overwrite, attributes=step.attrs, zarr_format=3))
            else:
                nodes.append(parent.create_group(step.name, attributes=step.attrs))


@dataclass
class _Step:
    """One node to write: a group with its attributes, or an array."""

    parent: int  # index of the parent's step; -1 for the root
    name: str
    attrs: dict[str, Any]
    array: Any = None  # an ndarray or a tensordb.Array


def _plan_hierarchy(value: Any) -> list[_Step]:
    """The nodes to write, parents first, in document order.

    A plain value is checked first as tensordb checks what it stores
    (types, dict keys, dtypes, cycles), so that a bad value anywhere raises
    TypeError naming its path before anything is written.
    """
    if isinstance(value, (tensordb.Tree, tensordb.Node)):
        value = value.load(lazy=True)
    else:
        tensordb.validate(value)
    steps: list[_Step] = []
    # (parent step, member name, value, pointer); iterative, so deep trees cannot exhaust the stack
    pending: list[tuple[int, str, Any, str]] = [(-1, "", value, "")]
    while pending:
        parent, name, item, pointer = pending.pop()
        if isinstance(item, (tensordb.Tree, tensordb.Node)):  # a handle inside a plain value
            item = item.load(lazy=True)
        if is_array(item):
            steps.append(_Step(parent, name, {}, item))
            continue
        attrs, children = _plan(item, pointer)
        index = len(steps)
        steps.append(_Step(parent, name, attrs))
        pending.extend((index, n, c, p) for n, c, p in reversed(children))
    return steps


@contextlib.contextmanager
def _existing(where: str) -> Iterator[None]:
    zarr = load_zarr()
    try:
        yield
    except (zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError,
            zarr.errors.ContainsArrayAndGroupError):
        raise FileExistsError(f"{where}: already holds a Zarr hierarchy; pass overwrite=True to replace it") from None


def _plan(value: Any, pointer: str) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    """(attributes, [(member name, value, pointer)]) of the group that holds ``value``."""
    if isinstance(value, dict):
        return _plan_dict(value, pointer)
    if isinstance(value, (list, tuple)):
        attrs: dict[str, Any] = {}
        children = []
        for i, item in enumerate(value):
            if _is_node(item):
                children.append((str(i), item, f"{pointer}/{i}"))
            else:
                attrs[str(i)] = encode(item, f"{pointer}/{i}")
        attrs[MARKER] = {"kind": "list", "length": len(value)}
        return attrs, children
    return {"value": encode(value, pointer), MARKER: {"kind": "value"}}, []


def _plan_dict(value: dict[Any, Any], pointer: str) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    keys = list(value)
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"{pointer or '(root)'}: dict keys must be str, got {type(key).__name__} {key!r}")
    taken = set(keys)  # a generated name must not be any key: names are looked up by key on import
    folded: set[str] = set()  # member names already used, compared as case-insensitive file systems do
    attrs: dict[str, Any] = {}
    children = []
    names: dict[str, str] = {}
    for i, key in enumerate(keys):
        item = value[key]
        member_pointer = child_pointer(pointer, key)
        if _is_node(item):
            name = key if _portable(key) and key.casefold() not in folded else _fresh(i, taken, folded)
            folded.add(name.casefold())
            children.append((name, item, member_pointer))
        else:
            name = key if key != MARKER else _fresh(i, taken, folded)
            attrs[name] = encode(item, member_pointer)
        if name != key:
            names[key] = name
            taken.add(name)
    marker: dict[str, Any] = {"kind": "dict", "keys": keys}
    if names:
        marker["names"] = names
    attrs[MARKER] = marker
    return attrs, children


def _portable(key: str) -> bool:
    """Whether ``key`` is a Zarr node name that every store and file system keeps as it is."""
    return (
        key not in ("", ".", "..")
        and not key.startswith("__")  # reserved by the Zarr v3 specification
        and key.casefold() != "zarr.json"
        and not _UNPORTABLE.search(key)
        and key.strip(" ") == key
        and not key.endswith(".")
        and len(key.encode("utf-8")) <= _MAX_NAME_BYTES
        and not _RESERVED_ON_WINDOWS.fullmatch(key)
    )


def _fresh(index: int, taken: set[str], folded: set[str]) -> str:
    name = f"~{index}"
    while name in taken or name.casefold() in folded:
        name = "~" + name
    return name


def _is_node(value: Any) -> bool:
    """Whether ``value`` becomes a group or an array (not an attribute)."""
    if _is_container(value) or is_array(value):
        return True
    if not isinstance(value, (list, tuple)):
        return False
    stack = [value]
    while stack:  # a list nested anywhere below that holds a dict or an array
        for item in stack.pop():
            if _is_container(item) or is_array(item):
                return True
            if isinstance(item, (list, tuple)):
                stack.append(item)
    return False


def _is_container(value: Any) -> bool:
    return isinstance(value, (dict, tensordb.Tree, tensordb.Node))


def _write_array(parent: Any, name: str, array: Any, store: Any, overwrite: bool) -> None:
    """Create a Zarr array like ``array`` (shape, chunks, fill value) and copy it block by block.

    The array is the member ``name`` of the group ``parent``, or the root of ``store`` if there is none.
    """
    zarr = load_zarr()
    dtype: np.dtype[Any] = array.dtype
    shape: tuple[int, ...] = tuple(array.shape)
    chunks = tuple(array.chunks) if isinstance(array, tensordb.Array) else tensordb.auto_chunks(shape, dtype.itemsize)
    target, as_bytes = zarr_dtype(dtype)
    attrs: dict[str, Any] = {}
    if as_bytes or target != dtype or target.str != dtype.str:
        attrs[MARKER] = {"dtype": tensordb.dtype_to_text(dtype), **({"layout": "bytes"} if as_bytes else {})}
    fill: Any = None
    if as_bytes:
        zshape, zchunks, fill = (*shape, dtype.itemsize), (*chunks, max(dtype.itemsize, 1)), 0
    else:
        zshape, zchunks = shape, chunks
        if isinstance(array, tensordb.Array):
            fill = np.asarray(array.fill_value).astype(target)[()]
    options = {"shape": zshape, "chunks": zchunks, "dtype": target, "fill_value": fill, "attributes": attrs,
               "compressors": zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")}
    if parent is None:
        z = zarr.create_array(store, overwrite=overwrite, **options)
    else:
        z = parent.create_array(name, **options)
    if dtype.itemsize == 0:
        return  # items of no bytes: nothing to copy
    for box in tensordb.iter_blocks(shape, chunks, dtype.itemsize):
        block = np.asarray(array[box])
        if as_bytes:
            raw = np.require(block, requirements="C").reshape(-1).view(np.uint8)
            z[box or ...] = raw.reshape(block.shape + (dtype.itemsize,))
        else:
            z[box or ...] = block.astype(target, copy=False)
