"""tensordb's benchmark suite (issue 5): tensordb against JSON+binref, Zarr v3, h5py, blosc2 and raw .npy.

Run ``python -m bench [--quick] [--only W1,W2,W3,W4] [--json out.json] [--markdown]``.
``python -m bench.bench_sql`` (SQL over the metadata) is a separate script.
"""
