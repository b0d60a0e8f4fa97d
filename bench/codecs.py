"""Codec candidates on the W1 and W2 data: compression and decompression speed (one thread), the speed
of tensordb's own decoding of the same chunks, and the ratio.

This is the measurement behind tensordb's default codec (docs/format.md,
"Choice of the default codec")::

    python -m bench.codecs            # W1: the distinct arrays of 20 sims x 50 steps; W2: a 2048 x 2048 field
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import blosc2
import numpy as np

from tensordb.codec import Codec
from tensordb.demo import synthetic_samples

from .w2_big import make_field

F, C = blosc2.Filter, blosc2.Codec
#: label -> (Blosc2 codec, level, filters, the same as a tensordb Codec or None)
CANDIDATES: dict[str, tuple[Any, int, list[Any], Codec | None]] = {
    "zstd 5 + byte shuffle (the first default)": (C.ZSTD, 5, [F.SHUFFLE], Codec("zstd", 5, "byte")),
    "zstd 1 + byte shuffle": (C.ZSTD, 1, [F.SHUFFLE], Codec("zstd", 1, "byte")),
    "zstd 1 + bit shuffle": (C.ZSTD, 1, [F.BITSHUFFLE], Codec("zstd", 1, "bit")),
    "zstd 1 + byte shuffle + bytedelta": (C.ZSTD, 1, [F.SHUFFLE, F.BYTEDELTA], None),
    "lz4 5, no shuffle": (C.LZ4, 5, [F.NOFILTER], Codec("lz4", 5, "none")),
    "lz4 5 + byte shuffle (the default)": (C.LZ4, 5, [F.SHUFFLE], Codec("lz4", 5, "byte")),
    "lz4 5 + bit shuffle (the previous default)": (C.LZ4, 5, [F.BITSHUFFLE], Codec("lz4", 5, "bit")),
    "lz4 5 + byte shuffle + bytedelta": (C.LZ4, 5, [F.SHUFFLE, F.BYTEDELTA], None),
    "blosclz 5 + byte shuffle": (C.BLOSCLZ, 5, [F.SHUFFLE], Codec("blosclz", 5, "byte")),
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
    """W1: the distinct arrays of the benchmark's 20 sims x 50 steps, every size (what the database
    stores: an array repeated across time steps, a mesh's connectivity, is stored once);
    W2: a smooth noisy field cut in 1 MiB pieces."""
    distinct = {a.tobytes(): a for _, sample in synthetic_samples(20, 50) for a in _arrays(sample)}
    return {"W1": list(distinct.values()), "W2": list(np.array_split(make_field(2048, 2048), 16))}


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


def measure_reads(arrays: list[np.ndarray[Any, Any]], codec: Codec, repeat: int) -> float:
    """MB/s of tensordb's own decoding of the chunks, one after the other as a read does (Blosc2 through
    its C library; a chunk that Blosc2 stored as it is, too noisy to compress, is copied out)."""
    chunks = [(codec.encode(np.ascontiguousarray(a).reshape(-1).view(np.uint8), a.itemsize), a.nbytes) for a in arrays]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for stored, nbytes in chunks:
            codec.decode(stored, nbytes, np.empty(nbytes, np.uint8))
        best = min(best, time.perf_counter() - start)
    return sum(n for _, n in chunks) / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    blosc2.set_nthreads(1)
    for label, arrays in datasets().items():
        print(f"\n{label}: {len(arrays)} arrays, {sum(a.nbytes for a in arrays) / 1e6:.1f} MB\n")
        print("| codec | compress | decompress | tensordb's reads | ratio |\n|---|---:|---:|---:|---:|")
        for name, (codec, level, filters, ours) in CANDIDATES.items():
            comp, decomp, ratio = measure(arrays, codec, level, filters, args.repeat)
            reads = f"{measure_reads(arrays, ours, args.repeat):,.0f} MB/s" if ours is not None else "-"
            print(f"| {name} | {comp:,.0f} MB/s | {decomp:,.0f} MB/s | {reads} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
