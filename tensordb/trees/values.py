"""Python values <-> node rows.

:func:`flatten` walks a value iteratively (deep nesting cannot overflow the
stack; a cycle is a TypeError naming its path) and returns one
:class:`NodeSpec` per node in pre-order, without touching the database, so
that an unsupported value anywhere is refused before anything is written.

Scalars are stored natively in ``node.value`` so SQL can compare them;
what SQLite cannot hold exactly goes to ``node.exact``:

=============================  ===========================  =========================
value                          ``value``                    ``exact``
=============================  ===========================  =========================
int beyond 64 bits             REAL approximation           decimal TEXT
NaN                            NULL                         hex of its IEEE bits
str/bytes over 64 KiB          NULL                         zstd frame (BLOB)
=============================  ===========================  =========================

numpy scalars keep their dtype in ``node.dtype``; those without a native SQL
form (complex, datetime64, timedelta64, records, long double) are stored as
0-d arrays with ``node.dtype`` set, and come back as numpy scalars.

numpy, the dtype whitelist and zstd are imported by the functions that handle
numpy values and long payloads, not with this module: opening a database and
reading or writing plain scalars never needs them (start-up cost).
"""

from __future__ import annotations

import contextlib
import gc
import math
import struct
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import CorruptionError
from .paths import escape

if TYPE_CHECKING:
    import numpy as np

    from ..arrays.array import Array

__all__ = ["NodeSpec", "flatten", "decode_scalar", "numpy_if_loaded", "array_handle_types", "CONTAINER_KINDS",
           "SCALAR_KINDS", "KINDS"]

CONTAINER_KINDS = ("dict", "list")
SCALAR_KINDS = ("null", "bool", "int", "float", "str", "bytes")
KINDS = (*CONTAINER_KINDS, *SCALAR_KINDS, "array")

#: str/bytes payloads larger than this are stored compressed, out of ``node.value``.
LARGE_PAYLOAD = 64 * 1024
_INT64 = (-(2**63), 2**63 - 1)


def numpy_if_loaded() -> ModuleType | None:
    """numpy if something imported it already, else None.

    Importing numpy is most of the start-up of a process that reads scalars or
    runs SQL, and a value can be a numpy array or scalar only once numpy is
    imported: type checks of the values users pass ask this instead of importing it.
    """
    return sys.modules.get("numpy")


def array_handle_types() -> tuple[type[Array], ...]:
    """``(tensordb.Array,)`` once its module (and numpy with it) is imported, else ``()``: no handle exists before."""
    module = sys.modules.get("tensordb.arrays.array")
    handle = getattr(module, "Array", None)
    return (handle,) if isinstance(handle, type) else ()


class NodeSpec:
    """One node to insert. ``parent`` indexes the spec list (-1 for the root of the value)."""

    __slots__ = ("parent", "key", "pos", "path", "kind", "value", "exact", "dtype", "payload")

    def __init__(self, parent: int, key: str | None, pos: int, path: str, kind: str) -> None:
        self.parent = parent
        self.key = key
        self.pos = pos
        self.path = path  # relative to the value's root ("" for the root)
        self.kind = kind
        self.value: Any = None
        self.exact: Any = None
        self.dtype: str | None = None
        self.payload: Any = None  # an ndarray to store, or a handle (Array/Node/Tree) to reference


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a value is flattened and stored.

    The value's objects all stay alive meanwhile, yet every collection that
    the new node specs trigger traverses them again: 15% of the time of
    writing a 220,000-node tree. A collector the caller disabled stays so.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def flatten(value: object, handle_types: tuple[type, ...] = (), base: str = "") -> list[NodeSpec]:
    """Validate ``value`` and list its nodes in pre-order.

    ``handle_types`` are tensordb handles (Array, Node, Tree) accepted as
    leaves: they are referenced, not copied. ``base`` is where the value
    will go, so that error messages name the full path.
    """
    specs: list[NodeSpec] = []
    # stack of (value, parent index, key, pos, relative path, ancestor container ids)
    stack: list[tuple[Any, int, str | None, int, str, frozenset[int]]] = [(value, -1, None, 0, "", frozenset())]
    while stack:
        item, parent, key, pos, path, ancestors = stack.pop()
        index = len(specs)
        if isinstance(item, dict):
            if id(item) in ancestors:
                raise TypeError(f"{base + path or '(root)'}: the value contains itself (a cycle)")
            specs.append(NodeSpec(parent, key, pos, path, "dict"))
            inner = ancestors | {id(item)}
            children = []
            for i, (k, v) in enumerate(item.items()):
                if type(k) is not str and not isinstance(k, str):
                    raise TypeError(f"{base + path or '(root)'}: dict keys must be str, got {type(k).__name__} {k!r}")
                if not k.isascii():  # only non-ASCII text can hold a lone surrogate
                    _check_text(k, base + path, "key")
                token = k if "~" not in k and "/" not in k else escape(k)
                children.append((v, index, k, i, f"{path}/{token}", inner))
            stack.extend(reversed(children))
        elif isinstance(item, (list, tuple)):
            if id(item) in ancestors:
                raise TypeError(f"{base + path or '(root)'}: the value contains itself (a cycle)")
            specs.append(NodeSpec(parent, key, pos, path, "list"))
            inner = ancestors | {id(item)}
            stack.extend(reversed([(v, index, None, i, f"{path}/{i}", inner) for i, v in enumerate(item)]))
        else:
            spec = NodeSpec(parent, key, pos, path, "null")
            try:
                _encode_leaf(item, spec, handle_types)
            except TypeError as exc:
                raise TypeError(f"{base + path or '(root)'}: {exc}") from None
            specs.append(spec)
    return specs


def _check_text(text: str, path: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TypeError(f"{path or '(root)'}: {what} {text!r} is not valid unicode (lone surrogate)") from None


def _encode_leaf(item: Any, spec: NodeSpec, handle_types: tuple[type, ...]) -> None:
    kind = type(item)
    if item is None:
        spec.kind = "null"
    elif kind is bool:
        spec.kind, spec.value = "bool", int(item)
    elif kind is int:
        _encode_int(item, spec)
    elif kind is float:
        _encode_float(item, spec)
    elif kind is str:
        if not item.isascii():
            _check_text(item, "", "string")
        _encode_payload(item.encode("utf-8"), item, "str", spec)
    elif kind is bytes:
        _encode_payload(item, item, "bytes", spec)
    elif (numpy := numpy_if_loaded()) is not None and isinstance(item, numpy.generic):
        _encode_numpy_scalar(item, spec)
    elif numpy is not None and isinstance(item, numpy.ndarray):
        if type(item) is not numpy.ndarray and _is_masked_or_matrix(item, numpy):
            raise TypeError(f"{type(item).__name__} cannot be stored exactly; pass a plain numpy array")
        from ..arrays.dtypes import check_storable_dtype

        check_storable_dtype(item.dtype)
        spec.kind, spec.payload = "array", item
    elif handle_types and isinstance(item, handle_types):
        spec.kind, spec.payload = "handle", item
    elif hasattr(item, "__array__"):  # torch tensors, xarray DataArrays, ...: stored as the array numpy sees
        _encode_leaf(_as_numpy(item), spec, handle_types)
    else:
        hint = " (use numpy scalars or arrays for complex and datetime values)" if isinstance(
            item, (complex,)
        ) or type(item).__module__ == "datetime" else ""
        raise TypeError(f"values of type {type(item).__name__} cannot be stored{hint}")


def _is_masked_or_matrix(item: Any, numpy: Any) -> bool:
    # numpy imports numpy.ma on first use (10 ms); a masked array exists only once it is imported.
    masked = sys.modules.get("numpy.ma")
    return (masked is not None and isinstance(item, masked.MaskedArray)) or isinstance(item, numpy.matrix)


def _as_numpy(item: Any) -> np.ndarray[Any, Any]:
    """An array-like (``__array__``) as a plain numpy array; object results are refused."""
    import numpy as np

    name = type(item).__name__
    try:
        array = np.asarray(item)
    except Exception as exc:
        raise TypeError(f"a value of type {name} could not be converted to a numpy array ({exc})") from None
    if type(array) is not np.ndarray:
        raise TypeError(f"a value of type {name} converts to a {type(array).__name__}, not a plain numpy array")
    if array.dtype.kind == "O":
        raise TypeError(f"a value of type {name} converts to an object array, which cannot be stored")
    return array


def _encode_int(value: int, spec: NodeSpec) -> None:
    spec.kind = "int"
    if _INT64[0] <= value <= _INT64[1]:
        spec.value = value
    else:
        try:
            spec.value = float(value)
        except OverflowError:  # beyond float range: the sign is all SQL can compare
            spec.value = math.inf if value > 0 else -math.inf
        spec.exact = str(value)


def _encode_float(value: float, spec: NodeSpec) -> None:
    spec.kind = "float"
    if math.isnan(value):
        spec.exact = struct.pack("<d", value).hex()  # SQLite would store NaN as NULL
    else:
        spec.value = value


def _encode_payload(data: bytes, original: object, kind: str, spec: NodeSpec) -> None:
    spec.kind = kind
    if len(data) > LARGE_PAYLOAD:
        from ..codec import compress_payload

        spec.exact = compress_payload(data)
    else:
        spec.value = original


def _encode_numpy_scalar(item: Any, spec: NodeSpec) -> None:
    import numpy as np

    from ..arrays.dtypes import check_storable_dtype

    dtype = item.dtype
    check_storable_dtype(dtype)
    spec.dtype = dtype.str
    if dtype.kind == "b":
        spec.kind, spec.value = "bool", int(item)
    elif dtype.kind in "iu":
        _encode_int(int(item), spec)
    elif dtype.kind == "f" and dtype.itemsize <= 8:
        _encode_float(float(item), spec)
        if spec.exact is not None:
            spec.exact = item.tobytes().hex()  # NaN payload bits in the scalar's own width
    elif dtype.kind == "U":
        text = str(item)
        _check_text(text, "", "string")
        _encode_payload(text.encode("utf-8"), text, "str", spec)
    elif dtype.kind == "S":
        _encode_payload(bytes(item), bytes(item), "bytes", spec)
    else:
        spec.kind, spec.payload = "array", np.asarray(item).reshape(())


# Node kinds and the numpy dtype kinds their ``node.dtype`` may name.
_SCALAR_DTYPE_KINDS = {"bool": "b", "int": "iu", "float": "f", "str": "U", "bytes": "S"}
# Exact ints are written with str(): at most Python's default digit limit.
_MAX_INT_DIGITS = 4300


def decode_scalar(kind: str, value: Any, exact: Any, dtype: str | None) -> Any:
    """The Python (or numpy) value of a scalar node row.

    Every column is untrusted: a type that the writer never produces is a
    CorruptionError, never a conversion (``bytes(10**12)`` would allocate).
    """
    if kind == "null":
        if value is not None or exact is not None or dtype is not None:
            raise CorruptionError("null node holds a value")
        return None
    if dtype is not None and (not isinstance(dtype, str) or kind not in _SCALAR_DTYPE_KINDS):
        raise CorruptionError(f"invalid scalar dtype {dtype!r} for a {kind} node")
    result: Any
    if kind == "bool":
        if type(value) is not int or value not in (0, 1) or exact is not None:
            raise CorruptionError(f"bool node holds {value!r}")
        result = bool(value)
    elif kind == "int":
        if isinstance(exact, str):
            if not _is_decimal(exact):
                raise CorruptionError(f"int node holds invalid digits {exact[:40]!r}")
            result = int(exact)
        elif exact is None and type(value) is int:
            result = value
        else:
            raise CorruptionError(f"int node holds {type(value).__name__}")
    elif kind == "float":
        if value is None:
            result = _nan_from_bits(exact, dtype)
            if dtype is not None:
                return result
        elif type(value) is float and exact is None:
            result = value
        else:
            raise CorruptionError(f"float node holds {type(value).__name__}")
    elif kind in ("str", "bytes"):
        if isinstance(exact, bytes) and value is None:
            from ..codec import decompress_payload

            data: Any = decompress_payload(exact)
        elif exact is None and type(value) is (str if kind == "str" else bytes):
            data = value
        else:
            raise CorruptionError(f"{kind} node holds {type(value).__name__}")
        if kind == "str" and isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise CorruptionError("str node holds invalid UTF-8") from None
        result = data
    else:
        raise CorruptionError(f"unknown node kind {kind!r}")
    if dtype is None:
        return result
    return _numpy_scalar(result, dtype, kind)


def _is_decimal(text: str) -> bool:
    digits = text[1:] if text[:1] == "-" else text
    return 0 < len(digits) <= _MAX_INT_DIGITS and digits.isascii() and digits.isdigit()


def _scalar_dtype(dtype: str, kind: str) -> np.dtype[Any]:
    from ..arrays.dtypes import dtype_from_text

    dt = dtype_from_text(dtype)  # the whitelist of stored dtypes, no eval
    if dt.fields is not None or dt.subdtype is not None or dt.kind not in _SCALAR_DTYPE_KINDS[kind]:
        raise CorruptionError(f"invalid scalar dtype {dtype!r} for a {kind} node")
    return dt


def _numpy_scalar(value: Any, dtype: str, kind: str) -> Any:
    import numpy as np

    dt = _scalar_dtype(dtype, kind)
    if dt.kind == "U":
        return np.str_(value)
    if dt.kind == "S":
        return np.bytes_(value)
    try:
        return dt.type(value)
    except (OverflowError, ValueError, TypeError):
        raise CorruptionError(f"{kind} node value {value!r} does not fit its dtype {dtype}") from None


def _nan_from_bits(exact: Any, dtype: str | None) -> Any:
    if not isinstance(exact, str) or len(exact) > 32:
        raise CorruptionError("float node without a value or NaN bits")
    try:
        raw = bytes.fromhex(exact)
    except ValueError:
        raise CorruptionError(f"invalid NaN bits {exact!r}") from None
    if dtype is None:
        if len(raw) != 8:
            raise CorruptionError(f"invalid NaN bits {exact!r}")
        return struct.unpack("<d", raw)[0]
    dt = _scalar_dtype(dtype, "float")
    if len(raw) != dt.itemsize:
        raise CorruptionError(f"invalid NaN bits {exact!r} for {dtype}")
    import numpy as np

    return np.frombuffer(raw, dtype=dt)[0]
