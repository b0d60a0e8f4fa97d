"""Public relations defined on every connection tensordb opens, not stored in the file.

``tree_chunks`` and ``tree_storage`` answer "how many bytes does this tree
(or this group of trees) physically take", counting each stored chunk once
however many arrays and trees use it. They are TEMP views: every
``tensordb.open`` defines them, so ``db.sql()`` and ``tensordb sql`` read
them, but a file opened by another SQLite tool does not have them (the
queries behind them are in docs/format.md). Being temporary, they change
nothing in the file and need no format upgrade.
"""

from __future__ import annotations

from .storage.connection import Connection

__all__ = ["CONNECTION_VIEWS", "CONNECTION_VIEW_NAMES", "define"]

CONNECTION_VIEWS = """
CREATE TEMP VIEW IF NOT EXISTS tree_chunks AS
SELECT DISTINCT t.name AS tree, r.chunk_id AS chunk_id, c.size AS stored_bytes, c.raw_size AS raw_bytes
FROM tree t
JOIN node n ON n.tree_id = t.tree_id
JOIN chunk_ref r ON r.array_id = n.array_id
JOIN chunk c ON c.chunk_id = r.chunk_id;

CREATE TEMP VIEW IF NOT EXISTS tree_storage AS
WITH used AS (SELECT DISTINCT n.tree_id, r.chunk_id FROM node n JOIN chunk_ref r ON r.array_id = n.array_id),
     sharing AS (SELECT chunk_id, count(*) AS n_trees FROM used GROUP BY chunk_id)
SELECT t.name AS tree,
       count(u.chunk_id) AS chunks,
       coalesce(sum(c.size), 0) AS stored_bytes,
       coalesce(sum(CASE WHEN s.n_trees = 1 THEN c.size END), 0) AS own_bytes,
       coalesce(sum(CASE WHEN s.n_trees > 1 THEN c.size END), 0) AS shared_bytes
FROM tree t
LEFT JOIN used u ON u.tree_id = t.tree_id
LEFT JOIN chunk c ON c.chunk_id = u.chunk_id
LEFT JOIN sharing s ON s.chunk_id = u.chunk_id
GROUP BY t.tree_id;
"""

#: The relations :data:`CONNECTION_VIEWS` defines, with their columns (docs/format.md documents each).
CONNECTION_VIEW_NAMES = {
    "tree_chunks": ("tree", "chunk_id", "stored_bytes", "raw_bytes"),
    "tree_storage": ("tree", "chunks", "stored_bytes", "own_bytes", "shared_bytes"),
}


def define(conn: Connection) -> None:
    """Create the per-connection views on an open connection (read-only ones too: TEMP is in memory)."""
    conn.execute(CONNECTION_VIEWS)
