"""Durability ordering, read off the recorded I/O of real runs.

* Pack bytes are written and fsynced, and the pack folder fsynced when a pack
  was created, before the SQLite commit that references them: at every sync
  of the WAL (the moment a commit becomes durable) no pack file holds an
  unsynced write and every new pack file's folder entry is synced.
* Compaction deletes an old pack only after the commit that stops
  referencing it, and only once readers have moved past that commit.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from strategies import assert_tree_equal

import tensordb
from crash import iofs, seams, workload

pytestmark = pytest.mark.slow

VFS_NAME = "tdb-record-ordering"


@pytest.fixture(scope="module")
def vfs() -> Any:
    recording = iofs.RecordingVFS(VFS_NAME, iofs.Recorder(enabled=False))
    yield recording
    recording.unregister()


def run_recorded(db_path: Path, vfs: iofs.RecordingVFS, body: Any, planted: str | None = None
                 ) -> list[tuple[Any, ...]]:
    recorder = iofs.Recorder()
    vfs.rec = recorder
    previous = seams.arm(planted=planted, files=iofs.RecordingFS(recorder))
    seams.use(sqlite_vfs=vfs.registered_name)
    try:
        with tensordb.open(db_path) as db:
            body(db)
    finally:
        seams.restore(previous)
        recorder.enabled = False
    return recorder.ops


def ordering_violations(ops: list[tuple[Any, ...]]) -> list[str]:
    """Every WAL sync at which a pack write is not yet synced, or a new pack's folder entry is not."""
    unsynced: dict[str, int] = {}  # pack file -> index of its oldest unsynced write
    undurable: dict[str, int] = {}  # new pack file -> index of its creation
    violations = []
    for i, op in enumerate(ops):
        kind = op[0]
        if kind == "mark":
            continue
        path = op[1]
        if path.endswith(".pack"):
            if kind == "write":
                unsynced.setdefault(path, i)
            elif kind == "sync":
                unsynced.pop(path, None)
            elif kind == "create":
                undurable[path] = i
            elif kind == "remove":
                unsynced.pop(path, None)
                undurable.pop(path, None)
        elif kind == "dirsync":
            for created in [p for p in undurable if os.path.dirname(p) == path]:
                del undurable[created]
        elif kind == "sync" and path.endswith("-wal"):
            for pack, since in unsynced.items():
                violations.append(f"WAL sync #{i}: {os.path.basename(pack)} written at #{since}, not fsynced")
            for pack, since in undurable.items():
                violations.append(f"WAL sync #{i}: {os.path.basename(pack)} created at #{since}, folder not fsynced")
    return violations


def _workload(db: tensordb.Database) -> None:
    model: workload.Model = {}
    for k in range(40):
        op = workload.make_op(22, k, model)
        workload.apply_db(db, op, model)
        model = workload.apply_model(model, op)


def test_pack_bytes_are_durable_before_each_commit(tmp_path: Path, vfs: iofs.RecordingVFS) -> None:
    ops = run_recorded(tmp_path / "o.tdb", vfs, _workload)
    kinds = {(op[0], op[1].rsplit(".", 1)[-1][-4:]) for op in ops if op[0] != "mark"}
    assert {("write", "pack"), ("sync", "pack"), ("create", "pack"), ("sync", "-wal")} <= kinds
    assert ordering_violations(ops) == []


def test_the_ordering_check_sees_the_planted_bug(tmp_path: Path, vfs: iofs.RecordingVFS) -> None:
    ops = run_recorded(tmp_path / "o.tdb", vfs, _workload, planted="commit-before-pack-flush")
    assert ordering_violations(ops)


def _sparse_pack(db: tensordb.Database) -> str:
    """Trees whose deletion leaves the only pack mostly dead; returns the pack's name."""
    rng = np.random.default_rng(5)
    for i in range(4):
        db[f"t{i}"] = {"big": rng.integers(0, 2**63, 20_000, dtype=np.uint64), "i": i}
    for i in range(3):
        del db[f"t{i}"]
    (name,) = os.listdir(db.pack_dir)
    return name


def test_compaction_deletes_the_old_pack_after_its_commit(tmp_path: Path, vfs: iofs.RecordingVFS) -> None:
    def body(db: tensordb.Database) -> None:
        old = _sparse_pack(db)
        assert db.gc()["packs_compacted"] == 1
        assert old not in os.listdir(db.pack_dir)

    ops = run_recorded(tmp_path / "o.tdb", vfs, body)
    removals = [i for i, op in enumerate(ops) if op[0] == "remove" and op[1].endswith(".pack")]
    assert len(removals) == 1
    copies = [i for i, op in enumerate(ops) if op[0] == "write" and op[1].endswith(".pack")]
    commit_syncs = [i for i, op in enumerate(ops) if op[0] == "sync" and op[1].endswith("-wal")]
    # the compaction copied, then committed (a WAL sync), and only then removed the old pack
    last_copy = max(i for i in copies if i < removals[0])
    assert any(last_copy < i < removals[0] for i in commit_syncs)
    assert ordering_violations(ops) == []


def test_gc_waits_for_readers_before_deleting_packs(tmp_path: Path) -> None:
    """A reader in the middle of a snapshot still finds every pack its snapshot references.

    An open SQL cursor keeps its read snapshot; gc() commits, then waits for
    that snapshot to end before deleting the pack it compacted away.
    """
    path = tmp_path / "r.tdb"
    with tensordb.open(path) as db:
        old = _sparse_pack(db)
        expected = db["t3"].load()
    writer = tensordb.open(path)
    reader = tensordb.open(path, mode="r")
    try:
        rows = iter(reader.sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) "
                               "SELECT x, path FROM c, nodes"))
        next(rows)  # the cursor is open: the reader's snapshot predates gc
        done = threading.Event()
        thread = threading.Thread(target=lambda: (writer.gc(), done.set()))
        thread.start()
        time.sleep(0.5)
        assert not done.is_set()  # committed, now waiting for the reader
        assert old in os.listdir(writer.pack_dir)
        assert_tree_equal(reader["t3"].load(), expected)  # the old pack, in the old snapshot
        for _ in rows:  # the cursor ends: so does the snapshot
            pass
        thread.join(timeout=30)
        assert done.is_set()
        assert old not in os.listdir(writer.pack_dir)
        assert_tree_equal(reader["t3"].load(), expected)  # the new pack, in a new snapshot
        assert writer.check().findings == []
    finally:
        reader.close()
        writer.close()


def test_a_savepoint_that_created_a_pack_rolls_back_alone(tmp_path: Path) -> None:
    """A nested block that started a new pack file rolls back without breaking its outer block.

    The pack row is gone with the savepoint, so the file is deleted and the
    outer block's next pack write starts a pack of its own.
    """
    rng = np.random.default_rng(8)
    big = rng.integers(0, 2**63, 20_000, dtype=np.uint64)
    with tensordb.open(tmp_path / "s.tdb") as db:
        with db.transaction():
            db["keep"] = {"x": 1}
            with pytest.raises(RuntimeError):
                with db.transaction():
                    db["doomed"] = {"big": rng.integers(0, 2**63, 20_000, dtype=np.uint64)}
                    raise RuntimeError("roll this part back")
            db["kept"] = {"big": big}
        assert sorted(db) == ["keep", "kept"]
        np.testing.assert_array_equal(db["kept"]["/big"][...], big)
        report = db.check()
        assert report.findings == [], str(report)
        assert len(os.listdir(db.pack_dir)) == 1


def test_gc_inside_a_transaction_that_wrote_to_the_pack_it_compacts(tmp_path: Path) -> None:
    """gc() nested in a transaction may compact the pack that transaction just wrote to."""
    rng = np.random.default_rng(9)
    with tensordb.open(tmp_path / "n.tdb") as db:
        old = _sparse_pack(db)
        fresh = rng.integers(0, 2**63, 20_000, dtype=np.uint64)
        with db.transaction():
            db["fresh"] = {"big": fresh}
            assert db.gc()["packs_compacted"] == 1
        assert old not in os.listdir(db.pack_dir)
        np.testing.assert_array_equal(db["fresh"]["/big"][...], fresh)
        report = db.check()
        assert report.findings == [], str(report)
