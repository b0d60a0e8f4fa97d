"""Opening a database, reading scalars, running SQL and editing structure import neither numpy nor the codecs.

numpy's import is most of the start-up of a process that only reads scalars
or runs SQL: such a process must not pay for it (docs/architecture.md). Real
fresh processes, on a database whose trees also hold arrays, so that the
numpy-free paths are seen not to touch them. Whatever does work on arrays
imports numpy when it needs it, and gives the same values as ever.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensordb

ROOT = Path(__file__).resolve().parents[1]

#: Modules that must stay unloaded: numpy, the modules of the arrays layer that import it, the codecs, and
#: dataclasses (it imports inspect: 5 ms of a fresh process).
HEAVY = ("numpy", "blosc2", "tensordb.arrays.array", "tensordb.arrays.io", "tensordb.arrays.indexing",
         "tensordb.arrays.meta", "tensordb.arrays.dtypes", "tensordb.arrays.store", "tensordb.codec", "dataclasses")

# Run one after the other in one fresh process (each sees the edits of those before it).
NUMPY_FREE = {
    "open read-only, list, read scalars": """
db = tensordb.open(path, mode="r")
names = list(db)
assert names == ["s0", "s1", "s2"], names
assert [db[name]["time"] for name in names] == [0.0, 1.5, 3.0]
assert db["s1"]["flag"] is False and db["s1"]["/data/outlet/1"] == 2 and db["s0"]["/data/inlet/unit"] == "m/s"
assert len(db) == 3 and "s2" in db and "nope" not in db
db.close()
""",
    "a Node handle: keys, len, in": """
db = tensordb.open(path, mode="r")
node = db["s0"]["data"]
assert isinstance(node, tensordb.DictNode) and list(node.keys()) == list(node) == ["inlet", "outlet"]
assert len(node) == 2 and "inlet" in node and "p" in node["inlet"] and "x" not in node
assert len(node["outlet"]) == 3 and node["outlet"][-1] is None
assert repr(node).startswith('<tensordb.Node "/data" dict of 2 items')
db.close()
""",
    "SQL": """
db = tensordb.open(path, mode="r")
rows = db.sql("SELECT tree, value FROM nodes WHERE path = '/time' ORDER BY tree").fetchall()
assert rows == [("s0", 0.0), ("s1", 1.5), ("s2", 3.0)], rows
assert db.sql("SELECT count(*) FROM arrays").fetchall() == [(9,)]
db.close()
""",
    "a scalar-only subtree loaded": """
db = tensordb.open(path, mode="r")
assert db["s2"]["data"]["outlet"].load() == [1, 2, None]
db.close()
""",
    "moves and sets across trees in a transaction (r+)": """
db = tensordb.open(path, mode="r+")
with db.transaction():
    assert db.move("/data/inlet", "/data/inflow") == 3
    assert db.set("/reviewed", 1) == 3
assert [sorted(db[name]["data"]) for name in db] == [["inflow", "outlet"]] * 3
assert db.sql("SELECT count(*) FROM nodes WHERE path = '/reviewed' AND value = 1").fetchall() == [(3,)]
db.close()
""",
    "scalar writes, moves, copies and deletes in a tree (a)": """
db = tensordb.open(path, mode="a")
tree = db["s0"]
tree.move("/data/inflow", "/inflow")
tree["k"] = 3
tree["/data/outlet/0"] = "one"
tree["data"]["note"] = {"by": "me", "n": [1, 2.5, None, True]}
db["s1"]["copy"] = db["s1"]["data"]  # by reference: the array inside is shared, not read
del tree["/inflow"]  # a subtree holding an array
del db["s2"]
db["s3"] = {"time": 4.5, "tags": ["a", "b"]}
db.rename("s3", "s4")
tensordb.validate({"a": [1, 2.5, None], "b": {"c": "d"}})
assert tree["k"] == 3 and "inflow" not in tree and tree["/data/outlet"].load() == ["one", 2, None]
assert list(db) == ["s0", "s1", "s4"] and sorted(db["s1"]["copy"]) == ["inflow", "outlet"]
db.close()
""",
    "a long string read": """
db = tensordb.open(path, mode="r")
assert db["s0"]["big"] == "x" * 70_000
db.close()
""",
}
#: What a scenario may load: a long string is stored zstd-compressed (the codec module, not Blosc2).
ALLOWED = {"a long string read": ["tensordb.codec"]}

# Each in a fresh process of its own, where numpy is not loaded before: (code, what it loads).
WITH_NUMPY = {
    "an array leaf read": ("""
db = tensordb.open(path, mode="r")
a = db["s1"]["/data/inlet/p"]
assert type(a) is tensordb.Array and a[1:].tolist() == [2.0, 3.0, 4.0], a[...]
""", {"numpy", "tensordb.arrays.array", "tensordb.arrays.store"}),
    "a subtree holding arrays loaded": ("""
db = tensordb.open(path, mode="r")
loaded = db["s2"]["data"].load()
assert loaded["inlet"]["p"].tolist() == [2.0, 3.0, 4.0, 5.0] and loaded["outlet"] == [1, 2, None]
""", {"numpy", "tensordb.arrays.store"}),
    "a numpy scalar read": ("""
db = tensordb.open(path, mode="r")
scale = db["s0"]["scale"]
assert type(scale).__name__ == "float32" and scale == 0.5
""", {"numpy", "tensordb.arrays.dtypes"}),
    "an array created": ("""
db = tensordb.open(path, mode="a")
db["s0"].create_array("/zeros", (2, 2), "i2")[0] = 7
assert db["s0"]["/zeros"][...].tolist() == [[7, 7], [0, 0]]
""", {"numpy", "tensordb.arrays.array", "tensordb.arrays.store"}),
    "check": ("""
db = tensordb.open(path, mode="r")
assert db.check().ok
""", {"numpy", "tensordb.arrays.store", "the Blosc2 library"}),
}

CHILD = """
import json, sys
import tensordb

path, scenarios, heavy = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
report = {}
for name, code in scenarios.items():
    exec(code, {"tensordb": tensordb, "path": path})
    report[name] = [m for m in heavy if m in sys.modules]
    codec = sys.modules.get("tensordb.codec")
    if codec is not None and codec._blosc.cache_info().currsize:  # the Blosc2 C library, loaded through ctypes
        report[name].append("the Blosc2 library")
print(json.dumps(report))
"""


def _build(path: Path) -> None:
    with tensordb.open(path, "w") as db, db.transaction():
        for i in range(3):
            db[f"s{i}"] = {
                "time": 1.5 * i,
                "flag": i % 2 == 0,
                "big": "x" * 70_000,
                "data": {"inlet": {"p": np.arange(4.0) + i, "unit": "m/s"}, "outlet": [1, 2, None]},
                "scale": np.float32(0.5),
                "grid": np.zeros((3, 3), "i4"),
                "ramp": np.arange(1000.0),  # compressed: check() calls into Blosc2 (tiny chunks are copied)
            }


def _python(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout's tensordb; its standard output."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _run(path: Path, scenarios: dict[str, str]) -> dict[str, list[str]]:
    report: dict[str, list[str]] = json.loads(_python(CHILD, str(path), json.dumps(scenarios), json.dumps(HEAVY)))
    return report


@pytest.fixture(scope="module")
def numpy_free_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    path = tmp_path_factory.mktemp("startup") / "runs.tdb"
    _build(path)
    return _run(path, NUMPY_FREE)


@pytest.mark.parametrize("scenario", NUMPY_FREE)
def test_scalars_sql_and_structure_import_neither_numpy_nor_the_codecs(
        numpy_free_run: dict[str, list[str]], scenario: str) -> None:
    assert numpy_free_run[scenario] == ALLOWED.get(scenario, [])


@pytest.mark.parametrize("scenario", WITH_NUMPY)
def test_what_works_on_arrays_imports_numpy_on_demand(tmp_path: Path, scenario: str) -> None:
    path = tmp_path / "runs.tdb"
    _build(path)
    before = "assert 'numpy' not in __import__('sys').modules\n"
    code, loaded = WITH_NUMPY[scenario]
    report = _run(path, {"before": before, scenario: code})
    assert report["before"] == []
    assert loaded <= set(report[scenario])


def test_arrays_written_and_read_leave_numpy_ma_unloaded(tmp_path: Path) -> None:
    """numpy imports numpy.ma on first use (10 ms of a fresh process); refusing masked arrays must not."""
    code = ("import sys, numpy as np, tensordb\n"
            "with tensordb.open(sys.argv[1], 'w') as db:\n"
            "    db['t'] = {'a': np.arange(5000.0), 'b': [np.float32(1), np.zeros((3, 3))]}\n"
            "    assert db['t'].load()['a'][-1] == 4999.0 and db['t']['a'][1:3].tolist() == [1.0, 2.0]\n"
            "print('numpy.ma' in sys.modules)")
    assert _python(code, str(tmp_path / "m.tdb")).strip() == "False"


def test_tensordb_ls_to_a_pipe_imports_neither_numpy_nor_rich(tmp_path: Path) -> None:
    """Listing trees is a start-up-bound command: numpy and rich cost it about 140 ms and 35 ms, and
    rich's table 100 ms more for 200 rows (a pipe gets plain text)."""
    path = tmp_path / "runs.tdb"
    _build(path)
    code = ("import sys\nfrom tensordb.cli.app import main\n"
            "try:\n    main(['ls', sys.argv[1]])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(sorted(m for m in ('numpy', 'rich', 'tensordb.demo') if m in sys.modules))")
    listing, loaded = _python(code, str(path)).rstrip().rsplit("\n", 1)
    assert "s0" in listing and "s2" in listing
    assert loaded == "[]"


def test_a_pickled_array_handle_reopens_its_database_in_a_fresh_process(tmp_path: Path) -> None:
    """Pickled handles reopen through the database layer, which a fresh process has not imported yet."""
    import pickle

    path = tmp_path / "runs.tdb"
    _build(path)
    with tensordb.open(path, mode="r") as db:
        state = pickle.dumps([db["s1"]["/data/inlet/p"], db["s2"]])
    code = ("import pickle, sys; a, tree = pickle.loads(bytes.fromhex(sys.argv[1])); "
            "print(a[...].tolist(), tree['time'])")
    assert _python(code, state.hex()).split() == ["[1.0,", "2.0,", "3.0,", "4.0]", "3.0"]


def test_array_writes_and_reads_import_no_dataclasses(tmp_path: Path) -> None:
    """``dataclasses`` imports ``inspect``: 5 ms of every fresh process that writes or reads an array."""
    code = f"""
import sys, numpy, tensordb
with tensordb.open({str(tmp_path / "a.tdb")!r}, "w") as db:
    db["t"] = {{"x": numpy.arange(1000.0), "codec": 1}}
    db["t"].set("/y", numpy.ones((64, 64), "f4"), chunks=(16, 16), codec=tensordb.Codec("zstd", 1))
    assert db["t"]["x"][10:12].tolist() == [10.0, 11.0] and db["t"].load()["y"].sum() == 64 * 64
assert "dataclasses" not in sys.modules, "dataclasses was imported"
"""
    _python(code)
