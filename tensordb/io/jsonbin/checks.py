"""Checking a JSON+binref file before anything is imported: files are untrusted input.

Every array object is validated (dtype, shape, size cap, encoding, base64
alphabet and length, binref file name confined to the JSON file's folder,
offsets and lengths against the file size) and described by an
:class:`ArraySpec`; the first problem raises :class:`tensordb.FormatError`
naming the file, the JSON Pointer of the object and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import ntpath
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

import tensordb
from tensordb import limits

from .format import ARRAY_KEYS, DATA_KEYS, Problem, child_pointer, is_array_object, parse_dtype, short

__all__ = ["ArraySpec", "read_json", "find_arrays"]

_OFFSET = re.compile(r"[0-9]{1,20}")


@dataclass
class ArraySpec:
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


def read_json(filename: str) -> Any:
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



def find_arrays(doc: Any, filename: str) -> list[ArraySpec]:
    """Find and check every array object of ``doc`` (document order), iteratively."""
    specs: list[ArraySpec] = []
    folder = os.path.dirname(os.path.abspath(filename))
    sizes: dict[str, int] = {}
    stack: list[tuple[Any, dict[str, Any] | list[Any] | None, str | int | None, str]] = [(doc, None, None, "")]
    while stack:
        value, parent, key, pointer = stack.pop()
        if is_array_object(value):
            try:
                specs.append(_check_array(value, parent, key, pointer, folder, sizes))
            except Problem as exc:
                raise tensordb.FormatError(f"{filename}: {pointer or '(root)'}: {exc}") from None
        elif isinstance(value, dict):
            stack.extend((v, value, k, child_pointer(pointer, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((value[i], value, i, child_pointer(pointer, i)) for i in range(len(value) - 1, -1, -1))
    return specs


def _check_array(
    obj: dict[str, Any],
    parent: dict[str, Any] | list[Any] | None,
    key: str | int | None,
    pointer: str,
    folder: str,
    sizes: dict[str, int],
) -> ArraySpec:
    missing = [k for k in ARRAY_KEYS if k not in obj]
    if missing:
        raise Problem(f"array object without {', '.join(repr(k) for k in missing)}")
    extra = [k for k in obj if k not in ARRAY_KEYS]
    if extra:
        raise Problem(f"array object with unexpected keys {', '.join(repr(k) for k in extra)}")
    dtype = parse_dtype(obj["dtype"])
    shape = _parse_shape(obj["shape"], dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    data = obj["data"]
    if not isinstance(data, dict):
        raise Problem(f"'data' must be an object with 'buffer' and 'encoding', got {short(data)}")
    missing = [k for k in DATA_KEYS if k not in data]
    extra = [k for k in data if k not in DATA_KEYS]
    if missing or extra:
        raise Problem(f"'data' must have exactly the keys 'buffer' and 'encoding', got {list(data)}")
    encoding, buffer = data["encoding"], data["buffer"]
    if not isinstance(buffer, str):
        raise Problem(f"buffer must be a string, got {short(buffer)}")
    spec = ArraySpec(parent, key, pointer, dtype, shape, nbytes)
    if encoding == "base64":
        try:
            spec.inline = base64.b64decode(buffer, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Problem(f"invalid base64 buffer ({exc})") from None
        if len(spec.inline) != nbytes:
            raise Problem(f"base64 buffer decodes to {len(spec.inline)} bytes, but shape {list(shape)} of "
                          f"{dtype.name} needs {nbytes}")
    elif encoding == "binref":
        spec.bin_path, spec.offset = _check_binref(buffer, nbytes, folder, sizes)
    else:
        raise Problem(f"unknown encoding {short(encoding)} (expected 'base64' or 'binref')")
    return spec


def _parse_shape(shape: object, dtype: np.dtype[Any]) -> tuple[int, ...]:
    """The shape, within tensordb's limits (checked before anything is allocated)."""
    if not isinstance(shape, list):
        raise Problem(f"shape must be a list of ints >= 0, got {short(shape)}")
    if len(shape) > limits.MAX_NDIM:
        raise Problem(f"shape has {len(shape)} dimensions (at most {limits.MAX_NDIM})")
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise Problem(f"shape must be a list of ints >= 0, got {short(shape)}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limits.MAX_ARRAY_BYTES:
        raise Problem(f"shape {list(shape)} of {dtype.name} holds {nbytes} bytes, more than the limit "
                      f"of {limits.MAX_ARRAY_BYTES} bytes")
    # an empty array too: numpy refuses a shape whose other dimensions would pass the limit
    if math.prod(dim for dim in shape if dim) * dtype.itemsize > limits.MAX_ARRAY_BYTES:
        raise Problem(f"shape {short(shape)} of {dtype.name} has dimensions larger than the limit of "
                      f"{limits.MAX_ARRAY_BYTES} bytes allows")
    return tuple(shape)


def _check_binref(buffer: str, nbytes: int, folder: str, sizes: dict[str, int]) -> tuple[str, int]:
    """(resolved file, offset) of a ``FILE:OFFSET`` buffer, checked against the file."""
    file_part, sep, offset_text = buffer.rpartition(":")
    if not sep or not file_part:
        raise Problem(f"malformed binref buffer {short(buffer)} (expected 'FILE.bin:OFFSET')")
    if not _OFFSET.fullmatch(offset_text):
        raise Problem(f"binref offset {short(offset_text)} is not a non-negative integer")
    offset = int(offset_text)
    if "\0" in file_part:
        raise Problem(f"binref file name {short(file_part)} contains a NUL character")
    if os.path.isabs(file_part) or ntpath.isabs(file_part) or ntpath.splitdrive(file_part)[0]:
        raise Problem(f"binref file {file_part!r} is an absolute path; only paths relative to the JSON "
                       "file's folder are allowed")
    if ".." in re.split(r"[\\/]", file_part):
        raise Problem(f"binref file {file_part!r} contains '..'; it must stay inside the JSON file's folder")
    real_folder = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(real_folder, file_part))
    if target == real_folder or os.path.commonpath([real_folder, target]) != real_folder:
        raise Problem(f"binref file {file_part!r} resolves outside the JSON file's folder")
    if target not in sizes:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise Problem(f"binref file {file_part!r} does not exist") from None
        except OSError as exc:
            raise Problem(f"binref file {file_part!r} cannot be read ({exc.strerror})") from None
        if not os.path.isfile(target):
            raise Problem(f"binref file {file_part!r} is not a regular file")
        sizes[target] = st.st_size
    size = sizes[target]
    if offset > size or (offset == size and nbytes > 0):
        raise Problem(f"binref offset {offset} is past the end of {file_part} ({size} bytes)")
    if offset + nbytes > size:
        raise Problem(f"{file_part} ends before the array does: the array needs {nbytes} bytes from offset "
                       f"{offset}, the file has {size - offset} ({size} bytes in all)")
    return target, offset
