"""The ``tensordb`` command line, a thin layer over the public API.

Every command reports bad input as one line on stderr and a non-zero exit
code; ``--debug`` shows the traceback instead. Commands that only read open
the database read-only.

Nodes are addressed as ``TREE[/POINTER]``. Tree names may themselves contain
``/`` (a folder import names trees ``sim01/step003``), so the longest prefix
of the address that names an existing tree is the tree, and the rest is a
JSON Pointer inside it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.text import Text
from rich.tree import Tree as RichTree

import tensordb

from .arrays.html import human_size
from .cli_output import (
    MAX_TEXT,
    console,
    cut,
    emit,
    emit_mapping,
    figure,
    kind_of,
    one_line,
    plain,
    progress_display,
    scalar_text,
    shape_text,
    tail,
    working,
)
from .cli_slices import array_stats, parse_slice
from .demo import run_demo

F = TypeVar("F", bound=Callable[..., Any])

#: Children shown per container by ``tensordb tree`` before "… N more".
MAX_CHILDREN = 200
#: Largest array ``tensordb show`` prints whole; larger ones need --slice (--stats streams any size).
MAX_PRINT_BYTES = 256 * 2**20

#: The errors that mean bad input (not a bug): reported as one line, without a traceback.
#: ImportError: an optional extra (zarr) that is not installed; its message says what to install.
_EXPECTED = (tensordb.TensorDBError, OSError, KeyError, ValueError, TypeError, IndexError, ImportError)


def _errors_as_messages(fn: F) -> F:
    """The one error boundary: tensordb and OS errors become a one-line ClickException."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except _EXPECTED as exc:
            if ctx.find_root().params.get("debug"):
                raise
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(one_line(message)) from None

    return wrapper  # type: ignore[return-value]


class _TroubleExit2(click.ClickException):
    """An error of a command whose exit code 1 is an answer: it exits 2."""

    exit_code = 2


def _trouble_exits_2(fn: F) -> F:
    """For commands whose exit code 1 means an answer (diff: "they differ"), errors exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.UsageError:
            raise  # exits 2 already, and shows the usage
        except click.ClickException as exc:
            raise _TroubleExit2(exc.format_message()) from None

    return wrapper  # type: ignore[return-value]


def quiet_option(fn: F) -> F:
    """``--quiet``: no progress bar (there is none anyway when stderr is not a terminal)."""
    return click.option("--quiet", "-q", is_flag=True, help="Show no progress bar.")(fn)


def output_options(fn: F) -> F:
    """``--format table|csv|json``, shared by the commands that print rows."""
    return click.option(
        "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
        help="table (rich, for people), csv (RFC 4180) or json (a list of objects).",
    )(fn)


class _Commands(click.Group):
    """The command group; Ctrl-C in any command exits 130 (as shells expect) and says what it left."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: the unfinished transaction was rolled back; what the command committed "
                       "before stays", err=True)
            ctx.exit(130)


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """Warnings (a missing packs folder) as one line on stderr, without Python's file and line."""
    click.echo(f"warning: {one_line(str(message))}", err=True)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tensordb.__version__, prog_name="tensordb")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """tensordb: JSON-like trees with numpy array leaves in one SQLite file.

    Nodes are addressed as TREE[/POINTER]: a tree name, optionally followed
    by a JSON Pointer into it. Tree names may contain '/', so the longest
    prefix that names an existing tree is the tree and the rest is the
    pointer (with trees "sim01" and "sim01/step003",
    "sim01/step003/data/p" is "/data/p" in tree "sim01/step003").

    \b
    Example:
        tensordb demo
        tensordb import samples.tdb jsons/
        tensordb tree samples.tdb sim01/step003 --depth 2
    """


@main.command()
@click.argument("path", default="tensordb-demo.tdb", type=click.Path(dir_okay=False))
@click.option("--sims", default=20, show_default=True, help="Number of simulations.")
@click.option("--steps", default=10, show_default=True, help="Time steps per simulation.")
@click.option("--force", is_flag=True, help="Replace PATH (and its packs folder) if it exists.")
@_errors_as_messages
def demo(path: str, sims: int, steps: int, force: bool) -> None:
    """Build a demo database of synthetic CFD mesh samples and show what tensordb does.

    PATH (default: tensordb-demo.tdb) must not exist, unless --force is given:
    then the database there is replaced.

    \b
    Example:
        tensordb demo /tmp/demo.tdb
        tensordb demo /tmp/demo.tdb --sims 2 --steps 3 --force
    """
    run_demo(path, sims, steps, say=Console(highlight=False).print, force=force)


# -- import / export ------------------------------------------------------------------------


@main.command("import")
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("sources", metavar="SRC...", nargs=-1, required=True, type=click.Path())
@click.option("--name", help="Tree name (a single file or Zarr folder only; default: its name without "
                             ".json or .zarr).")
@click.option("--pattern", default="**/*.json", show_default=True, help="Files to import from a folder (glob).")
@click.option("--prefix", default="", help="Put this before every tree name (for example 'run2/').")
@click.option("--replace", is_flag=True, help="Replace trees that exist already.")
@click.option("--skip-existing", is_flag=True,
              help="Keep trees that exist already and import the rest (resumes an interrupted import).")
@quiet_option
@_errors_as_messages
def import_(db: str, sources: tuple[str, ...], name: str | None, pattern: str, prefix: str, replace: bool,
            skip_existing: bool, quiet: bool) -> None:
    """Import JSON+binref files or folders, or Zarr v3 hierarchies, into DB (created if missing).

    A JSON+binref file holds arrays as {"object_type": "array", "shape",
    "dtype", "data": {"buffer", "encoding": "base64" | "binref"}}, binrefs
    being "FILE.bin:OFFSET" next to the JSON file. A file is checked
    completely before anything is written, and imported in one transaction.

    Files in a folder become trees named by their path relative to the folder
    without ".json" (sim01/step003.json -> "sim01/step003"). A folder import
    reports every bad file on stderr, imports the good ones, and exits 1 if
    any file failed.

    A folder holding a zarr.json is a Zarr v3 hierarchy: it becomes one tree
    named like the folder without ".zarr" (needs the zarr extra; see
    docs/zarr.md for the mapping).

    Nothing is replaced silently: a tree name that exists already, or that two
    sources would both produce, stops the import before anything is written,
    unless --replace or --skip-existing says what to do. After Ctrl-C, the
    files imported so far stay; run the same command with --skip-existing to
    import the rest.

    \b
    Example:
        tensordb import samples.tdb runs/                # every **/*.json below runs/
        tensordb import samples.tdb s037.json --name sample037
        tensordb import samples.tdb runs/ --pattern "sim0*/*.json" --skip-existing
        tensordb import samples.tdb sample037.zarr       # a Zarr v3 hierarchy
    """
    from .io.jsonbin import refuse_clashes, refuse_existing

    paths = [Path(src) for src in sources]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    if name is not None and (len(paths) != 1 or (paths[0].is_dir() and not _is_zarr(paths[0]))):
        raise click.UsageError("--name applies to a single file or Zarr folder, not to folders or several files")
    if replace and skip_existing:
        raise click.UsageError("--replace and --skip-existing exclude each other")
    single = len(paths) == 1 and (not paths[0].is_dir() or _is_zarr(paths[0]))
    plan = _import_plan(paths, pattern, name, prefix)
    refuse_clashes(db, [(str(p), n) for p, n in plan])  # before the database is opened (or created)
    with tensordb.open(db) as database:
        keep = refuse_existing(database, [(str(p), n) for p, n in plan], replace=replace, skip_existing=skip_existing)
        todo = [(p, n) for p, n in plan if n not in keep]
        if single and not keep:  # one file or Zarr folder: its error is the command's
            with progress_display(quiet) as progress, _interrupted(database, db, todo, replace, lambda: 0):
                _import_one(database, *todo[0], replace, progress)
            click.echo(f"imported {todo[0][1]!r} into {db}")
            return
        imported, failed = _import_many(database, db, todo, replace, quiet)
    skipped = f", kept {len(keep)} existing tree(s)" if keep else ""
    click.echo(f"imported {imported} of {imported + failed} file(s) into {db}{skipped}")
    if failed:
        raise click.ClickException(f"{failed} of {imported + failed} file(s) failed to import (see above)")


def _import_plan(paths: Sequence[Path], pattern: str, name: str | None, prefix: str) -> list[tuple[Path, str]]:
    """(source, tree name) of everything an import would write, folders expanded."""
    from .io.jsonbin import folder_files

    plan: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir() and not _is_zarr(path):
            plan.extend(folder_files(path, pattern, prefix))
        else:
            plan.append((path, prefix + (name or _default_name(path))))
    return plan


def _is_zarr(path: Path) -> bool:
    """Whether ``path`` is the root folder of a Zarr v3 hierarchy."""
    return path.is_dir() and (path / "zarr.json").is_file()


def _default_name(path: Path) -> str:
    """A file's or Zarr folder's name without ``.json`` / ``.zarr``."""
    base = path.resolve().name if path.is_dir() else path.name
    for suffix in (".json", ".zarr"):
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _import_one(database: tensordb.Database, path: Path, name: str, replace: bool, progress: Progress) -> None:
    """Import one JSON+binref file or one Zarr v3 folder, with a bar over its array bytes."""
    if not _is_zarr(path):
        from .io.jsonbin import import_ as import_json

        task = progress.add_task(tail(str(path)), total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        import_json(database, name, path, replace=replace, progress=advance)
        progress.remove_task(task)
        return
    from .interop.zarr import import_ as import_zarr

    import_zarr(database, name, str(path), replace=replace)


def _import_many(database: tensordb.Database, db: str, todo: Sequence[tuple[Path, str]], replace: bool,
                 quiet: bool) -> tuple[int, int]:
    """Import files one transaction each; report each bad file on stderr. Returns (imported, failed) counts."""
    imported = failed = 0
    with progress_display(quiet) as progress, _interrupted(database, db, todo, replace, lambda: imported):
        files = progress.add_task("files", total=len(todo))
        for path, name in todo:
            try:
                _import_one(database, path, name, replace, progress)
                imported += 1
            except _EXPECTED as exc:
                failed += 1
                _report_failure(str(path), str(exc))
            progress.advance(files)
    return imported, failed


@contextlib.contextmanager
def _interrupted(database: tensordb.Database, db: str, todo: Sequence[tuple[Path, str]], replace: bool,
                 counted: Callable[[], int]) -> Iterator[None]:
    """Ctrl-C: say what was committed (whole files only) and how to resume; exit 130 as shells expect."""
    try:
        yield
    except KeyboardInterrupt:
        # The trees are the truth (Ctrl-C may land between a commit and the count); replaced trees existed before.
        done = counted() if replace else sum(name in database for _, name in todo)
        click.echo(f"\ninterrupted: {done} of {len(todo)} file(s) were imported into {db} and stay; the file being "
                   "imported was rolled back. Run the same command with --skip-existing to import the rest.",
                   err=True)
        sys.exit(130)


def _report_failure(file: str, message: str) -> None:
    """One line on stderr naming the file (jsonbin's messages start with it already)."""
    message = one_line(message)
    click.echo(f"failed: {message if message.startswith(file) else f'{file}: {message}'}", err=True)


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("addresses", metavar="ADDRESS...", nargs=-1)
@click.argument("out", metavar="OUT")
@click.option("--all", "everything", is_flag=True, help="Export every tree of DB into the folder OUT.")
@click.option("--format", "fmt", type=click.Choice(["json", "zarr"]),
              help="json (JSON+binref) or zarr (a Zarr v3 folder). Default: zarr if OUT ends with .zarr, else json.")
@click.option("--inline-below", default=1024, show_default=True, type=click.IntRange(min=0),
              help="json: arrays smaller than this many bytes are written inline as base64, larger ones to "
                   "OUT's .bin.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@quiet_option
@_errors_as_messages
def export(db: str, addresses: tuple[str, ...], out: str, everything: bool, fmt: str | None, inline_below: int,
           force: bool, quiet: bool) -> None:
    """Export trees or subtrees to JSON+binref files, or one to a Zarr v3 folder.

    One ADDRESS (TREE[/POINTER]) and a file OUT.json: small arrays are written
    inline (base64), larger ones into one .bin file next to OUT.json.

    Into a folder (OUT is an existing folder or ends with '/'; it is created
    if its parent exists): every ADDRESS becomes OUT/ADDRESS.json (and .bin),
    the inverse of a folder import: tree "sim01/step003" becomes
    OUT/sim01/step003.json. An ADDRESS ending with '/' is a name prefix and
    stands for every tree under it; --all exports every tree.

    Existing files are not overwritten without --force; every output is
    checked before the first is written, and a file appears only once complete.

    Zarr v3 (needs the zarr extra; one ADDRESS): dicts and lists of arrays
    become groups, arrays keep their chunks, other values become attributes
    (see docs/zarr.md). OUT must not exist.

    \b
    Example:
        tensordb export samples.tdb sample037 sample037.json
        tensordb export samples.tdb sim01/step003/data out.json --inline-below 0
        tensordb export samples.tdb sim01/ sim02/step000 out/      # into a folder
        tensordb export samples.tdb --all backup/
        tensordb export samples.tdb sample037 sample037.zarr --format zarr
    """
    if everything and addresses:
        raise click.UsageError("give ADDRESS... or --all, not both")
    if not everything and not addresses:
        raise click.UsageError("give at least one ADDRESS (or --all for every tree)")
    zarr_name = out.rstrip("/\\").lower().endswith(".zarr")
    into_folder = everything or len(addresses) > 1 or any(a.endswith("/") for a in addresses) or (
        fmt != "zarr" and not zarr_name and (out.endswith(("/", os.sep)) or Path(out).is_dir()))
    if fmt is None:
        fmt = "zarr" if zarr_name and not into_folder else "json"
    if fmt == "zarr" and into_folder:
        raise click.UsageError("--format zarr exports one ADDRESS to one OUT.zarr folder")
    with _open_read(db) as database:
        if into_folder:
            _export_into_folder(database, list(database) if everything else _expand(database, addresses), out,
                                inline_below, force, quiet)
            return
        name, pointer = _resolve(database, addresses[0])
        value = _lookup(database, name, pointer)
        if fmt == "zarr":
            if force:
                raise click.UsageError("--force does not apply to Zarr export: OUT must not exist")
            with working(quiet, f"exporting {_address(name, pointer)}"):
                _export_zarr(value, Path(out))
        else:
            from .io.jsonbin import export as export_json

            with working(quiet, f"exporting {_address(name, pointer)}"):
                export_json(value, out, inline_below=inline_below, force=force)
    click.echo(f"exported {_address(name, pointer)} to {out}")


def _expand(database: tensordb.Database, addresses: Sequence[str]) -> list[str]:
    """Addresses with each name prefix ("sim01/") replaced by the trees under it."""
    found: list[str] = []
    for address in addresses:
        if address.endswith("/") and address not in database:
            under = _trees_under(database, address)
            if not under:
                raise tensordb.PathNotFoundError(f"{database.filename}: no tree under {address!r}")
            found.extend(under)
        else:
            _resolve(database, address)  # names a tree or a node: checked before anything is written
            found.append(address)
    return found


def _trees_under(database: tensordb.Database, prefix: str) -> list[str]:
    """The names of the trees that start with ``prefix``, sorted."""
    rows = database.sql("SELECT name FROM trees WHERE substr(name, 1, length(?)) = ? ORDER BY name", (prefix, prefix))
    return [name for (name,) in rows]


def _export_into_folder(database: tensordb.Database, addresses: list[str], out: str, inline_below: int,
                        force: bool, quiet: bool) -> None:
    from .io.jsonbin import export_folder

    folder = Path(out)
    created = not folder.exists()
    if created:
        if not folder.resolve().parent.is_dir():
            raise FileNotFoundError(f"{out}: its folder {folder.resolve().parent} does not exist")
        folder.mkdir()
    elif not folder.is_dir():
        raise NotADirectoryError(f"{out}: not a folder (several addresses are exported into a folder)")
    done = 0
    try:
        with progress_display(quiet) as progress:
            task = progress.add_task(f"exporting into {tail(out, 40)}", total=len(addresses))

            def advance(count: int, total: int, path: str) -> None:
                nonlocal done
                done = count
                progress.update(task, completed=count, description=tail(path))

            written = export_folder(database, addresses, folder, inline_below, force=force, progress=advance)
    except BaseException as exc:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # nothing was written: leave nothing behind
        if isinstance(exc, KeyboardInterrupt):
            click.echo(f"\ninterrupted: {done} of {len(addresses)} tree(s) were exported into {out} and stay; the "
                       "file being written was removed. Run the same command with --force to export them all.",
                       err=True)
            sys.exit(130)
        raise
    click.echo(f"exported {len(written)} tree(s) into {out}")


def _export_zarr(value: Any, out: Path) -> None:
    """Write a Zarr v3 folder under a temporary name beside ``out``, then rename it: no half-written OUT."""
    from .interop.zarr import export as export_zarr

    if out.exists():
        raise FileExistsError(f"{out}: already exists; remove it or choose another name")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{out}: folder {parent} does not exist")
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes a private folder; exports are ordinary folders
        export_zarr(value, tmp)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- looking: ls, tree, show ---------------------------------------------------------------


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("address", metavar="[TREE[/POINTER] | PREFIX/]", required=False)
@click.option("--pattern", metavar="GLOB",
              help="Only trees (or children) whose name matches, e.g. 'sim0*/step00[0-4]' ('*' matches '/' too).")
@output_options
@_errors_as_messages
def ls(db: str, address: str | None, pattern: str | None, fmt: str) -> None:
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
    """
    with _open_read(db) as database:
        prefix = _tree_prefix(database, address)
        if prefix is not None:
            _list_trees(database, prefix, pattern, fmt)
            return
        assert address is not None
        name, pointer = _resolve(database, address[:-1] if address.endswith("/") else address)  # as ls dir/ does
        value = _lookup(database, name, pointer)
        if isinstance(value, tensordb.DictNode):
            entries: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, tensordb.ListNode):
            entries = enumerate(value)
        else:  # a leaf lists itself, as ls does for a file
            entries = [(_last_key(pointer) if pointer else name, value)]
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
    if not _trees_under(database, prefix):
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
    return key, kind_of(value), None, None, str(value.dtype) if isinstance(value, np.generic) else None, plain(value)


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("address", metavar="TREE[/POINTER]")
@click.option("--depth", type=click.IntRange(min=0), help="Show this many levels below the node (default: all).")
@_errors_as_messages
def tree(db: str, address: str, depth: int | None) -> None:
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
    """
    with _open_read(db) as database:
        name, pointer = _resolve(database, address)
        value = _lookup(database, name, pointer)
        if isinstance(value, tensordb.Node):
            value = value.load(lazy=True)  # the structure in one query; arrays stay lazy handles
        sharing = _sharing(database, [a.array_id for a in _arrays_in(value, depth)])
        root = RichTree(Text.assemble((_address(name, pointer), "bold"), "  ", _label(value, sharing)))
        _grow(root, value, sharing, depth)
        console().print(root)


def _sharing(database: tensordb.Database, array_ids: Collection[int]) -> dict[int, tuple[int, int]]:
    """{array id: (nodes referencing it, stored bytes of its chunks that other arrays use too)}."""
    ids = tuple(sorted(set(array_ids)))
    found: dict[int, tuple[int, int]] = {}
    for start in range(0, len(ids), 500):  # SQLite caps the number of parameters
        part = ids[start:start + 500]
        marks = ",".join("?" * len(part))
        refcounts: dict[int, int] = dict(
            database.sql(f"SELECT array_id, refcount FROM arrays WHERE array_id IN ({marks})", part))
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
        notes.append(f"{human_size(shared_bytes)} in chunks shared with other arrays")
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
    if isinstance(value, (dict, list)):
        return Text(f"{kind_of(value)} ({len(value)} item{'' if len(value) == 1 else 's'})", "dim")
    if isinstance(value, tensordb.Array):
        text = Text.assemble(
            ("array ", "dim"), (f"{shape_text(value.shape)} {value.dtype}", "green"),
            (f"  {human_size(value.nbytes)}, stored {human_size(value.stored_nbytes)}", "dim"),
        )
        note = _sharing_note(value.array_id, sharing)
        if note:
            text.append("  " + note, "magenta")
        return text
    if isinstance(value, np.generic):
        return Text.assemble((cut(str(value), MAX_TEXT), "yellow"), (f"  {value.dtype}", "dim"))
    return Text(cut(scalar_text(value), MAX_TEXT), "yellow")


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("address", metavar="TREE/POINTER")
@click.option("--slice", "slice_text", metavar="TEXT",
              help='Part of an array, numpy style: "0:10,:", "5", "::2,...,-1", "[0,5,7],:" (a list of indices).')
@click.option("--stats", is_flag=True, help="Print min/max/mean/std of the selection (read chunk by chunk).")
@quiet_option
@_errors_as_messages
def show(db: str, address: str, slice_text: str | None, stats: bool, quiet: bool) -> None:
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
    with _open_read(db) as database:
        name, pointer = _resolve(database, address)
        value = _lookup(database, name, pointer)
        if not isinstance(value, tensordb.Array):
            if slice_text is not None or stats:
                option = "--slice" if slice_text is not None else "--stats"
                raise ValueError(f"{_address(name, pointer)}: {option} applies to arrays, this is a {kind_of(value)}")
            shown = value.load(lazy=True) if isinstance(value, tensordb.Node) else value
            click.echo(json.dumps(plain(shown), indent=2, ensure_ascii=False))
            return
        key = parse_slice(slice_text or "")
        if stats:
            with progress_display(quiet) as progress:
                figures = array_stats(value, key, progress)
            emit(("statistic", "value"), [(k, figure(v)) for k, v in figures.items()], "table")
            return
        if slice_text is None and value.nbytes > MAX_PRINT_BYTES:
            raise ValueError(f"{_address(name, pointer)}: the array holds {human_size(value.nbytes)}; "
                             "pass --slice to print part of it")
        data = np.asarray(value[key])
        note = _sharing_note(value.array_id, _sharing(database, [value.array_id]))
        click.echo(f"{_address(name, pointer)}{'[' + slice_text + ']' if slice_text else ''}: "
                   f"{shape_text(data.shape)} {data.dtype}{'  (' + note + ')' if note else ''}")
        click.echo(np.array2string(data, threshold=1000, max_line_width=120) if data.ndim else str(data))


# -- changing: rm, mv, cp; comparing: diff ---------------------------------------------------


@main.command()
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.argument("addresses", metavar="TREE[/POINTER]...", nargs=-1, required=True)
@_errors_as_messages
def rm(db: str, addresses: tuple[str, ...]) -> None:
    """Remove trees or nodes, all in one transaction.

    Every address is checked before anything is removed. The space their
    arrays held is reclaimed by gc once nothing else references them.

    \b
    Example:
        tensordb rm samples.tdb sim01/step003
        tensordb rm samples.tdb sample037/data/inlet sample037/reviewed
    """
    with tensordb.open(db, mode="r+") as database, database.transaction():
        targets = sorted({database.split_address(a) for a in addresses}, key=_deepest_first, reverse=True)
        for name, pointer in targets:
            _lookup(database, name, pointer)  # every address must exist before anything is removed
        whole = {name for name, pointer in targets if not pointer}
        for name, pointer in targets:
            if not pointer:
                del database[name]
            elif name not in whole:
                del database[name][pointer]
    click.echo(f"removed {len(targets)} item(s) from {db}")


def _deepest_first(target: tuple[str, str]) -> tuple[Any, ...]:
    """Sort key; reversed, later list items and deeper nodes come first, so no removal shifts another's path."""
    name, pointer = target
    return name, [(0, int(t)) if t.isdigit() else (1, t) for t in pointer.split("/")[1:]]


@main.command()
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
@_errors_as_messages
def mv(db: str, src: str, dst: str, force: bool) -> None:
    """Rename a tree, or move a node within a tree or across trees.

    SRC and DST are addresses TREE[/POINTER]; a DST no prefix of which names
    a tree is a new tree. Moves touch metadata only: across trees the value
    moves by reference and no array bytes are written.

    \b
    Example:
        tensordb mv samples.tdb sample037 archive/sample037          # rename a tree
        tensordb mv samples.tdb sample037/data/inlet sample037/data/inflow
        tensordb mv samples.tdb sample037/data/inlet sample038/data/inlet
    """
    with tensordb.open(db, mode="r+") as database:
        database.mv(src, dst, replace=force)
    click.echo(f"moved {src} to {dst}")


@main.command()
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
@_errors_as_messages
def cp(db: str, src: str, dst: str, force: bool) -> None:
    """Copy a tree or node by reference: no array bytes are written.

    Later writes to either copy never show in the other (copy-on-write).
    Addresses read as for mv.

    \b
    Example:
        tensordb cp samples.tdb sample037 sample037-backup
        tensordb cp samples.tdb sample037/data/wall sample038/data/wall --force
    """
    with tensordb.open(db, mode="r+") as database:
        database.cp(src, dst, replace=force)
    click.echo(f"copied {src} to {dst}")


@main.command()
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.argument("a", metavar="ADDRESS_A")
@click.argument("b", metavar="ADDRESS_B")
@output_options
@_trouble_exits_2
@_errors_as_messages
def diff(db: str, a: str, b: str, fmt: str) -> None:
    """Paths added (+), removed (-) and changed (~) from ADDRESS_A to ADDRESS_B.

    Exit 0 when they are equal, 1 when they differ, 2 on error (as diff
    does). Arrays are compared by their stored content keys; array bytes are
    read only where the keys differ.

    \b
    Example:
        tensordb diff samples.tdb sim01/step000 sim01/step001
        tensordb diff samples.tdb sim01/step000/data sim02/step000/data --format json
    """
    with _open_read(db) as database:
        differences = database.diff(a, b)
    if fmt == "table":
        for difference in differences:
            click.echo(str(difference))
    else:
        emit(("path", "change", "a", "b"), [(d.path, d.change, d.a, d.b) for d in differences], fmt)
    if differences:
        click.get_current_context().exit(1)




# -- sql --------------------------------------------------------------------------------------


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("query")
@output_options
@_errors_as_messages
def sql(db: str, query: str, fmt: str) -> None:
    """Run a read-only SQL query over the metadata of DB.

    The public relations are trees(name, root_kind, n_nodes, n_arrays,
    logical_bytes, created, modified), nodes(tree, path, parent_path, key,
    idx, kind, value, array_id) and arrays(array_id, dtype, shape, ndim,
    size, nbytes, stored_bytes, chunks, codec, refcount); see docs/format.md.
    Statements that would write are refused. A query that finds nothing prints
    its header and "0 rows".

    \b
    Example:
        tensordb sql samples.tdb "SELECT tree, value FROM nodes WHERE key = 'time' AND value > 50"
        tensordb sql samples.tdb "SELECT * FROM arrays ORDER BY nbytes DESC LIMIT 5" --format json
    """
    with _open_read(db) as database:
        result = database.sql(query)
        if not emit(result.columns, result, fmt) and fmt == "table":
            click.echo("0 rows")


# -- maintenance ----------------------------------------------------------------------------


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("pattern", required=False)
@output_options
@_errors_as_messages
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
    with _open_read(db) as database:
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


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Only say what would be removed (the database is opened read-only).")
@output_options
@quiet_option
@_errors_as_messages
def gc(db: str, dry_run: bool, fmt: str, quiet: bool) -> None:
    """Delete unreferenced arrays and chunks and compact pack files.

    \b
    Example:
        tensordb gc samples.tdb --dry-run
        tensordb gc samples.tdb
    """
    with tensordb.open(db, mode="r" if dry_run else "r+") as database:
        with working(quiet, f"gc {db}"):
            result = database.gc(dry_run=dry_run)
    if fmt == "table" and dry_run:
        click.echo("dry run: nothing was changed; gc would remove:")
    emit_mapping(result, fmt)


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@output_options
@quiet_option
@_errors_as_messages
def check(db: str, fmt: str, quiet: bool) -> None:
    """Verify structure, reference counts and every chunk; exit 1 if anything is wrong.

    Warnings (bytes that gc can reclaim) do not fail the check.

    \b
    Example:
        tensordb check samples.tdb
        tensordb check samples.tdb --format json
    """
    with _open_read(db) as database, working(quiet, f"checking {db}"):
        report = database.check()
    if fmt == "table":
        click.echo(str(report))
    elif fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        columns = ("severity", "code", "message", "tree", "path", "array_id", "chunk_id")
        emit(columns, [tuple(getattr(f, c) for c in columns) for f in report.findings], fmt)
    if not report.ok:
        raise click.ClickException(f"{db}: check found {len(report.errors)} error(s)")


@main.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@quiet_option
@_errors_as_messages
def bundle(db: str, out: str, quiet: bool) -> None:
    """Write a self-contained copy of DB (every chunk inline, no pack folder) to OUT.

    \b
    Example:
        tensordb bundle samples.tdb share.tdb
    """
    with _open_read(db) as database, working(quiet, f"bundling {db} into {out}"):
        database.bundle(out)
    click.echo(f"bundled {db} into {out} ({human_size(Path(out).stat().st_size)})")


# -- helpers ----------------------------------------------------------------------------------


def _open_read(path: str) -> tensordb.Database:
    return tensordb.open(path, mode="r")


def _resolve(database: tensordb.Database, address: str) -> tuple[str, str]:
    """(tree name, JSON Pointer): the longest prefix of ``address`` that names a tree, and the rest."""
    return database.split_address(address)


def _lookup(database: tensordb.Database, name: str, pointer: str) -> Any:
    """What the address designates: a Node, an Array or a scalar."""
    tree = database[name]
    return tree.root if pointer == "" else tree[pointer]


def _address(name: str, pointer: str) -> str:
    return name + pointer


def _last_key(pointer: str) -> str:
    return pointer.rpartition("/")[2].replace("~1", "/").replace("~0", "~")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
