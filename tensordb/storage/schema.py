"""The SQL schema, in one place: identity, version, tables, triggers, public views, upgrades.

``PRAGMA application_id`` marks the file as tensordb's and ``PRAGMA
user_version`` is the one record of its format version. :func:`prepare` is
called on every open: it creates a fresh file, checks an existing one, and
runs the ordered upgrade steps of an older one (registered with
:func:`upgrade_step`) inside a single transaction.

``docs/format.md`` documents every table and column below; a test keeps the
two in step.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import apsw

from ..errors import CorruptionError, FormatError

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "DDL", "UPGRADES", "prepare", "check_schema", "expected_schema",
           "upgrade_step", "TABLES", "VIEWS"]

#: ``PRAGMA application_id``: the bytes "TDB1".
APPLICATION_ID = 0x54444231
#: ``PRAGMA user_version``: the on-disk format version this code writes.
SCHEMA_VERSION = 2

META = """
CREATE TABLE meta(
    key   TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
"""

TREE = """
CREATE TABLE tree(
    tree_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL UNIQUE,
    root_id  INTEGER,
    created  TEXT NOT NULL,
    modified TEXT NOT NULL,
    born     INTEGER
);
"""

# Ids of trees, nodes, arrays and packs are never reused (AUTOINCREMENT): a
# handle or a pickled reference to a deleted row must fail, not find another.
#
# One row per node. `path` is the node's JSON Pointer inside its tree, kept
# materialised so that path look-ups and prefix queries are index range scans.
# `pos` orders siblings: the list index for list items, insertion order for
# dict items. `value` and `exact` have no declared type on purpose: a typed
# column would convert values (affinity). `value` holds scalars natively; `exact`
# holds what SQLite cannot: ints beyond 64 bits (decimal text), NaN (its bits in
# hex: SQLite stores NaN as NULL), str/bytes over 64 KiB (a zstd frame).
NODE = """
CREATE TABLE node(
    node_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    tree_id   INTEGER NOT NULL REFERENCES tree(tree_id) ON DELETE CASCADE,
    parent_id INTEGER,
    path      TEXT NOT NULL,
    key       TEXT,
    pos       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    value,
    exact,
    dtype     TEXT,
    array_id  INTEGER REFERENCES array(array_id),
    born      INTEGER
);
CREATE UNIQUE INDEX node_by_path ON node(tree_id, path);
CREATE INDEX node_by_path_across_trees ON node(path);
CREATE INDEX node_by_parent ON node(parent_id, pos);
CREATE INDEX node_by_array ON node(array_id) WHERE array_id IS NOT NULL;
CREATE INDEX node_by_key_value ON node(key, value);
"""

ARRAY = """
CREATE TABLE array(
    array_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    dtype      TEXT NOT NULL,
    shape      TEXT NOT NULL,
    chunks     TEXT NOT NULL,
    codec      TEXT NOT NULL,
    fill_value BLOB NOT NULL,
    size       INTEGER NOT NULL,
    nbytes     INTEGER NOT NULL,
    refcount   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX array_unreferenced ON array(array_id) WHERE refcount <= 0;
"""

CHUNK = """
CREATE TABLE pack(
    pack_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL UNIQUE
);
CREATE TABLE chunk(
    chunk_id INTEGER PRIMARY KEY,
    hash     BLOB NOT NULL UNIQUE,
    checksum INTEGER NOT NULL,
    raw_size INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    refcount INTEGER NOT NULL DEFAULT 0,
    data     BLOB,
    pack_id  INTEGER REFERENCES pack(pack_id),
    offset   INTEGER,
    CHECK ((data IS NULL) = (pack_id IS NOT NULL)),
    CHECK ((pack_id IS NULL) = (offset IS NULL))
);
CREATE INDEX chunk_by_pack ON chunk(pack_id, offset) WHERE pack_id IS NOT NULL;
CREATE INDEX chunk_unreferenced ON chunk(chunk_id) WHERE refcount <= 0;
CREATE TABLE chunk_ref(
    array_id INTEGER NOT NULL REFERENCES array(array_id) ON DELETE CASCADE,
    coord    TEXT NOT NULL,
    chunk_id INTEGER NOT NULL REFERENCES chunk(chunk_id),
    PRIMARY KEY (array_id, coord)
) WITHOUT ROWID;
CREATE INDEX chunk_ref_by_chunk ON chunk_ref(chunk_id);
"""

# Reference counts are kept by triggers so that no code path can forget one;
# check() recomputes them from scratch and compares.
TRIGGERS = """
CREATE TRIGGER node_ref_insert AFTER INSERT ON node WHEN NEW.array_id IS NOT NULL
BEGIN UPDATE array SET refcount = refcount + 1 WHERE array_id = NEW.array_id; END;
CREATE TRIGGER node_ref_delete AFTER DELETE ON node WHEN OLD.array_id IS NOT NULL
BEGIN UPDATE array SET refcount = refcount - 1 WHERE array_id = OLD.array_id; END;
CREATE TRIGGER node_ref_update AFTER UPDATE OF array_id ON node
WHEN OLD.array_id IS NOT NEW.array_id
BEGIN
    UPDATE array SET refcount = refcount - 1 WHERE array_id = OLD.array_id;
    UPDATE array SET refcount = refcount + 1 WHERE array_id = NEW.array_id;
END;
CREATE TRIGGER chunk_ref_insert AFTER INSERT ON chunk_ref
BEGIN UPDATE chunk SET refcount = refcount + 1 WHERE chunk_id = NEW.chunk_id; END;
CREATE TRIGGER chunk_ref_delete AFTER DELETE ON chunk_ref
BEGIN UPDATE chunk SET refcount = refcount - 1 WHERE chunk_id = OLD.chunk_id; END;
CREATE TRIGGER chunk_ref_update AFTER UPDATE OF chunk_id ON chunk_ref
WHEN OLD.chunk_id IS NOT NEW.chunk_id
BEGIN
    UPDATE chunk SET refcount = refcount - 1 WHERE chunk_id = OLD.chunk_id;
    UPDATE chunk SET refcount = refcount + 1 WHERE chunk_id = NEW.chunk_id;
END;
"""

# The public, documented SQL interface. Plain SQL only (no application
# functions), so that the stdlib sqlite3 module and the sqlite3 shell read it.
VIEWS = """
CREATE VIEW trees AS
SELECT t.name AS name,
       r.kind AS root_kind,
       (SELECT count(*) FROM node n WHERE n.tree_id = t.tree_id) AS n_nodes,
       (SELECT count(*) FROM node n WHERE n.tree_id = t.tree_id AND n.array_id IS NOT NULL) AS n_arrays,
       (SELECT coalesce(sum(a.nbytes), 0) FROM node n JOIN array a ON a.array_id = n.array_id
         WHERE n.tree_id = t.tree_id) AS logical_bytes,
       t.created AS created,
       t.modified AS modified
FROM tree t LEFT JOIN node r ON r.node_id = t.root_id;

CREATE VIEW nodes AS
SELECT t.name AS tree,
       n.path AS path,
       p.path AS parent_path,
       n.key AS key,
       CASE WHEN p.kind = 'list' THEN n.pos END AS idx,
       n.kind AS kind,
       n.value AS value,
       n.array_id AS array_id
FROM node n
JOIN tree t ON t.tree_id = n.tree_id
LEFT JOIN node p ON p.node_id = n.parent_id;

CREATE VIEW arrays AS
SELECT a.array_id AS array_id,
       a.dtype AS dtype,
       a.shape AS shape,
       json_array_length(a.shape) AS ndim,
       a.size AS size,
       a.nbytes AS nbytes,
       (SELECT coalesce(sum(c.size), 0) FROM chunk_ref r JOIN chunk c ON c.chunk_id = r.chunk_id
         WHERE r.array_id = a.array_id) AS stored_bytes,
       a.chunks AS chunks,
       a.codec AS codec,
       a.refcount AS refcount
FROM array a;
"""

# History (format version 2). A snapshot is a row, not a copy: taking one
# records the id marks of the tree, node and array tables and nothing else.
# Rows keep their ids when they change, so the first change of a row that the
# latest snapshot sees (its id is under that snapshot's mark and its version was
# born before it) copies the old version into *_history, with the epochs
# [born, died) in which it was current, and stamps the row with the new epoch
# in `born` (NULL: unchanged since the row was inserted). The epoch of the
# current state is the latest snapshot's id + 1. A version is visible in
# snapshot k when its id <= k's mark and born <= k < died (died of a current
# row: never). Changes are thus paid for once per row and per snapshot, by
# the triggers below, and a file without snapshots pays one empty look-up.
#
# Arrays need no history: an array whose id is under the latest snapshot's
# array mark is never written in place again (the arrays layer clones it on
# write, sharing its chunks), so every version a snapshot sees stays as it was.
_HISTORY_TABLES = """
CREATE TABLE snapshot(
    snapshot_id INTEGER PRIMARY KEY,
    parent_id   INTEGER,
    created     TEXT NOT NULL,
    message     TEXT NOT NULL,
    tree_mark   INTEGER NOT NULL,
    node_mark   INTEGER NOT NULL,
    array_mark  INTEGER NOT NULL
);
CREATE TABLE tag(
    name        TEXT PRIMARY KEY,
    snapshot_id INTEGER NOT NULL REFERENCES snapshot(snapshot_id)
) WITHOUT ROWID;
CREATE INDEX tag_by_snapshot ON tag(snapshot_id);
CREATE TABLE tree_history(
    tree_id  INTEGER NOT NULL,
    name     TEXT NOT NULL,
    root_id  INTEGER,
    created  TEXT NOT NULL,
    modified TEXT NOT NULL,
    born     INTEGER NOT NULL,
    died     INTEGER NOT NULL,
    PRIMARY KEY (tree_id, died)
) WITHOUT ROWID;
CREATE INDEX tree_history_by_died ON tree_history(died);
CREATE INDEX tree_history_by_name ON tree_history(name);
CREATE TABLE node_history(
    node_id   INTEGER NOT NULL,
    tree_id   INTEGER NOT NULL,
    parent_id INTEGER,
    path      TEXT NOT NULL,
    key       TEXT,
    pos       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    value,
    exact,
    dtype     TEXT,
    array_id  INTEGER,
    born      INTEGER NOT NULL,
    died      INTEGER NOT NULL,
    PRIMARY KEY (node_id, died)
) WITHOUT ROWID;
CREATE INDEX node_history_by_path ON node_history(tree_id, path);
CREATE INDEX node_history_by_path_across_trees ON node_history(path);
CREATE INDEX node_history_by_parent ON node_history(parent_id, pos);
CREATE INDEX node_history_by_array ON node_history(array_id) WHERE array_id IS NOT NULL;
CREATE INDEX node_history_by_key_value ON node_history(key, value);
CREATE INDEX node_history_by_died ON node_history(died, tree_id);
CREATE INDEX node_changed ON node(born) WHERE born IS NOT NULL;
"""


def _keep_triggers(table: str, key: str, columns: str) -> str:
    """The two triggers that keep the old version of a ``table`` row the latest snapshot sees.

    On its first update after that snapshot the row's old version goes to
    ``<table>_history`` and the row is stamped with the current epoch; a
    delete keeps the version only.
    """
    sees = (f"WHEN OLD.{key} <= (SELECT {table}_mark FROM snapshot ORDER BY snapshot_id DESC LIMIT 1)\n"
            f" AND coalesce(OLD.born, 0) <= (SELECT max(snapshot_id) FROM snapshot)")
    keep = (f"INSERT INTO {table}_history({columns}, born, died)\n"
            f"    VALUES ({', '.join('OLD.' + c.strip() for c in columns.split(','))}, coalesce(OLD.born, 0),\n"
            f"            (SELECT max(snapshot_id) FROM snapshot) + 1);")
    stamp = (f"UPDATE {table} SET born = (SELECT max(snapshot_id) FROM snapshot) + 1 "
             f"WHERE {key} = OLD.{key};")
    return (f"CREATE TRIGGER {table}_keep_update AFTER UPDATE ON {table}\n{sees}\n"
            f"BEGIN\n    {keep}\n    {stamp}\nEND;\n"
            f"CREATE TRIGGER {table}_keep_delete AFTER DELETE ON {table}\n{sees}\n"
            f"BEGIN\n    {keep}\nEND;\n")


_HISTORY_REFS_AND_VIEWS = """
CREATE TRIGGER node_history_ref_insert AFTER INSERT ON node_history WHEN NEW.array_id IS NOT NULL
BEGIN UPDATE array SET refcount = refcount + 1 WHERE array_id = NEW.array_id; END;
CREATE TRIGGER node_history_ref_delete AFTER DELETE ON node_history WHEN OLD.array_id IS NOT NULL
BEGIN UPDATE array SET refcount = refcount - 1 WHERE array_id = OLD.array_id; END;

CREATE VIEW snapshots AS
SELECT s.snapshot_id AS id,
       s.created AS created,
       s.message AS message,
       s.parent_id AS parent_id,
       (SELECT json_group_array(name) FROM (SELECT t.name AS name FROM tag t
         WHERE t.snapshot_id = s.snapshot_id ORDER BY t.name)) AS tags
FROM snapshot s;

CREATE VIEW snapshot_nodes AS
SELECT s.snapshot_id AS snapshot,
       t.name AS tree,
       n.path AS path,
       n.key AS key,
       n.kind AS kind,
       n.value AS value,
       n.array_id AS array_id
FROM snapshot s
JOIN (SELECT tree_id, name, coalesce(born, 0) AS born, 9223372036854775807 AS died FROM tree
      UNION ALL SELECT tree_id, name, born, died FROM tree_history) t
  ON t.tree_id <= s.tree_mark AND t.born <= s.snapshot_id AND t.died > s.snapshot_id
JOIN (SELECT node_id, tree_id, path, key, kind, value, array_id, coalesce(born, 0) AS born,
             9223372036854775807 AS died FROM node
      UNION ALL SELECT node_id, tree_id, path, key, kind, value, array_id, born, died FROM node_history) n
  ON n.tree_id = t.tree_id AND n.node_id <= s.node_mark AND n.born <= s.snapshot_id AND n.died > s.snapshot_id;
"""

HISTORY = (_HISTORY_TABLES
           + _keep_triggers("tree", "tree_id", "tree_id, name, root_id, created, modified")
           + _keep_triggers("node", "node_id", "node_id, tree_id, parent_id, path, key, pos, kind, value, exact, "
                                               "dtype, array_id")
           + _HISTORY_REFS_AND_VIEWS)

#: Every internal table, in creation order (docs/format.md documents each).
TABLES = ("meta", "tree", "node", "array", "pack", "chunk", "chunk_ref", "snapshot", "tag", "tree_history",
          "node_history")

#: The statements that create the schema of the current version, in order.
DDL = (META, TREE, NODE, ARRAY, CHUNK, TRIGGERS, VIEWS, HISTORY)

UpgradeStep = Callable[[apsw.Connection], None]
#: Ordered upgrade steps: ``UPGRADES[n]`` turns a version-n file into version n+1.
UPGRADES: dict[int, UpgradeStep] = {}


def upgrade_step(from_version: int) -> Callable[[UpgradeStep], UpgradeStep]:
    """Register the function that turns a version-``from_version`` file into the next version.

    It runs inside the upgrade's transaction, with the other steps, and must
    leave exactly the schema :data:`DDL` creates once every step has run.
    """
    def register(step: UpgradeStep) -> UpgradeStep:
        if from_version in UPGRADES:
            raise ValueError(f"an upgrade step from format version {from_version} is already registered")
        UPGRADES[from_version] = step
        return step
    return register


@upgrade_step(1)
def _add_history(conn: apsw.Connection) -> None:
    """Format 1 to 2: snapshots, tags and the history of the tree and node tables."""
    conn.execute("ALTER TABLE tree ADD COLUMN born INTEGER")
    conn.execute("ALTER TABLE node ADD COLUMN born INTEGER")
    conn.execute(HISTORY)


def _read_identity(conn: apsw.Connection) -> tuple[int, int, int]:
    app_id: Any = conn.execute("PRAGMA application_id").fetchall()[0][0]
    version: Any = conn.execute("PRAGMA user_version").fetchall()[0][0]
    n_objects: Any = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
    return int(app_id), int(version), int(n_objects)


def _create(conn: apsw.Connection, settings: dict[str, object]) -> None:
    # auto_vacuum must be chosen before the first table exists; INCREMENTAL
    # lets gc() give freed pages back to the file system.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    with conn:
        for ddl in DDL:
            conn.execute(ddl)
        for key, value in settings.items():
            conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, value))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# SQLite's own tables, which may or may not exist depending on history (AUTOINCREMENT, ANALYZE).
_SQLITE_INTERNAL = {"sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"}
_SCHEMA_ROWS = "SELECT type, name, tbl_name, sql FROM sqlite_schema"


def normalise_sql(sql: object) -> str | None:
    """SQL text as the schema check compares it: one space between words, none around ``(``, ``)`` and ``,``."""
    # Spaces around punctuation go too: ALTER TABLE ADD COLUMN (an upgrade step)
    # writes ", column" where a fresh CREATE TABLE has ",\n    column".
    if sql is None:
        return None
    return re.sub(r" ?([(),]) ?", r"\1", re.sub(r"\s+", " ", str(sql)).strip())


def expected_schema() -> dict[tuple[str, str], tuple[str, str | None]]:
    """``{(type, name): (table, normalised SQL)}`` of every schema object this version creates."""
    rows = _schema_rows(DDL)
    return {(str(kind), str(name)): (str(table), normalise_sql(sql)) for kind, name, table, sql in rows}


@functools.lru_cache(maxsize=2)
def _schema_rows(ddl: tuple[str, ...]) -> frozenset[tuple[Any, ...]]:
    """The ``sqlite_schema`` rows ``ddl`` creates (SQLite's internal tables aside)."""
    mem = apsw.Connection(":memory:")
    try:
        with mem:
            for statement in ddl:
                mem.execute(statement)
        return frozenset(tuple(row) for row in mem.execute(_SCHEMA_ROWS) if row[1] not in _SQLITE_INTERNAL)
    finally:
        mem.close()


def check_schema(conn: apsw.Connection, filename: str) -> None:
    """Refuse a file whose schema is not exactly tensordb's.

    A trigger, view, index or table planted in a shared file would run SQL on
    our reads and writes (a trigger fires on our INSERTs, an expression index
    is evaluated on them); a changed definition would break the invariants
    every read relies on.
    """
    rows: Any = conn.execute(_SCHEMA_ROWS).fetchall()
    if {tuple(row) for row in rows if row[1] not in _SQLITE_INTERNAL or row[0] != "table"} == _schema_rows(DDL):
        return  # the common case, verbatim: SQLite keeps each CREATE statement as it was written
    found: dict[tuple[str, str], tuple[str, str | None]] = {}
    for kind, name, table, sql in rows:
        if isinstance(name, str) and name in _SQLITE_INTERNAL and kind == "table":
            continue
        found[(str(kind), str(name))] = (str(table), normalise_sql(sql))
    expected = expected_schema()
    for key in sorted(set(found) - set(expected)):
        raise CorruptionError(f"{filename}: unexpected {key[0]} {key[1]!r} in the schema (not created by tensordb)")
    for key in sorted(set(expected) - set(found)):
        raise CorruptionError(f"{filename}: the schema lacks the {key[0]} {key[1]!r}")
    for key in sorted(expected):
        if found[key] != expected[key]:
            raise CorruptionError(f"{filename}: the definition of the {key[0]} {key[1]!r} was changed")


def prepare(conn: apsw.Connection, filename: str, writable: bool, settings: dict[str, object]) -> None:
    """Create, check or upgrade the schema of ``conn``.

    Raises :class:`FormatError` for a file that is not a tensordb database,
    one written by a newer format version, or an older one opened read-only,
    and :class:`CorruptionError` for one whose schema is not exactly
    tensordb's (see :func:`check_schema`). SQLite's other errors (a damaged
    file, a failing disk) are left to the caller's ``sqlite_errors`` block.
    """
    try:
        _prepare(conn, filename, writable, settings)
    except apsw.NotADBError:  # at open, "not a database" means not ours rather than damaged
        raise FormatError(f"{filename} is not a tensordb file (not an SQLite database)") from None


def _prepare(conn: apsw.Connection, filename: str, writable: bool, settings: dict[str, object]) -> None:
    app_id, version, n_objects = _read_identity(conn)
    if app_id == 0 and version == 0 and n_objects == 0:
        if not writable:
            raise FormatError(f"{filename} is not a tensordb file (empty database)")
        _create(conn, settings)
        return
    if app_id != APPLICATION_ID:
        raise FormatError(f"{filename} is not a tensordb file (SQLite application_id is {app_id:#x})")
    if version > SCHEMA_VERSION:
        raise FormatError(
            f"{filename} uses tensordb format version {version}; this tensordb reads "
            f"versions up to {SCHEMA_VERSION}: upgrade tensordb"
        )
    if version < SCHEMA_VERSION:
        if not writable:
            raise FormatError(
                f"{filename} uses format version {version} and needs an upgrade to "
                f"{SCHEMA_VERSION}: open it writable once"
            )
        _upgrade(conn, filename, version)
        return
    check_schema(conn, filename)


def _upgrade(conn: apsw.Connection, filename: str, version: int) -> None:
    with conn:  # all steps or none: a failing step, or a result unlike a fresh file's, rolls every one back
        for step in range(version, SCHEMA_VERSION):
            if step not in UPGRADES:
                raise FormatError(f"{filename}: no upgrade path from format version {step}")
            UPGRADES[step](conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        check_schema(conn, filename)
