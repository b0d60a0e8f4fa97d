"""The command line: every command through CliRunner (content and error paths), help, README, one real subprocess."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

import tensordb
from tensordb.arrays.html import human_size
from tensordb.cli import main, parse_slice
from tensordb.storage import schema

README = Path(__file__).resolve().parent.parent / "README.md"
FIXTURE = Path(__file__).resolve().parent.parent / "examples" / "seed-example"
FIXTURE_TREE = "bm01-flow-over-cylinder-sample037_510"
COMMANDS = {"demo", "import", "export", "ls", "tree", "show", "sql", "stats", "gc", "check", "bundle", "rm", "mv", "cp",
            "diff"}

POINTS = np.arange(300, dtype="f4").reshape(100, 3)
FIELD = np.linspace(-1.0, 1.0, 50)
NOISY = np.array([1.5, np.nan, -2.0, 4.0, np.nan, 0.25] * 7, dtype="f4")


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: Any) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def fails(*args: Any, code: int = 1) -> str:
    """Run a command that must fail; return its one-line error (stderr), checked to have no traceback.

    Usage errors (code 2: a bad option value, a missing argument) are click's: usage, hint, then the error line.
    """
    result = run(*args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    if code == 2:
        assert lines[0].startswith("Usage: ") and lines[-1].startswith("Error: "), result.stderr
        return lines[-1]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def table(output: str) -> list[list[str]]:
    """The body rows of a rich table printed without colours."""
    return [[cell.strip() for cell in line.split("│")] for line in output.splitlines() if "│" in line]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A database with a dict tree, a tree named by a prefix of another's name, and a shared array."""
    path = tmp_path / "s.tdb"
    with tensordb.open(path) as db:
        db["s1"] = {"name": "n" * 200, "time": 51, "data": {"l": [1, 2.5, None, True], "a/b": "slash key"},
                    "z": np.float32(3.5)}
        db["s1"].set("/data/points", POINTS, chunks=(16, 3))
        db["s1"].set("/data/noisy", NOISY, chunks=(5,))
        db["sim01"] = {"kind": "parent", "data": {"p": "not the one"}}
        db["sim01/step003"] = {"time": 3, "data": {"p": FIELD}}
        db["geom"] = {"pts": db["s1"]["/data/points"]}  # by reference: the array is shared
    return path


# -- help, version, README ---------------------------------------------------------------------


def test_help_lists_demo_with_an_example() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
    demo_help = CliRunner().invoke(main, ["demo", "--help"])
    assert demo_help.exit_code == 0 and "Example" in demo_help.output


def test_every_command_is_listed_and_has_help_with_an_example() -> None:
    assert set(main.commands) >= COMMANDS
    listing = ok("--help").stdout
    assert "TREE[/POINTER]" in listing and "longest" in listing  # the address rule is documented
    for name in main.commands:
        assert re.search(rf"^\s+{name}\s", listing, re.M), f"{name} is not listed in tensordb --help"
        text = ok(name, "--help").stdout
        assert "Example:" in text, f"tensordb {name} --help has no example"
        example = text.split("Example:", 1)[1]
        assert f"tensordb {name}" in example, f"the example of {name} does not run {name}"


def test_readme_mentions_every_command() -> None:
    readme = README.read_text()
    for name in main.commands:
        assert f"tensordb {name}" in readme, f"README.md does not mention `tensordb {name}`"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and tensordb.__version__ in result.output


# -- demo ----------------------------------------------------------------------------------------


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


def test_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.tdb"
    content = b"hello, this is not SQLite" * 10
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["demo", str(bad), "--force"])  # even --force replaces only a tensordb file
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {bad} is not a tensordb file; refusing to overwrite it"]
    assert bad.read_bytes() == content


# -- errors common to every command --------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["ls", "{db}"], ["ls", "{db}", "t"], ["tree", "{db}", "t"], ["show", "{db}", "t/x"], ["sql", "{db}", "SELECT 1"],
    ["stats", "{db}"], ["gc", "{db}"], ["gc", "{db}", "--dry-run"], ["check", "{db}"], ["bundle", "{db}", "{out}"],
    ["export", "{db}", "t", "{out}.json"],
], ids=lambda a: " ".join(a[:1] + a[2:]).replace("{db}", "").replace("{out}", "OUT"))
def test_a_missing_database_is_an_error_and_is_not_created(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "missing.tdb"
    error = fails(*(a.format(db=db, out=tmp_path / "out") for a in args))
    assert error == f"Error: {db}: no such database"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_not_a_database_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tdb"
    bad.write_bytes(b"not sqlite at all" * 100)
    assert "not a tensordb file" in fails("ls", bad)


@pytest.mark.parametrize("args", [
    ["ls"], ["ls", "s1"], ["tree", "s1"], ["show", "s1/data/points", "--stats"], ["show", "s1/time"],
    ["sql", "SELECT 1"], ["stats"], ["check"], ["gc", "--dry-run"], ["bundle", "{tmp}/b.tdb"],
    ["export", "s1", "{tmp}/e.json"],
], ids=" ".join)
def test_commands_that_only_read_open_read_only(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                args: list[str]) -> None:
    modes: list[str] = []
    real_open = tensordb.open

    def spy(path: Any, mode: str = "a", **kwargs: Any) -> tensordb.Database:
        modes.append(mode)
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(tensordb, "open", spy)
    ok(args[0], sample, *(a.format(tmp=tmp_path) for a in args[1:]))
    assert modes == ["r"]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run("--debug", "ls", tmp_path / "missing.tdb")
    assert result.exit_code == 1
    assert isinstance(result.exception, FileNotFoundError)


def test_errors_in_a_real_subprocess_are_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tensordb", "ls", str(tmp_path / "nope.tdb")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope.tdb'}: no such database"]
    assert out.stdout == ""


# -- addresses --------------------------------------------------------------------------------------


def test_the_longest_tree_name_prefix_wins(sample: Path) -> None:
    # "sim01" and "sim01/step003" both exist: the longest prefix is the tree, the rest the pointer
    assert json.loads(ok("show", sample, "sim01/step003/time").stdout) == 3
    assert json.loads(ok("show", sample, "sim01/data/p").stdout) == "not the one"
    assert "(50,) float64" in ok("show", sample, "sim01/step003/data/p").stdout
    # a key with "/" is reached with its JSON Pointer escape
    assert json.loads(ok("show", sample, "s1/data/a~1b").stdout) == "slash key"


def test_a_missing_tree_or_pointer_is_one_line(sample: Path) -> None:
    assert fails("show", sample, "nope") == f"Error: {sample}: no tree named 'nope'"
    assert fails("tree", sample, "nope/data") == f"Error: {sample}: no tree named 'nope/data' or by a prefix of it"
    assert fails("ls", sample, "s1/data/missing") == f"Error: {sample}: s1: /data/missing: no such path"
    assert "no such path" in fails("show", sample, "sim01/step003/data/q")


# -- ls -------------------------------------------------------------------------------------------


def test_ls_lists_trees(sample: Path) -> None:
    rows = table(ok("ls", sample).stdout)
    assert [r[0] for r in rows] == ["geom", "s1", "sim01", "sim01/step003"]
    s1 = dict(zip(["name", "root_kind", "n_nodes", "n_arrays", "logical_bytes"], rows[1]))
    assert s1["root_kind"] == "dict" and s1["n_arrays"] == "2" and s1["logical_bytes"] == "1.3 KiB"
    listed = json.loads(ok("ls", sample, "--format", "json").stdout)
    assert listed[1] == {"name": "s1", "root_kind": "dict", "n_nodes": 13, "n_arrays": 2,
                         "logical_bytes": POINTS.nbytes + NOISY.nbytes}
    lines = list(csv.reader(io.StringIO(ok("ls", sample, "--format", "csv").stdout)))
    assert lines[0] == ["name", "root_kind", "n_nodes", "n_arrays", "logical_bytes"]
    assert lines[4] == ["sim01/step003", "dict", "4", "1", str(FIELD.nbytes)]


def test_ls_lists_the_children_of_a_node(sample: Path) -> None:
    children = json.loads(ok("ls", sample, "s1", "--format", "json").stdout)
    assert [c["key"] for c in children] == ["name", "time", "data", "z"]
    assert children[1] == {"key": "time", "kind": "int", "items": None, "shape": None, "dtype": None, "value": 51}
    assert children[2]["kind"] == "dict" and children[2]["items"] == 4
    assert children[3] == {"key": "z", "kind": "float", "items": None, "shape": None, "dtype": "float32", "value": 3.5}
    data = {c["key"]: c for c in json.loads(ok("ls", sample, "s1/data", "--format", "json").stdout)}
    assert data["points"]["kind"] == "array" and data["points"]["shape"] == [100, 3]
    assert data["points"]["dtype"] == "float32"
    items = json.loads(ok("ls", sample, "s1/data/l", "--format", "json").stdout)
    assert [(c["key"], c["kind"], c["value"]) for c in items] == [
        (0, "int", 1), (1, "float", 2.5), (2, "null", None), (3, "bool", True)]
    rows = table(ok("ls", sample, "s1").stdout)
    assert rows[0][0] == "name" and rows[0][-1].endswith("…") and len(rows[0][-1]) == 80  # long text is cut
    leaf = json.loads(ok("ls", sample, "s1/data/points", "--format", "json").stdout)
    assert leaf == [{"key": "points", "kind": "array", "items": None, "shape": [100, 3], "dtype": "float32",
                     "value": None}]


def test_ls_by_name_prefix_and_pattern(sample: Path) -> None:
    assert [r[0] for r in table(ok("ls", sample, "sim01/").stdout)] == ["sim01/step003"]
    with tensordb.open(sample) as db:
        db["runs/a/step000"] = {"t": 0}
        db["runs/a/step001"] = {"t": 1}
        db["runs/b/step000"] = {"t": 2}
    assert [r[0] for r in table(ok("ls", sample, "runs").stdout)] == [  # no tree "runs": the trees under it
        "runs/a/step000", "runs/a/step001", "runs/b/step000"]
    assert [r[0] for r in table(ok("ls", sample, "runs/a/").stdout)] == ["runs/a/step000", "runs/a/step001"]
    assert [r[0] for r in table(ok("ls", sample, "--pattern", "runs/*/step000").stdout)] == [
        "runs/a/step000", "runs/b/step000"]
    assert [r[0] for r in table(ok("ls", sample, "runs/", "--pattern", "*b*").stdout)] == ["runs/b/step000"]
    assert table(ok("ls", sample, "--pattern", "nothing*").stdout) == []
    keys = json.loads(ok("ls", sample, "s1", "--pattern", "[nt]*", "--format", "json").stdout)
    assert [c["key"] for c in keys] == ["name", "time"]
    assert fails("ls", sample, "nope/") == f"Error: {sample}: no tree named 'nope'"
    assert fails("ls", sample, "nope") == f"Error: {sample}: no tree named 'nope'"
    children = json.loads(ok("ls", sample, "s1/data/", "--format", "json").stdout)  # as ls dir/ lists dir
    assert [c["key"] for c in children] == ["l", "a/b", "points", "noisy"]
    assert [r[0] for r in table(ok("ls", sample, "s1/").stdout)] == ["name", "time", "data", "z"]


# -- tree -----------------------------------------------------------------------------------------


def test_tree_shows_arrays_scalars_and_sharing(sample: Path) -> None:
    out = ok("tree", sample, "s1").stdout
    assert out.splitlines()[0] == "s1  dict (4 items)"
    with tensordb.open(sample, mode="r") as db:
        stored = db["s1"]["/data/points"].stored_nbytes
    points = next(line for line in out.splitlines() if "points" in line)
    assert "array (100, 3) float32" in points and "1.2 KiB" in points and f"stored {stored} B" in points
    assert points.endswith("shared")  # also referenced by the tree "geom"
    noisy = next(line for line in out.splitlines() if "noisy" in line)
    assert "(42,) float32" in noisy and "shared" not in noisy
    assert "time  51" in out and "z  3.5  float32" in out and "[2]  null" in out and "[3]  true" in out
    name = next(line for line in out.splitlines() if "name" in line)
    assert name.endswith("…") and len(name.split("  ", 1)[1]) == 80  # long strings are truncated
    assert "a/b  \"slash key\"" in out


def test_tree_depth_and_subtrees(sample: Path) -> None:
    out = ok("tree", sample, "s1", "--depth", "1").stdout
    assert "data  dict (4 items)" in out and "points" not in out
    sub = ok("tree", sample, "sim01/step003/data").stdout.splitlines()
    assert sub[0] == "sim01/step003/data  dict (1 item)" and "p  array (50,) float64" in sub[1]
    assert ok("tree", sample, "s1/time").stdout.strip() == "s1/time  51"
    assert "'--depth': -1 is not in the range" in fails("tree", sample, "s1", "--depth", "-1", code=2)


# -- show -----------------------------------------------------------------------------------------


def test_parse_slice() -> None:
    assert parse_slice("0:10,:") == (slice(0, 10), slice(None))
    assert parse_slice(" 5 , ::-2, ... ") == (5, slice(None, None, -2), Ellipsis)
    assert parse_slice("[1:-1:3]") == (slice(1, -1, 3),)
    assert parse_slice("") == ()
    assert parse_slice("[0,5,7]") == ([0, 5, 7],)  # a list of indices on axis 0, not three axes
    assert parse_slice("[0, -1], 1:") == ([0, -1], slice(1, None))
    assert parse_slice(":, [2]") == (slice(None), [2])
    for bad in ("1+1", "0:10:2:1", "__import__('os')", "a:b", "1,,2", "...,...", "::0", "1.5", "None", "[[1]]",
                "[1, 2", "[1:2], 3", "[a]"):
        with pytest.raises(ValueError, match="bad slice"):
            parse_slice(bad)


def test_show_prints_a_slice(sample: Path) -> None:
    lines = ok("show", sample, "s1/data/points", "--slice", "0:10,:").stdout.splitlines()
    assert lines[0] == "s1/data/points[0:10,:]: (10, 3) float32  (shared)"  # "geom" references it too
    assert "\n".join(lines[1:]) == np.array2string(POINTS[0:10, :], threshold=1000, max_line_width=120)
    stepped = ok("show", sample, "s1/data/points", "--slice", "-3:, ::-1").stdout.splitlines()
    assert "\n".join(stepped[1:]) == np.array2string(POINTS[-3:, ::-1], max_line_width=120)
    element = ok("show", sample, "s1/data/points", "--slice", "2, 1").stdout.splitlines()
    assert element == ["s1/data/points[2, 1]: () float32  (shared)", "7.0"]
    whole = ok("show", sample, "sim01/step003/data/p").stdout.splitlines()
    assert whole[0] == "sim01/step003/data/p: (50,) float64"
    rows = ok("show", sample, "s1/data/points", "--slice", "[0,5,7]").stdout.splitlines()
    assert rows[0] == "s1/data/points[[0,5,7]]: (3, 3) float32  (shared)"
    assert "\n".join(rows[1:]) == np.array2string(POINTS[[0, 5, 7]], threshold=1000, max_line_width=120)
    picked = ok("show", sample, "s1/data/points", "--slice", "1:4, [2, 0]").stdout.splitlines()
    assert "\n".join(picked[1:]) == np.array2string(POINTS[1:4][:, [2, 0]], max_line_width=120)
    assert fails("show", sample, "s1/data/points", "--slice", "[0, 500]").startswith("Error: ")


def test_show_scalars_and_subtrees_as_json(sample: Path) -> None:
    assert json.loads(ok("show", sample, "s1/time").stdout) == 51
    assert json.loads(ok("show", sample, "s1/z").stdout) == 3.5
    data = json.loads(ok("show", sample, "s1/data").stdout)
    assert data == {"l": [1, 2.5, None, True], "a/b": "slash key",
                    "points": {"array": {"shape": [100, 3], "dtype": "float32"}},
                    "noisy": {"array": {"shape": [42], "dtype": "float32"}}}
    assert json.loads(ok("show", sample, "geom").stdout) == {"pts": {"array": {"shape": [100, 3],
                                                                                "dtype": "float32"}}}


def _stats(output: str) -> dict[str, float | None]:
    return {k: float(v) if v else None for k, v in table(output)}


@pytest.mark.parametrize("text", ["", "0:10,:", "5:90:7, 1:", "::-3", "...,1", "-1", "90:3:-4, 2", "10:3",
                                  "17:18", "3:", "::20", "::-17, 0", "-50:-1:33"])
def test_show_stats_match_numpy_chunk_by_chunk(sample: Path, text: str) -> None:
    key = parse_slice(text)
    expected = POINTS[key] if key else POINTS
    args = ["show", sample, "s1/data/points", "--stats"] + (["--slice", text] if text else [])
    got = _stats(ok(*args).stdout)
    assert got["count"] == expected.size and got["nan"] == 0
    if expected.size:
        assert got["min"] == expected.min() and got["max"] == expected.max()
        assert got["mean"] == pytest.approx(expected.mean(dtype="f8"), rel=1e-5)
        assert got["std"] == pytest.approx(expected.std(dtype="f8"), rel=1e-5)
    else:
        assert got["min"] is got["max"] is got["mean"] is got["std"] is None


def test_show_stats_skip_nans(sample: Path) -> None:
    got = _stats(ok("show", sample, "s1/data/noisy", "--stats").stdout)
    values = NOISY[~np.isnan(NOISY)].astype("f8")
    assert got["count"] == values.size and got["nan"] == 14
    assert (got["min"], got["max"]) == (-2.0, 4.0)
    assert got["mean"] == pytest.approx(values.mean()) and got["std"] == pytest.approx(values.std())


def test_show_errors(sample: Path) -> None:
    assert fails("show", sample, "s1/data/points", "--slice", "0:1+2") == (
        "Error: bad slice '0:1+2': '0:1+2' is not an a:b:c slice of ints")
    assert "bad slice" in fails("show", sample, "s1/data/points", "--slice", "__import__('os').getcwd()")
    assert "out of bounds" in fails("show", sample, "s1/data/points", "--slice", "100")
    assert "too many indices" in fails("show", sample, "s1/data/points", "--slice", "0,0,0")
    assert "too many indices" in fails("show", sample, "s1/data/points", "--slice", "0,0,0", "--stats")
    assert fails("show", sample, "s1/data", "--slice", "0") == (
        "Error: s1/data: --slice applies to arrays, this is a dict")
    assert fails("show", sample, "s1/time", "--stats") == "Error: s1/time: --stats applies to arrays, this is a int"


# -- sql ------------------------------------------------------------------------------------------


QUERY = "SELECT tree, path, value FROM nodes WHERE key = 'time' AND value > 10 ORDER BY tree"


def test_sql_table_csv_json(sample: Path) -> None:
    assert table(ok("sql", sample, QUERY).stdout) == [["s1", "/time", "51"]]
    lines = list(csv.reader(io.StringIO(ok("sql", sample, QUERY, "--format", "csv").stdout)))
    assert lines == [["tree", "path", "value"], ["s1", "/time", "51"]]
    rows = json.loads(ok("sql", sample, "SELECT tree, value FROM nodes WHERE key = 'time' ORDER BY value",
                         "--format", "json").stdout)
    assert rows == [{"tree": "sim01/step003", "value": 3}, {"tree": "s1", "value": 51}]
    assert json.loads(ok("sql", sample, "SELECT 1 WHERE 0", "--format", "json").stdout) == []
    empty = ok("sql", sample, "SELECT tree, path FROM nodes WHERE key = 'nothing'").stdout.splitlines()
    assert re.fullmatch(r"\s*tree\s+┃\s+path\s*", empty[0]) and empty[-1] == "0 rows"
    assert ok("sql", sample, "SELECT tree, path FROM nodes WHERE 0", "--format", "csv").stdout == "tree,path\n"
    nulls = list(csv.reader(io.StringIO(ok("sql", sample, "SELECT NULL AS n, x'00ff' AS b, 'a,b' AS s",
                                           "--format", "csv").stdout)))
    assert nulls[1] == ["", '{"bytes": "AP8="}', "a,b"]


@pytest.mark.parametrize("statement", [
    "DELETE FROM node", "DROP TABLE tree", "INSERT INTO tree(name) VALUES ('x')", "PRAGMA user_version = 9",
    "UPDATE array SET refcount = 0", "CREATE TABLE t(x)", "DELETE FROM trees", "UPDATE nodes SET value = 1",
    "VACUUM INTO 'copy.tdb'", "ATTACH 'other.tdb' AS o",
])
def test_sql_refuses_writes(sample: Path, statement: str) -> None:
    message = fails("sql", sample, statement)
    assert "read-only" in message and "db.sql" not in message
    with tensordb.open(sample, mode="r") as db:
        assert sorted(db) == ["geom", "s1", "sim01", "sim01/step003"] and db.check().ok
        assert db.sql("PRAGMA user_version").fetchall() == [(schema.SCHEMA_VERSION,)]


def test_sql_errors(sample: Path) -> None:
    assert fails("sql", sample, "SELEC 1") == f"Error: {sample}: SQL error: near \"SELEC\": syntax error"
    assert "no such table" in fails("sql", sample, "SELECT * FROM missing_table")
    assert "'xml' is not one of 'table', 'csv', 'json'" in fails("sql", sample, "SELECT 1", "--format", "xml", code=2)


# -- maintenance ----------------------------------------------------------------------------------


def test_stats(sample: Path) -> None:
    stats = json.loads(ok("stats", sample, "--format", "json").stdout)
    assert stats["trees"] == 4 and stats["arrays"] == 3
    assert stats["logical_bytes"] == 2 * POINTS.nbytes + NOISY.nbytes + FIELD.nbytes
    rows = dict(table(ok("stats", sample).stdout))
    assert rows["trees"] == "4" and rows["logical_bytes"] == "2.9 KiB"
    assert float(rows["dedup_ratio"]) == pytest.approx(stats["dedup_ratio"], rel=1e-5)
    lines = list(csv.reader(io.StringIO(ok("stats", sample, "--format", "csv").stdout)))
    assert lines[0] == ["key", "value"] and ["trees", "4"] in lines


def test_gc_dry_run_then_gc(sample: Path) -> None:
    with tensordb.open(sample) as db:
        del db["sim01/step003"]  # its array is no longer referenced
    dry = run("gc", sample, "--dry-run")
    assert dry.exit_code == 0 and "dry run: nothing was changed" in dry.stdout
    assert dict(table(dry.stdout))["arrays_removed"] == "1"
    with tensordb.open(sample, mode="r") as db:
        assert db.sql("SELECT count(*) FROM arrays WHERE refcount = 0").fetchall() == [(1,)]
    done = json.loads(ok("gc", sample, "--format", "json").stdout)
    assert done["arrays_removed"] == 1 and done["chunks_removed"] == 1
    with tensordb.open(sample, mode="r") as db:
        assert db.sql("SELECT count(*) FROM arrays WHERE refcount = 0").fetchall() == [(0,)]
        assert db.check().ok
    assert json.loads(ok("gc", sample, "--format", "json").stdout)["arrays_removed"] == 0


def test_check_healthy_and_damaged(sample: Path) -> None:
    assert ok("check", sample).stdout.startswith("check: ok, ")
    assert json.loads(ok("check", sample, "--format", "json").stdout)["ok"] is True
    con = sqlite3.connect(sample)
    with con:
        chunk_id, data = con.execute("SELECT chunk_id, data FROM chunk WHERE data IS NOT NULL LIMIT 1").fetchone()
        flipped = bytes([data[0]]) + bytes([data[1] ^ 0xFF]) + data[2:]
        con.execute("UPDATE chunk SET data = ? WHERE chunk_id = ?", (flipped, chunk_id))
    con.close()
    result = run("check", sample)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout.startswith("check: 1 error(s)")
    assert "chunk-corrupt" in result.stdout and f"chunk {chunk_id}" in result.stdout
    assert result.stderr.strip() == f"Error: {sample}: check found 1 error(s)"
    report = CliRunner().invoke(main, ["check", str(sample), "--format", "json"])
    assert report.exit_code == 1 and json.loads(report.stdout)["findings"][0]["code"] == "chunk-corrupt"
    lines = list(csv.reader(io.StringIO(run("check", sample, "--format", "csv").stdout)))
    assert lines[0][:2] == ["severity", "code"] and lines[1][:2] == ["error", "chunk-corrupt"]


def test_bundle(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "share.tdb"
    assert ok("bundle", sample, out).stdout.startswith(f"bundled {sample} into {out} (")
    with tensordb.open(out, mode="r") as db:
        assert sorted(db) == ["geom", "s1", "sim01", "sim01/step003"]
        np.testing.assert_array_equal(db["s1"]["/data/points"][...], POINTS)
        assert db.check().ok
    assert fails("bundle", sample, out) == f"Error: {out} already exists"


# -- import / export ------------------------------------------------------------------------------


def _array_object(data: np.ndarray, buffer: str | None = None) -> dict[str, Any]:
    if buffer is None:
        encoded = {"buffer": base64.b64encode(data.tobytes()).decode(), "encoding": "base64"}
    else:
        encoded = {"buffer": buffer, "encoding": "binref"}
    return {"object_type": "array", "shape": list(data.shape), "dtype": str(data.dtype), "data": encoded}


def _write_sample(folder: Path, stem: str, time: int, binref: str | None = None) -> Path:
    """A JSON+binref file: one base64 array and one binref array (into STEM.bin unless told otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    points = POINTS + time
    (folder / f"{stem}.bin").write_bytes(b"\0" * 8 + points.tobytes())
    doc = {"name": stem, "time": time,
           "mesh": {"object_type": "PasteurSurfaceMesh", "types": _array_object(np.full(4, 7, "i4")),
                    "points": _array_object(points, binref or f"{stem}.bin:8")}}
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(doc))
    return path


def test_import_a_file_with_a_name(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    src = _write_sample(tmp_path / "in", "step000", 7)
    assert ok("import", db, src, "--name", "first").stdout.strip() == f"imported 'first' into {db}"
    assert ok("import", db, src).stdout.strip() == f"imported 'step000' into {db}"
    with tensordb.open(db, mode="r") as database:
        assert sorted(database) == ["first", "step000"]
        tree = database["first"]
        assert tree["time"] == 7 and tree["/mesh/object_type"] == "PasteurSurfaceMesh"
        np.testing.assert_array_equal(tree["/mesh/points"][...], POINTS + 7)
        np.testing.assert_array_equal(tree["/mesh/types"][...], np.full(4, 7, "i4"))


def test_import_of_a_bad_file_fails_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    src = _write_sample(tmp_path / "in", "bad", 1, binref="bad.bin:5000")  # past the end of bad.bin
    error = fails("import", db, src)
    assert error.startswith(f"Error: {src}: /mesh/points: ") and "past the end of bad.bin" in error
    with tensordb.open(db, mode="r") as database:
        assert len(database) == 0
    broken = tmp_path / "in" / "broken.json"
    broken.write_text('{"a": [1, 2')
    assert fails("import", db, broken).startswith(f"Error: {broken}: invalid JSON")
    outside = _write_sample(tmp_path / "in", "outside", 1, binref="../secret.bin:0")
    assert "'..'" in fails("import", db, outside)
    with tensordb.open(db, mode="r") as database:
        assert len(database) == 0


def test_import_a_folder_with_good_and_bad_files(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    folder = tmp_path / "runs"
    _write_sample(folder / "sim01", "step000", 0)
    _write_sample(folder / "sim01", "step001", 1)
    bad = _write_sample(folder / "sim02", "step000", 2, binref="step000.bin:1000000")
    broken = folder / "broken.json"
    broken.write_text("{nope")
    (folder / "notes.txt").write_text("not imported: the pattern is **/*.json")
    result = run("import", db, folder)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout.strip() == f"imported 2 of 4 file(s) into {db}"
    errors = result.stderr.strip().splitlines()
    assert errors[-1] == "Error: 2 of 4 file(s) failed to import (see above)"
    failed = errors[:-1]
    assert len(failed) == 2
    assert failed[0].startswith(f"failed: {broken}: invalid JSON")
    assert failed[1].startswith(f"failed: {bad}: /mesh/points: ")
    with tensordb.open(db, mode="r") as database:
        assert sorted(database) == ["sim01/step000", "sim01/step001"]
        np.testing.assert_array_equal(database["sim01/step001"]["/mesh/points"][...], POINTS + 1)
    # tree names with "/" resolve as addresses
    assert json.loads(ok("show", db, "sim01/step001/time").stdout) == 1


def test_import_pattern_and_argument_errors(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    folder = tmp_path / "runs"
    _write_sample(folder / "sim01", "step000", 0)
    _write_sample(folder / "sim02", "step000", 2)
    result = ok("import", db, folder, "--pattern", "sim02/*.json")
    assert result.stdout.strip() == f"imported 1 of 1 file(s) into {db}"
    with tensordb.open(db, mode="r") as database:
        assert list(database) == ["sim02/step000"]
    assert fails("import", db, folder, "--name", "x", code=2) == (
        "Error: --name applies to a single file or Zarr folder, not to folders or several files")
    assert fails("import", db, folder, "--replace", "--skip-existing", code=2) == (
        "Error: --replace and --skip-existing exclude each other")
    missing = tmp_path / "nothing.json"
    assert fails("import", db, missing) == f"Error: {missing}: no such file or folder"
    assert "Missing argument 'SRC...'" in fails("import", db, code=2)


def test_export_round_trips_through_import(tmp_path: Path) -> None:
    db = tmp_path / "e.tdb"
    ok("import", db, _write_sample(tmp_path / "in", "s", 3))
    out = tmp_path / "out" / "s.json"
    out.parent.mkdir()
    assert ok("export", db, "s", out).stdout.strip() == f"exported s to {out}"
    doc = json.loads(out.read_text())
    assert doc["mesh"]["types"]["data"]["encoding"] == "base64"  # 16 bytes: inline
    assert doc["mesh"]["points"]["data"] == {"buffer": "s.bin:0", "encoding": "binref"}
    assert (tmp_path / "out" / "s.bin").read_bytes() == (POINTS + 3).tobytes()
    ok("import", db, out, "--name", "again")
    with tensordb.open(db, mode="r") as database:
        assert database["again"]["/time"] == 3
        np.testing.assert_array_equal(database["again"]["/mesh/points"][...], POINTS + 3)
    sub = tmp_path / "out" / "mesh.json"
    ok("export", db, "s/mesh", sub, "--inline-below", "100000")
    mesh = json.loads(sub.read_text())
    assert mesh["object_type"] == "PasteurSurfaceMesh" and mesh["points"]["data"]["encoding"] == "base64"
    assert not (tmp_path / "out" / "mesh.bin").exists()


def test_export_errors(tmp_path: Path, sample: Path) -> None:
    out = tmp_path / "x.json"
    assert fails("export", sample, "nope", out) == f"Error: {sample}: no tree named 'nope'"
    assert fails("export", sample, "s1/nothing", out) == f"Error: {sample}: s1: /nothing: no such path"
    assert "'--inline-below': -1 is not in the range" in fails("export", sample, "s1", out, "--inline-below", "-1",
                                                             code=2)
    assert not out.exists()


def test_export_to_zarr_and_import_the_folder_back(tmp_path: Path, sample: Path) -> None:
    zarr = pytest.importorskip("zarr")
    out = tmp_path / "s1.zarr"
    assert ok("export", sample, "s1", out, "--format", "zarr").stdout.strip() == f"exported s1 to {out}"
    root = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(root["data"]["points"][...], POINTS)
    assert root["data"]["points"].chunks == (16, 3)
    assert root.attrs["time"] == 51
    assert root["data"].attrs["l"] == [1, 2.5, None, True]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    ok("export", sample, "sim01/step003/data", tmp_path / "sub.zarr")  # the format follows the .zarr suffix
    assert (tmp_path / "sub.zarr" / "zarr.json").is_file()

    db = tmp_path / "z.tdb"
    assert ok("import", db, out).stdout.strip() == f"imported 's1' into {db}"
    assert ok("import", db, tmp_path / "sub.zarr", "--name", "p").stdout.strip() == f"imported 'p' into {db}"
    folder = tmp_path / "runs"
    _write_sample(folder, "step000", 4)
    result = ok("import", db, folder, out, "--replace")  # a JSON folder and a Zarr folder together
    assert result.stdout.strip() == f"imported 2 of 2 file(s) into {db}"
    with tensordb.open(db, mode="r") as database, tensordb.open(sample, mode="r") as original:
        assert sorted(database) == ["p", "s1", "step000"]
        expected = original["s1"].load()
        for key in ("name", "time", "z"):
            assert repr(database["s1"][key]) == repr(expected[key])
        loaded = database["s1"].load()
        assert list(loaded) == list(expected) and list(loaded["data"]) == list(expected["data"])
        np.testing.assert_array_equal(loaded["data"]["noisy"], NOISY)
        np.testing.assert_array_equal(database["p"]["p"][...], FIELD)


def test_zarr_export_and_import_errors(tmp_path: Path, sample: Path) -> None:
    pytest.importorskip("zarr")
    out = tmp_path / "s1.zarr"
    out.mkdir()
    assert fails("export", sample, "s1", out) == f"Error: {out}: already exists; remove it or choose another name"
    missing = tmp_path / "nowhere" / "x.zarr"
    assert fails("export", sample, "s1", missing).startswith(f"Error: {missing}: folder ")
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": '
                                   '{"tensordb": {"kind": "dict", "keys": ["x"]}}}')
    db = tmp_path / "z.tdb"
    assert fails("import", db, bad) == (f"Error: {bad}: /: key 'x' is neither a member nor an attribute "
                                        "(looked for 'x')")
    with tensordb.open(db, mode="r") as database:
        assert len(database) == 0


def test_fixture_import_export_keeps_structure_and_values(tmp_path: Path) -> None:
    db = tmp_path / "f.tdb"
    ok("import", db, FIXTURE)
    out = tmp_path / "back.json"
    ok("export", db, FIXTURE_TREE, out)
    original = json.loads((FIXTURE / f"{FIXTURE_TREE}.json").read_text())
    exported = json.loads(out.read_text())

    def shape(doc: Any) -> Any:  # the structure, with arrays as (shape, dtype)
        if isinstance(doc, dict) and doc.get("object_type") == "array":
            return ("array", tuple(doc["shape"]), doc["dtype"])
        if isinstance(doc, dict):
            return {k: shape(v) for k, v in doc.items()}
        return [shape(v) for v in doc] if isinstance(doc, list) else doc

    assert shape(exported) == shape(original)
    ok("import", db, out, "--name", "back")
    with tensordb.open(db, mode="r") as database:
        for _, path, array in database.glob("/**", trees=FIXTURE_TREE):
            if isinstance(array, tensordb.Array):
                np.testing.assert_array_equal(database["back"][path][...], array[...])


# -- nothing stored or written is replaced without a flag (issue 13, bugs 1-6) -------------------------


def _state(db: Path) -> tuple[dict[str, Any], bool]:
    """Every tree, loaded, and whether check() passes: what a refused command must leave unchanged."""
    with tensordb.open(db, mode="r") as database:
        return {name: _plain_tree(database[name].load()) for name in database}, database.check().ok


def _plain_tree(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_tree(v) for v in value]
    return (type(value).__name__, repr(value))


def _two_simulations(root: Path) -> Path:
    for sim in ("sim00", "sim01"):
        for step in range(3):
            _write_sample(root / sim, f"step00{step}", 10 * int(sim[-1]) + step)
    return root


def test_sources_whose_tree_names_collide_are_refused(tmp_path: Path) -> None:  # bug 1
    root = _two_simulations(tmp_path / "samples")
    db = tmp_path / "g.tdb"
    ok("import", db, root / "sim00" / "step000.json", "--name", "kept")
    before = _state(db)
    files = sorted(str(p) for p in root.glob("sim0*/step00*.json"))
    message = fails("import", db, *files)
    assert "several sources would write the same tree, nothing was imported" in message
    for step in ("step000", "step001", "step002"):
        assert f"'{step}' (from {root / 'sim00' / step}.json and {root / 'sim01' / step}.json)" in message
    assert fails("import", db, root / "sim00", root / "sim01").startswith(f"Error: {db}: several sources")
    assert fails("import", db, root / "sim00", root / "sim01", "--replace").startswith(f"Error: {db}: several")
    assert _state(db) == before
    fresh = tmp_path / "fresh.tdb"
    assert fails("import", fresh, root / "sim00", root / "sim01").startswith(f"Error: {fresh}: several")
    assert not fresh.exists()  # a refused import does not even create the database
    assert ok("import", db, root).stdout.strip() == f"imported 6 of 6 file(s) into {db}"  # the parent keeps paths
    ok("import", db, root / "sim01", "--prefix", "again/")
    with tensordb.open(db, mode="r") as database:
        assert sorted(database) == [*(f"again/step00{i}" for i in range(3)), "kept",
                                    *(f"{sim}/step00{i}" for sim in ("sim00", "sim01") for i in range(3))]
        assert database["again/step002"]["time"] == 12


def test_import_refuses_an_existing_tree_unless_told(tmp_path: Path) -> None:  # bug 2
    root = _two_simulations(tmp_path / "samples")
    db = tmp_path / "g.tdb"
    ok("import", db, root / "sim00")
    with tensordb.open(db) as database:
        database["step001"]["time"] = -1  # a change the user made after the import
    before = _state(db)
    message = fails("import", db, root / "sim00" / "step001.json")
    assert message == (f"Error: {db}: 1 tree(s) exist already, nothing was imported: 'step001'; pass --replace or "
                       "--skip-existing (replace=True or skip_existing=True in Python)")
    assert "'step000', 'step001', 'step002'" in fails("import", db, root / "sim00")
    assert _state(db) == before

    result = ok("import", db, root / "sim00", "--skip-existing")
    assert result.stdout.strip() == f"imported 0 of 0 file(s) into {db}, kept 3 existing tree(s)"
    assert _state(db) == before
    (root / "sim00" / "step003.json").write_text((root / "sim00" / "step000.json").read_text())
    (root / "sim00" / "step003.bin").write_bytes((root / "sim00" / "step000.bin").read_bytes())
    result = ok("import", db, root / "sim00", "--skip-existing")  # resumes: only what is missing
    assert result.stdout.strip() == f"imported 1 of 1 file(s) into {db}, kept 3 existing tree(s)"

    assert ok("import", db, root / "sim00" / "step001.json", "--replace").stdout.strip() == (
        f"imported 'step001' into {db}")
    with tensordb.open(db, mode="r") as database:
        assert database["step001"]["time"] == 1 and database.check().ok


def test_python_import_refuses_an_existing_tree_unless_told(tmp_path: Path) -> None:  # bug 2, in Python
    from tensordb.jsonbin import import_file, import_folder

    root = _two_simulations(tmp_path / "samples")
    with tensordb.open(tmp_path / "g.tdb") as database:
        import_file(database, root / "sim00" / "step000.json")
        database["step000"]["time"] = -1
        with pytest.raises(tensordb.TreeExistsError, match="'step000'"):
            import_file(database, root / "sim00" / "step000.json")
        with pytest.raises(tensordb.TreeExistsError, match="'step000'"):
            import_folder(database, root / "sim00")
        assert list(database) == ["step000"] and database["step000"]["time"] == -1
        assert import_file(database, root / "sim00" / "step000.json", skip_existing=True) == "step000"
        assert database["step000"]["time"] == -1
        report = import_folder(database, root / "sim00", skip_existing=True)
        assert report.ok and report.skipped == ["step000"] and report.imported == ["step001", "step002"]
        import_file(database, root / "sim00" / "step000.json", replace=True)
        assert database["step000"]["time"] == 0
        with pytest.raises(ValueError, match="exclude each other"):
            import_folder(database, root / "sim00", replace=True, skip_existing=True)
        assert database.check().ok


def test_demo_refuses_an_existing_database(tmp_path: Path) -> None:  # bug 3
    victim = tmp_path / "victim.tdb"
    with tensordb.open(victim) as database:
        database["real"] = {"big": np.random.default_rng(0).random(200_000)}  # lives in the packs folder
    packs = sorted(p.name for p in Path(f"{victim}-packs").iterdir())
    assert packs
    before = _state(victim)
    assert fails("demo", victim, "--sims", "2", "--steps", "2") == (
        f"Error: {victim}: already exists; pass --force (force=True in Python) to replace it")
    assert _state(victim) == before and sorted(p.name for p in Path(f"{victim}-packs").iterdir()) == packs
    victim.unlink()  # a packs folder alone is somebody's data too
    assert fails("demo", victim, "--sims", "1", "--steps", "1").startswith(f"Error: {victim}-packs: already exists")
    assert not victim.exists()
    ok("demo", victim, "--sims", "1", "--steps", "2", "--force")
    with tensordb.open(victim, mode="r") as database:
        assert len(database) == 2 and database.check().ok


def test_export_into_an_existing_folder(tmp_path: Path, sample: Path) -> None:  # bug 4
    out = tmp_path / "out"
    out.mkdir()
    before = _state(sample)
    assert ok("export", sample, "s1", out).stdout.strip() == f"exported 1 tree(s) into {out}"
    assert sorted(p.name for p in out.iterdir()) == ["s1.bin", "s1.json"]
    assert ok("export", sample, "sim01/step003", f"{out}/").stdout.strip() == f"exported 1 tree(s) into {out}/"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "s1.bin", "s1.json", "sim01", "sim01/step003.json"]  # FIELD is small: inline, no .bin
    assert _state(sample) == before
    back = tmp_path / "back.tdb"
    ok("import", back, out)
    with tensordb.open(back, mode="r") as database:
        assert sorted(database) == ["s1", "sim01/step003"]
        np.testing.assert_array_equal(database["sim01/step003"]["/data/p"][...], FIELD)


def test_export_into_a_missing_folder_names_the_users_path(tmp_path: Path, sample: Path) -> None:  # bug 5
    target = tmp_path / "newdir" / "x.json"
    assert fails("export", sample, "s1", target) == f"Error: {target}: folder {target.parent} does not exist"
    assert not (tmp_path / "newdir").exists()
    deeper = tmp_path / "no" / "such" / "dir" / ""
    assert fails("export", sample, "s1", "sim01", deeper).startswith(f"Error: {deeper}")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("s.tdb")] == []  # nothing left behind


def test_export_refuses_to_overwrite_files_unless_forced(tmp_path: Path, sample: Path) -> None:  # bug 6
    source = _write_sample(tmp_path / "in", "s1", 5)  # the very files a user imported from
    originals = {p.name: p.read_bytes() for p in source.parent.iterdir()}
    before = _state(sample)
    assert fails("export", sample, "s1", source, "--inline-below", "0") == (
        f"Error: {source}: s1.json and s1.bin already exist; pass --force (force=True in Python) to overwrite")
    (source.parent / "s1.bin").unlink()
    assert fails("export", sample, "s1", source).endswith("s1.json already exists; pass --force (force=True in "
                                                          "Python) to overwrite")
    (source.parent / "s1.bin").write_bytes(originals["s1.bin"])
    assert fails("export", sample, "s1", "sim01", source.parent).startswith(f"Error: {source}: s1.json and s1.bin")
    assert {p.name: p.read_bytes() for p in source.parent.iterdir()} == originals
    assert _state(sample) == before
    ok("export", sample, "s1", source, "--force", "--inline-below", "0")
    assert json.loads(source.read_text())["time"] == 51
    assert (source.parent / "s1.bin").read_bytes() != originals["s1.bin"]


def test_python_export_refuses_to_overwrite_unless_forced(tmp_path: Path, sample: Path) -> None:  # bug 6
    from tensordb.jsonbin import export_tree, export_trees

    out = tmp_path / "x.json"
    out.write_text("mine")
    with tensordb.open(sample, mode="r") as database:
        with pytest.raises(FileExistsError, match="x.json already exists"):
            export_tree(database["s1"], out)
        with pytest.raises(IsADirectoryError, match="is a folder"):
            export_tree(database["s1"], tmp_path)
        assert out.read_text() == "mine"
        export_tree(database["s1"], out, force=True)
        assert json.loads(out.read_text())["time"] == 51
        folder = tmp_path / "all"
        folder.mkdir()
        written = export_trees(database, list(database), folder, inline_below=0)
        assert sorted(Path(w).relative_to(folder).as_posix() for w in written) == [
            "geom.json", "s1.json", "sim01.json", "sim01/step003.json"]
        with pytest.raises(FileExistsError, match="already exist"):
            export_trees(database, ["geom"], folder)
        with pytest.raises(tensordb.PathNotFoundError, match="nope"):
            export_trees(database, ["s1", "nope"], tmp_path / "all")


def test_export_of_trees_with_unsafe_names_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "u.tdb"
    with tensordb.open(db) as database:
        database["ok"] = {"x": 1}
        database["../escape"] = {"x": 2}
    out = tmp_path / "out"
    message = fails("export", db, "--all", out)
    assert "'../escape' cannot become a file path" in message
    assert not out.exists() and not (tmp_path / "escape.json").exists()


def test_a_failed_folder_export_leaves_nothing_behind(tmp_path: Path, sample: Path) -> None:
    with tensordb.open(sample) as db:
        db["z/blob"] = {"raw": b"bytes have no JSON form"}  # exported last: fails after the others were written
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    message = fails("export", sample, "--all", out)
    assert message == f"Error: {out / 'z' / 'blob.json'}: /raw: a bytes cannot be expressed in JSON"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["mine.txt"]


def test_export_of_a_prefix_and_of_everything(tmp_path: Path, sample: Path) -> None:
    out = tmp_path / "everything"
    assert ok("export", sample, "--all", out).stdout.strip() == f"exported 4 tree(s) into {out}"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "geom.json", "s1.json", "sim01.json", "sim01/step003.json"]
    part = tmp_path / "part"
    assert ok("export", sample, "sim01/", part).stdout.strip() == f"exported 1 tree(s) into {part}"
    assert [p.relative_to(part).as_posix() for p in part.rglob("*.json")] == ["sim01/step003.json"]
    assert fails("export", sample, "nothing/", tmp_path / "x") == f"Error: {sample}: no tree under 'nothing/'"
    assert "give ADDRESS... or --all, not both" in fails("export", sample, "s1", "--all", out, code=2)
    assert "--format zarr exports one ADDRESS" in fails("export", sample, "s1", "geom", out, "--format", "zarr",
                                                        code=2)
    assert not (tmp_path / "x").exists()


# -- dedup you can see ---------------------------------------------------------------------------


@pytest.fixture
def steps(tmp_path: Path) -> Path:
    """Two simulations of three steps: the geometry is written anew at every step (same bytes), fields differ."""
    path = tmp_path / "steps.tdb"
    rng = np.random.default_rng(5)
    with tensordb.open(path) as db:
        for sim in ("sim01", "sim02"):
            geometry = rng.random((5000, 3))
            for step in range(3):
                db[f"{sim}/step{step}"] = {"points": geometry.copy(), "p": rng.random(5000)}
    return path


def test_tree_and_show_mark_chunks_shared_with_other_arrays(steps: Path) -> None:
    with tensordb.open(steps, mode="r") as db:
        points = db["sim01/step1"]["/points"]
        assert points.array_id != db["sim01/step0"]["/points"].array_id  # separate arrays, deduplicated chunks
        stored = points.stored_nbytes
    out = ok("tree", steps, "sim01/step1").stdout
    points_line = next(line for line in out.splitlines() if "points" in line)
    assert points_line.endswith(f"stored {human_size(stored)}  {human_size(stored)} in chunks shared with "
                                "other arrays")
    p_line = next(line for line in out.splitlines() if "─ p  " in line)
    assert "shared" not in p_line
    assert ok("show", steps, "sim01/step1/points", "--slice", "0").stdout.splitlines()[0] == (
        f"sim01/step1/points[0]: (3,) float64  ({human_size(stored)} in chunks shared with other arrays)")
    assert ok("show", steps, "sim01/step1/p", "--slice", "0").stdout.splitlines()[0] == (
        "sim01/step1/p[0]: () float64")


def test_stats_of_the_trees_matching_a_pattern(steps: Path) -> None:
    figures = json.loads(ok("stats", steps, "sim01/*", "--format", "json").stdout)
    with tensordb.open(steps, mode="r") as db:
        geometry = db["sim01/step0"]["/points"].stored_nbytes
        fields = sum(db[f"sim01/step{i}"]["/p"].stored_nbytes for i in range(3))
    assert figures["pattern"] == "sim01/*" and figures["trees"] == 3 and figures["array_nodes"] == 6
    assert figures["logical_bytes"] == 3 * (5000 * 3 * 8 + 5000 * 8)
    assert figures["stored_bytes"] == geometry + fields  # the geometry once, not three times
    assert figures["shared_with_other_trees_bytes"] == 0 and figures["own_bytes"] == figures["stored_bytes"]
    both = json.loads(ok("stats", steps, "sim0[12]/step0", "--format", "json").stdout)
    assert both["trees"] == 2
    assert fails("stats", steps, "nothing*") == f"Error: {steps}: no tree matches 'nothing*'"
    rows = table(ok("stats", steps, "sim02/*").stdout)
    assert ["trees", "3"] in rows


def test_a_missing_packs_folder_is_one_warning_line_and_check_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "orig.tdb"
    with tensordb.open(path) as db:
        db["a"] = {"x": np.random.default_rng(0).random(300_000)}
    copy = tmp_path / "copy.tdb"
    copy.write_bytes(path.read_bytes())
    listed = run("ls", copy)
    assert listed.exit_code == 0 and "a " in listed.stdout
    assert listed.stderr.strip() == (f"warning: {copy}: 1 pack file(s) missing (or not regular files) in "
                                     f"{copy}-packs: 00000001.pack; reading the arrays stored there will fail (was "
                                     "the database copied without its packs folder?); tensordb check lists them")
    checked = run("check", copy)
    assert checked.exit_code == 1 and "pack-missing: pack file 00000001.pack is missing" in checked.stdout


def test_read_only_commands_leave_only_what_sqlite_needs(sample: Path) -> None:
    """As docs/format.md says: reads leave an empty -wal and the -shm index; a read-write close removes both."""
    def beside() -> list[str]:
        return sorted(p.name for p in sample.parent.iterdir() if p.name.startswith(sample.name))

    assert beside() == ["s.tdb"]
    for args in (("ls",), ("tree", "s1"), ("sql", "SELECT 1")):
        ok(args[0], sample, *args[1:])
        assert beside() == ["s.tdb", "s.tdb-shm", "s.tdb-wal"]
        assert (sample.parent / "s.tdb-wal").stat().st_size == 0
    tensordb.open(sample).close()
    assert beside() == ["s.tdb"]


# -- rm, mv, cp, diff ---------------------------------------------------------------------------


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
    before = _state(sample)
    assert fails("rm", sample, "geom", "s1/nothing") == f"Error: {sample}: s1: /nothing: no such path"
    assert fails("rm", sample, "nope") == f"Error: {sample}: no tree named 'nope'"
    assert "cannot delete the root" not in fails("rm", sample, "s1/data/l/9")
    assert _state(sample) == before
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
    before = _state(sample)
    assert fails("mv", sample, "s1", "geom") == (
        f"Error: {sample}: 'geom' exists already; pass replace=True (--force) to replace it")
    assert fails("cp", sample, "s1/time", "sim01/step003/time").endswith("exists already; pass replace=True "
                                                                        "(--force) to replace it")
    assert fails("mv", sample, "s1/data", "s1/data/inner") == (
        f"Error: {sample}: cannot move 's1/data' into itself ('s1/data/inner')")
    assert fails("mv", sample, "nope", "x") == f"Error: {sample}: no tree named 'nope'"
    assert fails("mv", sample, "s1/nothing", "x") == f"Error: {sample}: s1: /nothing: no such path"
    assert _state(sample) == before
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


def test_diff_exit_codes_and_output(sample: Path) -> None:
    assert run("diff", sample, "s1", "s1").exit_code == 0
    ok("cp", sample, "s1", "s2")
    equal = run("diff", sample, "s1", "s2")
    assert equal.exit_code == 0 and equal.stdout == ""
    with tensordb.open(sample) as db:
        db["s2"]["time"] = 52
        db["s2"]["/data/points"][3, 1] = 0.5
        del db["s2"]["name"]
        db["s2"]["/data/l"].append("x")
        db["s2"]["extra"] = {"k": np.int32(1)}
    result = run("diff", sample, "s1", "s2")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [  # in document order
        "- /name: str '" + "n" * 56 + "...",
        "~ /time: int 51 -> int 52",
        "+ /data/l/4: str 'x'",
        "~ /data/points: array (100, 3) float32 -> array (100, 3) float32 (values differ)",
        "+ /extra: dict (1 items)",
    ]
    rows = json.loads(run("diff", sample, "s1/data", "s2/data", "--format", "json").stdout)
    assert [(r["path"], r["change"]) for r in rows] == [("/l/4", "added"), ("/points", "changed")]
    assert run("diff", sample, "s1/data/points", "s2/data/points").exit_code == 1
    assert run("diff", sample, "s1/data/noisy", "s2/data/noisy").exit_code == 0


def test_diff_errors_exit_2(sample: Path) -> None:
    result = run("diff", sample, "s1", "nope")
    assert result.exit_code == 2 and result.stderr.strip() == f"Error: {sample}: no tree named 'nope'"
    assert "Missing argument 'ADDRESS_B'" in fails("diff", sample, "s1", code=2)


def test_diff_reads_only_chunks_whose_keys_differ(tmp_path: Path) -> None:
    data = np.random.default_rng(2).random((64, 100))
    with tensordb.open(tmp_path / "d.tdb") as db:
        db["a"] = {"x": data, "t": 1}
        db["a"].set("/x", data, chunks=(8, 100))  # 8 chunks
        db["b"] = {"x": data.copy(), "t": 1.0}
        db["b"].set("/x", data.copy(), chunks=(8, 100))
        db["b"]["/x"][40, 3] = -1.0  # changes chunk 5 only
        db["c"] = {"x": data, "t": 1}
        db["c"].set("/x", data, chunks=(8, 100), codec=tensordb.Codec("zstd", level=1, shuffle="bit"))
        before = db.counters.chunks_decoded
        changes = db.diff("a", "b")
        assert [(d.path, d.change) for d in changes] == [("/x", "changed"), ("/t", "changed")]
        assert db.counters.chunks_decoded - before == 2  # the one differing chunk, on each side
        before = db.counters.chunks_decoded
        assert db.diff("a/x", "a/x") == [] and db.counters.chunks_decoded == before  # same array: no read
        nan = np.array([np.nan, 0.0])
        db["n1"], db["n2"] = {"v": nan}, {"v": nan.copy()}
        assert db.diff("n1", "n2") == []  # NaN equals NaN bit for bit
        assert db.diff("a", "c") == []  # another codec: keys differ, bytes are read and found equal


# -- README ---------------------------------------------------------------------------------------


def test_readme_json_binref_section_follows_the_quickstart() -> None:
    text = README.read_text()
    assert text.index("## Quickstart") < text.index("## Coming from JSON+binref")


# -- real subprocesses ----------------------------------------------------------------------------


def test_demo_in_a_real_subprocess(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tensordb", "demo", str(tmp_path / "d.tdb"), "--sims", "2", "--steps", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "check() ok" in out.stdout


def test_installed_console_script_runs_the_demo(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tensordb"
    if not script.exists():
        pytest.skip("the tensordb console script is not installed (run: pip install .)")
    out = subprocess.run([str(script), "demo", str(tmp_path / "d.tdb"), "--sims", "2", "--steps", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "0 array bytes written" in out.stdout


# -- progress and interruption ----------------------------------------------------------------------


def _cli(*args: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tensordb", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", [
    ("import", "{db2}", "{folder}"), ("export", "{db}", "s1", "{out}"), ("bundle", "{db}", "{out}"),
    ("check", "{db}"), ("gc", "{db}"), ("show", "{db}", "s1/data/points", "--stats"),
], ids=lambda c: c[0])
def test_progress_on_a_terminal_only_and_not_with_quiet(tmp_path: Path, sample: Path, command: tuple[str, ...]) -> None:
    folder = tmp_path / "runs"
    _write_sample(folder, "step000", 1)
    names = {"db": sample, "db2": tmp_path / "new.tdb", "folder": folder, "out": tmp_path / "out.json"}
    args = [part.format(**names) for part in command]
    shown = _cli(*args, env={"TTY_COMPATIBLE": "1"})  # rich treats stderr as a terminal
    assert shown.returncode == 0, shown.stderr
    assert "\x1b[?25l" in shown.stderr  # the progress display hid the cursor while it ran
    for path in (names["db2"], names["out"], tmp_path / "out.bin"):
        path.unlink(missing_ok=True)
    quiet = _cli(*args, "--quiet", env={"TTY_COMPATIBLE": "1"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    for path in (names["db2"], names["out"], tmp_path / "out.bin"):
        path.unlink(missing_ok=True)
    piped = _cli(*args)
    assert piped.returncode == 0 and piped.stderr == ""


def test_ctrl_c_during_an_import_exits_130_and_the_import_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    rng = np.random.default_rng(3)
    n_files = 30
    for i in range(n_files):
        (folder / f"sim{i % 3}").mkdir(parents=True, exist_ok=True)
        data = rng.random(250_000)  # 2 MB each: the import takes a while
        (folder / f"sim{i % 3}" / f"step{i:03d}.bin").write_bytes(data.tobytes())
        doc = {"time": i, "p": _array_object(data, f"step{i:03d}.bin:0")}
        (folder / f"sim{i % 3}" / f"step{i:03d}.json").write_text(json.dumps(doc))
    db = tmp_path / "i.tdb"
    process = subprocess.Popen([sys.executable, "-m", "tensordb", "import", str(db), str(folder)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some files are committed
        try:
            with tensordb.open(db, mode="r") as database:
                if len(database) >= 2:
                    break
        except (tensordb.TensorDBError, OSError):  # not created yet
            pass
        time.sleep(0.05)
    err = _interrupt(process, "import")
    message = err.strip().splitlines()[-1]
    match = re.fullmatch(rf"interrupted: (\d+) of {n_files} file\(s\) were imported into {re.escape(str(db))} and "
                         r"stay; the file being imported was rolled back\. Run the same command with "
                         r"--skip-existing to import the rest\.", message)
    assert match, err
    with tensordb.open(db, mode="r") as database:
        assert len(database) == int(match.group(1)) and database.check().ok
    resumed = _cli("import", db, folder, "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == (f"imported {n_files - int(match.group(1))} of {n_files - int(match.group(1))} "
                                      f"file(s) into {db}, kept {match.group(1)} existing tree(s)")
    with tensordb.open(db, mode="r") as database:
        assert len(database) == n_files and database.check().ok
        assert database.gc(dry_run=True)["arrays_removed"] == 0  # resuming imported nothing twice
        np.testing.assert_array_equal(database["sim1/step004"]["/p"][...], np.frombuffer(
            (folder / "sim1" / "step004.bin").read_bytes(), dtype="f8"))


def _interrupt(process: subprocess.Popen[str], command: str) -> str:
    """Send Ctrl-C to a running command; its stderr once it exited 130 (a skip if it finished first)."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip(f"the {command} finished before the interrupt arrived")
    assert process.returncode == 130, (out, err)
    return err


def test_ctrl_c_during_an_export_exits_130_and_leaves_only_whole_files(tmp_path: Path) -> None:
    db = tmp_path / "e.tdb"
    rng = np.random.default_rng(4)
    n_trees = 40
    with tensordb.open(db) as database, database.transaction():
        for i in range(n_trees):
            database[f"sim{i % 4}/step{i:03d}"] = {"time": i, "p": rng.random(200_000)}
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "tensordb", "export", str(db), "--all", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.is_dir() and any(out.rglob("*.json"))):
        time.sleep(0.01)
    err = _interrupt(process, "export")
    match = re.fullmatch(rf"interrupted: (\d+) of {n_trees} tree\(s\) were exported into {re.escape(str(out))} and "
                         r"stay; the file being written was removed\. Run the same command with --force to export "
                         r"them all\.", err.strip().splitlines()[-1])
    assert match, err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not any(name.endswith(".tmp") or "/." in name or name.startswith(".") for name in files), files
    done = int(match.group(1))
    assert len([f for f in files if f.endswith(".json")]) == done
    for json_file in out.rglob("*.json"):  # every file left is whole
        name = json_file.relative_to(out).with_suffix("").as_posix()
        assert json.loads(json_file.read_text())["time"] == int(name[-3:])
    with tensordb.open(db, mode="r") as database:
        assert len(database) == n_trees and database.check().ok


def test_version_is_answered_without_loading_the_commands() -> None:
    code = ("import sys; sys.argv = ['tensordb', '--version']; from tensordb.cli_entry import main; main(); "
            "print(sorted(m for m in ('numpy', 'click', 'rich', 'tensordb.cli') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"tensordb, version {tensordb.__version__}", "[]"]


def test_the_entry_point_hands_everything_else_to_the_commands() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['tensordb', '--help'];"
                           "from tensordb.cli_entry import main; main()"], capture_output=True, text=True)
    assert done.returncode == 0 and "Commands:" in done.stdout
