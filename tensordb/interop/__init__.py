"""Interoperability with other array libraries, on the public API alone.

``tensordb.interop.zarr`` writes trees as Zarr v3 hierarchies and reads any
Zarr v3 hierarchy back; ``tensordb.interop.dask`` stacks arrays of many
trees into one lazy Dask array.
"""
