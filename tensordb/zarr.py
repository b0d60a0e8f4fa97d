"""Zarr v3 export and import under their first module name; they live in :mod:`tensordb.interop.zarr`."""

from __future__ import annotations

from tensordb.interop.zarr import MARKER, MAX_CHUNK_BYTES, export, import_

__all__ = ["export", "import_", "MARKER", "MAX_CHUNK_BYTES"]
