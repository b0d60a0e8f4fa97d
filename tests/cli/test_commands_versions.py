"""snapshot, log, tag, restore, expire; --at on the readers; diff --from/--to; bundle --history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tensordb
from cli.helpers import FIELD, fails, ok, run, table


@pytest.fixture
def history(sample: Path) -> Path:
    """The sample at snapshot 1 (tagged "raw"); then sim01/step003 changed and geom removed, as snapshot 2."""
    ok("snapshot", sample, "-m", "raw import", "--tag", "raw")
    with tensordb.open(sample) as db:
        db["sim01/step003"]["time"] = 4
        db["sim01/step003"]["/data/p"][0:5] = 0.0
        del db["geom"]
    ok("snapshot", sample, "-m", "cleaned")
    return sample


def test_snapshot_and_log(history: Path) -> None:
    rows = table(ok("log", history).stdout)
    assert [(r[0], r[2], r[3]) for r in rows] == [("2", "", "cleaned"), ("1", "raw", "raw import")]
    as_json = json.loads(ok("log", history, "--format", "json").stdout)
    assert [s["id"] for s in as_json] == [2, 1] and as_json[1]["tags"] == "raw"
    assert "snapshot 3 (x): third" in ok("snapshot", history, "-m", "third", "--tag", "x").stdout


def test_log_of_a_database_without_history(sample: Path) -> None:
    assert "no snapshots" in ok("log", sample).stdout


def test_tag_names_the_latest_or_a_given_snapshot_and_can_be_deleted(history: Path) -> None:
    assert ok("tag", history, "latest").stdout.strip() == "tagged snapshot 2 latest"
    assert ok("tag", history, "first", "1").stdout.strip() == "tagged snapshot 1 first"
    assert "already exists" in fails("tag", history, "raw")
    assert "no snapshot or tag '9'" in fails("tag", history, "nine", "9")
    ok("tag", history, "first", "--delete")
    assert "no tag named 'first'" in fails("tag", history, "first", "--delete")
    with tensordb.open(history, mode="r") as db:
        assert sorted(db.tags()) == ["latest", "raw"]


@pytest.mark.parametrize("command", [["ls"], ["tree", "sim01/step003"], ["show", "sim01/step003/time"],
                                     ["sql", "SELECT count(*) FROM trees"]])
def test_readers_take_at(history: Path, command: list[str]) -> None:
    now, then = ok(*command[:1], history, *command[1:]).stdout, ok(*command[:1], history, *command[1:],
                                                                      "--at", "raw").stdout
    assert now != then
    assert ok(*command[:1], history, *command[1:], "--at", "1").stdout == then


def test_at_shows_the_old_values(history: Path) -> None:
    assert ok("show", history, "sim01/step003/time", "--at", "raw").stdout.strip() == "3"
    assert "geom" in ok("ls", history, "--at", "raw").stdout and "geom" not in ok("ls", history).stdout
    shown = ok("show", history, "sim01/step003/data/p", "--slice", "0:3", "--at", "raw").stdout
    assert shown.split() == [str(v) for v in FIELD[:3]] or "0." not in shown.split()[0]


def test_an_unknown_snapshot_is_a_usage_error(history: Path) -> None:
    assert "--at" in fails("ls", history, "--at", "nope", code=2)


def test_export_at_a_snapshot(history: Path, tmp_path: Path) -> None:
    ok("export", history, "geom", tmp_path / "geom.json", "--at", "raw")
    assert (tmp_path / "geom.json").exists()
    assert "no tree named 'geom'" in fails("export", history, "geom", tmp_path / "now.json")


def test_diff_from_a_snapshot(history: Path) -> None:
    result = run("diff", history, "--from", "raw")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["- geom: tree", "~ sim01/step003/data/p: array (50,) float64 -> array "
                                          "(50,) float64 (values differ)", "~ sim01/step003/time: int 3 -> int 4"]
    rows = json.loads(run("diff", history, "--from", "raw", "--to", "2", "--format", "json").stdout)
    assert [(r["tree"], r["path"], r["change"]) for r in rows] == [
        ("geom", "", "removed"), ("sim01/step003", "/data/p", "changed"), ("sim01/step003", "/time", "changed")]
    assert run("diff", history, "--from", "2").exit_code == 0


@pytest.mark.parametrize("arguments", [[], ["s1"], ["s1", "geom", "--from", "raw"], ["--to", "raw"]])
def test_diff_needs_two_addresses_or_from(history: Path, arguments: list[str]) -> None:
    assert "two addresses, or --from" in fails("diff", history, *arguments, code=2)


def test_diff_of_an_unknown_snapshot_exits_2(history: Path) -> None:
    result = run("diff", history, "--from", "nope")
    assert result.exit_code == 2 and "no snapshot or tag 'nope'" in result.stderr


def test_restore_some_trees_then_everything(history: Path) -> None:
    assert ok("restore", history, "raw", "--trees", "sim*").stdout.strip() == \
        "restored 1 tree(s) to snapshot 1: sim01/step003"
    with tensordb.open(history, mode="r") as db:
        assert db["sim01/step003"]["time"] == 3 and "geom" not in db
    assert "restored 1 tree(s) to snapshot 1: geom" in ok("restore", history, "1").stdout
    assert run("diff", history, "--from", "raw").exit_code == 0
    assert "no snapshot or tag 'nope'" in fails("restore", history, "nope")


def test_expire_then_gc_frees_what_only_old_snapshots_held(history: Path) -> None:
    assert "forgot 0 snapshot(s)" in ok("expire", history, "--before", "2").stdout  # "raw" is tagged
    ok("tag", history, "raw", "--delete")
    assert "forgot 1 snapshot(s)" in ok("expire", history, "--before", "2").stdout
    freed = dict(table(ok("gc", history).stdout))
    assert int(freed["arrays_removed"]) >= 1
    ok("check", history)
    assert [r[0] for r in table(ok("log", history).stdout)] == ["2"]


def test_bundle_history_is_asked_for(history: Path, tmp_path: Path) -> None:
    ok("bundle", history, tmp_path / "now.tdb")
    ok("bundle", history, tmp_path / "all.tdb", "--history")
    with tensordb.open(tmp_path / "now.tdb", mode="r") as now, tensordb.open(tmp_path / "all.tdb", mode="r") as old:
        assert now.history() == [] and [s.id for s in old.history()] == [2, 1]
        with old.at("raw") as raw:
            np.testing.assert_array_equal(raw["sim01/step003"]["/data/p"][:], FIELD)
            assert "geom" in raw
