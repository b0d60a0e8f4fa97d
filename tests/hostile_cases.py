"""Malicious or damaged database files, each with the error tensordb must answer with.

Every :class:`Case` starts from the same small database (:func:`build`),
edits it the way an attacker or a broken disk would (raw SQL through the
standard library's ``sqlite3``, or the files themselves), and names the
error that opening, loading or checking it must raise. ``tests/test_hostile.py``
runs each case in-process, and all of them again in one subprocess that
watches every file opened and makes ``pickle``/``eval``/``exec`` explode.

Run as a script (``python hostile_cases.py SANDBOX``), it is that subprocess:
it prints one JSON line per case and a final summary line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import struct
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
import zstandard

import tensordb

# -- the database every case starts from ------------------------------------------------------

INLINE_THRESHOLD = 1024  # small, so that the 8 KB chunks of "big" go to a pack


def expected_trees() -> dict[str, Any]:
    rng = np.random.default_rng(6)
    big = rng.standard_normal(4000)  # incompressible: 8 KB chunks, stored in packs
    return {
        "t": {
            "name": "s037",
            "time": 51,
            "small": np.arange(10, dtype="<f4"),  # one inline chunk
            "big": big,
            "rec": np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
            "list": [1, "x", None, 2.5],
            "nested": {"a": {"b": True}, "text": "é" * 10},
        },
        "u": {"shared": big, "n": 7},
    }


def build(path: Path) -> None:
    trees = expected_trees()
    with tensordb.open(path, mode="x", inline_threshold=INLINE_THRESHOLD) as db:
        db["t"] = {**trees["t"], "big": None}  # /big keeps its place, written next with small chunks
        db["t"].set("/big", trees["t"]["big"], chunks=(1000,))
        db["u"] = {"shared": db["t"]["/big"], "n": 7}


def sql(path: Path) -> sqlite3.Connection:
    """A raw connection without tensordb's protections (the attacker's tool)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA foreign_keys = OFF")
    return con


def run_sql(path: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    con = sql(path)
    try:
        for statement in statements:
            con.execute(statement, params if statement is statements[-1] else ())
    finally:
        con.close()


def pack_dir(path: Path) -> Path:
    return Path(str(path) + "-packs")


def pack_chunk(path: Path) -> tuple[int, str, int, int]:
    """(chunk_id, pack name, offset, size) of the first chunk of /big."""
    con = sql(path)
    try:
        row = con.execute(
            "SELECT c.chunk_id, p.name, c.offset, c.size FROM node n JOIN tree t ON t.tree_id = n.tree_id "
            "JOIN chunk_ref r ON r.array_id = n.array_id JOIN chunk c ON c.chunk_id = r.chunk_id "
            "JOIN pack p ON p.pack_id = c.pack_id WHERE t.name = 't' AND n.path = '/big' AND r.coord = '0'"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return row


def inline_chunk(path: Path, array_path: str = "/small") -> tuple[int, bytes]:
    con = sql(path)
    try:
        row = con.execute(
            "SELECT c.chunk_id, c.data FROM node n JOIN tree t ON t.tree_id = n.tree_id "
            "JOIN chunk_ref r ON r.array_id = n.array_id JOIN chunk c ON c.chunk_id = r.chunk_id "
            "WHERE t.name = 't' AND n.path = ? AND c.data IS NOT NULL", (array_path,)
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return row[0], bytes(row[1])


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def store_chunk(path: Path, chunk_id: int, data: bytes) -> None:
    """Replace an inline chunk's bytes, with a matching checksum and size (a deliberate lie)."""
    run_sql(path, "UPDATE chunk SET data = ?, size = ?, checksum = ? WHERE chunk_id = ?",
            params=(data, len(data), signed(xxhash.xxh3_64_intdigest(data)), chunk_id))


def patch_header(path: Path, offset: int, new: bytes) -> None:
    """Rewrite bytes of the Blosc2 header of /small's inline chunk (checksum kept valid)."""
    chunk_id, data = inline_chunk(path)
    buf = bytearray(data)
    buf[offset:offset + len(new)] = new
    store_chunk(path, chunk_id, bytes(buf))


def array_column(path: Path, column: str, value: object, array_path: str = "/big") -> None:
    run_sql(path, f"UPDATE array SET {column} = ? WHERE array_id = (SELECT n.array_id FROM node n "
            f"JOIN tree t ON t.tree_id = n.tree_id WHERE t.name = 't' AND n.path = '{array_path}')",
            params=(value,))


def node_column(path: Path, node_path: str, column: str, value: object) -> None:
    run_sql(path, f"UPDATE node SET {column} = ? WHERE path = '{node_path}' "
            "AND tree_id = (SELECT tree_id FROM tree WHERE name = 't')", params=(value,))


def node_id(path: Path, node_path: str) -> int:
    con = sql(path)
    try:
        return int(con.execute("SELECT node_id FROM node WHERE path = ? AND tree_id = "
                               "(SELECT tree_id FROM tree WHERE name = 't')", (node_path,)).fetchone()[0])
    finally:
        con.close()


def set_header_field(path: Path, offset: int, fmt: str, value: int) -> None:
    """Write an integer into the SQLite file header (big-endian, as SQLite stores them)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def replace_pack(path: Path, make: Callable[[Path, Path], None]) -> None:
    """Swap the pack file holding /big for something else (``make(pack_path, outside_folder)``)."""
    _, name, _, _ = pack_chunk(path)
    target = pack_dir(path) / name
    make(target, outside(path))


def outside(path: Path) -> Path:
    """The sandbox folder next to the database folder, which nothing may read or write."""
    return path.parent.parent / "outside"


def zstd_frame_declaring(size: int, body: bytes = b"x" * 100) -> bytes:
    """A zstd frame whose header declares ``size`` bytes but whose blocks hold ``body``."""
    frame = zstandard.ZstdCompressor(write_content_size=True, write_checksum=False).compress(body)
    # Frame header: magic (4), descriptor (1), [window (1)], content size (1/2/4/8 bytes by flag).
    descriptor = frame[4]
    single_segment = descriptor & 0x20
    fcs_flag = descriptor >> 6
    fcs_len = {0: 1 if single_segment else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
    start = 5 + (0 if single_segment else 1)
    rest = frame[start + fcs_len:]
    new_descriptor = (3 << 6) | (descriptor & 0x3F)  # 8-byte content size
    window = b"" if single_segment else frame[5:6]
    return frame[:4] + bytes([new_descriptor]) + window + struct.pack("<Q", size) + rest


# -- the cases ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One hostile edit. ``action`` is what the victim does:

    * ``open``: ``tensordb.open(path)`` (writable, the default);
    * ``load``: open read-only, list the trees, load each one and slice each array;
    * ``check``: ``db.check()`` must return (not raise) a report with a finding ``code``;
    * ``gc``: gc must not remove data still referenced, and check() reports ``code``;
    * ``history``: open read-only; ``history()``, ``tags()``, every snapshot's
      trees loaded through ``at()`` and ``diff()`` against each snapshot
      finish, raising nothing or a documented error (``CorruptionError``,
      ``KeyError``), and check() reports ``code``.

    ``error`` is the documented exception type and ``match`` a regex on its message.
    A case with neither ``error`` nor ``code`` is harmless: the victim must
    simply get its data, as written. ``known_bug`` says why tensordb does not
    answer as documented yet (the test expects the failure, strictly).
    """

    name: str
    edit: Callable[[Path], None]
    action: str
    error: type[BaseException] | None = None
    match: str = ""
    code: str = ""
    known_bug: str = ""


def _symlink_out(target: Path, away: Path) -> None:
    copy = away / target.name
    shutil.copyfile(target, copy)
    target.unlink()
    target.symlink_to(copy)


def _symlink_inside(target: Path, away: Path) -> None:
    other = target.with_name("00000099.pack")
    shutil.copyfile(target, other)
    target.unlink()
    target.symlink_to(other.name)


def _fifo(target: Path, away: Path) -> None:
    target.unlink()
    os.mkfifo(target)


def _folder(target: Path, away: Path) -> None:
    target.unlink()
    target.mkdir()


def _folder_symlink(path: Path) -> None:
    folder = pack_dir(path)
    moved = outside(path) / "moved-packs"
    shutil.move(str(folder), moved)
    folder.symlink_to(moved, target_is_directory=True)


def _truncate_pack(path: Path) -> None:
    _, name, offset, size = pack_chunk(path)
    os.truncate(pack_dir(path) / name, offset + size // 2)


def _bad_magic(path: Path) -> None:
    _, name, _, _ = pack_chunk(path)
    with open(pack_dir(path) / name, "r+b") as f:
        f.write(b"EVILPACK")


def _chunk(column: str, value: object) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        chunk_id, _, _, _ = pack_chunk(path)
        run_sql(path, f"UPDATE chunk SET {column} = ? WHERE chunk_id = ?", params=(value, chunk_id))
    return edit


def _inline(column: str, value: object) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        chunk_id, _ = inline_chunk(path)
        run_sql(path, f"UPDATE chunk SET {column} = ? WHERE chunk_id = ?", params=(value, chunk_id))
    return edit


def _header(offset: int, new: bytes) -> Callable[[Path], None]:
    return lambda path: patch_header(path, offset, new)


def _array(column: str, value: object, array_path: str = "/big") -> Callable[[Path], None]:
    return lambda path: array_column(path, column, value, array_path)


def _node(node_path: str, column: str, value: object) -> Callable[[Path], None]:
    return lambda path: node_column(path, node_path, column, value)


def _parent_cycle(path: Path) -> None:
    # /nested/a's parent becomes its own child /nested/a/b's... a dict cannot hold its ancestor:
    # make /nested's parent /nested/a (a cycle /nested -> /nested/a -> /nested).
    node_column(path, "/nested", "parent_id", node_id(path, "/nested/a"))


def _duplicate_key(path: Path) -> None:
    node_column(path, "/time", "key", "name")


def _parent_scalar(path: Path) -> None:
    node_column(path, "/nested/text", "parent_id", node_id(path, "/time"))


def _root_deleted(path: Path) -> None:
    run_sql(path, "DELETE FROM node WHERE path = '' AND tree_id = (SELECT tree_id FROM tree WHERE name = 't')")


def _list_gap(path: Path) -> None:
    node_column(path, "/list/3", "pos", 7)
    node_column(path, "/list/3", "path", "/list/7")


def _trigger(path: Path) -> None:
    run_sql(path, "CREATE TRIGGER evil AFTER INSERT ON node BEGIN "
                  "INSERT INTO meta(key, value) VALUES ('pwned', 1); END")


def _changed_trigger(path: Path) -> None:
    run_sql(path, "DROP TRIGGER node_ref_insert",
            "CREATE TRIGGER node_ref_insert AFTER INSERT ON node WHEN NEW.array_id IS NOT NULL "
            "BEGIN UPDATE array SET refcount = refcount + 2 WHERE array_id = NEW.array_id; END")


def _foreign_app_id(path: Path) -> None:
    run_sql(path, "PRAGMA application_id = 1234")


def _newer_version(path: Path) -> None:
    run_sql(path, "PRAGMA user_version = 99")


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"MZ\x90\x00" + os.urandom(4092))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _truncated_sqlite(path: Path) -> None:
    size = path.stat().st_size
    os.truncate(path, size // 3)


def _refcount(table: str, value: int) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        if table == "array":
            array_column(path, "refcount", value)
        else:
            chunk_id, _, _, _ = pack_chunk(path)
            run_sql(path, "UPDATE chunk SET refcount = ? WHERE chunk_id = ?", params=(value, chunk_id))
    return edit


def _coord_outside(path: Path) -> None:
    run_sql(path, "UPDATE chunk_ref SET coord = '99' WHERE coord = '3' AND array_id = (SELECT n.array_id "
                  "FROM node n JOIN tree t ON t.tree_id = n.tree_id WHERE t.name = 't' AND n.path = '/big')")


def _garbage_body(path: Path) -> None:
    chunk_id, data = inline_chunk(path)
    store_chunk(path, chunk_id, data[:32] + bytes(b ^ 0x5A for b in data[32:]))


def _payload(frame: bytes) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        run_sql(path, "UPDATE node SET value = NULL, exact = ? WHERE path = '/nested/text' AND tree_id = "
                      "(SELECT tree_id FROM tree WHERE name = 't')", params=(frame,))
    return edit


# -- history (format version 2) -----------------------------------------------------------

def make_history(path: Path) -> None:
    """Three snapshots (the first tagged ``raw``) with changes between them, made by tensordb itself.

    After snapshot 1 tree ``u`` is replaced whole (so snapshot 1 alone keeps
    every node of the old ``u``, its root included) and ``/time`` of ``t``
    changes; after snapshot 2 ``/name`` changes.
    """
    with tensordb.open(path) as db:
        s1 = db.snapshot("one")
        db.tag("raw", s1)
        db["u"] = {"replaced": True, "shared": db["t"]["/big"], "n": 7}
        db["t"]["time"] = 52
        db.snapshot("two")
        db["t"]["name"] = "changed"
        db.snapshot("three")


def _history(*statements: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        make_history(path)
        run_sql(path, *statements)
    return edit


def _history_root_of_u(path: Path) -> None:
    """Snapshot 1's tree ``u`` loses its root: the kept version of the root node is deleted."""
    make_history(path)
    run_sql(path, "DELETE FROM node_history WHERE path = '' AND tree_id = (SELECT tree_id FROM tree WHERE name = 'u')")


def _history_parent_cycle(path: Path) -> None:
    """In snapshot 1 the kept root of ``u`` hangs under its own child ``/n``."""
    make_history(path)
    run_sql(path, "UPDATE node_history SET parent_id = (SELECT h.node_id FROM node_history h WHERE h.path = '/n' "
                  "AND h.tree_id = node_history.tree_id) WHERE path = '' AND tree_id = "
                  "(SELECT tree_id FROM tree WHERE name = 'u')")


_KEPT_U = "(SELECT tree_id FROM tree WHERE name = 'u')"

_C, _F = tensordb.CorruptionError, tensordb.FormatError
_STRUCT_WITH_OBJECT = json.dumps({"names": ["a"], "formats": ["|O"], "offsets": [0], "itemsize": 8})

CASES: list[Case] = [
    # pack names and files
    Case("pack-name-parent-folder", lambda p: run_sql(p, "UPDATE pack SET name = '../x.pack'"),
         "load", _C, r"invalid pack file name '\.\./x\.pack'"),
    Case("pack-name-absolute", lambda p: run_sql(p, "UPDATE pack SET name = ?",
                                                  params=(str(outside(p) / "00000001.pack"),)),
         "load", _C, r"invalid pack file name '/"),
    Case("pack-symlink-out-of-folder", lambda p: replace_pack(p, _symlink_out), "load", _C, "resolves outside"),
    Case("pack-symlink-inside-folder", lambda p: replace_pack(p, _symlink_inside), "load", _C,
         "not a regular file"),
    Case("pack-is-a-fifo", lambda p: replace_pack(p, _fifo), "load", _C, "not a regular file"),
    Case("pack-is-a-folder", lambda p: replace_pack(p, _folder), "load", _C, "not a regular file"),
    Case("pack-folder-is-a-symlink", _folder_symlink, "load", _C, "symbolic link"),
    Case("pack-missing", lambda p: replace_pack(p, lambda t, a: t.unlink()), "load", _C, "is missing"),
    Case("pack-bad-magic", _bad_magic, "load", _C, "no tensordb pack header"),
    Case("pack-truncated", _truncate_pack, "load", _C, "past the end of the file"),
    Case("chunk-offset-past-end", _chunk("offset", 10**12), "load", _C, "past the end of the file"),
    Case("chunk-offset-inside-header", _chunk("offset", 3), "load", _C, "invalid range"),
    Case("chunk-negative-length", _chunk("size", -5), "load", _C, "invalid range"),
    Case("chunk-offset-not-an-integer", _chunk("offset", "sixteen"), "load", _C, "valid pack location"),
    Case("chunk-unknown-pack", _chunk("pack_id", 999), "load", _C, "no row in the pack table"),
    Case("chunk-inline-data-is-an-integer", _inline("data", 10**12), "load", _C, "not a BLOB"),
    Case("chunk-checksum-wrong", _inline("checksum", 12345), "load", _C, "checksum mismatch"),
    Case("chunk-raw-size-lies", _inline("raw_size", 2**31), "load", _C, "raw bytes where the array expects"),
    # Blosc2 headers that lie (checksums recomputed so that only the header is wrong)
    Case("blosc-declares-huge-nbytes", _header(4, struct.pack("<I", 2**31 - 1)), "load", _C, "header says"),
    Case("blosc-declares-wrong-cbytes", _header(12, struct.pack("<I", 10**6)), "load", _C, "header says"),
    Case("blosc-plugin-codec", _header(22, bytes([37])), "load", _C, "names compressor 37"),
    Case("blosc-plugin-filter", _header(16, bytes([35])), "load", _C, "names filters"),
    Case("blosc-uninitialised-special-chunk", _header(31, bytes([0x40])), "load", _C, "options"),
    Case("blosc-zero-block-size", _header(8, struct.pack("<I", 0)), "load", _C, "block size"),
    Case("blosc-unknown-version", _header(0, bytes([99])), "load", _C, "unknown Blosc2 header"),
    Case("blosc-garbage-body", _garbage_body, "check", code="chunk-corrupt"),
    # codec, dtype, shape and chunk metadata
    Case("codec-unknown-name", _array("codec", '{"level":5,"name":"evil","shuffle":"byte"}'), "load", _C,
         "unknown codec 'evil'"),
    Case("codec-level-out-of-range", _array("codec", '{"level":99,"name":"zstd","shuffle":"byte"}'), "load", _C,
         "level"),
    Case("codec-unknown-filter", _array("codec", '{"level":5,"name":"zstd","shuffle":"delta"}'), "load", _C,
         "unknown shuffle"),
    Case("codec-malformed-json", _array("codec", '{"level":5,'), "load", _C, "malformed codec"),
    Case("dtype-object", _array("dtype", "|O"), "load", _C, "invalid dtype"),
    Case("dtype-record-with-object-field", _array("dtype", _STRUCT_WITH_OBJECT, "/rec"), "load", _C,
         "invalid dtype"),
    Case("dtype-python-expression", _array("dtype", "__import__('os').system('true')"), "load", _C,
         "invalid dtype"),
    Case("dtype-numpy-list-syntax", _array("dtype", "[('a', '<i4')]"), "load", _C, "invalid dtype"),
    Case("dtype-huge-itemsize", _array("dtype", "|S99999999"), "load", _C, "too large"),
    Case("dtype-json-nesting-bomb", _array("dtype", '{"subarray":[' * 50_000), "load", _C, "invalid dtype"),
    Case("shape-negative", _array("shape", "[-1]"), "load", _C, "negative dimension"),
    Case("shape-product-overflow", _array("shape", "[4294967296, 4294967296, 4294967296]"), "load", _C,
         "too large"),
    Case("shape-not-integers", _array("shape", "[4000.0]"), "load", _C, "malformed shape"),
    Case("shape-disagrees-with-size", _array("shape", "[400000]"), "load", _C, "disagree with shape"),
    Case("shape-deep-json", _array("shape", "[" * 100_000 + "]" * 100_000), "load", _C, "malformed shape"),
    Case("shape-huge-digits", _array("shape", "[" + "9" * 5000 + "]"), "load", _C, "malformed shape"),
    Case("chunks-zero", _array("chunks", "[0]"), "load", _C, "chunk"),
    Case("chunks-over-the-cap", _array("chunks", f"[{2**31}]"), "load", _C, "limit"),
    Case("chunks-wrong-rank", _array("chunks", "[1000, 1]"), "load", _C, "chunk"),
    Case("fill-value-wrong-length", _array("fill_value", b"\0\0\0"), "load", _C, "fill value"),
    Case("chunk-coordinate-outside-grid", _coord_outside, "check", code="array-metadata"),
    # the node table
    Case("node-parent-cycle", _parent_cycle, "load", _C, "does not hang under"),
    Case("node-duplicate-key", _duplicate_key, "load", _C, "disagree"),
    Case("node-parent-is-a-scalar", _parent_scalar, "load", _C, "does not hang under"),
    Case("node-unknown-kind", _node("/time", "kind", "evil"), "load", _C, "unknown node kind"),
    Case("node-array-id-not-an-integer", _node("/small", "array_id", "x"), "load", _C, "valid array id"),
    Case("node-array-missing", _node("/small", "array_id", 999_999), "load", _C, "does not exist"),
    Case("node-root-missing", _root_deleted, "load", _C, "no root node"),
    Case("node-list-gap", _list_gap, "load", _C, "numbered"),
    Case("node-bytes-value-is-an-integer", lambda p: (_node("/name", "kind", "bytes")(p),
                                                      _node("/name", "value", 10**12)(p)), "load", _C,
         "bytes node holds int"),
    Case("node-int-digits-invalid", lambda p: (_node("/time", "exact", "12abc")(p)), "load", _C, "invalid digits"),
    Case("node-scalar-dtype-object", _node("/time", "dtype", "|O"), "load", _C, "invalid dtype"),
    Case("node-payload-declares-huge-size", _payload(zstd_frame_declaring(2**40)), "load", _C, "invalid size"),
    Case("node-payload-lies-about-size", _payload(zstd_frame_declaring(2**30)), "load", _C, "payload"),
    # identity and schema
    Case("foreign-application-id", _foreign_app_id, "open", _F, "not a tensordb file"),
    Case("newer-format-version", _newer_version, "open", _F, "format version 99"),
    Case("not-an-sqlite-file", _not_sqlite, "open", _F, "not a tensordb file"),
    Case("truncated-sqlite-file", _truncated_sqlite, "load", _C, "damaged|malformed"),
    Case("planted-trigger", _trigger, "open", _C, "unexpected trigger 'evil'"),
    Case("planted-view", lambda p: run_sql(p, "CREATE VIEW evil AS SELECT randomblob(1000000000)"), "open", _C,
         "unexpected view 'evil'"),
    Case("planted-expression-index", lambda p: run_sql(p, "CREATE INDEX evil ON node(length(zeroblob(value)))"),
         "open", _C, "unexpected index 'evil'"),
    Case("planted-table", lambda p: run_sql(p, "CREATE TABLE evil(x)"), "open", _C, "unexpected table 'evil'"),
    Case("changed-trigger", _changed_trigger, "open", _C, "node_ref_insert' was changed"),
    Case("dropped-trigger", lambda p: run_sql(p, "DROP TRIGGER chunk_ref_delete"), "open", _C,
         "lacks the trigger 'chunk_ref_delete'"),
    # harmless oddities: the data comes back as written, nothing hangs or follows a link
    Case("gate-file-is-a-fifo", lambda p: os.mkfifo(pack_dir(p) / "gc.lock"), "load"),
    Case("gate-file-is-a-symlink-out", lambda p: (pack_dir(p) / "gc.lock").symlink_to(outside(p) / "x.pack"),
         "load"),
    Case("garbage-wal-file", lambda p: Path(str(p) + "-wal").write_bytes(os.urandom(8192)), "load"),
    # reference counts: reported by check(), and never a reason for gc to delete live data
    Case("array-refcount-zero-while-referenced", _refcount("array", 0), "gc", code="array-refcount"),
    Case("array-refcount-too-high", _refcount("array", 9), "check", code="array-refcount"),
    Case("chunk-refcount-zero-while-referenced", _refcount("chunk", 0), "gc", code="chunk-refcount"),
    # history: check() names the problem; history(), tags(), at() reads and diff() finish with a documented error
    Case("snapshot-parent-is-itself", _history("UPDATE snapshot SET parent_id = snapshot_id WHERE snapshot_id = 2"),
         "history", code="snapshot-parent"),
    Case("snapshot-parent-is-later", _history("UPDATE snapshot SET parent_id = 3 WHERE snapshot_id = 2"),
         "history", code="snapshot-parent"),
    Case("snapshot-parents-point-at-each-other",
         _history("UPDATE snapshot SET parent_id = 3 WHERE snapshot_id = 2",
                  "UPDATE snapshot SET parent_id = 2 WHERE snapshot_id = 3"), "history", code="snapshot-parent"),
    Case("snapshot-parent-missing", _history("UPDATE snapshot SET parent_id = 99 WHERE snapshot_id = 3"),
         "history", code="snapshot-parent"),
    Case("snapshot-parent-not-an-integer", _history("UPDATE snapshot SET parent_id = 'two' WHERE snapshot_id = 3"),
         "history", code="snapshot-parent"),
    Case("snapshot-node-mark-past-the-nodes", _history("UPDATE snapshot SET node_mark = 1000000 WHERE snapshot_id = 1"),
         "history", code="snapshot-marks"),
    Case("snapshot-tree-mark-before-the-previous", _history("UPDATE snapshot SET tree_mark = 0 WHERE snapshot_id = 2"),
         "history", code="snapshot-marks"),
    Case("snapshot-mark-not-an-integer", _history("UPDATE snapshot SET node_mark = 'x' WHERE snapshot_id = 2"),
         "history", code="snapshot-marks"),
    Case("snapshot-mark-huge", _history("UPDATE snapshot SET array_mark = 1e300 WHERE snapshot_id = 3"),
         "history", code="snapshot-marks"),
    Case("tag-names-a-missing-snapshot", _history("UPDATE tag SET snapshot_id = 99 WHERE name = 'raw'"),
         "history", code="tag-missing-snapshot"),
    Case("tag-snapshot-id-not-an-integer", _history("UPDATE tag SET snapshot_id = 'one' WHERE name = 'raw'"),
         "history", code="tag-missing-snapshot"),
    Case("history-born-equals-died", _history("UPDATE node_history SET born = died"), "history",
         code="history-interval"),
    Case("history-born-after-died", _history("UPDATE tree_history SET born = died + 5"), "history",
         code="history-interval"),
    Case("history-died-in-the-future", _history("UPDATE node_history SET died = 1000"), "history",
         code="history-interval"),
    Case("history-tree-without-root", _history_root_of_u, "history", code="snapshot 1: tree-root-missing"),
    Case("history-node-parent-cycle", _history_parent_cycle, "history", code="snapshot 1: tree-root-invalid"),
    Case("history-node-of-a-missing-tree", _history(f"UPDATE node_history SET tree_id = 77 WHERE tree_id = {_KEPT_U}"),
         "history", code="snapshot 1: tree-root-missing"),
    Case("history-node-path-wrong", _history("UPDATE node_history SET path = '/evil' WHERE path = '/n'"), "history",
         code="snapshot 1: node-path"),
    Case("history-two-trees-of-one-name", _history(f"UPDATE tree_history SET name = 't' WHERE tree_id = {_KEPT_U}"),
         "history", code="snapshot 1: tree-name-duplicate"),
    Case("history-array-missing", _history(f"UPDATE node_history SET array_id = 999999 WHERE tree_id = {_KEPT_U} "
                                           "AND array_id IS NOT NULL"), "history", code="snapshot 1: array-missing"),
]


# -- running a case ------------------------------------------------------------------------

def prepare(case: Case, sandbox: Path) -> Path:
    """A fresh database folder in ``sandbox`` with the case's edit applied; returns the database path."""
    folder = sandbox / case.name / "db"
    folder.mkdir(parents=True)
    (folder.parent / "outside").mkdir()
    path = folder / "h.tdb"
    build(path)
    plant_sentinels(path)
    case.edit(path)
    arm_sentinels(path)
    return path


def plant_sentinels(path: Path) -> None:
    """Valid copies of the pack wherever a hostile name could point, outside the pack folder."""
    _, name, _, _ = pack_chunk(path)
    source = pack_dir(path) / name
    for target in (outside(path) / name, outside(path) / "x.pack", path.parent / "x.pack"):
        shutil.copyfile(source, target)


def sentinels(path: Path) -> list[Path]:
    """Every file the victim must not touch: all of the outside folder, and the decoy beside the database."""
    return sorted(p for p in outside(path).rglob("*") if p.is_file() and not p.is_symlink()) + [
        path.parent / "x.pack"]


def arm_sentinels(path: Path) -> dict[str, tuple[bytes, float]]:
    """Set each sentinel's access time an hour before its modification time (so that even
    a ``relatime`` mount records a read) and return {path: (content, atime)}."""
    contents = {str(target): target.read_bytes() for target in sentinels(path)}
    state = {}
    for target in sentinels(path):
        st = target.stat()
        os.utime(target, (st.st_mtime - 3600, st.st_mtime))
        state[str(target)] = (contents[str(target)], target.stat().st_atime)
    return state


def sentinel_state(path: Path) -> dict[str, tuple[bytes, float]]:
    """{path: (content, atime)}, atime read before the content."""
    state = {}
    for target in sentinels(path):
        atime = target.stat().st_atime
        state[str(target)] = (target.read_bytes(), atime)
    return state


def victim(case: Case, path: Path) -> Any:
    """Do what the case's victim does; returns a check report for check/gc actions."""
    if case.action == "open":
        tensordb.open(path).close()
        return None
    if case.action == "load":
        with tensordb.open(path, mode="r") as db:
            trees = {}
            for name in list(db):
                trees[name] = db[name].load()
                for _, _, handle in db.glob("/**", trees=name):
                    if isinstance(handle, tensordb.Array):
                        handle[...]
            if case.error is None:  # a harmless case: the data must be exactly what was written
                assert_trees(trees, expected_trees())
        return None
    if case.action == "history":
        return read_history(path)
    with tensordb.open(path) as db:
        if case.action == "gc":
            db.gc()
            trees = {name: db[name].load() for name in db}
            assert_trees(trees, expected_trees())
        return db.check()


def read_history(path: Path) -> Any:
    """Read every part of the history a user can reach; documented errors are fine, anything else is not."""
    documented = (tensordb.TensorDBError, KeyError)
    with tensordb.open(path, mode="r") as db:
        refs: list[Any] = []
        try:
            refs += [s.id for s in db.history()]
        except documented:
            pass
        try:
            refs += list(db.tags())
        except documented:
            pass
        refs += [1, 2, 3, "raw"]
        for ref in refs:
            try:
                with db.at(ref) as view:
                    for name in list(view):
                        view[name].load()
                        for _, _, handle in view.glob("/**", trees=name):
                            if isinstance(handle, tensordb.Array):
                                handle[...]
                    list(view.sql("SELECT * FROM nodes"))
            except documented:
                pass
            try:
                db.diff(ref)
            except documented:
                pass
        return db.check()


def assert_trees(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for k in want:
            assert_trees(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_trees(g, w, f"{where}/{i}")
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape, where
        assert got.tobytes() == want.tobytes(), where
    else:
        assert type(got) is type(want) and got == want, where


def run(case: Case, path: Path) -> dict[str, Any]:
    """Run the victim on a prepared database: {"raised": type name or None, "message", "codes"}."""
    try:
        report = victim(case, path)
    except BaseException as exc:  # everything, to report it
        return {"case": case.name, "raised": type(exc).__name__, "message": str(exc)[:300], "codes": []}
    findings = report.findings if report is not None else []
    # a finding in a snapshot's state also counts as "snapshot N: code"
    codes = [f.code for f in findings] + [f"snapshot {f.snapshot}: {f.code}" for f in findings
                                          if getattr(f, "snapshot", None) is not None]
    return {"case": case.name, "raised": None, "message": "", "codes": codes}


def as_documented(case: Case, result: dict[str, Any]) -> bool:
    """Whether a run's result is the case's documented answer."""
    if case.error is not None:
        names = {t.__name__ for t in case.error.__mro__}
        return result["raised"] in names and re.search(case.match, result["message"]) is not None
    if not case.code:
        return result["raised"] is None
    return result["raised"] is None and case.code in result["codes"]


# -- the watched subprocess -----------------------------------------------------------------

class Forbidden(BaseException):
    """Raised by the booby-trapped pickle/eval/exec (a BaseException, so no except Exception hides it)."""


def _watch(sandbox: Path) -> tuple[list[str], list[str]]:
    """Record every path opened or changed (audit hook) and booby-trap pickle/eval/exec."""
    import builtins
    import pickle

    opened: list[str] = []
    trapped: list[str] = []
    events = {"open", "os.remove", "os.unlink", "os.rename", "os.replace", "os.truncate", "os.mkdir", "os.rmdir",
              "os.symlink", "os.link", "os.listdir", "os.scandir", "os.chmod", "os.utime", "shutil.rmtree"}

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in events and args and isinstance(args[0], (str, bytes, os.PathLike)):
            flags = args[2] if event == "open" and len(args) > 2 and isinstance(args[2], int) else 0
            # the kernel refuses O_NOFOLLOW opens of a symbolic link: record them as such
            opened.append(("nofollow:" if flags & getattr(os, "O_NOFOLLOW", 0) else "") + os.fsdecode(args[0]))

    def trap(name: str) -> Callable[..., Any]:
        def boom(*args: Any, **kwargs: Any) -> Any:
            trapped.append(name)
            raise Forbidden(name)
        return boom

    pickle.loads = trap("pickle.loads")  # type: ignore[assignment]
    pickle.load = trap("pickle.load")  # type: ignore[assignment]
    builtins.eval = trap("eval")  # type: ignore[assignment]
    builtins.exec = trap("exec")  # type: ignore[assignment]
    sys.addaudithook(hook)
    return opened, trapped


def _peak_rss_bytes() -> int:
    """This process's peak RSS since :func:`_reset_peak_rss` (VmHWM), else since it started.

    ``ru_maxrss`` alone is no measure: Linux keeps it across ``execve``, so a
    child of a big pytest process would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def main(sandbox: Path) -> None:
    _reset_peak_rss()
    # Warm every lazy import before the hook and the traps go in.
    warm = sandbox / "warm"
    warm.mkdir()
    build(warm / "w.tdb")
    with tensordb.open(warm / "w.tdb") as db:
        db.check()
        db.gc()
    make_history(warm / "w.tdb")
    read_history(warm / "w.tdb")
    # Showing a warning reads the caller's source line (linecache): not the victim's doing. The warning
    # a damaged pack folder gives at open is tested in test_database.py.
    warnings.simplefilter("ignore", tensordb.MissingPacksWarning)
    # Edits are the attacker's doing (made beforehand); only the victim's actions are watched.
    paths = {case.name: prepare(case, sandbox) for case in CASES}
    opened, trapped = _watch(sandbox)
    for case in CASES:
        start = len(opened)
        result = run(case, paths[case.name])
        result["opened"] = sorted(set(opened[start:]))
        print(json.dumps(result), flush=True)
    print(json.dumps({"summary": True, "trapped": trapped, "peak_rss_bytes": _peak_rss_bytes()}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
