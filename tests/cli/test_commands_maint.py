"""gc, check and bundle."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import tensordb
from cli.helpers import POINTS, fails, ok, run, table
from tensordb.cli.app import main


def test_gc_dry_run_then_gc(sample: Path) -> None:
    with tensordb.open(sample) as db:
        del db["sim01/step003"]  # its array is no longer referenced
    dry = run("gc", sample, "--dry-run")
    assert dry.exit_code == 0 and "dry run: nothing was changed" in dry.stdout
    assert dict(table(dry.stdout))["arrays_removed"] == "1"
    with tensordb.open(sample, mode="r") as db:
        assert db.sql("SELECT count(*) FROM arrays WHERE refcount = 0").fetchall() == [(1,)]
    done = json.loads(ok("gc", sample, "--format", "json").stdout)
    assert done["arrays_removed"] == 1 and done["chunks_removed"] == 1
    with tensordb.open(sample, mode="r") as db:
        assert db.sql("SELECT count(*) FROM arrays WHERE refcount = 0").fetchall() == [(0,)]
        assert db.check().ok
    assert json.loads(ok("gc", sample, "--format", "json").stdout)["arrays_removed"] == 0


def test_check_healthy_and_damaged(sample: Path) -> None:
    assert ok("check", sample).stdout.startswith("check: ok, ")
    assert json.loads(ok("check", sample, "--format", "json").stdout)["ok"] is True
    con = sqlite3.connect(sample)
    with con:
        chunk_id, data = con.execute("SELECT chunk_id, data FROM chunk WHERE data IS NOT NULL LIMIT 1").fetchone()
        flipped = bytes([data[0]]) + bytes([data[1] ^ 0xFF]) + data[2:]
        con.execute("UPDATE chunk SET data = ? WHERE chunk_id = ?", (flipped, chunk_id))
    con.close()
    result = run("check", sample)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout.startswith("check: 1 error(s)")
    assert "chunk-corrupt" in result.stdout and f"chunk {chunk_id}" in result.stdout
    assert result.stderr.strip() == f"Error: {sample}: check found 1 error(s)"
    report = CliRunner().invoke(main, ["check", str(sample), "--format", "json"])
    assert report.exit_code == 1 and json.loads(report.stdout)["findings"][0]["code"] == "chunk-corrupt"
    lines = list(csv.reader(io.StringIO(run("check", sample, "--format", "csv").stdout)))
    assert lines[0][:2] == ["severity", "code"] and lines[1][:2] == ["error", "chunk-corrupt"]


def test_bundle(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "share.tdb"
    assert ok("bundle", sample, out).stdout.startswith(f"bundled {sample} into {out} (")
    with tensordb.open(out, mode="r") as db:
        assert sorted(db) == ["geom", "s1", "sim01", "sim01/step003"]
        np.testing.assert_array_equal(db["s1"]["/data/points"][...], POINTS)
        assert db.check().ok
    assert fails("bundle", sample, out) == f"Error: {out} already exists"
