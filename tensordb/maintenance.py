"""Maintenance: gc(), check(), stats(), bundle().

``gc`` deletes arrays no node references and chunks no array references,
then has the storage layer compact sparse pack files in the same transaction
and, after its commit, delete pack files no row names, cut orphaned tail
bytes and give free pages back to the file system
(:mod:`tensordb.storage.compaction`).

``check`` reconciles both ways (rows against files, files against rows) and
reports findings instead of raising, naming the tree, path, array and chunk
concerned.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .arrays.array import ArrayStore
from .arrays.grid import parse_coord_key
from .arrays.indexing import grid_shape
from .errors import CorruptionError, TensorDBError
from .storage import schema
from .storage.bundle import write_bundle
from .storage.compaction import compact_packs, reclaim, reclaimable_in_pack
from .storage.store import Store
from .trees import paths
from .trees.values import KINDS
from .versions import History, Snapshot, show_state

__all__ = ["gc", "check", "stats", "bundle", "CheckReport", "Finding"]


# -- gc ------------------------------------------------------------------------------------

def gc(store: Store, dry_run: bool = False) -> dict[str, int]:
    if dry_run:
        return _gc_preview(store)
    conn = store.conn
    result = {"arrays_removed": 0, "chunks_removed": 0, "bytes_reclaimed": 0, "packs_compacted": 0,
              "packs_deleted": 0, "files_deferred": 0}
    with store.transaction():
        # Refcounts are read from an untrusted file: a row is deleted only if no
        # row really references it, whatever its refcount says.
        conn.execute(f"DELETE FROM array WHERE refcount <= 0 AND {_ARRAY_UNUSED}")
        result["arrays_removed"] = conn.changes()
        freed = conn.one("SELECT count(*), coalesce(sum(CASE WHEN data IS NOT NULL THEN size END), 0) "
                         f"FROM chunk WHERE refcount <= 0 AND {_CHUNK_UNUSED}")
        assert freed is not None
        result["chunks_removed"] = int(freed[0])
        result["bytes_reclaimed"] = int(freed[1])
        conn.execute(f"DELETE FROM chunk WHERE refcount <= 0 AND {_CHUNK_UNUSED}")
        compaction = compact_packs(store)
        result["packs_compacted"] = compaction.packs_compacted
        result["packs_deleted"] = compaction.packs_deleted
        result["bytes_reclaimed"] += compaction.bytes_reclaimed

    def after_commit() -> None:
        reclaimed, result["files_deferred"] = reclaim(store, compaction.unnamed)
        result["bytes_reclaimed"] += reclaimed

    conn.after_commit(after_commit)
    return result


# A row is unused when nothing references it, whatever its refcount column says.
_ARRAY_UNUSED = ("NOT EXISTS (SELECT 1 FROM node n WHERE n.array_id = array.array_id) "
                 "AND NOT EXISTS (SELECT 1 FROM node_history h WHERE h.array_id = array.array_id)")
_CHUNK_UNUSED = "NOT EXISTS (SELECT 1 FROM chunk_ref r WHERE r.chunk_id = chunk.chunk_id)"


def _gc_preview(store: Store) -> dict[str, int]:
    """What gc() would remove, without changing anything (packs are not compacted in a preview)."""
    conn = store.conn
    with store.snapshot():
        arrays = int(conn.scalar("SELECT count(*) FROM array WHERE refcount <= 0"))
        dead = conn.one(
            "SELECT count(*), coalesce(sum(size), 0) FROM chunk c WHERE NOT EXISTS ("
            "SELECT 1 FROM chunk_ref r JOIN array a ON a.array_id = r.array_id "
            "WHERE r.chunk_id = c.chunk_id AND a.refcount > 0)"
        ) or (0, 0)
        known = {n for (n,) in conn.execute("SELECT name FROM pack").fetchall()}
        orphans = sum(os.path.getsize(store.packs.path_of(n)) for n in store.packs.list_files() if n not in known)
    return {"arrays_removed": arrays, "chunks_removed": int(dead[0]), "bytes_reclaimed": int(dead[1]) + orphans,
            "packs_compacted": 0, "packs_deleted": 0}


# -- check ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One problem found by check(): what is wrong, and where."""

    code: str
    message: str
    severity: str = "error"  # "error" (data at risk) or "warning" (reclaimable, harmless)
    tree: str | None = None
    path: str | None = None
    array_id: int | None = None
    chunk_id: int | None = None
    snapshot: int | None = None  # the snapshot whose state has the problem (None: the current state)

    def __str__(self) -> str:
        where = ", ".join(
            f"{k} {v}" for k, v in (("snapshot", self.snapshot), ("tree", self.tree), ("path", self.path),
                                    ("array", self.array_id), ("chunk", self.chunk_id)) if v is not None
        )
        return f"{self.severity}: {self.code}: {self.message}" + (f" ({where})" if where else "")


@dataclass
class CheckReport:
    """The result of check(): ``ok`` is False when any finding is an error."""

    findings: list[Finding] = field(default_factory=list)
    chunks_checked: int = 0
    reclaimable_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings],
                "chunks_checked": self.chunks_checked, "reclaimable_bytes": self.reclaimable_bytes}

    def __str__(self) -> str:
        head = "ok" if self.ok else f"{len(self.errors)} error(s)"
        return "\n".join([f"check: {head}, {self.chunks_checked} chunks verified", *map(str, self.findings)])


def check(store: Store) -> CheckReport:
    report = CheckReport()
    conn = store.conn
    conn.ensure_usable()
    with store.snapshot():
        for step in (_check_sqlite, _check_trees, _check_nodes, _check_node_arrays, _check_refcounts, _check_arrays,
                     _check_chunks, _check_packs, _check_history, _check_snapshot_states):
            try:
                step(store, report)
            except (TensorDBError, ValueError, TypeError) as exc:
                report.findings.append(Finding("check-failed", f"{step.__name__[7:]}: {exc}"))
    return report


def _add(report: CheckReport, code: str, message: str, **where: Any) -> None:
    report.findings.append(Finding(code, message, **where))


def _check_sqlite(store: Store, report: CheckReport) -> None:
    # integrity_check, not quick_check: it also verifies that every index matches its table
    # (a damaged index sends look-ups to the wrong rows).
    for (line,) in store.conn.execute("PRAGMA integrity_check").fetchall():
        if line != "ok":
            _add(report, "sqlite-integrity", str(line))
    app_id = store.conn.scalar("PRAGMA application_id")
    if app_id != schema.APPLICATION_ID:
        _add(report, "format", f"application_id is {app_id}")


def _check_trees(store: Store, report: CheckReport) -> None:
    rows = store.conn.execute(
        "SELECT t.name, t.root_id, n.node_id, n.path, n.parent_id FROM tree t "
        "LEFT JOIN node n ON n.node_id = t.root_id"
    ).fetchall()
    for name, root_id, node_id, path, parent_id in rows:
        if node_id is None:
            _add(report, "tree-root-missing", f"root node {root_id} does not exist", tree=name)
        elif path != "" or parent_id is not None:
            _add(report, "tree-root-invalid", f"root node {root_id} is not a root (path {path!r})", tree=name)
    for name, count in store.conn.execute(  # the file's UNIQUE(name) says so for now, not for a snapshot's state
            "SELECT name, count(*) FROM tree GROUP BY name HAVING count(*) > 1").fetchall():
        _add(report, "tree-name-duplicate", f"{count} trees have this name", tree=name)
    orphan_trees = store.conn.execute(
        "SELECT DISTINCT n.tree_id FROM node n LEFT JOIN tree t ON t.tree_id = n.tree_id WHERE t.tree_id IS NULL"
    ).fetchall()
    for (tree_id,) in orphan_trees:
        _add(report, "node-tree-missing", f"nodes belong to tree id {tree_id}, which does not exist")


def _check_nodes(store: Store, report: CheckReport) -> None:
    """Every node's path must be its parent's path plus its own key or index."""
    cursor = store.conn.execute(
        "SELECT t.name, n.path, n.key, n.pos, n.kind, n.array_id, p.node_id, p.path, p.kind, "
        "p.tree_id = n.tree_id, n.parent_id FROM node n JOIN tree t ON t.tree_id = n.tree_id "
        "LEFT JOIN node p ON p.node_id = n.parent_id"
    )
    for tree, path, key, pos, kind, array_id, p_id, p_path, p_kind, same_tree, parent_id in cursor:
        where = {"tree": tree, "path": path}
        if kind not in KINDS:
            _add(report, "node-kind", f"unknown node kind {kind!r}", **where)
        if (kind == "array") != (array_id is not None):
            _add(report, "node-array", f"a {kind} node with array_id {array_id}", **where)
        if parent_id is None:
            if path != "":
                _add(report, "node-orphan", "a node without parent is not at the root", **where)
            continue
        if p_id is None:
            _add(report, "node-parent-missing", f"parent node {parent_id} does not exist", **where)
            continue
        if not same_tree or p_kind not in ("dict", "list"):
            _add(report, "node-parent-invalid", f"parent is a {p_kind} of another tree or not a container", **where)
            continue
        expected = paths.child(p_path, key if p_kind == "dict" else pos)
        if p_kind == "dict" and key is None:
            _add(report, "node-key-missing", "a dict entry without a key", **where)
        elif path != expected:
            _add(report, "node-path", f"path should be {expected!r}", **where)
    gaps = store.conn.execute(
        "SELECT t.name, p.path, count(*), max(n.pos) FROM node n JOIN node p ON p.node_id = n.parent_id "
        "JOIN tree t ON t.tree_id = p.tree_id WHERE p.kind = 'list' GROUP BY n.parent_id "
        "HAVING count(*) != max(n.pos) + 1 OR min(n.pos) != 0"
    ).fetchall()
    for tree, path, count, _ in gaps:
        _add(report, "list-positions", f"list items are not numbered 0..{count - 1}", tree=tree, path=path)


def _refcount_mismatches(store: Store, table: str, key: str, *referrers: str) -> list[tuple[int, int, int]]:
    """(id, recorded refcount, actual references) wherever the two differ."""
    actual = " + ".join(f"(SELECT count(*) FROM {referrer} r WHERE r.{key} = x.{key})" for referrer in referrers)
    return [tuple(r) for r in store.conn.execute(
        f"SELECT x.{key}, x.refcount, {actual} AS actual FROM {table} x WHERE x.refcount != actual"
    ).fetchall()]


def _check_history(store: Store, report: CheckReport) -> None:
    """The snapshot table, the tags and the history rows are consistent (a shared file may lie)."""
    conn = store.conn
    for snapshot_id, parent_id in conn.execute(
            "SELECT snapshot_id, parent_id FROM snapshot WHERE parent_id IS NOT NULL AND (parent_id >= snapshot_id "
            "OR parent_id NOT IN (SELECT snapshot_id FROM snapshot))").fetchall():
        _add(report, "snapshot-parent", f"parent {parent_id} is not an earlier snapshot", snapshot=snapshot_id)
    sequence = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    previous = (0, 0, 0)
    for snapshot_id, *marks in conn.execute(
            "SELECT snapshot_id, tree_mark, node_mark, array_mark FROM snapshot ORDER BY snapshot_id").fetchall():
        highest = tuple(sequence.get(table, 0) for table in ("tree", "node", "array"))
        if any(not isinstance(m, int) or m < p or m > h for m, p, h in zip(marks, previous, highest)):
            _add(report, "snapshot-marks", f"id marks {tuple(marks)} are not between the previous snapshot's "
                 f"{previous} and the highest ids in use {highest}", snapshot=snapshot_id)
        else:
            previous = tuple(marks)
    for name, snapshot_id in conn.execute(
            "SELECT name, snapshot_id FROM tag WHERE snapshot_id NOT IN (SELECT snapshot_id FROM snapshot)").fetchall():
        _add(report, "tag-missing-snapshot", f"tag {name!r} names snapshot {snapshot_id}, which does not exist")
    epoch = int(conn.scalar("SELECT coalesce(max(snapshot_id), 0) + 1 FROM snapshot"))
    for table, key in (("tree", "tree_id"), ("node", "node_id")):
        bad = conn.execute(f"SELECT {key}, born, died FROM {table}_history WHERE NOT (born < died AND died <= ?) "
                           "LIMIT 100", (epoch,)).fetchall()
        for row_id, born, died in bad:
            _add(report, "history-interval", f"{table} {row_id} kept for epochs [{born}, {died}), "
                 f"which no snapshot up to {epoch - 1} can see")
        unseen = conn.scalar(f"SELECT count(*) FROM {table}_history h WHERE NOT EXISTS (SELECT 1 FROM snapshot s "
                             f"WHERE s.snapshot_id >= h.born AND s.snapshot_id < h.died AND s.{table}_mark >= h.{key})")
        if unseen:
            report.findings.append(Finding("history-unseen", f"{unseen} kept {table} versions are seen by no "
                                           "snapshot", severity="warning"))


def _check_snapshot_states(store: Store, report: CheckReport) -> None:
    """The structure of every snapshot's state, checked as the current state is.

    Walking back from the current state (checked already), a snapshot's state
    differs from the next one's only in the trees ``changed_trees`` names, so
    only those are checked: the cost is the history, not snapshots x size.
    """
    history = History(store.conn, store.filename)
    newer: Snapshot | None = None
    for snapshot in history.listing():
        names = history.changed_trees(snapshot, newer)
        newer = snapshot
        if not names:
            continue
        view = Store(store.filename, "r")
        try:
            marks = history.marks(snapshot)
            show_state(view.conn, marks, trees=sorted(names))
            found = CheckReport()
            with view.snapshot():
                for step in (_check_trees, _check_nodes, _check_node_arrays):
                    step(view, found)
            report.findings += [dataclasses.replace(f, snapshot=snapshot.id) for f in found.findings]
        finally:
            view.close()


def _check_node_arrays(store: Store, report: CheckReport) -> None:
    """Every array a node names exists (run on the current state and on every snapshot's)."""
    missing = store.conn.execute(
        "SELECT n.array_id, t.name, n.path FROM node n JOIN tree t ON t.tree_id = n.tree_id "
        "LEFT JOIN array a ON a.array_id = n.array_id WHERE n.array_id IS NOT NULL AND a.array_id IS NULL"
    ).fetchall()
    for array_id, tree, path in missing:
        _add(report, "array-missing", f"array {array_id} does not exist", tree=tree, path=path, array_id=array_id)


def _check_refcounts(store: Store, report: CheckReport) -> None:
    for array_id, recorded, actual in _refcount_mismatches(store, "array", "array_id", "node", "node_history"):
        _add(report, "array-refcount", f"refcount is {recorded}, {actual} nodes (current or kept by snapshots) "
             "reference it",
             array_id=array_id, **_where_array(store, array_id))
    for chunk_id, recorded, actual in _refcount_mismatches(store, "chunk", "chunk_id", "chunk_ref"):
        _add(report, "chunk-refcount", f"refcount is {recorded}, {actual} chunk index rows reference it",
             chunk_id=chunk_id, **_where_chunk(store, chunk_id))
    dangling = store.conn.execute(
        "SELECT r.array_id, r.coord, r.chunk_id FROM chunk_ref r LEFT JOIN chunk c ON c.chunk_id = r.chunk_id "
        "WHERE c.chunk_id IS NULL"
    ).fetchall()
    for array_id, coord, chunk_id in dangling:
        _add(report, "chunk-missing", f"chunk {coord or '()'} points at chunk record {chunk_id}, which does not exist",
             array_id=array_id, chunk_id=chunk_id, **_where_array(store, array_id))


def _where_array(store: Store, array_id: int) -> dict[str, Any]:
    row = store.conn.one(
        "SELECT t.name, n.path FROM node n JOIN tree t ON t.tree_id = n.tree_id WHERE n.array_id = ? LIMIT 1",
        (array_id,),
    )
    return {"tree": row[0], "path": row[1]} if row else {}


def _where_chunk(store: Store, chunk_id: int) -> dict[str, Any]:
    array_id = store.conn.scalar("SELECT array_id FROM chunk_ref WHERE chunk_id = ? LIMIT 1", (chunk_id,))
    if array_id is None:
        return {}
    return {"array_id": array_id, **_where_array(store, int(array_id))}


def _check_arrays(store: Store, report: CheckReport) -> None:
    arrays = ArrayStore(store)
    for (array_id,) in store.conn.execute("SELECT array_id FROM array").fetchall():
        try:
            meta = arrays.meta(array_id)
            grid = grid_shape(meta.shape, meta.chunks)
            for (coord,) in store.conn.execute("SELECT coord FROM chunk_ref WHERE array_id = ?", (array_id,)):
                parse_coord_key(coord, grid)
        except (CorruptionError, TensorDBError) as exc:
            _add(report, "array-metadata", str(exc), array_id=array_id, **_where_array(store, array_id))


def _referenced_chunks(store: Store) -> Iterator[tuple[int, int, Any, int]]:
    """(chunk id, typesize, codec, raw size) of every chunk, as one array that uses it says."""
    arrays = ArrayStore(store)
    rows = store.conn.execute(
        "SELECT c.chunk_id, (SELECT r.array_id FROM chunk_ref r WHERE r.chunk_id = c.chunk_id LIMIT 1) "
        "FROM chunk c ORDER BY c.pack_id, c.offset"
    ).fetchall()
    for chunk_id, array_id in rows:
        if array_id is None:
            yield chunk_id, 0, None, 0
            continue
        try:
            meta = arrays.meta(array_id)
        except TensorDBError:
            continue  # reported by _check_arrays
        yield chunk_id, meta.itemsize, meta.codec, meta.chunk_nbytes


def _check_chunks(store: Store, report: CheckReport) -> None:
    for chunk_id, typesize, codec, raw_size in _referenced_chunks(store):
        try:
            if codec is None:
                store.chunks.stored_bytes(chunk_id)  # unreferenced: checksum only
            else:
                store.chunks.verify(chunk_id, codec, typesize, raw_size)
            report.chunks_checked += 1
        except CorruptionError as exc:
            _add(report, "chunk-corrupt", str(exc), chunk_id=chunk_id, **_where_chunk(store, chunk_id))


def _check_packs(store: Store, report: CheckReport) -> None:
    packs = store.packs
    known: set[str] = set()
    for pack_id, name in store.conn.execute("SELECT pack_id, name FROM pack").fetchall():
        known.add(str(name))
        try:
            size = packs.file_size(pack_id)
        except CorruptionError as exc:
            _add(report, "pack-name", str(exc))
            continue
        used = store.conn.one(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(max(offset + size), 0) FROM chunk WHERE pack_id = ?",
            (pack_id,),
        ) or (0, 0, 0)
        n_chunks, live, end = (int(v) for v in used)
        if size is None:
            if n_chunks:
                _add(report, "pack-missing", f"pack file {name} is missing ({n_chunks} chunks live in it)")
            continue
        if end > size:
            _add(report, "pack-truncated", f"pack file {name} has {size} bytes, chunks need {end}")
        reclaimable = reclaimable_in_pack(size, live, end)
        if reclaimable > 0:
            report.reclaimable_bytes += reclaimable
            report.findings.append(Finding("pack-unreferenced-bytes",
                                           f"pack file {name} holds {reclaimable} bytes no chunk uses "
                                           "(gc reclaims them)", severity="warning"))
    for name in packs.list_files():
        if name not in known:
            size = os.path.getsize(packs.path_of(name))
            report.reclaimable_bytes += size
            report.findings.append(Finding("pack-orphan-file", f"pack file {name} is not in the database "
                                           "(left by an interrupted transaction; gc deletes it)", severity="warning"))


# -- stats ---------------------------------------------------------------------------------

def stats(store: Store) -> dict[str, Any]:
    conn = store.conn
    with store.snapshot():
        def one(sql: str) -> int:
            return int(conn.scalar(sql) or 0)

        result: dict[str, Any] = {
            "trees": one("SELECT count(*) FROM tree"),
            "nodes": one("SELECT count(*) FROM node"),
            # the arrays of the trees (as of a snapshot, on a view); those only snapshots hold are not counted
            "arrays": one("SELECT count(DISTINCT array_id) FROM node WHERE array_id IS NOT NULL"),
            "unreferenced_arrays": one("SELECT count(*) FROM array WHERE refcount <= 0"),
            "chunks": one("SELECT count(*) FROM chunk"),
            "logical_bytes": one(
                "SELECT coalesce(sum(a.nbytes), 0) FROM node n JOIN array a ON a.array_id = n.array_id"
            ),
            "stored_bytes": one("SELECT coalesce(sum(size), 0) FROM chunk"),
            "inline_bytes": one("SELECT coalesce(sum(size), 0) FROM chunk WHERE data IS NOT NULL"),
            "pack_bytes": one("SELECT coalesce(sum(size), 0) FROM chunk WHERE pack_id IS NOT NULL"),
        }
        # raw chunk bytes as the trees see them (each reference counted) vs raw bytes stored once
        referenced = one(
            "SELECT coalesce(sum(c.raw_size), 0) FROM node n JOIN chunk_ref r ON r.array_id = n.array_id "
            "JOIN chunk c ON c.chunk_id = r.chunk_id"
        )
        unique = one("SELECT coalesce(sum(raw_size), 0) FROM chunk")
        pack_ids = [pid for (pid,) in conn.execute("SELECT pack_id FROM pack").fetchall()]
        pack_files = [(pid, store.packs.file_size(pid)) for pid in pack_ids]
    result["dedup_ratio"] = referenced / unique if unique else 1.0
    result["compression_ratio"] = unique / result["stored_bytes"] if result["stored_bytes"] else 1.0
    result["pack_files"] = len(pack_files)
    result["pack_file_bytes"] = sum(size or 0 for _, size in pack_files)
    result["file_bytes"] = os.path.getsize(store.filename) + _size_if_exists(store.filename + "-wal")
    return result


def _size_if_exists(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


# -- bundle ----------------------------------------------------------------------------------

def bundle(store: Store, target: str, history: bool = False) -> None:
    """Copy the database into one self-contained file: every pack chunk moved inline (see storage.bundle).

    Without ``history`` the copy holds the current state only: no snapshot,
    tag or kept version, and no array or chunk that only they held.
    """
    write_bundle(store, target, keep_history=history)
