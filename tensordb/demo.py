"""Synthetic CFD-like mesh samples and the ``tensordb demo`` narrative.

Samples are shaped like the JSON+binref example users bring (flow over a
cylinder): five meshes (inlet, outlet, wall, obstacle surfaces and the
internal volume), each with points, connectivity, cell types and cell/point
fields ``p`` and ``U``. Within one simulation the geometry is identical at
every time step; the fields change smoothly, with a little noise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

import tensordb

__all__ = ["synthetic_sample", "synthetic_samples", "run_demo", "MESHES"]

#: mesh name -> (object_type, points, cells, points per cell, cell type)
MESHES: dict[str, tuple[str, int, int, int, int]] = {
    "inlet": ("PasteurSurfaceMesh", 50, 24, 4, 7),
    "outlet": ("PasteurSurfaceMesh", 50, 24, 4, 7),
    "wall": ("PasteurSurfaceMesh", 184, 90, 4, 7),
    "obstacle": ("PasteurSurfaceMesh", 160, 80, 4, 7),
    "internal": ("PasteurVolumetricMesh", 4778, 2280, 8, 12),
}


def _geometry(sim: int, n_points: int, n_cells: int, per_cell: int, cell_type: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + sim)
    points = rng.uniform(-1.0, 1.0, size=(n_points, 3)).astype("f4")
    points[:, 2] = 0.0  # a 2-D flow extruded: z is constant
    connectivity = np.empty((n_cells, per_cell + 1), dtype="i4")
    connectivity[:, 0] = per_cell  # VTK style: a count, then point indices
    connectivity[:, 1:] = rng.integers(0, n_points, size=(n_cells, per_cell))
    return {
        "cell_connectivity": connectivity.reshape(-1),
        "cell_types": np.full(n_cells, cell_type, dtype="i4"),
        "points": points,
    }


def _field(xy: np.ndarray, t: float, rng: np.random.Generator, components: int) -> np.ndarray:
    x, y = xy[:, 0:1], xy[:, 1:2]
    base = np.sin(2.0 * x - 0.3 * t) * np.cos(1.5 * y)
    out = np.repeat(base, components, axis=1) * np.linspace(1.0, 0.5, components)
    out += rng.normal(0.0, 0.01, size=out.shape)
    return out.astype("f4")


def synthetic_sample(sim: int, step: int, internal_points: int | None = None) -> dict[str, Any]:
    """One sample: ``{"name", "time", "data": {mesh: {...arrays}}}``."""
    rng = np.random.default_rng(sim * 100_003 + step)
    t = float(step * 5 + 1)
    data: dict[str, Any] = {}
    for mesh, (object_type, n_points, n_cells, per_cell, cell_type) in MESHES.items():
        if mesh == "internal" and internal_points is not None:
            n_points = internal_points
        geometry = _geometry(sim * 10 + len(mesh), n_points, n_cells, per_cell, cell_type)
        centres = np.resize(geometry["points"], (n_cells, 3))  # stand-in cell positions
        data[mesh] = {
            "object_type": object_type,
            **geometry,
            "cell_data": {"p": _field(centres, t, rng, 1), "U": _field(centres, t, rng, 3)},
            "point_data": {"p": _field(geometry["points"], t, rng, 1), "U": _field(geometry["points"], t, rng, 3)},
        }
    return {"name": f"bm01-sim{sim:03d}-step{step:03d}", "time": int(t), "data": data}


def synthetic_samples(n_sims: int = 20, n_steps: int = 10) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(tree name, sample)`` for every time step of every simulation."""
    for sim in range(n_sims):
        internal_points = 3500 + (sim * 389) % 2200  # mesh sizes differ between simulations
        for step in range(n_steps):
            sample = synthetic_sample(sim, step, internal_points)
            yield sample["name"], sample


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def run_demo(
    path: str, n_sims: int = 20, n_steps: int = 10, say: Any = print, *, force: bool = False
) -> dict[str, Any]:
    """Build a demo database at ``path`` and narrate what tensordb does. Returns the figures.

    An existing ``path`` (or its ``-packs`` folder) is refused with
    :class:`FileExistsError` unless ``force`` is given, in which case the
    database there is replaced.
    """
    existing = [p for p in (path, path + "-packs") if os.path.lexists(p)]
    if existing and not force:
        raise FileExistsError(f"{existing[0]}: already exists; pass --force (force=True in Python) to replace it")
    figures: dict[str, Any] = {}
    start = time.perf_counter()
    with tensordb.open(path, mode="w") as db:
        for name, sample in synthetic_samples(n_sims, n_steps):
            db[name] = sample
        figures["write_seconds"] = time.perf_counter() - start
        s = db.stats()
        figures["stats"] = s
        say(f"[bold]1. Stored[/] {s['trees']} samples ({n_sims} simulations x {n_steps} time steps), "
            f"{s['arrays']} arrays, in {figures['write_seconds']:.1f} s -> {path}")
        say(f"   logical {_mib(s['logical_bytes'])}, stored {_mib(s['stored_bytes'])} "
            f"({s['logical_bytes'] / max(s['stored_bytes'], 1):.1f}x smaller): identical geometry is stored once "
            f"per simulation (dedup ratio {s['dedup_ratio']:.1f}), the rest is Blosc2-compressed")

        before = db.counters.snapshot()
        start = time.perf_counter()
        with db.transaction():
            for name in db:
                tree = db[name]
                tree.move("/data/inlet", "/data/inflow")
                tree["reviewed"] = True
        figures["restructure_seconds"] = time.perf_counter() - start
        after = db.counters.snapshot()
        figures["restructure_bytes_written"] = after["chunk_bytes_written"] - before["chunk_bytes_written"]
        say(f"[bold]2. Restructured[/] every tree (moved /data/inlet to /data/inflow, added a scalar) in "
            f"{figures['restructure_seconds']:.2f} s: {figures['restructure_bytes_written']} array bytes written")

    with tensordb.open(path, mode="r") as db:
        name = next(iter(db))
        points = db[name]["/data/internal/points"]
        block = points[100:200, :2]
        decoded = db.counters.chunks_decoded
        figures["lazy_chunks_decoded"] = decoded
        say(f"[bold]3. Lazy read[/] {name}/data/internal/points[100:200, :2] -> array{block.shape} "
            f"{block.dtype}: opening read no array bytes; the slice decompressed {decoded} chunk "
            f"(the array is {points.nbytes:,} bytes in chunks of {points.chunks})")

        query = (
            "SELECT t.tree, t.value AS time, json_extract(a.shape, '$[0]') AS n_points "
            "FROM nodes t JOIN nodes o ON o.tree = t.tree AND o.path = '/data/internal/object_type' "
            "JOIN nodes p ON p.tree = t.tree AND p.path = '/data/internal/points' "
            "JOIN arrays a ON a.array_id = p.array_id "
            "WHERE t.path = '/time' AND t.value > ? AND o.value = 'PasteurVolumetricMesh' "
            "AND json_extract(a.shape, '$[0]') > ? ORDER BY t.tree"
        )
        rows = db.sql(query, (30, 4000)).fetchall()
        figures["sql_rows"] = len(rows)
        say("[bold]4. SQL[/] samples with time > 30 and a PasteurVolumetricMesh of more than 4000 points: "
            f"{len(rows)} rows, e.g. {rows[0] if rows else None}")
        report = db.check()
        figures["check_ok"] = report.ok
        say(f"[bold]5. check()[/] {'ok' if report.ok else 'FAILED'}: {report.chunks_checked} chunks verified "
            f"(checksums and content keys); file size {_mib(os.path.getsize(path))}")
    return figures
