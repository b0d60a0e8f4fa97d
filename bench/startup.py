"""S start-up: what a fresh process pays before its first operation.

Rows: ``python -c "import X"`` for tensordb, next to the physical limits
measured in the same run (``python -c pass``, numpy, apsw, blosc2, and the
peers' h5py and Zarr); the CLI's ``tensordb --version`` and ``tensordb ls`` on
the demo database (built by ``tensordb demo``, untimed); the worker of the
fresh-process rows with no operation (``python -m bench.run_op none``), the
start-up every other table's fresh-process figures include.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from .common import Budget, Workload, run_process, timed_command
from .systems import TDB

IMPORT = 'import, fresh process (`python -c "import X"`)'
VERSION = "`tensordb --version`"
LS = "`tensordb ls` on the demo database"
WORKER = "benchmark worker, no operation (`python -m bench.run_op none`)"
PYTHON = "no import"  # python -c pass
#: column -> what its process imports (the modules of a skipped peer are left out)
IMPORTS = {TDB: "tensordb", PYTHON: None, "numpy": "numpy", "apsw": "apsw", "blosc2": "blosc2",
           "h5py": "h5py, hdf5plugin", "Zarr v3": "zarr"}


def cli() -> list[str]:
    """The ``tensordb`` command installed next to this interpreter (a version manager's shim, if any,
    would add its own start-up), or ``python -m tensordb`` when there is none."""
    script = Path(sys.executable).parent / "tensordb"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tensordb"]


def run(work: Path, budget: Budget, available: dict[str, str | None], log: Callable[[str], None]) -> Workload:
    """Time each command ``budget.repeat`` times (medians), each run a fresh process."""
    systems = [s for s in IMPORTS if available.get(s) is None]
    w = Workload("S", "start-up", "fresh processes, each command run once untimed, then timed "
                 f"{budget.repeat} times", systems)
    w.skipped = {s: r for s, r in available.items() if r is not None and s in IMPORTS}
    for system in systems:
        log(f"S import {system}")
        modules = IMPORTS[system]
        code = "pass" if modules is None else f"import {modules}"
        w.row(IMPORT).values[system] = timed_command([sys.executable, "-c", code], budget)
    demo = work / "demo.tdb"
    log("S tensordb demo (untimed)")
    run_process([*cli(), "demo", str(demo)])
    for row, argv in ((VERSION, [*cli(), "--version"]), (LS, [*cli(), "ls", str(demo)])):
        log(f"S {row}")
        w.row(row).values[TDB] = timed_command(argv, budget)
    w.row(WORKER).values[PYTHON] = timed_command([sys.executable, "-m", "bench.run_op", "none"], budget)
    w.notes.append(f"Commands run with this interpreter ({Path(sys.executable).name}); the CLI is "
                   f"`{shlex.join(Path(a).name for a in cli())}`, installed next to it. `no import` is "
                   "`python -c pass`, the interpreter's own start-up: a floor under every fresh process here.")
    w.notes.append("Demo database: `tensordb demo` with its defaults.")
    return w

