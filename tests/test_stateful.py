"""Stateful test: a real database against a plain-dict model {tree_name: value}."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from strategies import arrays, assert_tree_equal, escape, keys, scalars, trees

import tensordb

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


def _copy(value: Any) -> Any:
    """Deep copy that never aliases (copy.deepcopy would keep shared sub-objects shared)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _nodes(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(pointer, value) of every node, root included, depth first."""
    out = [(path, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _nodes(v, path + "/" + escape(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _nodes(v, f"{path}/{i}")
    return out


def _parts(ptr: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in ptr.split("/")[1:]]


def _resolve(root: Any, ptr: str) -> Any:
    node = root
    for p in _parts(ptr):
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node


def _parent(root: Any, ptr: str) -> tuple[Any, Any]:
    """(parent container, key or index) of a non-root pointer."""
    *head, last = _parts(ptr)
    node = root
    for p in head:
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node, (int(last) if isinstance(node, list) else last)


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

    def teardown(self) -> None:
        try:
            if self.db is not None:
                report = self.db.check()
                assert report.ok, report.findings
                self.db.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ helpers

    def _pick_tree(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.model)), label="tree")

    def _pick_node(self, data: st.DataObject, pred: Any, label: str) -> tuple[str, str, Any] | None:
        cands = [(name, p, v) for name in sorted(self.model) for p, v in _nodes(self.model[name]) if pred(p, v)]
        if not cands:
            return None
        return data.draw(st.sampled_from(cands), label=label)[0:3]

    # ------------------------------------------------------------ whole trees

    @rule(name=NAMES, value=ROOTS)
    def create_tree(self, name: str, value: Any) -> None:
        self.db[name] = value
        self.model[name] = _copy(value)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_tree(self, data: st.DataObject) -> None:
        name = self._pick_tree(data)
        del self.db[name]
        del self.model[name]

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
        self.model[dst] = _copy(self.model[src])

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
        self.db[name][ptr + "/" + escape(key)] = value
        node[key] = _copy(value)

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
        node[i] = _copy(value)

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
        # snapshot of /a, which _copy(svalue) below takes before the model changes.
        handle = self.db[sname][sptr] if sptr else self.db[sname]
        self.db[dname][dptr + "/" + escape(key)] = handle
        dnode[key] = _copy(svalue)

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
        node.append(_copy(value))

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
        node.insert(i, _copy(value))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=keys())
    def move(self, data: st.DataObject, key: str) -> None:
        src = self._pick_node(data, lambda p, v: p != "", "source")
        if src is None:
            return
        name, sptr, svalue = src
        root = self.model[name]
        sparent, skey = _parent(root, sptr)
        sparent_ptr = sptr.rsplit("/", 1)[0]
        dicts = [
            (p, v)
            for p, v in _nodes(root)
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
        self.db[name].move(sptr, dst)
        dnode[key] = sparent.pop(skey)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def write_slice(self, data: st.DataObject) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, np.ndarray) and v.ndim >= 1 and v.size > 0, "array")
        if pick is None:
            return
        name, ptr, arr = pick
        n = arr.shape[0]
        start = data.draw(st.integers(0, n - 1), label="start")
        stop = data.draw(st.integers(start + 1, n), label="stop")
        values = data.draw(hnp.arrays(arr.dtype, (stop - start,) + arr.shape[1:], fill=st.nothing()), label="values")
        h = self.db[name][ptr]  # "" addresses the node itself (an array root)
        h[start:stop] = values
        arr[start:stop] = values

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
    def healthy(self) -> None:
        self.steps += 1
        if self.steps % CHECK_EVERY == 0:
            report = self.db.check()
            assert report.ok, report.findings


# ~30 runs of ~30 steps under the "ci" profile, 10x fewer runs than examples otherwise.
_runs = settings.default.max_examples
TensorDBMachine.TestCase.settings = settings(
    settings.default,
    stateful_step_count=30,
    max_examples=min(_runs, 30) if _runs <= 100 else _runs // 10,
)
test_tensordb_state_machine = TensorDBMachine.TestCase
