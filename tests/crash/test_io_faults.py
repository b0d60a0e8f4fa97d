"""Injected I/O errors: EIO and ENOSPC on the n-th write, sync or truncation, once or from then on.

SQLite's I/O fails through an apsw VFS (``faults.sqlite_vfs``), pack files'
(and bundles') through ``faults.files``. For every operation of
``scenario.OPERATIONS`` a counting run finds how many I/Os of each kind it
does; then each kind fails at its first, second, middle and last I/O
(every one, or 120 spread over them, with ``--long``), with EIO and with
ENOSPC, once and persistently, and once in a forked writer that is then
killed (the failure is followed by a crash instead of a rollback and a clean
close).

(Compressed sizes vary from run to run, so the number of SQLite page writes
does too: a case whose I/O is not reached is counted, not failed.)

Every operation must succeed or raise :class:`tensordb.StorageError` naming
the file and carrying the errno; after a one-off failure the same handle
goes on working; closing works (or raises a StorageError); the database then
reopens with the state before or after the operation (and the follow-up
write present if it returned), clean after gc().
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb
from crash import harness, iofs, scenario, seams, workload
from crash.scenario import OPERATIONS, Scenario
from tensordb.storage.hooks import FileOps

# apsw reports an injected failure that SQLite handled itself (a best-effort step) as unraisable
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

VFS_NAME = "tdb-fault"
ONCE, PERSISTENT, THEN_CRASH = "once", "from then on", "once, then the process dies"
MODES = [(errno.EIO, ONCE), (errno.ENOSPC, ONCE), (errno.EIO, PERSISTENT), (errno.ENOSPC, PERSISTENT),
         (errno.EIO, THEN_CRASH)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return scenario.build(str(tmp_path_factory.mktemp("scenario")))


@pytest.fixture(scope="module")
def fault_vfs() -> Any:
    vfs = iofs.FaultVFS(VFS_NAME)
    yield vfs
    vfs.unregister()


def _install(vfs: iofs.FaultVFS, rule: iofs.FaultRule) -> None:
    vfs.rule = rule
    seams.use(files=iofs.FaultFS(rule), sqlite_vfs=vfs.registered_name)


def _uninstall() -> None:
    seams.use(files=FileOps(), sqlite_vfs=None)


def count_io(base: Scenario, kind: str, vfs: iofs.FaultVFS, workdir: Path) -> dict[str, int]:
    db_path = base.copy(str(workdir / "count"))
    rule = iofs.FaultRule(armed=False)
    _install(vfs, rule)
    try:
        db = tensordb.open(db_path)
        rule.armed = True
        base.run(db, base.op(kind), str(workdir / "count" / "bundle.tdb"))
        rule.armed = False
        db.close()
    finally:
        _uninstall()
    return dict(rule.counts)


def _storage_error_problems(exc: BaseException, rule: iofs.FaultRule, db_path: str) -> list[str]:
    if not isinstance(exc, tensordb.StorageError):
        return [f"raised {type(exc).__name__} instead of StorageError: {exc}"]
    problems = []
    if exc.errno != rule.err:
        problems.append(f"StorageError errno {exc.errno}, injected {rule.err}: {exc}")
    if os.path.dirname(db_path) not in str(exc):
        problems.append(f"the message does not name the file: {exc}")
    return problems


def run_fault_then_crash(base: Scenario, kind: str, io_kind: str, n: int, err: int, vfs: iofs.FaultVFS,
                         workdir: Path) -> tuple[list[str], str]:
    """One injected failure, after which the process is killed (no rollback of files, no clean close).

    A COMMIT whose WAL sync failed may still be in the WAL: recovery then
    finds it, and the pack bytes it references must still be there.
    """
    case = workdir / "case"
    db_path = base.copy(str(case))
    op = base.op(kind)
    outcome_file = workdir / "outcome.txt"
    outcome_file.unlink(missing_ok=True)

    rule = iofs.FaultRule(kind=io_kind, n=n, err=err, armed=False)

    def body(db: tensordb.Database) -> None:
        rule.armed = True
        try:
            base.run(db, op, str(case / "bundle.tdb"))
            outcome = "ok"
        except tensordb.StorageError:
            outcome = "error"
        except Exception as exc:
            outcome = f"raised {type(exc).__name__} instead of StorageError: {exc}"
        outcome_file.write_text(outcome if rule.fired else "not reached")
        os.kill(os.getpid(), signal.SIGKILL)

    killed, error = harness.run_one(db_path, body, err_path=str(workdir / "err.txt"),
                                    before_open=lambda: _install(vfs, rule))
    outcome = outcome_file.read_text() if outcome_file.exists() else f"no outcome ({error})"
    problems = [] if outcome in ("ok", "error", "not reached") else [outcome]
    if not killed:
        problems.append(f"the writer was not killed: {error}")
    states = [base.after(op)] if outcome == "ok" else [base.model, base.after(op)]
    if kind == "bundle":
        problems += workload.verify_bundle(case / "bundle.tdb", base.model)
    problems += workload.verify(db_path, states).problems
    return problems, outcome if outcome in ("ok", "error", "not reached") else "error"


def run_fault_case(base: Scenario, kind: str, io_kind: str, n: int, err: int, mode: str,
                   vfs: iofs.FaultVFS, workdir: Path) -> tuple[list[str], str]:
    """One injected failure; returns (problems, outcome)."""
    if mode == THEN_CRASH:
        return run_fault_then_crash(base, kind, io_kind, n, err, vfs, workdir)
    persistent = mode == PERSISTENT
    case = workdir / "case"
    db_path = base.copy(str(case))
    op = base.op(kind)
    follow = workload.make_op(scenario.SEED, 2000, base.model, "create")
    rule = iofs.FaultRule(kind=io_kind, n=n, err=err, persistent=persistent, armed=False)
    problems: list[str] = []
    states = [base.after(op)]
    _install(vfs, rule)
    try:
        db = tensordb.open(db_path)
        rule.armed = True
        try:
            base.run(db, op, str(case / "bundle.tdb"))
            outcome = "ok"
        except Exception as exc:
            outcome = "error"
            problems += _storage_error_problems(exc, rule, db_path)
            states = [base.model, base.after(op)]
        if not rule.fired:  # I/O counts vary a little (compressed sizes do): this case did less
            outcome = "not reached"
            rule.armed = False
        # the same handle goes on: after a one-off failure this write must succeed
        try:
            workload.apply_db(db, follow, base.model)
            states = [workload.apply_model(s, follow) for s in states]
        except Exception as exc:
            if not persistent:
                problems.append(f"the handle is unusable after a one-off failure: {type(exc).__name__}: {exc}")
            else:
                problems += _storage_error_problems(exc, rule, db_path)
            states += [workload.apply_model(s, follow) for s in states]
        try:
            db.close()
        except Exception as exc:
            problems += [f"close: {p}" for p in _storage_error_problems(exc, rule, db_path)]
    finally:
        rule.armed = False
        _uninstall()
    if kind == "bundle":
        problems += workload.verify_bundle(case / "bundle.tdb", base.model)
    verdict = workload.verify(db_path, states)
    problems += verdict.problems
    return problems, outcome


@pytest.mark.parametrize("kind", OPERATIONS)
def test_injected_io_errors(base: Scenario, kind: str, fault_vfs: iofs.FaultVFS, tmp_path: Path,
                            long_run: bool) -> None:
    counts = count_io(base, kind, fault_vfs, tmp_path)
    assert counts, "the operation did no I/O"
    failures = []
    outcomes: Counter[str] = Counter()
    for io_kind, total in sorted(counts.items()):
        if long_run:  # every I/O, or 120 spread over them
            ns = sorted({1 + (i * (total - 1)) // 119 for i in range(120)}) if total > 120 else range(1, total + 1)
        else:
            ns = sorted({1, min(2, total), (total + 1) // 2, total})
        for n in ns:
            for err, mode in MODES:
                problems, outcome = run_fault_case(base, kind, io_kind, n, err, mode, fault_vfs, tmp_path)
                outcomes[outcome] += 1
                if problems:
                    failures.append(f"{kind}: {io_kind} #{n} fails with {errno.errorcode[err]} {mode}:\n  "
                                    + "\n  ".join(problems))
    assert not failures, f"{len(failures)} of {sum(outcomes.values())} cases failed ({dict(outcomes)}; " \
                         f"I/O counts {counts}):\n" + "\n".join(failures[:12])
    assert outcomes["error"], "no injected failure ever surfaced as an error"
    assert outcomes["not reached"] <= sum(outcomes.values()) // 4, dict(outcomes)


def test_a_failed_commit_may_still_be_committed(base: Scenario, fault_vfs: iofs.FaultVFS, tmp_path: Path) -> None:
    """The WAL sync of a COMMIT fails, then the process dies: recovery finds the commit anyway.

    tensordb cannot know which way a failed COMMIT went, so it never undoes
    the pack bytes such a commit references: the recovered transaction reads
    back whole.
    """
    counts = count_io(base, "create", fault_vfs, tmp_path)
    commit_sync = counts["sqlite-sync"]  # the last sync of the operation is its COMMIT's
    problems, outcome = run_fault_then_crash(base, "create", "sqlite-sync", commit_sync, errno.EIO, fault_vfs,
                                             tmp_path)
    assert outcome == "error" and not problems, problems
    op = base.op("create")
    verdict = workload.verify(str(tmp_path / "case" / base.db_name), [base.after(op)])
    assert verdict.ok, verdict.problems


def test_a_transaction_sqlite_rolled_back_cannot_go_on(fault_vfs: iofs.FaultVFS, tmp_path: Path) -> None:
    """After an I/O error SQLite may roll the whole transaction back on its own.

    The block that catches the error must not carry on in autocommit mode
    (each statement committing alone, without the pack flush before it): the
    database refuses statements until the outermost block exits, and that
    exit raises too. Nothing of the transaction is kept.
    """
    path = tmp_path / "t.tdb"
    with tensordb.open(path) as db:
        db["keep"] = {"x": 1}
    rule = iofs.FaultRule(kind="sqlite-write", n=1, armed=False)
    _install(fault_vfs, rule)
    db = tensordb.open(path, inline_threshold=1 << 20)  # the arrays' bytes go through SQLite's cache
    rng = np.random.default_rng(3)
    try:
        rule.armed = True
        with pytest.raises(tensordb.StorageError, match="rolled back after an I/O error"):
            with db.transaction():
                db["before"] = {"x": 2}
                for i in range(200):  # enough pages to spill SQLite's cache before the commit
                    try:
                        db[f"x{i}"] = {"a": rng.integers(0, 2**63, 3000, dtype=np.uint64)}
                    except tensordb.StorageError:
                        break
                else:
                    pytest.fail("no write failed")
                with pytest.raises(tensordb.StorageError, match="leave the transaction block"):
                    db["after"] = {"x": 3}
        rule.armed = False
        assert sorted(db) == ["keep"]
        db["next"] = 4  # out of the block, the database works again
    finally:
        rule.armed = False
        db.close()
        _uninstall()
    assert workload.verify(str(path), [{"keep": {"x": 1}, "next": 4}]).ok


def _pack_of(db: tensordb.Database, tree: str) -> set[str]:
    rows = db.sql("SELECT DISTINCT p.name FROM nodes n JOIN chunk_ref r ON r.array_id = n.array_id "
                  "JOIN chunk c ON c.chunk_id = r.chunk_id JOIN pack p ON p.pack_id = c.pack_id WHERE n.tree = ?",
                  (tree,))
    return {name for (name,) in rows}


def test_a_pack_whose_fsync_failed_is_never_written_again(tmp_path: Path) -> None:
    """After a failed fsync the kernel may have dropped the pages it could not write: the pack is poisoned."""
    rng = np.random.default_rng(4)
    path = tmp_path / "p.tdb"
    with tensordb.open(path) as db:
        db["first"] = {"big": rng.integers(0, 2**63, 20_000, dtype=np.uint64)}
        (poisoned,) = _pack_of(db, "first")
    rule = iofs.FaultRule(kind="pack-fsync", n=1, armed=False)
    seams.use(files=iofs.FaultFS(rule))
    try:
        with tensordb.open(path) as db:
            rule.armed = True
            with pytest.raises(tensordb.StorageError, match="fsync failed") as raised:
                db["lost"] = {"big": rng.integers(0, 2**63, 20_000, dtype=np.uint64)}
            assert raised.value.errno == errno.EIO and poisoned in str(raised.value)
            size = os.path.getsize(os.path.join(db.pack_dir, poisoned))
            for name in ("second", "third"):
                db[name] = {"big": rng.integers(0, 2**63, 20_000, dtype=np.uint64)}
                assert poisoned not in _pack_of(db, name)
            assert os.path.getsize(os.path.join(db.pack_dir, poisoned)) == size  # never touched again
        with tensordb.open(path) as db:  # a later process: the unreferenced tail keeps writers away
            db["fourth"] = {"big": rng.integers(0, 2**63, 20_000, dtype=np.uint64)}
            assert poisoned not in _pack_of(db, "fourth")
    finally:
        seams.use(files=FileOps())
    with tensordb.open(path) as db:
        assert sorted(db) == ["first", "fourth", "second", "third"]
        assert db.check().ok
        db.gc()  # cuts the failed transaction's bytes off the poisoned pack
        assert db.check().findings == []
