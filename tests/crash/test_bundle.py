"""bundle(): one self-contained file, written through a temporary file, fsync and rename.

Crashes at every step of bundle() are in test_crash_points.py (operation
``bundle``): the target is then absent or complete.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import tensordb
from crash import harness, iofs, scenario, seams, workload
from crash.scenario import Scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return scenario.build(str(tmp_path_factory.mktemp("scenario")))


def test_bundle_is_one_file_that_opens_from_a_read_only_folder(base: Scenario, tmp_path: Path) -> None:
    db_path = base.copy(str(tmp_path / "src"))
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "share.tdb"
    with tensordb.open(db_path) as db:
        assert db.stats()["pack_bytes"] > 0
        db.bundle(target)
    assert sorted(os.listdir(shared)) == ["share.tdb"]  # no sidecar, no journal, no leftover
    shared.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        with tensordb.open(target, mode="r") as db:
            report = db.check()
            assert report.ok and report.findings == [], str(report)
            assert report.chunks_checked > 0
            stats = db.stats()
            assert stats["pack_bytes"] == 0 and stats["inline_bytes"] == stats["stored_bytes"] > 0
            actual = {name: db[name].load() for name in db}
        assert workload.differs(actual, base.model) is None
        assert sorted(os.listdir(shared)) == ["share.tdb"]  # reading created nothing either
    finally:
        shared.chmod(0o755)
    assert workload.verify_bundle(target, base.model) == []


def test_bundle_fsyncs_then_renames_then_fsyncs_the_folder(base: Scenario, tmp_path: Path) -> None:
    db_path = base.copy(str(tmp_path / "src"))
    target = tmp_path / "out" / "b.tdb"
    target.parent.mkdir()
    recorder = iofs.Recorder()
    seams.use(files=iofs.RecordingFS(recorder))
    with tensordb.open(db_path) as db:
        db.bundle(target)
    ops = [op for op in recorder.ops if "tmp-bundle" in op[1] or str(target.parent) == op[1]]
    tmp = str(target) + ".tmp-bundle"
    assert [op[0] for op in ops] == ["sync", "rename", "dirsync"], ops
    assert ops[0][1] == tmp and ops[1][1:] == (tmp, str(target)) and ops[2][1] == str(target.parent)


def test_a_bundle_interrupted_before_its_rename_leaves_no_target(base: Scenario, tmp_path: Path) -> None:
    db_path = base.copy(str(tmp_path / "src"))
    target = tmp_path / "b.tdb"
    killed, error = harness.run_one(db_path, lambda db: db.bundle(target),
                                    crash_at="bundle-fsync:1")
    assert killed, error
    assert not target.exists()
    assert Path(str(target) + ".tmp-bundle").exists()  # complete, never renamed
    with tensordb.open(db_path) as db:  # the next bundle replaces the leftover
        db.bundle(target)
    assert not Path(str(target) + ".tmp-bundle").exists()
    assert workload.verify_bundle(target, base.model) == []
    assert workload.verify(db_path, [base.model]).ok


def test_bundle_refuses_an_existing_target(base: Scenario, tmp_path: Path) -> None:
    db_path = base.copy(str(tmp_path / "src"))
    target = tmp_path / "b.tdb"
    target.write_bytes(b"keep me")
    with tensordb.open(db_path) as db, pytest.raises(FileExistsError):
        db.bundle(target)
    assert target.read_bytes() == b"keep me"

