"""Zarr v3 export and import (needs the ``tensordb[zarr]`` extra); the mapping is in docs/zarr.md.

:func:`export` writes a tree as a Zarr v3 hierarchy: dicts become groups,
arrays become Zarr arrays with the same chunk shape (Blosc zstd level 5 with
byte shuffle), scalars and lists without arrays or dicts become attributes,
lists holding arrays or dicts become groups whose members are named
``"0"``, ``"1"``, ... Each group carries a ``"tensordb"`` attribute that
records what plain Zarr cannot: the kind of container, the key order and
the keys that are not usable as node names. Values JSON cannot hold exactly
(bytes, big ints, NaN and infinities, numpy scalars) are tagged objects.

:func:`import_` reads any Zarr v3 hierarchy into a tree, streaming each
array block by block (only the chunks that are stored), so that memory stays
bounded whatever the array size. A hierarchy written by :func:`export`
imports back to a tree equal to the original (``load()``-equal: key order,
types, dtypes with byte order, shapes and bits).

Any ``zarr.abc.store.Store`` works (a ``LocalStore``, a ``MemoryStore``, an
Icechunk session's ``store``), and so does a folder path.

Example
-------
>>> import tensordb, tensordb.zarr
>>> db = tensordb.open("runs.tdb")
>>> tensordb.zarr.export(db["sample037"], "sample037.zarr")
>>> tensordb.zarr.import_(db, "copy037", "sample037.zarr")
'copy037'
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import math
import os
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import tensordb
from tensordb.pointer import escape

__all__ = ["export", "import_", "MARKER", "MAX_CHUNK_BYTES"]

#: The attribute holding tensordb's own metadata on groups and arrays.
MARKER = "tensordb"
#: Source chunks larger than this are refused on import (Zarr decodes a whole chunk at once).
MAX_CHUNK_BYTES = 256 * 2**20
#: Arrays move between tensordb and Zarr in blocks of about this many bytes (a few times this is held).
_BLOCK_BYTES = 4 * 2**20
#: Source chunk shapes are kept on import up to this size; larger ones are re-chunked.
_KEEP_CHUNK_BYTES = 64 * 2**20
#: Without a listing of stored chunks, at most this many blocks are visited.
_MAX_BLIND_BLOCKS = 1_000_000
_INT64 = (-(2**63), 2**63 - 1)
# Keys used as node names as they are; anything else gets a generated "~N" name.
_UNPORTABLE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_RESERVED_ON_WINDOWS = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)
_MAX_NAME_BYTES = 120
# Tagged objects: how attribute values that JSON cannot hold exactly are written.
_BYTES, _BIGINT, _FLOAT, _SCALAR = "tensordb:bytes", "tensordb:int", "tensordb:float", "tensordb:scalar"


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise ImportError("tensordb.zarr needs zarr 3.1 or later: pip install 'tensordb[zarr]'") from None
    return zarr


# -- export --------------------------------------------------------------------------------


def export(tree_or_node: Any, store: Any, *, overwrite: bool = False) -> None:
    """Write a tree, subtree, array or plain value as a Zarr v3 hierarchy.

    Parameters
    ----------
    tree_or_node : tensordb.Tree, tensordb.Node, tensordb.Array or value
        What to write. A dict or list becomes the root group; an array the
        root array; a scalar a root group holding it as an attribute.
    store : zarr store or path
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
    >>> tensordb.zarr.export(db["sample037"], "sample037.zarr")
    >>> tensordb.zarr.export(db["sample037"]["/data"], zarr.storage.MemoryStore())
    """
    zarr = _zarr()
    where = _describe(store)
    steps = _plan_hierarchy(tree_or_node)  # everything is checked before anything is written
    with _existing(where), warnings.catch_warnings():
        # Fixed-width strings have no Zarr v3 specification yet; zarr-python still writes them.
        warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)
        nodes: list[Any] = []
        for step in steps:
            parent = nodes[step.parent] if step.parent >= 0 else None
            if step.array is not None:
                _write_array(parent, step.name, step.array, store, overwrite)
                nodes.append(None)  # arrays have no members
            elif parent is None:
                nodes.append(zarr.create_group(store, overwrite=overwrite, attributes=step.attrs, zarr_format=3))
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
        if _is_array(item):
            steps.append(_Step(parent, name, {}, item))
            continue
        attrs, children = _plan(item, pointer)
        index = len(steps)
        steps.append(_Step(parent, name, attrs))
        pending.extend((index, n, c, p) for n, c, p in reversed(children))
    return steps


@contextlib.contextmanager
def _existing(where: str) -> Iterator[None]:
    zarr = _zarr()
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
                attrs[str(i)] = _encode(item, f"{pointer}/{i}")
        attrs[MARKER] = {"kind": "list", "length": len(value)}
        return attrs, children
    return {"value": _encode(value, pointer), MARKER: {"kind": "value"}}, []


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
        child_pointer = _child_pointer(pointer, key)
        if _is_node(item):
            name = key if _portable(key) and key.casefold() not in folded else _fresh(i, taken, folded)
            folded.add(name.casefold())
            children.append((name, item, child_pointer))
        else:
            name = key if key != MARKER else _fresh(i, taken, folded)
            attrs[name] = _encode(item, child_pointer)
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


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, tensordb.Array))


def _is_node(value: Any) -> bool:
    """Whether ``value`` becomes a group or an array (not an attribute)."""
    if _is_container(value) or _is_array(value):
        return True
    if not isinstance(value, (list, tuple)):
        return False
    stack = [value]
    while stack:  # a list nested anywhere below that holds a dict or an array
        for item in stack.pop():
            if _is_container(item) or _is_array(item):
                return True
            if isinstance(item, (list, tuple)):
                stack.append(item)
    return False


def _is_container(value: Any) -> bool:
    return isinstance(value, (dict, tensordb.Tree, tensordb.Node))


def _encode(value: Any, pointer: str) -> Any:
    """An attribute value: JSON as is when exact, a tagged object otherwise."""
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if _INT64[0] <= value <= _INT64[1] else {_BIGINT: str(value)}
    if kind is float:
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return {_FLOAT: "NaN", "bits": struct.pack(">d", value).hex()}
        return {_FLOAT: "Infinity" if value > 0 else "-Infinity"}
    if kind is bytes:
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return _encode_numpy_scalar(value)
    if isinstance(value, (list, tuple)):
        return [_encode(item, f"{pointer}/{i}") for i, item in enumerate(value)]
    raise TypeError(f"{pointer or '(root)'}: values of type {type(value).__name__} cannot be stored")


def _encode_numpy_scalar(value: np.generic) -> dict[str, Any]:
    dtype = value.dtype
    tag = {_SCALAR: tensordb.dtype_to_text(dtype)}
    if dtype.kind == "b":
        return {**tag, "value": bool(value)}
    if dtype.kind in "iu":
        return {**tag, "value": int(value)}
    if dtype.kind == "f" and dtype.itemsize <= 8 and math.isfinite(float(value)):
        return {**tag, "value": float(value)}
    if dtype.kind == "U":
        return {**tag, "value": str(value)}
    raw = value.item() if dtype.kind == "S" else value.tobytes()  # b"" is an S0 scalar of no bytes
    return {**tag, "base64": base64.b64encode(raw).decode("ascii")}


def _zarr_dtype(dtype: np.dtype[Any]) -> tuple[np.dtype[Any], bool]:
    """(dtype of the Zarr array, whether items are stored as a trailing axis of raw bytes).

    Records and raw bytes have no stable Zarr v3 data type: their items are
    stored as ``uint8`` along an extra last axis. Other dtypes are written
    little-endian (Zarr reads them back so; the marker keeps the byte order).
    """
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind == "V" or dtype.itemsize == 0:
        return np.dtype("u1"), True
    if dtype.kind in "Mm" and np.datetime_data(dtype)[0] == "generic":
        return np.dtype("u1"), True  # Zarr's datetime types need a unit
    if dtype.byteorder == ">":
        return dtype.newbyteorder("<"), False
    return dtype, False


def _write_array(parent: Any, name: str, array: Any, store: Any, overwrite: bool) -> None:
    """Create a Zarr array like ``array`` (shape, chunks, fill value) and copy it block by block.

    The array is the member ``name`` of the group ``parent``, or the root of ``store`` if there is none.
    """
    zarr = _zarr()
    dtype: np.dtype[Any] = array.dtype
    shape: tuple[int, ...] = tuple(array.shape)
    chunks = tuple(array.chunks) if isinstance(array, tensordb.Array) else tensordb.auto_chunks(shape, dtype.itemsize)
    target, as_bytes = _zarr_dtype(dtype)
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


# -- import --------------------------------------------------------------------------------


@dataclass
class _ArrayJob:
    """An array to stream into the tree once its skeleton is written."""

    pointer: str
    source: Any  # the zarr.Array
    path: str  # its path in the store, for messages
    dtype: np.dtype[Any]  # the tensordb dtype
    as_bytes: bool
    variable_length: bool = False  # str or bytes items of any length: stored fixed-width


def import_(db: tensordb.Database, name: str, store_or_group: Any, *, replace: bool = False) -> str:
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
    store_or_group : zarr store, path, zarr.Group or zarr.Array
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
    >>> tensordb.zarr.import_(db, "sample037", "sample037.zarr")
    'sample037'
    >>> tensordb.zarr.import_(db, "snap", icechunk_repo.readonly_session("main").store)
    'snap'
    """
    zarr = _zarr()
    if db.readonly:
        raise tensordb.ReadOnlyError(f"{db.filename}: database is open read-only")
    _refuse_existing(db, name, replace)
    where = _describe(store_or_group)
    with _reading(f"{where}: /"):
        if isinstance(store_or_group, (zarr.Group, zarr.Array)):
            root = store_or_group
        else:
            root = zarr.open(store=store_or_group, mode="r")
    skeleton, jobs = _read_hierarchy(root, where)
    with db.transaction():
        _refuse_existing(db, name, replace)  # written meanwhile by another process
        root_job = next((job for job in jobs if job.pointer == ""), None)
        db[name] = [None] if root_job is not None else skeleton
        tree = db[name]
        for job in jobs:
            pointer = "/0" if job is root_job else job.pointer
            with _reading(job.path):
                _stream(tree, pointer, job)
        if root_job is not None:
            db[name] = tree["/0"]  # the root is the array itself: reference it, no copy
    return name


def _refuse_existing(db: tensordb.Database, name: str, replace: bool) -> None:
    if not replace and name in db:
        raise tensordb.TreeExistsError(f"{db.filename}: a tree named {name!r} exists already; pass replace=True "
                                       "(--replace) to replace it")


def _describe(store: Any) -> str:
    """How messages name a store (node paths inside it follow, from its root)."""
    if isinstance(store, (str, os.PathLike)):
        return os.fspath(store)
    inner = getattr(store, "store", None)  # a zarr Group or Array: its store
    return str(inner if inner is not None and isinstance(getattr(store, "path", None), str) else store)


@contextlib.contextmanager
def _reading(where: str) -> Iterator[None]:
    """Report anything that goes wrong while reading ``where`` (store: node) as a FormatError naming it."""
    try:
        yield
    except (tensordb.TensorDBError, MemoryError):
        raise
    except RecursionError:
        raise tensordb.FormatError(f"{where}: metadata nested too deeply") from None
    except Exception as exc:
        raise tensordb.FormatError(f"{where}: {exc}") from exc


def _node_path(node: Any) -> str:
    return "/" + str(node.path) if node.path else "/"


def _read_hierarchy(root: Any, where: str) -> tuple[Any, list[_ArrayJob]]:
    """The tree with ``None`` where arrays go, and the arrays to stream there."""
    zarr = _zarr()
    jobs: list[_ArrayJob] = []
    holder: list[Any] = [None]
    # (node, container to fill, key or index, pointer); iterative for deep hierarchies
    pending: list[tuple[Any, Any, Any, str]] = [(root, holder, 0, "")]
    while pending:
        node, parent, key, pointer = pending.pop()
        path = _node_path(node)
        with _reading(f"{where}: {path}"):
            attrs = node.attrs.asdict()
            if isinstance(node, zarr.Array):
                jobs.append(_array_job(node, attrs, pointer, f"{where}: {path}"))
                parent[key] = None
                continue
            members = dict(node.members())
            value, children = _group_value(attrs, members, f"{where}: {path}")
        parent[key] = value
        for child_key, member in reversed(children):
            pending.append((member, value, child_key, _child_pointer(pointer, child_key)))
    return holder[0], jobs


def _child_pointer(pointer: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{pointer}/{key}"
    return pointer + "/" + escape(key)


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
        return _decode(attrs["value"], where), []
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
            value[key] = _decode(attrs.pop(stored), where)
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
            value.append(_decode(attrs[str(i)], where))
        else:
            raise tensordb.FormatError(f"{where}: list item {i} is neither a member nor an attribute")
    return value, children


def _foreign_group(attrs: dict[str, Any], members: dict[str, Any], where: str,
                   taken: set[str] | None = None) -> tuple[dict[str, Any], list[tuple[str | int, Any]]]:
    """A group tensordb did not write: its attributes, then its members by name.

    An array with attributes is followed by ``"<name>@attrs"`` holding them.
    A key already used is prefixed with ``@`` until it is free.
    """
    zarr = _zarr()
    used = set(taken or ()) | set(members)
    value: dict[str, Any] = {}

    def free(key: str) -> str:
        while key in used:
            key = "@" + key
        used.add(key)
        return key

    for key, item in attrs.items():
        value[free(key)] = _decode(item, where)
    children: list[tuple[str | int, Any]] = []
    for name in sorted(members):
        member = members[name]
        value[name] = None
        children.append((name, member))
        if isinstance(member, zarr.Array):
            extra = {k: v for k, v in member.attrs.asdict().items() if k != MARKER}
            if extra:
                value[free(name + "@attrs")] = _decode(extra, where)
    return value, children


def _decode(value: Any, where: str) -> Any:
    """The Python value of an attribute (tagged objects back to what they stand for)."""
    if isinstance(value, list):
        return [_decode(item, where) for item in value]
    if not isinstance(value, dict):
        return value
    tagged = _decode_tagged(value, where)
    if tagged is not _NOT_TAGGED:
        return tagged
    return {str(k): _decode(v, where) for k, v in value.items()}


_NOT_TAGGED = object()


def _decode_tagged(value: dict[str, Any], where: str) -> Any:
    """The value a tagged object stands for; _NOT_TAGGED for an ordinary JSON object."""
    keys = set(value)
    if not keys & {_BYTES, _BIGINT, _FLOAT, _SCALAR}:
        return _NOT_TAGGED
    try:
        if keys == {_BYTES}:
            return base64.b64decode(value[_BYTES], validate=True)
        if keys == {_BIGINT} and re.fullmatch(r"-?[0-9]{1,4000}", value[_BIGINT]):
            return int(value[_BIGINT])
        if keys == {_FLOAT}:
            return {"Infinity": math.inf, "-Infinity": -math.inf}[value[_FLOAT]]
        if keys == {_FLOAT, "bits"} and value[_FLOAT] == "NaN" and len(value["bits"]) == 16:
            result = struct.unpack(">d", bytes.fromhex(value["bits"]))[0]
            if math.isnan(result):
                return result
        if keys in ({_SCALAR, "value"}, {_SCALAR, "base64"}):
            return _decode_numpy_scalar(value)
    except (KeyError, TypeError, ValueError, struct.error, tensordb.CorruptionError):
        pass
    raise tensordb.FormatError(f"{where}: malformed tagged value {str(value)[:200]}")


def _decode_numpy_scalar(value: dict[str, Any]) -> Any:
    dtype = tensordb.dtype_from_text(value[_SCALAR])
    if "value" in value:
        if dtype.kind not in "biufU" or isinstance(value["value"], (dict, list)):
            raise ValueError("no JSON form for this dtype")
        return dtype.type(value["value"])
    raw = base64.b64decode(value["base64"], validate=True)
    if len(raw) != dtype.itemsize:
        raise ValueError("wrong number of bytes")
    return dtype.type(raw) if dtype.kind == "S" else np.frombuffer(raw, dtype=dtype)[0]


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
    if math.prod(source_chunks) * max(itemsize, 1) > MAX_CHUNK_BYTES:
        raise tensordb.FormatError(f"{job.path}: chunks {source_chunks} hold more than "
                                   f"{MAX_CHUNK_BYTES} bytes; tensordb reads at most that much at once")
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
    for box in _stored_boxes(z, shape, array.chunks, max(itemsize, dtype.itemsize), job.path):
        block = np.asarray(z[box or ...])
        if job.as_bytes:
            block = np.require(block, requirements="C").view(dtype).reshape(block.shape[:-1])
        array[box or ...] = block.astype(dtype, copy=False)


def _fixed_width(z: Any, job: _ArrayJob) -> np.dtype[Any]:
    """The fixed-width ``U``/``S`` dtype that holds every item of a variable-length string array."""
    longest, kinds = 1, set()
    shape: tuple[int, ...] = tuple(z.shape)
    for box in _stored_boxes(z, shape, tuple(z.chunks), 64, job.path):
        for item in np.asarray(z[box or ...], dtype=object).reshape(-1):
            kinds.add(type(item))
            longest = max(longest, len(item))
    if kinds - {str} and kinds - {bytes}:
        raise tensordb.FormatError(f"{job.path}: variable-length items of types "
                                   f"{sorted(k.__name__ for k in kinds)}; tensordb stores str or bytes items only")
    return np.dtype(f"S{longest}" if kinds == {bytes} else f"<U{longest}")


def _stored_boxes(z: Any, shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int,
                  where: str) -> Iterator[tuple[slice, ...]]:
    """Boxes of whole ``chunks`` (about _BLOCK_BYTES each) covering every stored Zarr chunk.

    Stored chunks are found by listing the store, so a huge, sparse array
    costs what it stores, not what its shape claims: dense arrays are read
    in large blocks, sparse ones one stored chunk (or shard) at a time.
    """
    if 0 in shape:
        return
    if not shape:
        yield ()
        return
    first = next(tensordb.iter_blocks(shape, chunks, itemsize, _BLOCK_BYTES))
    block = [s.stop for s in first]
    units = _stored_units(z)
    if units is None:  # no listing: every block, if there are not too many
        grid = [-(-n // b) for n, b in zip(shape, block)]
        if math.prod(grid) > _MAX_BLIND_BLOCKS:
            raise tensordb.FormatError(f"{where}: cannot list the stored chunks of an array of shape {shape}")
        for index in itertools.product(*(range(g) for g in grid)):
            yield tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, shape))
        return
    unit, coords = units
    regions = [tuple(slice(c * u, min((c + 1) * u, n)) for c, u, n in zip(coord, unit, shape)) for coord in coords]
    found: set[tuple[int, ...]] = set()
    for region in regions:  # the blocks each stored unit overlaps
        found.update(itertools.product(*(range(r.start // b, -(-r.stop // b)) for r, b in zip(region, block))))
    if len(regions) * math.prod(unit) * 4 >= len(found) * math.prod(block):
        for index in sorted(found):
            yield tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, shape))
        return
    for region in sorted(regions, key=lambda r: tuple(s.start for s in r)):
        for box in tensordb.iter_blocks(tuple(r.stop - r.start for r in region), chunks, itemsize, _BLOCK_BYTES):
            yield tuple(slice(r.start + b.start, r.start + b.stop) for b, r in zip(box, region))


def _stored_units(z: Any) -> tuple[tuple[int, ...], list[tuple[int, ...]]] | None:
    """(unit shape, coordinates of the stored units): shards if the array is sharded, else chunks."""
    from zarr.core.sync import sync

    encoding = getattr(z.metadata, "chunk_key_encoding", None)
    if encoding is None:
        return None
    unit: tuple[int, ...] = tuple(z.shards or z.chunks)
    ndim = len(unit)
    prefix = z.store_path.path + "/" if z.store_path.path else ""
    grid = [-(-n // u) for n, u in zip(z.shape, unit)]

    async def listing() -> list[str]:
        return [key async for key in z.store_path.store.list_prefix(prefix)]

    name, separator = getattr(encoding, "name", None), getattr(encoding, "separator", None)
    if name not in ("default", "v2") or separator not in ("/", "."):
        return None
    coords = []
    for key in sync(listing()):
        coord = _chunk_coord(key[len(prefix):], ndim, "c" + separator if name == "default" else "", separator)
        # a key is a chunk's only if it encodes back to itself (anything else is another tool's file)
        if (coord is not None and all(c < g for c, g in zip(coord, grid))
                and encoding.encode_chunk_key(coord) == key[len(prefix):]):
            coords.append(coord)
    return unit, coords


def _chunk_coord(key: str, ndim: int, head: str, separator: str) -> tuple[int, ...] | None:
    """The grid coordinates a chunk key names, or None if it names none."""
    if ndim == 0:
        return ()
    if not key.startswith(head):
        return None
    parts = key[len(head):].split(separator)
    if len(parts) != ndim or not all(p.isdigit() and len(p) < 20 for p in parts):
        return None
    return tuple(int(p) for p in parts)
