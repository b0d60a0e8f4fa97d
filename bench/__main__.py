"""``python -m bench``: run the workloads and print a table per workload, with its targets.

Examples
--------
python -m bench --quick --check               # every workload scaled down (< 4 min); exit 1 on a missed target
python -m bench --only W1,W3 --json out.json  # full scale, two workloads, every figure to JSON
python -m bench --markdown                    # also rewrite the section in docs/benchmarks.md
python -m bench --markdown-from out.json      # rewrite that section from an earlier --json run
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import report, startup, targets, w1_mesh, w2_big, w3_meta, w4_share
from .common import Budget, Workload, machine
from .systems import TDB, save_default_codec

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
FINDINGS = Path(__file__).resolve().parent / "findings.md"


@dataclass(frozen=True)
class Scale:
    """The size of every workload and how often each operation runs."""

    w1: tuple[int, int]  # sims, steps
    w2: tuple[int, int]  # rows, cols
    w2_stream_mib: int  # the blocks of the streaming write
    w2_fresh_boxes: int  # box offsets read in fresh processes
    w3: tuple[int, int]  # scalar leaves, arrays
    w4: tuple[int, int]  # trees, MiB of the shared array
    budget: Budget  # reads (each in fresh processes, then in-process)
    write_budget: Budget  # writes, restructures, full reads of W2
    startup_budget: Budget  # start-up commands


FULL = Scale((20, 50), (8192, 16384), 64, 20, (200_000, 20_000), (1000, 64), Budget(5, 20.0), Budget(3, 60.0),
             Budget(10, 60.0))
# --quick checks the targets before a change: fresh processes only, no in-process rows, and in W1-W4
# only the peers that the targets name (see only_named_peers)
QUICK = Scale((4, 10), (2048, 4096), 8, 5, (20_000, 2_000), (100, 16), Budget(3, 3.0, False),
              Budget(2, 5.0, False), Budget(5, 10.0))
WORKLOADS = ("S", "W1", "W2", "W3", "W4")


def availability() -> dict[str, str | None]:
    """Each peer's skip reason (None when its library imports)."""
    out: dict[str, str | None] = {"tensordb": None, "JSON+binref": None, ".npy": None}
    for system, modules in (("Zarr v3", ("zarr",)), ("h5py", ("h5py", "hdf5plugin")), ("blosc2", ("blosc2",))):
        reason = None
        for module in modules:
            try:
                __import__(module)
            except ImportError as exc:
                reason = f"{module} is not installed ({exc}); pip install '.[bench]'"
                break
        if system == "Zarr v3" and reason is None:
            import zarr

            if int(zarr.__version__.split(".")[0]) < 3:
                reason = f"zarr {zarr.__version__} is not Zarr v3 (zarr>=3 needed)"
        out[system] = reason
    return out


def _pair(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scale every workload down (< 4 minutes)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a target is missed, listing which (not for CI: timing)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="comma-separated workloads: S (start-up), W1, W2, W3, W4 (default: all)")
    parser.add_argument("--json", type=Path, help="write every figure (median, min, max, n) to this file")
    parser.add_argument("--markdown", action="store_true", help=f"rewrite the section in {DOCS.name}")
    parser.add_argument("--markdown-from", type=Path, metavar="JSON",
                        help=f"rewrite the section in {DOCS.name} from the figures of an earlier --json run")
    parser.add_argument("--w2-shape", type=_pair, help="W2 array shape, e.g. 4096x8192")
    parser.add_argument("--w4", type=_pair, help="W4 trees x MiB of the shared array, e.g. 1000x64")
    parser.add_argument("--repeat", type=int, help="timed runs of each read (writes: about half)")
    parser.add_argument("--workdir", type=Path, help="where data is written (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    if bad := [w for w in args.only if w not in WORKLOADS]:
        parser.error(f"unknown workloads {bad}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 when ``--check`` finds a missed target."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.markdown_from:
        saved = json.loads(args.markdown_from.read_text())
        _write_markdown(report.from_json(saved["workloads"]), saved["machine"], saved["command"], saved["seconds"])
        return 0
    scale = QUICK if args.quick else FULL
    budget, write_budget = scale.budget, scale.write_budget
    if args.repeat:
        budget = Budget(args.repeat, budget.seconds, budget.in_process)
        write_budget = Budget(max(1, (args.repeat + 1) // 2), write_budget.seconds, write_budget.in_process)
    everything = availability()
    for system, reason in everything.items():
        if reason:
            print(f"skipping {system}: {reason}")
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", flush=True)

    workloads: list[Workload] = []
    with tempfile.TemporaryDirectory(prefix="tdb-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        save_default_codec(work)
        for key in args.only:
            t0 = time.perf_counter()
            available = everything if not args.quick or key == "S" else only_named_peers(everything, key)
            if key == "S":
                w = startup.run(work, scale.startup_budget, available, log)
            elif key == "W1":
                w = w1_mesh.run(work, *scale.w1, budget, write_budget, available, log)
            elif key == "W2":
                rows, cols = args.w2_shape or scale.w2
                w = w2_big.run(work, rows, cols, scale.w2_stream_mib, scale.w2_fresh_boxes, budget, write_budget,
                               available, log)
            elif key == "W3":
                w = w3_meta.run(work, *scale.w3, budget, write_budget, available, log)
            else:
                trees, mib = args.w4 or scale.w4
                w = w4_share.run(work, trees, mib, write_budget, available, log)
            w.seconds = time.perf_counter() - t0
            attach_targets(w)
            workloads.append(w)
            print()
            print(report.text_table(w))
            print(flush=True)
    seconds = time.perf_counter() - start
    info = machine()
    print(f"total {seconds:.0f} s; {info['cores']} cores, {info['cpu']}, Python {info['python']}")
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.json:
        args.json.write_text(json.dumps({"command": command, "seconds": seconds, "machine": info,
                                         "workloads": report.to_json(workloads)}, indent=2) + "\n")
        print(f"figures written to {args.json}")
    if args.markdown:
        _write_markdown(workloads, info, command, seconds)
    missed = report.missed(workloads)
    print(report.check_summary(workloads))
    return 1 if args.check and missed else 0


def only_named_peers(available: dict[str, str | None], workload: str) -> dict[str, str | None]:
    """``available`` without the peers that no target of ``workload`` names (``--quick`` checks targets)."""
    named = targets.peers_named(workload) | {TDB}
    return {system: reason or (None if system in named else "--quick runs the peers that the targets name")
            for system, reason in available.items()}


def attach_targets(w: Workload) -> None:
    """Give each row its target from :mod:`bench.targets`; a target whose row the run lacks gets an
    empty row, so that it shows as not evaluated rather than vanish."""
    for op in targets.rows_without_figures(w.key, [r.op for r in w.rows]):
        w.row(op, note="no figure: the workload has no row of this name")
    for r in w.rows:
        r.target = targets.target_for(w.key, r.op)


def _write_markdown(workloads: list[Workload], info: dict[str, Any], command: str, seconds: float) -> None:
    note = FINDINGS.read_text() if FINDINGS.exists() else ""
    report.write_markdown(DOCS, report.markdown_section(workloads, info, command.strip(), seconds, note))
    print(f"section {report.SECTION!r} written to {DOCS}")


if __name__ == "__main__":
    sys.exit(main())
