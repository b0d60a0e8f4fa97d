"""The Database: a MutableMapping of named trees in one SQLite file (plus its pack folder).

Example
-------
>>> import numpy as np, tensordb
>>> with tensordb.open("runs.tdb") as db:
...     db["s1"] = {"time": 51, "points": np.zeros((10, 3), "f4")}
...     db["s1"]["time"]
51
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from . import relations
from .errors import (
    PathNotFoundError,
    ReadOnlyError,
    StaleHandleError,
    TreeExistsError,
    context,
)
from .reopening import reopen_readonly
from .storage.query import ReadOnlyQuery
from .storage.store import Store
from .trees import bulk, paths
from .trees.handles import Tree, value_of
from .trees.nodes import SubtreeHandle
from .trees.service import TreeService
from .trees.values import array_handle_types, flatten
from .versions import History, Snapshot, SnapshotRef, diff_states, show_public_views, show_state

# Opening a database, reading scalars and running SQL import neither numpy nor the
# arrays layer (numpy's import is most of such a process's start-up): the ArrayStore
# is set up on first use (Database.arrays), and maintenance and diff, which work on
# arrays, are imported by the methods that use them.
if TYPE_CHECKING:
    from .arrays.store import ArrayStore
    from .diff import Difference
    from .maintenance import CheckReport
    from .storage.chunks import Counters

__all__ = ["Database", "open", "SQLResult", "MissingPacksWarning"]


class MissingPacksWarning(UserWarning):
    """A database opened whose packs folder, or some of its pack files, is missing."""


_MISSING = object()


def open(path: str | os.PathLike[str], mode: str = "a", *, inline_threshold: int | None = None,
         at: SnapshotRef | None = None) -> Database:
    """Open (or create) a tensordb database.

    Parameters
    ----------
    path : str or path-like
        The database file. Large chunks go to the folder ``<path>-packs`` beside it.
    mode : {"a", "r", "r+", "w", "x"}
        ``a`` read/write, created if missing (default); ``r`` read-only;
        ``r+`` read/write, must exist; ``w`` create, replacing an existing
        database; ``x`` create, must not exist.
    inline_threshold : int, optional
        Compressed chunks of at most this many bytes are stored inside the
        SQLite file, larger ones in pack files. Defaults to the value stored
        in the database (4 KiB when it is created).
    at : Snapshot, int or str, optional
        Open a read-only view of the database as of this snapshot (a
        :class:`Snapshot`, its id or a tag); ``mode`` must then be ``"r"``
        (or left out).

    Example
    -------
    >>> db = tensordb.open("runs.tdb")
    >>> with tensordb.open("runs.tdb", mode="r") as db: ...
    >>> raw = tensordb.open("runs.tdb", mode="r", at="raw")
    """
    return Database(path, mode, inline_threshold=inline_threshold, at=at)


class Database(MutableMapping[str, Tree]):
    """Named trees in one file. ``db[name]`` is a lazy :class:`Tree`; assigning stores a value.

    Assigning a handle (``db["b"] = db["a"]``, ``db["g"] = {"p": tree["/points"]}``)
    stores a reference: no array bytes are copied, and later writes to either
    tree never show in the other (copy-on-write).
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "a", *, inline_threshold: int | None = None,
                 at: SnapshotRef | None = None) -> None:
        self.filename = os.fspath(path)
        if at is not None:
            if mode not in ("r", "a"):
                raise ValueError(f"a view of a snapshot is read-only: open it with mode='r', not {mode!r}")
            mode = "r"
        self._store = Store(self.filename, mode, inline_threshold)
        relations.define(self._store.conn)
        self.mode = mode
        self.readonly = self._store.readonly
        self._history = History(self._store.conn, self.filename)
        #: The snapshot this database shows, or None for the current state.
        self.snapshot_shown: Snapshot | None = None
        self._public_views_shown = False
        if at is not None:
            try:
                self.snapshot_shown = self._history.get(at)
                show_state(self._store.conn, self._history.marks(self.snapshot_shown))
            except BaseException:
                self._store.close()
                raise
        self._arrays: ArrayStore | None = None  # set up on first use: see the arrays property
        self._arrays_lock = threading.Lock()
        self._trees = TreeService(self._store, self)
        self._warn_missing_packs()

    def _warn_missing_packs(self) -> None:
        """A database copied without its packs folder opens, but say so now rather than at the first read."""
        names = [name for (name,) in self._store.conn.execute("SELECT name FROM pack ORDER BY pack_id").fetchall()]
        missing = [n for n in names if isinstance(n, str) and not os.path.isfile(os.path.join(self.pack_dir, n))]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            warnings.warn(f"{self.filename}: {len(missing)} pack file(s) missing (or not regular files) in "
                          f"{self.pack_dir}: {shown}; reading the arrays stored there will fail (was the database "
                          "copied without its packs folder?); tensordb check lists them", MissingPacksWarning,
                          stacklevel=4)

    # -- plumbing used by handles ------------------------------------------------------

    @property
    def arrays(self) -> ArrayStore:
        """The arrays of this database, set up (and the arrays layer, numpy with it, imported) on first use."""
        arrays = self._arrays
        if arrays is None:
            with self._arrays_lock:  # one ArrayStore, whose read lock all threads share
                arrays = self._arrays
                if arrays is None:
                    from .arrays.store import ArrayStore

                    arrays = ArrayStore(self._store)
                    arrays.frozen = self.snapshot_shown is not None
                    self._arrays = arrays
        return arrays

    @property
    def counters(self) -> Counters:
        """Storage event counters (chunks decoded/written, pack traffic) since open."""
        return self._store.counters

    @property
    def pack_dir(self) -> str:
        """The sidecar folder holding this database's pack files."""
        return self._store.packs.dir

    def _reopen_state(self) -> tuple[Callable[..., Any], tuple[str] | tuple[str, int]]:
        """What a pickled handle keeps of its database: the function that reopens it, and its arguments."""
        if self.snapshot_shown is not None:
            return reopen_readonly, (os.path.abspath(self.filename), self.snapshot_shown.id)
        return reopen_readonly, (os.path.abspath(self.filename),)

    @property
    def closed(self) -> bool:
        return self._store.conn.closed

    # -- transactions ------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """An atomic block: everything inside commits together or not at all.

        Nested blocks are savepoints: an exception inside one rolls back only
        that block (if the outer block catches it).

        Example
        -------
        >>> with db.transaction():
        ...     db["a"] = 1
        ...     db["b"] = 2
        """
        return self._trees.transaction()

    # -- trees ---------------------------------------------------------------------------

    def _tree_id(self, name: str) -> int | None:
        return self._trees.catalog.id_of(name)

    def _existing_tree(self, name: str) -> int:
        tree_id = self._trees.catalog.id_of(name)
        if tree_id is None:
            self._ensure_snapshot_kept()
            raise PathNotFoundError(f"{self._where()}: no tree named {name!r}")
        return tree_id

    def __getitem__(self, name: str) -> Tree:
        return Tree(self._trees, self._existing_tree(name))

    def _where(self) -> str:
        shown = self.snapshot_shown
        return self.filename if shown is None else f"{self.filename} at snapshot {shown.id}"

    def _ensure_snapshot_kept(self) -> None:
        """A view whose snapshot was expired shows nothing: say so rather than 'no tree'."""
        shown = self.snapshot_shown
        if shown is not None and self._store.conn.scalar(
                "SELECT 1 FROM snapshot WHERE snapshot_id = ?", (shown.id,)) is None:
            raise StaleHandleError(f"{self.filename}: snapshot {shown.id} was expired")

    def __setitem__(self, name: str, value: object) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"tree names are non-empty str, got {name!r}")
        with context(self.filename, name):
            if isinstance(value, Tree) and value._ops is self._trees and self._tree_id(name) == value._tree_id:
                return  # db["a"] = db["a"]
            self._trees.assign(name, value)

    def __delitem__(self, name: str) -> None:
        with self.transaction():
            self._trees.delete_tree(self._existing_tree(name))

    def __iter__(self) -> Iterator[str]:
        with context(self.filename):
            return iter(self._trees.catalog.names())

    def __len__(self) -> int:
        return self._trees.catalog.count()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._tree_id(name) is not None

    def split_address(self, address: str) -> tuple[str, str]:
        """``(tree name, JSON Pointer)`` of an address ``TREE[/POINTER]``, as the command line reads it.

        Tree names may contain ``/`` (a folder import names trees
        ``sim01/step003``), so the longest prefix of ``address`` that names
        an existing tree is the tree and the rest is the pointer.

        Example
        -------
        >>> db.split_address("sim01/step003/data/p")
        ('sim01/step003', '/data/p')
        """
        if not isinstance(address, str):
            raise TypeError(f"addresses are str, got {type(address).__name__}")
        cuts = [len(address)] + [i for i in range(len(address) - 1, 0, -1) if address[i] == "/"]
        names = self._trees.catalog.existing(address[:cut] for cut in cuts)
        for cut in cuts:
            if address[:cut] in names:
                return address[:cut], address[cut:]
        raise PathNotFoundError(f"{self.filename}: no tree named {address!r}"
                                + (" or by a prefix of it" if "/" in address else ""))

    def resolve(self, address: str) -> Any:
        """What an address ``TREE[/POINTER]`` designates, as the command line resolves it.

        Returns what indexing returns: the :class:`Tree` for a tree name,
        else ``db[tree][pointer]`` (a Node, an Array or a scalar). ``db[name]``
        itself takes exact tree names only.

        Example
        -------
        >>> db.resolve("sim01/step003/data/p")     # tree "sim01/step003", pointer "/data/p"
        <tensordb.Array ...>
        """
        name, pointer = self.split_address(address)
        tree = self[name]
        return tree if not pointer else tree[pointer]

    def mv(self, src: str, dst: str, *, replace: bool = False) -> None:
        """Move what address ``src`` designates to address ``dst``: ``tensordb mv`` in Python.

        Addresses read as in :meth:`resolve` (for one JSON Pointer move in
        many trees, see :meth:`move`); a ``dst`` no prefix of which names a
        tree is a new tree. A whole tree to a new name is a rename; a node
        moves within its tree, or across trees by reference: no array bytes
        are written. An existing ``dst`` raises :class:`TreeExistsError`
        unless ``replace``. One transaction.

        Example
        -------
        >>> db.mv("sim01/step003/data/inlet", "inlets/step003")     # a node becomes a new tree
        >>> db.mv("sample037/data/points", "sample038/data/points", replace=True)
        """
        self._transfer(src, dst, replace, remove=True)

    def cp(self, src: str, dst: str, *, replace: bool = False) -> None:
        """Copy what address ``src`` designates to address ``dst`` by reference: ``tensordb cp`` in Python.

        As :meth:`mv`, keeping the source; no array bytes are written. Later
        writes to either side never show in the other (copy-on-write).

        Example
        -------
        >>> db.cp("sample037", "sample037-backup")
        """
        self._transfer(src, dst, replace, remove=False)

    def _transfer(self, src: str, dst: str, replace: bool, remove: bool) -> None:
        with self.transaction():
            s_name, s_ptr = self.split_address(src)
            try:
                d_name, d_ptr = self.split_address(dst)
            except PathNotFoundError:
                d_name, d_ptr = dst, ""  # a new tree
            if (s_name, s_ptr) == (d_name, d_ptr):
                return
            if s_name == d_name and (d_ptr + "/").startswith(s_ptr + "/"):
                raise ValueError(f"{self.filename}: cannot {'move' if remove else 'copy'} {src!r} into itself "
                                 f"({dst!r})")
            if s_name == d_name and remove and not d_ptr:
                raise ValueError(f"{self.filename}: cannot replace tree {s_name!r} by a part of itself")
            if d_name in self and (not d_ptr or self[d_name].get(d_ptr, _MISSING) is not _MISSING):
                if not replace:
                    raise TreeExistsError(f"{self.filename}: {dst!r} exists already; pass replace=True "
                                          "(--force) to replace it")
            if remove and s_name == d_name:
                self[s_name].move(s_ptr, d_ptr)
            elif remove and not s_ptr and not d_ptr and d_name not in self:
                self.rename(s_name, d_name)
            else:
                value = self.resolve(src)
                if d_ptr:
                    self[d_name][d_ptr] = value
                else:
                    self[d_name] = value
                if remove:
                    if s_ptr:
                        del self[s_name][s_ptr]
                    else:
                        del self[s_name]

    def diff(self, a: str | SnapshotRef, b: str | SnapshotRef | None = None) -> list[Difference]:
        """What changed: between two addresses, or between a snapshot and now, or between two snapshots.

        - ``db.diff("sim01/step000", "sim01/step001")``: two trees or subtrees
          (``TREE[/POINTER]``); paths are below the compared nodes.
        - ``db.diff("raw")``: the current state against snapshot (or tag) "raw";
          ``db.diff("raw", "clean")``: two snapshots. Each change names its
          ``tree``; a tree only one side has is one change at path ``""``.

        Either way each :class:`~tensordb.diff.Difference` is ``added``,
        ``removed`` or ``changed`` at the highest path that differs, in (tree,
        path) order. Arrays are compared by their stored content keys and read
        only where the keys differ. Two strings are read as snapshots when both
        name one and neither names a tree.

        Example
        -------
        >>> [str(d) for d in db.diff("sim01/step000", "sim01/step001")]
        ['~ /time: int 1 -> int 6', '~ /data/p: array (4778,) float32 -> array (4778,) float32 (values differ)']
        >>> [(c.tree, c.path, c.kind) for c in db.diff("raw")]
        [('sample037', '/time', 'changed')]
        """
        if b is None or not (isinstance(a, str) and isinstance(b, str)) or self._names_snapshots(a, b):
            return diff_states(self, self._history.get(a), None if b is None else self._history.get(b))
        from .diff import diff

        with self._store.snapshot():
            return diff(self.resolve(a), self.resolve(b))

    def _names_snapshots(self, a: str, b: str) -> bool:
        def is_snapshot(ref: str) -> bool:
            try:
                self._history.get(ref)
            except KeyError:
                return False
            return True

        def is_tree(address: str) -> bool:
            try:
                return self.split_address(address)[0] in self
            except (KeyError, ValueError):
                return False

        snapshots, addresses = (is_snapshot(a), is_snapshot(b)), (is_tree(a), is_tree(b))
        if all(snapshots) and any(addresses) or all(addresses) and any(snapshots):
            raise ValueError(f"{self.filename}: {a!r} and {b!r} name both snapshots and trees: pass "
                             "db.tags()[name] or snapshot ids to compare snapshots")
        return all(snapshots)

    def rename(self, old: str, new: str) -> None:
        """Rename a tree (metadata only). The new name must not exist yet."""
        if not isinstance(new, str) or not new:
            raise TypeError(f"tree names are non-empty str, got {new!r}")
        with self.transaction():
            tree_id = self._existing_tree(old)
            if old == new:
                return
            if self._tree_id(new) is not None:
                raise ValueError(f"{self.filename}: a tree named {new!r} already exists")
            self._trees.catalog.rename(tree_id, new)

    # -- restructuring many trees at once -------------------------------------------------

    def move(self, src: str, dst: str, *, trees: str | None = None) -> int:
        """Move the subtree at JSON Pointer ``src`` to ``dst`` in every tree whose name matches ``trees``.

        ``trees`` is a glob over tree names (``None``: every tree). The move
        follows :meth:`Tree.move` in each tree and is atomic across all of
        them: if a tree lacks ``src`` or ``dst``'s parent, nothing changes and
        the error names those trees. Metadata only: no array bytes are read
        or written, and a few statements do it whatever the number of trees.
        Returns the number of trees matched.

        Example
        -------
        >>> db.move("/data/inlet", "/data/inflow", trees="bm01-*")
        1000
        """
        src_path, dst_path = paths.join(paths.split(src)), paths.join(paths.split(dst))
        with context(self.filename):
            return bulk.move_in_trees(self._trees, trees, src_path, dst_path)

    def set(self, path: str, value: object, *, trees: str | None = None) -> int:
        """Set ``value`` at JSON Pointer ``path`` in every tree whose name matches ``trees`` (``None``: all).

        As ``tree[path] = value`` in each tree, in one transaction; the
        parent of ``path`` must exist in every tree. Arrays and subtrees in
        ``value`` are stored once and shared by reference. Returns the number
        of trees matched.

        Example
        -------
        >>> db.set("/reviewed", True, trees="bm01-*")
        1000
        """
        canonical = paths.join(paths.split(path))
        with context(self.filename):
            return bulk.set_in_trees(self._trees, trees, canonical, value)

    # -- SQL -----------------------------------------------------------------------------

    def sql(self, query: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> SQLResult:
        """Run read-only SQL over the metadata; rows stream and know their column names.

        The public relations are ``trees``, ``nodes`` and ``arrays`` (as of
        the snapshot, on a view from :meth:`at`), and ``snapshots`` and
        ``snapshot_nodes`` for the history (see docs/format.md). Any statement
        that would write raises ReadOnlyError.

        Example
        -------
        >>> rows = db.sql("SELECT tree, value FROM nodes WHERE key = ? AND value > ?", ("time", 50))
        >>> rows.columns
        ('tree', 'value')
        """
        if self.snapshot_shown is not None and not self._public_views_shown:
            show_public_views(self._store.conn, self._history.marks(self.snapshot_shown))
            self._public_views_shown = True
        return SQLResult(self, query, params)

    def glob(self, pattern: str, trees: str | None = None) -> Iterator[tuple[str, str, Any]]:
        """Yield ``(tree_name, pointer, value)`` for every node matching a JSON-Pointer pattern.

        ``*`` matches one path segment (or part of it), ``**`` any number of
        segments; ``trees`` is an optional glob over tree names.

        Example
        -------
        >>> for name, path, points in db.glob("/data/*/points", trees="bm01-*"): ...
        """
        with context(self.filename):
            found = self._trees.nodes.glob(pattern, trees)  # one snapshot; values built lazily
        for tree_name, row in found:
            yield tree_name, row.path, value_of(self._trees, row)

    # -- versions ----------------------------------------------------------------------

    def snapshot(self, message: str = "") -> Snapshot:
        """Record the state of every tree; returns the new :class:`Snapshot`.

        No array byte is copied, and the cost is one row: what changes
        afterwards keeps its old version (see docs/versions.md). Inside
        ``db.transaction()`` the snapshot is part of the transaction.

        Example
        -------
        >>> s1 = db.snapshot("raw import")
        >>> db.at(s1)["sample037"]["/data/p"][0:10]
        """
        with self.transaction():
            return self._history.take(message)

    def history(self) -> list[Snapshot]:
        """Every snapshot, newest first."""
        return self._history.listing()

    def tag(self, name: str, snapshot: SnapshotRef | None = None) -> Snapshot:
        """Name a snapshot (the latest by default) for good; an existing name raises ``ValueError``."""
        with self.transaction():
            return self._history.tag(name, snapshot)

    def untag(self, name: str) -> None:
        """Remove a tag (the snapshot stays); ``KeyError`` if there is no such tag."""
        with self.transaction():
            self._history.untag(name)

    def tags(self) -> dict[str, Snapshot]:
        """``{tag: Snapshot}``, by name."""
        return self._history.tags()

    def at(self, snapshot: SnapshotRef) -> Database:
        """A read-only view of the database as of ``snapshot`` (a :class:`Snapshot`, its id or a tag).

        It reads like a Database (``[]``, ``in``, ``len``, iteration, ``glob``,
        ``sql``, ``stats``, ``load``) on a connection of its own; close it
        (or use ``with``) when done. Writing through it raises ``ReadOnlyError``.

        Example
        -------
        >>> with db.at("raw") as old:
        ...     old["sample037"]["/data/p"][0:10]
        """
        shown = self._history.get(snapshot)
        return Database(self.filename, mode="r", at=shown.id)

    def restore(self, snapshot: SnapshotRef, *, trees: str | None = None) -> list[str]:
        """Return trees to their state in ``snapshot``, by reference (no array bytes written), atomically.

        With ``trees`` (a glob pattern), only the trees of those names;
        without, the whole database: trees created since are removed. Returns
        the names of the trees that changed.
        """
        with context(self.filename), self.transaction():
            return self._history.restore(self._history.get(snapshot), trees, self._trees)

    def expire(self, *, before: SnapshotRef) -> int:
        """Forget the untagged snapshots older than ``before``; returns how many. ``gc()`` then frees their data."""
        with self.transaction():
            return self._history.expire(before)

    # -- maintenance -------------------------------------------------------------------

    def gc(self, dry_run: bool = False) -> dict[str, int]:
        """Delete unreferenced arrays and chunks, compact sparse pack files, reclaim orphaned bytes.

        Returns a dict with at least ``arrays_removed``, ``chunks_removed`` and
        ``bytes_reclaimed``. With ``dry_run=True`` nothing changes and the
        figures say what would be removed (pack compaction not included).

        Pack files are deleted only while no read snapshot is open in any
        process; if readers stay busy for a second, ``files_deferred`` says
        how many files were left for the next gc.
        """
        if self.readonly and not dry_run:
            raise ReadOnlyError(f"{self.filename}: database is open read-only")
        from . import maintenance

        with context(self.filename):
            return maintenance.gc(self._store, dry_run)

    def check(self) -> CheckReport:
        """Verify structure, reference counts and every chunk's checksum and content key.

        Returns a report with ``ok`` and ``findings`` (empty when healthy);
        raises only if the file cannot be read at all.
        """
        from . import maintenance

        return maintenance.check(self._store)

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: trees, nodes, arrays, chunks, logical vs stored bytes, dedup ratio, packs."""
        from . import maintenance

        return maintenance.stats(self._store)

    def bundle(self, path: str | os.PathLike[str], *, history: bool = False) -> None:
        """Write a self-contained copy (no pack folder: every chunk inline) to ``path``.

        It carries the current state only, unless ``history=True``: then every
        snapshot and tag too.
        """
        from . import maintenance

        with context(self.filename):
            maintenance.bundle(self._store, os.fspath(path), history)

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; handles obtained from it stop working."""
        self._store.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f'<tensordb.Database "{self.filename}" (closed)>'
        shown = "" if self.snapshot_shown is None else f" at snapshot {self.snapshot_shown.id}"
        return f'<tensordb.Database "{self.filename}"{shown} mode={self.mode!r}, {len(self)} trees>'

    def __getstate__(self) -> Any:
        raise TypeError("a Database cannot be pickled; pickle its Tree/Node/Array handles instead")


# -- read-only SQL -------------------------------------------------------------------

class SQLResult:
    """Rows of a read-only query, streamed. ``columns`` names them; iterate for tuples."""

    def __init__(self, db: Database, query: str, params: tuple[Any, ...] | dict[str, Any]) -> None:
        self._query = ReadOnlyQuery(db._store.conn, query, params)
        self.columns = self._query.columns

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._query)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self)

    def dicts(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts keyed by column name."""
        for row in self:
            yield dict(zip(self.columns, row))


def validate(value: object) -> None:
    """Check that tensordb can store ``value``, writing nothing.

    Raises :class:`TypeError` naming the path of the first unsupported part
    (an object array, a set, a non-str dict key, a cycle, ...), as assigning
    it would.

    Example
    -------
    >>> tensordb.validate({"a": [1, 2.5, None], "b": np.zeros(3)})
    >>> tensordb.validate({"a": {1, 2}})
    Traceback (most recent call last):
    TypeError: /a: values of type set cannot be stored
    """
    flatten(value, (*array_handle_types(), SubtreeHandle))
