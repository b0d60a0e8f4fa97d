"""Hostile files: every malicious or damaged edit gets its documented error, and nothing else happens.

The cases live in ``hostile_cases.py``. Each runs here in-process; then all of
them run again in one subprocess that records every path opened (an audit
hook), booby-traps ``pickle.load(s)``, ``eval`` and ``exec``, and reports its
peak memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hostile_cases import CASES, Case, arm_sentinels, as_documented, prepare, run, sentinel_state

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PEAK_RSS_LIMIT = 200 * 2**20


def test_there_are_at_least_25_distinct_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_file_gets_its_documented_error(case: Case, tmp_path: Path) -> None:
    path = prepare(case, tmp_path)
    before = arm_sentinels(path)
    result = run(case, path)
    assert as_documented(case, result), (case, result)
    assert sentinel_state(path) == before, "a file outside the pack folder was read or written"


def _allowed(opened: str, db: Path) -> bool:
    """The database, its SQLite side files and its pack folder (a real folder)."""
    if opened.startswith("nofollow:"):
        opened = opened.removeprefix("nofollow:")
        if os.path.islink(opened):
            return True  # the open fails: O_NOFOLLOW on a symbolic link
    real = os.path.realpath(opened)
    db_real = os.path.realpath(db)
    packs_real = os.path.realpath(str(db) + "-packs")
    if real in {db_real + s for s in ("", "-wal", "-shm", "-journal")}:
        return True
    if os.path.dirname(real) == packs_real or real == packs_real:
        return not os.path.islink(str(db) + "-packs")
    return False


@pytest.mark.slow
def test_hostile_files_touch_nothing_else_never_unpickle_and_stay_small(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    proc = subprocess.run([sys.executable, str(TESTS / "hostile_cases.py"), str(sandbox)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = lines[-1]
    results: dict[str, Any] = {r["case"]: r for r in lines[:-1]}
    assert set(results) == {c.name for c in CASES}
    for case in CASES:
        result = results[case.name]
        assert as_documented(case, result), (case.name, result)
        db = sandbox / case.name / "db" / "h.tdb"
        strays = [p for p in result["opened"] if not _allowed(p, db)]
        assert not strays, (case.name, strays)
    assert summary["trapped"] == []
    assert summary["peak_rss_bytes"] < PEAK_RSS_LIMIT, summary
