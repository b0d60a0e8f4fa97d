"""Stateful test: a real database against a plain-dict model {tree_name: value}.

Rules put, get, move, copy, delete, write slices, gc and reopen (among
others). After every step the database equals the model, ``check()`` is
clean, and every stored reference count equals a mark-and-sweep count made
here, from the raw tables, through a separate ``sqlite3`` connection.
"""

from __future__ import annotations

import collections
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from strategies import (
    arrays,
    assert_tree_equal,
    basic_dtypes,
    dtypes,
    escape,
    keys,
    model_nodes,
    model_parent,
    model_resolve,
    scalars,
    trees,
)

import tensordb

pytestmark = pytest.mark.slow

NAMES = st.sampled_from(["a", "b", "c", "d/e", "~", "é"])
_leaves = st.deferred(scalars)
SMALL_TREES = trees(
    max_leaves=6,
    leaves=st.one_of(
        _leaves,
        arrays(max_dims=2, max_side=5),
        arrays(min_dims=1, min_side=1, max_dims=2, max_side=5),
        arrays(min_dims=1, min_side=1, max_dims=2, max_side=5),
    ),
)
# tree roots: mostly containers, so that node-level rules find something to work on
ROOTS = st.one_of(
    st.dictionaries(keys(), SMALL_TREES, min_size=1, max_size=4),
    st.dictionaries(keys(), SMALL_TREES, min_size=1, max_size=4),
    st.lists(SMALL_TREES, min_size=1, max_size=4),
    SMALL_TREES,
)
CHECK_EVERY = 1  # db.check() after every step (cheap at these sizes)
CODECS = st.sampled_from(
    [
        None,
        tensordb.Codec("zstd", level=5, shuffle="byte"),
        tensordb.Codec("lz4", level=1, shuffle="bit"),
        tensordb.Codec("blosclz", level=9, shuffle="none"),
        tensordb.Codec("zlib", level=3, shuffle="byte"),
    ]
)


class Abort(Exception):
    """Raised inside db.transaction() to roll it back."""


def chunk_shapes(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*[st.integers(1, max(1, side)) for side in shape])


def _grown(old: np.ndarray, shape: tuple[int, ...], fill: np.ndarray | None) -> np.ndarray:
    """``old`` resized zarr-style: data inside both shapes kept, new space reads as fill."""
    new = np.zeros(shape, old.dtype)
    if fill is not None:
        new[...] = fill
    overlap = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, shape))
    new[overlap] = old[overlap]
    return new


_KINDS = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    bytes: "bytes",
    dict: "dict",
    list: "list",
    np.ndarray: "array",
}


def _inside(ptr: str, ancestor: str) -> bool:
    return ptr == ancestor or ptr.startswith(ancestor + "/")


class TensorDBMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tdb-stateful-")
        self.path = Path(self.dir) / "s.tdb"
        self.db = tensordb.open(self.path)
        self.model: dict[str, Any] = {}
        self.steps = 0
        # fill value of model arrays made by create_array, by id(array) (keeps the array alive)
        self.fills: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def teardown(self) -> None:
        try:
            if self.db is not None:
                report = self.db.check()
                assert report.ok, report.findings
                self.db.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ helpers

    def _copy(self, value: Any) -> Any:
        """Deep copy that never aliases (copy.deepcopy keeps shared sub-objects shared)."""
        if isinstance(value, dict):
            return {k: self._copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._copy(v) for v in value]
        if isinstance(value, np.ndarray):
            new = value.copy()
            if id(value) in self.fills:
                self.fills[id(new)] = (new, self.fills[id(value)][1])
            return new
        return value

    def _fill(self, arr: np.ndarray) -> np.ndarray | None:
        entry = self.fills.get(id(arr))
        return entry[1] if entry is not None and entry[0] is arr else None

    def _replace(self, name: str, ptr: str, new: Any) -> None:
        if ptr == "":
            self.model[name] = new
        else:
            parent, key = model_parent(self.model[name], ptr)
            parent[key] = new

    def _run(self, data: st.DataObject, action: Any, update_model: Any) -> None:
        """Run ``action``; sometimes inside a transaction that is then rolled back,
        in which case the model must not change."""
        if data.draw(st.integers(0, 4), label="abort?") == 0:
            try:
                with self.db.transaction():
                    action()
                    raise Abort
            except Abort:
                return
        action()
        update_model()

    def _pick_tree(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.model)), label="tree")

    def _pick_node(self, data: st.DataObject, pred: Any, label: str) -> tuple[str, str, Any] | None:
        cands = [(name, p, v) for name in sorted(self.model) for p, v in model_nodes(self.model[name]) if pred(p, v)]
        if not cands:
            return None
        name, ptr, value = data.draw(st.sampled_from(cands), label=label)
        return name, ptr, value

    # ------------------------------------------------------------ whole trees

    @rule(name=NAMES, value=ROOTS)
    def create_tree(self, name: str, value: Any) -> None:
        self.db[name] = value
        self.model[name] = self._copy(value)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_tree(self, data: st.DataObject) -> None:
        name = self._pick_tree(data)

        def action() -> None:
            del self.db[name]

        self._run(data, action, lambda: self.model.pop(name))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), new=NAMES)
    def rename_tree(self, data: st.DataObject, new: str) -> None:
        old = self._pick_tree(data)
        if new in self.model:
            return
        self.db.rename(old, new)
        self.model[new] = self.model.pop(old)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), dst=NAMES)
    def copy_tree(self, data: st.DataObject, dst: str) -> None:
        src = self._pick_tree(data)
        self.db[dst] = self.db[src]
        self.model[dst] = self._copy(self.model[src])

    # ------------------------------------------------------------ nodes

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=keys(), value=SMALL_TREES)
    def set_in_dict(self, data: st.DataObject, key: str, value: Any) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, dict), "dict")
        if pick is None:
            return
        name, ptr, node = pick
        if data.draw(st.booleans(), label="existing key") and node:
            key = data.draw(st.sampled_from(list(node)), label="key")

        def action() -> None:
            self.db[name][ptr + "/" + escape(key)] = value

        self._run(data, action, lambda: node.__setitem__(key, self._copy(value)))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def set_list_item(self, data: st.DataObject) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, list) and v, "list")
        if pick is None:
            return
        name, ptr, node = pick
        i = data.draw(st.integers(-len(node), len(node) - 1), label="index")
        value = data.draw(SMALL_TREES, label="value")
        self.db[name][ptr][i] = value
        node[i] = self._copy(value)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=keys())
    def set_from_handle(self, data: st.DataObject, key: str) -> None:
        """tree[ptr] = other_tree[ptr2]: a reference, but with value semantics."""
        src = self._pick_node(data, lambda p, v: True, "source")
        dst = self._pick_node(data, lambda p, v: isinstance(v, dict), "dest dict")
        if src is None or dst is None:
            return
        sname, sptr, svalue = src
        dname, dptr, dnode = dst
        # dst may be inside src (tree["/a/x"] = tree["/a"]): value semantics make that a
        # snapshot of /a, which self._copy(svalue) below takes before the model changes.
        handle = self.db[sname][sptr] if sptr else self.db[sname]
        self.db[dname][dptr + "/" + escape(key)] = handle
        dnode[key] = self._copy(svalue)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_dict_key(self, data: st.DataObject) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, dict) and v, "dict")
        if pick is None:
            return
        name, ptr, node = pick
        key = data.draw(st.sampled_from(list(node)), label="key")
        del self.db[name][ptr + "/" + escape(key)]
        del node[key]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), value=SMALL_TREES)
    def list_append(self, data: st.DataObject, value: Any) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, list), "list")
        if pick is None:
            return
        name, ptr, node = pick
        target = self.db[name][ptr]
        target.append(value)
        node.append(self._copy(value))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), value=SMALL_TREES)
    def list_insert(self, data: st.DataObject, value: Any) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, list), "list")
        if pick is None:
            return
        name, ptr, node = pick
        # out-of-range indices clamp, as list.insert does
        i = data.draw(st.integers(-len(node) - 2, len(node) + 2), label="index")
        target = self.db[name][ptr]
        target.insert(i, value)
        node.insert(i, self._copy(value))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=keys())
    def move(self, data: st.DataObject, key: str) -> None:
        src = self._pick_node(data, lambda p, v: p != "", "source")
        if src is None:
            return
        name, sptr, svalue = src
        root = self.model[name]
        sparent, skey = model_parent(root, sptr)
        sparent_ptr = sptr.rsplit("/", 1)[0]
        dicts = [
            (p, v)
            for p, v in model_nodes(root)
            if isinstance(v, dict)
            and key not in v
            and not _inside(p, sptr)
            # removing a list element shifts its siblings: keep dst out of that list
            and not (isinstance(sparent, list) and _inside(p, sparent_ptr) and p != sparent_ptr)
        ]
        if not dicts:
            return
        dptr, dnode = data.draw(st.sampled_from(dicts), label="dest dict")
        dst = dptr + "/" + escape(key)

        def action() -> None:
            self.db[name].move(sptr, dst)

        self._run(data, action, lambda: dnode.__setitem__(key, sparent.pop(skey)))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_list_item(self, data: st.DataObject) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, list) and v, "list")
        if pick is None:
            return
        name, ptr, node = pick
        i = data.draw(st.integers(-len(node), len(node) - 1), label="index")
        if i >= 0 and data.draw(st.booleans(), label="by pointer"):
            del self.db[name][f"{ptr}/{i}"]
        else:
            del self.db[name][ptr][i]
        del node[i]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def get(self, data: st.DataObject) -> None:
        """Read one node through handles: a scalar, a container's keys, or an array slice."""
        pick = self._pick_node(data, lambda p, v: True, "node")
        assert pick is not None
        name, ptr, value = pick
        got = self.db[name][ptr] if ptr else self.db[name].root
        if isinstance(value, np.ndarray):
            assert isinstance(got, tensordb.Array) and got.shape == value.shape and got.dtype == value.dtype
            if value.ndim:
                sl = data.draw(st.slices(value.shape[0]), label="slice")
                assert_tree_equal(got[sl], value[sl], path=f"{name}:{ptr}[{sl}]")
            else:
                assert_tree_equal(got[()], value[()], path=f"{name}:{ptr}")
        elif isinstance(value, dict):
            assert list(got.keys()) == list(value)
        elif isinstance(value, list):
            assert len(got) == len(value)
        else:
            assert_tree_equal(got, value, path=f"{name}:{ptr}")

    # ------------------------------------------------------------ arrays

    def _pick_array(self, data: st.DataObject, pred: Any = lambda a: True) -> tuple[str, str, np.ndarray] | None:
        return self._pick_node(data, lambda p, v: isinstance(v, np.ndarray) and pred(v), "array")

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def write_slice(self, data: st.DataObject) -> None:
        pick = self._pick_array(data, lambda a: a.ndim >= 1)
        if pick is None:
            return
        name, ptr, arr = pick
        sl = data.draw(st.slices(arr.shape[0]), label="slice")
        shape = arr[sl].shape
        values = data.draw(hnp.arrays(arr.dtype, shape, fill=st.nothing()), label="values")

        def action() -> None:
            h = self.db[name][ptr]  # "" addresses the node itself (an array root)
            assert isinstance(h, tensordb.Array)
            h[sl] = values

        self._run(data, action, lambda: arr.__setitem__(sl, values))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def write_element(self, data: st.DataObject) -> None:
        pick = self._pick_array(data, lambda a: a.size > 0)
        if pick is None:
            return
        name, ptr, arr = pick
        idx = tuple(data.draw(st.integers(-n, n - 1), label="index") for n in arr.shape)
        value = data.draw(hnp.arrays(arr.dtype, ()), label="value")[()]
        self.db[name][ptr][idx] = value
        arr[idx] = value

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=keys())
    def set_chunked_array(self, data: st.DataObject, key: str) -> None:
        """tree.set(ptr, arr, chunks=..., codec=...): many small chunks, so CoW is per chunk."""
        pick = self._pick_node(data, lambda p, v: isinstance(v, dict), "dict")
        if pick is None:
            return
        name, ptr, node = pick
        arr = data.draw(arrays(min_dims=1, max_dims=2, min_side=1, max_side=12), label="array")
        chunks = data.draw(chunk_shapes(arr.shape), label="chunks")
        codec = data.draw(CODECS, label="codec")
        self.db[name].set(ptr + "/" + escape(key), arr, chunks=chunks, codec=codec)
        h = self.db[name][ptr + "/" + escape(key)]
        assert h.chunks == chunks
        if codec is not None:
            assert h.codec == codec
        node[key] = arr.copy()

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=keys())
    def create_array(self, data: st.DataObject, key: str) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, dict), "dict")
        if pick is None:
            return
        name, ptr, node = pick
        dtype = data.draw(st.one_of(basic_dtypes(), dtypes()), label="dtype")
        shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=10), label="shape")
        chunks = data.draw(chunk_shapes(shape), label="chunks")
        fill = data.draw(st.none() | hnp.arrays(dtype, ()), label="fill")
        h = self.db[name].create_array(
            ptr + "/" + escape(key),
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            fill_value=None if fill is None else fill[()],
            codec=data.draw(CODECS, label="codec"),
        )
        assert isinstance(h, tensordb.Array)
        assert h.shape == shape and h.chunks == chunks
        assert h.dtype == dtype and h.dtype.str == dtype.str and h.dtype.descr == dtype.descr
        new = np.zeros(shape, dtype)
        if fill is not None:
            new[...] = fill
            self.fills[id(new)] = (new, fill)
        node[key] = new

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        pick = self._pick_array(data, lambda a: a.ndim >= 1)
        if pick is None:
            return
        name, ptr, arr = pick
        axis = data.draw(st.integers(0, arr.ndim - 1), label="axis")
        extra = list(arr.shape)
        extra[axis] = data.draw(st.integers(0, 4), label="rows")
        values = data.draw(hnp.arrays(arr.dtype, tuple(extra), fill=st.nothing()), label="values")
        shape = list(arr.shape)
        shape[axis] += extra[axis]
        new = _grown(arr, tuple(shape), self._fill(arr))
        new[tuple(slice(arr.shape[axis], None) if i == axis else slice(None) for i in range(arr.ndim))] = values
        if self._fill(arr) is not None:
            self.fills[id(new)] = (new, self.fills[id(arr)][1])

        axis_arg = data.draw(st.sampled_from([axis, axis - arr.ndim]), label="axis argument")

        def action() -> None:
            self.db[name][ptr].append(values, axis=axis_arg)

        self._run(data, action, lambda: self._replace(name, ptr, new))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def resize(self, data: st.DataObject) -> None:
        pick = self._pick_array(data, lambda a: a.ndim >= 1)
        if pick is None:
            return
        name, ptr, arr = pick
        shape = tuple(data.draw(st.integers(0, 8), label="side") for _ in arr.shape)
        new = _grown(arr, shape, self._fill(arr))
        if self._fill(arr) is not None:
            self.fills[id(new)] = (new, self.fills[id(arr)][1])

        def action() -> None:
            self.db[name][ptr].resize(shape)

        self._run(data, action, lambda: self._replace(name, ptr, new))

    # ------------------------------------------------------------ transactions

    @precondition(lambda self: self.model)
    @rule(data=st.data(), k1=keys(), k2=keys(), v1=SMALL_TREES, v2=SMALL_TREES)
    def nested_transaction(self, data: st.DataObject, k1: str, k2: str, v1: Any, v2: Any) -> None:
        """The outer block commits, the inner one (a savepoint) is rolled back."""
        pick = self._pick_node(data, lambda p, v: isinstance(v, dict), "dict")
        if pick is None:
            return
        name, ptr, node = pick
        with self.db.transaction():
            self.db[name][ptr + "/" + escape(k1)] = v1
            try:
                with self.db.transaction():
                    self.db[name][ptr + "/" + escape(k2)] = v2
                    raise Abort
            except Abort:
                pass
        node[k1] = self._copy(v1)

    # ------------------------------------------------------------ database

    @precondition(lambda self: self.model)
    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = tensordb.open(self.path)

    @precondition(lambda self: self.model)
    @rule()
    def gc(self) -> None:
        stats = self.db.gc()
        assert isinstance(stats, dict)
        for k in ("arrays_removed", "chunks_removed", "bytes_reclaimed"):
            assert k in stats
        # the sweep left exactly what the roots reach
        graph = _mark(self.path)
        assert graph.arrays == graph.reachable_arrays, "gc left unreachable arrays"
        assert graph.chunks == graph.reachable_chunks, "gc left unreachable chunks"
        assert stats["files_deferred"] == 0

    # ------------------------------------------------------------ invariants

    @invariant()
    def same_names(self) -> None:
        assert set(self.db) == set(self.model)
        assert len(self.db) == len(self.model)

    @invariant()
    def same_values(self) -> None:
        for name, value in self.model.items():
            assert_tree_equal(self.db[name].load(), value, path=f"tree {name!r}:")

    @invariant()
    def stats_match_model(self) -> None:
        stats = self.db.stats()
        all_nodes = [v for value in self.model.values() for _, v in model_nodes(value)]
        assert stats["trees"] == len(self.model)
        assert stats["nodes"] == len(all_nodes)
        arrays_bytes = sum(v.nbytes for v in all_nodes if isinstance(v, np.ndarray))
        # whether numpy scalars count as (0-d) arrays is not specified: allow both
        scalar_bytes = sum(v.nbytes for v in all_nodes if isinstance(v, np.generic))
        assert arrays_bytes <= stats["logical_bytes"] <= arrays_bytes + scalar_bytes

    @invariant()
    def sql_nodes_match_model(self) -> None:
        rows = self.db.sql("SELECT tree, path, parent_path, key, idx, kind, value, array_id FROM nodes")
        got = {(r[0], r[1]): tuple(r[2:]) for r in rows}
        want: dict[tuple[str, str], Any] = {}
        for name, value in self.model.items():
            for path, v in model_nodes(value):
                want[(name, path)] = v
        assert set(got) == set(want)
        for (name, path), v in want.items():
            parent_path, key, idx, kind, value, array_id = got[(name, path)]
            where = f"{name!r}:{path!r}"
            if path == "":
                assert parent_path is None and key is None and idx is None, where
            else:
                parent = model_resolve(self.model[name], parent_path)
                assert parent_path == path.rsplit("/", 1)[0], where
                if isinstance(parent, list):
                    assert key is None and idx == int(path.rsplit("/", 1)[1]), where
                else:
                    assert idx is None and escape(key) == path.rsplit("/", 1)[1], where
            if type(v) in _KINDS:  # the kind of numpy scalars is not specified
                assert kind == _KINDS[type(v)], (where, kind)
                assert (array_id is not None) == isinstance(v, np.ndarray), where
                if (
                    isinstance(v, (bool, str, bytes))
                    or v is None
                    or (type(v) is int and -(2**63) <= v < 2**63)
                    or (type(v) is float and v == v)
                ):
                    assert value == v and type(value) is (int if type(v) is bool else type(v)), (where, value)
                elif isinstance(v, (dict, list, np.ndarray)):
                    assert value is None, where

    @invariant()
    def refcounts_match_mark_and_sweep(self) -> None:
        graph = _mark(self.path)
        assert graph.unreachable_nodes == set(), graph.unreachable_nodes
        assert graph.array_refcounts == graph.array_references, "array refcounts"
        assert graph.chunk_refcounts == graph.chunk_references, "chunk refcounts"

    @invariant()
    def healthy(self) -> None:
        self.steps += 1
        if self.steps % CHECK_EVERY == 0:
            report = self.db.check()
            assert report.ok, report.findings


class Graph:
    """Reference counts as stored, and as a mark phase from the tree roots finds them."""

    def __init__(self, con: sqlite3.Connection) -> None:
        roots = [r for (r,) in con.execute("SELECT root_id FROM tree")]
        parent_of = dict(con.execute("SELECT node_id, parent_id FROM node").fetchall())
        array_of = dict(con.execute("SELECT node_id, array_id FROM node WHERE array_id IS NOT NULL").fetchall())
        children = collections.defaultdict(list)
        for node, parent in parent_of.items():
            children[parent].append(node)
        reached: set[int] = set()
        stack = [r for r in roots if r in parent_of]
        while stack:  # mark
            node = stack.pop()
            if node not in reached:
                reached.add(node)
                stack.extend(children[node])
        self.unreachable_nodes = set(parent_of) - reached
        self.array_references = collections.Counter(array_of[n] for n in reached if n in array_of)
        self.array_refcounts = collections.Counter(
            {a: rc for a, rc in con.execute("SELECT array_id, refcount FROM array") if rc})
        self.arrays = {a for (a,) in con.execute("SELECT array_id FROM array")}
        self.reachable_arrays = set(self.array_references)
        refs = con.execute("SELECT array_id, chunk_id FROM chunk_ref").fetchall()
        self.chunk_references = collections.Counter(c for _, c in refs)
        self.chunk_refcounts = collections.Counter(
            {c: rc for c, rc in con.execute("SELECT chunk_id, refcount FROM chunk") if rc})
        self.chunks = {c for (c,) in con.execute("SELECT chunk_id FROM chunk")}
        self.reachable_chunks = {c for a, c in refs if a in self.reachable_arrays}


def _mark(path: Path) -> Graph:
    """Read the raw tables through the standard library's sqlite3, not through tensordb."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return Graph(con)
    finally:
        con.close()


# 100 runs of 40 steps under the "ci" profile (the loaded profile's example count).
TensorDBMachine.TestCase.settings = settings(
    settings(),
    stateful_step_count=40,
    max_examples=settings().max_examples,
)
test_tensordb_state_machine = TensorDBMachine.TestCase
