"""Hostile files: every malicious or damaged edit gets its documented error, and nothing else happens.

The cases live in ``hostile_cases.py``. Each runs here in-process; then all of
them run again in one subprocess that records every path opened (an audit
hook), booby-traps ``pickle.load(s)``, ``eval`` and ``exec``, and reports its
peak memory.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hostile_cases import CASES, Case, arm_sentinels, as_documented, prepare, run, sentinel_state

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PEAK_RSS_LIMIT = 200 * 2**20


def test_there_are_at_least_25_distinct_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 25


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.known_bug)] if case.known_bug else []
    return pytest.param(case, id=case.name, marks=marks)


WORKER_SECONDS = 60
WORKER_ADDRESS_SPACE = 2 << 30


def run_in_worker(case: Case, path: Path) -> dict[str, Any]:
    """``run(case, path)`` in a forked child limited in time and address space (a loop or a bomb fails the case)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read_fd)
            resource.setrlimit(resource.RLIMIT_AS, (WORKER_ADDRESS_SPACE, WORKER_ADDRESS_SPACE))
            payload = json.dumps(run(case, path)).encode()
            while payload:
                payload = payload[os.write(write_fd, payload):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + WORKER_SECONDS
    try:
        while time.monotonic() < deadline:
            if select.select([read_fd], [], [], 1.0)[0]:
                data = os.read(read_fd, 1 << 16)
                if not data:
                    break
                chunks.append(data)
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    if not text:
        return {"case": case.name, "raised": "worker", "message": f"no answer in {WORKER_SECONDS} s (wait status "
                f"{status})", "codes": []}
    result: dict[str, Any] = json.loads(text)
    return result


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_hostile_file_gets_its_documented_error(case: Case, tmp_path: Path) -> None:
    path = prepare(case, tmp_path)
    before = arm_sentinels(path)
    result = run_in_worker(case, path) if case.action == "history" else run(case, path)
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
        assert as_documented(case, result) != bool(case.known_bug), (case.name, case.known_bug, result)
        db = sandbox / case.name / "db" / "h.tdb"
        strays = [p for p in result["opened"] if not _allowed(p, db)]
        assert not strays, (case.name, strays)
    assert summary["trapped"] == []
    assert summary["peak_rss_bytes"] < PEAK_RSS_LIMIT, summary
