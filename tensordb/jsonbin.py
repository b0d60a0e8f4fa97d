"""Import and export of the JSON+binref format.

A JSON file whose arrays are objects of the form::

    {"object_type": "array", "shape": [4778, 3], "dtype": "float32",
     "data": {"buffer": "...", "encoding": "base64" | "binref"}}

``base64`` buffers hold the raw bytes inline; ``binref`` buffers are
``"FILE.bin:OFFSET"`` pointers into a raw file beside the JSON file. Either
way the bytes are little-endian, C order, ``prod(shape) * itemsize`` long.
Every other JSON value (including dicts with another ``object_type``) is an
ordinary value and is stored as is, key order included.

Files are untrusted input: every array object of a file is validated
(dtype, shape, size cap, encoding, base64 alphabet and length, binref file
name confined to the JSON file's folder, offsets and lengths against the
file size) before anything is written, and a file is imported in one
transaction. Large arrays are streamed in slabs, never read whole.

This module uses only tensordb's public API.

Example
-------
>>> import tensordb
>>> from tensordb.jsonbin import import_file, import_folder, export_tree
>>> db = tensordb.open("runs.tdb")
>>> import_file(db, "sample037.json")
'sample037'
>>> report = import_folder(db, "samples/")
>>> report.ok, len(report.imported)
(True, 200)
>>> export_tree(db["sample037"], "out/sample037.json")   # writes out/sample037.json and out/sample037.bin
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import io
import itertools
import json
import math
import ntpath
import os
import re
import secrets
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

import tensordb

__all__ = [
    "import_file", "import_folder", "folder_files", "refuse_existing", "refuse_clashes", "export_tree", "export_trees",
    "ImportReport",
    "MAX_ARRAY_BYTES",
]

#: Arrays claiming more bytes than this are refused (checked before anything is allocated).
MAX_ARRAY_BYTES = 2**40
#: No single dimension may exceed this (keeps every size well inside numpy's intp).
_MAX_DIM = 2**40
_MAX_NDIM = 32
#: binref arrays larger than this are streamed into the database in slabs.
_STREAM_ABOVE = 4 * 2**20
#: Slab size when streaming an array in or out.
_BLOCK_BYTES = 4 * 2**20
#: Small binref arrays are read up front (for one bulk write) until this many bytes are held.
_EAGER_BUDGET = 64 * 2**20
_MAX_DTYPE_TEXT = 64
_ARRAY_KEYS = ("object_type", "shape", "dtype", "data")
_DATA_KEYS = ("buffer", "encoding")
_OFFSET = re.compile(r"[0-9]{1,20}")
_SUPPORTED_KINDS = "biufcmMSU"


class _Problem(Exception):
    """What is wrong with one array object (the caller adds the file and the pointer)."""


@dataclass
class ImportReport:
    """The outcome of :func:`import_folder`.

    Attributes
    ----------
    imported : list of str
        Names of the trees imported, in import order.
    failed : list of (str, str)
        ``(file path, error message)`` for every file that was not imported.
    skipped : list of str
        Names of the trees that existed and were kept (``skip_existing``).
    """

    imported: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every file was imported."""
        return not self.failed


@dataclass
class _ArraySpec:
    """A validated array object: where it sits and where its bytes come from."""

    parent: dict[str, Any] | list[Any] | None  # None: the array is the document's root
    key: str | int | None
    pointer: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    nbytes: int
    inline: bytes | None = None  # decoded base64
    bin_path: str | None = None  # resolved binref file
    offset: int = 0


# -- import ----------------------------------------------------------------------------


def import_file(
    db: tensordb.Database,
    path: str | os.PathLike[str],
    name: str | None = None,
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
    path : str or path-like
        The JSON file. ``binref`` buffers are resolved relative to its folder
        and must stay inside it.
    name : str, optional
        The tree name; defaults to the file name without ``.json``.
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
    >>> import_file(db, "bm01-flow-over-cylinder-sample037_510.json")
    'bm01-flow-over-cylinder-sample037_510'
    >>> db["bm01-flow-over-cylinder-sample037_510"]["/0/data/internal/points"].shape
    (4778, 3)
    """
    filename = os.fspath(path)
    if name is None:
        name = _strip_json(os.path.basename(filename))
    if refuse_existing(db, [(filename, name)], replace=replace, skip_existing=skip_existing):
        return name
    doc = _read_json(filename)
    specs = _validate(doc, filename)
    _write(db, name, doc, specs, filename, replace, progress)
    return name


def import_folder(
    db: tensordb.Database,
    folder: str | os.PathLike[str],
    pattern: str = "**/*.json",
    progress: Callable[[int, int, str], object] | None = None,
    *,
    prefix: str = "",
    replace: bool = False,
    skip_existing: bool = False,
) -> ImportReport:
    """Import every JSON+binref file of a folder, one tree (and one transaction) per file.

    A tree is named after the file's path relative to ``folder``, without
    ``.json`` and with ``/`` separators (``sim01/step003.json`` ->
    ``"sim01/step003"``). A bad file is recorded in the report with its
    error message and imports nothing; the other files are still imported.

    Names that exist already are checked first: unless ``replace`` or
    ``skip_existing`` is given, :class:`tensordb.TreeExistsError` names them
    and nothing is imported.

    Parameters
    ----------
    db : tensordb.Database
        The database to import into (open for writing).
    folder : str or path-like
        The folder to search.
    pattern : str
        A :meth:`pathlib.Path.glob` pattern relative to ``folder``
        (default ``"**/*.json"``: every JSON file, recursively).
    progress : callable, optional
        Called as ``progress(done, total, path)`` after each file.
    prefix : str
        Put before every tree name (``"run2/"`` -> ``"run2/sim01/step003"``).
    replace : bool
        Replace existing trees of the same names.
    skip_existing : bool
        Keep existing trees and import only the files whose trees are missing:
        this is how an interrupted import resumes.

    Returns
    -------
    ImportReport
        ``imported`` and ``skipped`` tree names, ``failed`` (file, message) pairs, ``ok``.

    Example
    -------
    >>> report = import_folder(db, "samples/", progress=lambda done, total, path: print(done, total, path))
    >>> report.ok
    True
    """
    if db.readonly:
        raise tensordb.ReadOnlyError(f"{db.filename}: database is open read-only")
    files = folder_files(folder, pattern, prefix)
    keep = refuse_existing(db, [(os.fspath(f), n) for f, n in files], replace=replace, skip_existing=skip_existing)
    report = ImportReport()
    for done, (file, tree_name) in enumerate(files, start=1):
        if tree_name in keep:
            report.skipped.append(tree_name)
        else:
            try:
                report.imported.append(import_file(db, file, tree_name, replace=replace))
            except (tensordb.ClosedError, tensordb.ReadOnlyError):
                raise
            except Exception as exc:  # one bad file must not stop the others
                report.failed.append((os.fspath(file), str(exc) or type(exc).__name__))
        if progress is not None:
            progress(done, len(files), os.fspath(file))
    return report


def folder_files(
    folder: str | os.PathLike[str], pattern: str = "**/*.json", prefix: str = ""
) -> list[tuple[Path, str]]:
    """``(file, tree name)`` of every file a folder import would import, sorted by path.

    Example
    -------
    >>> folder_files("samples/")[:1]
    [(PosixPath('samples/sim01/step000.json'), 'sim01/step000')]
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{os.fspath(folder)}: not a folder")
    files = sorted(p for p in root.glob(pattern) if p.is_file())
    return [(file, prefix + _strip_json(file.relative_to(root).as_posix())) for file in files]


def refuse_existing(
    db: tensordb.Database, planned: list[tuple[str, str]], *, replace: bool = False, skip_existing: bool = False
) -> set[str]:
    """Check an import's ``(source, tree name)`` pairs before anything is written.

    Raises :class:`tensordb.TreeExistsError` naming every tree that two
    sources would both write, and (without ``replace`` or ``skip_existing``)
    every tree that exists already. Returns the names to keep (skip).
    """
    if replace and skip_existing:
        raise ValueError("replace and skip_existing exclude each other")
    refuse_clashes(db.filename, planned)
    existing = [name for name in dict.fromkeys(name for _, name in planned) if name in db]
    if replace or not existing:
        return set()
    if skip_existing:
        return set(existing)
    raise tensordb.TreeExistsError(
        f"{db.filename}: {len(existing)} tree(s) exist already, nothing was imported: "
        f"{_listing([repr(n) for n in existing])}; pass --replace or --skip-existing (replace=True or "
        "skip_existing=True in Python)"
    )


def refuse_clashes(filename: str, planned: list[tuple[str, str]]) -> None:
    """Raise :class:`tensordb.TreeExistsError` naming every tree two of the ``(source, tree name)`` pairs share."""
    sources: dict[str, list[str]] = {}
    for source, name in planned:
        sources.setdefault(name, []).append(source)
    clashes = [f"{name!r} (from {' and '.join(srcs)})" for name, srcs in sources.items() if len(srcs) > 1]
    if clashes:
        raise tensordb.TreeExistsError(
            f"{filename}: several sources would write the same tree, nothing was imported: "
            f"{_listing(clashes)}; import a folder that holds them all (tree names then keep their sub-folders), "
            "or one source at a time with --prefix or --name"
        )


def _listing(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _strip_json(name: str) -> str:
    return name[: -len(".json")] if name.lower().endswith(".json") and len(name) > 5 else name


def _read_json(filename: str) -> Any:
    with open(filename, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise tensordb.FormatError(
            f"{filename}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise tensordb.FormatError(f"{filename}: not UTF-8/16/32 text: {exc}") from None
    except RecursionError:
        raise tensordb.FormatError(f"{filename}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal with too many digits
        raise tensordb.FormatError(f"{filename}: invalid JSON: {exc}") from None


def _child_pointer(pointer: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{pointer}/{key}"
    return pointer + "/" + key.replace("~", "~0").replace("/", "~1")


def _is_array_object(value: object) -> bool:
    return isinstance(value, dict) and value.get("object_type") == "array"


def _validate(doc: Any, filename: str) -> list[_ArraySpec]:
    """Find and check every array object of ``doc`` (document order), iteratively."""
    specs: list[_ArraySpec] = []
    folder = os.path.dirname(os.path.abspath(filename))
    sizes: dict[str, int] = {}
    stack: list[tuple[Any, dict[str, Any] | list[Any] | None, str | int | None, str]] = [(doc, None, None, "")]
    while stack:
        value, parent, key, pointer = stack.pop()
        if _is_array_object(value):
            try:
                specs.append(_check_array(value, parent, key, pointer, folder, sizes))
            except _Problem as exc:
                raise tensordb.FormatError(f"{filename}: {pointer or '(root)'}: {exc}") from None
        elif isinstance(value, dict):
            stack.extend((v, value, k, _child_pointer(pointer, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((value[i], value, i, _child_pointer(pointer, i)) for i in range(len(value) - 1, -1, -1))
    return specs


def _check_array(
    obj: dict[str, Any],
    parent: dict[str, Any] | list[Any] | None,
    key: str | int | None,
    pointer: str,
    folder: str,
    sizes: dict[str, int],
) -> _ArraySpec:
    missing = [k for k in _ARRAY_KEYS if k not in obj]
    if missing:
        raise _Problem(f"array object without {', '.join(repr(k) for k in missing)}")
    extra = [k for k in obj if k not in _ARRAY_KEYS]
    if extra:
        raise _Problem(f"array object with unexpected keys {', '.join(repr(k) for k in extra)}")
    dtype = _parse_dtype(obj["dtype"])
    shape = _parse_shape(obj["shape"])
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise _Problem(f"shape {list(shape)} of {dtype.name} holds {nbytes} bytes, more than the limit "
                       f"of {MAX_ARRAY_BYTES} bytes")
    data = obj["data"]
    if not isinstance(data, dict):
        raise _Problem(f"'data' must be an object with 'buffer' and 'encoding', got {_short(data)}")
    missing = [k for k in _DATA_KEYS if k not in data]
    extra = [k for k in data if k not in _DATA_KEYS]
    if missing or extra:
        raise _Problem(f"'data' must have exactly the keys 'buffer' and 'encoding', got {list(data)}")
    encoding, buffer = data["encoding"], data["buffer"]
    if not isinstance(buffer, str):
        raise _Problem(f"buffer must be a string, got {_short(buffer)}")
    spec = _ArraySpec(parent, key, pointer, dtype, shape, nbytes)
    if encoding == "base64":
        try:
            spec.inline = base64.b64decode(buffer, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Problem(f"invalid base64 buffer ({exc})") from None
        if len(spec.inline) != nbytes:
            raise _Problem(f"base64 buffer decodes to {len(spec.inline)} bytes, but shape {list(shape)} of "
                           f"{dtype.name} needs {nbytes}")
    elif encoding == "binref":
        spec.bin_path, spec.offset = _check_binref(buffer, nbytes, folder, sizes)
    else:
        raise _Problem(f"unknown encoding {_short(encoding)} (expected 'base64' or 'binref')")
    return spec


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_dtype(text: object) -> np.dtype[Any]:
    """A dtype from a plain numpy name; structured, object, void and unsized dtypes are refused."""
    if not isinstance(text, str):
        raise _Problem(f"dtype must be a string such as 'float32', got {_short(text)}")
    if not text or len(text) > _MAX_DTYPE_TEXT or not text.isascii():
        raise _Problem(f"unknown dtype {_short(text)}")
    if text[0] in ">!":
        raise _Problem(f"big-endian dtype {text!r}: the format stores little-endian bytes "
                       f"(write it as {'<' + text[1:]!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dtype = np.dtype(text)
    except Exception:
        raise _Problem(f"unknown dtype {text!r}") from None
    if dtype.fields is not None or dtype.subdtype is not None:
        raise _Problem(f"structured or subarray dtype {text!r} is not supported")
    if dtype.kind == "O":
        raise _Problem(f"object dtype {text!r} is not supported")
    if dtype.kind not in _SUPPORTED_KINDS:
        raise _Problem(f"dtype {text!r} ({dtype}) is not supported")
    if dtype.itemsize == 0:
        raise _Problem(f"dtype {text!r} has no size")
    return dtype.newbyteorder("<")


def _parse_shape(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list):
        raise _Problem(f"shape must be a list of ints >= 0, got {_short(shape)}")
    if len(shape) > _MAX_NDIM:
        raise _Problem(f"shape has {len(shape)} dimensions (at most {_MAX_NDIM})")
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise _Problem(f"shape must be a list of ints >= 0, got {_short(shape)}")
        if dim > _MAX_DIM:
            raise _Problem(f"shape {_short(shape)} has a dimension larger than {_MAX_DIM}")
    return tuple(shape)


def _check_binref(buffer: str, nbytes: int, folder: str, sizes: dict[str, int]) -> tuple[str, int]:
    """(resolved file, offset) of a ``FILE:OFFSET`` buffer, checked against the file."""
    file_part, sep, offset_text = buffer.rpartition(":")
    if not sep or not file_part:
        raise _Problem(f"malformed binref buffer {_short(buffer)} (expected 'FILE.bin:OFFSET')")
    if not _OFFSET.fullmatch(offset_text):
        raise _Problem(f"binref offset {_short(offset_text)} is not a non-negative integer")
    offset = int(offset_text)
    if "\0" in file_part:
        raise _Problem(f"binref file name {_short(file_part)} contains a NUL character")
    if os.path.isabs(file_part) or ntpath.isabs(file_part) or ntpath.splitdrive(file_part)[0]:
        raise _Problem(f"binref file {file_part!r} is an absolute path; only paths relative to the JSON "
                       "file's folder are allowed")
    if ".." in re.split(r"[\\/]", file_part):
        raise _Problem(f"binref file {file_part!r} contains '..'; it must stay inside the JSON file's folder")
    real_folder = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(real_folder, file_part))
    if target == real_folder or os.path.commonpath([real_folder, target]) != real_folder:
        raise _Problem(f"binref file {file_part!r} resolves outside the JSON file's folder")
    if target not in sizes:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise _Problem(f"binref file {file_part!r} does not exist") from None
        except OSError as exc:
            raise _Problem(f"binref file {file_part!r} cannot be read ({exc.strerror})") from None
        if not os.path.isfile(target):
            raise _Problem(f"binref file {file_part!r} is not a regular file")
        sizes[target] = st.st_size
    size = sizes[target]
    if offset > size or (offset == size and nbytes > 0):
        raise _Problem(f"binref offset {offset} is past the end of {file_part} ({size} bytes)")
    if offset + nbytes > size:
        raise _Problem(f"{file_part} ends before the array does: the array needs {nbytes} bytes from offset "
                       f"{offset}, the file has {size - offset} ({size} bytes in all)")
    return target, offset


def _write(db: tensordb.Database, name: str, doc: Any, specs: list[_ArraySpec], filename: str, replace: bool,
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

        def source(spec: _ArraySpec) -> io.BufferedReader:
            assert spec.bin_path is not None
            if spec.bin_path not in opened:
                opened[spec.bin_path] = files.enter_context(open(spec.bin_path, "rb"))
            return opened[spec.bin_path]

        deferred: list[_ArraySpec] = []
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


def _stream_in(array: tensordb.Array, f: io.BufferedReader, spec: _ArraySpec, filename: str,
               advance: Callable[[int], None]) -> None:
    for box in _blocks(spec.shape, array.chunks, spec.dtype.itemsize):
        block = _read_box(f, spec, box, filename)
        array[box] = block
        advance(block.nbytes)


def _read_box(f: io.BufferedReader, spec: _ArraySpec, box: tuple[slice, ...], filename: str) -> np.ndarray[Any, Any]:
    """The elements of ``box`` read from the array's bytes in ``f`` (only those bytes)."""
    itemsize = spec.dtype.itemsize
    out = np.empty(tuple(s.stop - s.start for s in box), dtype=spec.dtype)
    flat = out.reshape(-1).view(np.uint8).data
    pos = 0
    for start, count in _runs(spec.shape, box):
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


# -- blocks: bounded pieces of an array, and the file ranges they occupy ------------------


def _blocks(
    shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int, budget: int = _BLOCK_BYTES
) -> Iterator[tuple[slice, ...]]:
    """Boxes covering an array once, aligned with its chunks, each of bounded size.

    Slabs along axis 0 (whole chunk rows, several per slab when they fit
    ``budget``): each is one contiguous range of the C-order bytes. When one
    chunk row is larger than ``budget`` (wide arrays whose chunks split the
    trailing axes), one chunk at a time instead.
    """
    if not shape:
        yield ()
        return
    if 0 in shape:
        return
    row = math.prod(shape[1:]) * itemsize
    slab = chunks[0] * row
    if slab <= budget:
        step = chunks[0] * max(1, budget // slab)
        rest = tuple(slice(0, n) for n in shape[1:])
        for r0 in range(0, shape[0], step):
            yield (slice(r0, min(r0 + step, shape[0])), *rest)
        return
    grid = [range(0, n, c) for n, c in zip(shape, chunks)]
    for corner in itertools.product(*grid):
        yield tuple(slice(s, min(s + c, n)) for s, c, n in zip(corner, chunks, shape))


def _runs(shape: tuple[int, ...], box: tuple[slice, ...]) -> Iterator[tuple[int, int]]:
    """``(first element, element count)`` of the contiguous C-order runs of ``box``, in order."""
    if not shape:
        yield 0, 1
        return
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    t = len(shape) - 1
    while t > 0 and box[t].start == 0 and box[t].stop == shape[t]:
        t -= 1  # axes after t are whole: one run spans them
    count = (box[t].stop - box[t].start) * strides[t]
    if count == 0:
        return
    for prefix in itertools.product(*(range(s.start, s.stop) for s in box[:t])):
        yield sum(i * s for i, s in zip(prefix, strides)) + box[t].start * strides[t], count


# -- export -----------------------------------------------------------------------------


def export_tree(
    tree_or_node: tensordb.Tree | tensordb.Node | Any,
    path: str | os.PathLike[str],
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
    path : str or path-like
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
    >>> export_tree(db["sample037"], "out/sample037.json")
    >>> export_tree(db["sample037"]["/data"], "out/data.json", inline_below=0, force=True)
    """
    if not isinstance(inline_below, int) or isinstance(inline_below, bool) or inline_below < 0:
        raise ValueError(f"inline_below must be an int >= 0, got {inline_below!r}")
    shown = os.fspath(path)
    json_path = os.path.abspath(shown)
    folder = os.path.dirname(json_path)
    bin_name = Path(json_path).stem + ".bin"
    bin_path = os.path.join(folder, bin_name)
    if bin_path == json_path:
        raise ValueError(f"{shown}: the JSON file cannot be named like its .bin file")
    _check_output(shown, json_path, bin_path, force)
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
        raise _os_error(type(exc), exc.errno or 0, f"{shown}: cannot write ({exc.strerror or exc})") from None
    finally:
        for tmp in temps + placed:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def _check_output(shown: str, json_path: str, bin_path: str, force: bool) -> None:
    """Refuse an export that would fail half way or overwrite files without ``force``, before writing."""
    folder = os.path.dirname(json_path)
    if not os.path.isdir(folder):
        raise _os_error(FileNotFoundError, errno.ENOENT,
                        f"{shown}: folder {os.path.dirname(shown) or folder} does not exist")
    for target in (json_path, bin_path):
        if os.path.isdir(target):
            where = "is a folder" if target == json_path else f"{os.path.basename(target)} beside it is a folder"
            raise _os_error(IsADirectoryError, errno.EISDIR, f"{shown}: {where}")
    existing = [os.path.basename(p) for p in (json_path, bin_path) if os.path.lexists(p)]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise _os_error(FileExistsError, errno.EEXIST, f"{shown}: {' and '.join(existing)} already {verb}; "
                                                       "pass --force (force=True in Python) to overwrite")


def _os_error(cls: type[OSError], code: int, message: str) -> OSError:
    """An OSError whose text is ``message`` alone (no "[Errno N]"), with ``errno`` still set."""
    error = cls(message)
    error.errno = code
    return error


def export_trees(
    db: tensordb.Database,
    addresses: list[str],
    folder: str | os.PathLike[str],
    inline_below: int = 1024,
    *,
    force: bool = False,
    progress: Callable[[int, int, str], object] | None = None,
) -> list[str]:
    """Export trees into a folder, the inverse of :func:`import_folder`: tree names become paths.

    Tree ``"sim01/step003"`` becomes ``FOLDER/sim01/step003.json`` (and
    ``.bin``); sub-folders are created. An address may also name a subtree
    (``"sim01/step003/data"``, see :meth:`tensordb.Database.resolve`).
    Every output file is checked before the first is written: a name that
    would leave the folder (``..``, absolute, empty segments) raises
    :class:`ValueError`, an existing file (without ``force``) or two
    addresses writing one file :class:`FileExistsError`. Each file appears
    only once complete, and an error removes the files and folders this call
    created (an interrupt leaves the complete ones).

    Returns
    -------
    list of str
        The JSON files written, in ``addresses`` order.

    Example
    -------
    >>> export_trees(db, [n for n in db if n.startswith("sim01/")], "out/")
    ['out/sim01/step000.json', ...]
    """
    root = os.fspath(folder)
    if not os.path.isdir(root):
        raise _os_error(FileNotFoundError, errno.ENOENT, f"{root}: folder does not exist")
    values = [db.resolve(address) for address in addresses]  # every address is checked first
    targets = [os.path.join(root, *_safe_segments(name, root)) + ".json" for name in addresses]
    seen: dict[str, str] = {}
    for name, target in zip(addresses, targets):
        key = os.path.normcase(target)
        if key in seen:
            raise _os_error(FileExistsError, errno.EEXIST,
                            f"{target}: trees {seen[key]!r} and {name!r} would both be written there")
        seen[key] = name
    for target in targets:
        if os.path.isdir(os.path.dirname(target)):  # a folder still to be created holds nothing to overwrite
            _check_output(target, os.path.abspath(target), os.path.abspath(target[:-5] + ".bin"), force)
    created: list[str] = []  # files and folders this call made, removed again if it fails
    try:
        for done, (value, target) in enumerate(zip(values, targets), start=1):
            created += _make_folders(os.path.dirname(target))
            fresh = [p for p in (target, target[:-5] + ".bin") if not os.path.lexists(p)]
            export_tree(value, target, inline_below, force=force)
            created += [p for p in fresh if os.path.lexists(p)]
            if progress is not None:
                progress(done, len(targets), target)
    except Exception:  # an error leaves nothing behind; an interrupt (Ctrl-C) leaves the whole files written
        for path in reversed(created):
            with contextlib.suppress(OSError):
                if os.path.isdir(path):
                    os.rmdir(path)
                else:
                    os.remove(path)
        raise
    return targets


def _make_folders(folder: str) -> list[str]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing: list[str] = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        os.mkdir(path)
    return list(reversed(missing))


def _safe_segments(name: str, root: str) -> list[str]:
    """The path segments of a tree name, refused if the name would leave the export folder."""
    segments = name.split("/")
    for seg in segments:
        if seg in ("", ".", "..") or "\\" in seg or "\0" in seg or ntpath.splitdrive(seg)[0]:
            raise ValueError(f"{root}: tree {name!r} cannot become a file path (empty, '.' or '..' segments, "
                             "backslashes and drive letters are refused)")
    return segments


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
            step = max(1, _BLOCK_BYTES // itemsize)
            f.seek(base)
            for i in range(0, flat.size, step):
                f.write(_le_bytes(flat[i:i + step], le))
        else:
            for box in _blocks(shape, array.chunks, itemsize):
                data = _le_bytes(np.asarray(array[box]), le)
                pos = 0
                for start, count in _runs(shape, box):
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


def _le_bytes(data: np.ndarray[Any, Any], le: np.dtype[Any]) -> memoryview:
    """The raw little-endian C-order bytes of ``data`` (no copy when already so)."""
    return np.ascontiguousarray(data.astype(le, copy=False)).reshape(-1).view(np.uint8).data


def _dtype_name(dtype: np.dtype[Any], pointer: str) -> str:
    """The name the format uses for ``dtype`` ("float32", "datetime64[s]", "|S5", ...)."""
    where = pointer or "(root)"
    if dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"{where}: structured dtype {dtype} cannot be expressed in the JSON+binref format")
    if dtype.kind not in _SUPPORTED_KINDS or dtype.itemsize == 0:
        raise TypeError(f"{where}: dtype {dtype} cannot be expressed in the JSON+binref format")
    name = dtype.name if dtype.kind in "biufcmM" else dtype.newbyteorder("<").str
    if np.dtype(name).newbyteorder("<") != dtype.newbyteorder("<"):
        name = dtype.newbyteorder("<").str
    return name


def _array_object(
    array: np.ndarray[Any, Any] | tensordb.Array, pointer: str, writer: _BinWriter, inline_below: int
) -> dict[str, Any]:
    dtype = array.dtype
    shape = tuple(array.shape)
    name = _dtype_name(dtype, pointer)
    le = dtype.newbyteorder("<")
    if math.prod(shape) * dtype.itemsize < inline_below:
        raw = _le_bytes(np.asarray(array[...]), le)
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
                stack.append((item[k], out, k, _child_pointer(pointer, k)))
            # children are popped in document order, so ``out`` gets its keys in order
        elif isinstance(item, (list, tuple)):
            out = [None] * len(item)
            stack.extend((item[i], out, i, _child_pointer(pointer, i)) for i in range(len(item) - 1, -1, -1))
        else:
            raise TypeError(f"{pointer or '(root)'}: a {type(item).__name__} cannot be expressed in JSON")
        if isinstance(parent, dict):
            parent[str(key)] = out
        else:
            parent[int(key)] = out
    return holder[0]
