"""Maintenance: gc(), check(), stats(), bundle().

``gc`` deletes arrays no node references and chunks no array references,
rewrites sparse pack files, cuts orphaned tail bytes, deletes pack files no
row names and gives free pages back to the file system. Files are deleted and
cut only after the commit that stops referencing them, and only while no read
snapshot is open in any connection (readers hold a shared lock on the pack
folder, see PackStore.exclusive).

``check`` reconciles both ways (rows against files, files against rows) and
reports findings instead of raising, naming the tree, path, array and chunk
concerned.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import apsw

from .arrays.array import ArrayStore
from .arrays.grid import parse_coord_key
from .arrays.indexing import grid_shape
from .errors import CorruptionError, StorageError, TensorDBError
from .storage import schema
from .storage.connection import io_errors, storage_error
from .storage.packs import HEADER
from .storage.store import Store
from .trees import paths
from .trees.values import KINDS

__all__ = ["gc", "check", "stats", "bundle", "CheckReport", "Finding", "COMPACT_BELOW"]

#: Packs whose live bytes fall below this fraction of their size are rewritten by gc().
COMPACT_BELOW = 0.5


# -- gc ------------------------------------------------------------------------------------

def gc(store: Store, dry_run: bool = False) -> dict[str, int]:
    if dry_run:
        return _gc_preview(store)
    conn = store.conn
    packs = store.packs
    result = {"arrays_removed": 0, "chunks_removed": 0, "bytes_reclaimed": 0, "packs_compacted": 0,
              "packs_deleted": 0, "files_deferred": 0}
    unnamed: set[str] = set()  # packs whose rows this gc deletes (their bytes are counted here)
    with store.transaction():
        # Refcounts are read from an untrusted file: a row is deleted only if no
        # row really references it, whatever its refcount says.
        result["arrays_removed"] = conn.execute(
            f"DELETE FROM array WHERE refcount <= 0 AND {_ARRAY_UNUSED}").getconnection().changes()
        freed = conn.one("SELECT count(*), coalesce(sum(CASE WHEN data IS NOT NULL THEN size END), 0) "
                         f"FROM chunk WHERE refcount <= 0 AND {_CHUNK_UNUSED}")
        assert freed is not None
        result["chunks_removed"] = int(freed[0])
        result["bytes_reclaimed"] = int(freed[1])
        conn.execute(f"DELETE FROM chunk WHERE refcount <= 0 AND {_CHUNK_UNUSED}")
        rotated = False
        for pack_id, name in conn.execute("SELECT pack_id, name FROM pack ORDER BY pack_id").fetchall():
            size = packs.file_size(pack_id) or 0
            live = int(conn.scalar("SELECT coalesce(sum(size), 0) FROM chunk WHERE pack_id = ?", (pack_id,)))
            if live and live >= COMPACT_BELOW * (size - len(HEADER)):
                continue
            if live:
                if not rotated:  # never copy chunks into a pack that is itself being compacted
                    packs.rotate()
                    rotated = True
                _compact(store, pack_id)
                result["packs_compacted"] += 1
            else:
                result["packs_deleted"] += 1
            conn.execute("DELETE FROM pack WHERE pack_id = ?", (pack_id,))
            packs.forget(pack_id)
            unnamed.add(name)
            result["bytes_reclaimed"] += size - live

    def after_commit() -> None:
        # Files and tail bytes go only once no committed row points at them and
        # no reader's snapshot can still see such a row: every snapshot older than
        # this commit has ended (any SQLite reader, an open db.sql() cursor too),
        # and no tensordb read snapshot is open (the pack folder lock).
        store.hooks.trace("compact-commit")
        if _old_snapshots_ended(store):
            reclaimed, deferred = _reclaim_files(store, unnamed)
        else:
            reclaimed, deferred = 0, len(unnamed)
        result["bytes_reclaimed"] += reclaimed
        result["files_deferred"] = deferred
        _shrink_file(store)

    conn.after_commit(after_commit)
    return result


# A row is unused when nothing references it, whatever its refcount column says.
_ARRAY_UNUSED = "NOT EXISTS (SELECT 1 FROM node n WHERE n.array_id = array.array_id)"
_CHUNK_UNUSED = "NOT EXISTS (SELECT 1 FROM chunk_ref r WHERE r.chunk_id = chunk.chunk_id)"

#: How long gc waits for concurrent read snapshots to end before leaving files for the next gc.
RECLAIM_WAIT = 1.0
#: How long gc waits for readers on snapshots older than its commit (an open db.sql() cursor, say).
SNAPSHOT_WAIT = 5.0


def _old_snapshots_ended(store: Store) -> bool:
    """Wait until every reader of every connection uses a snapshot that includes the last commit.

    A reader on an older snapshot keeps a checkpoint from copying the WAL
    frames after it, so a PASSIVE checkpoint that copies the whole WAL proves
    that no such reader is left. Unlike RESTART, PASSIVE never blocks other
    writers, so gc polls it, for at most ``SNAPSHOT_WAIT`` seconds (False: a
    reader is still behind; the files stay for the next gc).
    """
    deadline = time.monotonic() + SNAPSHOT_WAIT
    while True:
        try:
            row = store.conn.one("PRAGMA wal_checkpoint(PASSIVE)")
        except apsw.BusyError:
            row = None
        if row is not None and row[0] == 0 and row[1] == row[2]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _reclaim_files(store: Store, counted: set[str]) -> tuple[int, int]:
    """Delete pack files no row names and cut bytes past each pack's last chunk.

    Runs in a write transaction (no writer creates or appends to a pack
    meanwhile), and only while no read snapshot is open anywhere (see
    PackStore.exclusive); if readers stay, everything is left for the next
    gc. Returns (bytes reclaimed, files in ``counted`` not counted again;
    number of files left for a later gc).
    """
    packs = store.packs
    reclaimed = 0
    with store.transaction(), packs.exclusive(RECLAIM_WAIT) as free:
        known = {str(n) for (n,) in store.conn.execute("SELECT name FROM pack").fetchall()}
        orphans = [n for n in packs.list_files() if n not in known]
        if not free:
            return 0, len(orphans)
        for name in orphans:
            freed = packs.delete_file(name)
            store.hooks.trace("compact-unlink")
            reclaimed += 0 if name in counted else freed
        for pack_id, end in store.conn.execute(
            "SELECT p.pack_id, coalesce(max(c.offset + c.size), 0) FROM pack p "
            "LEFT JOIN chunk c ON c.pack_id = p.pack_id GROUP BY p.pack_id"
        ).fetchall():
            size = store.packs.file_size(pack_id)
            end = max(int(end), len(HEADER))
            if size is not None and size > end:
                store.packs.truncate(pack_id, end)
                reclaimed += size - end
                store.hooks.trace("trim")
    return reclaimed, 0


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


def _compact(store: Store, pack_id: int) -> None:
    """Copy the live chunks of a pack to the active pack and repoint their rows."""
    conn = store.conn
    rows = conn.execute("SELECT chunk_id, offset, size FROM chunk WHERE pack_id = ? ORDER BY offset",
                        (pack_id,)).fetchall()
    for chunk_id, offset, size in rows:
        data = store.packs.read(pack_id, offset, size)
        new_pack, new_offset = store.packs.append(data)
        store.counters.pack_bytes_written += len(data)
        conn.execute("UPDATE chunk SET pack_id = ?, offset = ? WHERE chunk_id = ?", (new_pack, new_offset, chunk_id))
        store.hooks.trace("compact-copy")


def _shrink_file(store: Store) -> None:
    # best effort: the space comes back at the next gc() if not now
    with contextlib.suppress(apsw.Error, StorageError):
        store.conn.execute("PRAGMA incremental_vacuum")
    # A TRUNCATE checkpoint waits for every reader to leave the log and blocks new
    # writers meanwhile: try it only if nobody is busy, never wait for it.
    with contextlib.suppress(apsw.Error), store.conn.without_waiting():
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


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

    def __str__(self) -> str:
        where = ", ".join(
            f"{k} {v}" for k, v in (("tree", self.tree), ("path", self.path), ("array", self.array_id),
                                    ("chunk", self.chunk_id)) if v is not None
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
        for step in (_check_sqlite, _check_trees, _check_nodes, _check_refcounts, _check_arrays, _check_chunks,
                     _check_packs):
            try:
                step(store, report)
            except (apsw.Error, TensorDBError, ValueError, TypeError) as exc:
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


def _refcount_mismatches(store: Store, table: str, key: str, referrer: str) -> list[tuple[int, int, int]]:
    """(id, recorded refcount, actual references) wherever the two differ."""
    return [tuple(r) for r in store.conn.execute(
        f"SELECT x.{key}, x.refcount, (SELECT count(*) FROM {referrer} r WHERE r.{key} = x.{key}) AS actual "
        f"FROM {table} x WHERE x.refcount != actual"
    ).fetchall()]


def _check_refcounts(store: Store, report: CheckReport) -> None:
    for array_id, recorded, actual in _refcount_mismatches(store, "array", "array_id", "node"):
        _add(report, "array-refcount", f"refcount is {recorded}, {actual} nodes reference it",
             array_id=array_id, **_where_array(store, array_id))
    for chunk_id, recorded, actual in _refcount_mismatches(store, "chunk", "chunk_id", "chunk_ref"):
        _add(report, "chunk-refcount", f"refcount is {recorded}, {actual} chunk index rows reference it",
             chunk_id=chunk_id, **_where_chunk(store, chunk_id))
    missing = store.conn.execute(
        "SELECT n.array_id, t.name, n.path FROM node n JOIN tree t ON t.tree_id = n.tree_id "
        "LEFT JOIN array a ON a.array_id = n.array_id WHERE n.array_id IS NOT NULL AND a.array_id IS NULL"
    ).fetchall()
    for array_id, tree, path in missing:
        _add(report, "array-missing", f"array {array_id} does not exist", tree=tree, path=path, array_id=array_id)
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
        # What gc() reclaims: bytes after the last chunk (it cuts them) and, in a pack it
        # compacts (live bytes under COMPACT_BELOW of the body), every unused byte. Smaller
        # gaps between chunks stay by design: rewriting a mostly-live pack is not worth it.
        body = size - len(HEADER)
        unused = body - live
        reclaimable = unused if live < COMPACT_BELOW * body else max(0, size - max(end, len(HEADER)))
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
            "arrays": one("SELECT count(*) FROM array WHERE refcount > 0"),
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

def bundle(store: Store, target: str) -> None:
    """Copy the database into one self-contained file: every pack chunk moved inline.

    The copy is built in ``<target>.tmp-bundle``, fsynced, renamed into place
    and the folder fsynced: ``target`` is either absent or complete, even
    after a crash. A leftover temporary file is replaced by the next bundle.
    """
    if os.path.exists(target):
        raise FileExistsError(f"{target} already exists")
    if os.path.abspath(target) == os.path.abspath(store.filename):
        raise ValueError("cannot bundle a database onto itself")
    tmp = target + ".tmp-bundle"
    for leftover in (tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
    store.conn.execute("VACUUM INTO ?", (tmp,))
    store.hooks.trace("bundle-copy")
    try:
        with io_errors(tmp, "writing the bundle"):
            out = apsw.Connection(tmp, vfs=store.hooks.sqlite_vfs)
            try:
                # No rollback on failure: closing discards the transaction, and the file goes anyway.
                out.execute("BEGIN")
                moved: Any = out.execute("SELECT chunk_id FROM chunk WHERE pack_id IS NOT NULL")
                for (chunk_id,) in moved.fetchall():
                    data, _, _ = store.chunks.stored_bytes(int(chunk_id))  # checksum-verified
                    out.execute("UPDATE chunk SET data = ?, pack_id = NULL, offset = NULL WHERE chunk_id = ?",
                                (data, chunk_id))
                out.execute("DELETE FROM pack")
                out.execute("COMMIT")
                store.hooks.trace("bundle-inline")
                # a rollback journal: the bundle opens read-only even where no -wal/-shm can be created
                out.execute("PRAGMA journal_mode = DELETE")
                out.execute("VACUUM")
            finally:
                out.close()
        try:
            store.hooks.files.fsync_path(tmp)
            store.hooks.trace("bundle-fsync")
            store.hooks.files.replace(tmp, target)
            store.hooks.trace("bundle-rename")
            store.hooks.files.fsync_dir(os.path.dirname(os.path.abspath(target)))
        except OSError as exc:
            raise storage_error(target, exc, "writing the bundle") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise

