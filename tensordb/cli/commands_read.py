"""Commands that read: ls, tree, show, sql, stats, diff (each opens the database read-only)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

import tensordb

from .common import (
    address_of,
    at_option,
    bad_input,
    errors_as_messages,
    last_key,
    lookup,
    open_read,
    output_options,
    quiet_option,
    resolve,
    snapshot_named,
    trees_under,
    trouble_exits_2,
)
from .output import (
    MAX_TEXT,
    console,
    cut,
    emit,
    emit_mapping,
    figure,
    is_numpy_scalar,
    kind_of,
    plain,
    progress_display,
    scalar_text,
    shape_text,
)
from .slices import array_stats, parse_slice, stats_key

if TYPE_CHECKING:  # rich draws `tensordb tree` only: the other commands do not import it
    from rich.text import Text
    from rich.tree import Tree as RichTree

#: Children shown per container by ``tensordb tree`` before "… N more".
MAX_CHILDREN = 200
#: Largest array ``tensordb show`` prints whole; larger ones need --slice (--stats streams any size).
MAX_PRINT_BYTES = 256 * 2**20


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("address", metavar="[TREE[/POINTER] | PREFIX/]", required=False)
@click.option("--pattern", metavar="GLOB",
              help="Only trees (or children) whose name matches, e.g. 'sim0*/step00[0-4]' ('*' matches '/' too).")
@at_option
@output_options
@errors_as_messages
def ls(db: str, address: str | None, pattern: str | None, at: str | None, fmt: str) -> None:
    """List the trees of DB, the trees under a name prefix, or the children of a node.

    Without an address, or with a name prefix ("sim01/", or "sim01" when no
    tree has that name): one line per tree with its root kind, number of
    nodes and arrays, and logical (uncompressed) array size. With
    TREE[/POINTER]: the children of that node with their kind, arrays with
    shape and dtype, scalars with their value.

    TREE[/POINTER]: the longest prefix that names a tree is the tree, the
    rest a JSON Pointer into it (tree names may contain '/').

    \b
    Example:
        tensordb ls samples.tdb
        tensordb ls samples.tdb sim01/
        tensordb ls samples.tdb --pattern "sim0*/step00[0-4]"
        tensordb ls samples.tdb sim01/step003/data/inlet
        tensordb ls samples.tdb --format csv
        tensordb ls samples.tdb --at raw
    """
    with open_read(db, at) as database:
        prefix = _tree_prefix(database, address)
        if prefix is not None:
            _list_trees(database, prefix, pattern, fmt)
            return
        assert address is not None
        name, pointer = resolve(database, address[:-1] if address.endswith("/") else address)  # as ls dir/ does
        value = lookup(database, name, pointer)
        if isinstance(value, tensordb.DictNode):
            entries: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, tensordb.ListNode):
            entries = enumerate(value)
        else:  # a leaf lists itself, as ls does for a file
            entries = [(last_key(pointer) if pointer else name, value)]
        if pattern is not None:
            entries = [(key, child) for key, child in entries if fnmatch.fnmatchcase(str(key), pattern)]
        rows = [_describe(key, child) for key, child in entries]
        emit(("key", "kind", "items", "shape", "dtype", "value"), rows, fmt)


def _tree_prefix(database: tensordb.Database, address: str | None) -> str | None:
    """The tree-name prefix an ls address stands for, or None when it addresses a node.

    "sim01/" is a prefix when trees are named under it; "sim01" too when no
    tree or node has that address.
    """
    if address is None:
        return ""
    if address in database:
        return None
    prefix = address if address.endswith("/") else address + "/"
    if not trees_under(database, prefix):
        return None
    try:
        database.split_address(address)
    except tensordb.PathNotFoundError:
        return prefix
    return prefix if address.endswith("/") else None


def _list_trees(database: tensordb.Database, prefix: str, pattern: str | None, fmt: str) -> None:
    result = database.sql(
        "SELECT name, root_kind, n_nodes, n_arrays, logical_bytes FROM trees "
        "WHERE substr(name, 1, length(:prefix)) = :prefix AND (:pattern IS NULL OR name GLOB :pattern) ORDER BY name",
        {"prefix": prefix, "pattern": pattern},
    )
    emit(result.columns, result, fmt, sizes={"logical_bytes"})


def _describe(key: Any, value: Any) -> tuple[Any, ...]:
    """(key, kind, items, shape, dtype, value) of one child, as `ls` lists it."""
    if isinstance(value, tensordb.Node):
        return key, value.kind, len(value), None, None, None
    if isinstance(value, tensordb.Array):
        return key, "array", None, list(value.shape), str(value.dtype), None
    return key, kind_of(value), None, None, str(value.dtype) if is_numpy_scalar(value) else None, plain(value)


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("address", metavar="TREE[/POINTER]")
@click.option("--depth", type=click.IntRange(min=0), help="Show this many levels below the node (default: all).")
@at_option
@errors_as_messages
def tree(db: str, address: str, depth: int | None, at: str | None) -> None:
    """Show a tree or subtree as a tree.

    Arrays are shown with shape, dtype, logical and stored (compressed) size,
    how much of that is in chunks shared with other arrays (dedup: stored
    once), and "shared" when other nodes reference the same array; scalars
    with their value.

    TREE[/POINTER]: the longest prefix that names a tree is the tree, the
    rest a JSON Pointer into it (tree names may contain '/').

    \b
    Example:
        tensordb tree samples.tdb sample037
        tensordb tree samples.tdb sample037/data/inlet --depth 1
        tensordb tree samples.tdb sample037 --at raw
    """
    with open_read(db, at) as database:
        name, pointer = resolve(database, address)
        value = lookup(database, name, pointer)
        if isinstance(value, tensordb.Node):
            value = value.load(lazy=True)  # the structure in one query; arrays stay lazy handles
        sharing = _sharing(database, [a.array_id for a in _arrays_in(value, depth)])
        from rich.text import Text
        from rich.tree import Tree as RichTree

        root = RichTree(Text.assemble((address_of(name, pointer), "bold"), "  ", _label(value, sharing)))
        _grow(root, value, sharing, depth)
        console().print(root)


def _sharing(database: tensordb.Database, array_ids: Collection[int]) -> dict[int, tuple[int, int]]:
    """{array id: (nodes referencing it, stored bytes of its chunks that other arrays use too)}."""
    ids = tuple(sorted(set(array_ids)))
    found: dict[int, tuple[int, int]] = {}
    for start in range(0, len(ids), 500):  # SQLite caps the number of parameters
        part = ids[start:start + 500]
        marks = ",".join("?" * len(part))
        refcounts: dict[int, int] = dict(database.sql(  # nodes of the trees shown (snapshots' kept nodes aside)
            f"SELECT array_id, count(*) FROM nodes WHERE array_id IN ({marks}) GROUP BY array_id", part))
        shared: dict[int, int] = dict(database.sql(
            "SELECT r.array_id, sum(c.size) FROM chunk_ref r JOIN chunk c ON c.chunk_id = r.chunk_id "
            f"WHERE r.array_id IN ({marks}) AND EXISTS (SELECT 1 FROM chunk_ref o WHERE o.chunk_id = r.chunk_id "
            "AND o.array_id != r.array_id) GROUP BY r.array_id", part))
        found.update({i: (int(refcounts.get(i, 1)), int(shared.get(i, 0))) for i in part})
    return found


def _sharing_note(array_id: int, sharing: dict[int, tuple[int, int]]) -> str:
    """"shared" (the array is referenced by several nodes) and/or how much of it is stored once for several arrays."""
    refcount, shared_bytes = sharing.get(array_id, (1, 0))
    notes = []
    if shared_bytes:
        notes.append(f"{tensordb.human_size(shared_bytes)} in chunks shared with other arrays")
    if refcount > 1:
        notes.append("shared")
    return "  ".join(notes)


def _arrays_in(value: Any, depth: int | None) -> Iterator[tensordb.Array]:
    if isinstance(value, tensordb.Array):
        yield value
    elif depth != 0 and isinstance(value, (dict, list)):
        items = list(value.values() if isinstance(value, dict) else value)[:MAX_CHILDREN]
        for child in items:
            yield from _arrays_in(child, None if depth is None else depth - 1)


def _grow(branch: RichTree, value: Any, sharing: dict[int, tuple[int, int]], depth: int | None) -> None:
    from rich.text import Text

    if depth == 0 or not isinstance(value, (dict, list)):
        return
    items = list(value.items() if isinstance(value, dict) else enumerate(value))
    for key, child in items[:MAX_CHILDREN]:
        shown = Text(cut(str(key), MAX_TEXT), "bold") if isinstance(key, str) else Text(f"[{key}]", "bold cyan")
        twig = branch.add(Text.assemble(shown, "  ", _label(child, sharing)))
        _grow(twig, child, sharing, None if depth is None else depth - 1)
    if len(items) > MAX_CHILDREN:
        branch.add(Text(f"… {len(items) - MAX_CHILDREN} more", "dim"))


def _label(value: Any, sharing: dict[int, tuple[int, int]]) -> Text:
    from rich.text import Text

    if isinstance(value, (dict, list)):
        return Text(f"{kind_of(value)} ({len(value)} item{'' if len(value) == 1 else 's'})", "dim")
    if isinstance(value, tensordb.Array):
        text = Text.assemble(
            ("array ", "dim"), (f"{shape_text(value.shape)} {value.dtype}", "green"),
            (f"  {tensordb.human_size(value.nbytes)}, stored {tensordb.human_size(value.stored_nbytes)}", "dim"),
        )
        note = _sharing_note(value.array_id, sharing)
        if note:
            text.append("  " + note, "magenta")
        return text
    if is_numpy_scalar(value):
        return Text.assemble((cut(str(value), MAX_TEXT), "yellow"), (f"  {value.dtype}", "dim"))
    return Text(cut(scalar_text(value), MAX_TEXT), "yellow")


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("address", metavar="TREE/POINTER")
@click.option("--slice", "slice_text", metavar="TEXT",
              help='Part of an array, numpy style: "0:10,:", "5", "::2,...,-1", "[0,5,7],:" (a list of indices).')
@click.option("--stats", is_flag=True, help="Print min/max/mean/std of the selection (read chunk by chunk).")
@at_option
@quiet_option
@errors_as_messages
def show(db: str, address: str, slice_text: str | None, stats: bool, at: str | None, quiet: bool) -> None:
    """Print an array (or a slice of it), a scalar, or a subtree as JSON.

    --slice takes ints, a:b:c slices (any part may be empty, negatives
    count from the end), "..." and lists of ints in brackets (orthogonal
    indexing on that axis: "[0,5,7]" picks rows 0, 5 and 7), separated by
    commas. In a subtree, arrays
    are shown as {"array": {"shape": [...], "dtype": "..."}}.

    TREE/POINTER: the longest prefix that names a tree is the tree, the
    rest a JSON Pointer into it (tree names may contain '/').

    \b
    Example:
        tensordb show samples.tdb sample037/data/inlet/points --slice "0:10,:"
        tensordb show samples.tdb sample037/data/internal/point_data/p --stats
        tensordb show samples.tdb sample037/time
        tensordb show samples.tdb sample037/data/inlet
    """
    with open_read(db, at) as database:
        name, pointer = resolve(database, address)
        value = lookup(database, name, pointer)
        if not isinstance(value, tensordb.Array):
            if slice_text is not None or stats:
                option = "--slice" if slice_text is not None else "--stats"
                raise click.ClickException(
                    f"{address_of(name, pointer)}: {option} applies to arrays, this is a {kind_of(value)}")
            shown = value.load(lazy=True) if isinstance(value, tensordb.Node) else value
            click.echo(json.dumps(plain(shown), indent=2, ensure_ascii=False))
            return
        with bad_input():  # the message quotes the --slice text
            key = parse_slice(slice_text or "")
        if stats:
            with bad_input(f"{database.filename}: {name}: {pointer or '(root)'}"):  # as the engine names it
                full = stats_key(value, key)
            with progress_display(quiet) as progress:
                figures = array_stats(value, full, progress)
            emit(("statistic", "value"), [(k, figure(v)) for k, v in figures.items()], "table")
            return
        if slice_text is None and value.nbytes > MAX_PRINT_BYTES:
            raise click.ClickException(f"{address_of(name, pointer)}: the array holds "
                                       f"{tensordb.human_size(value.nbytes)}; pass --slice to print part of it")
        import numpy as np

        with bad_input():  # out of bounds, too many indices; the message names the file, tree and path
            data = np.asarray(value[key])
        note = _sharing_note(value.array_id, _sharing(database, [value.array_id]))
        click.echo(f"{address_of(name, pointer)}{'[' + slice_text + ']' if slice_text else ''}: "
                   f"{shape_text(data.shape)} {data.dtype}{'  (' + note + ')' if note else ''}")
        click.echo(np.array2string(data, threshold=1000, max_line_width=120) if data.ndim else str(data))


@click.command()
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.argument("a", metavar="[ADDRESS_A", required=False)
@click.argument("b", metavar="ADDRESS_B]", required=False)
@click.option("--from", "old", metavar="SNAPSHOT", help="Compare the whole database as of this snapshot ...")
@click.option("--to", "new", metavar="SNAPSHOT", help="... with its state at this one (default: now).")
@output_options
@trouble_exits_2
@errors_as_messages
def diff(db: str, a: str | None, b: str | None, old: str | None, new: str | None, fmt: str) -> None:
    """Paths added (+), removed (-) and changed (~) from ADDRESS_A to ADDRESS_B, or between two states.

    With --from SNAPSHOT: every tree as of that snapshot against now (or
    against --to SNAPSHOT); each change names its tree, and a tree only one
    side has is one change. Exit 0 when they are equal, 1 when they differ,
    2 on error (as diff does). Arrays are compared by their stored content
    keys; array bytes are read only where the keys differ.

    \b
    Example:
        tensordb diff samples.tdb sim01/step000 sim01/step001
        tensordb diff samples.tdb sim01/step000/data sim02/step000/data --format json
        tensordb diff samples.tdb --from raw
        tensordb diff samples.tdb --from raw --to clean
    """
    addresses = (a, b) if a is not None and b is not None else None
    if (addresses is None) == (old is None) or (new is not None and old is None) or (old and a is not None):
        raise click.UsageError("give two addresses, or --from SNAPSHOT [--to SNAPSHOT]")
    with open_read(db) as database:
        if addresses is not None:
            differences = database.diff(*addresses)
        else:
            assert old is not None
            with bad_input("--from/--to"):
                differences = database.diff(snapshot_named(database, old),
                                            None if new is None else snapshot_named(database, new))
    if fmt == "table":
        for difference in differences:
            click.echo(str(difference))
    elif old is None:
        emit(("path", "change", "a", "b"), [(d.path, d.change, d.a, d.b) for d in differences], fmt)
    else:
        emit(("tree", "path", "change", "a", "b"), [(d.tree, d.path, d.change, d.a, d.b) for d in differences], fmt)
    if differences:
        click.get_current_context().exit(1)


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("query")
@at_option
@output_options
@errors_as_messages
def sql(db: str, query: str, at: str | None, fmt: str) -> None:
    """Run a read-only SQL query over the metadata of DB.

    The public relations are trees(name, root_kind, n_nodes, n_arrays,
    logical_bytes, created, modified), nodes(tree, path, parent_path, key,
    idx, kind, value, array_id) and arrays(array_id, dtype, shape, ndim,
    size, nbytes, stored_bytes, chunks, codec, refcount), and for the
    history snapshots(id, created, message, parent_id, tags) and
    snapshot_nodes(snapshot, tree, path, key, kind, value, array_id); see
    docs/format.md. With --at, trees, nodes and arrays answer as of that
    snapshot. Statements that would write are refused. A query that finds nothing prints
    its header and "0 rows".

    \b
    Example:
        tensordb sql samples.tdb "SELECT tree, value FROM nodes WHERE key = 'time' AND value > 50"
        tensordb sql samples.tdb "SELECT * FROM arrays ORDER BY nbytes DESC LIMIT 5" --format json
        tensordb sql samples.tdb "SELECT count(*) FROM nodes" --at raw
    """
    with open_read(db, at) as database:
        result = database.sql(query)
        if not emit(result.columns, result, fmt) and fmt == "table":
            click.echo("0 rows")


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("pattern", required=False)
@output_options
@errors_as_messages
def stats(db: str, pattern: str | None, fmt: str) -> None:
    """Counts and sizes: trees, nodes, arrays, chunks, logical vs stored bytes, dedup ratio, packs.

    With PATTERN (a GLOB over tree names, '*' matching '/' too): the trees
    that match, their logical bytes and the bytes they physically take, each
    stored chunk counted once however many of their arrays share it, and
    how much of that other trees use too.

    \b
    Example:
        tensordb stats samples.tdb
        tensordb stats samples.tdb "sim01/*"
        tensordb stats samples.tdb --format json
    """
    with open_read(db) as database:
        emit_mapping(database.stats() if pattern is None else _pattern_stats(database, pattern), fmt)


def _pattern_stats(database: tensordb.Database, pattern: str) -> dict[str, Any]:
    """What the trees matching ``pattern`` hold and physically take (public and per-connection relations only)."""
    trees, nodes, array_nodes, logical = database.sql(
        "SELECT count(*), coalesce(sum(n_nodes), 0), coalesce(sum(n_arrays), 0), coalesce(sum(logical_bytes), 0) "
        "FROM trees WHERE name GLOB ?", (pattern,)).fetchall()[0]
    if not trees:
        raise tensordb.PathNotFoundError(f"{database.filename}: no tree matches {pattern!r}")
    chunks, stored, raw, shared = database.sql(
        "SELECT count(*), coalesce(sum(stored_bytes), 0), coalesce(sum(raw_bytes), 0), "
        "coalesce(sum(CASE WHEN chunk_id IN (SELECT chunk_id FROM tree_chunks WHERE NOT tree GLOB :p) "
        "THEN stored_bytes END), 0) "
        "FROM (SELECT DISTINCT chunk_id, stored_bytes, raw_bytes FROM tree_chunks WHERE tree GLOB :p)",
        {"p": pattern}).fetchall()[0]
    return {
        "pattern": pattern, "trees": trees, "nodes": nodes, "array_nodes": array_nodes, "logical_bytes": logical,
        "chunks": chunks, "raw_chunk_bytes": raw, "stored_bytes": stored, "shared_with_other_trees_bytes": shared,
        "own_bytes": stored - shared, "ratio": logical / stored if stored else None,
    }


COMMANDS = (ls, tree, show, sql, stats, diff)
