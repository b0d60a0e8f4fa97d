"""Snapshots, tags, the state of the database as of a snapshot, and what changed between two states.

A snapshot is one row of the ``snapshot`` table: its id, and the highest
tree, node and array ids in use when it was taken (the *marks*). Nothing is
copied. Rows that the latest snapshot sees keep their old version in
``tree_history`` and ``node_history`` the first time they change (triggers
of :mod:`tensordb.storage.schema`), and arrays older than the latest snapshot
are copied (by reference to their chunks) before any write. So:

- taking a snapshot costs one row, whatever the size of the database;
- the state as of snapshot ``k`` is the union of the current rows that ``k``
  sees and the history rows current during ``k`` (:func:`state_sql`); a
  connection reads it under the names ``tree`` and ``node`` through two TEMP
  views (:func:`show_state`), so every read of the engine and every public
  relation (``trees``, ``nodes``, ``arrays``) answers as of ``k`` unchanged.

Example
-------
>>> s1 = db.snapshot("raw import")
>>> db["sample037"]["/time"] = 0
>>> db.at(s1)["sample037"]["time"]
51
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, NamedTuple

from .errors import CorruptionError
from .frozen import Frozen
from .storage import schema
from .storage.connection import Connection
from .trees.nodes import NODE_COLUMNS
from .trees.service import TreeService

if TYPE_CHECKING:
    from .database import Database
    from .diff import Difference

__all__ = ["Snapshot", "SnapshotRef", "History", "state_sql", "show_state", "show_public_views", "diff_states"]

_TREE_COLUMNS = "tree_id, name, root_id, created, modified, born"
_NODE_COLUMNS = f"{NODE_COLUMNS}, born"
_MARK_NAMES = ("tree_mark", "node_mark", "array_mark")
_TAG_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


class Snapshot(Frozen):
    """One recorded state of the whole database; ``tags`` name it. Immutable.

    ``id`` grows with every snapshot; ``parent_id`` is the snapshot taken
    before it (``None`` for the first, or once the older ones are expired).
    """

    __slots__ = ("id", "created", "message", "parent_id", "tags")
    id: int
    created: str
    message: str
    parent_id: int | None
    tags: tuple[str, ...]

    def __init__(self, id: int, created: str, message: str, parent_id: int | None,  # noqa: A002 - the field's name
                 tags: tuple[str, ...] = ()) -> None:
        self._assign(id, created, message, parent_id, tags)

    def __str__(self) -> str:
        named = f" ({', '.join(self.tags)})" if self.tags else ""
        return f"snapshot {self.id}{named} {self.created}: {self.message}"


#: What names a snapshot: the object, its id, or a tag (a string of digits names the id when no tag has it).
SnapshotRef = Snapshot | int | str


class _Marks(NamedTuple):
    snapshot_id: int
    tree: int
    node: int
    array: int


def state_sql(table: str, marks: _Marks, tree_ids: Iterable[int] | None = None) -> str:
    """The rows of ``table`` (``"tree"`` or ``"node"``) as of a snapshot, with the table's columns and ``born``.

    ``tree_ids`` keeps the rows of those trees only.
    """
    columns, key = (_TREE_COLUMNS, "tree_id") if table == "tree" else (_NODE_COLUMNS, "node_id")
    k, mark = int(marks.snapshot_id), int(marks.tree if table == "tree" else marks.node)
    only = "" if tree_ids is None else f" AND tree_id IN ({','.join(str(int(t)) for t in tree_ids)})"
    return (f"SELECT {columns} FROM main.{table} WHERE {key} <= {mark} AND coalesce(born, 0) <= {k}{only} "
            f"UNION ALL SELECT {columns} FROM main.{table}_history "
            f"WHERE {key} <= {mark} AND born <= {k} AND died > {k}{only}")


def _visible(alias: str, table: str, marks: _Marks) -> str:
    """The condition under which a row of ``table`` (``node``, ``node_history``, ...) is in the snapshot."""
    key, mark = ("tree_id", marks.tree) if table.startswith("tree") else ("node_id", marks.node)
    k = int(marks.snapshot_id)
    if table.endswith("_history"):
        return f"{alias}.{key} <= {int(mark)} AND {alias}.born <= {k} AND {alias}.died > {k}"
    return f"{alias}.{key} <= {int(mark)} AND coalesce({alias}.born, 0) <= {k}"


def _public_views_sql(marks: _Marks) -> str:
    """The public views as of a snapshot, as TEMP views.

    A view stored in the file reads the file's own tables whatever TEMP
    objects hide them, so the views are defined again. SQLite does not push
    a join or a correlated condition into a union: a condition on ``node``
    would build the whole union of a snapshot's rows first. So each view
    reads the two node tables in arms of its own, on their indexes, and looks
    a root up by key in the ``node`` TEMP view. The snapshot's trees (one row
    each) are copied into a TEMP table first, so that a node finds its tree
    in one look-up and a tree name is an index search. A parent's path is its
    child's without the last segment (a key's own ``/`` is escaped), and list
    items are the children without a key (check() verifies both).
    """
    def both(select: str) -> str:  # the sum of a count over the snapshot's rows of node and node_history
        return " + ".join(f"({select.format(table=t, visible=_visible('n', t, marks))})"
                          for t in ("node", "node_history"))

    nodes = " UNION ALL ".join(f"""
SELECT t.name AS tree,
       n.path AS path,
       CASE WHEN n.parent_id IS NOT NULL THEN substr(rtrim(n.path, replace(n.path, '/', '')), 1,
         length(rtrim(n.path, replace(n.path, '/', ''))) - 1) END AS parent_path,
       n.key AS key,
       CASE WHEN n.parent_id IS NOT NULL AND n.key IS NULL THEN n.pos END AS idx,
       n.kind AS kind,
       n.value AS value,
       n.array_id AS array_id
FROM snapshot_trees t JOIN main.{table} n ON n.tree_id = t.tree_id AND {_visible('n', table, marks)}"""
                               for table in ("node", "node_history"))
    in_snapshot = " OR ".join(f"EXISTS (SELECT 1 FROM main.{t} n WHERE n.array_id = a.array_id AND "
                              f"{_visible('n', t, marks)})" for t in ("node", "node_history"))
    arrays = schema.VIEWS[schema.VIEWS.index("CREATE VIEW arrays"):].replace("CREATE VIEW", "CREATE TEMP VIEW")
    assert arrays.rstrip().endswith("FROM array a;")
    return f"""
CREATE TEMP TABLE snapshot_trees(tree_id INTEGER PRIMARY KEY, name TEXT NOT NULL, root_id INTEGER,
                                 created TEXT NOT NULL, modified TEXT NOT NULL);
INSERT INTO snapshot_trees SELECT tree_id, name, root_id, created, modified FROM tree;
CREATE INDEX temp.snapshot_trees_by_name ON snapshot_trees(name);

CREATE TEMP VIEW trees AS
SELECT t.name AS name,
       (SELECT r.kind FROM node r WHERE r.node_id = t.root_id) AS root_kind,
       {both("SELECT count(*) FROM main.{table} n WHERE n.tree_id = t.tree_id AND {visible}")} AS n_nodes,
       {both("SELECT count(*) FROM main.{table} n WHERE n.tree_id = t.tree_id AND n.array_id IS NOT NULL "
             "AND {visible}")} AS n_arrays,
       {both("SELECT coalesce(sum(a.nbytes), 0) FROM main.{table} n JOIN array a ON a.array_id = n.array_id "
             "WHERE n.tree_id = t.tree_id AND {visible}")} AS logical_bytes,
       t.created AS created,
       t.modified AS modified
FROM snapshot_trees t;

CREATE TEMP VIEW nodes AS {nodes};

{arrays.rstrip()[:-1]} WHERE {in_snapshot};
"""


def show_public_views(conn: Connection, marks: _Marks) -> None:
    """Define the public views as of the snapshot a connection shows (:func:`show_state` first)."""
    conn.execute(_public_views_sql(marks))


def show_state(conn: Connection, marks: _Marks, trees: Iterable[str] | None = None) -> None:
    """Make ``conn`` read the database as of a snapshot: TEMP views hide the tables ``tree`` and ``node``.

    ``trees`` (names) shows only the trees of those names. The public views
    come with :func:`show_public_views`, when SQL is first run.
    """
    tree_ids = None
    if trees is not None:
        wanted = list(trees)
        rows = conn.execute(f"SELECT tree_id FROM ({state_sql('tree', marks)}) WHERE name IN "
                            f"({','.join('?' * len(wanted))})", tuple(wanted)).fetchall()
        tree_ids = [int(t) for (t,) in rows]
    conn.execute(f"CREATE TEMP VIEW tree AS {state_sql('tree', marks, tree_ids)}; "
                 f"CREATE TEMP VIEW node AS {state_sql('node', marks, tree_ids)}")


class History:
    """The snapshots and tags of one database, on its connection."""

    def __init__(self, conn: Connection, filename: str) -> None:
        self.conn = conn
        self.filename = filename
        self._marks: dict[int, _Marks] = {}

    # -- reading ---------------------------------------------------------------------------

    def _snapshots(self, where: str = "", params: tuple[object, ...] = ()) -> list[Snapshot]:
        rows = self.conn.execute(
            "SELECT s.snapshot_id, s.created, s.message, s.parent_id, "
            "(SELECT group_concat(name, char(0)) FROM (SELECT name FROM tag t WHERE t.snapshot_id = s.snapshot_id "
            "ORDER BY name)), s.tree_mark, s.node_mark, s.array_mark "
            f"FROM snapshot s {where} ORDER BY s.snapshot_id DESC", params).fetchall()
        found = []
        for i, created, message, parent, tags, *marks in rows:
            snapshot = Snapshot(self._int(i, "id"), str(created), str(message),
                                None if parent is None else self._int(parent, f"snapshot {i}: parent_id"),
                                tuple(str(tags).split("\0")) if tags else ())
            # a snapshot never changes: its marks are read once, with it
            self._marks[snapshot.id] = _Marks(snapshot.id, *(
                self._int(mark, f"snapshot {i}: {name}") for mark, name in zip(marks, _MARK_NAMES)))
            found.append(snapshot)
        return found

    def _int(self, value: object, what: str) -> int:
        """An id read from the file, which may lie: an integer, or CorruptionError naming the file."""
        if type(value) is not int:
            raise CorruptionError(f"{self.filename}: history: {what} is {value!r}, not an integer")
        return value

    def listing(self) -> list[Snapshot]:
        """Every snapshot, newest first."""
        return self._snapshots()

    def latest(self) -> Snapshot | None:
        found = self._snapshots("WHERE s.snapshot_id = (SELECT max(snapshot_id) FROM snapshot)")
        return found[0] if found else None

    def get(self, ref: SnapshotRef) -> Snapshot:
        """The snapshot ``ref`` names (a :class:`Snapshot`, an id or a tag); ``KeyError`` if there is none."""
        if isinstance(ref, Snapshot):
            snapshot_id = ref.id
        elif isinstance(ref, int) and not isinstance(ref, bool):
            snapshot_id = ref
        elif isinstance(ref, str):
            tagged = self.conn.scalar("SELECT snapshot_id FROM tag WHERE name = ?", (ref,))
            if tagged is None and not (ref.isascii() and ref.isdigit()):
                raise KeyError(f"{self.filename}: no tag named {ref!r}")
            snapshot_id = int(ref) if tagged is None else self._int(tagged, f"tag {ref!r}: snapshot_id")
        else:
            raise TypeError(f"a snapshot is named by a Snapshot, an id or a tag, not {type(ref).__name__}")
        found = self._snapshots("WHERE s.snapshot_id = ?", (snapshot_id,))
        if not found:
            raise KeyError(f"{self.filename}: no snapshot {snapshot_id}" + (
                " (expired, or taken in a transaction that is not committed)" if isinstance(ref, Snapshot) else ""))
        return found[0]

    def marks(self, snapshot: Snapshot) -> _Marks:
        if snapshot.id not in self._marks:
            self.get(snapshot.id)
        return self._marks[snapshot.id]

    def tags(self) -> dict[str, Snapshot]:
        by_id = {s.id: s for s in self.listing()}
        rows = self.conn.execute("SELECT name, snapshot_id FROM tag ORDER BY name").fetchall()
        return {str(name): by_id[sid] for name, sid in rows if sid in by_id}  # check() names the others

    # -- writing (the caller holds a transaction) -----------------------------------------

    def take(self, message: str) -> Snapshot:
        """Record the current state: one row, the next id, the id marks of the three tables."""
        if not isinstance(message, str):
            raise TypeError(f"a snapshot message is a str, not {type(message).__name__}")
        self.conn.execute(
            "INSERT INTO snapshot(snapshot_id, parent_id, created, message, tree_mark, node_mark, array_mark) "
            "SELECT coalesce(max(snapshot_id), 0) + 1, max(snapshot_id), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, "
            + ", ".join(f"coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{t}'), 0)"
                        for t in ("tree", "node", "array"))
            + " FROM snapshot", (message,))
        return self.get(self.conn.last_insert_rowid())

    def tag(self, name: str, ref: SnapshotRef | None) -> Snapshot:
        if not isinstance(name, str) or not _TAG_NAME.fullmatch(name) or (name.isascii() and name.isdigit()):
            raise ValueError(f"invalid tag name {name!r}: 1 to 200 printable characters, not only digits")
        if self.conn.scalar("SELECT 1 FROM tag WHERE name = ?", (name,)) is not None:
            raise ValueError(f"{self.filename}: the tag {name!r} already exists (a tag names one snapshot for good; "
                             "untag it first)")
        if ref is None:
            latest = self.latest()
            if latest is None:
                raise KeyError(f"{self.filename}: no snapshot to tag (take one with db.snapshot())")
            snapshot = latest
        else:
            snapshot = self.get(ref)
        self.conn.execute("INSERT INTO tag(name, snapshot_id) VALUES (?, ?)", (name, snapshot.id))
        return self.get(snapshot.id)

    def untag(self, name: str) -> None:
        self.conn.execute("DELETE FROM tag WHERE name = ?", (name,))
        if not self.conn.changes():
            raise KeyError(f"{self.filename}: no tag named {name!r}")

    def expire(self, before: SnapshotRef) -> int:
        """Forget the untagged snapshots older than ``before`` and the history only they saw; returns how many.

        The arrays that only those snapshots held lose their last reference:
        ``gc()`` then frees them.
        """
        limit = self.get(before).id
        self.conn.execute("DELETE FROM snapshot WHERE snapshot_id < ? AND snapshot_id NOT IN "
                          "(SELECT snapshot_id FROM tag)", (limit,))
        forgotten = self.conn.changes()
        if forgotten:
            # each survivor's parent becomes its nearest surviving ancestor
            self.conn.execute("UPDATE snapshot SET parent_id = (SELECT max(p.snapshot_id) FROM snapshot p "
                              "WHERE p.snapshot_id < snapshot.snapshot_id)")
            for table, key, mark in (("tree", "tree_id", "tree_mark"), ("node", "node_id", "node_mark")):
                self.conn.execute(
                    f"DELETE FROM {table}_history WHERE NOT EXISTS (SELECT 1 FROM snapshot s "
                    f"WHERE s.snapshot_id >= {table}_history.born AND s.snapshot_id < {table}_history.died "
                    f"AND s.{mark} >= {table}_history.{key})")
        return forgotten

    def restore(self, snapshot: Snapshot, pattern: str | None, trees: TreeService) -> list[str]:
        """Give the trees named by ``pattern`` (all: None) their rows of ``snapshot``; returns the names changed.

        Only trees whose nodes differ are touched. A tree's rows are copied
        from its state with fresh ids (arrays by reference); a tree the
        snapshot lacks is deleted.
        """
        marks = self.marks(snapshot)
        names = [n for n in sorted(self.changed_trees(snapshot, None)) if pattern is None or fnmatchcase(n, pattern)]
        return [name for name in names if self._restore_tree(marks, name, trees)]

    def _restore_tree(self, marks: _Marks, name: str, trees: TreeService) -> bool:
        """Give one tree its rows of a snapshot, or delete it; False when it holds them already."""
        then = self.conn.one(f"SELECT tree_id, root_id, created FROM ({state_sql('tree', marks)}) WHERE name = ?",
                             (name,))
        current = trees.catalog.id_of(name)
        if then is None:
            if current is not None:
                trees.delete_tree(current)
            return current is not None
        where = f"snapshot {marks.snapshot_id}: tree {name!r}"
        source, root_id = self._int(then[0], f"{where}: tree_id"), self._int(then[1], f"{where}: root_id")
        if current is None:
            current = trees.catalog.create(name)
        elif self._same_rows(marks, source, current):
            return False
        else:
            trees.nodes.delete_tree(current)
        rows = f"SELECT {NODE_COLUMNS} FROM ({state_sql('node', marks)}) WHERE tree_id = {source}"
        try:
            shift = trees.nodes.copy_rows(rows, current)
        except CorruptionError as exc:
            raise CorruptionError(f"{self.filename}: {where}: {exc}") from None
        trees.catalog.set_root(current, root_id + shift, created=str(then[2]))
        return True

    def _same_rows(self, marks: _Marks, old_tree: int, current_tree: int) -> bool:
        """Whether a tree holds the same nodes now as in a snapshot (ids aside; arrays by id: they are frozen)."""
        columns = "path, key, pos, kind, value, exact, dtype, array_id"
        then = f"SELECT {columns} FROM ({state_sql('node', marks)}) WHERE tree_id = {int(old_tree)}"
        now = f"SELECT {columns} FROM main.node WHERE tree_id = {int(current_tree)}"
        return not self.conn.scalar(f"SELECT EXISTS ({then} EXCEPT {now}) OR EXISTS ({now} EXCEPT {then})")

    # -- comparing -----------------------------------------------------------------------

    def changed_trees(self, old: Snapshot, new: Snapshot | None) -> set[str]:
        """Names of the trees whose rows may differ between two states (``new=None``: the current state).

        A version (a row of a table or of its history) differs when exactly one
        of the two states sees it: it ended, or began, in between. Each query
        below follows an index (``died``, ``born``, the id), so the cost is what
        changed. The answer may hold a few trees too many (a version that
        began and ended in between), never one too few: the caller compares
        those trees' contents.
        """
        a = self.marks(old)
        b = None if new is None else self.marks(new)
        if b is not None and b.snapshot_id < a.snapshot_id:
            a, b = b, a

        def upto(column: str, value: int) -> str:
            return "" if b is None else f" AND {column} <= {value}"

        b_id = b.snapshot_id if b else 0
        tree_ids: set[int] = set()
        for table, key, mark_a, mark_b in (("tree", "tree_id", a.tree, b.tree if b else 0),
                                           ("node", "node_id", a.node, b.node if b else 0)):
            queries = [
                # versions the older state sees that ended before the newer one
                f"SELECT tree_id FROM {table}_history WHERE died > {a.snapshot_id}{upto('died', b_id)}",
                # current versions that began after the older state: changed rows, then new rows
                f"SELECT tree_id FROM main.{table} WHERE born > {a.snapshot_id}{upto('born', b_id)}",
                f"SELECT tree_id FROM main.{table} WHERE {key} > {mark_a}{upto(key, mark_b)}",
            ]
            if b is not None:  # versions that began after the older state and were still current in the newer one
                queries.append(f"SELECT tree_id FROM {table}_history WHERE died > {b.snapshot_id} "
                               f"AND (born > {a.snapshot_id} OR {key} > {mark_a})")
            for query in queries:
                rows = self.conn.execute(f"SELECT DISTINCT * FROM ({query})").fetchall()
                tree_ids.update(self._int(t, f"{table} rows: tree_id") for (t,) in rows)
        return self._names_of(tree_ids, [a] if b is None else [a, b], current=b is None)

    def _names_of(self, tree_ids: Iterable[int], states: list[_Marks], current: bool) -> set[str]:
        """The names the trees of ``tree_ids`` have in any of the states."""
        names: set[str] = set()
        wanted = ",".join(str(int(t)) for t in tree_ids)
        if not wanted:
            return names
        sources = [f"SELECT tree_id, name FROM ({state_sql('tree', m)})" for m in states]
        if current:
            sources.append("SELECT tree_id, name FROM main.tree")
        for source in sources:
            rows = self.conn.execute(f"SELECT name FROM ({source}) WHERE tree_id IN ({wanted})").fetchall()
            names.update(str(name) for (name,) in rows)
        return names


def diff_states(db: Database, old: Snapshot, new: Snapshot | None) -> list[Difference]:
    """The changes of every tree from snapshot ``old`` to ``new`` (None: the current state of ``db``).

    Only the trees :meth:`History.changed_trees` names are compared, each
    through views of the two states; the changes come in (tree, path) order.
    """
    names = sorted(db._history.changed_trees(old, new))
    with contextlib.ExitStack() as stack:
        before = stack.enter_context(db.at(old))
        after = db if new is None else stack.enter_context(db.at(new))
        changes = [change for name in names for change in _diff_tree(before, after, name)]
    return sorted(changes, key=lambda change: (change.tree or "", change.path))


def _diff_tree(before: Database, after: Database, name: str) -> list[Difference]:
    """The changes of one tree between two states of one file (a tree only one has is one change)."""
    from .diff import Difference, diff  # deferred: it imports numpy, a start-up cost opening a database need not pay

    with before._store.snapshot(), after._store.snapshot():
        if name not in after:
            return [Difference("", "removed", "tree", None, tree=name)]
        if name not in before:
            return [Difference("", "added", None, "tree", tree=name)]
        import dataclasses

        return [dataclasses.replace(d, tree=name) for d in diff(before[name], after[name])]
