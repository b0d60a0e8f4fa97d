"""Hypothesis strategies and an exact tree-equality helper, reused across the suite.

Everything here depends only on numpy and hypothesis (not on tensordb), so the
strategies can be exercised on their own::

    from strategies import trees, assert_tree_equal
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

from tensordb import pointer as json_pointer

__all__ = [
    "BASIC_DTYPE_STRS",
    "DATETIME_UNITS",
    "basic_dtypes",
    "dtypes",
    "structured_dtypes",
    "arrays",
    "small_arrays",
    "scalars",
    "python_scalars",
    "numpy_scalars",
    "keys",
    "trees",
    "tree_names",
    "escape",
    "pointer",
    "assert_tree_equal",
    "array_bytes_equal",
    "iter_leaves",
    "AxisSelector",
    "OrthogonalKey",
    "full_axis",
    "axis_selectors",
    "orthogonal_keys",
    "orthogonal_reference_get",
    "orthogonal_reference_set",
    "expected_equals_numpy",
]

# --------------------------------------------------------------------------- dtypes

DATETIME_UNITS = ("Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns")

#: Concrete dtype strings (both byte orders where byte order applies).
BASIC_DTYPE_STRS: tuple[str, ...] = (
    ("|b1", "|i1", "|u1")
    + tuple(f"{o}{k}{n}" for k in "iu" for n in (2, 4, 8) for o in "<>")
    + tuple(f"{o}f{n}" for n in (2, 4, 8) for o in "<>")
    + tuple(f"{o}c{n}" for n in (8, 16) for o in "<>")
    + tuple(f"{o}{k}8[{u}]" for k in "Mm" for u in ("s", "ms", "us", "ns", "D") for o in "<>")
)

_byteorders = st.sampled_from("<>")


def _numeric_dtypes() -> st.SearchStrategy[np.dtype]:
    return st.sampled_from([np.dtype(s) for s in BASIC_DTYPE_STRS if s[1] not in "Mm"])


def _time_dtypes() -> st.SearchStrategy[np.dtype]:
    return st.builds(
        lambda order, kind, unit: np.dtype(f"{order}{kind}8[{unit}]"),
        _byteorders,
        st.sampled_from("Mm"),
        st.sampled_from(DATETIME_UNITS),
    )


def _string_dtypes() -> st.SearchStrategy[np.dtype]:
    return st.one_of(
        st.integers(1, 8).map(lambda n: np.dtype(f"S{n}")),
        st.builds(lambda o, n: np.dtype(f"{o}U{n}"), _byteorders, st.integers(1, 8)),
    )


def basic_dtypes() -> st.SearchStrategy[np.dtype]:
    """Every non-structured fixed-size dtype, both byte orders where they apply."""
    numeric = _numeric_dtypes()
    return st.one_of(numeric, numeric, numeric, _time_dtypes(), _string_dtypes())


_field_names = st.sampled_from(["a", "b", "c", "x", "y", "f0", "long_field_name", "é"])


def structured_dtypes(allow_nested: bool = True) -> st.SearchStrategy[np.dtype]:
    """Record dtypes: 1-3 basic fields, optionally a nested record and a subarray field."""

    @st.composite
    def build(draw: st.DrawFn) -> np.dtype:
        names = draw(st.lists(_field_names, min_size=1, max_size=3, unique=True))
        fields: list[tuple[Any, ...]] = [(n, draw(basic_dtypes())) for n in names]
        if draw(st.booleans()):  # one subarray field
            sub_shape = draw(st.sampled_from([(2,), (3,), (2, 2), (1, 3)]))
            fields.append(("sub", draw(basic_dtypes()), sub_shape))
        if allow_nested and draw(st.booleans()):  # one nested record field
            fields.append(("nested", draw(structured_dtypes(allow_nested=False))))
        order = draw(st.permutations(range(len(fields))))
        fields = [fields[i] for i in order]
        return np.dtype(fields, align=draw(st.booleans()))

    return build()


def dtypes() -> st.SearchStrategy[np.dtype]:
    """Every fixed-size dtype tensordb supports (no object dtype)."""
    return st.one_of(basic_dtypes(), structured_dtypes())


# --------------------------------------------------------------------------- arrays


@st.composite
def _arrays(draw: st.DrawFn, dtype: Any, max_dims: int, max_side: int, min_dims: int, min_side: int) -> np.ndarray:
    dt = draw(dtype) if isinstance(dtype, st.SearchStrategy) else np.dtype(dtype)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side))
    a = draw(hnp.arrays(dt, shape))
    layout = draw(st.sampled_from(["c", "c", "c", "fortran", "step", "reverse", "transpose"]))
    if layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "step" and a.ndim >= 1:
        a = a[::2]
    elif layout == "reverse" and a.ndim >= 1:
        a = a[..., ::-1]
    elif layout == "transpose" and a.ndim >= 2:
        a = a.T
    return a


def arrays(
    dtype: Any = None, max_dims: int = 4, max_side: int = 6, min_dims: int = 0, min_side: int = 0
) -> st.SearchStrategy[np.ndarray]:
    """numpy arrays: 0-d, zero-size, NaN/inf, sometimes non-contiguous views or Fortran order."""
    return _arrays(dtypes() if dtype is None else dtype, max_dims, max_side, min_dims, min_side)


def small_arrays() -> st.SearchStrategy[np.ndarray]:
    return arrays(max_dims=3, max_side=4)


# --------------------------------------------------------------------------- scalars

# codec="utf-8" excludes lone surrogates (category Cs), which cannot be encoded
_text = st.text(alphabet=st.characters(codec="utf-8"))


def numpy_scalars() -> st.SearchStrategy[np.generic]:
    return st.one_of(
        st.floats(width=32).map(np.float32),
        st.floats(width=16).map(np.float16),
        st.floats().map(np.float64),
        st.integers(-(2**15), 2**15 - 1).map(np.int16),
        st.integers(-(2**63), 2**63 - 1).map(np.int64),
        st.integers(0, 2**64 - 1).map(np.uint64),
        st.just(np.uint64(2**64 - 1)),
        st.integers(0, 255).map(np.uint8),
        st.booleans().map(np.bool_),
        st.complex_numbers(width=64).map(np.complex64),
        st.complex_numbers().map(np.complex128),  # note: np.complex128 subclasses complex
        st.just(np.datetime64("2020-01-01", "s")),
        st.just(np.datetime64("NaT", "ns")),
        st.integers(-(10**12), 10**12).map(lambda n: np.timedelta64(n, "ms")),
        _text.filter(lambda s: not s.endswith("\x00")).map(np.str_),
        st.binary(max_size=8).filter(lambda b: not b.endswith(b"\x00")).map(np.bytes_),
    )


def _branch(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Wrap a strategy so that st.one_of() does not flatten its own branches into the parent's
    (which would make a one_of with many branches dominate the others)."""
    return st.deferred(lambda: strategy)


def python_scalars() -> st.SearchStrategy[Any]:
    """None, bool, int (any size), float (specials too), str and bytes."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**64 - 1, -(2**70), 10**40]),
        st.floats(),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308]),
        st.just(struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]),  # NaN with a payload
        _text,
        st.sampled_from(["", "/", "~", "a/b", "~1", "~0", "0", "null", "\x00", "é\u2603\U0001f600"]),
        st.binary(),
        st.just(b""),
    )


def scalars() -> st.SearchStrategy[Any]:
    """JSON-like scalars plus bytes, big ints, special floats and numpy scalars (1 in 3)."""
    py = _branch(python_scalars())
    return st.one_of(py, py, _branch(numpy_scalars()))


# --------------------------------------------------------------------------- keys / trees


def keys() -> st.SearchStrategy[str]:
    """Dict keys: any unicode text (no lone surrogates), with the JSON-Pointer specials."""
    return st.one_of(
        st.sampled_from(["", "/", "~", "a/b", "~1", "~0", "0", "1", "-", "a~1b", "//", " ", "é"]),
        _text,
    )


def tree_names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["t", "a", "b", "sample/1", "~", "x y", "é"]),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1),
    )


def trees(max_leaves: int = 10, leaves: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """Recursive JSON-like values whose leaves are scalars and arrays (lists only, no tuples)."""
    if leaves is None:
        leaves = st.one_of(_branch(scalars()), _branch(scalars()), small_arrays())
    base = st.one_of(
        _branch(leaves),
        _branch(leaves),
        _branch(leaves),
        st.builds(dict),  # fresh objects: st.just({}) would share one dict between nodes
        st.builds(list),
        st.lists(st.dictionaries(keys(), small_arrays(), max_size=3), max_size=3),
    )
    return st.recursive(
        base,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys(), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


# --------------------------------------------------------------------------- pointers


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def pointer(*parts: str | int) -> str:
    """JSON Pointer (RFC 6901) from unescaped parts: pointer("a", 0, "b/c") == "/a/0/b~1c"."""
    return "".join("/" + (str(p) if isinstance(p, int) else escape(p)) for p in parts)


# --------------------------------------------------------------------------- plain trees as models


def model_nodes(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(pointer, value) of every node of a plain tree, root included, depth first."""
    out = [(path, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += model_nodes(v, path + "/" + escape(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += model_nodes(v, f"{path}/{i}")
    return out


def model_resolve(root: Any, ptr: str) -> Any:
    """The node of a plain tree at a JSON Pointer."""
    node = root
    for p in json_pointer.split(ptr):
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node


def model_parent(root: Any, ptr: str) -> tuple[Any, Any]:
    """(parent container, key or index) of a non-root pointer into a plain tree."""
    *head, last = json_pointer.split(ptr)
    node = model_resolve(root, pointer(*head))
    return node, (int(last) if isinstance(node, list) else last)


# --------------------------------------------------------------------------- equality


def _fail(path: str, message: str) -> None:
    raise AssertionError(f"trees differ at {path or '(root)'!r}: {message}")


def _dtype_equal(a: np.dtype, b: np.dtype) -> bool:
    if a != b or a.str != b.str:
        return False
    if a.names is not None or b.names is not None:
        return a.descr == b.descr
    if a.subdtype is not None or b.subdtype is not None:
        return a.subdtype == b.subdtype and a.base.str == b.base.str
    return True


def array_bytes_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality of two arrays of equal dtype and shape.

    Structured arrays are compared field by field (recursively) so that
    padding bytes of aligned records, which hold no value, do not count.
    """
    if a.dtype.names is not None:
        return all(array_bytes_equal(a[n], b[n]) for n in a.dtype.names)
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_tree_equal(actual: Any, expected: Any, path: str = "") -> None:
    """Exact equality: types, key order, dtypes (byte order too), shapes and bits."""
    if type(actual) is not type(expected):
        _fail(
            path,
            f"type {type(actual).__name__} != expected {type(expected).__name__} "
            f"({actual!r:.200} vs {expected!r:.200})",
        )
    if isinstance(expected, dict):
        ka, ke = list(actual.keys()), list(expected.keys())
        if ka != ke:
            _fail(path, f"dict keys (in order) {ka!r:.300} != expected {ke!r:.300}")
        for k in ke:
            assert_tree_equal(actual[k], expected[k], path + "/" + escape(k))
    elif isinstance(expected, list):
        if len(actual) != len(expected):
            _fail(path, f"list length {len(actual)} != expected {len(expected)}")
        for i, (x, y) in enumerate(zip(actual, expected)):
            assert_tree_equal(x, y, f"{path}/{i}")
    elif isinstance(expected, np.ndarray):
        if not _dtype_equal(actual.dtype, expected.dtype):
            _fail(path, f"dtype {actual.dtype.descr} != expected {expected.dtype.descr}")
        if actual.shape != expected.shape:
            _fail(path, f"shape {actual.shape} != expected {expected.shape}")
        if not array_bytes_equal(actual, expected):
            _fail(path, f"array values differ:\n{actual!r:.600}\nexpected\n{expected!r:.600}")
    elif isinstance(expected, np.generic):
        if not _dtype_equal(actual.dtype, expected.dtype):
            _fail(path, f"numpy scalar dtype {actual.dtype} != expected {expected.dtype}")
        if isinstance(expected, (np.str_, np.bytes_)):
            ok = actual == expected
        else:
            ok = array_bytes_equal(np.asarray(actual), np.asarray(expected))
        if not ok:
            _fail(path, f"numpy scalar {actual!r} != expected {expected!r}")
    elif isinstance(expected, float):
        if _float_bits(actual) != _float_bits(expected):
            _fail(path, f"float {actual!r} != expected {expected!r} (bitwise)")
    elif isinstance(expected, (bool, int, str, bytes)) or expected is None:
        if actual != expected:
            _fail(path, f"{actual!r:.200} != expected {expected!r:.200}")
    else:
        _fail(path, f"unexpected value of type {type(expected).__name__} in the expected tree")


def iter_leaves(value: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    """(pointer, leaf) pairs of a plain tree, depth first."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from iter_leaves(v, path + "/" + escape(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_leaves(v, f"{path}/{i}")
    else:
        yield path, value


# --------------------------------------------------------------------------- orthogonal index keys
#
# Keys for orthogonal ("outer") indexing, as tensordb arrays take them: ints,
# slices with any step, Ellipsis, None and at most one int or bool index array
# per axis, each array selecting along its own axis only. A key comes with
# what a numpy reference needs to compute the same selection independently:
#
#     case = draw(orthogonal_keys(shape))
#     expected = orthogonal_reference_get(a, case)        # what a[case.key] must give
#     after = orthogonal_reference_set(a, case, values)   # a after a[case.key] = values
#     if expected_equals_numpy(case): ...                 # numpy's own a[case.key] agrees


@dataclass
class AxisSelector:
    """One axis's selector as put in the key, with the positions it selects."""

    kind: str  # "int" | "slice" | "array" | "bool"
    raw: Any  # the object placed in the key
    positions: np.ndarray  # selected positions along the axis (intp, in output order)


def full_axis(n: int) -> AxisSelector:
    """The selector of an axis the key does not name (or covers with its Ellipsis)."""
    return AxisSelector("slice", slice(None), np.arange(n, dtype=np.intp))


@st.composite
def axis_selectors(draw: st.DrawFn, n: int) -> AxisSelector:
    """A selector for an axis of length ``n``: an int (Python or numpy, negative too), a slice
    (bounds past both ends, steps -8..8 but 0), an int array (list or ndarray of intp, int32 or
    int64; negative and repeated values, sometimes sorted) or a bool mask (list or ndarray)."""
    kind = draw(st.sampled_from(["slice", "array", "bool"] + (["int"] if n > 0 else [])))
    raw: Any
    if kind == "int":
        i = draw(st.integers(-n, n - 1))
        raw = draw(st.sampled_from([i, np.int64(i), np.intp(i)]))
        return AxisSelector("int", raw, np.array([i % n], dtype=np.intp))
    if kind == "slice":
        bound = st.none() | st.integers(-n - 3, n + 3)
        # steps 1..8, half of the time shorter than the axis so that they select several items
        sizes = st.integers(1, 8) | st.integers(1, max(1, min(8, n - 1)))
        step = st.none() | sizes.flatmap(lambda s: st.sampled_from([s, -s]))
        s = slice(draw(bound), draw(bound), draw(step))
        return AxisSelector("slice", s, np.arange(n, dtype=np.intp)[s])
    if kind == "array":
        values = draw(st.lists(st.integers(-n, n - 1), max_size=8) if n else st.just([]))
        if n and draw(st.booleans()):
            values.sort(key=lambda v: v % n)
        if draw(st.booleans()):
            raw = list(values)
        else:
            raw = np.array(values, dtype=draw(st.sampled_from([np.intp, np.int32, np.int64])))
        return AxisSelector("array", raw, np.array([v % n for v in values], dtype=np.intp))
    mask = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    raw = list(mask) if n > 0 and draw(st.booleans()) else np.array(mask, dtype=bool)
    return AxisSelector("bool", raw, np.flatnonzero(np.array(mask, dtype=bool)).astype(np.intp))


@dataclass
class OrthogonalKey:
    """A key for an array of ``shape``, with what the references need."""

    shape: tuple[int, ...]
    key: Any
    #: the key's parts in order: ("axis", 0) for the next array axis, ("ellipsis", k) for an
    #: Ellipsis covering k axes, ("none", 0) for a new axis; axes after the last part are full
    items: list[tuple[str, int]]
    axes: list[AxisSelector]  # one per array axis (axes the key does not name: full slices)

    @property
    def n_arrays(self) -> int:
        return sum(a.kind in ("array", "bool") for a in self.axes)

    @property
    def n_ints(self) -> int:
        return sum(a.kind == "int" for a in self.axes)

    @property
    def positions(self) -> list[np.ndarray]:
        return [a.positions for a in self.axes]

    @property
    def is_scalar(self) -> bool:
        """Whether the result is a numpy scalar: an int for every axis, no Ellipsis, no None."""
        return all(w == "axis" for w, _ in self.items) and self.n_ints == len(self.axes)

    @property
    def final_shape(self) -> tuple[int, ...]:
        out: list[int] = []
        axis = 0
        for what, k in self.items:
            if what == "none":
                out.append(1)
            elif what == "ellipsis":
                out.extend(len(a.positions) for a in self.axes[axis : axis + k])
                axis += k
            else:
                if self.axes[axis].kind != "int":
                    out.append(len(self.axes[axis].positions))
                axis += 1
        out.extend(len(a.positions) for a in self.axes[axis:])  # omitted trailing axes
        return tuple(out)


@st.composite
def orthogonal_keys(draw: st.DrawFn, shape: tuple[int, ...]) -> OrthogonalKey:
    """Keys naming every axis, or some leading axes only, or with an Ellipsis anywhere; 0-2
    None anywhere; a part that stands alone is sometimes given bare (not in a tuple)."""
    shape = tuple(shape)
    ndim = len(shape)
    axes = [draw(axis_selectors(n)) for n in shape]
    mode = draw(st.sampled_from(["plain", "ellipsis", "trailing"]))
    first, last = ndim, ndim  # axes [first, last) are covered by the Ellipsis
    if mode == "ellipsis":
        first = draw(st.integers(0, ndim))
        last = draw(st.integers(first, ndim))
    elif mode == "trailing":
        first = draw(st.integers(0, ndim))
    for j in range(first, ndim if mode == "trailing" else last):
        axes[j] = full_axis(shape[j])
    items: list[tuple[str, int]] = [("axis", 0)] * first
    if mode == "ellipsis":
        items += [("ellipsis", last - first)] + [("axis", 0)] * (ndim - last)
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), ("none", 0))

    parts: list[Any] = []
    axis = 0
    for what, k in items:
        if what == "axis":
            parts.append(axes[axis].raw)
            axis += 1
        elif what == "ellipsis":
            parts.append(Ellipsis)
            axis += k
        else:
            parts.append(None)
    key: Any = tuple(parts)
    if len(parts) == 1 and draw(st.booleans()):
        key = parts[0]  # a bare (non-tuple) key
    return OrthogonalKey(shape, key, items, axes)


def _numpy_selector(sel: AxisSelector) -> Any:
    if sel.kind == "array":
        return np.asarray(sel.raw, dtype=np.intp)  # an empty list must not become float
    if sel.kind == "bool":
        return np.asarray(sel.raw, dtype=bool)
    return sel.raw


def orthogonal_reference_get(a: np.ndarray, case: OrthogonalKey) -> Any:
    """``a[case.key]`` with orthogonal indexing: numpy applies the key's parts one after the
    other, each on its own axis. A numpy scalar exactly when ``case.is_scalar``, else an
    ndarray of ``a``'s dtype (byte order too) shaped ``case.final_shape``."""
    assert a.shape == case.shape
    res: Any = a
    pos = 0  # the axis of ``res`` the next part applies to
    axis = 0  # the axis of ``a`` the next part applies to
    for what, k in case.items:
        if what == "none":
            res = np.expand_dims(res, pos)
            pos += 1
        elif what == "ellipsis":
            pos += k
            axis += k
        else:
            sel = case.axes[axis]
            res = res[(slice(None),) * pos + (_numpy_selector(sel),)]
            pos += 0 if sel.kind == "int" else 1
            axis += 1
    if case.is_scalar:
        res = res[()]
        assert isinstance(res, np.generic)
        return res
    res = np.asarray(res, dtype=a.dtype)
    assert res.shape == case.final_shape, (res.shape, case.final_shape)
    return res


def orthogonal_reference_set(a: np.ndarray, case: OrthogonalKey, values: Any) -> np.ndarray:
    """A copy of ``a`` after ``a[case.key] = values`` (values broadcast to ``case.final_shape``;
    with repeated indices the last value wins), computed from the selected positions."""
    assert a.shape == case.shape
    expected = a.copy()
    block = np.broadcast_to(np.asarray(values, dtype=a.dtype), case.final_shape)
    block = block.reshape(tuple(len(p) for p in case.positions))
    if a.ndim == 0:
        expected[()] = block
    else:
        expected[np.ix_(*case.positions)] = block
    return expected


def expected_equals_numpy(case: OrthogonalKey) -> bool:
    """Whether numpy's own ``a[case.key]`` (pointwise fancy indexing) is the orthogonal result
    too: no index array, or one index array and no ints (ints are index arrays to numpy)."""
    return case.n_arrays == 0 or (case.n_arrays == 1 and case.n_ints == 0)
