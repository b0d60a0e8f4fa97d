"""Simulated power loss at any I/O.

A workload runs with every file operation recorded, with its bytes, in one
ordered log: SQLite's through a recording apsw VFS (the storage hooks' ``sqlite_vfs``),
the pack files' through a recording ``FileOps``. A cut at a random
position of that log rebuilds every file as a power loss there may have left
it: its last synced image plus a random subset, in order, of the writes and
truncations since; files and folders created or removed since the last fsync
of their folder may or may not exist (``iofs.power_cut``). The rebuilt
database must open, hold every transaction acknowledged before the cut (the
one in flight entirely or not at all), and be clean after gc().

With the pack fsync disabled (a test switch), the same harness finds
acknowledged transactions whose pack bytes are gone: it can see the bug it
is there to catch.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tensordb
from crash import iofs, seams, workload
from crash.workload import Model

pytestmark = pytest.mark.slow

VFS_NAME = "tdb-record"
# 21 and 22 compact a pack in gc (a new pack file, a folder fsync, a removal); 12, 15 and 18 roll back
# transactions that wrote pack bytes (truncations).
SEEDS = (21, 22, 12, 15, 18)


@dataclass
class Recording:
    root: str
    base: dict[str, bytes | None]
    ops: list[tuple[Any, ...]]
    models: list[Model]  # models[i]: the state after i acknowledged transactions

    def candidates(self, cut: int) -> list[Model]:
        acked = sum(1 for op in self.ops[:cut] if op[0] == "mark")
        return self.models[acked:acked + 2]


@pytest.fixture(scope="module")
def recorder_vfs() -> Any:
    vfs = iofs.RecordingVFS(VFS_NAME, iofs.Recorder(enabled=False))
    yield vfs
    vfs.unregister()


def record(root: Path, seed: int, vfs: iofs.RecordingVFS, n_ops: int = 25, no_pack_fsync: bool = False) -> Recording:
    """Build a small database, then run ``n_ops`` workload transactions with every I/O recorded."""
    root.mkdir(parents=True, exist_ok=True)
    db_path = str(root / "pl.tdb")
    model = workload.build_base(db_path, seed, 6)
    base = iofs.snapshot_files(str(root))
    recorder = iofs.Recorder()
    vfs.rec = recorder
    saved = seams.arm(planted="no-pack-fsync" if no_pack_fsync else None, files=iofs.RecordingFS(recorder))
    seams.use(sqlite_vfs=vfs.registered_name)
    models = [model]
    try:
        with tensordb.open(db_path) as db:
            for k in range(6, 6 + n_ops):
                op = workload.make_op(seed, k, model)
                workload.apply_db(db, op, model)
                recorder.log("mark", k)  # the commit has returned
                model = workload.apply_model(model, op)
                models.append(model)
    finally:
        seams.restore(saved)
        recorder.enabled = False
    return Recording(str(root), base, recorder.ops, models)


def cut_and_verify(rec: Recording, cut: int, rng: random.Random, workdir: Path) -> list[str]:
    target = workdir / "cut"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    iofs.power_cut(rec.base, rec.ops, cut, rec.root, str(target), rng)
    verdict = workload.verify(str(target / "pl.tdb"), rec.candidates(cut))
    return verdict.problems


def run_cuts(rec: Recording, n: int, seed: int, workdir: Path, stop_at_first: bool = False) -> list[str]:
    """Verify ``n`` cuts at random I/Os.

    Half of them are drawn from every I/O; the other half from the I/Os of
    pack files, syncs and folder changes and the ones just after, where the
    ordering between pack bytes and commits is decided (most I/Os are WAL page
    writes).
    """
    rng = random.Random(seed)
    positions = [*iofs.Recorder(rec.ops).io_positions(), len(rec.ops)]
    ordering = sorted({i + d for i, op in enumerate(rec.ops) for d in (0, 1)
                       if op[0] != "mark" and (op[0] in ("sync", "dirsync", "create", "remove", "mkdir")
                                               or op[1].endswith(".pack"))} & set(positions))
    failures = []
    for i in range(n):
        cut = rng.choice(positions if i % 2 == 0 else ordering)
        problems = cut_and_verify(rec, cut, random.Random(f"{seed}-{i}"), workdir)
        if problems:
            failures.append(f"seed {seed}, cut #{i} before I/O {cut} of {len(rec.ops)} "
                            f"({_describe(rec.ops, cut)}): " + "; ".join(problems))
            if stop_at_first:
                break
    return failures


def _describe(ops: list[tuple[Any, ...]], cut: int) -> str:
    if cut >= len(ops):
        return "after the last one"
    op = ops[cut]
    return f"{op[0]} {os.path.basename(op[1]) if len(op) > 1 and isinstance(op[1], str) else ''}".strip()


@pytest.mark.parametrize("seed", SEEDS)
def test_power_cuts_lose_nothing_acknowledged(seed: int, tmp_path: Path, recorder_vfs: iofs.RecordingVFS,
                                              long_run: bool) -> None:
    rec = record(tmp_path / "rec", seed, recorder_vfs, n_ops=60 if long_run else 25)
    syncs = sum(1 for op in rec.ops if op[0] == "sync")
    assert syncs > 20 and len(rec.ops) > 200, (syncs, len(rec.ops))  # a real workload was recorded
    failures = run_cuts(rec, 1000 if long_run else 100, seed, tmp_path)
    assert not failures, f"{len(failures)} power cuts violated a guarantee:\n" + "\n".join(failures[:10])


def test_power_cuts_find_the_missing_pack_fsync(tmp_path: Path, recorder_vfs: iofs.RecordingVFS) -> None:
    """Without pack fsyncs, acknowledged transactions lose pack bytes at some cuts."""
    rec = record(tmp_path / "rec", SEEDS[0], recorder_vfs, no_pack_fsync=True)
    assert not any(op[0] == "sync" and op[1].endswith(".pack") for op in rec.ops)
    failures = run_cuts(rec, 100, SEEDS[0], tmp_path, stop_at_first=True)
    assert failures, "the power-loss harness did not notice that pack files are never fsynced"
    assert "past the end of the file" in failures[0] or "missing" in failures[0] or "checksum" in failures[0]


def test_power_cuts_find_lost_commits_without_wal_syncs(tmp_path: Path, recorder_vfs: iofs.RecordingVFS) -> None:
    """Why synchronous=FULL: without the WAL fsync at each commit, acknowledged transactions vanish.

    The recording is taken with FULL, then every WAL sync is struck out of it,
    which is what synchronous=NORMAL does in WAL mode (it syncs the WAL only
    at checkpoints): some cuts then lose transactions whose commit returned,
    or leave pages the database needs unwritten.
    """
    rec = record(tmp_path / "rec", SEEDS[0], recorder_vfs)
    rec.ops = [op for op in rec.ops if not (op[0] == "sync" and op[1].endswith("-wal"))]
    failures = run_cuts(rec, 100, SEEDS[0], tmp_path, stop_at_first=True)
    assert failures, "the power-loss harness did not notice commits that were never synced"
