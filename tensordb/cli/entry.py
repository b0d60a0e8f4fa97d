"""The ``tensordb`` command's entry point.

``tensordb --version`` is answered before the commands, numpy and the engine
are imported, so that it costs little more than the interpreter's start-up;
everything else is handed to the command group, :func:`tensordb.cli.app.main`.
"""

from __future__ import annotations

import sys

from tensordb import __version__


def main() -> None:
    """Run the command line (the ``tensordb`` script)."""
    if sys.argv[1:] == ["--version"]:
        print(f"tensordb, version {__version__}")  # as click's version option prints it
        return
    from .app import main as commands

    commands()
