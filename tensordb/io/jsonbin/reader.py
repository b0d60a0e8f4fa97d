"""Importing one JSON+binref file as one tree, in one transaction.

The file is checked whole first (:mod:`.checks`). Small arrays go into the
tree with the document; larger binref arrays are read after it, and the
largest are streamed in chunk-aligned blocks, never read whole.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np

import tensordb
from tensordb import limits

from .checks import ArraySpec, find_arrays, read_json
from .format import block_bytes, runs
from .names import refuse_existing, strip_json

__all__ = ["import_"]

#: binref arrays larger than this are streamed into the database in blocks.
_STREAM_ABOVE = limits.BLOCK_BYTES
#: Small binref arrays are read up front (for one bulk write) until this many bytes are held.
_EAGER_BUDGET = 64 * 2**20


def import_(
    db: tensordb.Database,
    name: str | None,
    source: str | os.PathLike[str],
    *,
    replace: bool = False,
    skip_existing: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> str:
    """Import one JSON+binref file as one tree, in one transaction.

    Every array object of the file is validated before anything is written;
    a bad file raises :class:`tensordb.FormatError` (naming the file, the
    JSON Pointer of the offending object and the problem) and leaves the
    database unchanged.

    Parameters
    ----------
    db : tensordb.Database
        The database to import into (open for writing).
    name : str or None
        The tree name; None names it after the file, without ``.json``.
    source : str or path-like
        The JSON file. ``binref`` buffers are resolved relative to its folder
        and must stay inside it.
    replace : bool
        Replace an existing tree of that name. Without ``replace`` or
        ``skip_existing``, an existing tree raises
        :class:`tensordb.TreeExistsError` and nothing is written.
    skip_existing : bool
        Keep an existing tree of that name and import nothing (the file is
        not read).
    progress : callable, optional
        Called as ``progress(bytes_done, bytes_total)`` as array bytes are written.

    Returns
    -------
    str
        The name of the tree (written, or kept with ``skip_existing``).

    Example
    -------
    >>> tensordb.io.jsonbin.import_(db, None, "bm01-flow-over-cylinder-sample037_510.json")
    'bm01-flow-over-cylinder-sample037_510'
    >>> db["bm01-flow-over-cylinder-sample037_510"]["/0/data/internal/points"].shape
    (4778, 3)
    """
    filename = os.fspath(source)
    if name is None:
        name = strip_json(os.path.basename(filename))
    if refuse_existing(db, [(filename, name)], replace=replace, skip_existing=skip_existing):
        return name
    doc = read_json(filename)
    specs = find_arrays(doc, filename)
    _write(db, name, doc, specs, filename, replace, progress)
    return name


def _write(db: tensordb.Database, name: str, doc: Any, specs: list[ArraySpec], filename: str, replace: bool,
           progress: Callable[[int, int], object] | None) -> None:
    """Put the arrays into ``doc`` (small ones) or stream them after (large ones), in one transaction."""
    total = sum(spec.nbytes for spec in specs)
    done = 0

    def advance(nbytes: int) -> None:
        nonlocal done
        done += nbytes
        if progress is not None:
            progress(done, total)

    with contextlib.ExitStack() as files:
        opened: dict[str, io.BufferedReader] = {}

        def source(spec: ArraySpec) -> io.BufferedReader:
            assert spec.bin_path is not None
            if spec.bin_path not in opened:
                opened[spec.bin_path] = files.enter_context(open(spec.bin_path, "rb"))
            return opened[spec.bin_path]

        deferred: list[ArraySpec] = []
        held = 0
        for spec in specs:
            if spec.inline is not None:
                value: Any = np.frombuffer(spec.inline, dtype=spec.dtype).reshape(spec.shape)
            elif spec.nbytes <= _STREAM_ABOVE and held + spec.nbytes <= _EAGER_BUDGET:
                value = _read_box(source(spec), spec, _full_box(spec.shape), filename)
                held += spec.nbytes
            else:
                deferred.append(spec)
                value = None
            if value is not None:
                advance(spec.nbytes)
            if spec.parent is None:
                doc = value
            else:
                spec.parent[spec.key] = value  # type: ignore[index]
        with db.transaction():
            if not replace and name in db:  # written meanwhile by another process
                raise tensordb.TreeExistsError(f"{db.filename}: a tree named {name!r} exists already")
            root_spec = deferred[0] if deferred and deferred[0].parent is None else None
            db[name] = [None] if root_spec is not None else doc
            tree = db[name]
            for spec in deferred:
                pointer = "/0" if spec is root_spec else spec.pointer
                if spec.nbytes <= _STREAM_ABOVE:
                    tree.set(pointer, _read_box(source(spec), spec, _full_box(spec.shape), filename))
                    advance(spec.nbytes)
                else:
                    array = tree.create_array(pointer, spec.shape, spec.dtype)
                    _stream_in(array, source(spec), spec, filename, advance)
            if root_spec is not None:
                db[name] = tree["/0"]  # the root is the array itself: reference it, no copy


def _full_box(shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, n) for n in shape)


def _stream_in(array: tensordb.Array, f: io.BufferedReader, spec: ArraySpec, filename: str,
               advance: Callable[[int], None]) -> None:
    for box in array.iter_blocks(block_bytes(spec.shape, array.chunks, spec.dtype.itemsize)):
        block = _read_box(f, spec, box, filename)
        array[box] = block
        advance(block.nbytes)


def _read_box(f: io.BufferedReader, spec: ArraySpec, box: tuple[slice, ...], filename: str) -> np.ndarray[Any, Any]:
    """The elements of ``box`` read from the array's bytes in ``f`` (only those bytes)."""
    itemsize = spec.dtype.itemsize
    out = np.empty(tuple(s.stop - s.start for s in box), dtype=spec.dtype)
    flat = out.reshape(-1).view(np.uint8).data
    pos = 0
    for start, count in runs(spec.shape, box):
        f.seek(spec.offset + start * itemsize)
        end = pos + count * itemsize
        while pos < end:
            n = f.readinto(flat[pos:end])
            if not n:
                raise tensordb.FormatError(
                    f"{filename}: {spec.pointer or '(root)'}: {os.path.basename(spec.bin_path or '')} "
                    "ended before the array did (was the file changed during the import?)"
                )
            pos += n
    return out

