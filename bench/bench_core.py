"""Core benchmark: mesh samples in tensordb vs one .npy file per array (the raw I/O limit).

Both systems store the same synthetic samples (``tensordb.demo``) in the same
run; figures are medians of several repetitions and are reported as ratios
(tensordb time / .npy time), never as absolute claims.

Run:  python bench/bench_core.py [--sims 20] [--steps 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import tensordb
from tensordb.demo import synthetic_samples


def _median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _walk(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_walk(v, f"{prefix}/{k}"))
    else:
        out.append((prefix, value))
    return out


def _du(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files), len(files)


def run(sims: int, steps: int, repeat: int) -> dict[str, dict[str, float]]:
    samples = list(synthetic_samples(sims, steps))
    work = Path(tempfile.mkdtemp(prefix="tdb-bench-"))
    results: dict[str, dict[str, float]] = {"tensordb": {}, "npy": {}}
    try:
        db_path = work / "bench.tdb"

        def write_tdb() -> None:
            with tensordb.open(db_path, mode="w") as db, db.transaction():
                for name, sample in samples:
                    db[name] = sample

        def write_npy() -> None:
            root = work / "npy"
            shutil.rmtree(root, ignore_errors=True)
            for name, sample in samples:
                folder = root / name
                folder.mkdir(parents=True)
                scalars = {}
                for path, leaf in _walk(sample):
                    if isinstance(leaf, np.ndarray):
                        np.save(folder / (path.strip("/").replace("/", "__") + ".npy"), leaf)
                    else:
                        scalars[path] = leaf
                (folder / "meta.json").write_text(json.dumps(scalars))

        results["tensordb"]["write all"] = _median_seconds(write_tdb, repeat)
        results["npy"]["write all"] = _median_seconds(write_npy, repeat)

        def read_tdb() -> None:
            with tensordb.open(db_path, mode="r") as db:
                for name in db:
                    db[name].load()

        def read_npy() -> None:
            for folder in (work / "npy").iterdir():
                json.loads((folder / "meta.json").read_text())
                for f in folder.glob("*.npy"):
                    np.load(f)

        results["tensordb"]["read all"] = _median_seconds(read_tdb, repeat)
        results["npy"]["read all"] = _median_seconds(read_npy, repeat)

        def field_tdb() -> None:
            with tensordb.open(db_path, mode="r") as db:
                for _, _, arr in db.glob("/data/internal/point_data/p"):
                    arr[...]

        def field_npy() -> None:
            for folder in (work / "npy").iterdir():
                np.load(folder / "data__internal__point_data__p.npy")

        results["tensordb"]["one field, all samples"] = _median_seconds(field_tdb, repeat)
        results["npy"]["one field, all samples"] = _median_seconds(field_npy, repeat)

        tdb_bytes, tdb_files = _du(db_path)
        packs = Path(str(db_path) + "-packs")
        if packs.exists():
            pack_bytes, pack_files = _du(packs)
            tdb_bytes, tdb_files = tdb_bytes + pack_bytes, tdb_files + pack_files
        npy_bytes, npy_files = _du(work / "npy")
        results["tensordb"]["MiB on disk"] = tdb_bytes / 2**20
        results["npy"]["MiB on disk"] = npy_bytes / 2**20
        results["tensordb"]["files"] = tdb_files
        results["npy"]["files"] = npy_files
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = run(args.sims, args.steps, args.repeat)
    print(f"{args.sims * args.steps} samples, median of {args.repeat}, {os.cpu_count()} cores")
    print(f"{'operation':<26}{'tensordb':>12}{'.npy files':>12}{'ratio':>8}")
    for op in results["tensordb"]:
        t, n = results["tensordb"][op], results["npy"][op]
        unit = "" if op in ("MiB on disk", "files") else " s"
        print(f"{op:<26}{t:>10.3f}{unit:2}{n:>10.3f}{unit:2}{t / n if n else float('nan'):>8.2f}")


if __name__ == "__main__":
    main()
