"""tensordb's benchmark suite: tensordb against JSON+binref, Zarr v3, h5py, blosc2 and raw .npy.

Run ``python -m bench [--quick] [--check] [--only S,W1,W2,W3,W4] [--json out.json] [--markdown]``;
each timed row runs in fresh processes (``python -m bench.run_op``), and ``bench/targets.py``
holds the targets every run checks. ``python -m bench.bench_sql`` (SQL over the metadata) and
``python -m bench.codecs`` (the codec candidates) are separate scripts.
"""
