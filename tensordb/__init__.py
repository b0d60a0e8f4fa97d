"""tensordb: an embedded tensor database for Python.

One SQLite file holds many named JSON-like trees whose leaves may be numpy
arrays. Arrays are chunked, Blosc2-compressed, content-addressed and shared
by reference between trees; trees are values (copy-on-write); metadata is
plain SQL.

Example
-------
>>> import numpy as np, tensordb
>>> db = tensordb.open("runs.tdb")
>>> db["s037"] = {"time": 51, "data": {"points": np.zeros((4778, 3), "f4")}}
>>> db["s037"]["/data/points"][:2, :2]
array([[0., 0.],
       [0., 0.]], dtype=float32)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .storage.connection import check_sqlite_version

check_sqlite_version()

from .errors import (  # noqa: E402
    ClosedError,
    CorruptionError,
    FormatError,
    PathNotFoundError,
    ReadOnlyError,
    StaleHandleError,
    StorageError,
    TensorDBError,
    TreeExistsError,
)

if TYPE_CHECKING:
    from .arrays.array import Array
    from .arrays.dtypes import dtype_from_text, dtype_to_text
    from .arrays.grid import auto_chunks, iter_blocks
    from .arrays.html import human_size
    from .codec import Codec
    from .database import Database, MissingPacksWarning, SQLResult, open, validate
    from .diff import Difference
    from .maintenance import CheckReport, Finding
    from .trees.handles import DictNode, ListNode, Node, Tree
    from .versions import Snapshot

__version__ = "0.1.0"

# The engine is imported on first use, not by ``import tensordb``: a command
# or script that never opens a database, such as ``tensordb --version``, does
# not pay for it. Opening one does not import numpy either, nor the arrays
# layer and the codecs: only what works on arrays does (docs/architecture.md).
_LAZY = {
    "Codec": "codec",
    "open": "database",
    "Database": "database",
    "SQLResult": "database",
    "MissingPacksWarning": "database",
    "Array": "arrays.array",
    "Tree": "trees.handles",
    "Node": "trees.handles",
    "DictNode": "trees.handles",
    "ListNode": "trees.handles",
    "CheckReport": "maintenance",
    "Finding": "maintenance",
    "validate": "database",
    "dtype_to_text": "arrays.dtypes",
    "dtype_from_text": "arrays.dtypes",
    "auto_chunks": "arrays.grid",
    "iter_blocks": "arrays.grid",
    "Snapshot": "versions",
    "Difference": "diff",
    "human_size": "arrays.html",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tensordb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "open",
    "Database",
    "Tree",
    "Node",
    "DictNode",
    "ListNode",
    "Array",
    "Codec",
    "SQLResult",
    "CheckReport",
    "Finding",
    "validate",
    "dtype_to_text",
    "dtype_from_text",
    "auto_chunks",
    "iter_blocks",
    "Snapshot",
    "Difference",
    "human_size",
    "TensorDBError",
    "ReadOnlyError",
    "CorruptionError",
    "FormatError",
    "ClosedError",
    "StaleHandleError",
    "StorageError",
    "PathNotFoundError",
    "TreeExistsError",
    "MissingPacksWarning",
    "__version__",
]
