"""Codec candidates on the W1 and W2 data: compression and decompression speed (one thread) and ratio.

This is the measurement behind tensordb's default codec (docs/format.md,
"Choice of the default codec")::

    python -m bench.codecs            # W1: 4 sims x 10 steps of mesh fields; W2: a 2048 x 2048 field
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import blosc2
import numpy as np

from tensordb.demo import synthetic_samples

from .w2_big import make_field

F, C = blosc2.Filter, blosc2.Codec
CANDIDATES: dict[str, tuple[Any, int, list[Any]]] = {
    "zstd 5 + byte shuffle (the first default)": (C.ZSTD, 5, [F.SHUFFLE]),
    "zstd 1 + byte shuffle": (C.ZSTD, 1, [F.SHUFFLE]),
    "zstd 1 + bit shuffle": (C.ZSTD, 1, [F.BITSHUFFLE]),
    "zstd 1 + byte shuffle + bytedelta": (C.ZSTD, 1, [F.SHUFFLE, F.BYTEDELTA]),
    "lz4 5 + byte shuffle": (C.LZ4, 5, [F.SHUFFLE]),
    "lz4 5 + bit shuffle (the default)": (C.LZ4, 5, [F.BITSHUFFLE]),
    "lz4 5 + byte shuffle + bytedelta": (C.LZ4, 5, [F.SHUFFLE, F.BYTEDELTA]),
    "blosclz 5 + byte shuffle": (C.BLOSCLZ, 5, [F.SHUFFLE]),
}


def _arrays(value: Any) -> Iterator[np.ndarray[Any, Any]]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _arrays(item)
    elif isinstance(value, list):
        for item in value:
            yield from _arrays(item)
    elif isinstance(value, np.ndarray):
        yield value


def datasets() -> dict[str, list[np.ndarray[Any, Any]]]:
    """W1: every mesh array of 4 KiB or more; W2: a smooth noisy field cut in 1 MiB pieces."""
    w1 = [a for _, sample in synthetic_samples(4, 10) for a in _arrays(sample) if a.nbytes >= 4096]
    return {"W1": w1, "W2": list(np.array_split(make_field(2048, 2048), 16))}


def measure(arrays: list[np.ndarray[Any, Any]], codec: Any, level: int, filters: list[Any],
            repeat: int) -> tuple[float, float, float]:
    """(compress MB/s, decompress MB/s, ratio), best of ``repeat``, one thread."""
    raw = sum(a.nbytes for a in arrays)
    best_c = best_d = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        stored = [blosc2.compress2(a, codec=codec, clevel=level, filters=filters, filters_meta=[0] * len(filters),
                                   typesize=a.itemsize, nthreads=1) for a in arrays]
        best_c = min(best_c, time.perf_counter() - start)
        start = time.perf_counter()
        for chunk, a in zip(stored, arrays):
            blosc2.decompress2(chunk, dst=bytearray(a.nbytes), nthreads=1)
        best_d = min(best_d, time.perf_counter() - start)
    return raw / best_c / 1e6, raw / best_d / 1e6, raw / sum(len(c) for c in stored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    blosc2.set_nthreads(1)
    for label, arrays in datasets().items():
        print(f"\n{label}: {len(arrays)} arrays, {sum(a.nbytes for a in arrays) / 1e6:.1f} MB\n")
        print("| codec | compress | decompress | ratio |\n|---|---:|---:|---:|")
        for name, (codec, level, filters) in CANDIDATES.items():
            comp, decomp, ratio = measure(arrays, codec, level, filters, args.repeat)
            print(f"| {name} | {comp:,.0f} MB/s | {decomp:,.0f} MB/s | {ratio:.3f} |")


if __name__ == "__main__":
    main()
