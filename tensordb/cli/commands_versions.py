"""Commands of the history: snapshot, log, tag, restore, expire (``--at`` and ``diff --from`` are with the readers)."""

from __future__ import annotations

import click

import tensordb

from .common import bad_input, errors_as_messages, open_read, output_options, snapshot_named
from .output import emit


def _open_write(db: str) -> tensordb.Database:
    return tensordb.open(db, mode="r+")


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("-m", "--message", default="", help="What this state is (shown by tensordb log).")
@click.option("--tag", "tag_name", metavar="NAME", help="Also tag the new snapshot with NAME.")
@errors_as_messages
def snapshot(db: str, message: str, tag_name: str | None) -> None:
    """Record the state of every tree of DB (no array is copied).

    \b
    Example:
        tensordb snapshot samples.tdb -m "raw import"
        tensordb snapshot samples.tdb -m "after cleaning" --tag clean
    """
    with _open_write(db) as database, database.transaction():
        taken = database.snapshot(message)
        if tag_name is not None:
            with bad_input("--tag"):
                taken = database.tag(tag_name, taken)
    click.echo(f"snapshot {taken.id}" + (f" ({tag_name})" if tag_name else "") + f": {message}")


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@output_options
@errors_as_messages
def log(db: str, fmt: str) -> None:
    """The snapshots of DB, newest first, with their tags.

    \b
    Example:
        tensordb log samples.tdb
        tensordb log samples.tdb --format json
    """
    with open_read(db) as database:
        history = database.history()
    rows = [(s.id, s.created, ", ".join(s.tags), s.message) for s in history]
    if not emit(("id", "created", "tags", "message"), rows, fmt) and fmt == "table":
        click.echo("no snapshots (take one with: tensordb snapshot DB -m MESSAGE)")


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("name")
@click.argument("target", metavar="[SNAPSHOT]", required=False)
@click.option("--delete", is_flag=True, help="Remove the tag NAME (the snapshot stays).")
@errors_as_messages
def tag(db: str, name: str, target: str | None, delete: bool) -> None:
    """Name SNAPSHOT (an id or a tag; default: the latest) NAME, for good.

    \b
    Example:
        tensordb tag samples.tdb raw
        tensordb tag samples.tdb paper-v1 3
        tensordb tag samples.tdb raw --delete
    """
    with _open_write(db) as database:
        with bad_input("tag"):
            if delete:
                if target is not None:
                    raise click.UsageError("--delete takes the tag NAME only")
                database.untag(name)
                click.echo(f"removed tag {name}")
                return
            tagged = database.tag(name, None if target is None else snapshot_named(database, target))
    click.echo(f"tagged snapshot {tagged.id} {name}")


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("target", metavar="SNAPSHOT")
@click.option("--trees", "pattern", metavar="GLOB",
              help="Only the trees whose name matches (default: the whole database; trees created since go).")
@errors_as_messages
def restore(db: str, target: str, pattern: str | None) -> None:
    """Return DB, or the trees matching --trees, to their state at SNAPSHOT, by reference, atomically.

    \b
    Example:
        tensordb restore samples.tdb raw --trees 'sim01/*'
        tensordb restore samples.tdb 3
    """
    with _open_write(db) as database:
        with bad_input("SNAPSHOT"):
            chosen = snapshot_named(database, target)
        restored = database.restore(chosen, trees=pattern)
    shown = ", ".join(restored[:10]) + (f" and {len(restored) - 10} more" if len(restored) > 10 else "")
    click.echo(f"restored {len(restored)} tree(s) to snapshot {chosen.id}" + (f": {shown}" if restored else ""))


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--before", "target", metavar="SNAPSHOT", required=True,
              help="Forget the untagged snapshots older than this one (an id or a tag).")
@errors_as_messages
def expire(db: str, target: str) -> None:
    """Forget old untagged snapshots; tensordb gc then frees the data only they held.

    \b
    Example:
        tensordb expire samples.tdb --before clean
        tensordb gc samples.tdb
    """
    with _open_write(db) as database:
        with bad_input("--before"):
            chosen = snapshot_named(database, target)
        forgotten = database.expire(before=chosen)
    click.echo(f"forgot {forgotten} snapshot(s) older than snapshot {chosen.id}; run tensordb gc to free their data")


COMMANDS = (snapshot, log, tag, restore, expire)
