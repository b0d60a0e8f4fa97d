"""Dask helpers under their first module name; they live in :mod:`tensordb.interop.dask`."""

from __future__ import annotations

from tensordb.interop.dask import from_glob

__all__ = ["from_glob"]
