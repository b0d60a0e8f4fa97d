"""ls, tree, show, sql, stats and diff."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

import tensordb
from cli.helpers import FIELD, NOISY, POINTS, fails, ok, run, table
from tensordb.storage import schema


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


def test_tree_and_show_mark_chunks_shared_with_other_arrays(steps: Path) -> None:
    with tensordb.open(steps, mode="r") as db:
        points = db["sim01/step1"]["/points"]
        assert points.array_id != db["sim01/step0"]["/points"].array_id  # separate arrays, deduplicated chunks
        stored = points.stored_nbytes
    out = ok("tree", steps, "sim01/step1").stdout
    points_line = next(line for line in out.splitlines() if "points" in line)
    size = tensordb.human_size(stored)
    assert points_line.endswith(f"stored {size}  {size} in chunks shared with other arrays")
    p_line = next(line for line in out.splitlines() if "─ p  " in line)
    assert "shared" not in p_line
    assert ok("show", steps, "sim01/step1/points", "--slice", "0").stdout.splitlines()[0] == (
        f"sim01/step1/points[0]: (3,) float64  ({tensordb.human_size(stored)} in chunks shared with other arrays)")
    assert ok("show", steps, "sim01/step1/p", "--slice", "0").stdout.splitlines()[0] == (
        "sim01/step1/p[0]: () float64")


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
    assert empty == ["tree  path", "0 rows"]
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


def test_stats(sample: Path) -> None:
    stats = json.loads(ok("stats", sample, "--format", "json").stdout)
    assert stats["trees"] == 4 and stats["arrays"] == 3
    assert stats["logical_bytes"] == 2 * POINTS.nbytes + NOISY.nbytes + FIELD.nbytes
    rows = dict(table(ok("stats", sample).stdout))
    assert rows["trees"] == "4" and rows["logical_bytes"] == "2.9 KiB"
    assert float(rows["dedup_ratio"]) == pytest.approx(stats["dedup_ratio"], rel=1e-5)
    lines = list(csv.reader(io.StringIO(ok("stats", sample, "--format", "csv").stdout)))
    assert lines[0] == ["key", "value"] and ["trees", "4"] in lines


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
    assert "give two addresses, or --from SNAPSHOT" in fails("diff", sample, "s1", code=2)


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
        assert db.counters.chunks_decoded == before  # one differing chunk: its keys say so, under one codec
        before = db.counters.chunks_decoded
        assert db.diff("a/x", "a/x") == [] and db.counters.chunks_decoded == before  # same array: no read
        nan = np.array([np.nan, 0.0])
        db["n1"], db["n2"] = {"v": nan}, {"v": nan.copy()}
        assert db.diff("n1", "n2") == []  # NaN equals NaN bit for bit
        assert db.diff("a", "c") == []  # another codec: keys differ, bytes are read and found equal
