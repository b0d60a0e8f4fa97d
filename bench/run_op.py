"""``python -m bench.run_op WORKLOAD OP SYSTEM WORKDIR [ARG...]``: one operation in a fresh process.

The parent times this whole process from spawn to exit, so interpreter start-up
and every import the operation needs (``import tensordb``, ``import h5py``, ...)
count, as they count in a user's script. A write first loads its input (the
samples, the array) and reports that loading time on its last line of output
(``excluded=SECONDS``), which the parent subtracts; numpy is imported before
that, so its import counts. The last line holds the operation's other figures
too (``n=...`` to check the result, bytes), as ``key=value`` pairs.

This module imports nothing that Python's start-up has not already loaded; the
operation imports what its system needs. ``python -m bench.run_op none`` does no
operation: the start-up cost of the worker itself.
"""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

#: The module of each workload; it defines ``fresh_op(op, system, workdir, args) -> figures``.
MODULES = {"W1": "bench.w1_mesh", "W2": "bench.w2_big", "W3": "bench.w3_meta"}


def format_figures(figures: dict[str, float]) -> str:
    """``key=value`` pairs, the worker's last line of output."""
    return " ".join(f"{key}={value!r}" for key, value in figures.items())


def parse_figures(line: str) -> dict[str, float]:
    """The figures of :func:`format_figures`' line."""
    return {key: float(value) for key, value in (item.split("=", 1) for item in line.split())}


def main(argv: list[str]) -> None:
    if argv == ["none"]:
        print(format_figures({"excluded": 0.0}))
        return
    if len(argv) < 4 or argv[0] not in MODULES:
        sys.exit(f"usage: python -m bench.run_op {{{','.join(MODULES)}}} OP SYSTEM WORKDIR [ARG...] | none")
    workload, op, system, workdir, *args = argv
    figures = import_module(MODULES[workload]).fresh_op(op, system, Path(workdir), args)
    print(format_figures(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
