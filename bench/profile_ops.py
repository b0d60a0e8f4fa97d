"""cProfile of tensordb's side of one benchmark operation (the starting point for optimising it).

Usage: ``python -m bench.profile_ops OPERATION [--top 25] [--sort tottime|cumulative]``
with OPERATION one of: w1-write, w1-read-all, w1-field, w1-times, w1-restructure, w2-box, w3-write.
Data is generated at the ``--quick`` scale unless ``--full``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from collections.abc import Callable
from pathlib import Path

from tensordb.demo import synthetic_samples

from . import w1_mesh, w2_big, w3_meta
from .__main__ import FULL, QUICK


def operations(work: Path, full: bool) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """OPERATION -> (untimed setup, profiled call)."""
    scale = FULL if full else QUICK
    w1 = w1_mesh.TensordbPeer(work)
    samples = list(synthetic_samples(*scale.w1))
    w2 = w2_big.TensordbPeer(work)
    sl = w2_big.slices(*scale.w2)
    w3 = w3_meta.TensordbPeer(work)

    def w1_setup() -> None:
        w1.write(samples)

    def boxes() -> None:
        for _ in range(10):
            for key in sl["boxes"]:
                w2.read(key)

    return {
        "w1-write": (lambda: None, lambda: w1.write(samples)),
        "w1-read-all": (w1_setup, w1.read_all),
        "w1-field": (w1_setup, w1.read_field),
        "w1-times": (w1_setup, w1.read_times),
        "w1-restructure": (w1_setup, lambda: w1.restructure("inlet", "inflow", 1)),
        "w2-box": (lambda: w2.write(w2_big.make_field(*scale.w2)), boxes),
        "w3-write": (lambda: None, lambda: w3.write(w3_meta.make_tree(*scale.w3)[0])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_ops", description=__doc__.splitlines()[0])
    parser.add_argument("operation")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--full", action="store_true", help="full-scale data instead of the --quick scale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tdb-profile-") as tmp:
        ops = operations(Path(tmp), args.full)
        if args.operation not in ops:
            parser.error(f"unknown operation; choose from {sorted(ops)}")
        setup, call = ops[args.operation]
        setup()
        call()  # warm-up (page cache, imports)
        if args.operation == "w1-restructure":
            setup()
        profiler = cProfile.Profile()
        profiler.runcall(call)
        pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
