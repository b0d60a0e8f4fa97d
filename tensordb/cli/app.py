"""The ``tensordb`` command group: global options, Ctrl-C and warnings, and the commands of every theme."""

from __future__ import annotations

import warnings
from typing import Any

import click

import tensordb

from . import commands_files, commands_maint, commands_read, commands_versions, commands_write
from .output import one_line


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


for _command in (*commands_read.COMMANDS, *commands_files.COMMANDS, *commands_write.COMMANDS,
                 *commands_maint.COMMANDS, *commands_versions.COMMANDS):
    main.add_command(_command)
