"""The history relations and the history queries of docs/format.md's cookbook, through tensordb and sqlite3."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tensordb

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "format.md"
SAMPLE = "bm01-sim000-step000"


def _history_queries() -> dict[str, str]:
    doc = FORMAT_MD.read_text(encoding="utf-8")
    found = re.findall(r"<!-- history-query: ([a-z0-9-]+) -->\n```sql\n(.*?)^```", doc, re.S | re.M)
    assert len(found) == len(re.findall(r"<!-- history-query: ", doc))
    return {marker: sql.strip() for marker, sql in found}


QUERIES = _history_queries()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three snapshots: a raw import, an unchanged one, and a cleaning step that adds and changes nodes."""
    path = tmp_path_factory.mktemp("history") / "runs.tdb"
    with tensordb.open(path) as db:
        for step in range(3):
            db[f"bm01-sim000-step{step:03d}"] = {"time": 10 * step, "data": {"p": np.arange(5.0) + step}}
        db.snapshot("raw import")
        db.tag("raw")
        db.snapshot("nothing changed")
        db[SAMPLE]["time"] = 1
        db[SAMPLE]["/data/p_clean"] = np.zeros(5)
        db["bm01-sim000-step002"]["/data/flag"] = True
        db.snapshot("cleaned")
        db.tag("clean")
        db[SAMPLE]["time"] = 2  # after the last snapshot: not in any
    yield path


def _both(path: Path, sql: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with tensordb.open(path, mode="r") as db:
        ours = db.sql(sql).fetchall()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        theirs = [tuple(row) for row in con.execute(sql).fetchall()]
    finally:
        con.close()
    return ours, theirs


def test_every_history_query_is_tested() -> None:
    assert set(QUERIES) == {"value-changes", "step-added"}


def test_which_snapshot_changed_a_value(pipeline: Path) -> None:
    ours, theirs = _both(pipeline, QUERIES["value-changes"])
    assert ours == theirs == [(1, "raw import", 0), (3, "cleaned", 1)]


def test_what_a_pipeline_step_added(pipeline: Path) -> None:
    ours, theirs = _both(pipeline, QUERIES["step-added"])
    assert ours == theirs == [("bm01-sim000-step000", "/data/p_clean", "array"),
                              ("bm01-sim000-step002", "/data/flag", "bool")]


def test_snapshots_relation_lists_history_with_tags(pipeline: Path) -> None:
    ours, theirs = _both(pipeline, "SELECT id, message, parent_id, tags FROM snapshots ORDER BY id")
    assert ours == theirs == [(1, "raw import", None, '["raw"]'), (2, "nothing changed", 1, "[]"),
                              (3, "cleaned", 2, '["clean"]')]


def test_public_relations_of_a_view_answer_as_of_the_snapshot(pipeline: Path) -> None:
    with tensordb.open(pipeline, mode="r", at="raw") as old, tensordb.open(pipeline, mode="r") as now:
        query = "SELECT tree, path, value FROM nodes WHERE path = '/time' ORDER BY tree"
        assert old.sql(query).fetchall() == [(f"bm01-sim000-step{s:03d}", "/time", 10 * s) for s in range(3)]
        assert now.sql(query).fetchall()[0] == (SAMPLE, "/time", 2)
        assert old.sql("SELECT sum(n_nodes) FROM trees").fetchall() == [(3 * 4,)]
        assert now.sql("SELECT sum(n_nodes) FROM trees").fetchall() == [(3 * 4 + 2,)]
        assert old.sql("SELECT count(*) FROM arrays").fetchall() == [(3,)]
        assert now.sql("SELECT count(*) FROM arrays").fetchall() == [(4,)]


def test_snapshot_nodes_holds_each_snapshots_nodes(pipeline: Path) -> None:
    with tensordb.open(pipeline, mode="r") as db:
        for snapshot in db.history():
            with db.at(snapshot) as view:
                expected = view.sql("SELECT tree, path, kind, value FROM nodes ORDER BY tree, path").fetchall()
            rows = db.sql("SELECT tree, path, kind, value FROM snapshot_nodes WHERE snapshot = ? "
                          "ORDER BY tree, path", (snapshot.id,)).fetchall()
            assert rows == expected


def test_the_example_of_docs_versions_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    doc = (FORMAT_MD.parent / "versions.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", doc, re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/versions.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    shown = [line.strip("# ").strip() for line in code.splitlines() if line.strip().startswith("# sample")]
    assert [line.split() for line in printed[:len(shown)]] == [line.split() for line in shown]


def test_public_views_of_an_unchanged_snapshot_equal_the_current_ones(tmp_path: Path) -> None:
    """The views as of a snapshot are written their own way (no join on a union): they must agree."""
    with tensordb.open(tmp_path / "keys.tdb") as db:
        db["t"] = {"a": {"": {"b": 1, "x/y": [1, {"z~": 2}]}}, "": [3, np.arange(3)]}
        db["u"] = [{"k": None}, [[]]]
        snapshot = db.snapshot()
        with db.at(snapshot) as view:
            for relation in ("trees", "nodes", "arrays"):
                query = f"SELECT * FROM {relation} ORDER BY 1, 2"
                assert view.sql(query).fetchall() == db.sql(query).fetchall(), relation
