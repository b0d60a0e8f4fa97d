"""The chunk index: (array, chunk coordinates) -> chunk record, and its per-handle cache.

``chunk_ref`` maps a chunk's grid coordinates (as a ``coord`` key, see
:func:`tensordb.arrays.grid.coord_key`) to a chunk record. A chunk never
written, or written with nothing but the fill value, has no index row.

A *record* is ``(chunk id, *ChunkStore.DATA_COLUMNS)``: inline chunks come
with their stored bytes, pack chunks with their location.

:class:`CachedArray` keeps what one handle read (its array record and the
records of the chunks it touched) together with the commit it was read at:
SQLite's ``data_version`` (which moves when another connection commits) and
the connection's own ``write_generation`` (which moves when this one writes).
A cache is trusted only while both are unchanged, so it never serves data of
another version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..storage.chunks import ChunkStore
from ..storage.connection import Connection
from . import grid as g
from .meta import META_COLUMNS, ArrayMeta, meta_from_row

__all__ = ["ChunkIndex", "CachedArray", "ChunkRecord", "RECORDS_PER_QUERY"]

#: (chunk id, *ChunkStore.DATA_COLUMNS)
ChunkRecord = tuple[Any, ...]

#: Chunk records are looked up this many at a time (at most 16 MiB of inline chunks).
RECORDS_PER_QUERY = 256
_META_WIDTH = len(META_COLUMNS.split(", "))
_META_OF_A = ", ".join(f"a.{column}" for column in META_COLUMNS.split(", "))
# The data version as a scalar subquery (as a join, SQLite would scan the array table); LIMIT 2: a
# damaged file's extra rows for a one-chunk array are noticed, never all read.
_META_VERSIONED = (
    "SELECT (SELECT data_version FROM pragma_data_version), a.chunks = a.shape, " + _META_OF_A + ", "
    "r.coord, r.chunk_id, {data} FROM array a "
    "LEFT JOIN chunk_ref r ON r.array_id = a.array_id AND a.chunks = a.shape "
    "LEFT JOIN chunk c ON c.chunk_id = r.chunk_id WHERE a.array_id = ({{}}) LIMIT 2"
).format(data=ChunkStore.DATA_COLUMNS)
# A handle caches at most this many chunk records and this many inline stored bytes.
_CACHED_RECORDS = 4096
_CACHED_INLINE_BYTES = 8 * 1024 * 1024


class ChunkIndex:
    """Rows of ``chunk_ref`` joined with the chunk records they point at."""

    def __init__(self, conn: Connection, chunks: ChunkStore) -> None:
        self.conn = conn
        self.chunks = chunks

    def records(self, meta: ArrayMeta, keys: list[str]) -> dict[str, ChunkRecord]:
        """{coord key: record} for the written chunks among ``keys`` (at most RECORDS_PER_QUERY), one query."""
        marks = ", ".join("?" * len(keys))
        cursor = self.conn.execute(
            f"SELECT r.coord, r.chunk_id, {self.chunks.DATA_COLUMNS} FROM chunk_ref r "
            f"LEFT JOIN chunk c ON c.chunk_id = r.chunk_id WHERE r.array_id = ? AND r.coord IN ({marks})",
            (meta.array_id, *keys),
        )
        return {coord: tuple(record) for coord, *record in cursor}

    def records_versioned(self, meta: ArrayMeta, keys: list[str]) -> tuple[dict[str, ChunkRecord], int]:
        """:meth:`records` and the connection's data version, read by one statement (so, from one commit)."""
        marks = ", ".join("?" * len(keys))
        cursor = self.conn.execute(
            f"SELECT v.data_version, r.coord, r.chunk_id, {self.chunks.DATA_COLUMNS} FROM pragma_data_version v "
            f"LEFT JOIN chunk_ref r ON r.array_id = ? AND r.coord IN ({marks}) "
            f"LEFT JOIN chunk c ON c.chunk_id = r.chunk_id",
            (meta.array_id, *keys),
        )
        rows = cursor.fetchall()  # at least the pragma's row
        found = {coord: tuple(record) for _, coord, *record in rows if coord is not None}
        return found, int(rows[0][0])

    def with_records_where(self, array_ids_sql: str, params: tuple[Any, ...]
                           ) -> dict[int, tuple[ArrayMeta, dict[str, ChunkRecord]]]:
        """{array id: (validated record, {coord key: chunk record})} for the arrays a SQL subquery selects.

        One query for both (rows ordered by array, one per stored chunk): a
        whole subtree's arrays are read with a single statement.
        """
        found: dict[int, tuple[ArrayMeta, dict[str, ChunkRecord]]] = {}
        records: dict[str, ChunkRecord] = {}
        current = None
        cursor = self.conn.execute(
            f"SELECT {_META_OF_A}, r.coord, r.chunk_id, {self.chunks.DATA_COLUMNS} FROM array a "
            f"LEFT JOIN chunk_ref r ON r.array_id = a.array_id LEFT JOIN chunk c ON c.chunk_id = r.chunk_id "
            f"WHERE a.array_id IN ({array_ids_sql}) ORDER BY a.array_id",
            params,
        )
        for row in cursor.fetchall():
            if row[0] != current:
                current, records = row[0], {}
                found[current] = meta_from_row(row[:_META_WIDTH]), records
            if row[_META_WIDTH] is not None:  # None: no chunk stored, every element is the fill value
                records[row[_META_WIDTH]] = row[_META_WIDTH + 1:]
        return found

    def meta_versioned(self, array_id_sql: str, params: tuple[Any, ...]
                       ) -> tuple[ArrayMeta | None, int, dict[str, ChunkRecord | None]]:
        """(the record of the array a SQL subquery names, or None; the data version; prefetched chunk records).

        One statement. For a one-chunk array (its ``chunks`` text equals its
        ``shape``), the record of that chunk comes with it ({origin key:
        record, or None when unwritten}), so that a first read of a small
        array runs a single statement; otherwise nothing is prefetched.
        """
        rows = self.conn.execute(_META_VERSIONED.format(array_id_sql), params).fetchall()
        if not rows:
            return None, self.conn.data_version(), {}
        version, single, *meta_columns = rows[0][:_META_WIDTH + 2]
        meta = meta_from_row(tuple(meta_columns))
        coord, record = rows[0][_META_WIDTH + 2], rows[0][_META_WIDTH + 3:]
        origin = g.origin_key(len(meta.shape))
        if single != 1 or len(rows) != 1 or meta.chunks != meta.shape or coord not in (None, origin):
            return meta, int(version), {}
        return meta, int(version), {origin: None if coord is None else record}

    def stored_coords(self, meta: ArrayMeta) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Every (coord key, coords) with a stored chunk (coordinates outside the grid are refused)."""
        grid = meta.grid
        rows = self.conn.execute("SELECT coord FROM chunk_ref WHERE array_id = ?", (meta.array_id,)).fetchall()
        for (key,) in rows:
            yield key, g.parse_coord_key(key, grid)

    def point(self, refs: Iterable[tuple[int, str, int]]) -> None:
        """Point ``(array id, coord key)`` at chunk ids (inserting or replacing index rows)."""
        self.conn.insert_rows("INSERT INTO chunk_ref(array_id, coord, chunk_id)", list(refs),
                              "ON CONFLICT(array_id, coord) DO UPDATE SET chunk_id = excluded.chunk_id")

    def drop(self, refs: Iterable[tuple[int, str]]) -> None:
        """Remove index rows ``(array id, coord key)``: those chunks read as the fill value from now on.

        One statement per array (its coordinates as a JSON list, looked up
        through the primary key), not one per row: each row's delete fires
        the reference-count trigger, and a statement per row would pay a
        statement journal for each (as :meth:`Connection.insert_rows` explains).
        """
        by_array: dict[int, list[str]] = {}
        for array_id, key in refs:
            by_array.setdefault(array_id, []).append(key)
        for array_id, keys in by_array.items():
            self.conn.execute("DELETE FROM chunk_ref WHERE array_id = ? AND coord IN (SELECT value FROM json_each(?))",
                              (array_id, json.dumps(keys)))


class CachedArray:
    """One handle's array record and chunk records, with the version they were read at."""

    __slots__ = ("meta", "version", "generation", "records", "_inline_bytes")

    def __init__(self, meta: ArrayMeta, version: int, generation: int) -> None:
        self.meta = meta
        self.version = version
        self.generation = generation
        self.records: dict[str, ChunkRecord | None] = {}  # None: known to be unwritten
        self._inline_bytes = 0

    def missing(self, keys: Iterable[str]) -> list[str]:
        records = self.records
        return [key for key in keys if key not in records]

    def remember(self, keys: list[str], found: dict[str, ChunkRecord]) -> None:
        """Add the answer of a lookup of ``keys``; forget everything first when the cache is full."""
        inline = sum(len(r[1]) for r in found.values() if isinstance(r[1], bytes))
        if len(self.records) + len(keys) > _CACHED_RECORDS or self._inline_bytes + inline > _CACHED_INLINE_BYTES:
            self.records.clear()
            self._inline_bytes = 0
        for key in keys:
            self.records[key] = found.get(key)
        self._inline_bytes += inline
