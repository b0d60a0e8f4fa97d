"""Reading any Zarr v3 hierarchy into a tree, streaming each array block by block.

Only the chunks the store holds are read, so memory stays bounded whatever
the array size. A hierarchy written by :func:`tensordb.interop.zarr.export`
imports back to a tree equal to the original (key order, types, dtypes with
byte order, shapes and bits); docs/zarr.md has the mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import tensordb
from tensordb import limits

from .mapping import MARKER, child_pointer, decode
from .stores import describe, load_zarr, reading, stored_boxes

__all__ = ["import_"]

#: Source chunk shapes are kept on import up to this size; larger ones are re-chunked.
_KEEP_CHUNK_BYTES = 64 * 2**20


@dataclass
class _ArrayJob:
    """An array to stream into the tree once its skeleton is written."""

    pointer: str
    source: Any  # the zarr.Array
    path: str  # its path in the store, for messages
    dtype: np.dtype[Any]  # the tensordb dtype
    as_bytes: bool
    variable_length: bool = False  # str or bytes items of any length: stored fixed-width


def import_(db: tensordb.Database, name: str, source: Any, *, replace: bool = False) -> str:
    """Read a Zarr v3 hierarchy (any, not only tensordb's) into the tree ``name``, in one transaction.

    Groups become dicts, arrays become tensordb arrays (chunk shape kept up
    to 64 MiB per chunk), attributes become values; docs/zarr.md has the
    details. Arrays are streamed block by block, reading only the chunks the
    store holds. An existing tree of the same name is replaced only with
    ``replace=True``; otherwise :class:`tensordb.TreeExistsError` is raised
    and nothing is written.

    Parameters
    ----------
    db : tensordb.Database
        The database to import into (open for writing).
    name : str
        The tree to write.
    source : zarr store, path, zarr.Group or zarr.Array
        The hierarchy to read: a store or folder path (its root), or a node
        inside one (that node becomes the tree's root).
    replace : bool
        Replace an existing tree of that name.

    Returns
    -------
    str
        The name of the tree written.

    Raises
    ------
    tensordb.FormatError
        The store holds no Zarr node, or something in it cannot be read or
        stored (naming the store, the node path and the problem); nothing is written.

    Example
    -------
    >>> tensordb.interop.zarr.import_(db, "sample037", "sample037.zarr")
    'sample037'
    >>> tensordb.interop.zarr.import_(db, "snap", icechunk_repo.readonly_session("main").store)
    'snap'
    """
    zarr = load_zarr()
    if db.readonly:
        raise tensordb.ReadOnlyError(f"{db.filename}: database is open read-only")
    _refuse_existing(db, name, replace)
    where = describe(source)
    with reading(f"{where}: /"):
        if isinstance(source, (zarr.Group, zarr.Array)):
            root = source
        else:
            root = zarr.open(store=source, mode="r")
    skeleton, jobs = _read_hierarchy(root, where)
    with db.transaction():
        _refuse_existing(db, name, replace)  # written meanwhile by another process
        root_job = next((job for job in jobs if job.pointer == ""), None)
        db[name] = [None] if root_job is not None else skeleton
        tree = db[name]
        for job in jobs:
            pointer = "/0" if job is root_job else job.pointer
            with reading(job.path):
                _stream(tree, pointer, job)
        if root_job is not None:
            db[name] = tree["/0"]  # the root is the array itself: reference it, no copy
    return name


def _refuse_existing(db: tensordb.Database, name: str, replace: bool) -> None:
    if not replace and name in db:
        raise tensordb.TreeExistsError(f"{db.filename}: a tree named {name!r} exists already; pass replace=True "
                                       "(--replace) to replace it")



def _node_path(node: Any) -> str:
    return "/" + str(node.path) if node.path else "/"


def _read_hierarchy(root: Any, where: str) -> tuple[Any, list[_ArrayJob]]:
    """The tree with ``None`` where arrays go, and the arrays to stream there."""
    zarr = load_zarr()
    jobs: list[_ArrayJob] = []
    holder: list[Any] = [None]
    # (node, container to fill, key or index, pointer); iterative for deep hierarchies
    pending: list[tuple[Any, Any, Any, str]] = [(root, holder, 0, "")]
    while pending:
        node, parent, key, pointer = pending.pop()
        path = _node_path(node)
        with reading(f"{where}: {path}"):
            attrs = node.attrs.asdict()
            if isinstance(node, zarr.Array):
                jobs.append(_array_job(node, attrs, pointer, f"{where}: {path}"))
                parent[key] = None
                continue
            members = dict(node.members())
            value, children = _group_value(attrs, members, f"{where}: {path}")
        parent[key] = value
        for child_key, member in reversed(children):
            pending.append((member, value, child_key, child_pointer(pointer, child_key)))
    return holder[0], jobs




def _group_value(attrs: dict[str, Any], members: dict[str, Any],
                 where: str) -> tuple[Any, list[tuple[str | int, Any]]]:
    """The dict or list (or scalar) a group stands for, with its members still to read."""
    marker = attrs.pop(MARKER, None)
    if marker is None:
        return _foreign_group(attrs, members, where)
    kind = marker.get("kind") if isinstance(marker, dict) else None
    if kind == "dict":
        return _marked_dict(marker, attrs, members, where)
    if kind == "list":
        return _marked_list(marker, attrs, members, where)
    if kind == "value" and "value" in attrs:
        return decode(attrs["value"], where), []
    raise tensordb.FormatError(f"{where}: malformed {MARKER!r} attribute {str(marker)[:200]}")


def _marked_dict(marker: dict[str, Any], attrs: dict[str, Any], members: dict[str, Any],
                 where: str) -> tuple[Any, list[tuple[str | int, Any]]]:
    keys, names = marker.get("keys"), marker.get("names", {})
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)
            and isinstance(names, dict) and all(isinstance(v, str) for v in names.values())):
        raise tensordb.FormatError(f"{where}: malformed {MARKER!r} attribute of a dict group")
    value: dict[str, Any] = {}
    children: list[tuple[str | int, Any]] = []
    for key in keys:
        stored = names.get(key, key)
        if stored in members:
            value[key] = None
            children.append((key, members.pop(stored)))
        elif stored in attrs:
            value[key] = decode(attrs.pop(stored), where)
        else:
            raise tensordb.FormatError(f"{where}: key {key!r} is neither a member nor an attribute "
                                       f"(looked for {stored!r})")
    # Nodes or attributes added by other tools after the export are kept, after the rest.
    extra, extra_children = _foreign_group(attrs, members, where, taken=set(value))
    value.update(extra)
    return value, children + extra_children


def _marked_list(marker: dict[str, Any], attrs: dict[str, Any], members: dict[str, Any],
                 where: str) -> tuple[Any, list[tuple[str | int, Any]]]:
    length = marker.get("length")
    if not (isinstance(length, int) and not isinstance(length, bool) and 0 <= length <= len(attrs) + len(members)):
        raise tensordb.FormatError(f"{where}: malformed {MARKER!r} attribute of a list group")
    value: list[Any] = []
    children: list[tuple[str | int, Any]] = []
    for i in range(length):
        if str(i) in members:
            value.append(None)
            children.append((i, members[str(i)]))
        elif str(i) in attrs:
            value.append(decode(attrs[str(i)], where))
        else:
            raise tensordb.FormatError(f"{where}: list item {i} is neither a member nor an attribute")
    return value, children


def _foreign_group(attrs: dict[str, Any], members: dict[str, Any], where: str,
                   taken: set[str] | None = None) -> tuple[dict[str, Any], list[tuple[str | int, Any]]]:
    """A group tensordb did not write: its attributes, then its members by name.

    An array with attributes is followed by ``"<name>@attrs"`` holding them.
    A key already used is prefixed with ``@`` until it is free.
    """
    zarr = load_zarr()
    used = set(taken or ()) | set(members)
    value: dict[str, Any] = {}

    def free(key: str) -> str:
        while key in used:
            key = "@" + key
        used.add(key)
        return key

    for key, item in attrs.items():
        value[free(key)] = decode(item, where)
    children: list[tuple[str | int, Any]] = []
    for name in sorted(members):
        member = members[name]
        value[name] = None
        children.append((name, member))
        if isinstance(member, zarr.Array):
            extra = {k: v for k, v in member.attrs.asdict().items() if k != MARKER}
            if extra:
                value[free(name + "@attrs")] = decode(extra, where)
    return value, children



def _array_job(z: Any, attrs: dict[str, Any], pointer: str, where: str) -> _ArrayJob:
    """What to create for a Zarr array: its tensordb dtype and how to convert its items."""
    marker = attrs.get(MARKER)
    source: np.dtype[Any] = np.dtype(z.dtype)
    if isinstance(marker, dict) and "dtype" in marker:
        try:
            dtype = tensordb.dtype_from_text(marker["dtype"])
        except tensordb.CorruptionError as exc:
            raise tensordb.FormatError(f"{where}: {exc}") from None
        as_bytes = marker.get("layout") == "bytes"
        if as_bytes and (source != np.dtype("u1") or not z.shape or z.shape[-1] != dtype.itemsize):
            raise tensordb.FormatError(f"{where}: the {MARKER!r} attribute says items of {dtype} stored as "
                                       f"bytes along the last axis, but the array is {z.shape} {source}")
        if not as_bytes and (source.kind != dtype.kind or source.itemsize != dtype.itemsize):
            raise tensordb.FormatError(f"{where}: the {MARKER!r} attribute says {dtype}, "
                                       f"but the array holds {source}")
        return _ArrayJob(pointer, z, where, dtype, as_bytes)
    if source.kind in "OT":  # variable-length strings or bytes: made fixed-width
        return _ArrayJob(pointer, z, where, source, False, variable_length=True)
    try:
        tensordb.validate(np.empty(0, source))
    except TypeError as exc:
        raise tensordb.FormatError(f"{where}: {str(exc).removeprefix('(root): ')}") from None
    return _ArrayJob(pointer, z, where, source, False)


def _stream(tree: tensordb.Tree, pointer: str, job: _ArrayJob) -> None:
    """Create the array at ``pointer`` and copy the stored chunks of the Zarr array into it."""
    z = job.source
    zshape: tuple[int, ...] = tuple(z.shape)
    shape = zshape[:-1] if job.as_bytes else zshape
    source_chunks: tuple[int, ...] = tuple(z.chunks)[: len(shape)]
    itemsize = np.dtype(z.dtype).itemsize * (zshape[-1] if job.as_bytes else 1)
    if math.prod(source_chunks) * max(itemsize, 1) > limits.MAX_CHUNK_BYTES:
        raise tensordb.FormatError(f"{job.path}: chunks {source_chunks} hold more than "
                                   f"{limits.MAX_CHUNK_BYTES} bytes; tensordb reads at most that much at once")
    dtype = job.dtype
    if job.variable_length:
        dtype = _fixed_width(z, job)
    chunks = source_chunks if math.prod(source_chunks) * max(dtype.itemsize, 1) <= _KEEP_CHUNK_BYTES else None
    fill = None
    if not (job.as_bytes or job.variable_length or z.fill_value is None):
        fill = np.asarray(z.fill_value).astype(dtype)
    array = tree.create_array(pointer, shape, dtype, chunks=chunks, fill_value=fill)
    if 0 in shape or dtype.itemsize == 0:
        return
    for box in stored_boxes(z, shape, array.chunks, max(itemsize, dtype.itemsize), job.path):
        block = np.asarray(z[box or ...])
        if job.as_bytes:
            block = np.require(block, requirements="C").view(dtype).reshape(block.shape[:-1])
        array[box or ...] = block.astype(dtype, copy=False)


def _fixed_width(z: Any, job: _ArrayJob) -> np.dtype[Any]:
    """The fixed-width ``U``/``S`` dtype that holds every item of a variable-length string array."""
    longest, kinds = 1, set()
    shape: tuple[int, ...] = tuple(z.shape)
    for box in stored_boxes(z, shape, tuple(z.chunks), 64, job.path):
        for item in np.asarray(z[box or ...], dtype=object).reshape(-1):
            kinds.add(type(item))
            longest = max(longest, len(item))
    if kinds - {str} and kinds - {bytes}:
        raise tensordb.FormatError(f"{job.path}: variable-length items of types "
                                   f"{sorted(k.__name__ for k in kinds)}; tensordb stores str or bytes items only")
    return np.dtype(f"S{longest}" if kinds == {bytes} else f"<U{longest}")
