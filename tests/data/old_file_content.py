"""The content of ``tests/data/zstd5-v1.tdb``, a file written by tensordb 0.1.0 with its first default codec.

That file was written by ``write(path)`` below, run with the tensordb of the
commit before the default codec changed (zstd level 5 + byte shuffle). The
test reads it with today's code and compares every value with ``expected()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def expected() -> dict[str, Any]:
    """Every tree of the file: inline and pack chunks, several dtypes, scalars, a shared array."""
    rng = np.random.default_rng(20261202)
    field = np.sin(np.linspace(0, 20, 96_000, dtype="f4")) + rng.normal(0, 0.01, 96_000).astype("f4")
    return {
        "sample": {
            "name": "old",
            "time": 51,
            "ratio": 0.25,
            "tags": ["a", "b", None, True],
            "data": {
                "field": field.reshape(300, 320),
                "ids": np.arange(1000, dtype=">i8"),  # inline, big-endian
                "mask": rng.random(500) > 0.5,
                "cplx": (rng.normal(size=64) + 1j * rng.normal(size=64)).astype("c8"),
                "names": np.array([b"ab", b"cde"], dtype="S3"),
                "empty": np.zeros((0, 3), "f8"),
            },
        },
        "other": {"geometry": field[:5000].copy(), "step": 2},
    }


def write(path: str) -> None:
    import tensordb

    with tensordb.open(path, mode="w") as db:
        for name, value in expected().items():
            db[name] = value
        tree = db["sample"]
        tree.set("/data/field", expected()["sample"]["data"]["field"], chunks=(100, 320))  # pack chunks
        tree["/data/field"][0:10] = 0.0  # a partial write: one chunk rewritten
        db["other"]["/shared"] = db["sample"]["/data/ids"]  # an array by reference
        db.gc()


if __name__ == "__main__":
    import sys

    write(sys.argv[1])
