"""A deterministic workload for the crash, power-loss and I/O-fault suites; its model; the verifier.

Transaction ``k`` of a run with seed ``s`` is generated from
``numpy.random.default_rng([s, k])`` and from the model as it stands before
it (the model: tree name -> the plain value ``tree.load()`` must return).
A process that learns which transactions were acknowledged can therefore
recompute the exact expected state, and the two states allowed for the one
transaction in flight when a crash hit: before it, or after it.

Trees are self-describing: each holds a ``digest`` over the rest of its
content, rewritten in the same transaction as any change, so a reader that
knows nothing of the workload can tell a torn tree from a whole one.

Every tree has an inline array (``small``) and a two-chunk array in a pack
file (``big``); ``share`` builds trees that reference another tree's arrays,
so slice writes copy-on-write shared arrays, and deletes followed by ``gc``
make packs sparse enough for compaction.

History is part of the workload: ``snapshot`` (sometimes tagged in the same
transaction), ``restore`` (the whole database or the trees of a pattern) and
``expire`` (sometimes followed by ``gc``) are transactions like the others,
and the model keeps the value of every live snapshot and the tags, so the
verifier checks history too: the snapshots and tags listed, and every live
snapshot's trees, before and after gc.
"""

from __future__ import annotations

import fnmatch
import hashlib
import random
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from strategies import assert_tree_equal

import tensordb

__all__ = [
    "Op", "make_op", "apply_db", "apply_model", "replay", "replay_model", "digest", "Verdict", "verify", "build_base",
    "reader_loop", "KINDS", "ALLOWED_BEFORE_GC", "differs", "verify_bundle", "Model", "history_differs",
    "snapshots_differ", "snaps_of",
]

#: int32 elements of the inline array (2 KiB: one inline chunk).
SMALL_N = 512
#: uint64 elements per chunk of the pack array: 72,000 random bytes stay above
#: the 64 KiB inline threshold once compressed.
BIG_CHUNK = 9000
BIG_N = 2 * BIG_CHUNK

#: Operation kinds, each one transaction (``gc`` is two: compaction, then the tail cut;
#: ``rollback`` is a transaction that writes a tree and rolls back, then a ``create``;
#: ``expire`` with ``gc`` is an expire, then a gc).
KINDS = ("create", "share", "slice", "move", "rename", "delete", "gc", "multi", "rollback", "snapshot", "restore",
         "expire")
#: check() findings allowed after a crash and before gc(): reclaimable bytes only.
ALLOWED_BEFORE_GC = frozenset({"pack-unreferenced-bytes", "pack-orphan-file"})



class Model(dict[str, dict[str, Any]]):
    """Tree name -> value, and the history: ``snaps`` (live snapshot id -> {tree name: value}) and ``tags``.

    Values are never changed in place (every operation builds new dicts and
    arrays), so a snapshot shares them with the state it was taken from.
    """

    def __init__(self, trees: Any = (), snaps: dict[int, dict[str, Any]] | None = None,
                 tags: dict[str, int] | None = None) -> None:
        super().__init__(trees)
        self.snaps: dict[int, dict[str, Any]] = dict(snaps or {})
        self.tags: dict[str, int] = dict(tags or {})


def _copy(model: dict[str, dict[str, Any]]) -> Model:
    """A new Model with the same trees and history (a plain dict has no history)."""
    return Model(model, getattr(model, "snaps", None), getattr(model, "tags", None))


def snaps_of(model: dict[str, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return getattr(model, "snaps", {})


@dataclass(frozen=True)
class Op:
    """One transaction of the workload, with all the data it writes."""

    k: int
    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        brief = {key: (f"<{value.dtype} {value.shape}>" if isinstance(value, np.ndarray) else value)
                 for key, value in self.args.items() if key != "value"}
        return f"#{self.k} {self.kind} {brief}"


# -- digests -------------------------------------------------------------------------------------

def _feed(h: Any, value: Any) -> None:
    if isinstance(value, dict):
        h.update(b"{")
        for key in sorted(value):
            h.update(key.encode() + b"\0")
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, list):
        h.update(b"[")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(f"{type(value).__name__}:{value!r}".encode())


def digest(tree: dict[str, Any]) -> int:
    """A 63-bit digest of everything in ``tree`` but its ``digest`` key."""
    h = hashlib.blake2b(digest_size=8)
    _feed(h, {key: value for key, value in tree.items() if key != "digest"})
    return int.from_bytes(h.digest(), "little") >> 1


def _with_digest(tree: dict[str, Any]) -> dict[str, Any]:
    tree["digest"] = digest(tree)
    return tree


# -- generating operations -----------------------------------------------------------------------

def _new_tree(rng: np.random.Generator, uid: int) -> dict[str, Any]:
    return _with_digest({
        "uid": uid,
        "meta": {"note": f"tree {uid}", "vals": [int(v) for v in rng.integers(0, 1000, 3)]},
        "small": rng.integers(-1000, 1000, SMALL_N, dtype=np.int32),
        "big": rng.integers(0, 2**63, BIG_N, dtype=np.uint64),
    })


def _slice_args(rng: np.random.Generator, model: Model) -> dict[str, Any]:
    name = str(rng.choice(sorted(model)))
    if rng.random() < 0.7:
        which, n, dtype = "big", BIG_N, np.uint64
        start = int(rng.integers(0, n - 1))
        stop = min(n, start + int(rng.integers(1, 4000)))
        values = rng.integers(0, 2**63, stop - start, dtype=dtype)
    else:
        which, n = "small", SMALL_N
        start = int(rng.integers(0, n - 1))
        stop = min(n, start + int(rng.integers(1, 200)))
        values = rng.integers(-1000, 1000, stop - start, dtype=np.int32)
    return {"name": name, "which": which, "start": start, "stop": stop, "values": values}


def make_op(seed: int, k: int, model: Model, kind: str | None = None) -> Op:
    """Transaction ``k``: chosen and filled from ``rng([seed, k])`` and the current model."""
    rng = np.random.default_rng([seed, k])
    names = sorted(model)
    n = len(names)
    live = sorted(snaps_of(model))
    if kind is None:
        weights = {
            "create": 3.0 if n < 12 else 0.5,
            "share": 2.0 if n else 0.0,
            "slice": 4.0 if n else 0.0,
            "move": 1.0 if n else 0.0,
            "rename": 0.7 if n else 0.0,
            "delete": max(0.0, n - 5.0),
            "gc": 0.8,  # with expire followed by gc (below), as often as before history
            "multi": 1.5 if n else 0.0,
            "rollback": 0.5,
            "snapshot": 1.0 if len(live) < 2 else 0.3,
            "restore": 0.8 if live else 0.0,
            "expire": 0.8 * (len(live) - 1) if len(live) > 1 else 0.0,
        }
        total = sum(weights.values())
        kind = str(rng.choice(list(weights), p=[w / total for w in weights.values()]))
    if kind == "create":
        return Op(k, kind, {"name": f"t{k}", "value": _new_tree(rng, k)})
    if kind == "rollback":
        return Op(k, kind, {"name": f"t{k}", "value": _new_tree(rng, k), "doomed": _new_tree(rng, -k)})
    if kind == "share":
        return Op(k, kind, {"name": f"s{k}", "src": str(rng.choice(names)), "uid": k,
                            "vals": [int(v) for v in rng.integers(0, 1000, 3)]})
    if kind == "slice":
        return Op(k, kind, _slice_args(rng, model))
    if kind == "move":
        return Op(k, kind, {"name": str(rng.choice(names))})
    if kind == "rename":
        return Op(k, kind, {"name": str(rng.choice(names)), "new": f"r{k}"})
    if kind == "delete":
        return Op(k, kind, {"name": str(rng.choice(names))})
    if kind == "gc":
        return Op(k, kind)
    if kind == "multi":
        args: dict[str, Any] = {"name": f"m{k}", "value": _new_tree(rng, k), "slice": _slice_args(rng, model)}
        others = [x for x in names if x != args["slice"]["name"]]
        args["delete"] = str(rng.choice(others)) if others and rng.random() < 0.7 else None
        return Op(k, kind, args)
    if kind == "snapshot":
        return Op(k, kind, {"message": f"op {k}", "tag": f"tag{k}" if rng.random() < 0.3 else None,
                            "id": (live[-1] if live else 0) + 1})
    if kind == "restore":
        snapshot = int(rng.choice(live))
        candidates = sorted(set(names) | set(snaps_of(model)[snapshot]))
        pattern = None
        if candidates and rng.random() < 0.6:
            name = str(rng.choice(candidates))
            pattern = name if rng.random() < 0.5 else name[0] + "*"
        return Op(k, kind, {"snapshot": snapshot, "trees": pattern})
    if kind == "expire":
        return Op(k, kind, {"before": int(rng.choice(live[1:])), "gc": bool(rng.random() < 0.3)})
    raise ValueError(f"unknown operation kind {kind!r}")


# -- applying them -------------------------------------------------------------------------------

def _db_create(db: tensordb.Database, name: str, value: dict[str, Any]) -> None:
    head = {key: value[key] for key in ("uid", "meta", "small")}
    with db.transaction():
        db[name] = head
        tree = db[name]
        tree.set("/big", value["big"], chunks=(BIG_CHUNK,))
        tree["digest"] = value["digest"]


def _db_slice(db: tensordb.Database, args: dict[str, Any], new_digest: int) -> None:
    with db.transaction():
        tree = db[args["name"]]
        tree["/" + args["which"]][args["start"]:args["stop"]] = args["values"]
        tree["digest"] = new_digest


def apply_db(db: tensordb.Database, op: Op, model: Model) -> None:
    """Run ``op`` against the database (``model``: the state before it, for the new digests)."""
    a = op.args
    after = apply_model(model, op)
    if op.kind == "create":
        _db_create(db, a["name"], a["value"])
    elif op.kind == "share":
        src = db[a["src"]]
        db[a["name"]] = {"uid": a["uid"], "meta": {"note": f"shares {a['src']}", "vals": a["vals"]},
                         "small": src["/small"], "big": src["/big"], "digest": after[a["name"]]["digest"]}
    elif op.kind == "slice":
        _db_slice(db, a, after[a["name"]]["digest"])
    elif op.kind == "move":
        tree = db[a["name"]]
        src, dst = ("/meta", "/info") if "meta" in model[a["name"]] else ("/info", "/meta")
        with db.transaction():
            tree.move(src, dst)
            tree["digest"] = after[a["name"]]["digest"]
    elif op.kind == "rename":
        db.rename(a["name"], a["new"])
    elif op.kind == "delete":
        del db[a["name"]]
    elif op.kind == "gc":
        db.gc()
    elif op.kind == "multi":
        with db.transaction():
            _db_create(db, a["name"], a["value"])
            _db_slice(db, a["slice"], after[a["slice"]["name"]]["digest"])
            if a["delete"] is not None:
                del db[a["delete"]]
    elif op.kind == "rollback":
        try:
            with db.transaction():
                _db_create(db, f"doomed{op.k}", a["doomed"])
                raise _RolledBack
        except _RolledBack:
            pass
        _db_create(db, a["name"], a["value"])
    elif op.kind == "snapshot":
        with db.transaction():
            snapshot = db.snapshot(a["message"])
            if a["tag"] is not None:
                db.tag(a["tag"], snapshot)
        assert snapshot.id == a["id"], (snapshot, a)
    elif op.kind == "restore":
        db.restore(a["snapshot"], trees=a["trees"])
    elif op.kind == "expire":
        db.expire(before=a["before"])
        if a["gc"]:
            db.gc()
    else:
        raise ValueError(op.kind)


class _RolledBack(Exception):
    """Raised to roll a transaction back on purpose."""


def _model_slice(model: Model, args: dict[str, Any]) -> None:
    tree = dict(model[args["name"]])
    array = tree[args["which"]].copy()
    array[args["start"]:args["stop"]] = args["values"]
    tree[args["which"]] = array
    model[args["name"]] = _with_digest(tree)


def apply_model(model: Model, op: Op) -> Model:
    """The model after ``op`` (a new dict; ``model`` is not changed)."""
    new = _copy(model)
    a = op.args
    if op.kind in ("create", "rollback"):
        new[a["name"]] = a["value"]
    elif op.kind == "share":
        src = model[a["src"]]
        new[a["name"]] = _with_digest({"uid": a["uid"], "meta": {"note": f"shares {a['src']}", "vals": a["vals"]},
                                       "small": src["small"], "big": src["big"]})
    elif op.kind == "slice":
        _model_slice(new, a)
    elif op.kind == "move":
        tree = dict(model[a["name"]])
        src, dst = ("meta", "info") if "meta" in tree else ("info", "meta")
        tree[dst] = tree.pop(src)
        new[a["name"]] = _with_digest(tree)
    elif op.kind == "rename":
        new[a["new"]] = new.pop(a["name"])
    elif op.kind == "delete":
        del new[a["name"]]
    elif op.kind == "multi":
        new[a["name"]] = a["value"]
        _model_slice(new, a["slice"])
        if a["delete"] is not None:
            del new[a["delete"]]
    elif op.kind == "snapshot":
        new.snaps[a["id"]] = dict(model)
        if a["tag"] is not None:
            new.tags[a["tag"]] = a["id"]
    elif op.kind == "restore":
        old = new.snaps[a["snapshot"]]
        for name in set(old) | set(model):
            if a["trees"] is None or fnmatch.fnmatchcase(name, a["trees"]):
                if name in old:
                    new[name] = old[name]
                else:
                    del new[name]
    elif op.kind == "expire":
        tagged = set(new.tags.values())
        new.snaps = {sid: trees for sid, trees in new.snaps.items() if sid >= a["before"] or sid in tagged}
    return new


def replay(seed: int, model: Model, ks: range) -> Iterator[tuple[Op, Model]]:
    """Transactions ``ks`` in order, each with the model after it."""
    for k in ks:
        op = make_op(seed, k, model)
        model = apply_model(model, op)
        yield op, model


def replay_model(seed: int, model: Model, ks: range) -> Model:
    """The model after transactions ``ks``."""
    for k in ks:
        model = apply_model(model, make_op(seed, k, model))
    return model


def build_base(path: str, seed: int, n_ops: int) -> Model:
    """A database at ``path`` after ``n_ops`` workload transactions; returns its model."""
    model = Model()
    with tensordb.open(path, mode="w") as db:
        for k in range(n_ops):
            op = make_op(seed, k, model)
            apply_db(db, op, model)
            model = apply_model(model, op)
    return model


# -- verifying a database after a crash ----------------------------------------------------------

@dataclass
class Verdict:
    """What verify() found: which candidate state the database holds, and every problem."""

    matched: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.matched is not None


def differs(actual: dict[str, Any], expected: Model) -> str | None:
    """How ``actual`` (tree name -> loaded value) differs from ``expected``; None if it does not."""
    if sorted(actual) != sorted(expected):
        return f"trees {sorted(actual)} != expected {sorted(expected)}"
    for name in expected:
        try:
            assert_tree_equal(actual[name], expected[name], name)
        except AssertionError as exc:
            return str(exc)
    return None


def history_differs(db: tensordb.Database, expected: dict[str, Any]) -> str | None:
    """How the snapshots and tags of ``db`` differ from the model's (a plain dict model says nothing of them)."""
    if not isinstance(expected, Model):
        return None
    ids = sorted(s.id for s in db.history())
    if ids != sorted(expected.snaps):
        return f"snapshots {ids} != expected {sorted(expected.snaps)}"
    tags = {name: s.id for name, s in db.tags().items()}
    if tags != expected.tags:
        return f"tags {tags} != expected {expected.tags}"
    return None


def snapshots_differ(db: tensordb.Database, expected: dict[str, Any]) -> list[str]:
    """How the trees of each live snapshot differ from the model's."""
    problems = []
    for sid, trees in sorted(snaps_of(expected).items()):
        with db.at(sid) as view:
            actual = {name: view[name].load() for name in view}
        difference = differs(actual, trees)
        if difference is not None:
            problems.append(f"snapshot {sid}: {difference}")
    return problems


def verify(path: str, candidates: list[Model], *, gc: bool = True) -> Verdict:
    """Open the database at ``path`` and check it holds one of ``candidates``, whole and clean.

    A candidate's history (snapshots, tags and, checked after gc, the trees
    of every live snapshot) must be there too. Before gc() only reclaimable pack bytes may
    be reported; gc() must then leave a database with no finding at all and
    the same content, history included.
    """
    verdict = Verdict()
    try:
        db = tensordb.open(path)
    except Exception as exc:
        verdict.problems.append(f"open failed: {type(exc).__name__}: {exc}")
        return verdict
    try:
        def load() -> dict[str, Any] | None:
            try:
                return {name: db[name].load() for name in db}
            except Exception as exc:
                verdict.problems.append(f"load failed: {type(exc).__name__}: {exc}")
                return None

        actual = load()
        if actual is not None:
            differences = []
            for i, candidate in enumerate(candidates):
                difference = differs(actual, candidate) or history_differs(db, candidate)
                if difference is None:
                    verdict.matched = i
                    break
                differences.append(f"candidate {i}: {difference}")
            else:
                verdict.problems.append("the database holds none of the allowed states: " + "; ".join(differences))
        if verdict.matched is not None and not gc:
            verdict.problems += snapshots_differ(db, candidates[verdict.matched])
        report = db.check()
        for finding in report.findings:
            if finding.code not in ALLOWED_BEFORE_GC or finding.severity != "warning":
                verdict.problems.append(f"check before gc: {finding}")
        if gc:
            db.gc()
            report = db.check()
            verdict.problems.extend(f"check after gc: {finding}" for finding in report.findings)
            if verdict.matched is not None:
                after_gc = load()
                if after_gc is not None and differs(after_gc, candidates[verdict.matched]) is not None:
                    verdict.problems.append("gc changed the content")
                # once, after gc: a snapshot the crash damaged stays damaged, and gc must free nothing it holds
                verdict.problems += [f"after gc: {p}" for p in snapshots_differ(db, candidates[verdict.matched])]
    except Exception as exc:
        verdict.problems.append(f"verification failed: {type(exc).__name__}: {exc}")
    finally:
        try:
            db.close()
        except Exception as exc:
            verdict.problems.append(f"close failed: {type(exc).__name__}: {exc}")
    return verdict


def verify_bundle(bundle: Path, expected: Model) -> list[str]:
    """A bundle left by a crash is absent, or complete: one file, clean, with the expected trees."""
    if not bundle.exists():
        return []
    problems = []
    with tensordb.open(bundle, mode="r") as db:
        report = db.check()
        problems += [f"bundle: {finding}" for finding in report.findings]
        actual = {name: db[name].load() for name in db}
    difference = differs(actual, expected)
    if difference:
        problems.append(f"bundle content: {difference}")
    if Path(str(bundle) + "-packs").exists():
        problems.append("bundle: a pack folder exists next to it")
    return problems


# -- a reader that knows nothing of the workload -------------------------------------------------

def reader_loop(path: str, seed: int, stop_fd: int, pause: float = 0.001,
                report: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Load random trees and check their digests until ``stop_fd`` becomes readable.

    Returns (trees read, errors). A tree deleted or renamed between listing and
    loading (PathNotFoundError, or StaleHandleError from the handle) is not an
    error; a restore may bring the name back (or rewrite the tree while it
    loads), so such a failure is an error only if loading the tree again
    fails too.
    """
    rng = random.Random(seed)
    reads, errors = 0, []
    db = tensordb.open(path, mode="r")
    try:
        while not select.select([stop_fd], [], [], 0)[0]:
            try:
                names = list(db)
                if names:
                    name = rng.choice(names)
                    try:
                        value = db[name].load()
                    except (tensordb.PathNotFoundError, tensordb.StaleHandleError) as exc:
                        if name not in db:
                            continue
                        try:  # deleted, then restored meanwhile: it loads now
                            value = db[name].load()
                        except (tensordb.PathNotFoundError, tensordb.StaleHandleError):
                            if name in db:
                                errors.append(f"{name}: {type(exc).__name__} for a tree that exists: {exc}")
                            continue
                    reads += 1
                    if not isinstance(value, dict) or value.get("digest") != digest(value):
                        errors.append(f"{name}: digest mismatch (a torn or wrong tree)")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if report is not None:
                    report(errors[-1])
            time.sleep(pause)
    finally:
        db.close()
    return reads, errors
