"""A small database in a known state, and one operation of each kind to run against it.

The crash-point and I/O-fault suites copy the database for each case, run
one operation with a fault armed, and verify the copy against the model
before and after the operation. The state is chosen so that every step of
every protocol is reached: trees with inline and pack arrays, a tree sharing
another's arrays (slice writes copy on write), and enough deleted trees that
gc() compacts the pack (and creates a new one).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

import tensordb
from crash import workload
from crash.workload import BIG_CHUNK, Model, Op

__all__ = ["Scenario", "build", "OPERATIONS", "SINGLE_TRANSACTION", "PRE_COMMIT", "POST_COMMIT"]

SEED = 20240611
#: The operations every crash point and every injected fault is tried with.
OPERATIONS = ("create", "share", "slice", "move", "rename", "delete", "gc", "multi", "rollback", "bundle",
              "snapshot", "restore", "expire")
#: Operations that are a single write transaction (the crash point says before or after).
SINGLE_TRANSACTION = frozenset({"create", "share", "slice", "move", "rename", "delete", "multi", "snapshot",
                                "restore"})
#: Crash points reached before the commit of the transaction they belong to, and after it.
PRE_COMMIT = frozenset({"begin", "compress", "pack-create", "pack-write", "chunk-row", "rows-written",
                        "pack-fsync", "dir-fsync", "before-commit", "rollback", "compact-copy"})
POST_COMMIT = frozenset({"after-commit", "compact-commit", "compact-unlink", "trim"})

@dataclass
class Scenario:
    """The base database (a folder to copy) and its model."""

    folder: str
    model: Model
    shared: str  # a tree whose arrays another tree references

    @property
    def db_name(self) -> str:
        return "scenario.tdb"

    def copy(self, dest: str) -> str:
        """A fresh copy of the base database under ``dest``; returns the database path."""
        if os.path.exists(dest):
            shutil.rmtree(dest)
        shutil.copytree(self.folder, dest)
        return os.path.join(dest, self.db_name)

    def op(self, kind: str) -> Op:
        """The operation of this kind run against the base state."""
        k = 1000
        if kind == "slice":  # both chunks of an array another tree shares: two copy-on-write chunk writes
            rng = np.random.default_rng([SEED, k])
            start, stop = BIG_CHUNK - 700, BIG_CHUNK + 700
            return Op(k, "slice", {"name": self.shared, "which": "big", "start": start, "stop": stop,
                                   "values": rng.integers(0, 2**63, stop - start, dtype=np.uint64)})
        if kind == "bundle":
            return Op(k, "bundle")
        live = sorted(self.model.snaps)
        if kind == "snapshot":  # tagged in the same transaction
            return Op(k, "snapshot", {"message": "crash", "tag": "crash", "id": live[-1] + 1})
        if kind == "restore":  # the whole database to the oldest snapshot: every kind of tree change undone
            return Op(k, "restore", {"snapshot": live[0], "trees": None})
        if kind == "expire":  # forgets the oldest snapshot, then gc frees what only it held
            return Op(k, "expire", {"before": live[-1], "gc": True})
        return workload.make_op(SEED, k, self.model, kind)

    def run(self, db: tensordb.Database, op: Op, bundle_to: str | None = None) -> None:
        if op.kind == "bundle":
            assert bundle_to is not None
            db.bundle(bundle_to)
        else:
            workload.apply_db(db, op, self.model)

    def after(self, op: Op) -> Model:
        return self.model if op.kind == "bundle" else workload.apply_model(self.model, op)


def build(folder: str) -> Scenario:
    """Build the base database in ``folder``.

    Steps: six trees and one sharing the arrays of the first; four deleted
    and gc() (the pack is compacted into a second one); a create killed just
    before its COMMIT (orphan bytes at the end of that pack, so the next
    writer starts a third pack); three trees, two of them deleted. A gc()
    then compacts the third pack and cuts the orphan tail of the second.
    Then three snapshots (the second tagged) with slices, a delete, a move
    and a create between and after them.
    """
    from crash import harness

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "scenario.tdb")
    model = Model()
    k = 0

    def step(db: tensordb.Database, kind: str, **args: Any) -> Op:
        nonlocal model, k
        op = Op(k, kind, args) if args else workload.make_op(SEED, k, model, kind)
        workload.apply_db(db, op, model)
        model = workload.apply_model(model, op)
        k += 1
        return op

    with tensordb.open(path, mode="w") as db:
        first = step(db, "create").args["name"]
        for _ in range(5):
            step(db, "create")
        step(db, "share", name="s_shared", src=first, uid=-1, vals=[1, 2, 3])
        for name in [n for n in sorted(model) if n not in (first, "s_shared")][:4]:
            step(db, "delete", name=name)
        db.gc()
    crashed = workload.make_op(SEED, 999, model, "create")
    killed, error = harness.run_one(path, lambda db: workload.apply_db(db, crashed, model),
                                    crash_at="before-commit:1")
    assert killed, error
    with tensordb.open(path) as db:
        late = [step(db, "create").args["name"] for _ in range(3)]
        for name in late[:2]:
            step(db, "delete", name=name)
        # nothing was appended after the orphan bytes: the late trees went to a new pack
        assert sorted(os.listdir(db.pack_dir)) == ["00000002.pack", "00000003.pack"], os.listdir(db.pack_dir)
        # history: three snapshots (the second tagged) with changes between them; the tree
        # deleted after the first is kept by it alone
        step(db, "snapshot", message="scenario 1", tag=None, id=1)
        step(db, "slice")
        step(db, "delete", name=[n for n in sorted(model) if n not in (first, "s_shared")][0])
        step(db, "snapshot", message="scenario 2", tag="keep", id=2)
        step(db, "slice")
        step(db, "move")
        step(db, "snapshot", message="scenario 3", tag=None, id=3)
        step(db, "create")
    return Scenario(folder, model, first)


def describe(**where: Any) -> str:
    return ", ".join(f"{key}={value}" for key, value in where.items())
