"""The targets every run checks, by workload and row: issue 11's table, then issue 5's that still hold.

The timed rows are timed in fresh processes (``python -m bench.run_op``), start-up
and imports included, as issue 11 asks; each factor below is its threshold exactly
as the issue states it. The in-process rows have no target. ``python -m bench
--check`` exits with status 1 when one of them is missed.
"""

from __future__ import annotations

from .common import Cond, Target

JSONBIN, BLOSC2, H5PY, ZARR = "JSON+binref", "blosc2", "h5py", "Zarr v3"


def _at_most(factor: float, peer: str) -> Target:
    return Target(f"<={factor:g}x {peer}", (Cond(factor, peer),))


#: workload -> row -> target
TARGETS: dict[str, dict[str, Target]] = {
    "S": {
        'import, fresh process (`python -c "import X"`)': Target("<=150 ms", (Cond(0.150),)),
        "`tensordb --version`": Target("<=300 ms", (Cond(0.300),)),
        "`tensordb ls` on the demo database": Target("<=300 ms", (Cond(0.300),)),
    },
    "W1": {
        # issue 11 (and issue 5's conditions against h5py and Zarr)
        "write all (one transaction + sync)": Target(
            "<=1x JSON+binref, <=0.1x Zarr, <1x h5py", (Cond(1.0, JSONBIN), Cond(0.1, ZARR), Cond(1.0, H5PY, True))),
        "reopen + read all": Target("<=1.5x JSON+binref, <1x h5py", (Cond(1.5, JSONBIN), Cond(1.0, H5PY, True))),
        "one field, all samples (handles)": _at_most(1.0, JSONBIN),
        '`time`, all samples: `db[name]["time"]`': _at_most(1.0, JSONBIN),
        "`time`, all samples: SQL": _at_most(0.33, JSONBIN),
        "restructure all (move + scalar)": _at_most(0.1, JSONBIN),
        # 0.4x relaxed to 0.5x as issue 11 allows: no codec meets 0.4x on these noisy fields (zstd's best
        # ratio missed it by 5%), and the default is chosen for speed (docs/format.md, python -m bench.codecs)
        "bytes on disk": _at_most(0.5, JSONBIN),
        "restructure: temporary-file bytes": Target("0 (temporary work stays in memory)", (Cond(0.0),)),
        # issue 5
        "restructure: array bytes written": Target("0", (Cond(0.0),)),
        "files": Target("<=3 (+ -wal/-shm)", (Cond(3.0),)),
    },
    "W2": {
        # issue 11
        "write": _at_most(1.0, BLOSC2),
        "read full": _at_most(1.0, BLOSC2),
        "64x64 box (open+read+close)": Target(
            "<=1.5x blosc2, <Zarr, <h5py", (Cond(1.5, BLOSC2), Cond(1.0, ZARR, True), Cond(1.0, H5PY, True))),
        "row slab [r:r+64, :]": _at_most(1.5, BLOSC2),
        "column slab [:, c:c+64]": _at_most(1.5, BLOSC2),
        "streaming write: throughput / whole-array write's": Target(">=0.9x", (Cond(0.9, minimum=True),)),
        # issue 5
        "bytes on disk": Target("<=1.05x blosc2", (Cond(1.05, BLOSC2),)),
        "peak RSS of the slice reads above baseline": Target("<64 MiB", (Cond(64 * 2**20, None, True),)),
    },
    "W3": {
        # issue 11
        "write": _at_most(2.0, JSONBIN),
        # issue 5
        "reopen + one deep leaf, in-process": Target("<5 ms", (Cond(0.005, None, True),)),
        "int leaves > 900 (open included), in-process": Target("<100 ms", (Cond(0.1, None, True),)),
    },
    "W4": {
        "bytes on disk / one raw copy (array + small fields)": Target("<1.1x", (Cond(1.1, None, True),)),
    },
}


def target_for(workload: str, row: str) -> Target | None:
    """The target of a row (None: the row is informative)."""
    return TARGETS.get(workload, {}).get(row)


def rows_without_figures(workload: str, rows: list[str]) -> list[str]:
    """Rows of ``workload``'s targets that a run did not produce (a renamed row loses its target)."""
    return [row for row in TARGETS.get(workload, {}) if row not in rows]


def peers_named(workload: str) -> set[str]:
    """The peers that some target of ``workload`` compares tensordb with."""
    return {c.peer for t in TARGETS.get(workload, {}).values() for c in t.conds if c.peer is not None}
