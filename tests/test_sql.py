"""SQL over the metadata: the cookbook of docs/format.md, the public relations, read-only db.sql(), db.glob().

Every cookbook query is checked against a computation in Python over the values that were
written (the synthetic mesh samples of ``tensordb.demo`` plus copies and a few odd trees), not
only run. The public relations read the same through the standard-library ``sqlite3`` module,
their look-ups use indexes, writes through ``db.sql`` are refused, and restructuring shows up in
``nodes`` at once, inside the transaction that made it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
import sqlite3
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb
from tensordb.demo import synthetic_samples

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "format.md"
COOKBOOK_HEADING = "## SQL cookbook"
SIMS, STEPS = 4, 5
SURFACES = ("inlet", "outlet", "wall", "obstacle")
VOLUMETRIC = "PasteurVolumetricMesh"
FIRST = "bm01-sim000-step000"  # the tree the one-tree cookbook queries name
# whole-tree copies, by reference: (source, copy, new time or None)
COPIES = [
    ("bm01-sim000-step004", "bm01-sim000-step010", 51),  # time > 50, but its internal mesh has 3500 points
    ("bm01-sim002-step004", "bm01-sim002-step010", 51),  # time > 50 and 4278 points
    ("bm01-sim003-step004", "bm01-sim003-step012", 61),  # time > 50 and 4667 points
    ("bm01-sim001-step000", "reference", None),
]
TOUCHED = [FIRST, "odd", "bm01-sim002-step003"]  # modified last, in this order


# -- the database and the values it holds --------------------------------------------------------


def _copy(value: Any) -> Any:
    """A copy of the containers that keeps the very same numpy arrays (what a copy by reference is)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _odd_tree() -> dict[str, Any]:
    """Keys with GLOB specials, an empty key, escapes, a string 'time', lists, and a deep point_data/p."""
    return {
        "time": "late",  # TEXT sorts after numbers: value > 50 is true for it without a kind filter
        "data": {
            "a[1]": {
                "points": np.arange(6.0).reshape(2, 3),
                "deep": {"point_data": {"p": np.ones((2, 1), "f4")}},  # GLOB '/data/*/point_data/p' matches
            },
            "b?": 1,
            "c]x": [1, 2.5, None, True, "s"],
            "*star": {"p": np.float32(1.5)},
            "": {"p": 1},
            "x~y/z": "escaped",
            "points": np.zeros(3, "f4"),  # '/data/**/points' with ** as zero segments
            "Point_Data": {"P": b"\x00\x01"},
        },
        "nested": {"data": {"m": {"point_data": {"p": np.ones((3, 1), "f4")}}}},
        "empty": [],
    }


@dataclass(frozen=True)
class Fact:
    """One node, as computed in Python from a written value."""

    tree: str
    path: str
    parent_path: str | None
    key: str | None
    idx: int | None
    kind: str
    value: Any  # the scalar as SQL holds it (bool as 0/1); None for containers and arrays
    length: int | None  # number of children of a dict or list
    array: Any  # the numpy array (model) or tensordb.Array handle (loaded), else None


def _kind(value: Any) -> tuple[str, Any]:
    if value is None:
        return "null", None
    if isinstance(value, (bool, np.bool_)):
        return "bool", int(value)
    if isinstance(value, (int, np.integer)):
        return "int", int(value)
    if isinstance(value, (float, np.floating)):
        return "float", None if math.isnan(value) else float(value)
    if isinstance(value, (str, np.str_)):
        return "str", str(value)
    if isinstance(value, (bytes, np.bytes_)):
        return "bytes", bytes(value)
    if isinstance(value, dict):
        return "dict", None
    if isinstance(value, list):
        return "list", None
    assert isinstance(value, (np.ndarray, tensordb.Array)), type(value)
    return "array", None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def walk(tree: str, value: Any, path: str = "", parent: str | None = None, key: str | None = None,
         idx: int | None = None) -> Iterator[Fact]:
    kind, scalar = _kind(value)
    length = len(value) if kind in ("dict", "list") else None
    yield Fact(tree, path, parent, key, idx, kind, scalar, length, value if kind == "array" else None)
    if kind == "dict":
        for k, v in value.items():
            yield from walk(tree, v, f"{path}/{_escape(k)}", path, k, None)
    elif kind == "list":
        for i, v in enumerate(value):
            yield from walk(tree, v, f"{path}/{i}", path, None, i)


def _shape(shape: tuple[int, ...]) -> str:
    return json.dumps(list(shape))


@dataclass
class Built:
    path: Path
    db: tensordb.Database
    model: dict[str, Any]  # tree name -> the value written (copies share the numpy arrays of their source)
    window: tuple[float, float]  # wall clock before the first write and after the last one
    facts: list[Fact]  # every node of every tree, computed from `model`
    handles: dict[tuple[str, str], tensordb.Array]  # (tree, path) -> the Array that load(lazy=True) gives

    def array_id(self, fact: Fact) -> int:
        return self.handles[fact.tree, fact.path].array_id

    def stored(self, fact: Fact) -> int:
        return self.handles[fact.tree, fact.path].stored_nbytes

    def tree_facts(self, tree: str) -> list[Fact]:
        return [f for f in self.facts if f.tree == tree]

    def arrays(self) -> list[Fact]:
        return [f for f in self.facts if f.kind == "array"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    path = tmp_path_factory.mktemp("sql") / "samples.tdb"
    model: dict[str, Any] = {}
    start = time.time()
    db = tensordb.open(path, mode="w", inline_threshold=16384)  # some chunks inline, some in packs
    try:
        for name, sample in synthetic_samples(SIMS, STEPS):
            db[name] = sample
            model[name] = sample
        for source, name, new_time in COPIES:
            db[name] = db[source]
            model[name] = _copy(model[source])
            if new_time is not None:
                db[name]["time"] = new_time
                model[name]["time"] = new_time
        # a tree built from subtrees of another one (by reference), with lists and no volumetric mesh
        # (its source is also copied whole to "reference": those arrays have three references)
        source_tree, source = db["bm01-sim001-step000"], model["bm01-sim001-step000"]
        db["bm01-sim001-surfaces"] = {
            "time": 1,
            "data": {m: source_tree[f"/data/{m}"] for m in SURFACES},
            "probes": [[0.0, 0.5], [1.0, 0.5, 2.0], []],
        }
        model["bm01-sim001-surfaces"] = {
            "time": 1,
            "data": {m: _copy(source["data"][m]) for m in SURFACES},
            "probes": [[0.0, 0.5], [1.0, 0.5, 2.0], []],
        }
        db["odd"] = model["odd"] = _odd_tree()
        db.gc()
        for name in TOUCHED:
            time.sleep(0.01)  # modified has millisecond resolution
            db[name]["reviewed"] = True
            model[name]["reviewed"] = True
        end = time.time()
        facts = [f for name in db for f in walk(name, model[name])]
        handles = {
            (f.tree, f.path): f.array
            for name in db
            for f in walk(name, db[name].load(lazy=True))
            if f.kind == "array"
        }
        yield Built(path, db, model, (start, end), facts, handles)
    finally:
        db.close()


def test_the_database_holds_the_model(built: Built) -> None:
    """The Python side of every check below describes what the database really holds."""
    db = built.db
    assert sorted(db) == sorted(built.model)
    loaded = [f for name in db for f in walk(name, db[name].load(lazy=True))]
    strip = [(f.tree, f.path, f.parent_path, f.key, f.idx, f.kind, f.value, f.length) for f in built.facts]
    assert strip == [(f.tree, f.path, f.parent_path, f.key, f.idx, f.kind, f.value, f.length) for f in loaded]
    for fact in built.arrays():
        handle = built.handles[fact.tree, fact.path]
        assert handle.shape == fact.array.shape and handle.dtype.str == fact.array.dtype.str
    np.testing.assert_array_equal(np.asarray(db[FIRST]["/data/internal/points"]),
                                  built.model[FIRST]["data"]["internal"]["points"])
    # copies by reference share arrays, separate writes do not: the same partition of array nodes
    by_object: dict[int, set[tuple[str, str]]] = defaultdict(set)
    by_id: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for fact in built.arrays():
        by_object[id(fact.array)].add((fact.tree, fact.path))
        by_id[built.array_id(fact)].add((fact.tree, fact.path))
    assert sorted(map(sorted, by_object.values())) == sorted(map(sorted, by_id.values()))
    assert any(len(group) > 1 for group in by_id.values())
    assert db.stats()["arrays"] == len(by_id)
    assert db.check().ok


# -- the cookbook ---------------------------------------------------------------------------------


def _cookbook() -> dict[str, str]:
    """marker -> query, for every ``<!-- query: NAME -->`` + sql block of the cookbook section."""
    doc = FORMAT_MD.read_text(encoding="utf-8")
    start = doc.index(COOKBOOK_HEADING + "\n")
    end = doc.find("\n## ", start + len(COOKBOOK_HEADING))
    section = doc[start : end if end >= 0 else len(doc)]
    found = re.findall(r"<!-- query: ([a-z0-9-]+) -->\n```sql\n(.*?)^```", section, re.S | re.M)
    queries = dict(found)
    assert len(queries) == len(found), "cookbook markers must be unique"
    markers = re.findall(r"<!-- query: ([a-z0-9-]+) -->", section)
    assert markers == [marker for marker, _ in found], "every marker must be right before an sql block"
    return {marker: sql.strip() for marker, sql in queries.items()}


COOKBOOK = _cookbook()
Check = Callable[[Built, list[tuple[Any, ...]], tuple[str, ...]], None]
CHECKS: dict[str, Check] = {}


def check(marker: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[marker] = fn
        return fn

    return register


def test_every_cookbook_query_is_checked() -> None:
    assert len(COOKBOOK) >= 10
    assert set(COOKBOOK) == set(CHECKS)
    doc = FORMAT_MD.read_text(encoding="utf-8")
    assert doc.index("## Public relations") < doc.index(COOKBOOK_HEADING) < doc.index(
        "## Reading a file without tensordb"
    )
    for marker in COOKBOOK:  # each query comes with a sentence saying what it answers
        before = doc[: doc.index(f"<!-- query: {marker} -->")].rstrip().rsplit("\n\n", 1)[-1]
        assert before.rstrip().endswith(("?", ".", ":")) and not before.startswith(("```", "#", "<!--")), marker
    for sql in COOKBOOK.values():  # the public relations only
        tables = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", sql, re.I)) - {"sim_trees", "sim_arrays"}
        assert tables <= {"trees", "nodes", "arrays"}, tables


@pytest.mark.parametrize("marker", sorted(COOKBOOK))
def test_cookbook_query_result(built: Built, marker: str) -> None:
    result = built.db.sql(COOKBOOK[marker])
    rows = result.fetchall()
    assert rows, f"{marker}: the test database should give rows"
    CHECKS[marker](built, rows, result.columns)


def _connection_cookbook() -> dict[str, str]:
    """marker -> query, for the ``<!-- connection-query: NAME -->`` blocks (over the per-connection relations)."""
    doc = FORMAT_MD.read_text(encoding="utf-8")
    found = re.findall(r"<!-- connection-query: ([a-z0-9-]+) -->\n```sql\n(.*?)^```", doc, re.S | re.M)
    assert len(found) == len(re.findall(r"<!-- connection-query: ", doc))
    return {marker: sql.strip() for marker, sql in found}


CONNECTION_COOKBOOK = _connection_cookbook()


def _physical(built: Built, trees_sql: str, params: tuple[Any, ...] = ()) -> tuple[int, int]:
    """(chunks, bytes) of the distinct chunks the selected trees use, from the internal tables."""
    row = built.db.sql(
        "SELECT count(*), coalesce(sum(size), 0) FROM chunk WHERE chunk_id IN (SELECT r.chunk_id FROM chunk_ref r "
        f"JOIN node n ON n.array_id = r.array_id JOIN tree t ON t.tree_id = n.tree_id WHERE {trees_sql})", params
    ).fetchall()[0]
    return int(row[0]), int(row[1])


def test_connection_cookbook_stored_bytes_per_simulation(built: Built) -> None:
    result = built.db.sql(CONNECTION_COOKBOOK["stored-per-simulation"])
    rows = result.fetchall()
    assert result.columns == ("simulation", "chunks", "stored_bytes")
    assert [r[0] for r in rows] == [f"bm01-sim{s:03d}" for s in range(SIMS)]
    for simulation, chunks, stored in rows:
        assert (chunks, stored) == _physical(built, "t.name GLOB ?", (f"{simulation}-step*",))
        per_array = built.db.sql(
            "SELECT sum(a.stored_bytes) FROM (SELECT DISTINCT array_id FROM nodes WHERE tree GLOB ?) n "
            "JOIN arrays a ON a.array_id = n.array_id", (f"{simulation}-step*",)).fetchall()[0][0]
        assert stored < per_array  # the geometry shared by the time steps counts once, not once per array


def test_connection_cookbook_own_bytes(built: Built) -> None:
    result = built.db.sql(CONNECTION_COOKBOOK["own-bytes"])
    rows = result.fetchall()
    assert result.columns == ("tree", "stored_bytes", "own_bytes") and len(rows) == 5
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
    for tree, stored, own in rows:
        assert stored == _physical(built, "t.name = ?", (tree,))[1]
        others = _physical(built, "t.name != ?", (tree,))[1]
        everything = _physical(built, "1")[1]
        assert own == everything - others  # the bytes only this tree uses


def test_tree_storage_adds_up(built: Built) -> None:
    rows = built.db.sql("SELECT tree, chunks, stored_bytes, own_bytes, shared_bytes FROM tree_storage").fetchall()
    assert sorted(r[0] for r in rows) == sorted(built.model)
    for tree, chunks, stored, own, shared in rows:
        assert (chunks, stored) == _physical(built, "t.name = ?", (tree,))
        assert own + shared == stored
    by_tree = {r[0]: r for r in rows}
    for _, name, _ in COPIES:
        assert by_tree[name][3] < by_tree[name][2]  # a copy shares its arrays with its source


def test_connection_relations_leave_the_file_alone(built: Built) -> None:
    con = sqlite3.connect(f"file:{built.path}?mode=ro", uri=True)
    try:
        names = {n for (n,) in con.execute("SELECT name FROM sqlite_schema")}
    finally:
        con.close()
    assert not names & {"tree_chunks", "tree_storage"}  # TEMP views: not in the file


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@check("time-filter")
def _time_filter(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    expected = sorted(
        (f.tree, f.value) for f in built.facts
        if f.key == "time" and f.kind in ("int", "float") and f.value is not None and f.value > 50
    )
    assert columns == ("tree", "time")
    assert rows == expected
    assert {tree for tree, _ in rows} == {name for _, name, t in COPIES if t is not None}
    assert "odd" not in {tree for tree, _ in rows}  # its time is the string 'late'


@check("volumetric-mesh")
def _volumetric_mesh(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    by_path = {(f.tree, f.path): f for f in built.facts}
    expected = []
    for name, value in built.model.items():
        time_value = value.get("time")
        if not (_is_number(time_value) and time_value > 50):
            continue
        for f in built.tree_facts(name):
            if f.key == "object_type" and f.value == VOLUMETRIC:
                points = by_path.get((name, f"{f.parent_path}/points"))
                if points is not None and points.kind == "array" and points.array.shape[0] > 4000:
                    expected.append((name, time_value, f.parent_path, points.array.shape[0]))
    assert columns == ("tree", "time", "mesh", "n_points")
    assert rows == sorted(expected)
    # 3500 + (sim * 389) % 2200 points in simulation `sim`: only simulations 2 and 3 have more than 4000
    assert [row[0] for row in rows] == ["bm01-sim002-step010", "bm01-sim003-step012"]


def _volumetric_trees(built: Built) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for f in built.facts:
        if f.key == "object_type" and f.value == VOLUMETRIC:
            counts[f.tree] += 1
    return counts


@check("object-type")
def _object_type(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    assert columns == ("tree", "n_meshes")
    assert rows == sorted(_volumetric_trees(built).items())


@check("missing-object-type")
def _missing_object_type(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    assert columns == ("name",)
    assert rows == [(name,) for name in sorted(set(built.model) - set(_volumetric_trees(built)))]
    assert rows == [("bm01-sim001-surfaces",), ("odd",)]


@check("shapes-under-prefix")
def _shapes_under_prefix(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    expected = sorted(
        (f.path, f.array.dtype.str, _shape(f.array.shape), f.array.nbytes)
        for f in built.tree_facts(FIRST) if f.kind == "array" and f.path.startswith("/data/")
    )
    assert columns == ("path", "dtype", "shape", "nbytes")
    assert rows == expected
    assert len(rows) == 7 * 5  # points, connectivity, cell types, 2 cell and 2 point fields per mesh
    assert ("/data/internal/points", "<f4", "[3500, 3]", 3500 * 3 * 4) in rows


@check("subtree-range")
def _subtree_range(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    expected = sorted(
        (f.path, f.kind, f.value, built.array_id(f) if f.kind == "array" else None)
        for f in built.tree_facts(FIRST) if f.path.startswith("/data/internal/")
    )
    assert columns == ("path", "kind", "value", "array_id")
    assert rows == expected
    assert ("/data/internal/object_type", "str", VOLUMETRIC, None) in rows


@check("point-data-p")
def _point_data_p(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    # GLOB's * also matches '/': the same as fnmatch's, not one segment
    expected = sorted(
        (f.tree, f.path, f.array.dtype.str, _shape(f.array.shape)) for f in built.arrays()
        if fnmatch.fnmatchcase(f.path, "/data/*/point_data/p")
    )
    assert columns == ("tree", "path", "dtype", "shape")
    assert rows == expected
    assert ("odd", "/data/a[1]/deep/point_data/p", "<f4", "[2, 1]") in rows
    assert not any(path.startswith("/nested/") for _, path, _, _ in rows)
    samples = [(name, f"/data/{mesh}/point_data/p") for name in built.model if name.startswith("bm01-")
               for mesh in built.model[name]["data"]]
    assert {row[:2] for row in rows} >= set(samples)


@check("list-lengths")
def _list_lengths(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    expected = sorted((f.tree, f.path, f.length) for f in built.facts if f.kind == "list")
    assert columns == ("tree", "path", "length")
    assert rows == expected
    assert ("odd", "/empty", 0) in rows and ("bm01-sim001-surfaces", "/probes/1", 3) in rows


@check("bytes-per-tree")
def _bytes_per_tree(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    expected = []
    for name in sorted(built.model):
        facts = built.tree_facts(name)
        arrays = [f for f in facts if f.kind == "array"]
        expected.append((name, len(facts), len(arrays), sum(f.array.nbytes for f in arrays),
                         sum(built.stored(f) for f in arrays)))
    assert columns == ("name", "n_nodes", "n_arrays", "logical_bytes", "stored_bytes")
    assert rows == expected
    assert sum(row[3] for row in rows) == built.db.stats()["logical_bytes"]


@check("bytes-per-simulation")
def _bytes_per_simulation(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    trees: dict[str, list[str]] = defaultdict(list)
    for name in built.model:
        if name.startswith("bm01-sim"):
            trees[name[:11]].append(name)
    expected = []
    for simulation, names in sorted(trees.items()):
        arrays = [f for f in built.arrays() if f.tree in names]
        distinct = {built.array_id(f): f for f in arrays}
        expected.append((
            simulation, len(names), sum(f.array.nbytes for f in arrays), len(distinct),
            sum(f.array.nbytes for f in distinct.values()), sum(built.stored(f) for f in distinct.values()),
        ))
    assert columns == ("simulation", "n_trees", "logical_bytes", "n_arrays", "array_bytes", "stored_bytes")
    assert rows == expected
    assert [row[0] for row in rows] == [f"bm01-sim{sim:03d}" for sim in range(SIMS)]
    assert all(row[2] > row[4] for row in rows)  # every simulation has a copy sharing its arrays


@check("largest-arrays")
def _largest_arrays(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    ranked = sorted(built.arrays(), key=lambda f: (-f.array.nbytes, f.tree, f.path))[:10]
    expected = [(f.tree, f.path, f.array.dtype.str, _shape(f.array.shape), f.array.nbytes, built.stored(f))
                for f in ranked]
    assert columns == ("tree", "path", "dtype", "shape", "nbytes", "stored_bytes")
    assert rows == expected


@check("shared-arrays")
def _shared_arrays(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    groups: dict[int, list[Fact]] = defaultdict(list)
    for fact in built.arrays():  # sharing as written: the same numpy object in several places
        groups[id(fact.array)].append(fact)
    expected = []
    for facts in groups.values():
        if len(facts) > 1:
            trees = {f.tree for f in facts}
            expected.append((built.array_id(facts[0]), len(facts), _shape(facts[0].array.shape), len(trees), trees))
    assert columns == ("array_id", "refcount", "shape", "n_trees", "trees")
    assert [(*row[:4], set(row[4].split(","))) for row in rows] == sorted(expected, key=lambda r: r[0])
    assert max(row[1] for row in rows) == 3  # bm01-sim001-step000's surfaces: the step, reference and surfaces
    assert max(row[3] for row in rows) == 3


@check("dedup")
def _dedup(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    arrays = built.arrays()
    distinct = {built.array_id(f): f for f in arrays}
    stats = built.db.stats()
    assert columns == ("array_nodes", "arrays", "logical_bytes", "array_bytes", "stored_bytes_per_array")
    assert rows == [(
        len(arrays), len(distinct), sum(f.array.nbytes for f in arrays),
        sum(f.array.nbytes for f in distinct.values()), sum(built.stored(f) for f in distinct.values()),
    )]
    (nodes, n_arrays, logical, array_bytes, stored_per_array), = rows
    assert n_arrays == stats["arrays"] and logical == stats["logical_bytes"]
    assert logical > array_bytes  # sharing by reference
    assert stored_per_array > stats["stored_bytes"]  # chunk dedup: the geometry of each time step is stored once


def _timestamp(text: str) -> float:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@check("recently-modified")
def _recently_modified(built: Built, rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
    assert columns == ("name", "modified")
    assert [name for name, _ in rows] == TOUCHED[::-1]
    stamps = [_timestamp(modified) for _, modified in rows]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)
    start, end = built.window
    assert all(start - 0.01 <= s <= end + 0.01 for s in stamps)


# -- the same rows through the standard-library sqlite3 module -------------------------------------


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _both(built: Built, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, Any]:
    result = built.db.sql(query, params)
    ours = (result.columns, result.fetchall())
    con = _ro(built.path)  # while tensordb has the file open
    try:
        cursor = con.execute(query, params)
        theirs = (tuple(d[0] for d in cursor.description), cursor.fetchall())
    finally:
        con.close()
    return ours, theirs


def _expected_view(built: Built, view: str) -> list[tuple[Any, ...]]:
    """The rows of a public view, from the written values (created/modified come from the file)."""
    if view == "nodes":
        return sorted(
            (f.tree, f.path, f.parent_path, f.key, f.idx, f.kind, f.value,
             built.array_id(f) if f.kind == "array" else None)
            for f in built.facts
        )
    rows: list[tuple[Any, ...]] = []
    if view == "trees":
        for name in sorted(built.model):
            facts = built.tree_facts(name)
            arrays = [f for f in facts if f.kind == "array"]
            rows.append((name, facts[0].kind, len(facts), len(arrays), sum(f.array.nbytes for f in arrays)))
        return rows
    refs: dict[int, list[Fact]] = defaultdict(list)
    for fact in built.arrays():
        refs[built.array_id(fact)].append(fact)
    for array_id, facts in sorted(refs.items()):
        a, handle = facts[0].array, built.handles[facts[0].tree, facts[0].path]
        rows.append((array_id, a.dtype.str, _shape(a.shape), a.ndim, a.size, a.nbytes, handle.stored_nbytes,
                     _shape(handle.chunks), len(facts)))
    return rows


VIEW_QUERIES = {
    "trees": "SELECT * FROM trees ORDER BY name",
    "nodes": "SELECT * FROM nodes ORDER BY tree, path",
    "arrays": "SELECT * FROM arrays ORDER BY array_id",
}


@pytest.mark.parametrize("view", sorted(VIEW_QUERIES))
def test_public_view_in_full_is_the_same_through_sqlite3(built: Built, view: str) -> None:
    ours, theirs = _both(built, VIEW_QUERIES[view])
    assert ours == theirs
    columns, rows = ours
    if view == "trees":
        assert [row[:5] for row in rows] == _expected_view(built, view)
        start, end = built.window
        for row in rows:
            created, modified = _timestamp(row[5]), _timestamp(row[6])
            assert start - 0.01 <= created <= modified <= end + 0.01
    elif view == "arrays":
        assert [row[:8] + row[9:] for row in rows] == _expected_view(built, view)
        codecs = {row[8] for row in rows}
        assert {json.loads(c)["name"] for c in codecs} == {tensordb.Codec().name}
    else:
        assert rows == _expected_view(built, view)


@pytest.mark.parametrize("marker", sorted(COOKBOOK))
def test_cookbook_query_is_the_same_through_sqlite3(built: Built, marker: str) -> None:
    ours, theirs = _both(built, COOKBOOK[marker])
    assert ours[1]
    assert ours == theirs


def test_filter_with_parameters_is_the_same_through_sqlite3(built: Built) -> None:
    query = "SELECT tree, path, value FROM nodes WHERE key = ? AND kind IN ('int', 'float') AND value > ? ORDER BY tree"
    ours, theirs = _both(built, query, ("time", 50))
    assert ours == theirs and len(ours[1]) == 3


# -- indexes ---------------------------------------------------------------------------------------


def _plan(built: Built, query: str, params: tuple[Any, ...] = ()) -> list[str]:
    return [str(row[3]) for row in built.db._store.conn.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()]


def _node_scans(plan: list[str]) -> list[str]:
    """Plan lines that read the node table, or a node index, from end to end (n, p, r: node in the views)."""
    return [line for line in plan if re.match(r"SCAN (n|p|r|node|nodes)\b", line) or "AUTOMATIC" in line]


LOOKUPS = {
    "tree": ("SELECT path, kind, value FROM nodes WHERE tree = ?", ("bm01-sim001-step002",),
             "node_by_path (tree_id=?)"),
    "tree and path": ("SELECT kind, value FROM nodes WHERE tree = ? AND path = ?", ("bm01-sim001-step002", "/time"),
                      "node_by_path (tree_id=? AND path=?)"),
    "path across trees": ("SELECT tree, value FROM nodes WHERE path = ?", ("/data/internal/object_type",),
                          "node_by_path_across_trees (path=?)"),
    "path prefix": ("SELECT tree, path FROM nodes WHERE path GLOB '/data/*'", (),
                    "node_by_path_across_trees (path>? AND path<?)"),
    "path range": ("SELECT tree, path FROM nodes WHERE path >= '/data/' AND path < '/data0'", (),
                   "node_by_path_across_trees (path>? AND path<?)"),
    "tree and path prefix": ("SELECT path FROM nodes WHERE tree = ? AND path GLOB '/data/internal/*'",
                             ("bm01-sim001-step002",), "node_by_path (tree_id=? AND path>? AND path<?)"),
    "key": ("SELECT tree, path, value FROM nodes WHERE key = ?", ("object_type",), "node_by_key_value (key=?)"),
    "key and value": ("SELECT tree, path FROM nodes WHERE key = ? AND value = ?", ("object_type", VOLUMETRIC),
                      "node_by_key_value (key=? AND value=?)"),
    "key and value range": ("SELECT tree, value FROM nodes WHERE key = ? AND value > ?", ("time", 50),
                            "node_by_key_value (key=? AND value>?)"),
}


@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
def test_lookups_use_an_index(built: Built, lookup: str) -> None:
    query, params, index = LOOKUPS[lookup]
    plan = _plan(built, query, params)
    assert not [line for line in plan if line.startswith("SCAN")], plan
    assert any(index in line for line in plan), plan
    assert built.db.sql(query, params).fetchall()


def test_like_is_not_a_prefix_search(built: Built) -> None:
    """What the cookbook says about LIKE: it scans every node and ignores case."""
    plan = _plan(built, "SELECT tree, path FROM nodes WHERE path LIKE '/data/%'")
    assert _node_scans(plan), plan
    like = built.db.sql("SELECT count(*) FROM nodes WHERE path LIKE '/DATA/%'").fetchall()
    glob = built.db.sql("SELECT count(*) FROM nodes WHERE path GLOB '/DATA/*'").fetchall()
    assert like[0][0] > 0 and glob == [(0,)]


# marker -> (index the plan must use, plan lines allowed to start with SCAN)
TREE_TABLE_SCAN = r"SCAN t( USING (COVERING )?INDEX sqlite_autoindex_tree_1)?$"  # listing the trees
MAIN_QUERIES: dict[str, tuple[str, str | None]] = {
    "time-filter": ("node_by_key_value (key=? AND value>?)", None),
    "volumetric-mesh": ("node_by_path (tree_id=? AND path=?)", None),
    "object-type": ("node_by_key_value (key=? AND value=?)", None),
    "missing-object-type": ("node_by_key_value (key=? AND value=?)", TREE_TABLE_SCAN),
    "shapes-under-prefix": ("node_by_path (tree_id=? AND path>? AND path<?)", None),
    "subtree-range": ("node_by_path (tree_id=? AND path>? AND path<?)", None),
    "point-data-p": ("node_by_path_across_trees (path>? AND path<?)", None),
    "bytes-per-tree": ("node_by_path (tree_id=?)", TREE_TABLE_SCAN),
    "recently-modified": ("", r"SCAN t$"),
}


@pytest.mark.parametrize("marker", sorted(MAIN_QUERIES))
def test_cookbook_query_plan_uses_indexes(built: Built, marker: str) -> None:
    index, allowed = MAIN_QUERIES[marker]
    plan = _plan(built, COOKBOOK[marker])
    scans = [line for line in plan if line.startswith("SCAN") and not (allowed and re.match(allowed, line))]
    assert not scans, plan
    assert not _node_scans(plan), plan
    assert any(index in line for line in plan), plan


def test_list_lengths_find_the_items_by_index(built: Built) -> None:
    """No index on kind: finding the lists reads every node once, but each list's items are a range search."""
    plan = _plan(built, COOKBOOK["list-lengths"])
    assert len([line for line in plan if line.startswith("SCAN")]) == 1, plan
    assert any("node_by_path (tree_id=? AND path>? AND path<?)" in line for line in plan), plan
    assert not [line for line in plan if "AUTOMATIC" in line], plan


@pytest.mark.parametrize("marker", sorted(set(COOKBOOK) - set(MAIN_QUERIES)))
def test_cookbook_aggregate_plans_build_no_index_over_nodes(built: Built, marker: str) -> None:
    """The whole-database aggregates read what they must, but never build a temporary index over nodes."""
    plan = _plan(built, COOKBOOK[marker])
    assert not [line for line in plan if re.match(r"SCAN (n|p|r)$", line)], plan
    assert not [line for line in plan if "AUTOMATIC" in line and "(simulation=?)" not in line], plan


# -- db.sql is read-only ----------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Path, tensordb.Database]]:
    path = tmp_path / "small.tdb"
    db = tensordb.open(path, mode="w", inline_threshold=1024)
    db["a"] = {"time": 60, "x": np.arange(5), "big": np.random.default_rng(1).random(4096), "l": [1, "two", None]}
    db["b"] = {"time": 40, "x": db["a"]["/x"]}
    try:
        yield path, db
    finally:
        db.close()


def _files(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes (SQLite's -shm index changes on reads too)."""
    return {
        str(p.relative_to(folder)): "" if p.name.endswith("-shm") else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _state(db: tensordb.Database) -> list[Any]:
    conn = db._store.conn
    return [conn.execute(q).fetchall() for q in (
        "SELECT type, name, sql FROM sqlite_schema ORDER BY name", "PRAGMA user_version", "PRAGMA application_id",
        "PRAGMA journal_mode", "PRAGMA foreign_keys", "PRAGMA query_only", "PRAGMA database_list",
        "SELECT * FROM nodes ORDER BY tree, path", "SELECT * FROM meta ORDER BY key",
    )]


WRITES = {
    "insert": "INSERT INTO meta(key, value) VALUES ('x', 1)",
    "insert into a view": "INSERT INTO nodes(tree, path) VALUES ('x', '')",
    "delete from a view": "DELETE FROM trees",
    "update a view": "UPDATE arrays SET refcount = 0",
    "delete from a view with a CTE": "/* c */ WITH v(n) AS (SELECT 1) DELETE FROM nodes",
    "delete from the schema": "DELETE FROM sqlite_master",
    "insert into a missing table": "INSERT INTO no_such_table VALUES (1)",
    "insert with a CTE": "WITH v(k) AS (SELECT 'x') INSERT INTO meta(key, value) SELECT k, 1 FROM v",
    "replace": "REPLACE INTO meta(key, value) VALUES ('inline_threshold', 1)",
    "update": "UPDATE node SET value = 99 WHERE key = 'time'",
    "delete": "DELETE FROM tree",
    "drop view": "DROP VIEW nodes",
    "drop table": "DROP TABLE chunk_ref",
    "create table": "CREATE TABLE scratch(a)",
    "create temp table": "CREATE TEMP TABLE scratch(a)",
    "create index": "CREATE INDEX node_by_kind ON node(kind)",
    "create trigger": "CREATE TRIGGER t AFTER INSERT ON tree BEGIN DELETE FROM node; END",
    "attach": "ATTACH DATABASE '{dir}/attached.tdb' AS other",
    "pragma user_version": "PRAGMA user_version = 5",
    "pragma application_id": "PRAGMA application_id = 7",
    "pragma journal_mode": "PRAGMA journal_mode = DELETE",
    "pragma foreign_keys": "PRAGMA foreign_keys = OFF",
    "pragma writable_schema": "PRAGMA writable_schema = ON",
    "pragma wal_checkpoint": "PRAGMA wal_checkpoint(TRUNCATE)",
    "vacuum": "VACUUM",
    "vacuum into": "VACUUM INTO '{dir}/vacuumed.tdb'",
    "begin": "BEGIN",
    "commit": "COMMIT",
    "savepoint": "SAVEPOINT s",
}


@pytest.mark.parametrize("mode", ["a", "r"])
@pytest.mark.parametrize("statement", sorted(WRITES))
def test_writes_through_sql_raise_read_only_error(small: tuple[Path, tensordb.Database], statement: str,
                                                   mode: str) -> None:
    path, db = small
    if mode == "r":
        db.close()
        db = tensordb.open(path, mode="r")
    query = WRITES[statement].format(dir=path.parent)
    files, state = _files(path.parent), _state(db)
    with pytest.raises(tensordb.ReadOnlyError):
        db.sql(query).fetchall()
    assert _files(path.parent) == files  # nothing written, nothing created (ATTACH / VACUUM INTO targets)
    assert not (path.parent / "attached.tdb").exists() and not (path.parent / "vacuumed.tdb").exists()
    assert _state(db) == state
    assert db.check().ok
    if db.readonly:
        db.close()
        return
    db["after"] = {"ok": True}  # the connection still writes normally afterwards
    assert db.sql("SELECT value FROM nodes WHERE tree = 'after' AND key = 'ok'").fetchall() == [(1,)]


def test_writes_with_parameters_are_refused(small: tuple[Path, tensordb.Database]) -> None:
    path, db = small
    files = _files(path.parent)
    with pytest.raises(tensordb.ReadOnlyError):
        db.sql("UPDATE node SET value = ? WHERE key = ?", (1, "time"))
    with pytest.raises(tensordb.ReadOnlyError):
        db.sql("INSERT INTO meta(key, value) VALUES (:k, :v)", {"k": "x", "v": 1})
    assert _files(path.parent) == files and db.check().ok


@pytest.mark.parametrize("query", [
    "SELECT 1; SELECT 2",
    "SELECT 1; DELETE FROM node",
    "SELECT name FROM trees; DROP TABLE node",
    "SELECT 1; PRAGMA user_version = 5",
])
def test_several_statements_are_refused(small: tuple[Path, tensordb.Database], query: str) -> None:
    path, db = small
    files, state = _files(path.parent), _state(db)
    with pytest.raises(tensordb.TensorDBError):
        db.sql(query).fetchall()
    assert _files(path.parent) == files and _state(db) == state and db.check().ok


def test_transaction_control_through_sql_cannot_end_a_transaction(small: tuple[Path, tensordb.Database]) -> None:
    path, db = small
    with pytest.raises(RuntimeError), db.transaction():
        db["c"] = {"time": 70}
        for query in ("COMMIT", "ROLLBACK", "RELEASE s", "END"):
            with pytest.raises(tensordb.ReadOnlyError):
                db.sql(query)
        raise RuntimeError("roll back")
    assert "c" not in db and db.check().ok


def test_sql_sees_the_changes_of_its_transaction(small: tuple[Path, tensordb.Database]) -> None:
    path, db = small
    query = "SELECT tree, value FROM nodes WHERE key = 'time' AND kind IN ('int', 'float') AND value > 50 ORDER BY tree"
    with db.transaction():
        db["c"] = {"time": 70}
        db["a"]["time"] = 10
        assert db.sql(query).fetchall() == [("c", 70)]
        with db.transaction():  # a savepoint
            del db["c"]
            assert db.sql(query).fetchall() == []
            assert db.sql("SELECT count(*) FROM trees WHERE name = 'c'").fetchall() == [(0,)]
        con = _ro(path)
        try:  # another connection does not see uncommitted changes
            assert con.execute(query).fetchall() == [("a", 60)]
        finally:
            con.close()
    con = _ro(path)
    try:
        assert con.execute(query).fetchall() == db.sql(query).fetchall() == []
    finally:
        con.close()


def test_results_stream(small: tuple[Path, tensordb.Database]) -> None:
    _, db = small
    n = 100_000
    query = (
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
        "SELECT i, printf('%040d', i) AS text FROM c"
    )
    result = db.sql(query, (n,))
    assert result.columns == ("i", "text")
    tracemalloc.start()
    try:
        count = total = 0
        for i, text in result:
            count += 1
            total += i
            assert len(text) == 40
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rows = db.sql(query, (n,)).fetchall()
        _, materialised = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(rows) == n and total == n * (n + 1) // 2
    assert materialised > 5_000_000  # about 100 bytes a row
    assert streamed < 2_000_000 and streamed * 8 < materialised, (streamed, materialised)


def test_result_rows_know_their_columns(built: Built) -> None:
    result = built.db.sql("SELECT name AS tree_name, n_nodes FROM trees WHERE name = ?", (FIRST,))
    assert result.columns == ("tree_name", "n_nodes")
    assert list(result.dicts()) == [{"tree_name": FIRST, "n_nodes": len(built.tree_facts(FIRST))}]


# -- nodes follows restructuring, inside the transaction ------------------------------------------


def _rows(db: tensordb.Database, tree: str | None = None) -> list[tuple[Any, ...]]:
    if tree is None:
        return db.sql("SELECT * FROM nodes ORDER BY tree, path").fetchall()
    return db.sql("SELECT * FROM nodes WHERE tree = ? ORDER BY path", (tree,)).fetchall()


def test_nodes_shows_move_rename_copy_and_delete_at_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    arrays = {name: rng.random(shape).astype("f4") for name, shape in
              [("x", (4,)), ("pts", (50, 3)), ("pts2", (80, 3)), ("p", (80, 1))]}
    value = {
        "time": 1,
        "items": ["a", {"x": arrays["x"]}, [1, 2], "d"],
        "data": {
            "inlet": {"object_type": "PasteurSurfaceMesh", "points": arrays["pts"]},
            "internal": {"object_type": VOLUMETRIC, "points": arrays["pts2"], "point_data": {"p": arrays["p"]}},
        },
        "other": {"list": ["z"]},
    }
    keep = {"data": {"inlet": {"points": np.ones(3)}}, "items": [0]}
    with tensordb.open(tmp_path / "moves.tdb", mode="w") as db:
        db["t"] = value
        db["keep"] = keep
        ids = {id(a): h.array_id for name, v in (("t", value), ("keep", keep))
               for a, h in zip((f.array for f in walk(name, v) if f.kind == "array"),
                               (f.array for f in walk(name, db[name].load(lazy=True)) if f.kind == "array"))}
        model = {"t": _copy(value), "keep": keep}

        def expected(name: str | None = None) -> list[tuple[Any, ...]]:
            return sorted(
                (f.tree, f.path, f.parent_path, f.key, f.idx, f.kind, f.value,
                 ids[id(f.array)] if f.kind == "array" else None)
                for n in ([name] if name else sorted(model)) for f in walk(n, model[n])
            )

        def same(name: str) -> None:
            rows = _rows(db, name)
            assert rows == expected(name)
            loaded = db[name].load(lazy=True)
            assert rows == sorted((f.tree, f.path, f.parent_path, f.key, f.idx, f.kind, f.value,
                                   f.array.array_id if f.kind == "array" else None) for f in walk(name, loaded))
            assert _rows(db) == expected()  # the other tree is untouched

        before = _rows(db)
        with db.transaction():
            tree = db["t"]
            tree.move("/data/inlet", "/data/inflow")
            model["t"]["data"]["inflow"] = model["t"]["data"].pop("inlet")
            same("t")
            gone = db.sql("SELECT count(*) FROM nodes WHERE tree = 't' AND path GLOB '/data/inlet*'").fetchall()
            assert gone == [(0,)]

            tree.move("/items/1", "/other/list/0")  # a list item into another list: the items after it shift
            model["t"]["other"]["list"].insert(0, model["t"]["items"].pop(1))
            same("t")
            assert db.sql("SELECT parent_path, key, idx FROM nodes WHERE tree = 't' AND path = '/other/list/0/x'"
                          ).fetchall() == [("/other/list/0", "x", None)]

            tree.move("/items/0", "/other/first")  # a list item becomes a dict entry
            model["t"]["other"]["first"] = model["t"]["items"].pop(0)
            same("t")

            tree.move("/other/list/1", "/items/1")  # and back into a list, between two items
            model["t"]["items"].insert(1, model["t"]["other"]["list"].pop(1))
            same("t")

            tree.move("/items/2", "/items/0")  # within one list
            model["t"]["items"].insert(0, model["t"]["items"].pop(2))
            same("t")
            assert db.sql("SELECT path, parent_path, key, idx, value FROM nodes WHERE tree = 't' "
                          "AND parent_path = '/items' ORDER BY idx").fetchall() == [
                ("/items/0", "/items", None, 0, "d"), ("/items/1", "/items", None, 1, None),
                ("/items/2", "/items", None, 2, "z")]

            db.rename("t", "t2")
            model["t2"] = model.pop("t")
            assert _rows(db, "t") == []
            same("t2")

            tree = db["t2"]
            tree["/new"] = tree["/data"]  # a subtree copy: new nodes, the same arrays
            model["t2"]["new"] = _copy(model["t2"]["data"])
            same("t2")

            del tree["/data/internal"]
            del model["t2"]["data"]["internal"]
            del tree["/items/0"]
            del model["t2"]["items"][0]
            same("t2")

            tree.move("/new/internal/point_data", "/items/1")  # a dict moved into a list: key NULL, idx 1
            model["t2"]["items"].insert(1, model["t2"]["new"]["internal"].pop("point_data"))
            same("t2")
            assert db.sql("SELECT path, parent_path, key, idx, kind FROM nodes WHERE tree = 't2' "
                          "AND path GLOB '/items/1*' ORDER BY path").fetchall() == [
                ("/items/1", "/items", None, 1, "dict"), ("/items/1/p", "/items/1", "p", None, "array")]
            assert [(t, p) for t, p, _ in db.glob("/items/*/p", trees="t*")] == [("t2", "/items/1/p")]

            con = _ro(tmp_path / "moves.tdb")
            try:  # not committed yet: another connection still sees the old rows
                assert con.execute("SELECT * FROM nodes ORDER BY tree, path").fetchall() == before
            finally:
                con.close()
        con = _ro(tmp_path / "moves.tdb")
        try:
            assert con.execute("SELECT * FROM nodes ORDER BY tree, path").fetchall() == expected()
        finally:
            con.close()
        assert db.check().ok

        with pytest.raises(RuntimeError), db.transaction():  # and a rolled back move leaves nothing behind
            db["t2"].move("/data", "/moved")
            db.rename("t2", "t3")
            assert db.sql("SELECT count(*) FROM nodes WHERE tree = 't3' AND path GLOB '/moved/*'").fetchall()[0][0] > 0
            raise RuntimeError
        assert _rows(db) == expected()


# -- db.glob agrees with a walk over every tree ------------------------------------------------------


def _segment_matches(pattern: str, token: str) -> bool:
    """`*` is any run of characters within a segment; every other character is literal."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == token
    if not token.startswith(parts[0]):
        return False
    pos = len(parts[0])
    for middle in parts[1:-1]:
        found = token.find(middle, pos)
        if found < 0:
            return False
        pos = found + len(middle)
    return len(token) - pos >= len(parts[-1]) and token.endswith(parts[-1])


def _matches(patterns: list[str], tokens: list[str]) -> bool:
    if not patterns:
        return not tokens
    if patterns[0] == "**":
        return any(_matches(patterns[1:], tokens[i:]) for i in range(len(tokens) + 1))
    return bool(tokens) and _segment_matches(patterns[0], tokens[0]) and _matches(patterns[1:], tokens[1:])


def _tokens(pointer: str) -> list[str]:
    return pointer.split("/")[1:] if pointer else []


def _brute_glob(db: tensordb.Database, pattern: str, trees: str | None) -> list[tuple[str, str, Fact]]:
    found = []
    for name in db:  # tree_id order, as db.glob
        if trees is not None and not fnmatch.fnmatchcase(name, trees):
            continue
        facts = sorted(walk(name, db[name].load(lazy=True)), key=lambda f: f.path)
        found += [(name, f.path, f) for f in facts if _matches(_tokens(pattern), _tokens(f.path))]
    return found


GLOBS = [
    ("/data/*/points", None),
    ("/data/*/points", "bm01-sim00*"),
    ("/data/*/points", "bm01-sim00[13]-step00[0-2]"),
    ("/data/*", None),
    ("/*", None),
    ("", None),
    ("/time", "*-step01*"),
    ("/**", "odd"),
    ("/**", "bm01-sim001-surfaces"),
    ("/**/p", None),
    ("/data/**/p", None),
    ("/data/**/points", None),  # ** as zero segments: odd's /data/points
    ("/**/point_data/*", "bm01-sim003*"),
    ("/data/*/*_data/p", None),
    ("/data/inl*/points", None),
    ("/data/*let/*", "bm01-sim002*"),
    ("/data/*/point_data/p", None),  # one segment: not odd's /data/a[1]/deep/point_data/p
    ("/data/a[1]/points", None),
    ("/data/a[1]/*", None),
    ("/data/a[1]/**", None),
    ("/data/b?", None),
    ("/data/?", None),
    ("/data/c]x/*", None),
    ("/data/*]*", None),
    ("/data/[ab]*", None),  # brackets are literal, not a character class
    ("/data/x~0y~1z", None),
    ("/data/", None),  # the empty key
    ("/data//p", None),
    ("/data/*/p", None),  # * matches the empty key too
    ("/data/Point_Data/P", None),
    ("/data/point_data/p", None),  # case matters
    ("/nested/**", None),
    ("/**/object_type", "reference"),
    ("/probes/*/*", None),
    ("/data/**", "no-such-tree*"),
]


@pytest.mark.parametrize(("pattern", "trees"), GLOBS)
def test_glob_agrees_with_a_walk_over_every_tree(built: Built, pattern: str, trees: str | None) -> None:
    got = list(built.db.glob(pattern, trees=trees))
    expected = _brute_glob(built.db, pattern, trees)
    assert [(t, p) for t, p, _ in got] == [(t, p) for t, p, _ in expected]
    for (_, path, value), (_, _, fact) in zip(got, expected):
        if fact.kind == "array":
            assert isinstance(value, tensordb.Array) and value.array_id == fact.array.array_id
        elif fact.kind in ("dict", "list"):
            assert isinstance(value, tensordb.Node) and value.path == path and len(value) == fact.length
        else:
            assert _kind(value) == (fact.kind, fact.value)


def test_glob_patterns_select_something(built: Built) -> None:
    """The glob cases above are not all trivially empty."""
    empty = {(p, t) for p, t in GLOBS if not _brute_glob(built.db, p, t)}
    assert empty == {("/data/?", None), ("/data/[ab]*", None), ("/data/point_data/p", None),
                     ("/data/**", "no-such-tree*")}


def test_glob_below_a_key_containing_nul(tmp_path: Path) -> None:
    with tensordb.open(tmp_path / "nul.tdb", mode="w") as db:
        db["t"] = {"data": {"n\x00ul": {"x": 1}}}
        assert [(t, p) for t, p, _ in db.glob("/data/*/x")] == [("t", "/data/n\x00ul/x")]
