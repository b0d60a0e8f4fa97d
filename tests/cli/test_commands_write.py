"""demo, rm, mv and cp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

import tensordb
from cli.helpers import FIELD, NOISY, POINTS, fails, ok, state
from tensordb.cli.app import main


def test_demo_builds_a_healthy_database(tmp_path: Path) -> None:
    path = tmp_path / "demo.tdb"
    result = CliRunner().invoke(main, ["demo", str(path), "--sims", "3", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "0 array bytes written" in result.output
    with tensordb.open(path, mode="r") as db:
        assert len(db) == 12
        assert all("inflow" in db[name]["data"] and db[name]["reviewed"] is True for name in db)
        stats = db.stats()
        # geometry (points, connectivity, cell types of 5 meshes) is shared by the 4 steps of a simulation
        assert stats["dedup_ratio"] > 1.5
        assert db.check().ok


def test_demo_refuses_an_existing_database(tmp_path: Path) -> None:  # bug 3
    victim = tmp_path / "victim.tdb"
    with tensordb.open(victim) as database:
        database["real"] = {"big": np.random.default_rng(0).random(200_000)}  # lives in the packs folder
    packs = sorted(p.name for p in Path(f"{victim}-packs").iterdir())
    assert packs
    before = state(victim)
    assert fails("demo", victim, "--sims", "2", "--steps", "2") == (
        f"Error: {victim}: already exists; pass --force (force=True in Python) to replace it")
    assert state(victim) == before and sorted(p.name for p in Path(f"{victim}-packs").iterdir()) == packs
    victim.unlink()  # a packs folder alone is somebody's data too
    assert fails("demo", victim, "--sims", "1", "--steps", "1").startswith(f"Error: {victim}-packs: already exists")
    assert not victim.exists()
    ok("demo", victim, "--sims", "1", "--steps", "2", "--force")
    with tensordb.open(victim, mode="r") as database:
        assert len(database) == 2 and database.check().ok


def test_rm_trees_and_nodes(sample: Path) -> None:
    assert ok("rm", sample, "geom", "s1/data/l/1", "s1/data/l/3", "s1/name").stdout.strip() == (
        f"removed 4 item(s) from {sample}")
    with tensordb.open(sample, mode="r") as db:
        assert sorted(db) == ["s1", "sim01", "sim01/step003"]
        assert db["s1"]["/data/l"].load() == [1, None] and "name" not in db["s1"]
        assert db.check().ok
    ok("rm", sample, "sim01", "sim01/data/p")  # a node of a tree removed as well: removed once
    with tensordb.open(sample, mode="r") as db:
        assert sorted(db) == ["s1", "sim01/step003"]


def test_rm_checks_every_address_first(sample: Path) -> None:
    before = state(sample)
    assert fails("rm", sample, "geom", "s1/nothing") == f"Error: {sample}: s1: /nothing: no such path"
    assert fails("rm", sample, "nope") == f"Error: {sample}: no tree named 'nope'"
    assert "cannot delete the root" not in fails("rm", sample, "s1/data/l/9")
    assert state(sample) == before
    assert "Missing argument" in fails("rm", sample, code=2)
    assert "does not exist" in fails("rm", sample.parent / "missing.tdb", "x", code=2)


def test_mv_renames_and_moves_within_and_across_trees(sample: Path) -> None:
    with tensordb.open(sample, mode="r") as db:
        written = db.counters.snapshot()["chunk_bytes_written"]
    assert ok("mv", sample, "s1", "archive/s1").stdout.strip() == "moved s1 to archive/s1"
    ok("mv", sample, "archive/s1/data/points", "archive/s1/data/xyz")
    ok("mv", sample, "archive/s1/data/noisy", "sim01/step003/data/noisy")  # across trees, by reference
    ok("mv", sample, "sim01/step003/data/p", "field")  # a node becomes a new tree
    with tensordb.open(sample, mode="r") as db:
        assert sorted(db) == ["archive/s1", "field", "geom", "sim01", "sim01/step003"]
        np.testing.assert_array_equal(db["archive/s1"]["/data/xyz"][...], POINTS)
        np.testing.assert_array_equal(db["sim01/step003"]["/data/noisy"][...], NOISY)
        np.testing.assert_array_equal(db["field"].root[...], FIELD)
        assert "noisy" not in db["archive/s1"]["data"] and "p" not in db["sim01/step003"]["data"]
        assert db.sql("SELECT count(*) FROM arrays").fetchall() == [(3,)]  # no array was copied
        assert db.check().ok
        assert db.counters.snapshot()["chunk_bytes_written"] == written


def test_mv_across_trees_writes_no_array_bytes(tmp_path: Path) -> None:
    path = tmp_path / "m.tdb"
    with tensordb.open(path) as db:
        db["a"] = {"big": np.random.default_rng(1).random((300, 1000))}
        db["b"] = {"other": 1}
        before = db.counters.snapshot()
        db.mv("a/big", "b/big")
        db.cp("b/big", "c")
        after = db.counters.snapshot()
        assert after["chunk_bytes_written"] == before["chunk_bytes_written"]
        assert after["chunks_written"] == before["chunks_written"]
        assert list(db["a"]) == [] and db["b"]["big"].shape == (300, 1000)
        assert db.sql("SELECT count(*) FROM arrays").fetchall() == [(1,)]


def test_mv_and_cp_refuse_an_existing_destination(sample: Path) -> None:
    before = state(sample)
    assert fails("mv", sample, "s1", "geom") == (
        f"Error: {sample}: 'geom' exists already; pass replace=True (--force) to replace it")
    assert fails("cp", sample, "s1/time", "sim01/step003/time").endswith("exists already; pass replace=True "
                                                                        "(--force) to replace it")
    assert fails("mv", sample, "s1/data", "s1/data/inner") == (
        f"Error: {sample}: cannot move 's1/data' into itself ('s1/data/inner')")
    assert fails("mv", sample, "nope", "x") == f"Error: {sample}: no tree named 'nope'"
    assert fails("mv", sample, "s1/nothing", "x") == f"Error: {sample}: s1: /nothing: no such path"
    assert state(sample) == before
    assert "Missing argument 'DST'" in fails("mv", sample, "s1", code=2)
    ok("cp", sample, "s1/time", "sim01/step003/time", "--force")
    ok("mv", sample, "sim01/step003", "geom", "--force")
    with tensordb.open(sample, mode="r") as db:
        assert db["geom"]["time"] == 51 and "sim01/step003" not in db and db.check().ok


def test_cp_is_by_reference_and_copy_on_write(sample: Path) -> None:
    assert ok("cp", sample, "s1", "s1-copy").stdout.strip() == "copied s1 to s1-copy"
    ok("cp", sample, "s1/data", "sim01/data2")
    with tensordb.open(sample) as db:
        assert db.sql("SELECT count(*) FROM arrays").fetchall() == [(3,)]
        db["s1-copy"]["/data/points"][0] = -1.0
        np.testing.assert_array_equal(db["s1"]["/data/points"][...], POINTS)
        assert db["sim01"]["/data2/l"].load() == [1, 2.5, None, True]
        assert db.check().ok
