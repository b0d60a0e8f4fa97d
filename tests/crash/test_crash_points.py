"""Deterministic crash points: every step of the write, gc, compaction and bundle protocols.

For each operation of ``scenario.OPERATIONS``, a first forked run counts how
often each crash point is reached; then, for every point and every hit
1..3 (1..6 with ``--long``), a forked writer runs the operation on a fresh
copy of the scenario database with that crash point armed (``seams.arm``)
and dies there (SIGKILL). The copy is verified twice: as the crash left it,
and after every pack change that was not yet durable is undone (the crash
was also a power loss for pack files). Points before the commit must leave
the state before the operation, points after it the state after it; gc()
leaves a clean database either way; a bundle is either absent or complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tensordb
from crash import harness, iofs, scenario, seams, workload
from crash.scenario import OPERATIONS, POST_COMMIT, PRE_COMMIT, SINGLE_TRANSACTION, Scenario
from tensordb.storage.hooks import TRACE_STEPS

pytestmark = pytest.mark.slow

ALL_POINTS = ",".join(f"{name}:{10**9}" for name in TRACE_STEPS)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return scenario.build(str(tmp_path_factory.mktemp("scenario")))


def count_hits(base: Scenario, kind: str, workdir: Path) -> dict[str, int]:
    """How often each crash point is reached by one operation on the scenario database."""
    db_path = base.copy(str(workdir / "count"))
    out = workdir / "hits.json"
    op = base.op(kind)

    def body(db: tensordb.Database) -> None:
        base.run(db, op, str(workdir / "count" / "bundle.tdb"))
        out.write_text(json.dumps(seams.hits()))

    killed, error = harness.run_one(db_path, body, crash_at=ALL_POINTS,
                                    err_path=str(workdir / "err.txt"))
    assert not killed and not error, error
    return {name: n for name, n in json.loads(out.read_text()).items() if n}


def run_case(base: Scenario, kind: str, point: str, hit: int, workdir: Path,
             planted: str | None = None) -> list[str]:
    """Crash ``kind`` at the ``hit``-th ``point``; return every problem found (empty: the case passes)."""
    case = workdir / "case"
    db_path = base.copy(str(case))
    journal = workdir / "journal.jsonl"
    journal.unlink(missing_ok=True)
    op = base.op(kind)
    bundle = case / "bundle.tdb"
    killed, error = harness.run_one(
        db_path, lambda db: base.run(db, op, str(bundle)),
        crash_at=f"{point}:{hit}", planted=planted, journal=str(journal),
        err_path=str(workdir / "err.txt"))
    if not killed:
        return [f"the crash point was not reached ({error or 'the operation completed'})"]
    before, after = base.model, base.after(op)
    if kind in SINGLE_TRANSACTION and point in PRE_COMMIT:
        allowed = [before]
    elif kind in SINGLE_TRANSACTION and point in POST_COMMIT:
        allowed = [after]
    else:
        allowed = [before, after]
    problems = []
    plain = workdir / "plain"
    shutil.rmtree(plain, ignore_errors=True)
    shutil.copytree(case, plain)
    for label, folder in (("as the crash left it", plain), ("unsynced pack bytes lost", case)):
        if folder == case:
            iofs.lose_unsynced(str(journal))
        if kind == "bundle":
            problems += [f"{label}: {p}" for p in workload.verify_bundle(folder / "bundle.tdb", before)]
        verdict = workload.verify(str(folder / base.db_name), allowed)
        problems += [f"{label}: {p}" for p in verdict.problems]
    return problems


@pytest.mark.parametrize("kind", OPERATIONS)
def test_every_crash_point(base: Scenario, kind: str, tmp_path: Path, long_run: bool) -> None:
    hits = count_hits(base, kind, tmp_path)
    assert hits.get("begin" if kind != "bundle" else "bundle-copy"), hits
    max_hit = 6 if long_run else 3
    failures = []
    cases = 0
    for point, reached in sorted(hits.items()):
        for hit in range(1, min(reached, max_hit) + 1):
            cases += 1
            problems = run_case(base, kind, point, hit, tmp_path)
            if problems:
                failures.append(f"{kind} killed at {point}:{hit}:\n  " + "\n  ".join(problems))
    assert not failures, f"{len(failures)} of {cases} crash cases failed:\n" + "\n".join(failures)


def test_every_protocol_step_is_reached(base: Scenario, tmp_path: Path) -> None:
    """Together the operations reach every crash point (so none is dead code)."""
    reached: set[str] = set()
    for kind in OPERATIONS:
        reached |= set(count_hits(base, kind, tmp_path))
    assert reached == set(TRACE_STEPS)


def test_a_crash_point_catches_the_planted_ordering_bug(base: Scenario, tmp_path: Path) -> None:
    """With COMMIT before the pack fsync, dying right after COMMIT loses committed pack bytes."""
    problems = run_case(base, "create", "after-commit", 1, tmp_path, planted="commit-before-pack-flush")
    assert any("unsynced pack bytes lost" in p for p in problems), problems
    assert not any("as the crash left it" in p for p in problems), problems  # SIGKILL alone keeps the page cache
    assert run_case(base, "create", "after-commit", 1, tmp_path) == []  # the real protocol passes


def test_a_worker_interpreter_arms_a_crash_point(tmp_path: Path) -> None:
    """A fresh interpreter that arms a crash point through the test-side module dies with SIGKILL there."""
    code = (
        "import numpy as np, tensordb\n"
        "from crash import seams\n"
        "seams.arm('after-commit:2')\n"
        "db = tensordb.open('t.tdb')\n"
        "db['a'] = {'x': np.arange(10)}\n"
        "db['b'] = {'x': np.arange(10)}\n"
    )
    tests = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tensordb.__file__).resolve().parent.parent),
                                                        str(tests)])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    with tensordb.open(tmp_path / "t.tdb", mode="r") as db:
        assert sorted(db) == ["a", "b"]  # the second commit had returned
        assert db.check().ok


def test_an_unknown_crash_point_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown crash point 'no-such-step'"):
        seams.parse_crash_points("no-such-step:1")
