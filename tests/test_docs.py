"""docs/format.md stays true: every table and column is documented, and its reading example works."""

from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb
from tensordb import relations
from tensordb.storage import schema

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "format.md"
READING_HEADING = "## Reading a file without tensordb"

PUBLIC_VIEWS = {
    "trees": ["name", "root_kind", "n_nodes", "n_arrays", "logical_bytes", "created", "modified"],
    "nodes": ["tree", "path", "parent_path", "key", "idx", "kind", "value", "array_id"],
    "arrays": ["array_id", "dtype", "shape", "ndim", "size", "nbytes", "stored_bytes", "chunks", "codec", "refcount"],
    "snapshots": ["id", "created", "message", "parent_id", "tags"],
    "snapshot_nodes": ["snapshot", "tree", "path", "key", "kind", "value", "array_id"],
}


def _doc() -> str:
    return FORMAT_MD.read_text(encoding="utf-8")


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _columns(con: sqlite3.Connection, relation: str) -> list[str]:
    return [row[1] for row in con.execute(f"PRAGMA table_info({relation})")]


def _headings(doc: str) -> list[tuple[int, int, str]]:
    """(offset, level, title) of every Markdown heading outside fenced code blocks."""
    found, offset, fenced = [], 0, False
    for line in doc.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"(#{1,6}) (.*)", line)):
            found.append((offset, len(m.group(1)), m.group(2).strip()))
        offset += len(line)
    return found


def _section_at(doc: str, title: str) -> str:
    """The text under the heading ``title``, up to the next heading of the same or a higher level."""
    headings = _headings(doc)
    for i, (start, level, text) in enumerate(headings):
        if text == title:
            end = next((o for o, lv, _ in headings[i + 1 :] if lv <= level), len(doc))
            return doc[start:end]
    raise AssertionError(f"docs/format.md has no heading {title!r}")


def _section(doc: str, name: str) -> str:
    """The section of table or view ``name`` (its heading is exactly `name` in backticks)."""
    return _section_at(doc, f"`{name}`")


def _reading_section(doc: str) -> str:
    return _section_at(doc, READING_HEADING.lstrip("# "))


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


# -- the schema is documented -------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fresh") / "fresh.tdb"
    tensordb.open(path).close()
    return path


def test_every_internal_table_and_column_is_documented(fresh: Path) -> None:
    doc = _doc()
    con = _ro(fresh)
    try:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert set(schema.TABLES) <= tables
        for table in schema.TABLES:
            columns = _columns(con, table)
            assert columns, table
            section = _section(doc, table)
            for column in columns:
                assert re.search(rf"^\| `{re.escape(column)}` \|", section, re.M), (
                    f"column {table}.{column} is not in the column table of docs/format.md"
                )
    finally:
        con.close()


def test_public_views_have_exactly_the_spec_columns_and_are_documented(fresh: Path) -> None:
    doc = _doc()
    con = _ro(fresh)
    try:
        views = {name for (name,) in con.execute("SELECT name FROM sqlite_schema WHERE type = 'view'")}
        assert views == set(PUBLIC_VIEWS)
        for view, expected in PUBLIC_VIEWS.items():
            assert _columns(con, view) == expected
            section = _section(doc, view)
            for column in expected:
                assert re.search(rf"^\| `{re.escape(column)}` \|", section, re.M), (
                    f"column {view}.{column} is not in the column table of docs/format.md"
                )
    finally:
        con.close()


def test_connection_relations_are_documented(fresh: Path) -> None:
    doc = _doc()
    with tensordb.open(fresh, mode="r") as db:
        for view, expected in relations.CONNECTION_VIEW_NAMES.items():
            assert db.sql(f"SELECT * FROM {view}").columns == expected
            section = _section(doc, view)
            for column in expected:
                assert re.search(rf"^\| `{re.escape(column)}` \|", section, re.M), (
                    f"column {view}.{column} is not in the column table of docs/format.md"
                )
    definition = re.search(r"CREATE TEMP VIEW tree_chunks AS\n.*?;", doc, re.S)
    assert definition is not None
    code = relations.CONNECTION_VIEWS.replace("IF NOT EXISTS ", "")
    assert " ".join(definition.group(0).split()) in " ".join(code.split())  # the documented one is the real one


def test_indexes_triggers_and_identity_are_documented(fresh: Path) -> None:
    doc = _doc()
    con = _ro(fresh)
    try:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_schema WHERE type IN ('index', 'trigger')")]
        app_id = con.execute("PRAGMA application_id").fetchone()[0]
        version = con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()
    assert names
    for name in names:
        assert f"`{name}`" in doc, f"{name} is not documented"
    assert app_id == schema.APPLICATION_ID == 0x54444231
    assert "0x54444231" in doc and "`TDB1`" in doc
    assert version == schema.SCHEMA_VERSION
    assert f"PRAGMA user_version = {schema.SCHEMA_VERSION}" in doc


# -- the reading example works ----------------------------------------------------------------

TREE = "sample037"
RNG = np.random.default_rng(20240601)
BIG = RNG.random(262144, dtype=np.float32)  # 1 MiB: its chunk goes to a pack file
SMALL = np.arange(12, dtype="<i4").reshape(3, 4)  # compresses to a few dozen bytes: inline
EDGES = RNG.normal(size=(23, 17))  # chunks (8, 5): edge chunks padded with the fill value
RECORDS = np.array([(1.5, (1, -2)), (2.5, (3, 4)), (-1.0, (5, 6))], dtype=[("x", "<f4"), ("y", ">i2", (2,))])

EXPECTED: dict[str, np.ndarray[Any, Any]] = {
    "/data/points": BIG,
    "/data/cells": SMALL,
    "/data/edges": EDGES,
    "/data/records": RECORDS,
    "/data/flags": np.array([True, False, True]),
    "/data/complex": (np.arange(6) * (1 + 2j)).astype(">c16").reshape(2, 3),
    "/data/times": np.array(["2020-01-01T00:00", "2021-06-15T12:30"], dtype="datetime64[m]"),
    "/data/labels": np.array([b"ab", b"cde"], dtype="S3"),
    "/data/unicode": np.array(["hé", "wörld"], dtype=">U5"),
    "/data/zero_d": np.array(2.5),
    "/data/empty": np.zeros((5, 0), "u1"),
    "/data/zeros": np.zeros((4, 4), "f8"),  # all fill value: no chunk stored at all
}
SPARSE = np.full((10, 10), -7, dtype=">i2")
SPARSE[5, 6] = 3
EXPECTED["/data/sparse"] = SPARSE

SCALARS: dict[str, Any] = {
    "time": 51,
    "object_type": "PasteurVolumetricMesh",
    "negative_zero": -0.0,
    "nan": float("nan"),
    "inf": float("-inf"),
    "big_int": -(2**70) + 3,
    "flag": True,
    "nothing": None,
    "text": "héllo",
    "blob": b"\x00\x01\xff",
    "large_text": "tensordb " * 10_000,  # > 64 KiB: a zstd frame in node.exact
    "large_blob": bytes(range(256)) * 300,
    "a/b~c": 7,
    "": "empty key",
    "np_f32": np.float32(1.25),
    "np_f16_nan": np.float16("nan"),
    "np_i16": np.int16(-3),
    "np_u64": np.uint64(2**64 - 1),
    "np_bool": np.bool_(False),
    "np_str": np.str_("hé"),
    "np_bytes": np.bytes_(b"xy"),
    "np_complex": np.complex64(1 + 2j),
    "np_datetime": np.datetime64("2020-01-01"),
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed database built by tensordb, with inline and pack chunks, edge chunks and a sparse array."""
    path = tmp_path_factory.mktemp("sample") / "runs.tdb"
    db = tensordb.open(path, inline_threshold=1024)
    try:
        data = {k: v for k, v in EXPECTED.items() if k not in ("/data/edges", "/data/sparse")}
        db[TREE] = {
            **SCALARS,
            "list": [1, 2.5, None, "x", [True]],
            "data": {"object_type": "PasteurVolumetricMesh", **{k.rsplit("/", 1)[1]: v for k, v in data.items()}},
        }
        tree = db[TREE]
        tree.set("/data/edges", EDGES, chunks=(8, 5))
        sparse = tree.create_array("/data/sparse", shape=(10, 10), dtype=">i2", chunks=(4, 4), fill_value=-7)
        sparse[5, 6] = 3
        db["copy"] = db[TREE]  # shares every array
        db["other"] = [{"points": tree["/data/points"]}, "x"]
    finally:
        db.close()
    return path


def _example() -> dict[str, Any]:
    blocks = _blocks(_reading_section(_doc()), "python")
    assert len(blocks) >= 2, "the reading section needs the read_array and read_value blocks"
    namespace: dict[str, Any] = {"__name__": "format_md_example"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/format.md python block {i + 1}", "exec"), namespace)
    return namespace


def test_sample_has_inline_and_pack_chunks(sample: Path) -> None:
    con = _ro(sample)
    try:
        inline = con.execute("SELECT count(*) FROM chunk WHERE data IS NOT NULL").fetchone()[0]
        packed = con.execute("SELECT count(*) FROM chunk WHERE pack_id IS NOT NULL").fetchone()[0]
        points = con.execute(
            "SELECT c.pack_id FROM nodes n JOIN chunk_ref r ON r.array_id = n.array_id "
            "JOIN chunk c ON c.chunk_id = r.chunk_id WHERE n.tree = ? AND n.path = '/data/points'",
            (TREE,),
        ).fetchall()
        cells = con.execute(
            "SELECT c.data IS NOT NULL FROM nodes n JOIN chunk_ref r ON r.array_id = n.array_id "
            "JOIN chunk c ON c.chunk_id = r.chunk_id WHERE n.tree = ? AND n.path = '/data/cells'",
            (TREE,),
        ).fetchall()
    finally:
        con.close()
    assert inline > 0 and packed > 0
    assert points and all(pack_id is not None for (pack_id,) in points)
    assert cells == [(1,)]
    assert list((sample.parent / (sample.name + "-packs")).glob("*.pack"))


@pytest.mark.parametrize("pointer", sorted(EXPECTED))
def test_read_array_example_rebuilds_every_array(sample: Path, pointer: str) -> None:
    read_array = _example()["read_array"]
    expected = EXPECTED[pointer]
    for tree in (TREE, "copy"):
        got = read_array(str(sample), tree, pointer)
        assert isinstance(got, np.ndarray)
        assert got.dtype == expected.dtype and got.dtype.str == expected.dtype.str
        assert got.shape == expected.shape
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes()
    with tensordb.open(sample, mode="r") as db:
        assert np.asarray(db[TREE][pointer]).tobytes() == got.tobytes()


def test_read_array_example_accepts_a_path_object_and_a_list_root(sample: Path) -> None:
    read_array = _example()["read_array"]
    assert read_array(sample, "other", "/0/points").tobytes() == BIG.tobytes()
    with pytest.raises(KeyError):
        read_array(str(sample), TREE, "/time")


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (float, np.floating)) and math.isnan(a):
        return bool(np.isnan(b)) and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    if isinstance(a, (float, np.floating)):
        return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


@pytest.mark.parametrize("key", list(SCALARS))
def test_read_value_example_decodes_every_scalar(sample: Path, key: str) -> None:
    read_value = _example()["read_value"]
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    got = read_value(str(sample), TREE, pointer)
    assert _same(got, SCALARS[key]), (got, SCALARS[key])
    with tensordb.open(sample, mode="r") as db:
        assert _same(got, db[TREE][pointer])


def test_shell_queries_run(sample: Path) -> None:
    blocks = _blocks(_reading_section(_doc()), "sql")
    assert blocks
    con = _ro(sample)
    results = {}
    try:
        for block in blocks:
            for statement in filter(None, (s.strip() for s in block.split(";"))):
                sql = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
                if sql:
                    results[sql] = con.execute(sql).fetchall()
    finally:
        con.close()
    assert all(rows for rows in results.values()), [sql for sql, rows in results.items() if not rows]


# -- the public relations read the same through tensordb and through sqlite3 ----------------


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM trees ORDER BY name",
        "SELECT * FROM nodes ORDER BY tree, path",
        "SELECT * FROM arrays ORDER BY array_id",
        "SELECT tree, path, value FROM nodes WHERE key = 'time' AND kind IN ('int', 'float') AND value > 50 "
        "ORDER BY tree",
    ],
)
def test_public_relations_read_the_same_through_sqlite3(sample: Path, query: str) -> None:
    with tensordb.open(sample, mode="r") as db:
        result = db.sql(query)
        ours = result.fetchall()
        columns = result.columns
        con = _ro(sample)  # while tensordb has the file open
        try:
            cursor = con.execute(query)
            theirs = cursor.fetchall()
            their_columns = tuple(d[0] for d in cursor.description)
        finally:
            con.close()
    assert ours, query
    assert columns == their_columns
    assert ours == theirs


def test_public_relations_after_a_commit_with_the_writer_open(tmp_path: Path) -> None:
    path = tmp_path / "live.tdb"
    with tensordb.open(path, inline_threshold=1024) as db:
        db["a"] = {"time": 60, "x": np.arange(5), "big": BIG}
        db["b"] = {"time": 40, "x": db["a"]["/x"], "l": [1, "two", None]}
        db.snapshot("both")
        db.tag("first")
        db["b"]["time"] = 41
        for view in PUBLIC_VIEWS:
            query = f"SELECT * FROM {view} ORDER BY 1, 2"
            ours = db.sql(query).fetchall()
            con = _ro(path)
            try:
                theirs = con.execute(query).fetchall()
            finally:
                con.close()
            assert ours and ours == theirs, view
