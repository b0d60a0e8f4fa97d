"""The scripts that measure physical limits (``bench.read_limit``, ``bench.node_insert_limit``) still run.

They are run by hand when docs/benchmarks.md is rewritten; a tiny scale here
keeps them working as the schema and the engine change. No figure is checked.
"""

from __future__ import annotations

import re
import subprocess
import sys

from bench.common import ROOT


def _run(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.splitlines()


def test_read_limit_replays_the_statements_of_a_read_and_decompresses_every_array() -> None:
    lines = _run("bench.read_limit", "--sims", "1", "--steps", "2", "--repeat", "1")
    labels = [line.split(":")[0] for line in lines]
    assert labels == ["tensordb, reopen + read all", "SQL alone", "chunk bytes alone", "decompression alone",
                      "JSON+binref, read all", "SQL + chunk bytes + decompression"]
    assert "70 Blosc2 calls" in lines[3]  # 35 arrays per sample


def test_node_insert_limit_inserts_into_the_current_node_table() -> None:
    lines = _run("bench.node_insert_limit", "--leaves", "1000", "--arrays", "100", "--repeat", "1")
    assert len(lines) == 6
    assert all("for 1,001 node rows" in line for line in lines[:3])
    assert re.match(r"tensordb's own W3 rows \([\d,]+: dicts, scalars and [\d,]+ array nodes", lines[3])
    assert [line.split(":")[0].strip() for line in lines[4:]] == [
        "512 rows per statement, as tensordb inserts them", "one row per statement"]
