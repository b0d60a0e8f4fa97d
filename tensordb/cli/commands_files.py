"""Moving trees between a database and files: import and export (JSON+binref files, Zarr v3 folders)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import tensordb

if TYPE_CHECKING:
    from rich.progress import Progress

from .common import (
    EXPECTED,
    address_of,
    at_option,
    bad_input,
    errors_as_messages,
    lookup,
    open_read,
    quiet_option,
    resolve,
    trees_under,
)
from .output import one_line, progress_display, tail, working


@click.command("import")
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
@errors_as_messages
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
    from tensordb.io.jsonbin import refuse_clashes, refuse_existing

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
    from tensordb.io.jsonbin import folder_files

    plan: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir() and not _is_zarr(path):
            try:
                plan.extend(folder_files(path, pattern, prefix))
            except (ValueError, NotImplementedError) as exc:  # what pathlib's glob refuses: "", "**a", "/abs"
                raise click.BadParameter(f"{pattern!r}: {exc}", param_hint="'--pattern'") from exc
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
        from tensordb.io.jsonbin import import_

        task = progress.add_task(tail(str(path)), total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        import_(database, name, path, replace=replace, progress=advance)
        progress.remove_task(task)
        return
    from tensordb.interop.zarr import import_ as import_zarr

    with _zarr_extra():
        import_zarr(database, name, str(path), replace=replace)


@contextlib.contextmanager
def _zarr_extra() -> Iterator[None]:
    """Without the zarr extra, tensordb.interop.zarr raises ImportError saying what to install: one line."""
    try:
        yield
    except ImportError as exc:
        raise click.ClickException(one_line(str(exc))) from exc


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
            except (*EXPECTED, click.ClickException) as exc:
                failed += 1
                _report_failure(str(path), exc.format_message() if isinstance(exc, click.ClickException) else str(exc))
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


@click.command()
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
@at_option
@quiet_option
@errors_as_messages
def export(db: str, addresses: tuple[str, ...], out: str, everything: bool, fmt: str | None, inline_below: int,
           force: bool, at: str | None, quiet: bool) -> None:
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
        tensordb export samples.tdb --all raw-backup/ --at raw
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
    with open_read(db, at) as database:
        if into_folder:
            _export_into_folder(database, list(database) if everything else _expand(database, addresses), out,
                                inline_below, force, quiet)
            return
        name, pointer = resolve(database, addresses[0])
        value = lookup(database, name, pointer)
        if fmt == "zarr":
            if force:
                raise click.UsageError("--force does not apply to Zarr export: OUT must not exist")
            with working(quiet, f"exporting {address_of(name, pointer)}"):
                _export_zarr(value, Path(out))
        else:
            from tensordb.io.jsonbin import export

            with working(quiet, f"exporting {address_of(name, pointer)}"):
                with bad_input():  # a value or name the format cannot hold; the message names the file
                    export(value, out, inline_below=inline_below, force=force)
    click.echo(f"exported {address_of(name, pointer)} to {out}")


def _expand(database: tensordb.Database, addresses: Sequence[str]) -> list[str]:
    """Addresses with each name prefix ("sim01/") replaced by the trees under it."""
    found: list[str] = []
    for address in addresses:
        if address.endswith("/") and address not in database:
            under = trees_under(database, address)
            if not under:
                raise tensordb.PathNotFoundError(f"{database.filename}: no tree under {address!r}")
            found.extend(under)
        else:
            resolve(database, address)  # names a tree or a node: checked before anything is written
            found.append(address)
    return found



def _export_into_folder(database: tensordb.Database, addresses: list[str], out: str, inline_below: int,
                        force: bool, quiet: bool) -> None:
    from tensordb.io.jsonbin import export_folder

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

            with bad_input():  # a tree name that cannot become a file path, a value the format cannot hold
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
    from tensordb.interop.zarr import export as export_zarr

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
        with _zarr_extra():
            export_zarr(value, tmp)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


COMMANDS = (import_, export)
