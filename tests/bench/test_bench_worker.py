"""The fresh-process worker (``python -m bench.run_op``): its protocol, what it imports, what it counts.

Real child processes on a tiny W1 data set; no figure here is a timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import w1_mesh
from bench.common import ROOT, run_op
from bench.systems import save_default_codec
from tensordb.demo import synthetic_samples

SAMPLES = list(synthetic_samples(1, 2))


def test_reading_every_time_of_json_binref_imports_neither_numpy_nor_tensordb(tmp_path: Path) -> None:
    w1_mesh.JsonBinPeer(tmp_path).write(SAMPLES)
    code = ("import sys; from bench.run_op import main; "
            f"main(['W1', 'read-times', 'JSON+binref', {str(tmp_path)!r}]); "
            "print(sorted(m for m in ('numpy', 'tensordb', 'h5py', 'zarr', 'blosc2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    figures, imported = out.stdout.strip().splitlines()
    assert figures == "excluded=0.0 n=2"
    assert imported == "[]"


def test_a_write_reports_its_input_loading_and_the_reads_count_what_it_wrote(tmp_path: Path) -> None:
    save_default_codec(tmp_path)
    w1_mesh.save_input(tmp_path, SAMPLES)
    assert w1_mesh.load_input(tmp_path)[0][0] == SAMPLES[0][0]
    _, written = run_op(["W1", "write", "tensordb", str(tmp_path)])
    assert written == {"n": 2.0}  # "excluded" is taken off the time and out of the figures
    for op in ("read-all", "read-field", "read-times", "read-times-sql"):
        assert run_op(["W1", op, "tensordb", str(tmp_path)])[1] == {"n": 2.0}, op


def test_restructure_io_counts_sqlite_writes_by_kind_of_file(tmp_path: Path) -> None:
    w1_mesh.TensordbPeer(tmp_path).write(SAMPLES)
    _, figures = run_op(["W1", "restructure-io", "tensordb", str(tmp_path), "inlet", "inflow", "1"])
    assert set(figures) == {"arrays", "durable", "temporary"}
    assert figures["arrays"] == 0  # a move writes no array bytes
    assert figures["durable"] > 0  # the WAL frames of the commit, at least
    import tensordb

    with tensordb.open(tmp_path / "w1.tdb", mode="r") as db:
        assert all(db[name]["reviewed"] == 1 and "inflow" in db[name]["data"] for name, _ in SAMPLES)
