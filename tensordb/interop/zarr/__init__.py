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
Icechunk session's ``store``), and so does a folder path. The functions pair
up as in :mod:`tensordb.io.jsonbin`: ``import_(db, name, source)`` and
``export(value, target)``. This package uses only tensordb's public API and
zarr's public API.

Modules: ``mapping`` (the ``"tensordb"`` attribute, tagged values, dtypes),
``writer`` (export), ``reader`` (import), ``stores`` (the zarr package,
naming stores, finding stored chunks).

Example
-------
>>> import tensordb, tensordb.interop.zarr as tzarr
>>> db = tensordb.open("runs.tdb")
>>> tzarr.export(db["sample037"], "sample037.zarr")
>>> tzarr.import_(db, "copy037", "sample037.zarr")
'copy037'
"""

from __future__ import annotations

from tensordb.limits import MAX_CHUNK_BYTES

from .mapping import MARKER
from .reader import import_
from .writer import export

# MAX_CHUNK_BYTES: source chunks larger than tensordb's own chunk limit are refused on import, before they are read.
__all__ = ["export", "import_", "MARKER", "MAX_CHUNK_BYTES"]
