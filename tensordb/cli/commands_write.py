"""Commands that change a database: rm, mv, cp (by reference), and demo, which builds one."""

from __future__ import annotations

from typing import Any

import click

import tensordb

from .common import F, bad_input, errors_as_messages, lookup
from .output import console


@click.command()
@click.argument("path", default="tensordb-demo.tdb", type=click.Path(dir_okay=False))
@click.option("--sims", default=20, show_default=True, help="Number of simulations.")
@click.option("--steps", default=10, show_default=True, help="Time steps per simulation.")
@click.option("--force", is_flag=True, help="Replace PATH (and its packs folder) if it exists.")
@errors_as_messages
def demo(path: str, sims: int, steps: int, force: bool) -> None:
    """Build a demo database of synthetic CFD mesh samples and show what tensordb does.

    PATH (default: tensordb-demo.tdb) must not exist, unless --force is given:
    then the database there is replaced.

    \b
    Example:
        tensordb demo /tmp/demo.tdb
        tensordb demo /tmp/demo.tdb --sims 2 --steps 3 --force
    """
    from tensordb.demo import run_demo  # numpy: only the demo needs it

    run_demo(path, sims, steps, say=console().print, force=force)



@click.command()
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.argument("addresses", metavar="TREE[/POINTER]...", nargs=-1, required=True)
@errors_as_messages
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
            lookup(database, name, pointer)  # every address must exist before anything is removed
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
    return name, [(0, int(t)) if t.isascii() and t.isdigit() else (1, t) for t in pointer.split("/")[1:]]


def _source_and_destination(fn: F) -> F:
    """DB SRC DST [--force], the arguments of mv and cp."""
    for decorator in reversed((
        click.argument("db", type=click.Path(dir_okay=False, exists=True)),
        click.argument("src", metavar="SRC"),
        click.argument("dst", metavar="DST"),
        click.option("--force", is_flag=True, help="Replace DST if it exists."),
    )):
        fn = decorator(fn)
    return fn


@click.command()
@_source_and_destination
@errors_as_messages
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
        with bad_input(database.filename):  # into itself, past the end of a list, an empty tree name
            database.mv(src, dst, replace=force)
    click.echo(f"moved {src} to {dst}")


@click.command()
@_source_and_destination
@errors_as_messages
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
        with bad_input(database.filename):
            database.cp(src, dst, replace=force)
    click.echo(f"copied {src} to {dst}")


COMMANDS = (rm, mv, cp, demo)
