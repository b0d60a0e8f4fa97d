"""Stateful test of versions: a real database against a model of its current state and of every snapshot.

Rules write (new trees, scalars, array slices, deletes of trees and
subtrees), move (``db.move``, ``db.mv``), copy by reference (``db.cp``),
take snapshots (sometimes in a transaction rolled back), tag and untag,
restore (the whole database or a pattern), expire and gc. The model keeps
the current value of every tree and, for each live snapshot, the value of
every tree then. After every step every live snapshot loads exactly its
model value, the current state equals the model, every array refcount equals
the references counted from the raw tables (current nodes and kept
versions), and ``check()`` finds nothing. After gc the arrays left are
exactly those some state (current or a live snapshot) reaches.
"""

from __future__ import annotations

import collections
import fnmatch
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
from strategies import assert_tree_equal, escape, model_nodes, model_parent, model_resolve

import tensordb

NAMES = st.sampled_from(["a", "b", "c", "bm01-x", "bm01-y", "bm02-z"])
PATTERNS = st.sampled_from(["a", "bm01-*", "bm0?-*", "*", "zz*"])
KEYS = st.sampled_from(["k", "p", "q", "data", "~x", "a/b"])
TAGS = st.sampled_from(["raw", "clean", "v1", "v2"])
DTYPES = st.sampled_from([np.dtype("<f8"), np.dtype(">i4"), np.dtype("u1")])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=4),
                    st.floats(allow_nan=False, width=32))


@st.composite
def small_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(DTYPES)
    shape = draw(st.tuples(st.integers(1, 12)) | st.tuples(st.integers(1, 5), st.integers(1, 4)))
    return draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype, allow_nan=False)))


LEAVES = st.one_of(SCALARS, small_arrays(), small_arrays())
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(KEYS, inner, max_size=3)), max_leaves=6)
ROOTS = st.dictionaries(KEYS, VALUES, min_size=1, max_size=4)


class Abort(Exception):
    """Raised inside db.transaction() to roll it back."""


def copy_value(value: Any) -> Any:
    """A deep copy that never aliases arrays."""
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


MISSING = object()


def same(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    try:
        assert_tree_equal(a, b)
    except AssertionError:
        return False
    return True


class VersionsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tdb-versions-")
        self.path = Path(self.dir) / "v.tdb"
        self.db = tensordb.open(self.path)
        self.model: dict[str, Any] = {}
        self.snaps: dict[int, dict[str, Any]] = {}
        self.tags: dict[str, int] = {}
        # an open view of a snapshot and a handle taken from it: (snapshot id, view, tree name, handle)
        self.view: tuple[int, tensordb.Database, str, Any] | None = None

    def teardown(self) -> None:
        try:
            self._close_view()
            self.db.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ helpers

    def _pick_node(self, data: st.DataObject, pred: Any, label: str) -> tuple[str, str, Any] | None:
        cands = [(name, p, v) for name in sorted(self.model) for p, v in model_nodes(self.model[name]) if pred(p, v)]
        if not cands:
            return None
        return data.draw(st.sampled_from(cands), label=label)

    def _pick_snapshot(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(sorted(self.snaps)), label="snapshot")

    def _ref(self, data: st.DataObject, sid: int) -> Any:
        """The snapshot named by its id, its Snapshot object or one of its tags."""
        tags = sorted(t for t, s in self.tags.items() if s == sid)
        how = data.draw(st.sampled_from(["id", "object", *(["tag"] if tags else [])]), label="named by")
        if how == "id":
            return sid
        if how == "object":
            return next(s for s in self.db.history() if s.id == sid)
        return data.draw(st.sampled_from(tags), label="tag")

    def _close_view(self) -> None:
        if self.view is not None:
            self.view[1].close()
            self.view = None

    def _maybe_rolled_back(self, data: st.DataObject, action: Any) -> bool:
        """Sometimes run ``action`` in a transaction rolled back: returns True if it was."""
        if data.draw(st.integers(0, 5), label="roll back?") == 0:
            try:
                with self.db.transaction():
                    action()
                    raise Abort
            except Abort:
                return True
        action()
        return False

    # ------------------------------------------------------------ writes

    @rule(name=NAMES, value=ROOTS)
    def create_tree(self, name: str, value: dict[str, Any]) -> None:
        self.db[name] = value
        self.model[name] = copy_value(value)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=KEYS, value=SCALARS)
    def set_scalar(self, data: st.DataObject, key: str, value: Any) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, dict), "dict")
        if pick is None:
            return
        name, ptr, node = pick

        def action() -> None:
            self.db[name][ptr + "/" + escape(key)] = value

        if not self._maybe_rolled_back(data, action):
            node[key] = value

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def write_slice(self, data: st.DataObject) -> None:
        pick = self._pick_node(data, lambda p, v: isinstance(v, np.ndarray), "array")
        if pick is None:
            return
        name, ptr, arr = pick
        sl = data.draw(st.slices(arr.shape[0]), label="slice")
        values = data.draw(hnp.arrays(arr.dtype, arr[sl].shape, elements=hnp.from_dtype(arr.dtype, allow_nan=False)),
                           label="values")

        def action() -> None:
            handle = self.db[name][ptr]
            assert isinstance(handle, tensordb.Array)
            handle[sl] = values

        if not self._maybe_rolled_back(data, action):
            arr[sl] = values

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_tree(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.model)), label="tree")
        del self.db[name]
        del self.model[name]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_subtree(self, data: st.DataObject) -> None:
        pick = self._pick_node(data, lambda p, v: p != "", "node")
        if pick is None:
            return
        name, ptr, _ = pick
        del self.db[name][ptr]
        parent, key = model_parent(self.model[name], ptr)
        del parent[key]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=KEYS, bulk=st.booleans())
    def move(self, data: st.DataObject, key: str, bulk: bool) -> None:
        """A node to a new key of a dict of the same tree: db.move (one tree by name) or db.mv."""
        src = self._pick_node(data, lambda p, v: p != "", "source")
        if src is None:
            return
        name, sptr, _ = src
        root = self.model[name]
        sparent, skey = model_parent(root, sptr)
        if isinstance(sparent, list):
            return  # removing a list item renumbers its siblings: keep it simple
        dicts = [(p, v) for p, v in model_nodes(root) if isinstance(v, dict) and key not in v
                 and not (p + "/").startswith(sptr + "/")]
        if not dicts:
            return
        dptr, dnode = data.draw(st.sampled_from(dicts), label="dest dict")
        dst = dptr + "/" + escape(key)
        if bulk:
            assert self.db.move(sptr, dst, trees=name) == 1
        else:
            self.db.mv(name + sptr, name + dst)
        dnode[key] = sparent.pop(skey)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), dst=NAMES)
    def rename_tree(self, data: st.DataObject, dst: str) -> None:
        src = data.draw(st.sampled_from(sorted(self.model)), label="tree")
        if dst in self.model:
            return
        self.db.mv(src, dst)
        self.model[dst] = self.model.pop(src)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), dst=NAMES, key=KEYS)
    def cp(self, data: st.DataObject, dst: str, key: str) -> None:
        """db.cp by reference: a whole tree to a tree name, or a node into a dict of another tree."""
        src = self._pick_node(data, lambda p, v: True, "source")
        assert src is not None
        sname, sptr, svalue = src
        if not sptr:
            if dst == sname:
                return
            self.db.cp(sname, dst, replace=True)
            self.model[dst] = copy_value(svalue)
            return
        target = self._pick_node(data, lambda p, v: isinstance(v, dict), "dest dict")
        assert target is not None
        dname, dptr, dnode = target
        if dname == sname:
            return  # within a tree, destinations inside the source are refused
        self.db.cp(sname + sptr, dname + dptr + "/" + escape(key), replace=True)
        dnode[key] = copy_value(svalue)

    # ------------------------------------------------------------ history

    @rule(data=st.data(), message=st.text(max_size=5))
    def snapshot(self, data: st.DataObject, message: str) -> None:
        taken: list[tensordb.Snapshot] = []
        if self._maybe_rolled_back(data, lambda: taken.append(self.db.snapshot(message))):
            return
        (snap,) = taken
        assert snap.message == message
        assert snap.id > max(self.snaps, default=0)
        assert snap.parent_id == max(self.snaps, default=None)
        self.snaps[snap.id] = copy_value(self.model)

    @precondition(lambda self: self.snaps)
    @rule(data=st.data(), tag=TAGS)
    def tag(self, data: st.DataObject, tag: str) -> None:
        sid = self._pick_snapshot(data)
        ref = self._ref(data, sid)
        if tag in self.tags:
            with pytest.raises(ValueError):
                self.db.tag(tag, ref)
            return
        assert self.db.tag(tag, ref).id == sid
        self.tags[tag] = sid

    @precondition(lambda self: self.tags)
    @rule(data=st.data())
    def untag(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(self.tags)), label="tag")
        self.db.untag(tag)
        del self.tags[tag]

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def restore_all(self, data: st.DataObject) -> None:
        sid = self._pick_snapshot(data)
        ref = self._ref(data, sid)
        rolled_back = self._maybe_rolled_back(data, lambda: self.db.restore(ref))
        if not rolled_back:
            self.model = copy_value(self.snaps[sid])

    @precondition(lambda self: self.snaps)
    @rule(data=st.data(), pattern=PATTERNS)
    def restore_some(self, data: st.DataObject, pattern: str) -> None:
        sid = self._pick_snapshot(data)
        old = self.snaps[sid]
        names = self.db.restore(self._ref(data, sid), trees=pattern)
        wanted = {n for n in set(old) | set(self.model) if fnmatch.fnmatchcase(n, pattern)}
        # every tree whose content differed is named (a few unchanged ones may be too)
        assert set(names) <= wanted, (names, wanted)
        differed = {n for n in wanted if not same(old.get(n, MISSING), self.model.get(n, MISSING))}
        assert differed <= set(names), (names, differed)
        for name in wanted:
            if name in old:
                self.model[name] = copy_value(old[name])
            else:
                self.model.pop(name, None)

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        sid = self._pick_snapshot(data)
        tagged = set(self.tags.values())
        gone = [s for s in self.snaps if s < sid and s not in tagged]
        assert self.db.expire(before=self._ref(data, sid)) == len(gone)
        for s in gone:
            del self.snaps[s]
        if self.view is not None and self.view[0] not in self.snaps:
            self._close_view()

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def take_a_handle_from_a_view(self, data: st.DataObject) -> None:
        """Keep a view and a handle of one of its trees (or of a node in it) open over the next steps."""
        sid = self._pick_snapshot(data)
        if not self.snaps[sid]:
            return
        self._close_view()
        view = self.db.at(self._ref(data, sid))
        name = data.draw(st.sampled_from(sorted(self.snaps[sid])), label="tree of the view")
        ptr = data.draw(st.sampled_from([p for p, _ in model_nodes(self.snaps[sid][name])]), label="node of the view")
        handle = view[name][ptr] if ptr else view[name]
        self.view = (sid, view, name + "\0" + ptr, handle)

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def diff(self, data: st.DataObject) -> None:
        """diff names exactly the trees whose values differ, in (tree, path) order, and nothing for equal states."""
        sid = self._pick_snapshot(data)
        other = data.draw(st.sampled_from([None, *sorted(self.snaps)]), label="other side")
        old, new = self.snaps[sid], self.model if other is None else self.snaps[other]
        found = self.db.diff(self._ref(data, sid), None if other is None else self._ref(data, other))
        keys = [(c.tree, c.path) for c in found]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), keys
        differ = {n for n in set(old) | set(new) if not same(old.get(n, MISSING), new.get(n, MISSING))}
        assert {c.tree for c in found} == differ, (keys, differ)
        for c in found:
            assert c.kind in ("added", "removed", "changed")
            if c.path == "" and (c.tree not in old or c.tree not in new):
                assert c.kind == ("added" if c.tree in new else "removed")

    @rule()
    def gc(self) -> None:
        self.db.gc()
        arrays, reached = self._arrays_after_gc()
        assert arrays == reached, f"gc kept {sorted(arrays - reached)}, freed {sorted(reached - arrays)}"

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = tensordb.open(self.path)

    def _arrays_after_gc(self) -> tuple[set[int], set[int]]:
        """The arrays stored, and those the current state or a live snapshot reaches (mark phase)."""
        reached = {a for (a,) in self.db.sql("SELECT array_id FROM nodes WHERE array_id IS NOT NULL")}
        for sid in self.snaps:
            with self.db.at(sid) as view:
                reached |= {a for (a,) in view.sql("SELECT array_id FROM nodes WHERE array_id IS NOT NULL")}
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            arrays = {a for (a,) in con.execute("SELECT array_id FROM array")}
        finally:
            con.close()
        return arrays, reached

    # ------------------------------------------------------------ invariants

    @invariant()
    def current_state_is_the_model(self) -> None:
        assert sorted(self.db) == sorted(self.model)
        for name, value in self.model.items():
            assert_tree_equal(self.db[name].load(), value, path=f"current {name!r}:")

    @invariant()
    def every_live_snapshot_is_its_model(self) -> None:
        history = self.db.history()
        assert [s.id for s in history] == sorted(self.snaps, reverse=True)
        live = sorted(self.snaps)
        assert [s.parent_id for s in history] == ([None, *live[:-1]] if live else [])[::-1]
        assert {t: s.id for t, s in self.db.tags().items()} == self.tags
        for sid, trees in self.snaps.items():
            with self.db.at(sid) as view:
                assert sorted(view) == sorted(trees), sid
                for name, value in trees.items():
                    assert_tree_equal(view[name].load(), value, path=f"snapshot {sid} {name!r}:")

    @invariant()
    def the_handle_of_a_view_reads_its_snapshot(self) -> None:
        if self.view is None:
            return
        sid, _, where, handle = self.view
        name, ptr = where.split("\0")
        expected = model_resolve(self.snaps[sid][name], ptr)
        got = handle[...] if isinstance(handle, tensordb.Array) else handle
        got = got.load() if hasattr(got, "load") else got
        assert_tree_equal(got, expected, path=f"handle {where!r} of snapshot {sid}:")

    @invariant()
    def refcounts_are_the_references(self) -> None:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            refs = collections.Counter(a for (a,) in con.execute(
                "SELECT array_id FROM node WHERE array_id IS NOT NULL UNION ALL "
                "SELECT array_id FROM node_history WHERE array_id IS NOT NULL"))
            stored = collections.Counter({a: rc for a, rc in con.execute("SELECT array_id, refcount FROM array")
                                          if rc})
            chunk_refs = collections.Counter(c for (c,) in con.execute("SELECT chunk_id FROM chunk_ref"))
            chunk_rc = collections.Counter({c: rc for c, rc in con.execute("SELECT chunk_id, refcount FROM chunk")
                                            if rc})
        finally:
            con.close()
        assert stored == refs, "array refcounts"
        assert chunk_rc == chunk_refs, "chunk refcounts"

    @invariant()
    def healthy(self) -> None:
        report = self.db.check()
        assert report.ok and not report.findings, report.findings


FAST = settings(settings(), max_examples=15, stateful_step_count=25)
SLOW = settings(settings(), max_examples=settings().max_examples, stateful_step_count=30)


class TestFast(VersionsMachine.TestCase):  # type: ignore[misc,valid-type]
    settings = FAST


@pytest.mark.slow
class TestSlow(VersionsMachine.TestCase):  # type: ignore[misc,valid-type]
    settings = SLOW
