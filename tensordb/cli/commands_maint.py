"""Maintenance commands: gc, check, bundle."""

from __future__ import annotations

import json
from pathlib import Path

import click

import tensordb

from .common import errors_as_messages, open_read, output_options, quiet_option
from .output import emit, emit_mapping, working


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Only say what would be removed (the database is opened read-only).")
@output_options
@quiet_option
@errors_as_messages
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


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@output_options
@quiet_option
@errors_as_messages
def check(db: str, fmt: str, quiet: bool) -> None:
    """Verify structure, reference counts and every chunk; exit 1 if anything is wrong.

    Warnings (bytes that gc can reclaim) do not fail the check.

    \b
    Example:
        tensordb check samples.tdb
        tensordb check samples.tdb --format json
    """
    with open_read(db) as database, working(quiet, f"checking {db}"):
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


@click.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--history", is_flag=True, help="Carry every snapshot and tag too (default: the current state only).")
@quiet_option
@errors_as_messages
def bundle(db: str, out: str, history: bool, quiet: bool) -> None:
    """Write a self-contained copy of DB (every chunk inline, no pack folder) to OUT.

    \b
    Example:
        tensordb bundle samples.tdb share.tdb
        tensordb bundle samples.tdb archive.tdb --history
    """
    with open_read(db) as database, working(quiet, f"bundling {db} into {out}"):
        database.bundle(out, history=history)
    click.echo(f"bundled {db} into {out} ({tensordb.human_size(Path(out).stat().st_size)})")


COMMANDS = (gc, check, bundle)
