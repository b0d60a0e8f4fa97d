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

from .storage.connection import check_sqlite_version

check_sqlite_version()

from .arrays.array import Array  # noqa: E402
from .codec import Codec  # noqa: E402
from .database import Database, MissingPacksWarning, SQLResult, open  # noqa: E402
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
from .maintenance import CheckReport, Finding  # noqa: E402
from .trees.tree import DictNode, ListNode, Node, Tree  # noqa: E402

__version__ = "0.1.0"

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
