"""Exporting one tree, subtree or plain value as a JSON+binref file (and its ``.bin`` file).

Both files are written under temporary names beside their targets, synced,
and moved into place with :func:`os.replace`: a reader sees the old files
or the new ones, never a half-written one, and a failure leaves neither.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import math
import os
import secrets
from pathlib import Path
from typing import IO, Any

import numpy as np

import tensordb
from tensordb import limits

from .format import block_bytes, child_pointer, dtype_name, le_bytes, runs

__all__ = ["export", "check_output", "os_error"]


def export(
    tree_or_node: tensordb.Tree | tensordb.Node | Any,
    target: str | os.PathLike[str],
    inline_below: int = 1024,
    *,
    force: bool = False,
) -> None:
    """Write a tree (or subtree, or plain value) as a JSON+binref file.

    Arrays of fewer than ``inline_below`` bytes are written inline as base64;
    larger ones are appended, back to back as raw little-endian C-order
    bytes, to one ``<json stem>.bin`` file next to the JSON file and
    referenced as ``"<stem>.bin:OFFSET"``. Arrays are written slab by slab,
    never whole. Both files are written under temporary names and moved into
    place with :func:`os.replace`; on failure neither is left behind.

    Parameters
    ----------
    tree_or_node : tensordb.Tree, tensordb.Node or value
        What to export: a tree, a dict/list node, an Array, or a plain value
        (dicts, lists, scalars, numpy arrays, :class:`tensordb.Array` handles).
    target : str or path-like
        The JSON file to write. Its folder must exist.
    inline_below : int
        Arrays with ``nbytes < inline_below`` go inline (0: every array to the
        ``.bin`` file; a huge value: every array inline, no ``.bin`` file).
    force : bool
        Overwrite an existing JSON or ``.bin`` file. Without it an existing
        one raises :class:`FileExistsError` and nothing is written.

    Raises
    ------
    TypeError
        For values the format cannot express (bytes, structured or void
        dtypes, dicts that would read back as arrays), naming their path.
    FileExistsError, FileNotFoundError, IsADirectoryError
        For an output that exists (without ``force``), a missing folder, or a
        folder where the file should go; checked before anything is written.

    Example
    -------
    >>> tensordb.io.jsonbin.export(db["sample037"], "out/sample037.json")
    >>> tensordb.io.jsonbin.export(db["sample037"]["/data"], "out/data.json", inline_below=0, force=True)
    """
    if not isinstance(inline_below, int) or isinstance(inline_below, bool) or inline_below < 0:
        raise ValueError(f"inline_below must be an int >= 0, got {inline_below!r}")
    shown = os.fspath(target)
    json_path = os.path.abspath(shown)
    folder = os.path.dirname(json_path)
    bin_name = Path(json_path).stem + ".bin"
    bin_path = os.path.join(folder, bin_name)
    if bin_path == json_path:
        raise ValueError(f"{shown}: the JSON file cannot be named like its .bin file")
    check_output(shown, json_path, bin_path, force)
    if isinstance(tree_or_node, (tensordb.Tree, tensordb.Node)):
        value = tree_or_node.load(lazy=True)
    else:
        value = tree_or_node
    temps: list[str] = []
    placed: list[str] = []
    try:
        writer = _BinWriter(folder, bin_name, temps)
        try:
            out = _export_value(value, writer, inline_below)
        except TypeError as exc:  # what the format cannot say: name the file it was going to
            raise TypeError(f"{shown}: {exc}") from None
        finally:
            writer.close()
        fd = _temp_file(folder, os.path.basename(json_path), temps)
        json_tmp = temps[-1]
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=4)
            f.flush()
            os.fsync(f.fileno())
        if writer.tmp_path is not None:
            existed = os.path.exists(bin_path)
            os.replace(writer.tmp_path, bin_path)
            if not existed:
                placed.append(bin_path)
        os.replace(json_tmp, json_path)
        placed.clear()
        temps.clear()
    except OSError as exc:
        if isinstance(exc, tensordb.TensorDBError):  # reading the database failed: its own message says where
            raise
        # the user's path, not a temporary file's
        raise os_error(type(exc), exc.errno or 0, f"{shown}: cannot write ({exc.strerror or exc})") from None
    finally:
        for tmp in temps + placed:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def check_output(shown: str, json_path: str, bin_path: str, force: bool) -> None:
    """Refuse an export that would fail half way or overwrite files without ``force``, before writing."""
    folder = os.path.dirname(json_path)
    if not os.path.isdir(folder):
        raise os_error(FileNotFoundError, errno.ENOENT,
                        f"{shown}: folder {os.path.dirname(shown) or folder} does not exist")
    for target in (json_path, bin_path):
        if os.path.isdir(target):
            where = "is a folder" if target == json_path else f"{os.path.basename(target)} beside it is a folder"
            raise os_error(IsADirectoryError, errno.EISDIR, f"{shown}: {where}")
    existing = [os.path.basename(p) for p in (json_path, bin_path) if os.path.lexists(p)]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise os_error(FileExistsError, errno.EEXIST, f"{shown}: {' and '.join(existing)} already {verb}; "
                                                       "pass --force (force=True in Python) to overwrite")


def os_error(cls: type[OSError], code: int, message: str) -> OSError:
    """An OSError whose text is ``message`` alone (no "[Errno N]"), with ``errno`` still set."""
    error = cls(message)
    error.errno = code
    return error


def _temp_file(folder: str, name: str, temps: list[str]) -> int:
    """A new hidden temporary file next to ``name``, listed in ``temps`` before it exists.

    Listed first, so that an interrupt (Ctrl-C) at any point leaves no file
    the caller's cleanup does not know about. Its permissions are those a
    plain open() would give.
    """
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        temps.append(tmp)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            temps.pop()
    raise FileExistsError(f"{os.path.join(folder, name)}: no free temporary name beside it")


class _BinWriter:
    """Appends arrays to the temporary ``.bin`` file (created on first use)."""

    def __init__(self, folder: str, bin_name: str, temps: list[str]) -> None:
        self.folder = folder
        self.bin_name = bin_name
        self.temps = temps
        self.tmp_path: str | None = None
        self.file: IO[bytes] | None = None
        self.end = 0

    def _open(self) -> IO[bytes]:
        if self.file is None:
            fd = _temp_file(self.folder, self.bin_name, self.temps)
            self.tmp_path = self.temps[-1]
            self.file = os.fdopen(fd, "wb")
        return self.file

    def append(self, array: np.ndarray[Any, Any] | tensordb.Array, shape: tuple[int, ...], le: np.dtype[Any]) -> str:
        """Write ``array`` at the end as little-endian bytes; return its ``"name.bin:offset"``."""
        f = self._open()
        base = self.end
        itemsize = le.itemsize
        if isinstance(array, np.ndarray):
            flat = array.reshape(-1)  # a copy only if the array is not contiguous
            step = max(1, limits.BLOCK_BYTES // itemsize)
            f.seek(base)
            for i in range(0, flat.size, step):
                f.write(le_bytes(flat[i:i + step], le))
        else:
            for box in array.iter_blocks(block_bytes(shape, array.chunks, itemsize)):
                data = le_bytes(np.asarray(array[box]), le)
                pos = 0
                for start, count in runs(shape, box):
                    f.seek(base + start * itemsize)
                    f.write(data[pos:pos + count * itemsize])
                    pos += count * itemsize
        self.end = base + math.prod(shape) * itemsize
        return f"{self.bin_name}:{base}"

    def close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()


def _array_object(
    array: np.ndarray[Any, Any] | tensordb.Array, pointer: str, writer: _BinWriter, inline_below: int
) -> dict[str, Any]:
    dtype = array.dtype
    shape = tuple(array.shape)
    name = dtype_name(dtype, pointer)
    le = dtype.newbyteorder("<")
    if math.prod(shape) * dtype.itemsize < inline_below:
        raw = le_bytes(np.asarray(array[...]), le)
        data = {"buffer": base64.b64encode(raw).decode("ascii"), "encoding": "base64"}
    else:
        data = {"buffer": writer.append(array, shape, le), "encoding": "binref"}
    return {"object_type": "array", "shape": list(shape), "dtype": name, "data": data}


def _export_value(value: Any, writer: _BinWriter, inline_below: int) -> Any:
    """The JSON document for ``value`` (arrays written as they are met, in document order)."""
    holder: list[Any] = [None]
    stack: list[tuple[Any, dict[str, Any] | list[Any], str | int, str]] = [(value, holder, 0, "")]
    while stack:
        item, parent, key, pointer = stack.pop()
        out: Any
        if item is None or isinstance(item, (bool, int, float, str)):
            out = item
        elif isinstance(item, (np.ndarray, tensordb.Array)):
            out = _array_object(item, pointer, writer, inline_below)
        elif isinstance(item, np.generic):
            out = _array_object(np.asarray(item), pointer, writer, inline_below)
        elif isinstance(item, dict):
            if item.get("object_type") == "array":
                raise TypeError(f"{pointer or '(root)'}: a dict with \"object_type\": \"array\" would be read "
                                "back as an array")
            out = {}
            for k in reversed(item):
                if not isinstance(k, str):
                    raise TypeError(f"{pointer or '(root)'}: dict key {k!r} is not a str")
                stack.append((item[k], out, k, child_pointer(pointer, k)))
            # children are popped in document order, so ``out`` gets its keys in order
        elif isinstance(item, (list, tuple)):
            out = [None] * len(item)
            stack.extend((item[i], out, i, child_pointer(pointer, i)) for i in range(len(item) - 1, -1, -1))
        else:
            raise TypeError(f"{pointer or '(root)'}: a {type(item).__name__} cannot be expressed in JSON")
        if isinstance(parent, dict):
            parent[str(key)] = out
        else:
            parent[int(key)] = out
    return holder[0]
