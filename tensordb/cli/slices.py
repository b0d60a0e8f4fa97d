"""``--slice`` texts and ``--stats``: parsing a selection without eval, and statistics read chunk by chunk."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import tensordb

if TYPE_CHECKING:
    from rich.progress import Progress

from .output import plain

_INT = re.compile(r"[+-]?\d+")


def parse_slice(text: str) -> tuple[Any, ...]:
    """``"0:10, :, ..."`` -> ``(slice(0, 10), slice(None), Ellipsis)``; no eval.

    Each comma-separated part is an int, an a:b:c slice, ``...`` or a list
    of ints in brackets (orthogonal indexing on that axis, as Array does).
    A whole key in brackets ("[0:10, :]") reads as without them, unless it is
    a list of ints alone: "[0,5,7]" picks rows 0, 5 and 7.

    Example
    -------
    >>> parse_slice("1:-1:2, 3")
    (slice(1, -1, 2), 3)
    >>> parse_slice("[0, 5, 7], :2")
    ([0, 5, 7], slice(None, 2, None))
    """
    body = text.strip()
    parts = _top_level_parts(body, text)
    if len(parts) == 1 and body.startswith("[") and body.endswith("]") and not _INT_LIST.fullmatch(body):
        parts = _top_level_parts(body[1:-1].strip(), text)  # the whole key in brackets, numpy style
    if parts == [""]:
        return ()
    key: list[Any] = []
    for token in parts:
        if token == "...":
            if Ellipsis in key:
                raise ValueError(f"bad slice {text!r}: '...' may appear only once")
            key.append(Ellipsis)
        elif _INT.fullmatch(token):
            key.append(int(token))
        elif _INT_LIST.fullmatch(token):
            key.append([int(t) for t in token[1:-1].split(",") if t.strip()])
        elif ":" in token and token.count(":") <= 2:
            parts = [p.strip() for p in token.split(":")]
            if not all(p == "" or _INT.fullmatch(p) for p in parts):
                raise ValueError(f"bad slice {text!r}: {token!r} is not an a:b:c slice of ints")
            start, stop, step = ([int(p) if p else None for p in parts] + [None])[:3]
            if step == 0:
                raise ValueError(f"bad slice {text!r}: slice step cannot be zero")
            key.append(slice(start, stop, step))
        else:
            raise ValueError(f"bad slice {text!r}: {token!r} is not an int, an a:b:c slice, '...' or a list "
                             "of ints such as [0, 5, 7]")
    return tuple(key)


_INT_LIST = re.compile(r"\[\s*[+-]?\d+(?:\s*,\s*[+-]?\d+)*\s*,?\s*\]")


def _top_level_parts(body: str, text: str) -> list[str]:
    """``body`` split at the commas outside brackets, each part stripped."""
    parts = [""]
    depth = 0
    for char in body:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise ValueError(f"bad slice {text!r}: unbalanced or nested brackets")
        if char == "," and depth == 0:
            parts.append("")
        else:
            parts[-1] += char
    if depth:
        raise ValueError(f"bad slice {text!r}: unbalanced brackets")
    return [p.strip() for p in parts]


def stats_key(array: tensordb.Array, key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key of ``--stats`` checked against the array, one entry per axis ('...' expanded, trailing axes filled).

    Every error in the user's selection is raised here (ValueError, IndexError), before anything is read.
    """
    if array.dtype.kind not in "biuf":
        raise ValueError(f"--stats needs a bool, int or float array, not {array.dtype}")
    ndim = len(array.shape)
    explicit = [k for k in key if k is not Ellipsis]
    if len(explicit) > ndim:
        raise IndexError(f"too many indices: {len(explicit)} for a {ndim}-d array")
    fill = [slice(None)] * (ndim - len(explicit))
    if Ellipsis in key:
        at = key.index(Ellipsis)
        full = (*key[:at], *fill, *key[at + 1:])
    else:
        full = (*key, *fill)
    for axis, (k, size) in enumerate(zip(full, array.shape)):
        for index in k if isinstance(k, list) else [k] if isinstance(k, int) else []:
            if not -size <= index < size:
                raise IndexError(f"index {index} is out of bounds for axis {axis} with size {size}")
    return full


def _row_blocks(key: tuple[Any, ...], shape: tuple[int, ...], rows_per_chunk: int) -> Iterator[tuple[Any, ...]]:
    """Split a full key along axis 0 into keys that each touch one row of chunks."""
    first = key[0] if key else None
    if not isinstance(first, slice):
        yield key
        return
    rows = range(*first.indices(shape[0]))
    if not rows:
        yield key
        return
    if rows.step > 0:
        start = rows.start
        while start < rows.stop:
            end = min(rows.stop, (start // rows_per_chunk + 1) * rows_per_chunk)
            yield (slice(start, end, rows.step), *key[1:])
            start += -(-(end - start) // rows.step) * rows.step
    else:
        per = max(1, rows_per_chunk // -rows.step)
        for i in range(0, len(rows), per):
            part = rows[i:i + per]
            yield (slice(part.start, part.stop if part.stop >= 0 else None, part.step), *key[1:])


def array_stats(array: tensordb.Array, full: tuple[Any, ...], progress: Progress | None = None) -> dict[str, Any]:
    """count, NaN count, min, max, mean and std of a selection, read one row of chunks at a time.

    ``full`` is a key checked by :func:`stats_key`.
    """
    import numpy as np

    dtype = array.dtype
    shape = array.shape
    count = nans = 0
    mean = m2 = 0.0
    low: Any = None
    high: Any = None
    blocks = list(_row_blocks(full, shape, array.chunks[0] if shape else 1))
    task = progress.add_task("reading", total=len(blocks)) if progress is not None else None
    for block_key in blocks:
        if progress is not None and task is not None:
            progress.advance(task)
        values = np.asarray(array[block_key]).reshape(-1)
        if values.dtype.kind == "f":
            missing = np.isnan(values)
            nans += int(missing.sum())
            values = values[~missing]
        if not values.size:
            continue
        block_low, block_high = values.min(), values.max()
        low = block_low if low is None else min(low, block_low)
        high = block_high if high is None else max(high, block_high)
        floats = values.astype(np.float64)
        block_mean = float(floats.mean())
        block_m2 = float(((floats - block_mean) ** 2).sum())
        n = floats.size  # Chan et al.: merge (count, mean, M2) of two parts
        delta = block_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += block_m2 + delta * delta * count * n / total
        count = total
    result: dict[str, Any] = {"count": count}
    if dtype.kind == "f":
        result["nan"] = nans
    result.update(min=plain(low), max=plain(high), mean=mean if count else None,
                  std=math.sqrt(m2 / count) if count else None)
    return result
